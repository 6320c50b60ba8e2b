r"""Average-case (random-noise) sharpness.

.. math::
    S^{avg}_\sigma(\theta) = E_{\delta}\,[L(\theta + \delta)] - L(\theta),
    \qquad \delta = \sigma\, s \odot u,\; u \sim \mathcal N(0, I),

with :math:`s = 1` (plain) or :math:`s = |\theta|` (adaptive), as in
Andriushchenko et al. 2023 (``eval_average_sharpness``).  The Monte Carlo
estimate uses antithetic pairs :math:`\pm\delta`, which cancel the odd
(gradient) term without bias, and comes with its standard error.  For a
quadratic, :math:`S^{avg}_\sigma = \sigma^2 \operatorname{tr}(H)/2` exactly
(the reference's oracle: 0.02625 for :math:`H = \operatorname{diag}(4, 1,
0.25)`, :math:`\sigma = 0.1`).

Example:
    >>> import torch
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> f = lambda w: float(0.5 * w @ H @ w)
    >>> r = average_sharpness(f, torch.zeros(3, dtype=torch.float64), 0.1, samples=4000)
    >>> abs(r.value - 0.02625) < 3 * r.sem
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class AverageSharpness:
    """Result of :func:`average_sharpness`.

    Attributes:
        value: Mean loss rise.
        sem: Its Monte Carlo standard error.
        loss: :math:`L(\\theta)`.
        rises: ``(samples,)`` per-sample rises (each the mean of an antithetic pair).
        n_evals: Loss evaluations (forward passes).
    """

    value: float
    sem: float
    loss: float
    rises: np.ndarray
    n_evals: int


def average_sharpness(
    loss: Metric | Objective, theta: Tensor, sigma: float = 0.01, samples: int = 20, *,
    scale: Tensor | None = None, seed: int = 0, antithetic: bool = True,
) -> AverageSharpness:
    r"""Expected loss rise under Gaussian weight noise of scale :math:`\sigma`.

    Args:
        loss: Loss of a flat vector (no gradient needed).
        theta: The solution, ``(n,)``.
        sigma: Noise standard deviation.
        samples: Monte Carlo samples (antithetic pairs count as one).
        scale: Per-entry multiplier ``s`` of the noise (``None``: 1; pass
            ``theta.abs()`` for the adaptive version).
        seed: Seed of the noise.
        antithetic: Average ``L(θ+δ)`` and ``L(θ-δ)`` per sample.

    Returns:
        The mean rise with its standard error.

    Raises:
        ValueError: If ``sigma`` or ``samples`` is not positive.
    """
    check_flat(theta)
    if sigma <= 0 or samples < 1:
        raise ValueError(f"need sigma > 0 and samples >= 1, got {sigma}, {samples}")
    w = theta.detach()
    s = 1.0 if scale is None else scale.detach().to(w)
    loss0 = loss_value(loss, w)
    gen = generator(seed, w.device)
    rises = np.empty(samples)
    for i in range(samples):
        delta = sigma * s * gaussian(w.numel(), gen, w.dtype, w.device)
        up = loss_value(loss, w + delta)
        rises[i] = (0.5 * (up + loss_value(loss, w - delta)) if antithetic else up) - loss0
    n_evals = 1 + samples * (2 if antithetic else 1)
    return AverageSharpness(float(rises.mean()), sem(rises), loss0, rises, n_evals)


# =========================================================================== measure
@dataclass(frozen=True)
class AvgParams:
    """Parameters of the ``avg`` measure."""

    sigma: float = param(0.01, "average-case sharpness noise std")
    avg_samples: int = param(20, "average-case Monte Carlo samples (antithetic pairs)")
    avg_adaptive: bool = param(False, "scale the noise by |w| (adaptive average-case "
                               "sharpness, Andriushchenko et al. 2023)")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive setting."""
        check_positive(self, "sigma", "avg_samples")


def avg_measure(ctx: MeasureContext, p: AvgParams) -> Result:
    """Average-case sharpness of the context's solution.

    Returns:
        Scalars (``value`` with its standard error) and the per-sample ``rises``.
    """
    r = average_sharpness(ctx.objective(), ctx.theta, p.sigma, p.avg_samples,
                          scale=ctx.theta.abs() if p.avg_adaptive else None, seed=ctx.seed)
    return ({"value": r.value, "sem": r.sem, "loss": r.loss, "sigma": p.sigma,
             "adaptive": p.avg_adaptive, "n_evals": r.n_evals, "antithetic": True},
            {"rises": r.rises})


register(MeasureSpec(
    name="avg", order=70, params=AvgParams, compute=avg_measure, unit="f",
    summary="average-case sharpness under Gaussian noise",
    headline=(Headline("value", "average sharpness", sem="sem"),), datasets=("rises",),
    line=lambda a: (f"average sharpness {a['value']:.6g} ± {a['sem']:.3g} "
                    f"(sigma {a['sigma']})"),
    reference="Andriushchenko et al. (ICML 2023), average-case sharpness"))
