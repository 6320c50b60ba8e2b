r"""Random-direction width of a solution (the SWA paper's "solution width").

Izmailov et al. (UAI 2018, §3.4) plot the train loss along random rays
:math:`\theta + r d` from the SWA and SGD solutions and find SWA's curves rise
later.  The toolkit turns the plots into a number per direction:

.. math::
    w_\tau(\theta, d) = \min\{ r > 0 : L(\theta + r d) - L(\theta) \ge \tau \},

found by bracketing (doubling or halving ``r_init``) and then bisection to a
relative precision ``rel_tol``.  A crossing that lies below the bracket, with
the loss coming back under :math:`\tau` inside one doubling, would be missed.
Over :math:`K` directions the summary is the median with a percentile
bootstrap 95 % interval; directions along which the loss never rises by
:math:`\tau` before ``r_max`` get width ``inf`` (kept as such in the median).

One median is used everywhere (the point estimate, every bootstrap replicate
and both medians of a ratio), so a ratio is always the ratio of the medians
reported beside it.  It is the usual sample median: the middle width for odd
:math:`K`, the midpoint of the two middle widths for even :math:`K`.  An
``inf`` width ("never rose by :math:`\tau`") sorts above every finite one and
a midpoint involving ``inf`` is ``inf``, so the median is finite exactly when
more than half of the directions reached :math:`\tau`
(``[1, 2, 3, inf]`` → 2.5, ``[1, 2, inf, inf]`` → inf); for finite widths it
equals ``np.median``.  A ratio ``median(b) / median(a)`` is then 0 when only
``a``'s median is infinite, ``inf`` when only ``b``'s is, and NaN when both are.
NaN widths (missing) are dropped.

Directions are unit L2 vectors over all parameters (uniform on the sphere), so
``r`` is an L2 distance; or filter-normalized (Li et al. 2018, bias and BN
entries zeroed), so ``r`` is relative to each filter's norm.

For a quadratic at its minimum, :math:`w_\tau = \sqrt{2\tau / d^\top H d}`.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> f = lambda w: float(0.5 * w @ H @ w)
    >>> d = torch.eye(3, dtype=torch.float64)
    >>> r = random_widths(f, torch.zeros(3, dtype=torch.float64), d, tau=0.5,
    ...                   rel_tol=1e-12)
    >>> np.round(r.widths, 9).tolist()  # sqrt(2 tau / H_ii)
    [0.5, 1.0, 2.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserTypeError
from landscape.directions import Normalization, random_direction
from landscape.params import ParamLayout
from landscape.sharpness._base import Metric, Objective, check_flat, loss_value
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register


def width_along(
    rise: Callable[[float], float], tau: float, *, r_init: float = 1.0,
    r_max: float = 1e4, rel_tol: float = 1e-3, r_min: float = 1e-12,
) -> tuple[float, int]:
    r"""Smallest ``r`` with ``rise(r) >= tau``: bracketing, then bisection.

    Args:
        rise: :math:`r \mapsto L(\theta + r d) - L(\theta)`.
        tau: Threshold :math:`\tau > 0`.
        r_init: First radius tried.
        r_max: Give up (return ``inf``) beyond this radius.
        rel_tol: Relative width of the final bracket.
        r_min: Return ``r_min`` if the rise exceeds ``tau`` even there.

    Returns:
        ``(width, number of rise evaluations)``; the width is the midpoint of the
        final bracket.

    Raises:
        ValueError: If ``tau``, ``r_init`` or ``rel_tol`` is not positive.
    """
    if tau <= 0 or r_init <= 0 or rel_tol <= 0:
        raise ValueError(f"need tau, r_init, rel_tol > 0; got {tau}, {r_init}, {rel_tol}")
    n = 1
    if rise(r_init) >= tau:
        hi = r_init
        while True:
            lo = hi / 2
            if lo < r_min:
                return r_min, n
            n += 1
            if rise(lo) < tau:
                break
            hi = lo
    else:
        lo = r_init
        while True:
            hi = 2 * lo
            if hi > r_max:
                return math.inf, n
            n += 1
            if rise(hi) >= tau:
                break
            lo = hi
    while hi - lo > rel_tol * hi:
        mid = 0.5 * (lo + hi)
        n += 1
        if rise(mid) >= tau:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi), n


@dataclass(frozen=True)
class WidthResult:
    """Widths along several directions.

    Attributes:
        widths: ``(K,)`` one width per direction (``inf``: not reached).
        loss: :math:`L(\\theta)`.
        tau: The threshold.
        n_evals: Loss evaluations (forward passes).
    """

    widths: np.ndarray
    loss: float
    tau: float
    n_evals: int

    def summary(self, level: float = 0.95, n_boot: int = 2000, seed: int = 0
                ) -> tuple[float, float, float]:
        """Median with its bootstrap interval (see :func:`median_ci`).

        Returns:
            ``(median, low, high)``.
        """
        return median_ci(self.widths, level, n_boot=n_boot, seed=seed)


def random_widths(
    loss: Metric | Objective, theta: Tensor, directions: Tensor, tau: float = 0.1, *,
    r_init: float = 1.0, r_max: float = 1e4, rel_tol: float = 1e-3,
) -> WidthResult:
    r"""Width :math:`w_\tau(\theta, d_k)` along each row of ``directions``.

    Args:
        loss: Train loss of a flat vector (no gradient needed).
        theta: The solution, ``(n,)``.
        directions: ``(K, n)`` directions (unit, or filter-normalized).
        tau: Loss rise that defines the width.
        r_init: First radius tried per direction.
        r_max: Largest radius tried.
        rel_tol: Relative precision of each width.

    Returns:
        The widths and the number of loss evaluations.

    Raises:
        ValueError: If ``directions`` is not ``(K, n)``.
    """
    check_flat(theta)
    w = theta.detach()
    if directions.ndim != 2 or directions.shape[1] != w.numel():
        raise ValueError(f"directions must have shape (K, {w.numel()}), got "
                         f"{tuple(directions.shape)}")
    base = loss_value(loss, w)
    widths = np.empty(directions.shape[0])
    n_evals = 1
    for k, d in enumerate(directions.to(w)):
        widths[k], n = width_along(lambda r, d=d: loss_value(loss, w + r * d) - base, tau,
                                   r_init=r_init, r_max=r_max, rel_tol=rel_tol)
        n_evals += n
    return WidthResult(widths, base, tau, n_evals)


def width_directions(
    layout: ParamLayout, theta: Tensor, count: int, *,
    normalization: Normalization | str = "none", seed: int = 0,
) -> Tensor:
    """``count`` random directions for :func:`random_widths` (float64, ``(K, n)``).

    ``none``: Gaussian over all entries, scaled to unit L2 norm.  ``filter`` /
    ``layer``: normalized to ``theta`` as in Li et al. 2018 (bias and BN
    entries zeroed), not rescaled.  The same seed gives the same Gaussian draws
    for every solution of a model.

    Returns:
        The directions, one per row.

    Raises:
        ValueError: If ``count`` is not positive.
    """
    if count < 1:
        raise ValueError(f"need at least one direction, got {count}")
    norm = Normalization(normalization)
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(count):
        d = random_direction(layout, theta.detach().cpu(), norm=norm,
                             keep_bias_bn=norm is Normalization.NONE, generator=gen)
        out.append(d / d.norm() if norm is Normalization.NONE else d)
    return torch.stack(out)


def _widths(widths: np.ndarray) -> np.ndarray:
    """Widths as a flat float64 array (NaN kept).

    Raises:
        ValueError: If a width is negative.
    """
    arrays = getattr(widths, "arrays", None)  # a width measure's result
    if isinstance(arrays, dict) and "widths" in arrays:
        widths = arrays["widths"]
    try:
        x = np.asarray(widths, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise UserTypeError(f"widths must be an array of widths or a 'width' measure's "
                            f"result, got {type(widths).__name__}") from None
    if (x < 0).any():
        raise ValueError("widths must be >= 0 (inf: not reached); pass the widths "
                         "random_widths returned")
    return x


def _median(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The module's one median (see the module docstring): midpoint rule, inf-aware.

    Returns:
        The median of ``x`` (along ``axis``); ``inf`` if a middle value is ``inf``.
    """
    # np.median averages the two middle values of an even count: (w + inf) / 2
    # and (inf + inf) / 2 are inf, never NaN, as widths are never -inf.
    return np.median(x, axis=axis)


def _quantiles(boot: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2  # no interpolation, so inf widths give inf, not nan
    return (float(np.quantile(boot, a, method="lower")),
            float(np.quantile(boot, 1 - a, method="higher")))


def median_ci(widths: np.ndarray, level: float = 0.95, *, n_boot: int = 2000,
              seed: int = 0) -> tuple[float, float, float]:
    """Median and percentile-bootstrap interval of the median (``inf`` allowed).

    The median is the module's one definition (midpoint rule; ``inf`` when a
    middle width is ``inf``), for the estimate and for every replicate.

    Returns:
        ``(median, low, high)``; NaN interval for fewer than two values.

    Raises:
        ValueError: If there are no widths, a width is negative, or the level
            is outside (0, 1).

    Example:
        >>> median_ci(np.array([1.0, 2.0, 3.0, np.inf]), n_boot=10)[0]
        2.5
    """
    x = _widths(widths)
    x = x[~np.isnan(x)]
    if x.size == 0 or not 0 < level < 1:
        raise ValueError(f"need widths and a level in (0, 1); got {x.size} values, "
                         f"level {level}")
    est = float(_median(x))
    if x.size < 2:
        return est, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot = _median(x[rng.integers(0, x.size, (n_boot, x.size))], axis=1)
    return (est, *_quantiles(boot, level))


def width_ratio(
    widths_a: np.ndarray, widths_b: np.ndarray, level: float = 0.95, *,
    paired: bool = False, n_boot: int = 2000, seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio of median widths ``median(b) / median(a)`` with a bootstrap interval.

    Both medians are those :func:`median_ci` reports, so the ratio is exactly
    the ratio of the two printed medians (0, ``inf`` or NaN when a median is
    ``inf``; replicates that are NaN are left out of the interval).

    Args:
        widths_a: Widths of the reference solution (e.g. SGD).
        widths_b: Widths of the other (e.g. SWA).
        level: Confidence level.
        paired: Resample direction indices jointly (same directions for both).
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(ratio, low, high)``.

    Raises:
        ValueError: If a set is empty (after dropping NaN), a width is negative,
            or ``paired`` with different sizes.

    Example:
        >>> width_ratio(np.array([1.0, 2.0, 3.0, np.inf]), np.array([3.0, 5.0, 7.0]))[0]
        2.0
    """
    a, b = _widths(widths_a), _widths(widths_b)
    if paired and a.size != b.size:
        raise ValueError(f"paired widths need equal counts, got {a.size} and {b.size}")
    if paired:
        keep = ~(np.isnan(a) | np.isnan(b))
        a, b = a[keep], b[keep]
    else:
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError("both width sets must be non-empty (NaN widths are dropped)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(_median(b) / _median(a))
        if min(a.size, b.size) < 2:
            return ratio, math.nan, math.nan
        rng = np.random.default_rng(seed)
        ia = rng.integers(0, a.size, (n_boot, a.size))
        ib = ia if paired else rng.integers(0, b.size, (n_boot, b.size))
        boot = _median(b[ib], axis=1) / _median(a[ia], axis=1)
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return ratio, math.nan, math.nan
    return (ratio, *_quantiles(boot, level))


# =========================================================================== measure
@dataclass(frozen=True)
class WidthParams:
    """Parameters of the ``width`` measure."""

    directions: int = param(20, "random directions for the width")
    tau: float = param(0.1, "train-loss rise that defines the width")
    normalization: str = param("none", "width directions: none (unit L2), filter, layer",
                               choices=tuple(n.value for n in Normalization))
    width_bn: str = param("keep", "BN statistics along width rays: keep or recompute",
                          choices=("keep", "recompute"))
    width_tol: float = param(1e-3, "relative precision of each width")
    r_max: float = param(1e4, "largest radius searched (beyond: width inf)")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive setting."""
        check_positive(self, "directions", "tau", "width_tol", "r_max")


def width_measure(ctx: MeasureContext, p: WidthParams) -> Result:
    """Random-direction widths of the context's solution.

    Returns:
        Scalars (median with its bootstrap interval, settings) and the ``widths``.
    """
    loss: Metric | Objective = ctx.objective()
    if p.width_bn == "recompute" and ctx.buffer_layout.numel:
        loss = ctx.count(ctx.recomputed_loss)
    dirs = width_directions(ctx.layout, ctx.theta.cpu(), p.directions,
                            normalization=p.normalization, seed=ctx.seed)
    r = random_widths(loss, ctx.theta, dirs.to(ctx.device), p.tau, rel_tol=p.width_tol,
                      r_max=p.r_max)
    med, lo, hi = median_ci(r.widths, seed=ctx.seed)
    units = "l2" if p.normalization == "none" else f"{p.normalization}-normalized"
    return ({"median": med, "ci_low": lo, "ci_high": hi, "level": 0.95,
             "tau": p.tau, "directions": p.directions, "normalization": p.normalization,
             "units": units, "bn": p.width_bn, "loss": r.loss, "n_evals": r.n_evals,
             "n_unreached": int(np.isinf(r.widths).sum())},
            {"widths": r.widths})


register(MeasureSpec(
    name="width", order=90, params=WidthParams, compute=width_measure, unit="f",
    summary="distance along random directions at which train loss rises by tau",
    headline=(Headline("median", "median width (L2, τ)", flatter="higher",
                       distribution="widths"),),
    datasets=("widths",),
    line=lambda a: (f"median width {a['median']:.5g} [{a['ci_low']:.5g}, "
                    f"{a['ci_high']:.5g}] over {a['directions']} directions "
                    f"(tau {a['tau']})"),
    reference="Izmailov et al. (UAI 2018), §3.4 solution width"))
