r"""Run the sharpness measures on a stored solution and store the results.

The thin shell around the pure functions of :mod:`landscape.sharpness`: it
rebuilds the model and data of a run file, fixes a seeded train subset
(``samples``), builds the loss through the one evaluation path
(:meth:`landscape.evaluate.Evaluator.loss_function`, BatchNorm in eval mode
with the solution's own statistics) and writes each measure, as soon as it is
done, to ``/measures/<solution>/<measure>`` with its parameters, seed, sample
count and run time as attributes (one atomic :func:`landscape.store.edit_run`
per measure, so an interrupted run keeps what it finished).  A measure whose
stored parameters equal the requested ones is skipped unless ``recompute``.

:func:`compare_solutions` reads two solutions' stored measures back and
reports widths side by side with the ratio of medians and its bootstrap
interval (``/measures/compare``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape import store
from landscape._errors import UserError
from landscape.data import TensorData
from landscape.directions import Normalization
from landscape.evaluate import BNMode, Evaluator
from landscape.models import has_batchnorm
from landscape.sharpness._base import CountedCall
from landscape.sharpness.average import average_sharpness
from landscape.sharpness.foret2021sam import sam_sharpness
from landscape.sharpness.hessian import (
    HVPMethod,
    hessian_smallest_eigenvalue,
    hessian_top_eigenvalues,
    make_hvp,
)
from landscape.sharpness.hutchinson import hutchinson_trace, hutchpp_trace
from landscape.sharpness.jiang2020pacbayes import pacbayes_sigma
from landscape.sharpness.keskar2017 import epsilon_sharpness
from landscape.sharpness.kwon2021asam import adaptive_sharpness
from landscape.sharpness.slq import slq_density
from landscape.sharpness.width import median_ci, random_widths, width_directions, width_ratio

#: Every measure, in the order they run.
MEASURES = ("hessian", "trace", "density", "eps", "sam", "asam", "avg", "pacbayes",
            "width")


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class SharpnessConfig:
    """Parameters of every measure (each field is a ``landscape sharpness`` flag)."""

    # common
    samples: int = _f(1000, "size of the fixed, seeded train subset every measure uses "
                      "(all train samples if there are fewer)")
    seed: int = _f(0, "seed of the subset, probes, noise and directions")
    dtype: str = _f("float32", "compute dtype (float64 for tight eigenvalues)",
                    choices=("float32", "float64"))
    batch_size: int = _f(4096, "samples per forward pass")
    device: str = _f("cpu", "cpu or cuda")
    hvp: str = _f(HVPMethod.DOUBLE_BACKWARD.value, "Hessian-vector product method",
                  choices=tuple(m.value for m in HVPMethod))
    # hessian
    top_k: int = _f(5, "number of top Hessian eigenvalues (Lanczos)")
    eig_tol: float = _f(1e-3, "ARPACK relative residual tolerance of the top Ritz pairs")
    smallest: bool = _f(True, "also the smallest (most negative) eigenvalue")
    min_tol: float = _f(1e-2, "ARPACK relative residual tolerance of the smallest")
    save_eigenvectors: bool = _f(False, "store the top-k eigenvectors (k x n floats)")
    # trace
    trace_samples: int = _f(100, "Hutchinson probes (HVPs) for the trace")
    trace_method: str = _f("hutchinson", "trace estimator",
                           choices=("hutchinson", "hutchpp"))
    # density
    slq_steps: int = _f(80, "Lanczos steps per SLQ draw")
    slq_draws: int = _f(1, "SLQ random start vectors")
    slq_sigma2: float = _f(1e-5, "relative variance of the density's Gaussian kernel")
    # keskar
    eps: float = _f(1e-3, "Keskar box size: |dw_i| <= eps (|w_i| + 1)")
    eps_maxiter: int = _f(10, "L-BFGS-B iterations per restart")
    eps_restarts: int = _f(1, "random starts inside the box")
    eps_dim: int | None = _f(None, "random subspace dimension (None: the full space)")
    # sam / asam
    rho: float = _f(0.05, "SAM L2-ball radius")
    asam_rho: float = _f(0.5, "ASAM radius in normalized coordinates")
    eta: float = _f(0.01, "ASAM offset: T_w = |w| + eta")
    ascent_steps: int = _f(20, "projected ascent steps after the one-step point")
    # average
    sigma: float = _f(0.01, "average-case sharpness noise std")
    avg_samples: int = _f(20, "average-case Monte Carlo samples (antithetic pairs)")
    # pac-bayes
    pacbayes_metric: str = _f("error", "quantity whose rise defines sigma",
                              choices=("error", "loss"))
    pacbayes_target: float = _f(0.1, "rise of --pacbayes-metric that defines sigma")
    pacbayes_samples: int = _f(10, "Monte Carlo draws per sigma")
    pacbayes_eps: float = _f(1e-3, "magnitude-aware noise offset epsilon")
    # width
    directions: int = _f(20, "random directions for the width")
    tau: float = _f(0.1, "train-loss rise that defines the width")
    normalization: str = _f("none", "width directions: none (unit L2), filter, layer",
                            choices=tuple(n.value for n in Normalization))
    width_bn: str = _f("keep", "BN statistics along width rays: keep or recompute",
                       choices=("keep", "recompute"))
    width_tol: float = _f(1e-3, "relative precision of each width")
    r_max: float = _f(1e4, "largest radius searched (beyond: width inf)")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    def validate(self) -> SharpnessConfig:
        """Check ranges that types cannot express; return ``self``.

        Raises:
            UserError: Naming the flag and the valid range.
        """
        positive = ("samples", "batch_size", "top_k", "trace_samples", "slq_steps",
                    "slq_draws", "eps", "eps_maxiter", "eps_restarts", "rho", "asam_rho",
                    "sigma", "avg_samples", "pacbayes_target", "pacbayes_samples",
                    "directions", "tau", "width_tol", "r_max", "eig_tol", "min_tol",
                    "slq_sigma2")
        for k in positive:
            if not getattr(self, k) > 0:
                raise UserError(f"--{k.replace('_', '-')} must be > 0, got "
                                f"{getattr(self, k)}")
        for k in ("eta", "pacbayes_eps", "ascent_steps"):
            if getattr(self, k) < 0:
                raise UserError(f"--{k.replace('_', '-')} must be >= 0, got "
                                f"{getattr(self, k)}")
        if self.eps_dim is not None and self.eps_dim < 1:
            raise UserError(f"--eps-dim must be >= 1, got {self.eps_dim}")
        if self.trace_method == "hutchpp" and self.trace_samples < 3:
            raise UserError("--trace-method hutchpp needs --trace-samples >= 3")
        return self


def parse_measures(text: str | Iterable[str]) -> list[str]:
    """``"hessian,width"`` (or ``"all"``) as a list of known measure names.

    Returns:
        The measures in :data:`MEASURES` order.

    Raises:
        UserError: For an unknown name.
    """
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    if items == ["all"]:
        return list(MEASURES)
    bad = [s for s in items if s not in MEASURES]
    if bad or not items:
        raise UserError(f"unknown measure(s) {bad}; choose from {','.join(MEASURES)} "
                        "or all")
    return [m for m in MEASURES if m in items]


# =========================================================================== context
class _Context:
    """Model, subset, loss, metrics and HVP of one solution (built lazily)."""

    def __init__(self, model: nn.Module, data: TensorData, sol: store.Solution,
                 cfg: SharpnessConfig) -> None:
        self.cfg = cfg
        self.dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.device = torch.device(cfg.device)
        self.model = copy.deepcopy(model).to(self.dtype)
        self.data = dataclasses.replace(
            data, x_train=data.x_train.to(self.dtype), x_test=data.x_test.to(self.dtype))
        self.samples = min(cfg.samples, len(data.y_train))  # all, if there are fewer
        self.ev = Evaluator(self.model, self.data, bn=BNMode.KEEP, device=self.device,
                            batch_size=cfg.batch_size, train_samples=self.samples,
                            test_samples=1, seed=cfg.seed)
        self.layout = self.ev.layout
        self.theta = sol.weights.to(self.device, self.dtype)
        self.buffers = sol.buffers.to(self.dtype)
        self.layout.check_vector(self.theta, f"solution {sol.name!r}")
        self.loss = self.ev.loss_function(buffers=self.buffers)
        self._hvp: Callable[[Tensor], Tensor] | None = None

    @property
    def n(self) -> int:
        return self.theta.numel()

    def hvp(self) -> Callable[[Tensor], Tensor]:
        if self._hvp is None:  # one gradient graph, shared by hessian/trace/density
            self._hvp = make_hvp(self.loss, self.theta, self.cfg.hvp)
        return self._hvp

    def train_error(self, theta: Tensor) -> float:
        return self.ev.evaluate(theta, self.buffers, splits=("train",))["train"].err

    def asam_mask(self) -> Tensor:
        """ASAM's code scales the parameters whose name contains ``weight``."""
        mask = torch.zeros(self.n, dtype=torch.bool, device=self.device)
        for name, sl, _, _ in self.layout.slices():
            if "weight" in name:
                mask[sl] = True
        return mask


def _bar(progress: bool, desc: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit=unit, disable=not progress, file=sys.stderr, leave=False,
                dynamic_ncols=True)


# =========================================================================== measures
# Each returns (attrs, arrays); attrs are plain numbers/strings, arrays numpy.
Result = tuple[dict[str, Any], dict[str, np.ndarray]]


def _hessian(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    hvp = CountedCall(ctx.hvp(), bar)
    kw = {"seed": cfg.seed, "dtype": ctx.dtype, "device": ctx.device}
    top = hessian_top_eigenvalues(hvp, ctx.n, min(cfg.top_k, ctx.n), tol=cfg.eig_tol,
                                  eigenvectors=cfg.save_eigenvectors, **kw)
    attrs: dict[str, Any] = {
        "lambda_max": float(top.eigenvalues[0]), "top_k": cfg.top_k,
        "n_hvp_top": top.n_hvp, "converged_top": top.converged, "eig_tol": cfg.eig_tol,
        "hvp": cfg.hvp, "lambda_min": math.nan, "n_hvp_min": 0,
        "converged_min": False, "min_tol": cfg.min_tol}
    if cfg.smallest:
        low = hessian_smallest_eigenvalue(hvp, ctx.n, tol=cfg.min_tol, **kw)
        attrs |= {"lambda_min": float(low.eigenvalues[0]), "n_hvp_min": low.n_hvp,
                  "converged_min": low.converged}
    attrs["min_max_ratio"] = abs(attrs["lambda_min"] / attrs["lambda_max"])
    arrays = {"eigenvalues": top.eigenvalues}
    if top.eigenvectors is not None:
        arrays["eigenvectors"] = top.eigenvectors.T.astype(np.float32)  # (k, n)
    return attrs, arrays


def _trace(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    fn = hutchpp_trace if cfg.trace_method == "hutchpp" else hutchinson_trace
    est = fn(CountedCall(ctx.hvp(), bar), ctx.n, cfg.trace_samples, seed=cfg.seed,
             dtype=ctx.dtype, device=ctx.device)
    return ({"trace": est.trace, "trace_sem": est.sem, "frobenius_sq": est.frobenius_sq,
             "frobenius_sq_sem": est.frobenius_sq_sem, "n_hvp": est.n_hvp,
             "method": est.method, "hvp": cfg.hvp},
            {"samples": est.samples})


def _density(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    d = slq_density(CountedCall(ctx.hvp(), bar), ctx.n, cfg.slq_steps, cfg.slq_draws,
                    seed=cfg.seed, dtype=ctx.dtype, device=ctx.device)
    grid, dens = d.density(sigma2=cfg.slq_sigma2)
    return ({"steps": cfg.slq_steps, "draws": cfg.slq_draws, "sigma2": cfg.slq_sigma2,
             "n_hvp": d.n_hvp, "trace_estimate": ctx.n * d.moment(1), "hvp": cfg.hvp},
            {"nodes": d.nodes, "weights": d.weights, "grid": grid, "density": dens})


def _eps(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    r = epsilon_sharpness(CountedCall(ctx.loss, bar), ctx.theta, cfg.eps,
                          maxiter=cfg.eps_maxiter, restarts=cfg.eps_restarts,
                          dim=cfg.eps_dim, seed=cfg.seed)
    return ({"value": r.value, "loss": r.loss, "max_loss": r.max_loss,
             "n_evals": r.n_evals, "eps": cfg.eps, "maxiter": cfg.eps_maxiter,
             "restarts": cfg.eps_restarts,
             "dim": math.nan if cfg.eps_dim is None else cfg.eps_dim}, {})


def _ball(r: Any, rho: float, steps: int) -> dict[str, Any]:
    return {"value": r.value, "one_step": r.one_step, "loss": r.loss,
            "max_loss": r.max_loss, "n_evals": r.n_evals,
            "random_start": r.random_start, "rho": rho, "steps": steps}


def _sam(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    r = sam_sharpness(CountedCall(ctx.loss, bar), ctx.theta, cfg.rho,
                      steps=cfg.ascent_steps, seed=cfg.seed)
    return _ball(r, cfg.rho, cfg.ascent_steps), {}


def _asam(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    r = adaptive_sharpness(CountedCall(ctx.loss, bar), ctx.theta, cfg.asam_rho,
                           eta=cfg.eta, mask=ctx.asam_mask(), steps=cfg.ascent_steps,
                           seed=cfg.seed)
    return (_ball(r, cfg.asam_rho, cfg.ascent_steps)
            | {"eta": cfg.eta, "scaled": "parameters whose name contains 'weight'"}, {})


def _avg(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    r = average_sharpness(CountedCall(ctx.loss, bar), ctx.theta, cfg.sigma,
                          cfg.avg_samples, seed=cfg.seed)
    return ({"value": r.value, "sem": r.sem, "loss": r.loss, "sigma": cfg.sigma,
             "n_evals": r.n_evals, "antithetic": True}, {"rises": r.rises})


def _pacbayes(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    metric = ctx.train_error if cfg.pacbayes_metric == "error" else ctx.loss
    counted = CountedCall(metric, bar)
    attrs: dict[str, Any] = {"metric": cfg.pacbayes_metric, "target": cfg.pacbayes_target,
                             "mc_samples": cfg.pacbayes_samples, "eps": cfg.pacbayes_eps}
    arrays = {}
    for key, mag in (("", False), ("_mag", True)):
        r = pacbayes_sigma(counted, ctx.theta, cfg.pacbayes_target, magnitude_aware=mag,
                           eps=cfg.pacbayes_eps, samples=cfg.pacbayes_samples,
                           seed=cfg.seed)
        attrs |= {f"sigma{key}": r.sigma, f"sigma{key}_sem": r.sigma_sem,
                  f"flatness{key}": r.flatness, f"rise{key}": r.rise,
                  f"rise{key}_sem": r.rise_sem}
        attrs["base"] = r.base
        arrays |= {f"trace_sigma{key}": r.trace_sigma, f"trace_rise{key}": r.trace_rise}
    attrs["n_evals"] = counted.calls
    return attrs, arrays


def _width(ctx: _Context, bar: Any) -> Result:
    cfg = ctx.cfg
    loss: Callable[[Tensor], Any] = ctx.loss
    if cfg.width_bn == "recompute" and has_batchnorm(ctx.model):
        ev = Evaluator(copy.deepcopy(ctx.model), ctx.data, bn=BNMode.RECOMPUTE,
                       device=ctx.device, batch_size=cfg.batch_size,
                       train_samples=ctx.samples, test_samples=1, seed=cfg.seed)
        loss = lambda th: ev.evaluate(th, splits=("train",))["train"].loss  # noqa: E731
    dirs = width_directions(ctx.layout, ctx.theta.cpu(), cfg.directions,
                            normalization=cfg.normalization, seed=cfg.seed)
    r = random_widths(CountedCall(loss, bar), ctx.theta, dirs.to(ctx.device), cfg.tau,
                      rel_tol=cfg.width_tol, r_max=cfg.r_max)
    med, lo, hi = median_ci(r.widths, seed=cfg.seed)
    units = "l2" if cfg.normalization == "none" else f"{cfg.normalization}-normalized"
    return ({"median": med, "ci_low": lo, "ci_high": hi, "level": 0.95,
             "tau": cfg.tau, "directions": cfg.directions,
             "normalization": cfg.normalization, "units": units, "bn": cfg.width_bn,
             "loss": r.loss, "n_evals": r.n_evals,
             "n_unreached": int(np.isinf(r.widths).sum())},
            {"widths": r.widths})


_MEASURE_FUNCS: dict[str, tuple[Callable[[_Context, Any], Result], str]] = {
    "hessian": (_hessian, "hvp"), "trace": (_trace, "hvp"), "density": (_density, "hvp"),
    "eps": (_eps, "fb"), "sam": (_sam, "fb"), "asam": (_asam, "fb"),
    "avg": (_avg, "eval"), "pacbayes": (_pacbayes, "eval"), "width": (_width, "eval"),
}

#: Config fields each measure depends on (beyond the common ones).
_PARAMS = {
    "hessian": ("hvp", "top_k", "eig_tol", "smallest", "min_tol", "save_eigenvectors"),
    "trace": ("hvp", "trace_samples", "trace_method"),
    "density": ("hvp", "slq_steps", "slq_draws", "slq_sigma2"),
    "eps": ("eps", "eps_maxiter", "eps_restarts", "eps_dim"),
    "sam": ("rho", "ascent_steps"),
    "asam": ("asam_rho", "eta", "ascent_steps"),
    "avg": ("sigma", "avg_samples"),
    "pacbayes": ("pacbayes_metric", "pacbayes_target", "pacbayes_samples",
                 "pacbayes_eps"),
    "width": ("directions", "tau", "normalization", "width_bn", "width_tol", "r_max"),
}
_COMMON = ("samples", "seed", "dtype")


def _params_json(measure: str, cfg: SharpnessConfig) -> str:
    d = cfg.to_dict()
    return json.dumps({k: d[k] for k in (*_COMMON, *_PARAMS[measure])}, sort_keys=True)


# =========================================================================== runner
def measure_solution(
    path: str | os.PathLike, solution: str = "swa",
    measures: Sequence[str] = MEASURES, cfg: SharpnessConfig | None = None, *,
    model: nn.Module | None = None, data: TensorData | None = None,
    recompute: bool = False, progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Compute ``measures`` of a stored solution and write each to the run file.

    Args:
        path: Run file.
        solution: Name under ``/solutions``.
        measures: Names from :data:`MEASURES`.
        cfg: Parameters (default :class:`SharpnessConfig`).
        model: The run's model (``None``: rebuilt with
            :func:`landscape.train.load_run_model`).
        data: The run's data (with ``model``).
        recompute: Recompute measures already stored with the same parameters.
        progress: tqdm progress bars on stderr.
        log: Called with one line per measure.

    Returns:
        ``{measure: attrs}`` of every measure now stored (computed or kept).

    Raises:
        UserError: For an unknown solution or measure, or bad parameters.
    """
    cfg = (cfg or SharpnessConfig()).validate()
    measures = parse_measures(measures)
    with store.open_run(path) as f:
        sol = store.read_solution(f, solution)
        stored = {m: f[f"measures/{solution}/{m}"].attrs.get("params")
                  for m in measures if f"measures/{solution}/{m}" in f}
    todo = [m for m in measures if recompute or stored.get(m) != _params_json(m, cfg)]
    ctx: _Context | None = None
    if todo:
        if model is None or data is None:
            from landscape.train import load_run_model

            model, data = load_run_model(path)
        ctx = _Context(model, data, sol, cfg)
        if log and ctx.samples < cfg.samples:
            log(f"{solution}: using all {ctx.samples} train samples (fewer than "
                f"--samples {cfg.samples})")
    out: dict[str, dict[str, Any]] = {}
    for m in measures:
        if m not in todo:
            with store.open_run(path) as f:
                out[m] = _plain_attrs(f[f"measures/{solution}/{m}"])
            if log:
                log(f"{solution} {m}: kept (stored with the same parameters)")
            continue
        assert ctx is not None
        fn, unit = _MEASURE_FUNCS[m]
        t0 = time.perf_counter()
        with _bar(progress, f"{solution} {m}", unit) as bar:
            attrs, arrays = fn(ctx, bar)
        attrs |= {"measure": m, "solution": solution, "samples": ctx.samples,
                  "seed": cfg.seed, "dtype": cfg.dtype,
                  "seconds": time.perf_counter() - t0,
                  "params": _params_json(m, cfg)}
        with store.edit_run(path) as f:
            g = f.require_group(f"measures/{solution}")
            if m in g:
                del g[m]
            grp = g.create_group(m)
            for k, v in arrays.items():
                store.write_array(grp, k, np.asarray(v))
            store.set_attrs(grp, {k: _attr_value(v) for k, v in attrs.items()})
        out[m] = attrs
        if log:
            log(f"{solution} {m}: {summarize(m, attrs)}")
    return out


def _attr_value(v: Any) -> Any:
    if v is None:
        return math.nan
    if isinstance(v, np.generic):
        return v.item()
    return v


def _plain_attrs(g: Any) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}


def summarize(measure: str, a: dict[str, Any]) -> str:
    """One line with the headline numbers of a stored measure.

    Returns:
        The line.
    """
    g = a.get
    if measure == "hessian":
        return (f"lambda_max {g('lambda_max'):.6g}, lambda_min {g('lambda_min'):.6g} "
                f"({g('n_hvp_top')}+{g('n_hvp_min')} HVPs)")
    if measure == "trace":
        return f"trace {g('trace'):.6g} ± {g('trace_sem'):.3g} ({g('n_hvp')} HVPs)"
    if measure == "density":
        return f"SLQ {g('steps')} steps x {g('draws')} draws ({g('n_hvp')} HVPs)"
    if measure == "eps":
        return f"eps-sharpness {g('value'):.6g} (eps {g('eps')})"
    if measure in ("sam", "asam"):
        return (f"{measure} sharpness {g('value'):.6g}, one-step {g('one_step'):.6g} "
                f"(rho {g('rho')})")
    if measure == "avg":
        return f"average sharpness {g('value'):.6g} ± {g('sem'):.3g} (sigma {g('sigma')})"
    if measure == "pacbayes":
        return (f"sigma {g('sigma'):.5g} ± {g('sigma_sem'):.2g}, sigma' "
                f"{g('sigma_mag'):.5g} ± {g('sigma_mag_sem'):.2g} "
                f"({g('metric')} rise {g('target')})")
    if measure == "width":
        return (f"median width {g('median'):.5g} [{g('ci_low'):.5g}, {g('ci_high'):.5g}] "
                f"over {g('directions')} directions (tau {g('tau')})")
    return ""


# =========================================================================== compare
#: (quantity label, measure, value attr, standard-error attr or None)
_SCALARS = (
    ("lambda_max", "hessian", "lambda_max", None),
    ("lambda_min", "hessian", "lambda_min", None),
    ("trace", "trace", "trace", "trace_sem"),
    ("eps_sharpness", "eps", "value", None),
    ("sam_sharpness", "sam", "value", None),
    ("asam_sharpness", "asam", "value", None),
    ("avg_sharpness", "avg", "value", "sem"),
    ("pacbayes_sigma", "pacbayes", "sigma", "sigma_sem"),
    ("pacbayes_sigma_mag", "pacbayes", "sigma_mag", "sigma_mag_sem"),
)


def compare_solutions(
    path: str | os.PathLike, solutions: Sequence[str] = ("sgd", "swa"), *,
    level: float = 0.95, n_boot: int = 2000, seed: int = 0, write: bool = True,
) -> list[dict[str, Any]]:
    """Stored measures of two solutions side by side, with ratios ``b / a``.

    Widths: medians with bootstrap intervals and the ratio of medians with a
    bootstrap interval (paired when both used the same directions).  Scalars
    with a standard error get a delta-method interval for the ratio.  Missing
    values are NaN.  The table is stored under ``/measures/compare``.

    Args:
        path: Run file.
        solutions: ``(a, b)``; ratios are ``b / a``.
        level: Confidence level.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
        write: Store the table in the run file.

    Returns:
        Rows ``{quantity, a, b, a_low, a_high, b_low, b_high, ratio, low, high,
        same_params}`` (and ``paired`` for the width).

    Raises:
        UserError: If not exactly two solutions are given or one is missing.
    """
    if len(solutions) != 2:
        raise UserError(f"--solutions takes two names, e.g. sgd,swa; got {list(solutions)}")
    a, b = solutions
    rows: list[dict[str, Any]] = []
    nan = math.nan
    with store.open_run(path) as f:
        for s in solutions:
            store.read_solution(f, s)  # raises a UserError naming the solutions there are
        meas = {s: f.get(f"measures/{s}") for s in solutions}
        if all(m is None for m in meas.values()):
            raise UserError(f"no measures stored for {a} or {b} in {path}; run "
                            f"`landscape sharpness {path} --solution {a}` first")
        wa, wb = (_dataset(meas[s], "width", "widths") for s in solutions)
        if wa is not None and wb is not None:
            pa, pb = (meas[s]["width"].attrs.get("params") for s in solutions)
            paired = pa == pb and wa.size == wb.size
            ma, la, ha = median_ci(wa, level, n_boot=n_boot, seed=seed)
            mb, lb, hb = median_ci(wb, level, n_boot=n_boot, seed=seed)
            r, lo, hi = width_ratio(wa, wb, level, paired=paired, n_boot=n_boot,
                                    seed=seed)
            tau = meas[a]["width"].attrs.get("tau", nan)
            rows.append({"quantity": f"width median (tau={tau:g})", "a": ma, "b": mb,
                         "a_low": la, "a_high": ha, "b_low": lb, "b_high": hb,
                         "ratio": r, "low": lo, "high": hi, "paired": bool(paired),
                         "same_params": pa == pb})
        z = float(_normal_quantile(0.5 + level / 2))
        for label, m, key, se_key in _SCALARS:
            va, vb = (_attr(meas[s], m, key) for s in solutions)
            if math.isnan(va) and math.isnan(vb):
                continue
            sa, sb = ((_attr(meas[s], m, se_key) if se_key else nan) for s in solutions)
            ratio = vb / va if va != 0 else nan
            lo = hi = nan
            if se_key and not math.isnan(ratio) and va and vb:
                rel = math.hypot(sa / va, sb / vb) if not (
                    math.isnan(sa) or math.isnan(sb)) else nan
                lo, hi = ratio * (1 - z * rel), ratio * (1 + z * rel)
            pa, pb = (meas[s][m].attrs.get("params") if meas[s] is not None and m in
                      meas[s] else None for s in solutions)
            rows.append({"quantity": label, "a": va, "b": vb,
                         "a_low": va - z * sa, "a_high": va + z * sa,
                         "b_low": vb - z * sb, "b_high": vb + z * sb,
                         "ratio": ratio, "low": lo, "high": hi,
                         "same_params": pa == pb})
    if not rows:
        raise UserError(f"{a} and {b} share no stored measure in {path}; run "
                        "`landscape sharpness` on both with the same --measures")
    if write:
        with store.edit_run(path) as f:
            g = f.require_group("measures")
            if "compare" in g:
                del g["compare"]
            c = g.create_group("compare")
            store.set_attrs(c, {"solutions": list(solutions), "level": level,
                                "n_boot": n_boot, "seed": seed, "ratio": f"{b}/{a}",
                                "width_paired": any(r.get("paired") for r in rows)})
            c.attrs["quantities"] = json.dumps([r["quantity"] for r in rows])
            for col in ("a", "b", "a_low", "a_high", "b_low", "b_high", "ratio", "low",
                        "high"):
                store.write_array(c, col, np.array([r[col] for r in rows], dtype=float))
    return rows


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _dataset(g: Any, measure: str, key: str) -> np.ndarray | None:
    if g is None or measure not in g or key not in g[measure]:
        return None
    return np.asarray(g[measure][key][()], dtype=np.float64)


def _attr(g: Any, measure: str, key: str) -> float:
    if g is None or measure not in g:
        return math.nan
    v = g[measure].attrs.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def format_comparison(rows: Sequence[dict[str, Any]],
                      solutions: Sequence[str] = ("sgd", "swa"), level: float = 0.95
                      ) -> str:
    """Markdown table of :func:`compare_solutions` rows.

    Returns:
        The table.
    """
    a, b = solutions
    pct = f"{100 * level:g} %"

    def cell(v: float, lo: float, hi: float) -> str:
        if math.isnan(v):
            return "—"
        if math.isnan(lo) or math.isnan(hi):
            return f"{v:.5g}"
        return f"{v:.5g} [{lo:.4g}, {hi:.4g}]"

    lines = [f"| quantity | {a} | {b} | {b}/{a} [{pct} CI] |", "|---|---|---|---|"]
    for r in rows:
        mark = "" if r.get("same_params", True) else " *"
        lines.append(f"| {r['quantity']}{mark} | {cell(r['a'], r['a_low'], r['a_high'])}"
                     f" | {cell(r['b'], r['b_low'], r['b_high'])} | "
                     f"{cell(r['ratio'], r['low'], r['high'])} |")
    if any(not r.get("same_params", True) for r in rows):
        lines.append(f"* measured with different parameters for {a} and {b}; rerun "
                     "`landscape sharpness` with the same flags for both")
    return "\n".join(lines)


__all__ = ["MEASURES", "SharpnessConfig", "compare_solutions", "format_comparison",
           "measure_solution", "parse_measures", "summarize"]
