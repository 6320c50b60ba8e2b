r"""PAC-Bayes flatness: the noise scale σ a solution tolerates (Jiang et al., ICLR 2020).

"Fantastic Generalization Measures and Where to Find Them", measures (53) and
(61): :math:`1/\sigma^2` and :math:`1/\sigma'^2`, where :math:`\sigma` is the
largest standard deviation with

.. math::
    E_{u}\,[\hat L(\theta + u)] - \hat L(\theta) \le \Delta,

for :math:`u \sim \mathcal N(0, \sigma^2 I)` (plain) or
:math:`u_i \sim \mathcal N(0, \sigma'^2 \theta_i^2 + \epsilon^2)`
(magnitude-aware, :math:`\epsilon = 10^{-3}`).  Jiang et al. use the train
0-1 error for :math:`\hat L` and :math:`\Delta = 0.1`; a loss works as well and
has closed forms: for a quadratic, :math:`\sigma^* = \sqrt{2\Delta/\operatorname
{tr} H}` and :math:`\sigma'^*` solves :math:`\frac12\sum_i H_{ii}
(\sigma'^2\theta_i^2 + \epsilon^2) = \Delta`.

Convention: :math:`\sigma` is a standard deviation (nitarshan/robust-
generalization-measures passes :math:`\sigma^2` as the std; its σ is the
square root of this one).

The search fixes the Monte Carlo draws :math:`z_k` for all :math:`\sigma`
(common random numbers, :math:`u_k = \sigma z_k`), so the estimated rise is a
deterministic function of σ; it brackets σ by doubling/halving and then
bisects in log space to relative precision ``rel_tol``.  The Monte Carlo
standard error of σ follows from the delta method: the standard error of the
rise at σ divided by the slope of the rise there (central difference at
±10 %).  With ``eps = 0`` the magnitude-aware σ' is exactly invariant to
loss-preserving diagonal rescalings (Dinh et al.'s α-rescaling).

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> f = lambda w: float(0.5 * w @ H @ w)
    >>> r = pacbayes_sigma(f, torch.zeros(3, dtype=torch.float64), 0.01, samples=2000)
    >>> abs(r.sigma - (2 * 0.01 / 5.25) ** 0.5) < 3 * r.sigma_sem  # 0.0617213
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape.sharpness._base import (
    Metric,
    Objective,
    check_flat,
    gaussian,
    generator,
    loss_value,
    sem,
)
from landscape.sharpness._registry import (
    Headline,
    MeasureContext,
    MeasureSpec,
    Result,
    check_positive,
    param,
    register,
)


@dataclass(frozen=True)
class SigmaSearch:
    """Result of :func:`pacbayes_sigma`.

    Attributes:
        sigma: The noise scale at which the expected rise reaches ``target``
            (``inf`` if it never does below ``sigma_max``).
        sigma_sem: Monte Carlo standard error of ``sigma`` (delta method).
        rise: Estimated rise at the bracket end nearest ``target``.
        rise_sem: Its standard error.
        target: :math:`\\Delta`.
        base: :math:`\\hat L(\\theta)`.
        magnitude_aware: Whether the noise scales with :math:`|\\theta_i|`.
        eps: The magnitude-aware offset :math:`\\epsilon`.
        trace_sigma: Every σ evaluated, in order.
        trace_rise: The estimated rise at each.
        n_evals: Metric evaluations (forward passes).
    """

    sigma: float
    sigma_sem: float
    rise: float
    rise_sem: float
    target: float
    base: float
    magnitude_aware: bool
    eps: float
    trace_sigma: np.ndarray
    trace_rise: np.ndarray
    n_evals: int

    @property
    def flatness(self) -> float:
        r"""Jiang et al.'s flatness measure :math:`1/\sigma^2`."""
        return 1.0 / self.sigma**2 if self.sigma > 0 else math.inf


def pacbayes_sigma(
    metric: Metric | Objective, theta: Tensor, target: float = 0.1, *,
    magnitude_aware: bool = False, eps: float = 1e-3, samples: int = 10,
    sigma_init: float = 0.05, sigma_min: float = 1e-8, sigma_max: float = 100.0,
    rel_tol: float = 1e-3, max_steps: int = 60, seed: int = 0,
) -> SigmaSearch:
    r"""σ (or σ') at which the expected rise of ``metric`` under noise is ``target``.

    Args:
        metric: Train 0-1 error or loss of a flat vector (no gradient needed).
        theta: The solution, ``(n,)``.
        target: The rise :math:`\Delta` (Jiang: 0.1 of 0-1 error).
        magnitude_aware: Noise variance :math:`\sigma^2\theta_i^2 + \epsilon^2`
            instead of :math:`\sigma^2`.
        eps: :math:`\epsilon` of the magnitude-aware noise.
        samples: Monte Carlo draws per σ (Jiang's code: 10).
        sigma_init: First σ tried.
        sigma_min: Smallest σ tried; below it the result is ``sigma_min``.
        sigma_max: Largest σ tried; beyond it the result is ``inf``.
        rel_tol: Relative width of the final bracket.
        max_steps: Maximum number of σ values evaluated in the search.
        seed: Seed of the draws.

    Returns:
        σ with its standard error and the search trace.

    Raises:
        ValueError: If ``target`` or ``samples`` is not positive.
    """
    check_flat(theta)
    if target <= 0 or samples < 1:
        raise ValueError(f"need target > 0 and samples >= 1, got {target}, {samples}")
    w = theta.detach()
    base = loss_value(metric, w)
    n_evals = 1
    trace_s: list[float] = []
    trace_r: list[float] = []
    per: dict[float, np.ndarray] = {}

    def noise(k: int, sigma: float) -> Tensor:
        z = gaussian(w.numel(), generator(seed * 1_000_003 + k, w.device), w.dtype,
                     w.device)
        if magnitude_aware:
            return torch.sqrt(sigma**2 * w * w + eps**2) * z
        return sigma * z

    def rise(sigma: float) -> float:
        nonlocal n_evals
        if sigma not in per:
            per[sigma] = np.array([loss_value(metric, w + noise(k, sigma))
                                   for k in range(samples)]) - base
            n_evals += samples
            trace_s.append(sigma)
            trace_r.append(float(per[sigma].mean()))
        return float(per[sigma].mean())

    def result(sigma: float, at: float) -> SigmaSearch:
        r = per[at] if at in per else np.array([np.nan])
        sig_sem = math.nan
        if math.isfinite(sigma) and sigma > sigma_min:
            slope = (rise(1.1 * sigma) - rise(0.9 * sigma)) / (0.2 * sigma)
            if slope > 0:
                sig_sem = sem(r) / slope
        return SigmaSearch(sigma, sig_sem, float(r.mean()), sem(r), target, base,
                           magnitude_aware, eps, np.array(trace_s), np.array(trace_r),
                           n_evals)

    lo, hi = 0.0, sigma_init
    while rise(hi) < target:  # bracket from above
        lo, hi = hi, 2 * hi
        if hi > sigma_max:
            return result(math.inf, lo)
    if lo == 0.0:  # bracket from below
        lo = hi / 2
        while rise(lo) >= target:
            hi, lo = lo, lo / 2
            if lo < sigma_min:
                return result(sigma_min, hi)
    while hi / lo - 1 > rel_tol and len(trace_s) < max_steps:
        mid = math.sqrt(lo * hi)
        if rise(mid) < target:
            lo = mid
        else:
            hi = mid
    near = min((lo, hi), key=lambda s: abs(rise(s) - target))
    return result(math.sqrt(lo * hi), near)


# =========================================================================== measure
@dataclass(frozen=True)
class PacBayesParams:
    """Parameters of the ``pacbayes`` measure."""

    pacbayes_metric: str = param("error", "quantity whose rise defines sigma",
                                 choices=("error", "loss"))
    pacbayes_target: float = param(0.1, "rise of --pacbayes-metric that defines sigma")
    pacbayes_samples: int = param(10, "Monte Carlo draws per sigma")
    pacbayes_eps: float = param(1e-3, "magnitude-aware noise offset epsilon")

    def validate(self) -> None:
        """Raise a one-line error for a bad target, draw count or offset."""
        check_positive(self, "pacbayes_target", "pacbayes_samples")
        check_positive(self, "pacbayes_eps", allow_zero=True)


def pacbayes_measure(ctx: MeasureContext, p: PacBayesParams) -> Result:
    """PAC-Bayes σ and magnitude-aware σ' of the context's solution.

    Returns:
        Scalars (σ, σ', their standard errors, flatness 1/σ², rises) and the
        bisection traces.
    """
    metric = ctx.count(ctx.error) if p.pacbayes_metric == "error" else ctx.objective()
    attrs: dict[str, Any] = {"metric": p.pacbayes_metric, "target": p.pacbayes_target,
                             "mc_samples": p.pacbayes_samples, "eps": p.pacbayes_eps}
    arrays = {}
    for key, mag in (("", False), ("_mag", True)):
        r = pacbayes_sigma(metric, ctx.theta, p.pacbayes_target, magnitude_aware=mag,
                           eps=p.pacbayes_eps, samples=p.pacbayes_samples, seed=ctx.seed)
        attrs |= {f"sigma{key}": r.sigma, f"sigma{key}_sem": r.sigma_sem,
                  f"flatness{key}": r.flatness, f"rise{key}": r.rise,
                  f"rise{key}_sem": r.rise_sem}
        attrs["base"] = r.base
        arrays |= {f"trace_sigma{key}": r.trace_sigma, f"trace_rise{key}": r.trace_rise}
    attrs["n_evals"] = metric.calls
    return attrs, arrays


register(MeasureSpec(
    name="pacbayes", order=80, params=PacBayesParams, compute=pacbayes_measure, unit="f",
    summary="Jiang et al. 2020 PAC-Bayes sigma and magnitude-aware sigma'",
    headline=(Headline("sigma", "PAC-Bayes σ", sem="sigma_sem", flatter="higher"),
              Headline("sigma_mag", "PAC-Bayes σ′ (magnitude-aware)", sem="sigma_mag_sem",
                       flatter="higher")),
    datasets=("trace_sigma", "trace_rise", "trace_sigma_mag", "trace_rise_mag"),
    line=lambda a: (f"sigma {a['sigma']:.5g} ± {a['sigma_sem']:.2g}, sigma' "
                    f"{a['sigma_mag']:.5g} ± {a['sigma_mag_sem']:.2g} "
                    f"({a['metric']} rise {a['target']})"),
    reference="Jiang, Neyshabur, Mobahi, Krishnan & Bengio (ICLR 2020)"))
