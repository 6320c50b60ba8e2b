r"""Protocol ``controls``: positive and negative controls of every flatness measure.

``landscape reproduce controls`` (config ``experiments/controls.toml``) asks, for
every registered headline measure (λ_max, trace, ε-sharpness, SAM, ASAM,
average sharpness, PAC-Bayes σ and σ′, width), whether it passes three
controls whose answer is known before measuring:

1. **Batch size** (positive; Keskar et al. 2017): per seed, the same
   ``mnist1d-cnn`` on the same data from the same initialization, trained with
   small batches and with large batches (no SWA run) to ~100 % train accuracy.
   A measure passes if it ranks the large-batch solution sharper beyond noise:
   the paired ratio large/small over seeds (geometric mean of the per-seed
   ratios, 95 % Student-t interval on their logarithms) excludes 1 in the
   sharper direction.
2. **Known geometry** (positive): linear regression with 4 inputs and a bias,
   squared loss (``nn.MSELoss``), at its least-squares minimum, where the loss
   is exactly quadratic with :math:`H = 2A^\top A/N`, :math:`A = [X, 1]`.  Every
   measure against its closed form (``reference/sharpness-measures.md`` §9):
   solvers (eigenvalues, SAM/ASAM ascent, ε-sharpness, width bisection) within
   a relative 1e-3, the solvers' own tolerance; Monte Carlo estimators (trace,
   average sharpness, σ, σ′) within 3 of their reported standard errors.  ASAM
   is measured with both ``asam_normalize`` choices (T on every entry, T on
   weights only), each against its own closed form; the report says whether
   ε-sharpness evaluated every box vertex (exact here) or is a lower bound.
3. **Reparametrization** (negative; Dinh et al. 2017): a trained ReLU MLP
   rescaled layer-wise, first layer's weight and bias by α, second layer's
   weight by 1/α, which leaves the function unchanged (checked: the float64
   loss).  Every measure at α ∈ {1, 10, 0.1}; λ_max, trace, ε-sharpness, SAM,
   average sharpness, σ and width should change, ASAM with T on every entry
   and η = 0 and σ′ with ε = 0 should not (with the defaults η = 0.01,
   ε = 1e-3 only approximately); ASAM with T on weights only (ASAM's code)
   changes, because the rescaling also multiplies a bias, where T = 1.

Everything finished is stored as it is done and never recomputed on a rerun:
the training runs and their measures in per-seed run files
(``RUNS/small-seedS.h5``, ``large-seedS.h5``, ``mlp-seedS.h5``; measures of
the rescaled networks under ``/measures/dinh_alphaA``, the extra invariant
variants under ``/controls/dinh/...``) and the known-geometry measures in an
analysis file per seed (``RUNS/geometry-seedS.h5``).  Seeds run in ``workers``
processes, one torch thread each.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig
from landscape.experiments._common import (
    LABELS,
    Experiment,
    FigureSpec,
    Log,
    Protocol,
    captions,
    draw_figures,
    figure_lines,
    register_protocol,
)
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments._settings import Settings, measure_default
from landscape.params import ParamLayout
from landscape.sharpness import (
    MeasureConfig,
    MeasureContext,
    adaptive_sharpness,
    headlines,
    pacbayes_sigma,
    params_json,
    params_of,
    run_measure,
)
from landscape.sharpness.dinh2017 import dinh_rescale
from landscape.sharpness.oracles import geometry_closed_forms, linear_regression
from landscape.stats import format_ci, geometric_ratio, log_ratios

#: The arms of the batch-size control, as methods of the results file.
ARMS = ("small_batch", "large_batch")
#: Relative tolerance of the deterministic solvers against their closed forms.
SOLVER_TOL = 1e-3
#: Standard errors a Monte Carlo estimate may lie from its closed form.
SEM_TOL = 3.0
#: The label of ASAM with ``asam_normalize = "weights"`` (the headline is the default).
ASAM_WEIGHTS_LABEL = "ASAM sharpness, T on weights only (ASAM's code)"
#: Relative change up to which a measure counts as invariant under rescaling
#: (float64 rounding; the solvers follow identical paths) or approximately so.
INVARIANT_TOL, APPROX_TOL = 1e-6, 0.05


@dataclasses.dataclass(frozen=True)
class ControlsSettings(Settings):
    """``[experiment]`` of the ``controls`` protocol (measure defaults: the registry's).

    Attributes:
        large_batch: Batch size of the large-batch arm.
        large_lr: Its learning rate.
        large_epochs: Its epochs.
        measure_samples: Train samples of every measure.
        trace_samples: Hutchinson probes.
        directions: Directions of the width measure.
        dinh_model: The ReLU network of the reparametrization control.
        alphas: Its rescaling factors (besides 1).
        geometry_samples: Samples of the least-squares problem.
        pacbayes_target_loss: PAC-Bayes loss rise Δ on the least-squares problem.
        workers: Worker processes (default one per core).
    """

    large_batch: int = 2048
    large_lr: float = 0.4
    large_epochs: int = 200
    measure_samples: int = measure_default("samples")
    trace_samples: int = measure_default("trace_samples")
    directions: int = measure_default("directions")
    dinh_model: str = "mnist1d-mlp"
    alphas: tuple[float, ...] = (10.0, 0.1)
    geometry_samples: int = 200
    pacbayes_target_loss: float = 0.01
    workers: int | None = None


def _headlines() -> list[tuple[str, Any]]:
    """``(measure, headline)`` of every headline the reports tabulate."""
    return headlines()


def _measures() -> list[str]:
    return list(dict.fromkeys(m for m, _ in _headlines()))


# =========================================================================== run
def run_controls(exp: Experiment, seeds: Sequence[int], out: Path, log: Log, *,
                 runs_dir: Path, main_run: Path | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Run the three controls for every seed (see the module docstring).

    Returns:
        ``{"metrics": {method: {metric: per-seed list}}, "extra": {...}}``.

    Raises:
        UserError: For bad settings, or the first error of any seed.
    """
    settings = ControlsSettings.parse(exp.settings)
    if any(a <= 0 or a == 1.0 for a in settings.alphas) or not settings.alphas:
        raise UserError(f"[experiment] alphas must be positive and not 1, got "
                        f"{list(settings.alphas)}")
    if exp.cfg.batch_size >= settings.large_batch:
        raise UserError(f"[experiment] large_batch must exceed batch_size (the small "
                        f"batch), got {settings.large_batch} and {exp.cfg.batch_size}")
    st = settings.to_dict()  # plain data for the tasks and the results file
    runs_dir.mkdir(parents=True, exist_ok=True)
    tasks = [dict(cfg=exp.cfg.to_dict(), seed=s, runs=str(runs_dir), st=st) for s in seeds]
    done = map_seeds(_seed_task, tasks, worker_count(settings.workers, len(tasks)), log,
                     name="controls", threads=exp.cfg.threads)
    per_seed = stack(done)
    metrics: dict[str, dict[str, list[float]]] = per_seed["metrics"]
    extra: dict[str, Any] = {"settings": st, "seeds": list(seeds), "runs": runs_dir.as_posix(),
                             "batch": {a: {} for a in ARMS} | per_seed["batch"],
                             "dinh": per_seed["dinh"], "geometry": per_seed["geometry"]}
    return {"metrics": metrics, "extra": extra}


def _seed_task(task: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """The three controls of one seed; plain data in and out."""
    from landscape.config import from_dict

    cfg, seed, runs, st = task["cfg"], task["seed"], task["runs"], task["st"]

    base = from_dict(cfg, TrainConfig).replace(seed=seed, swa=False)
    runs_dir = Path(runs)
    t_seed = time.perf_counter()

    def done(what: str, t0: float) -> None:
        log(f"[controls] seed {seed}: {what} ({time.perf_counter() - t0:.0f} s; seed "
            f"{time.perf_counter() - t_seed:.0f} s)")

    metrics: dict[str, dict[str, float]] = {}
    batch: dict[str, dict[str, float]] = {}
    small = base.replace(record_every=base.epochs)  # the initial and final weights
    large = base.replace(batch_size=st["large_batch"], lr=st["large_lr"],
                         epochs=st["large_epochs"], record_every=st["large_epochs"])
    for arm, arm_cfg in zip(ARMS, (small, large), strict=True):
        path = runs_dir / f"{arm.split('_')[0]}-seed{seed}.h5"
        t0 = time.perf_counter()
        metrics[arm] = _trained(arm_cfg, path)
        done(f"{arm.replace('_', ' ')} trained (batch {arm_cfg.batch_size}, lr "
             f"{arm_cfg.lr:g}, {arm_cfg.epochs} epochs): train acc "
             f"{metrics[arm]['train_acc']:.4f}, test acc {metrics[arm]['test_acc']:.4f}", t0)
        t0 = time.perf_counter()
        batch[arm] = _batch_measures(path, st)
        done(f"{arm.replace('_', ' ')} measured", t0)
    t0 = time.perf_counter()
    mlp_cfg = small.replace(model=st["dinh_model"])
    mlp = runs_dir / f"mlp-seed{seed}.h5"
    metrics["relu_mlp"] = _trained(mlp_cfg, mlp)
    done(f"ReLU MLP trained: train acc {metrics['relu_mlp']['train_acc']:.4f}", t0)
    dinh = reparametrization(mlp, st, log=lambda m: log(f"[controls] seed {seed}: {m}"))
    t0 = time.perf_counter()
    geometry = known_geometry(runs_dir / f"geometry-seed{seed}.h5", seed, st)
    bad = [r["label"] for r in geometry if not r["passed"]]
    done(f"known geometry: {len(geometry) - len(bad)}/{len(geometry)} rows match their "
         f"closed forms" + (f" (missed: {', '.join(bad)})" if bad else ""), t0)
    return {"metrics": metrics, "batch": batch, "dinh": dinh, "geometry": geometry}


def _trained(cfg: TrainConfig, path: Path) -> dict[str, float]:
    """Train ``cfg`` into ``path`` (nothing is done for a finished run file).

    Returns:
        The solution's train/test loss and accuracy.
    """
    from landscape.train import train

    train(cfg, path, progress=False, log=lambda _: None)
    with store.open_run(path) as f:
        a = store.solution_attrs(f)["sgd"]
    return {k: float(a[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}


def _batch_measures(path: Path, st: Mapping[str, Any]) -> dict[str, float]:
    """Every headline measure of a run file's solution (stored; kept when stored)."""
    from landscape.jobs import measure_solution

    common = MeasureConfig(samples=st["measure_samples"], device="cpu")
    params = {"smallest": False, "trace_samples": st["trace_samples"],
              "directions": st["directions"], "width_bn": "recompute"}
    res = measure_solution(path, "sgd", _measures(), common, params)
    return {h.label: float(res[m].get(h.key, math.nan)) for m, h in _headlines()}


# =========================================================================== Dinh
def _alpha_key(a: float) -> str:
    return f"{a:g}"


def reparametrization(path: Path, st: Mapping[str, Any], *, log: Log = print
                      ) -> dict[str, dict[str, float]]:
    """Every measure of a run file's ReLU network at α = 1 and each rescaling.

    Registered measures (defaults) go to ``/measures/dinh_alphaA`` of the run
    file; the other settings (ASAM with T on weights only as in ASAM's code, at
    the default η and at η = 0; ASAM with T on every entry at η = 0; σ′ with
    ε = 0) and the loss check
    go to ``/controls/dinh/alphaA/...``.  Stored units are kept.

    Returns:
        ``{"alpha=A": {label: value}}`` with the float64 loss on the full train
        set (``loss``) among the labels.

    Raises:
        UserError: If the rescaled network's loss differs (the model is not
            positively homogeneous between its first two linear layers).
    """
    from landscape.evaluate import EmpiricalRisk
    from landscape.jobs import load_run_model
    from landscape.models import has_batchnorm

    model, data = load_run_model(path)
    if has_batchnorm(model):
        raise UserError(f"the reparametrization control needs a network without "
                        f"BatchNorm; {st['dinh_model']} has it")
    with store.open_run(path) as f:
        theta = store.read_solution(f, "sgd").weights.double()
    model = model.double()
    common = MeasureConfig(samples=min(st["measure_samples"], len(data.y_train)),
                           dtype="float64", device="cpu")
    names = _measures()
    params = {"smallest": False, "trace_samples": st["trace_samples"],
              "directions": st["directions"]}
    chosen = {m: params_of(m, params) for m in names}
    asam_p, pb_p = params_of("asam", {}), params_of("pacbayes", {})
    asam = {"asam_rho": asam_p.asam_rho, "ascent_steps": asam_p.ascent_steps}
    extras = {  # key -> (label, params that define it)
        "asam_weights": (ASAM_WEIGHTS_LABEL,
                         {**asam, "eta": asam_p.eta, "asam_normalize": "weights"}),
        "asam_weights_eta0": (f"{ASAM_WEIGHTS_LABEL}, η = 0",
                              {**asam, "eta": 0.0, "asam_normalize": "weights"}),
        "asam_all_eta0": ("ASAM sharpness, η = 0, T = |θ| on every entry",
                          {**asam, "eta": 0.0, "asam_normalize": "all"}),
        "sigma_mag_eps0": ("PAC-Bayes σ′ (magnitude-aware), ε = 0",
                           {**dataclasses.asdict(pb_p), "pacbayes_eps": 0.0}),
    }
    full_risk: EmpiricalRisk | None = None
    out: dict[str, dict[str, float]] = {}
    base_loss = math.nan
    for a in [1.0, *st["alphas"]]:
        t0 = time.perf_counter()
        ak = _alpha_key(a)
        sol, grp = f"dinh_alpha{ak}", f"controls/dinh/alpha{ak}"
        w = dinh_rescale(model, theta, a)
        stored_loss = store.group_attrs(path, f"{grp}/loss", {"alpha": a})
        if stored_loss is None:  # the float64 loss on the full train set
            if full_risk is None:
                full_risk = EmpiricalRisk(copy.deepcopy(model), data.batches("train"),
                                          dtype=torch.float64)
            stored_loss = {"alpha": a, "loss": full_risk.value(w)}
            store.write_group_attrs(path, f"{grp}/loss", stored_loss)
        loss = float(stored_loss["loss"])
        base_loss = loss if a == 1.0 else base_loss
        if abs(loss - base_loss) > 1e-8 * (1 + abs(base_loss)):
            raise UserError(f"rescaling {st['dinh_model']} by alpha={a:g} changed its "
                            f"train loss from {base_loss:.12g} to {loss:.12g}: it is not "
                            "a ReLU network without normalization between its first two "
                            "linear layers; set [experiment] dinh_model to one")
        with store.open_run(path) as f:
            have = store.stored_params(f, sol, names)
        todo = [m for m in names if have.get(m) != params_json(m, common, chosen[m])]
        todo_x = [k for k, (_, p) in extras.items()
                  if store.group_attrs(path, f"{grp}/{k}", {"params": p}) is None]
        ctx = None
        if todo or todo_x:
            sub = data.subset(common.samples, 1, common.seed)
            ctx = MeasureContext(model, sub.batches("train", common.eval_batch_size),
                                 theta=w, common=common)
        for m in todo:
            assert ctx is not None
            store.save(run_measure(ctx, m, chosen[m], solution=sol), path)
        for k in todo_x:
            assert ctx is not None
            store.write_group_attrs(path, f"{grp}/{k}",
                                    {**_extra_measure(ctx, k, extras[k][1]),
                                     "params": extras[k][1]})
        with store.open_run(path) as f:
            meas = store.measures_of(f, sol)
        vals = {h.label: float(meas[m].scalars.get(h.key, math.nan)) for m, h in _headlines()}
        for k, (label, _) in extras.items():
            vals[label] = float(store.group_attrs(path, f"{grp}/{k}")["value"])
        vals["loss"] = loss
        out[f"alpha={ak}"] = vals
        log(f"reparametrization alpha={ak}: loss {loss:.15g}, λ_max "
            f"{vals[_headlines()[0][1].label]:.4g}"
            + ("" if todo or todo_x else " (stored)")
            + f" ({time.perf_counter() - t0:.0f} s)")
    return out


def _extra_measure(ctx: MeasureContext, key: str, p: Mapping[str, Any]) -> dict[str, float]:
    """The exactly invariant variants the registry's measures do not offer."""
    if key.startswith("asam"):
        from landscape.sharpness.kwon2021asam import normalize_mask

        mask = normalize_mask(ctx, p["asam_normalize"])
        r = adaptive_sharpness(ctx.objective(), ctx.theta, p["asam_rho"], eta=p["eta"],
                               mask=mask, steps=p["ascent_steps"], seed=ctx.seed)
        return {"value": r.value, "one_step": r.one_step, "loss": r.loss}
    metric = ctx.risk.error if p["pacbayes_metric"] == "error" else ctx.risk.value
    r = pacbayes_sigma(metric, ctx.theta, p["pacbayes_target"], magnitude_aware=True,
                       eps=p["pacbayes_eps"], samples=p["pacbayes_samples"],
                       seed=ctx.seed, bound=p["pacbayes_bound"])
    return {"value": r.sigma, "sem": r.sigma_sem, "rise": r.rise}


# =========================================================================== geometry
#: Rows of the known-geometry table: key, label, measure (or a key of
#: :data:`GEOMETRY_VARIANTS`), stored scalar or ``array[index]``, its standard
#: error (Monte Carlo estimators), closed form text.
GEOMETRY_ROWS = (
    ("lambda_max", "λ_max (Hessian)", "hessian", "lambda_max", None, "eigvalsh(H)[-1]"),
    ("lambda_min", "λ_min (Hessian)", "hessian", "lambda_min", None, "eigvalsh(H)[0]"),
    ("trace", "trace (Hutchinson)", "trace", "trace", "trace_sem", "tr H"),
    ("block_lambda_max_weight", "λ_max of the weight block", "layer_hessian",
     "lambda_max[0]", None, "eigvalsh(H_ww)[-1]"),
    ("block_trace_weight", "trace of the weight block", "layer_hessian", "trace[0]", None,
     "tr H_ww"),
    ("block_bias", "bias block (λ = trace)", "layer_hessian", "trace[1]", None, "H_bb"),
    ("eps", "ε-sharpness (Keskar)", "eps", "value", None,
     "100·max over the 2^5 box vertices of ½ vᵀHv / (1 + L)"),
    ("sam", "SAM sharpness", "sam", "value", None, "ρ²λ_max/2"),
    ("asam_all", "ASAM sharpness, T on every entry (default)", "asam_all", "value", None,
     "ρ²λ_max(THT)/2, T = |θ|+η on w and b"),
    ("asam_weights", "ASAM sharpness, T on weights only (ASAM's code)", "asam_weights",
     "value", None, "ρ²λ_max(THT)/2, T = |w|+η on w, 1 on b"),
    ("avg", "average sharpness", "avg", "value", "sem", "σ²·tr H/2"),
    ("sigma", "PAC-Bayes σ (loss rise Δ)", "pacbayes", "sigma", "sigma_sem", "√(2Δ/tr H)"),
    ("sigma_mag", "PAC-Bayes σ′ (loss rise Δ)", "pacbayes", "sigma_mag", "sigma_mag_sem",
     "½Σ H_ii(σ′²θ_i²+ε²) = Δ"),
    ("width", "median width (τ)", "width", "median", None,
     "median over the same directions of √(2τ/dᵀHd)"),
)


#: Measures the known-geometry control runs with explicit settings (both ASAM
#: choices): ``{key: (measure, parameters)}``, stored as solution ``linear_mse_<key>``.
GEOMETRY_VARIANTS = {"asam_all": ("asam", {"asam_normalize": "all"}),
                     "asam_weights": ("asam", {"asam_normalize": "weights"})}


def known_geometry(path: Path, seed: int, st: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every measure of the linear least-squares problem of ``seed`` against its
    closed form; the measures are stored in the analysis file ``path``.

    Returns:
        One row per :data:`GEOMETRY_ROWS` entry: ``key``, ``label``, ``closed``,
        ``measured``, ``sem``, ``rel_err``, ``z``, ``passed``, ``closed_text``,
        and for ε-sharpness ``exact`` and ``method`` (every box vertex evaluated,
        or a lower bound).
    """
    from landscape.data import as_batches
    from landscape.sharpness.width import width_directions

    X, y, theta = linear_regression(seed, st["geometry_samples"])
    net = nn.Linear(4, 1).double()
    ParamLayout.from_module(net).write(net, theta)
    loss = nn.MSELoss()
    common = MeasureConfig(samples=len(y), dtype="float64", device="cpu")
    names = ["hessian", "trace", "layer_hessian", "eps", "sam", "avg", "pacbayes", "width"]
    params = {"smallest": True, "trace_samples": st["trace_samples"],
              "directions": st["directions"], "pacbayes_metric": "loss",
              "pacbayes_target": st["pacbayes_target_loss"]}
    sol = "linear_mse"
    # (solution, measure, parameters) of every measure the rows read
    jobs = {m: (sol, m, params_of(m, params)) for m in names}
    jobs |= {k: (f"{sol}_{k}", m, params_of(m, {**params, **v}))
             for k, (m, v) in GEOMETRY_VARIANTS.items()}
    todo = []
    for key, (s, m, p) in jobs.items():
        have: dict[str, str] = {}
        if path.exists():
            with store.open_file(path, store.KINDS) as f:
                have = store.stored_params(f, s, [m])
        if have.get(m) != params_json(m, common, p):
            todo.append(key)
    if todo:
        ctx = MeasureContext(net, as_batches((X, y), common.eval_batch_size), loss=loss,
                             common=common)
        for key in todo:
            s, m, p = jobs[key]
            store.save(run_measure(ctx, m, p, solution=s), path)
    meas = {}
    with store.open_file(path, store.KINDS) as f:
        for key, (s, m, _) in jobs.items():
            meas[key] = store.measures_of(f, s)[m]
    chosen = {m: p for _, m, p in jobs.values()}  # the defaults' values of eta, rho, ...
    flat = {k: v for p in chosen.values() for k, v in dataclasses.asdict(p).items()}
    dirs = width_directions(ParamLayout.from_module(net), theta, chosen["width"].directions,
                            normalization=chosen["width"].normalization, seed=common.seed)
    closed = geometry_closed_forms(X, y, theta, flat, dirs)
    rows = []
    for key, label, m, attr, sem_key, text in GEOMETRY_ROWS:
        r = meas[m]
        if "[" in attr:
            name, i = attr[:-1].split("[")
            val = float(np.asarray(r.arrays[name])[int(i)])
        else:
            val = float(r.scalars[attr])
        sem = float(r.scalars[sem_key]) if sem_key else math.nan
        rel = (val - closed[key]) / abs(closed[key])
        z = (val - closed[key]) / sem if sem_key and sem > 0 else math.nan
        passed = abs(z) <= SEM_TOL if sem_key else abs(rel) <= SOLVER_TOL
        row = {"key": key, "label": label, "closed": closed[key], "measured": val,
               "sem": sem, "rel_err": rel, "z": z, "passed": bool(passed),
               "closed_text": text}
        if m == "eps":
            row |= {"exact": bool(r.scalars["exact"]), "method": str(r.scalars["method"])}
        rows.append(row)
    return rows


# =========================================================================== report
def _fmt(v: Sequence[float], digits: int = 4) -> str:
    return format_ci(v, spec=f".{digits}g", half_spec=".2g", finite=True)


def _pct(v: Sequence[float]) -> str:
    return format_ci(v, scale=100.0, spec=".4g", half_spec=".2g", finite=True)


def _ratio_cell(g: tuple[float, float, float]) -> str:
    r, lo, hi = g
    if math.isnan(r):
        return "n/a"
    return f"{r:.3g}" + ("" if math.isnan(lo) else f" [{lo:.3g}, {hi:.3g}]")


def batch_verdicts(batch: Mapping[str, Mapping[str, Sequence[float]]]
                   ) -> list[tuple[str, str, str, str, str]]:
    """Per headline: small, large, ratio cell and the verdict sentence.

    Returns:
        ``(label, small cell, large cell, ratio cell, verdict)`` rows.
    """
    rows = []
    for _, h in _headlines():
        sb = batch["small_batch"].get(h.label, [])
        lb = batch["large_batch"].get(h.label, [])
        g = geometric_ratio(log_ratios(sb, lb))
        r, lo, hi = g
        sharper_hi = h.flatter == "lower"  # a larger value means sharper
        way = "larger" if sharper_hi else "smaller"
        if math.isnan(r):
            v = "**fails**: no positive values to compare (no ranking)."
        elif math.isnan(lo):
            v = (f"one seed only, ratio {r:.3g}: large batch ranked "
                 f"{'sharper' if (r > 1) == sharper_hi else 'flatter'}, no interval.")
        elif (lo > 1) if sharper_hi else (hi < 1):
            v = (f"**passes**: ranks the large-batch solution sharper beyond noise "
                 f"({way} by ×{r if sharper_hi else 1 / r:.3g}, 95 % CI of the ratio "
                 f"{lo:.3g}–{hi:.3g} excludes 1).")
        elif (hi < 1) if sharper_hi else (lo > 1):
            v = (f"**fails**: ranks the large-batch solution *flatter* beyond noise "
                 f"(ratio {r:.3g}, 95 % CI {lo:.3g}–{hi:.3g}).")
        else:
            v = (f"**fails**: no difference beyond noise (ratio {r:.3g}, 95 % CI "
                 f"{lo:.3g}–{hi:.3g} includes 1).")
        rows.append((h.label, _fmt(sb), _fmt(lb), _ratio_cell(g), v))
    return rows


def _dinh_labels(dinh: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    first = next(iter(dinh.values()), {})
    return [k for k in first if k != "loss"]


def _expected(label: str) -> str:
    """Expected behaviour of a measure under Dinh's rescaling (reference §7)."""
    if label.startswith(ASAM_WEIGHTS_LABEL):
        return "changes (T = 1 on the rescaled bias)"
    if label.startswith("ASAM") and "η = 0" in label:
        return "invariant"
    if label.startswith("PAC-Bayes σ′") and "ε = 0" in label:
        return "invariant"
    if label.startswith(("ASAM", "PAC-Bayes σ′")):
        return "≈ invariant (η, ε > 0)"
    return "changes"


def dinh_table(dinh: Mapping[str, Mapping[str, Sequence[float]]]) -> list[dict[str, Any]]:
    """Per measure: values at each α, per-seed ratios to α = 1 and the observed class.

    Returns:
        Rows ``{label, values: {alpha: list}, ratios: {alpha: array}, max_change,
        observed, expected}``.
    """
    alphas = [k for k in dinh if k != "alpha=1"]
    rows = []
    for label in _dinh_labels(dinh):
        base = np.asarray(dinh["alpha=1"][label], float)
        ratios = {}
        for a in alphas:
            v = np.asarray(dinh[a][label], float)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios[a] = v / base
        allr = np.concatenate(list(ratios.values())) if ratios else np.zeros(0)
        change = float(np.nanmax(np.abs(allr - 1))) if np.isfinite(allr).any() else math.nan
        observed = ("invariant" if change <= INVARIANT_TOL else
                    "≈ invariant" if change <= APPROX_TOL else "changes")
        rows.append({"label": label, "values": {a: dinh[a][label] for a in dinh},
                     "ratios": ratios, "max_change": change, "observed": observed,
                     "expected": _expected(label)})
    return rows


def _agrees(expected: str, observed: str) -> bool:
    return expected.split(" (")[0].lstrip("≈ ") == observed.lstrip("≈ ") or (
        expected.startswith("≈") and observed in ("invariant", "≈ invariant"))


#: The figures of the report, in report order: ``{stem: (caption, draw(plot, results,
#: ratios, flatter, changes))}`` with the inputs :func:`controls_figures` reads from
#: the results file.
FIGURES: dict[str, FigureSpec] = {
    "accuracy": (
        "Train and test accuracy of the small-batch and large-batch solutions (and of the "
        "ReLU MLP of the reparametrization control): mean ± 95 % CI over seeds, one dot "
        "per seed.",
        lambda plot, results, ratios, flatter, changes: plot.plot_swa_vs_sgd(
            results, metrics=["train_acc", "test_acc"])),
    "batch_ratios": (
        "Batch-size control: large-batch / small-batch ratio of each measure, one dot per "
        "seed, the geometric mean with its 95 % Student-t interval (log scale). For "
        "λ_max, trace and the sharpness values a ratio above 1 means the large-batch "
        "solution is sharper; for σ, σ′ and the width a ratio below 1 does.",
        lambda plot, results, ratios, flatter, changes: plot.plot_paired_ratios(
            ratios, flatter=flatter, title="large batch / small batch, paired over seeds",
            xlabel="ratio large / small (log scale)")),
    "dinh_log_ratios": (
        "Reparametrization control: |log10 (value at α / value at α = 1)| of each measure "
        "for each α, mean over seeds with its 95 % interval (log scale; bars at the floor "
        "1e-16 are unchanged to float64 rounding). A function-preserving rescaling should "
        "leave an invariant measure at the floor.",
        lambda plot, results, ratios, flatter, changes: plot.plot_log_ratio_bars(
            changes, title="change under Dinh et al.'s rescaling")),
}


def controls_figures(results: Path, result: Mapping[str, Any], dest: Path) -> list[Path]:
    """The report's figures, from the results file alone.

    Returns:
        The PNG paths, in :data:`FIGURES` order.
    """
    r = store.read_results(results)
    ex = r["attrs"]["extra"]
    ratios, flatter = {}, {}
    for _, h in _headlines():
        lr = log_ratios(ex["batch"]["small_batch"].get(h.label, []),
                        ex["batch"]["large_batch"].get(h.label, []))
        ratios[h.label] = np.exp(lr)
        flatter[h.label] = h.flatter
    changes = {row["label"]: {a.replace("alpha=", "α = "): v for a, v in row["ratios"].items()}
               for row in dinh_table(ex["dinh"])}
    return draw_figures(FIGURES, dest, results, ratios, flatter, changes)


def report_sections(exp: Experiment, result: Mapping[str, Any], figures: Sequence[Path],
                    out: Path) -> list[str]:
    """The report after the accuracy table: the three controls, a summary, figures.

    Returns:
        Markdown lines.
    """
    ex, m = result["extra"], result["metrics"]
    st = ex["settings"]
    n = len(ex["seeds"])
    lines = [*_summary(ex), ""]
    # ------------------------------------------------------------- batch size
    acc = {a: np.asarray(m[a]["train_acc"], float) for a in ARMS}
    reached = all((v >= 1.0).all() for v in acc.values())
    lines += [
        "## 1. Positive control: small vs large batches (Keskar et al. 2017)", "",
        f"Per seed, `{exp.cfg.model}` on the same data and from the same initialization, "
        f"plain SGD (momentum {exp.cfg.momentum:g}, weight decay {exp.cfg.wd:g}, "
        f"`{exp.cfg.sgd_schedule}` schedule, no SWA run): **small batch** "
        f"{exp.cfg.batch_size}, lr {exp.cfg.lr:g}, {exp.cfg.epochs} epochs (the train "
        f"config above); **large batch** {st['large_batch']}, lr {st['large_lr']:g} "
        f"({st['large_lr'] / exp.cfg.lr:.3g}× the small-batch lr for "
        f"{st['large_batch'] / exp.cfg.batch_size:.3g}× the batch), "
        f"{st['large_epochs']} epochs. The run files record the initial and the final "
        "weights. "
        + ("Both reached 100 % train accuracy on every seed." if reached else
           "**Not every run reached 100 % train accuracy**: minimum over seeds "
           + ", ".join(f"{LABELS[a]} {100 * acc[a].min():.2f} %" for a in ARMS) + "."),
        f"Test accuracy: small batch {_pct(m['small_batch']['test_acc'])} %, large batch "
        f"{_pct(m['large_batch']['test_acc'])} %.", "",
        f"Measures on a fixed, seeded subset of {st['measure_samples']} train samples, BN "
        f"in eval mode with each solution's statistics (width: statistics recomputed "
        f"along the rays), registry defaults except {st['trace_samples']} trace probes, "
        f"{st['directions']} width directions and no λ_min. The ratio is the geometric "
        f"mean of the {n} per-seed ratios large/small with the 95 % Student-t interval "
        "of their logarithms (paired: same seed, data and initialization).", "",
        "| measure | small batch | large batch | large / small [95 % CI] | verdict |",
        "|---|---|---|---|---|"]
    for label, a, b, r, v in batch_verdicts(ex["batch"]):
        lines.append(f"| {label} | {a} | {b} | {r} | {v.split(':')[0]} |")
    lines += [""] + [f"- **{label}**: {v}" for label, _, _, _, v in
                     batch_verdicts(ex["batch"])] + [""]
    # ------------------------------------------------------------- geometry
    geo = ex["geometry"]
    lines += [
        "## 2. Positive control: known geometry (linear least squares)", "",
        f"A linear model with 4 inputs and a bias, squared loss (`nn.MSELoss`), on "
        f"{st['geometry_samples']} samples (x ~ N(0.5, diag(2, 1, 0.5, 0.25)²), "
        "y = xᵀ(1, −2, 0.5, 3) + 0.3 + 0.1·noise; one draw per seed), at its least-squares "
        "minimum (float64). The loss is exactly quadratic there with H = 2AᵀA/N, "
        "A = [X, 1], so every measure has a closed form (reference §9). Measures in "
        "float64 on all samples with the registry defaults (ρ = 0.05, ASAM ρ = 0.5 and "
        f"η = 0.01, σ = 0.01, ε = 1e-3, τ = 0.1), ASAM with both `asam_normalize` "
        "choices (T on every entry, the default, and on weights only as ASAM's code), "
        f"{st['trace_samples']} trace probes, "
        f"{st['directions']} width directions, PAC-Bayes on the loss with rise "
        f"Δ = {st['pacbayes_target_loss']:g} (the model is a regressor). Pass: solvers "
        f"within a relative {SOLVER_TOL:g} (their own tolerances: ARPACK, width "
        f"bisection); Monte Carlo estimators (trace, average sharpness, σ, σ′) within "
        f"{SEM_TOL:g} of their reported standard errors. The table is seed 0; the last "
        f"column counts the seeds (of {len(geo)}) that pass.", "",
        "| measure | closed form | closed-form value | measured | relative error | "
        "pass (seed 0) | "
        "seeds passing |", "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(geo[0]):
        passes = sum(g[i]["passed"] for g in geo)
        err = f"{row['rel_err']:+.2e}"
        if not math.isnan(row["z"]):
            err += f" ({row['z']:+.2f} SE)"
        lines.append(f"| {row['label']} | {row['closed_text']} | {row['closed']:.6g} | "
                     f"{row['measured']:.6g} | {err} | "
                     f"{'yes' if row['passed'] else '**no**'} | {passes}/{len(geo)} |")
    lines += ["", *_geometry_verdicts(geo), ""]
    # ------------------------------------------------------------- Dinh
    dinh = ex["dinh"]
    alphas = [k for k in dinh if k != "alpha=1"]
    loss = {a: np.asarray(dinh[a]["loss"], float) for a in dinh}
    dl = max(float(np.max(np.abs(loss[a] - loss["alpha=1"]))) for a in alphas)
    lines += [
        "## 3. Negative control: reparametrization (Dinh et al. 2017)", "",
        f"Per seed, `{st['dinh_model']}` (ReLU, biases, no BatchNorm) trained like the "
        "small-batch arm, then rescaled layer-wise: the first linear layer's weight and "
        "bias × α, the second's weight × 1/α, which leaves the function unchanged: the "
        f"float64 train loss changed by at most {dl:.1e} over seeds and α "
        f"(loss {_fmt(loss['alpha=1'], 6)} at α = 1). Every measure in float64 on "
        f"{st['measure_samples']} train samples at α ∈ {{1, "
        + ", ".join(a.split("=")[1] for a in alphas) + "} with the same seed (same "
        "probes, noise and directions). Observed class: **invariant** if every seed's "
        f"value moved by at most a relative {INVARIANT_TOL:g}, **≈ invariant** up to "
        f"{APPROX_TOL:g}, else **changes**; the ratio columns are geometric means of "
        "the per-seed ratios value(α)/value(1).", "",
        "| measure | α = 1 | " + " | ".join(f"{a.replace('alpha', 'α')} (ratio)"
                                         for a in alphas)
        + " | max rel. change | expected | observed |",
        "|---|---|" + "---|" * len(alphas) + "---|---|---|"]
    rows = dinh_table(dinh)
    for row in rows:
        cells = [f"{_fmt(row['values'][a])} (×{geometric_ratio(np.log(row['ratios'][a]))[0]:.3g})"
                 for a in alphas]
        ok = _agrees(row["expected"], row["observed"])
        lines.append(f"| {row['label']} | {_fmt(row['values']['alpha=1'])} | "
                     + " | ".join(cells) + f" | {row['max_change']:.2g} | "
                     f"{row['expected']} | {row['observed']}"
                     + ("" if ok else " (**not as expected**)") + " |")
    lines += ["", *_dinh_verdicts(rows), "", "## Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    lines += [f"Run files (training runs and every stored measure): `{ex['runs']}`.", ""]
    return lines


def _summary(ex: Mapping[str, Any]) -> list[str]:
    """One line per control: which measures pass and which fail."""
    batch = batch_verdicts(ex["batch"])
    ok = [label for label, *_, v in batch if v.startswith("**passes")]
    bad = [label for label, *_, v in batch if not v.startswith("**passes")]
    geo = ex["geometry"]
    gbad = sorted({r["label"] for g in geo for r in g if not r["passed"]},
                  key=[r["label"] for r in geo[0]].index)
    dbad = [r["label"] for r in dinh_table(ex["dinh"])
            if not _agrees(r["expected"], r["observed"])]
    return [
        f"- **Batch size** (large batch sharper beyond noise): {len(ok)}/{len(batch)} "
        f"measures pass" + (f"; fail: {', '.join(bad)}." if bad else "."),
        "- **Known geometry** (closed forms): "
        + (f"misses on some seed: {', '.join(gbad)}; every other row matches on every "
           "seed." if gbad else "every row matches on every seed.")
        + "".join(f" ε-sharpness is {w}." for w in _eps_exactness(geo)),
        "- **Reparametrization**: "
        + (f"not as expected: {', '.join(dbad)}; every other measure behaves as "
           "expected." if dbad else "every measure behaves as expected.")]


def _geometry_verdicts(geo: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    out = []
    for i, row in enumerate(geo[0]):
        misses = [(s, g[i]) for s, g in enumerate(geo) if not g[i]["passed"]]
        if not misses:
            continue
        worst = max(misses, key=lambda t: abs(t[1]["rel_err"]))[1]
        line = (f"- **{row['label']} misses its closed form** on {len(misses)} of "
                f"{len(geo)} seeds (worst: measured {worst['measured']:.6g} vs "
                f"{worst['closed']:.6g}, relative error {worst['rel_err']:+.2e}"
                + (f", {worst['z']:+.1f} standard errors" if not math.isnan(worst["z"])
                   else "") + ").")
        if row["key"] == "eps" and not all(g[i].get("exact", False) for g in geo):
            line += (" The maximum of a convex quadratic over the box is at a vertex; "
                     "L-BFGS-B and the vertex ascents stopped below the best vertex, so "
                     "the value is a lower bound (raise `eps_vertex_starts` until every "
                     "vertex is evaluated).")
        out.append(line)
    if not out:
        out.append("- Every measure matches its closed form on every seed.")
    out += _eps_method(geo)
    z = {row["label"]: max(abs(g[i]["z"]) for g in geo) for i, row in enumerate(geo[0])
         if not math.isnan(row["z"])}
    out.append("- The Monte Carlo estimators agree within their own standard errors; "
               "largest |error| / standard error over the seeds: "
               + ", ".join(f"{k} {v:.2f}" for k, v in z.items()) + ". Their relative "
               "errors (see the table) are those of the default sample counts.")
    return out


def _eps_exactness(geo: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    """``["exact on every seed"]``, ``["a lower bound on k of n seeds"]`` or ``[]``."""
    i = next((i for i, row in enumerate(geo[0]) if row["key"] == "eps"), None)
    if i is None or "exact" not in geo[0][i]:
        return []
    lower = sum(not g[i]["exact"] for g in geo)
    return ["exact on every seed (every box vertex evaluated)" if not lower else
            f"a lower bound on {lower} of {len(geo)} seeds (not every vertex evaluated)"]


def _eps_method(geo: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    """Say how ε-sharpness was found on each seed: exact or a lower bound."""
    i = next((i for i, row in enumerate(geo[0]) if row["key"] == "eps"), None)
    if i is None or "exact" not in geo[0][i]:
        return []
    exact = [s for s, g in enumerate(geo) if g[i]["exact"]]
    methods = sorted({g[i]["method"] for g in geo})
    if len(exact) == len(geo):
        return ["- **ε-sharpness (Keskar)** is **exact** on every seed: after L-BFGS-B "
                "every vertex of the 5-dimensional box was evaluated (the box has 2^5 = "
                "32 vertices, within the default vertex budget `eps_vertex_starts` × "
                "`eps_maxiter`), and the maximum of this convex quadratic over the box "
                "is at a vertex."]
    return [f"- **ε-sharpness (Keskar)** is a **lower bound** on {len(geo) - len(exact)} "
            f"of {len(geo)} seeds ({', '.join(methods)}): not every vertex of the box "
            "was evaluated."]


#: Why ASAM with T on every entry but η > 0 moves under the rescaling.
_ETA_NOTE = (" Its T = |θ| + η covers every entry, biases included, but follows the "
             "rescaling only where |θ_i| ≫ η = {eta:g}: shrinking a layer ten-fold (the "
             "first layer at α = 0.1, the second layer's weight at α = 10) brings many of "
             "its entries near η, so the normalized region is not mapped onto itself. This "
             "is η's approximation, not the bias: with η = 0 the same T is invariant (the "
             "row *ASAM sharpness, η = 0, T = |θ| on every entry*), while T on weights "
             "only changes far more (its rows).")


def _asam_headline() -> str:
    return next(h.label for m, h in _headlines() if m == "asam")


def _dinh_verdicts(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out, own = [], set()
    for row in rows:
        ok = _agrees(row["expected"], row["observed"])
        label = row["label"]
        if label.startswith(ASAM_WEIGHTS_LABEL) and ok:
            out.append(
                f"- **{label}** changes, as expected (max relative change "
                f"{row['max_change']:.2g}). "
                + ("The same cause." if own & {r["label"] for r in rows
                                               if r["label"].startswith(ASAM_WEIGHTS_LABEL)}
                   else "ASAM's code normalizes the parameters named `weight` only (T = 1 "
                   "on biases), while the rescaling also multiplies the first layer's "
                   "bias by α. With T = |θ| + η on every entry (`asam_normalize = "
                   "\"all\"`, the default: the row *ASAM sharpness*) the normalization "
                   "follows the bias too; with η = 0 the value is invariant (its row)."))
            own.add(label)
        elif not ok:
            out.append(f"- **{label}**: expected {row['expected']}, observed "
                       f"{row['observed']} (max relative change {row['max_change']:.2g})."
                       + (_ETA_NOTE.format(eta=params_of("asam", {}).eta)
                          if label == _asam_headline() else ""))
            own.add(label)
    out.append("- Every other measure behaves as expected: "
               + ", ".join(f"{r['label']} {r['observed']}" for r in rows
                           if r["label"] not in own) + ".")
    return out


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    return controls_figures(res, result, dest)


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    return report_sections(exp, result, figures, out)


register_protocol(Protocol(
    name="controls",
    title="positive and negative controls of the flatness measures",
    settings=ControlsSettings, run=run_controls, figures=_figures, report=_report))


__all__ = ["ASAM_WEIGHTS_LABEL", "FIGURES", "GEOMETRY_ROWS", "GEOMETRY_VARIANTS",
           "batch_verdicts", "controls_figures", "dinh_rescale", "dinh_table",
           "geometry_closed_forms", "known_geometry", "linear_regression",
           "reparametrization", "run_controls"]
