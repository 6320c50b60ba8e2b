r"""Adaptive sharpness (Kwon, Kim, Park & Choi, ASAM, ICML 2021).

.. math::
    S^{A}_\rho(\theta) = \max_{\|T_\theta^{-1}\varepsilon\|_2 \le \rho}
        L(\theta + \varepsilon) - L(\theta), \qquad
    T_\theta = \operatorname{diag}(|\theta_i| + \eta),

on every entry (``normalize="all"``, the measure's default), or with
:math:`T = 1` for entries that are not weights (``normalize="weights"``:
ASAM's code scales the parameters whose name contains ``weight``; pass that as
``mask``).  With :math:`\eta = 0` and every entry scaled it is invariant to
every positive diagonal rescaling that leaves the loss unchanged (e.g. Dinh
et al.'s layer-wise :math:`\alpha` rescaling of a ReLU net, which multiplies
a bias too), because :math:`T_{A\theta}^{-1} A = T_\theta^{-1}`; with
:math:`T = 1` on biases a rescaled bias breaks that identity.
The first-order maximizer is :math:`\hat\varepsilon = \rho\, T^2 g / \|T g\|_2`;
the multi-step value uses the same projected ascent as SAM
(:func:`landscape.sharpness.foret2021sam.ball_ascent`) in the coordinates
:math:`z = T^{-1}\varepsilon`; as the region contains :math:`\varepsilon = 0`,
the value is never negative, while the raw one-step rise may be.

At the minimum of a quadratic, :math:`S^A_\rho = \rho^2 \lambda_{\max}(THT)/2`.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> w_star = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    >>> f = lambda w: 0.5 * (w - w_star) @ H @ (w - w_star)
    >>> round(adaptive_sharpness(f, w_star, rho=0.5, eta=0.0).value, 8)
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from landscape._errors import UserError
from landscape.sharpness._base import LossFunction, Objective, check_flat
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register
from landscape.sharpness.foret2021sam import BallSharpness, ball_ascent, ball_scalars


def asam_scale(theta: Tensor, eta: float = 0.01, mask: Tensor | None = None) -> Tensor:
    r"""The diagonal of :math:`T_\theta`: :math:`|\theta_i| + \eta` where ``mask``, else 1.

    Args:
        theta: ``(n,)`` weights.
        eta: Offset :math:`\eta \ge 0` (ASAM class default 0.01; its CIFAR
            script uses 0).
        mask: ``(n,)`` booleans of the scaled entries (``None``: all).

    Returns:
        ``(n,)`` scale.

    Raises:
        ValueError: If ``eta`` is negative or ``mask`` has the wrong shape.
    """
    check_flat(theta)
    if eta < 0:
        raise ValueError(f"eta must be non-negative, got {eta}")
    t = theta.detach().abs() + eta
    if mask is None:
        return t
    if mask.shape != theta.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, theta "
                         f"{tuple(theta.shape)}")
    return torch.where(mask.to(theta.device), t, torch.ones_like(t))


def adaptive_sharpness(
    f: LossFunction | Objective, theta: Tensor, rho: float = 0.5, *, eta: float = 0.01,
    mask: Tensor | None = None, steps: int = 20, step_size: float = 1.0,
    seed: int = 0,
) -> BallSharpness:
    r"""ASAM's adaptive sharpness (multi-step, with the one-step value).

    Args:
        f: Differentiable loss of a flat vector.
        theta: The solution, ``(n,)``.
        rho: Radius in normalized coordinates (ASAM: 0.5 on CIFAR-10).
        eta: Offset of :math:`T`.
        mask: Entries scaled by :math:`|\theta| + \eta` (``None``: all).
        steps: Projected ascent steps after the one-step point.
        step_size: Initial step length as a fraction of ``rho``.
        seed: Seed of the random start used when the gradient vanishes (below 1e4
            float64 ulps of the loss: rounding noise at an exact minimum).

    Returns:
        The sharpness values.
    """
    return ball_ascent(f, theta, rho, scale=asam_scale(theta, eta, mask), steps=steps,
                       step_size=step_size, seed=seed)


# =========================================================================== measure
#: The ``normalize`` choices: T on every entry, or on weights only (ASAM's code).
NORMALIZE = ("all", "weights")


@dataclass(frozen=True)
class AsamParams:
    """Parameters of the ``asam`` measure."""

    asam_rho: float = param(0.5, "ASAM radius in normalized coordinates")
    eta: float = param(0.01, "ASAM offset: T = |theta| + eta (see asam_normalize)")
    ascent_steps: int = param(20, "projected ascent steps after the one-step point")
    asam_normalize: str = param(
        "all", "which entries T normalizes. all (default): T = |theta| + eta on every "
        "entry, biases and BN included (the paper's element-wise T_w); with eta = 0 the "
        "value is invariant to every positive rescaling that keeps the loss, Dinh et "
        "al.'s layer rescaling (which scales a bias too) included. weights: ASAM's code "
        "(and the paper's practice for training), T = |w| + eta on parameters whose "
        "name contains 'weight', T = 1 on biases: not invariant when a rescaling moves "
        "a bias. The default is the invariant one because comparing solutions across "
        "parametrizations is what the measure is for",
        choices=NORMALIZE)

    def validate(self) -> None:
        """Raise a one-line error for a bad radius, offset or step count."""
        check_positive(self, "asam_rho")
        check_positive(self, "eta", "ascent_steps", allow_zero=True)


def weight_mask(ctx: MeasureContext) -> Tensor:
    """ASAM's code scales the parameters whose name contains ``weight``.

    Returns:
        ``(n,)`` booleans.
    """
    mask = torch.zeros(ctx.n, dtype=torch.bool, device=ctx.device)
    for name, sl, _, _ in ctx.layout.slices():
        if "weight" in name:
            mask[sl] = True
    return mask


def normalize_mask(ctx: MeasureContext, normalize: str) -> Tensor | None:
    """The ``mask`` of :func:`adaptive_sharpness` for a ``normalize`` choice.

    Returns:
        :func:`weight_mask` for ``"weights"``, ``None`` (every entry) for ``"all"``.

    Raises:
        UserError: For another choice.
    """
    if normalize not in NORMALIZE:
        raise UserError(f"normalize must be one of {', '.join(NORMALIZE)}, got "
                        f"{normalize!r}")
    return weight_mask(ctx) if normalize == "weights" else None


def asam_measure(ctx: MeasureContext, p: AsamParams) -> Result:
    """ASAM's adaptive sharpness of the context's solution.

    Returns:
        The ball scalars with ``eta`` and what was normalized.
    """
    mask = normalize_mask(ctx, p.asam_normalize)
    r = adaptive_sharpness(ctx.objective(), ctx.theta, p.asam_rho, eta=p.eta, mask=mask,
                           steps=p.ascent_steps, seed=ctx.seed)
    scaled = ("parameters whose name contains 'weight'" if mask is not None
              else "every parameter")
    return (ball_scalars(r, p.asam_rho, p.ascent_steps)
            | {"eta": p.eta, "normalize": p.asam_normalize, "scaled": scaled}, {})


register(MeasureSpec(
    name="asam", order=60, params=AsamParams, compute=asam_measure, unit="fb",
    summary="adaptive sharpness, T = |theta| + eta (Kwon et al. 2021)",
    headline=(Headline("value", "ASAM sharpness"),), datasets=(),
    line=lambda a: (f"asam sharpness {a['value']:.6g}, one-step {a['one_step']:.6g} "
                    f"(rho {a['rho']})"),
    reference="Kwon, Kim, Park & Choi (ICML 2021)"))
