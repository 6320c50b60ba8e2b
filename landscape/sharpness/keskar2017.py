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
kept.

L-BFGS-B stops at a local maximum, often inside the box or on a face.  A
convex loss (a quadratic at a minimum) attains its maximum over the box at one
of its :math:`2^k` vertices (:math:`k = n`, or the subspace dimension), so a
vertex search follows, with a budget of ``vertex_starts × maxiter``
evaluations:

- when the box has at most that many vertices, every vertex is evaluated
  (forward passes only): the value is then the exact box maximum for a loss
  convex over the box (``exact``);
- otherwise ``vertex_starts`` ascents over vertices, from the sign pattern of
  L-BFGS-B's best point and from random vertices, each moving to the vertex
  :math:`\operatorname{sign}(\nabla L)\odot b` that maximizes the
  linearization until the vertex repeats or the loss stops rising (for a
  convex loss every move raises it).  The value is a lower bound of the box
  maximum, as L-BFGS-B's alone is.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> w_star = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    >>> f = lambda w: 0.5 * (w - w_star) @ H @ (w - w_star)
    >>> r = epsilon_sharpness(f, w_star, eps=1e-3)
    >>> round(r.value, 9)  # 100 * sum(H_ii (eps (|w_i| + 1))^2) / 2
    0.001278125
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from landscape.sharpness._base import (
    LossFunction,
    Objective,
    check_flat,
    loss_value,
    value_and_grad,
)
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register


@dataclass(frozen=True)
class EpsilonSharpness:
    """Result of :func:`epsilon_sharpness`.

    Attributes:
        value: :math:`\\phi` (percent of :math:`1 + L`).
        loss: :math:`L(\\theta)`.
        max_loss: The largest loss found in the box.
        n_evals: Loss-and-gradient evaluations (forward+backward passes).
        n_loss_evals: Loss-only evaluations (forward passes: the vertices when
            every vertex is evaluated, and :math:`L(\theta)`).
        exact: Whether every vertex of the box was evaluated: the value is the
            box maximum when the loss is convex over the box; otherwise it
            is a lower bound.
        method: ``"L-BFGS-B"``, ``"L-BFGS-B + vertex ascent"`` or
            ``"L-BFGS-B + every vertex"``.
        vertex_ascents: Vertex ascents run (0 when every vertex was evaluated).
    """

    value: float
    loss: float
    max_loss: float
    n_evals: int
    n_loss_evals: int = 0
    exact: bool = False
    method: str = "L-BFGS-B"
    vertex_ascents: int = 0


def epsilon_sharpness(
    f: LossFunction | Objective, theta: Tensor, eps: float = 1e-3, *, maxiter: int = 10,
    restarts: int = 1, vertex_starts: int = 4, dim: int | None = None, seed: int = 0,
) -> EpsilonSharpness:
    r"""Keskar et al.'s ε-sharpness by L-BFGS-B from random starts, then a vertex search.

    Args:
        f: Differentiable loss of a flat vector.
        theta: The solution, ``(n,)``.
        eps: Relative box size :math:`\varepsilon` (paper: 1e-3 and 5e-4).
        maxiter: L-BFGS-B iterations per restart (paper: 10), and the longest
            vertex ascent.
        restarts: Independent random starts of L-BFGS-B; the best is kept.
        vertex_starts: Vertex ascents after L-BFGS-B, at most ``maxiter``
            loss-and-gradient evaluations each; when the box has at most
            ``vertex_starts * maxiter`` vertices every vertex is evaluated
            instead (one forward pass each).  0: L-BFGS-B only.
        dim: ``None`` for the full space, else the number of random directions
            (columns of :math:`A`; the paper uses 100).
        seed: Seed of ``numpy.random.default_rng``, which draws :math:`A` first
            (``rng.random((n, dim))``, each column scaled to unit norm), then
            the uniform starts in the box, then the random vertices.

    Returns:
        The sharpness value with the losses it came from and how it was found.

    Raises:
        ValueError: If ``eps`` is not positive, ``restarts``/``maxiter`` < 1 or
            ``vertex_starts`` < 0.
    """
    check_flat(theta)
    if eps <= 0 or restarts < 1 or maxiter < 1 or vertex_starts < 0:
        raise ValueError(f"need eps > 0, restarts >= 1, maxiter >= 1, vertex_starts >= 0; "
                         f"got {eps}, {restarts}, {maxiter}, {vertex_starts}")
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
    best, best_y = loss0, np.zeros_like(bound)
    n_evals, n_loss = 0, 1

    def point(y: np.ndarray) -> Tensor:
        return w + torch.from_numpy(y if A is None else A @ y).to(w)

    def seen(val: float, y: np.ndarray) -> None:
        nonlocal best, best_y
        if val > best:
            best, best_y = val, y.copy()

    def loss_and_grad(y: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal n_evals
        val, g = value_and_grad(f, point(y))
        n_evals += 1
        seen(val, y)
        g64 = g.to("cpu", torch.float64).numpy()
        return val, (g64 if A is None else A.T @ g64)

    def neg_loss(y: np.ndarray) -> tuple[float, np.ndarray]:
        val, g = loss_and_grad(y)
        return -val, -g

    from scipy.optimize import Bounds, minimize  # 0.15-0.2 s of import: not at start-up

    for _ in range(restarts):
        y0 = rng.uniform(-bound, bound)
        minimize(neg_loss, y0, jac=True, method="L-BFGS-B", bounds=Bounds(-bound, bound),
                 options={"maxiter": maxiter})
    k, budget = bound.size, vertex_starts * maxiter
    exact, method, ascents = False, "L-BFGS-B", 0
    if vertex_starts and k < 63 and 2**k <= budget:
        for signs in itertools.product((-1.0, 1.0), repeat=k):
            y = np.asarray(signs) * bound
            seen(loss_value(f, point(y)), y)
            n_loss += 1
        exact, method = True, "L-BFGS-B + every vertex"
    elif vertex_starts:
        method = "L-BFGS-B + vertex ascent"
        first = np.where(best_y < 0, -1.0, 1.0)  # the sign pattern of the best point
        for i in range(vertex_starts):
            s = first if i == 0 else rng.choice((-1.0, 1.0), size=k)
            _vertex_ascent(loss_and_grad, s, bound, maxiter)
            ascents += 1
    return EpsilonSharpness(100.0 * (best - loss0) / (1.0 + loss0), loss0, best, n_evals,
                            n_loss, exact, method, ascents)


def _vertex_ascent(loss_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
                   s: np.ndarray, bound: np.ndarray, maxiter: int) -> None:
    """Move from vertex ``s * bound`` to ``sign(grad) * bound`` while the loss rises.

    The move maximizes the loss's linearization over the box; for a convex loss
    it never lowers the loss, and a vertex that maps to itself is a local
    maximum over the box.  ``loss_and_grad`` records every value it sees.
    """
    prev = -math.inf
    for _ in range(maxiter):
        val, g = loss_and_grad(s * bound)
        if not val > prev:
            return
        nxt = np.where(g > 0, 1.0, np.where(g < 0, -1.0, s))
        if np.array_equal(nxt, s):
            return
        s, prev = nxt, val


# =========================================================================== measure
@dataclass(frozen=True)
class EpsParams:
    """Parameters of the ``eps`` measure."""

    eps: float = param(1e-3, "Keskar box size: |dw_i| <= eps (|w_i| + 1)")
    eps_maxiter: int = param(10, "L-BFGS-B iterations per restart (about one loss and "
                             "gradient evaluation each), and the longest vertex ascent")
    eps_restarts: int = param(1, "random starts of L-BFGS-B inside the box, each at most "
                              "about eps_maxiter loss+gradient evaluations (L-BFGS-B "
                              "finds a local maximum, a lower bound of the box maximum)")
    eps_vertex_starts: int = param(
        4, "vertex search after L-BFGS-B (the maximum of a convex loss over the box is "
        "at a vertex). When the box has at most eps_vertex_starts * eps_maxiter "
        "vertices (2^n, or 2^eps_dim) every vertex is evaluated, one forward pass each, "
        "and the value is exact for a loss convex over the box (stored exact = True). "
        "Otherwise this many sign-of-gradient ascents over vertices, each at most "
        "eps_maxiter loss+gradient evaluations (defaults: at most 40 on top of about 11 "
        "for L-BFGS-B; on the controls' MNIST-1D CNN each ascent used all 10), and the "
        "value is a lower bound (exact = False). 0: L-BFGS-B only, a lower bound")
    eps_dim: int | None = param(None, "random subspace dimension (None: the full space)")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive setting."""
        check_positive(self, "eps", "eps_maxiter", "eps_restarts", "eps_dim")
        check_positive(self, "eps_vertex_starts", allow_zero=True)


def eps_measure(ctx: MeasureContext, p: EpsParams) -> Result:
    """Keskar et al.'s ε-sharpness of the context's solution.

    Returns:
        Scalars (``value`` in percent, the losses, evaluations, settings).
    """
    r = epsilon_sharpness(ctx.objective(), ctx.theta, p.eps, maxiter=p.eps_maxiter,
                          restarts=p.eps_restarts, vertex_starts=p.eps_vertex_starts,
                          dim=p.eps_dim, seed=ctx.seed)
    return ({"value": r.value, "loss": r.loss, "max_loss": r.max_loss,
             "n_evals": r.n_evals, "n_loss_evals": r.n_loss_evals, "exact": r.exact,
             "method": r.method, "vertex_ascents": r.vertex_ascents, "eps": p.eps,
             "maxiter": p.eps_maxiter, "restarts": p.eps_restarts,
             "vertex_starts": p.eps_vertex_starts,
             "dim": math.nan if p.eps_dim is None else p.eps_dim}, {})


register(MeasureSpec(
    name="eps", order=40, params=EpsParams, compute=eps_measure, unit="fb",
    summary="Keskar et al. 2017 epsilon-sharpness (box, L-BFGS-B, then box vertices)",
    headline=(Headline("value", "ε-sharpness (Keskar)"),), datasets=(),
    line=lambda a: (f"eps-sharpness {a['value']:.6g} (eps {a['eps']}; "
                    + ("every box vertex evaluated)" if a.get("exact", False)
                       else "a lower bound)")),
    reference="Keskar, Mudigere, Nocedal, Smelyanskiy & Tang (ICLR 2017)"))
