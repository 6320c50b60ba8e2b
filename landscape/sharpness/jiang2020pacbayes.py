r"""PAC-Bayes flatness and bounds: the noise scale σ a solution tolerates (Jiang et al., ICLR 2020).

"Fantastic Generalization Measures and Where to Find Them", measures (53) and
(61): :math:`1/\sigma^2` and :math:`1/\sigma'^2`, where :math:`\sigma` is the
largest standard deviation with

.. math::
    E_{u}\,[\hat L(\theta + u)] \le \Delta \quad \text{(absolute)} \qquad
    \text{or} \qquad E_{u}\,[\hat L(\theta + u)] - \hat L(\theta) \le \Delta
    \quad \text{(rise)},

for :math:`u \sim \mathcal N(0, \sigma^2 I)` (plain) or
:math:`u_i \sim \mathcal N(0, \sigma'^2 \theta_i^2 + \epsilon^2)`
(magnitude-aware, :math:`\epsilon = 10^{-3}`).  Jiang et al. use the train
0-1 error for :math:`\hat L` and :math:`\Delta = 0.1` on networks trained to
(almost) zero train error, where the two forms coincide; their paper states
the absolute form, the reference code (nitarshan/robust-generalization-
measures, adapted from Jiang's pseudo-code) searches the rise
:math:`|\mathrm{acc}(\theta + u) - \mathrm{acc}(\theta)| = 0.1`.  Both are
offered (``bound``); see :func:`pacbayes_sigma` for the default.  A loss works
as well and has closed forms: for a quadratic with minimum value :math:`c`,
:math:`\sigma^* = \sqrt{2\Delta/\operatorname{tr} H}` (rise) or
:math:`\sqrt{2(\Delta - c)/\operatorname{tr} H}` (absolute), and
:math:`\sigma'^*` solves :math:`\frac12\sum_i H_{ii} (\sigma'^2\theta_i^2 +
\epsilon^2) = \Delta` (rise).

The measures Jiang et al. rank are also the bound forms (48), (49), (56) and
(57) built from σ and σ' (:func:`pacbayes_bound`, :func:`pacbayes_mag_bound`,
:func:`pacbayes_measures`).  They are PAC-Bayes bounds, up to the fixed
:math:`E\hat L \le 0.1` term, in the absolute form.

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
from enum import Enum
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
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register


class PacBayesBound(str, Enum):
    """What the σ search holds at ``target``: the perturbed metric or its rise."""

    RISE = "rise"  # E[L(θ+u)] - L(θ) = Δ (nitarshan's code)
    ABSOLUTE = "absolute"  # E[L(θ+u)] = Δ (Jiang et al.'s formula)


@dataclass(frozen=True)
class SigmaSearch:
    """Result of :func:`pacbayes_sigma`.

    Attributes:
        sigma: The noise scale at which the expected rise (``bound="rise"``)
            or the expected metric (``"absolute"``) reaches ``target``
            (``inf`` if it never does below ``sigma_max``; NaN for
            ``"absolute"`` when the unperturbed metric already reaches it).
        sigma_sem: Monte Carlo standard error of ``sigma`` (delta method).
        rise: Estimated rise at the bracket end nearest ``target``.
        rise_sem: Its standard error.
        target: :math:`\\Delta`, a rise or a level as ``bound`` says.
        base: :math:`\\hat L(\\theta)`.
        magnitude_aware: Whether the noise scales with :math:`|\\theta_i|`.
        eps: The magnitude-aware offset :math:`\\epsilon`.
        trace_sigma: Every σ evaluated, in order.
        trace_rise: The estimated rise at each (for ``"absolute"`` the
            search compares ``base + rise`` with ``target``).
        n_evals: Metric evaluations (forward passes).
        bound: The :class:`PacBayesBound` value searched.
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
    bound: str = PacBayesBound.RISE.value

    @property
    def flatness(self) -> float:
        r"""Jiang et al.'s flatness measure :math:`1/\sigma^2`."""
        if math.isnan(self.sigma):
            return math.nan
        return 1.0 / self.sigma**2 if self.sigma > 0 else math.inf


def pacbayes_sigma(
    metric: Metric | Objective, theta: Tensor, target: float = 0.1, *,
    magnitude_aware: bool = False, eps: float = 1e-3, samples: int = 10,
    sigma_init: float = 0.05, sigma_min: float = 1e-8, sigma_max: float = 100.0,
    rel_tol: float = 1e-3, max_steps: int = 60, seed: int = 0,
    bound: PacBayesBound | str = PacBayesBound.RISE,
) -> SigmaSearch:
    r"""σ (or σ') at which ``metric`` under noise reaches ``target``.

    ``bound="rise"`` (the default) finds σ with :math:`E_u[\hat L(\theta + u)]
    - \hat L(\theta) = \Delta`; ``"absolute"`` finds σ with
    :math:`E_u[\hat L(\theta + u)] = \Delta`, Jiang et al.'s formula, the
    same search at the rise :math:`\Delta - \hat L(\theta)`.  The default is
    the rise because it measures how much noise the solution tolerates apart
    from how well it fits: the absolute σ of a solution with train error
    0.05 spends half of a 0.1 budget before any noise, so it mixes fit with
    flatness (an SWA solution and an SGD solution of different train error
    are not compared at equal noise tolerance), and it is undefined (NaN) once
    the train error or loss exceeds ``target``.  Jiang et al. train every
    network to ≈0 train error, where the two coincide; and the reference code
    (nitarshan/robust-generalization-measures) searches the rise.  Use
    ``"absolute"`` when the bound forms (:func:`pacbayes_bound`,
    :func:`pacbayes_mag_bound`) are to be read as PAC-Bayes bounds.

    Args:
        metric: Train 0-1 error or loss of a flat vector (no gradient needed).
        theta: The solution, ``(n,)``.
        target: :math:`\Delta`: the rise, or the level for ``"absolute"``
            (Jiang: 0.1 of 0-1 error).
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
        bound: A :class:`PacBayesBound`: ``"rise"`` or ``"absolute"``.

    Returns:
        σ with its standard error and the search trace; σ is NaN for
        ``"absolute"`` when :math:`\hat L(\theta) \ge` ``target``.

    Raises:
        ValueError: If ``target`` or ``samples`` is not positive.
    """
    check_flat(theta)
    bound = PacBayesBound(bound)
    if target <= 0 or samples < 1:
        raise ValueError(f"need target > 0 and samples >= 1, got {target}, {samples}")
    w = theta.detach()
    base = loss_value(metric, w)
    n_evals = 1
    level = target  # what the search compares with the estimated rise
    if bound is PacBayesBound.ABSOLUTE:
        level = target - base
        if level <= 0:  # the unperturbed metric is already at the target
            return SigmaSearch(math.nan, math.nan, 0.0, math.nan, target, base,
                               magnitude_aware, eps, np.array([]), np.array([]), n_evals,
                               bound.value)
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
                           n_evals, bound.value)

    lo, hi = 0.0, sigma_init
    while rise(hi) < level:  # bracket from above
        lo, hi = hi, 2 * hi
        if hi > sigma_max:
            return result(math.inf, lo)
    if lo == 0.0:  # bracket from below
        lo = hi / 2
        while rise(lo) >= level:
            hi, lo = lo, lo / 2
            if lo < sigma_min:
                return result(sigma_min, hi)
    while hi / lo - 1 > rel_tol and len(trace_s) < max_steps:
        mid = math.sqrt(lo * hi)
        if rise(mid) < level:
            lo = mid
        else:
            hi = mid
    near = min((lo, hi), key=lambda s: abs(rise(s) - level))
    return result(math.sqrt(lo * hi), near)


# =========================================================================== bound forms
def _check_bound_args(w: Tensor, w0: Tensor | None, sigma: float, m: int) -> None:
    check_flat(w, "w")
    if w0 is not None and w0.shape != w.shape:
        raise ValueError(f"w0 has shape {tuple(w0.shape)} but w has {tuple(w.shape)}; pass "
                         "the initial weights in the same layout as w")
    if not sigma > 0 or m < 1:
        raise ValueError(f"need sigma > 0 and m >= 1, got sigma={sigma}, m={m}; pass the "
                         "sigma of pacbayes_sigma and the number of train samples")


def pacbayes_bound(w: Tensor, sigma: float, m: int, w0: Tensor | None = None) -> float:
    r"""Jiang et al.'s PAC-Bayes bound forms (48) pac-bayes-init and (49) pac-bayes-orig.

    .. math::
        \mu_{\text{pac-bayes-init}} = \frac{\|w - w_0\|_2^2}{4\sigma^2}
        + \log\frac{m}{\sigma} + 10, \qquad
        \mu_{\text{pac-bayes-orig}} = \frac{\|w\|_2^2}{4\sigma^2}
        + \log\frac{m}{\sigma} + 10,

    the KL term of the McAllester bound between :math:`\mathcal N(w, \sigma^2 I)`
    and a prior :math:`\mathcal N(w_0, \sigma^2 I)` (or centred at 0), with
    σ from :func:`pacbayes_sigma` (plain noise).  The :math:`\log(m/\sigma)`
    term is the paper's and nitarshan/robust-generalization-measures'.  Jiang
    et al. and that code take ``w`` as the weights only (no biases or
    BatchNorm parameters) after folding BatchNorm into the layer before it.

    Args:
        w: The solution's weights, ``(n,)``.
        sigma: σ, a standard deviation.
        m: Number of training samples.
        w0: The initial weights (48), or ``None`` for the norm of ``w`` (49).

    Returns:
        The bound form; NaN if ``sigma`` is NaN or infinite (the search found
        no σ).

    Raises:
        ValueError: If ``sigma`` is not positive, ``m < 1`` or ``w0`` does not
            match ``w``.

    Example:
        >>> w, w0 = torch.tensor([3.0, -4.0]), torch.tensor([1.0, -1.0])
        >>> round(pacbayes_bound(w, 0.5, 100, w0), 6)  # 13 + log(200) + 10
        28.298317
    """
    if math.isnan(sigma) or math.isinf(sigma):
        return math.nan
    _check_bound_args(w, w0, sigma, m)
    d = (w if w0 is None else w - w0).detach().to(torch.float64)
    return float(d @ d) / (4 * sigma**2) + math.log(m / sigma) + 10


def pacbayes_mag_bound(
    w: Tensor, sigma_mag: float, m: int, w0: Tensor | None = None, *,
    eps: float = 1e-3, delta: float | None = None,
) -> float:
    r"""Jiang et al.'s magnitude-aware bound forms (56) pac-bayes-mag-init and (57) -orig.

    With :math:`d = w - w_0` (56) or :math:`d = w` (57), :math:`\omega` the
    number of parameters and σ' from :func:`pacbayes_sigma` with
    ``magnitude_aware=True``:

    .. math::
        \mu = \frac14 \sum_{i=1}^{\omega} \log
        \frac{\epsilon^2 + (\sigma'^2 + 1)\|d\|_2^2/\omega}
             {\epsilon^2 + \sigma'^2 d_i^2}
        + \log\frac{m}{\delta} + 10 .

    This is the KL term between the posterior
    :math:`\mathcal N(w, \mathrm{diag}(\sigma'^2 d_i^2 + \epsilon^2))` and the
    isotropic prior around :math:`w - d` whose variance minimizes it,
    :math:`\epsilon^2 + (\sigma'^2 + 1)\|d\|^2/\omega`; so for (57) the
    denominator has :math:`w_i` (the prior is centred at 0).
    nitarshan/robust-generalization-measures keeps :math:`w_i - w_{0,i}` in
    the denominator of both; this follows the derivation instead.

    ``delta``: the paper writes :math:`\log(m/\delta)` with a confidence δ;
    nitarshan's code, adapted from Jiang's pseudo-code, uses
    :math:`\log(m/\sigma')`, as (48) and (49) use :math:`\log(m/\sigma)`.
    ``None`` (the default) takes :math:`\delta = \sigma'` to reproduce that
    code; a fixed δ gives the paper's form, which adds the same constant to
    every model trained on ``m`` samples and so never changes a ranking.

    Args:
        w: The solution's weights, ``(n,)``.
        sigma_mag: σ', a standard deviation.
        m: Number of training samples.
        w0: The initial weights (56), or ``None`` (57).
        eps: :math:`\epsilon` of the magnitude-aware noise (Jiang: 1e-3).
        delta: Confidence δ, or ``None`` for :math:`\delta = \sigma'`.

    Returns:
        The bound form; NaN if ``sigma_mag`` is NaN or infinite.

    Raises:
        ValueError: If ``sigma_mag`` or ``delta`` is not positive, ``m < 1``,
            ``w0`` does not match ``w``, or ``eps = 0`` with a zero entry of
            :math:`d` (the log is then infinite).

    Example:
        >>> w = torch.tensor([3.0, -4.0])  # log(15.625**2 / 9) / 4 + log(200) + 10:
        >>> round(pacbayes_mag_bound(w, 0.5, 100, eps=0.0), 6)
        16.123447
    """
    if math.isnan(sigma_mag) or math.isinf(sigma_mag):
        return math.nan
    _check_bound_args(w, w0, sigma_mag, m)
    if delta is not None and not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}; pass a confidence in (0, 1) "
                         "or None for delta = sigma'")
    d = (w if w0 is None else w - w0).detach().to(torch.float64)
    omega = d.numel()
    num = eps**2 + (sigma_mag**2 + 1) * float(d @ d) / omega
    den = eps**2 + sigma_mag**2 * d * d  # (omega,)
    if bool((den == 0).any()):
        raise ValueError("eps = 0 and an entry of w - w0 (or w) is zero, so the bound is "
                         "infinite; use eps > 0 (Jiang: 1e-3)")
    delta = sigma_mag if delta is None else delta
    return 0.25 * float(torch.log(num / den).sum()) + math.log(m / delta) + 10


def pacbayes_measures(
    w: Tensor, w0: Tensor, sigma: float, sigma_mag: float, m: int, *,
    eps: float = 1e-3, delta: float | None = None,
) -> dict[str, float]:
    r"""Jiang et al.'s six PAC-Bayes measures by their names in the paper.

    Args:
        w: The solution's weights, ``(n,)``.
        w0: The initial weights, ``(n,)``.
        sigma: σ of :func:`pacbayes_sigma` (plain noise).
        sigma_mag: σ' of :func:`pacbayes_sigma` (``magnitude_aware=True``).
        m: Number of training samples.
        eps: :math:`\epsilon` of the magnitude-aware noise.
        delta: δ of :func:`pacbayes_mag_bound`.

    Returns:
        ``{"pac-bayes-init" (48), "pac-bayes-orig" (49), "pac-bayes-flatness"
        (53), "pac-bayes-mag-init" (56), "pac-bayes-mag-orig" (57),
        "pac-bayes-mag-flatness" (61)}``.
    """
    def flat(s: float) -> float:
        return math.nan if math.isnan(s) else (1 / s**2 if s > 0 else math.inf)

    return {
        "pac-bayes-init": pacbayes_bound(w, sigma, m, w0),
        "pac-bayes-orig": pacbayes_bound(w, sigma, m),
        "pac-bayes-flatness": flat(sigma),
        "pac-bayes-mag-init": pacbayes_mag_bound(w, sigma_mag, m, w0, eps=eps, delta=delta),
        "pac-bayes-mag-orig": pacbayes_mag_bound(w, sigma_mag, m, eps=eps, delta=delta),
        "pac-bayes-mag-flatness": flat(sigma_mag),
    }


# =========================================================================== measure
@dataclass(frozen=True)
class PacBayesParams:
    """Parameters of the ``pacbayes`` measure."""

    pacbayes_metric: str = param("error", "quantity the search bounds (train 0-1 error, "
                                 "Jiang et al.'s, or the loss)", choices=("error", "loss"))
    pacbayes_target: float = param(0.1, "Δ: the rise (or the value) of --pacbayes-metric "
                                   "that defines sigma")
    pacbayes_bound: str = param("rise", "rise: E[L(θ+u)] - L(θ) = Δ (default: compares "
                                "solutions of unequal fit at equal noise budgets); "
                                "absolute: E[L(θ+u)] = Δ, Jiang et al.'s form",
                                choices=tuple(b.value for b in PacBayesBound))
    pacbayes_samples: int = param(10, "Monte Carlo draws per sigma")
    pacbayes_eps: float = param(1e-3, "magnitude-aware noise offset epsilon")
    pacbayes_fold_bn: bool = param(True, "fold BatchNorm into the conv/linear layer before "
                                   "it and perturb that network (Jiang et al.'s setting)")
    pacbayes_delta: float | None = param(None, "δ of the magnitude-aware bound's log(m/δ) "
                                         "(None: σ', as nitarshan's code)")

    def validate(self) -> None:
        """Raise a one-line error for a bad target, draw count, offset or δ."""
        check_positive(self, "pacbayes_target", "pacbayes_samples", "pacbayes_delta")
        check_positive(self, "pacbayes_eps", allow_zero=True)


def _folded(ctx: MeasureContext) -> tuple[Any, Tensor, Any, Tensor | None]:
    """The context's network with BatchNorm folded in, at the solution (and init).

    Returns:
        ``(risk, theta, layout, init weights or None)`` of the folded network.
    """
    import copy

    from landscape.evaluate import EmpiricalRisk
    from landscape.params import ParamLayout
    from landscape.sharpness.bnfold import fold_batchnorm

    def at(weights: Tensor, fresh_bn: bool) -> torch.nn.Module:
        m = copy.deepcopy(ctx.model)
        ctx.layout.write(m, weights)
        if fresh_bn:  # the statistics of the initial network
            for mod in m.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.reset_running_stats()
        return fold_batchnorm(m)

    net = at(ctx.theta, False)
    layout = ParamLayout.from_module(net)
    risk = EmpiricalRisk(net, ctx.data, ctx.loss_fn, device=ctx.device, dtype=ctx.dtype)
    theta = layout.read(net, dtype=torch.float64).to(ctx.device, ctx.dtype)
    init = None
    if ctx.init is not None:
        init = layout.read(at(ctx.init.to(ctx.device, ctx.dtype), True),
                           dtype=torch.float64)
    return risk, theta, layout, init


def pacbayes_measure(ctx: MeasureContext, p: PacBayesParams) -> Result:
    """PAC-Bayes σ and σ', and Jiang et al.'s bound forms, of the context's solution.

    Returns:
        Scalars (σ, σ', their standard errors, flatness 1/σ², rises, the bound forms
        (48), (49), (56), (57) with ``m`` and ω) and the bisection traces.
    """
    fold = p.pacbayes_fold_bn and ctx.buffer_layout.numel > 0
    if fold:
        risk, theta, layout, init = _folded(ctx)
    else:
        risk, theta, layout = ctx.risk, ctx.theta, ctx.layout
        init = None if ctx.init is None else ctx.init.double()
    metric = ctx.count(risk.error) if p.pacbayes_metric == "error" else ctx.count(risk.value)
    attrs: dict[str, Any] = {"metric": p.pacbayes_metric, "target": p.pacbayes_target,
                             "bound": p.pacbayes_bound, "fold_bn": fold,
                             "mc_samples": p.pacbayes_samples, "eps": p.pacbayes_eps}
    arrays = {}
    for key, mag in (("", False), ("_mag", True)):
        r = pacbayes_sigma(metric, theta, p.pacbayes_target, magnitude_aware=mag,
                           eps=p.pacbayes_eps, samples=p.pacbayes_samples, seed=ctx.seed,
                           bound=p.pacbayes_bound)
        attrs |= {f"sigma{key}": r.sigma, f"sigma{key}_sem": r.sigma_sem,
                  f"flatness{key}": r.flatness, f"rise{key}": r.rise,
                  f"rise{key}_sem": r.rise_sem}
        attrs["base"] = r.base
        arrays |= {f"trace_sigma{key}": r.trace_sigma, f"trace_rise{key}": r.trace_rise}
    attrs["n_evals"] = metric.calls
    # the bound forms: norms over the weights (no biases/BN), m the full train set
    from landscape.params import ParamKind

    mask = layout.mask(ParamKind.WEIGHT).to(theta.device)
    w = theta.double()[mask]
    m = int(ctx.n_train or ctx.samples)
    nan = math.nan
    kw = {"eps": p.pacbayes_eps, "delta": p.pacbayes_delta}
    attrs |= {"m": m, "omega": int(w.numel()),
              "delta": nan if p.pacbayes_delta is None else p.pacbayes_delta,
              "pac_bayes_orig": pacbayes_bound(w, attrs["sigma"], m),
              "pac_bayes_mag_orig": pacbayes_mag_bound(w, attrs["sigma_mag"], m, **kw),
              "pac_bayes_init": nan, "pac_bayes_mag_init": nan}
    if init is not None:  # the init forms need the weights at initialization
        w0 = init.to(w)[mask]
        attrs |= {"pac_bayes_init": pacbayes_bound(w, attrs["sigma"], m, w0),
                  "pac_bayes_mag_init": pacbayes_mag_bound(w, attrs["sigma_mag"], m, w0,
                                                           **kw)}
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
                    f"({a['metric']} {a.get('bound', 'rise')} {a['target']}"
                    f"{', BN folded' if a.get('fold_bn') else ''})"),
    reference="Jiang, Neyshabur, Mobahi, Krishnan & Bengio (ICLR 2020)",
    applies=lambda ctx, p: (
        "the 0-1 error needs a classifier (integer targets, (N, C) outputs); pass "
        "pacbayes_metric='loss' (--pacbayes-metric loss) to bound the loss rise instead"
        if p.pacbayes_metric == "error" and not ctx.classifier else None)))
