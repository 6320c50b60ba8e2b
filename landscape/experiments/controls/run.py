"""Protocol ``controls``: the run over seeds and its per-seed task."""

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
    Experiment,
    Log,
)
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments.controls.settings import (
    ARMS,
    ASAM_WEIGHTS_LABEL,
    SEM_TOL,
    SOLVER_TOL,
    ControlsSettings,
    _headlines,
    _measures,
)
from landscape.params import ParamLayout
from landscape.sharpness import (
    MeasureConfig,
    MeasureContext,
    adaptive_sharpness,
    pacbayes_sigma,
    params_json,
    params_of,
    run_measure,
)
from landscape.sharpness.dinh2017 import dinh_rescale
from landscape.sharpness.oracles import geometry_closed_forms, linear_regression


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
              "trace_method": st["trace_method"],
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
              "trace_method": st["trace_method"],
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
              "trace_method": st["trace_method"],
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
