r"""Worst-case sharpness in an L2 ball (Foret, Kleiner, Mobahi & Neyshabur, ICLR 2021).

The sharpness SAM minimizes,

.. math::
    S_\rho(\theta) = \max_{\|\varepsilon\|_2 \le \rho} L(\theta + \varepsilon) - L(\theta),

measured two ways:

* the **one-step** estimate at SAM's first-order maximizer
  :math:`\hat\varepsilon = \rho\, g / \|g\|_2` (a lower bound; 1 forward+backward
  pass plus one forward);
* **multi-step** projected gradient ascent from :math:`\hat\varepsilon`
  (normalized-gradient steps of ``step_size`` times :math:`\rho`, projection
  onto the ball, step halving when the loss does not rise, best iterate kept;
  the measurement of Andriushchenko et al. 2023 without their momentum).

The ball contains :math:`\varepsilon = 0`, so :math:`S_\rho \ge 0`: the best
loss starts at :math:`\max(L(\theta), L(\theta + \hat\varepsilon))` and the
multi-step value is never negative, even when the one-step point overshoots to
a lower loss (then ``one_step``, kept raw, is negative).

The ascent runs in coordinates :math:`z` with :math:`\varepsilon = s \odot z`
and :math:`\|z\|_2 \le \rho`, so the same loop gives the adaptive sharpness
of ASAM (:mod:`landscape.sharpness.kwon2021asam`) with :math:`s = |\theta| + \eta`.
At an exact critical point (:math:`g = 0`) the start direction is random.

For :math:`L = \frac12 (\theta-\theta^*)^\top H (\theta-\theta^*)` at
:math:`\theta^*`, :math:`S_\rho = \rho^2 \lambda_{\max}(H)/2`.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> f = lambda w: 0.5 * w @ H @ w
    >>> round(sam_sharpness(f, torch.zeros(3, dtype=torch.float64), rho=0.1).value, 8)
    0.02
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from landscape.sharpness._base import (
    LossFunction,
    Objective,
    check_flat,
    generator,
    value_and_grad,
)
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register


@dataclass(frozen=True)
class BallSharpness:
    """Result of a worst-case sharpness measurement.

    Attributes:
        value: ``max_loss - loss`` (multi-step), never negative; with 0 steps
            it is ``max(one_step, 0)``.
        one_step: ``L(θ + ε̂) - L(θ)`` at the first-order maximizer (raw: negative
            when the step overshoots to a lower loss).
        loss: :math:`L(\\theta)`.
        max_loss: The largest loss found in the ball, counting ``θ`` itself.
        n_evals: Loss-and-gradient evaluations (forward+backward passes).
        random_start: Whether the gradient vanished and the start was random.
    """

    value: float
    one_step: float
    loss: float
    max_loss: float
    n_evals: int
    random_start: bool


#: A gradient whose first-order change over the ball is below this fraction of the loss
#: counts as none (1e4 float64 ulps: rounding noise at an exact minimum).
_NO_GRADIENT = 1e4 * torch.finfo(torch.float64).eps


def ball_ascent(
    f: LossFunction | Objective, theta: Tensor, rho: float, *, scale: Tensor | None = None,
    steps: int = 20, step_size: float = 1.0, seed: int = 0,
) -> BallSharpness:
    r"""Maximize :math:`L(\theta + s \odot z)` over :math:`\|z\|_2 \le \rho`.

    Args:
        f: Differentiable loss of a flat vector.
        theta: The solution, ``(n,)``.
        rho: Ball radius in ``z`` coordinates.
        scale: ``s`` (``None``: all ones, the plain L2 ball).
        steps: Ascent steps after the one-step point (each one forward+backward).
        step_size: Initial step length as a fraction of ``rho``.
        seed: Seed of the random start used when the gradient vanishes (below 1e4
            float64 ulps of the loss: rounding noise at an exact minimum).

    Returns:
        The one-step and multi-step values; the multi-step value is the best
        loss among ``θ``, the one-step point and the accepted iterates, minus
        ``L(θ)``, so it is never negative.

    Raises:
        ValueError: If ``rho`` or ``step_size`` is not positive, ``steps < 0``,
            or ``scale`` has the wrong shape.
    """
    check_flat(theta)
    if rho <= 0 or step_size <= 0 or steps < 0:
        raise ValueError(f"need rho > 0, step_size > 0, steps >= 0; got {rho}, "
                         f"{step_size}, {steps}")
    w = theta.detach()
    s = torch.ones_like(w) if scale is None else scale.detach().to(w)
    if s.shape != w.shape:
        raise ValueError(f"scale has shape {tuple(s.shape)}, theta {tuple(w.shape)}")
    loss0, g = value_and_grad(f, w)
    gz = s * g
    # At an exact minimum (a least-squares fit, say) the gradient is rounding noise,
    # 1e-15 of the loss: its direction, and with it the value after a few damped
    # steps, would depend on the machine.  A first-order change below _NO_GRADIENT of
    # the loss (far below any trained network's) counts as no gradient: the start is
    # the seeded random direction, and the steps are power iterations of the local
    # quadratic (jump to the gradient's direction) until one fails to rise.
    random_start = not bool(rho * gz.norm() > _NO_GRADIENT * abs(float(loss0)))
    if random_start:
        gz = torch.randn(w.numel(), generator=generator(seed, w.device), dtype=w.dtype,
                         device=w.device)
    z = rho * gz / gz.norm()
    cur, g = value_and_grad(f, w + s * z)
    # θ itself (ε = 0) is in the ball: the maximum is never below L(θ)
    one_step, best, n_evals = cur - loss0, max(loss0, cur), 2
    gz = s * g
    alpha = step_size * rho
    power = random_start
    for _ in range(steps):
        nrm = gz.norm()
        if not bool(nrm > 0):
            break
        cand = rho * gz / nrm if power else z + alpha * gz / nrm
        cnorm = cand.norm()
        if cnorm > rho:
            cand = cand * (rho / cnorm)
        val, g = value_and_grad(f, w + s * cand)
        n_evals += 1
        if val > cur:
            z, cur, gz = cand, val, s * g
            best = max(best, val)
        elif power:
            power = False
        else:
            alpha /= 2
    return BallSharpness(best - loss0, one_step, loss0, best, n_evals, random_start)


def sam_sharpness(
    f: LossFunction | Objective, theta: Tensor, rho: float = 0.05, *, steps: int = 20,
    step_size: float = 1.0, seed: int = 0,
) -> BallSharpness:
    r"""Worst-case L2 sharpness :math:`S_\rho` (multi-step, with the one-step value).

    Args:
        f: Differentiable loss of a flat vector.
        theta: The solution, ``(n,)``.
        rho: Ball radius (SAM's CIFAR default 0.05).
        steps: Projected ascent steps after the one-step point.
        step_size: Initial step length as a fraction of ``rho``.
        seed: Seed of the random start used when the gradient vanishes (below 1e4
            float64 ulps of the loss: rounding noise at an exact minimum).

    Returns:
        The sharpness values.
    """
    return ball_ascent(f, theta, rho, steps=steps, step_size=step_size, seed=seed)


def sam_one_step(f: LossFunction | Objective, theta: Tensor, rho: float = 0.05, *,
                 seed: int = 0) -> float:
    r"""SAM's one-step estimate :math:`L(\theta + \rho g/\|g\|) - L(\theta)`.

    Returns:
        The estimate (a lower bound on :math:`S_\rho`).
    """
    return ball_ascent(f, theta, rho, steps=0, seed=seed).one_step


# =========================================================================== measure
@dataclass(frozen=True)
class SamParams:
    """Parameters of the ``sam`` measure."""

    rho: float = param(0.05, "SAM L2-ball radius")
    ascent_steps: int = param(20, "projected ascent steps after the one-step point")

    def validate(self) -> None:
        """Raise a one-line error for a bad radius or step count."""
        check_positive(self, "rho")
        check_positive(self, "ascent_steps", allow_zero=True)


def ball_scalars(r: BallSharpness, rho: float, steps: int) -> dict[str, float]:
    """The stored scalars of a ball-sharpness result.

    Returns:
        ``value``, ``one_step``, losses, evaluations and settings.
    """
    return {"value": r.value, "one_step": r.one_step, "loss": r.loss,
            "max_loss": r.max_loss, "n_evals": r.n_evals,
            "random_start": r.random_start, "rho": rho, "steps": steps}


def sam_measure(ctx: MeasureContext, p: SamParams) -> Result:
    """Worst-case L2 sharpness of the context's solution.

    Returns:
        The scalars of :func:`ball_scalars`.
    """
    r = sam_sharpness(ctx.objective(), ctx.theta, p.rho, steps=p.ascent_steps,
                      seed=ctx.seed)
    return ball_scalars(r, p.rho, p.ascent_steps), {}


register(MeasureSpec(
    name="sam", order=50, params=SamParams, compute=sam_measure, unit="fb",
    summary="worst-case L2-ball sharpness (Foret et al. 2021), multi- and one-step",
    headline=(Headline("value", "SAM sharpness ρ=0.05"),), datasets=(),
    line=lambda a: (f"sam sharpness {a['value']:.6g}, one-step {a['one_step']:.6g} "
                    f"(rho {a['rho']})"),
    reference="Foret, Kleiner, Mobahi & Neyshabur (ICLR 2021)"))
