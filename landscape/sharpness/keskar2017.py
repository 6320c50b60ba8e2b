r"""ε-sharpness in a box (Keskar, Mudigere, Nocedal, Smelyanskiy & Tang, ICLR 2017).

Metric 2.1 of the paper, in the full space (:math:`A = I`):

.. math::
    \phi_{\theta}(\varepsilon) = 100\cdot
        \frac{\max_{\Delta \in C_\varepsilon} L(\theta + \Delta) - L(\theta)}
             {1 + L(\theta)}, \qquad
    C_\varepsilon = \{\Delta : |\Delta_i| \le \varepsilon(|\theta_i| + 1)\},

or in a random ``dim``-dimensional subspace :math:`\theta + Ay` with
:math:`|y_i| \le \varepsilon(|(A^+\theta)_i| + 1)`, where :math:`A` has
uniform :math:`[0, 1)` entries and unit columns (as in SmoothOut's
``measure_sharpness.py``).  The inner maximum is found inexactly by
L-BFGS-B (``scipy.optimize``, 10 iterations in the paper).

Pitfall handled here: at a critical point the gradient vanishes and L-BFGS-B
started at :math:`\Delta = 0` never moves, so every restart starts at a uniform
random point inside the box.  The best loss seen at any evaluated point is
kept.  For a convex quadratic the exact maximum lies at a vertex of the box.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> w_star = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    >>> f = lambda w: 0.5 * (w - w_star) @ H @ (w - w_star)
    >>> r = epsilon_sharpness(f, w_star, eps=1e-3)
    >>> round(r.value, 9)  # 100 * sum(H_ii (eps (|w_i| + 1))^2) / 2
    0.001278125
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import Bounds, minimize
from torch import Tensor

from landscape.sharpness._base import (
    LossFunction,
    Objective,
    check_flat,
    loss_value,
    value_and_grad,
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
class EpsilonSharpness:
    """Result of :func:`epsilon_sharpness`.

    Attributes:
        value: :math:`\\phi` (percent of :math:`1 + L`).
        loss: :math:`L(\\theta)`.
        max_loss: The largest loss found in the box.
        n_evals: Loss-and-gradient evaluations (forward+backward passes).
    """

    value: float
    loss: float
    max_loss: float
    n_evals: int


def epsilon_sharpness(
    f: LossFunction | Objective, theta: Tensor, eps: float = 1e-3, *, maxiter: int = 10,
    restarts: int = 1, dim: int | None = None, seed: int = 0,
) -> EpsilonSharpness:
    r"""Keskar et al.'s ε-sharpness by L-BFGS-B from random starts in the box.

    Args:
        f: Differentiable loss of a flat vector.
        theta: The solution, ``(n,)``.
        eps: Relative box size :math:`\varepsilon` (paper: 1e-3 and 5e-4).
        maxiter: L-BFGS-B iterations per restart (paper: 10).
        restarts: Independent random starts; the best is kept.
        dim: ``None`` for the full space, else the number of random directions
            (columns of :math:`A`; the paper uses 100).
        seed: Seed of ``numpy.random.default_rng``, which draws :math:`A` first
            (``rng.random((n, dim))``, each column scaled to unit norm) and
            then the uniform starts in the box.

    Returns:
        The sharpness value with the losses it came from.

    Raises:
        ValueError: If ``eps`` is not positive or ``restarts``/``maxiter`` < 1.
    """
    check_flat(theta)
    if eps <= 0 or restarts < 1 or maxiter < 1:
        raise ValueError(f"need eps > 0, restarts >= 1, maxiter >= 1; got {eps}, "
                         f"{restarts}, {maxiter}")
    w = theta.detach()
    w64 = w.to("cpu", torch.float64).numpy()
    rng = np.random.default_rng(seed)
    A: np.ndarray | None = None
    if dim is None:
        bound = eps * (np.abs(w64) + 1.0)
    else:
        A = rng.random((w64.size, dim))
        A /= np.linalg.norm(A, axis=0, keepdims=True)
        bound = eps * (np.abs(np.linalg.pinv(A) @ w64) + 1.0)
    loss0 = loss_value(f, w)
    best, n_evals = loss0, 0

    def neg_loss(y: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal best, n_evals
        delta = y if A is None else A @ y
        val, g = value_and_grad(f, w + torch.from_numpy(delta).to(w))
        n_evals += 1
        best = max(best, val)
        g64 = g.to("cpu", torch.float64).numpy()
        return -val, -(g64 if A is None else A.T @ g64)

    for _ in range(restarts):
        y0 = rng.uniform(-bound, bound)
        minimize(neg_loss, y0, jac=True, method="L-BFGS-B", bounds=Bounds(-bound, bound),
                 options={"maxiter": maxiter})
    return EpsilonSharpness(100.0 * (best - loss0) / (1.0 + loss0), loss0, best, n_evals)


# =========================================================================== measure
@dataclass(frozen=True)
class EpsParams:
    """Parameters of the ``eps`` measure."""

    eps: float = param(1e-3, "Keskar box size: |dw_i| <= eps (|w_i| + 1)")
    eps_maxiter: int = param(10, "L-BFGS-B iterations per restart")
    eps_restarts: int = param(1, "random starts inside the box (L-BFGS-B finds a local "
                              "maximum: the value is a lower bound of the box maximum, "
                              "more restarts raise it)")
    eps_dim: int | None = param(None, "random subspace dimension (None: the full space)")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive setting."""
        check_positive(self, "eps", "eps_maxiter", "eps_restarts", "eps_dim")


def eps_measure(ctx: MeasureContext, p: EpsParams) -> Result:
    """Keskar et al.'s ε-sharpness of the context's solution.

    Returns:
        Scalars (``value`` in percent, the losses, evaluations, settings).
    """
    r = epsilon_sharpness(ctx.objective(), ctx.theta, p.eps, maxiter=p.eps_maxiter,
                          restarts=p.eps_restarts, dim=p.eps_dim, seed=ctx.seed)
    return ({"value": r.value, "loss": r.loss, "max_loss": r.max_loss,
             "n_evals": r.n_evals, "eps": p.eps, "maxiter": p.eps_maxiter,
             "restarts": p.eps_restarts,
             "dim": math.nan if p.eps_dim is None else p.eps_dim}, {})


register(MeasureSpec(
    name="eps", order=40, params=EpsParams, compute=eps_measure, unit="fb",
    summary="Keskar et al. 2017 epsilon-sharpness (box, L-BFGS-B)",
    headline=(Headline("value", "ε-sharpness (Keskar)"),), datasets=(),
    line=lambda a: f"eps-sharpness {a['value']:.6g} (eps {a['eps']})",
    reference="Keskar, Mudigere, Nocedal, Smelyanskiy & Tang (ICLR 2017)"))
