r"""Eigenvalue density of the Hessian by stochastic Lanczos quadrature (SLQ).

Ghorbani, Krishnan & Xiao (ICML 2019; after Golub & Meurant, and Lin, Saad &
Yang 2016).  For each of ``draws`` random unit vectors :math:`v`, ``steps``
Lanczos iterations (float64, full reorthogonalization) give a tridiagonal
:math:`T = U \Theta U^\top`; its eigenvalues :math:`\theta_i` are quadrature
nodes and :math:`\tau_i = U_{1i}^2` their weights, exact for moments:

.. math::
    \sum_i \tau_i \theta_i^k = v^\top H^k v \quad (k \le 2m - 1),
    \qquad E_v[v^\top H^k v] = \operatorname{tr}(H^k)/n .

The smoothed density is :math:`\phi(t) = \frac{1}{\text{draws}} \sum_l \sum_i
\tau_i^{(l)} \mathcal{N}(t;\, \theta_i^{(l)}, \sigma^2)` with kernel variance
:math:`\sigma^2 = \text{sigma2}\cdot\max(1, \lambda_{\max} - \lambda_{\min})`
(google/spectral-density's convention).  The weights of each draw sum to 1, so
the density integrates to 1.

Example:
    >>> H = torch.diag(torch.tensor([3.0, 1.0, 1.0, -0.5], dtype=torch.float64))
    >>> d = slq_density(lambda v: H @ v, 4, steps=4, draws=2)
    >>> nodes = d.nodes[0][d.weights[0] > 0]  # the Krylov space has dimension 3
    >>> np.round(nodes, 8).tolist(), round(d.moment(1), 10)  # tr(H)/n = 1.125
    ([-0.5, 1.0, 3.0], 1.125)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from landscape.sharpness._base import HVP, generator, rademacher
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import MeasureSpec, Result, register


def lanczos_tridiagonal(
    matvec: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, steps: int, *,
    reorthogonalize: bool = True, breakdown: float = 1e-10,
    stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""``steps`` Lanczos iterations in float64; returns the tridiagonal's entries.

    With ``reorthogonalize`` each new vector is orthogonalized (twice, by
    classical Gram–Schmidt) against all earlier ones, which costs ``steps``
    stored vectors and keeps the Ritz values free of spurious copies.  Stops
    early when the Krylov space becomes invariant (:math:`\beta < `
    ``breakdown`` times the largest :math:`|\alpha|`).

    Args:
        matvec: ``x -> H x`` on float64 numpy vectors.
        v0: Start vector (normalized here).
        steps: Maximum number of iterations (one matvec each).
        reorthogonalize: Full reorthogonalization.
        breakdown: Relative size of :math:`\beta` treated as zero.
        stop: Called after each step with the ``(alpha, beta)`` so far (the
            tridiagonal of that step); returning ``True`` ends the iteration.

    Returns:
        ``(alpha, beta)``: the diagonal ``(m,)`` and off-diagonal ``(m-1,)`` of
        ``T``, with ``m <= steps``.

    Raises:
        ValueError: If ``v0`` is zero or ``steps < 1``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    v = np.asarray(v0, dtype=np.float64).ravel().copy()
    nrm = np.linalg.norm(v)
    if nrm == 0:
        raise ValueError("the Lanczos start vector is zero; pass a random vector")
    n = v.size
    steps = min(steps, n)
    V = np.zeros((steps, n))
    V[0] = v / nrm
    alpha, beta = np.zeros(steps), np.zeros(max(steps - 1, 0))
    for j in range(steps):
        w = np.asarray(matvec(V[j]), dtype=np.float64).ravel()
        alpha[j] = V[j] @ w
        w = w - alpha[j] * V[j] - (beta[j - 1] * V[j - 1] if j else 0.0)
        if reorthogonalize:
            for _ in range(2):
                w = w - V[:j + 1].T @ (V[:j + 1] @ w)
        if j == steps - 1 or (stop is not None and stop(alpha[:j + 1], beta[:j])):
            return alpha[:j + 1], beta[:j]
        b = np.linalg.norm(w)
        scale = max(np.abs(alpha[:j + 1]).max(), 1e-300)
        if b < breakdown * scale:
            return alpha[:j + 1], beta[:j]
        beta[j] = b
        V[j + 1] = w / b
    return alpha, beta  # pragma: no cover (the loop always returns)


def tridiagonal_nodes_weights(alpha: np.ndarray, beta: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of a Lanczos tridiagonal (``eigh``).

    Returns:
        ``(nodes, weights)``, each ``(m,)``; the weights sum to 1.
    """
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    nodes, U = np.linalg.eigh(T)
    return nodes, U[0] ** 2


@dataclass(frozen=True)
class SpectralDensity:
    """SLQ quadrature of the spectrum.

    Attributes:
        nodes: ``(draws, steps)`` Ritz values (NaN-padded if a draw stopped early).
        weights: ``(draws, steps)`` weights, each row summing to 1 (0 where padded).
        n_hvp: Hessian-vector products used.
    """

    nodes: np.ndarray
    weights: np.ndarray
    n_hvp: int

    def moment(self, k: int) -> float:
        r"""Estimate of :math:`\operatorname{tr}(H^k)/n`.

        Returns:
            The mean over draws of :math:`\sum_i \tau_i \theta_i^k`.
        """
        ok = self.weights > 0
        vals = np.where(ok, self.weights * np.where(ok, self.nodes, 0.0) ** k, 0.0)
        return float(vals.sum(1).mean())

    def density(self, grid: np.ndarray | None = None, *, sigma2: float = 1e-5,
                grid_len: int = 10000, expand: float = 1e-2
                ) -> tuple[np.ndarray, np.ndarray]:
        r"""The Gaussian-smoothed density on a grid.

        Args:
            grid: Points at which to evaluate it; by default ``grid_len`` points
                spanning the nodes, widened by ``expand`` times their range and
                by six kernel widths on each side.
            sigma2: Relative kernel variance; the variance used is
                ``sigma2 * max(1, range of the nodes)``.
            grid_len: Grid size when ``grid`` is not given.
            expand: Relative widening of the default grid.

        Returns:
            ``(grid, density)``, both ``(grid_len,)``.
        """
        ok = self.weights > 0
        nodes, w = self.nodes[ok], self.weights[ok] / self.nodes.shape[0]
        lo, hi = float(nodes.min()), float(nodes.max())
        var = sigma2 * max(1.0, hi - lo)
        if grid is None:
            pad = expand * (hi - lo) + 6 * np.sqrt(var)
            grid = np.linspace(lo - pad, hi + pad, grid_len)
        grid = np.asarray(grid, dtype=np.float64)
        dens = np.zeros_like(grid)
        norm = 1.0 / np.sqrt(2 * np.pi * var)
        for c in range(0, nodes.size, 256):  # bounded memory: (grid, 256) blocks
            d = grid[:, None] - nodes[None, c:c + 256]
            dens += (w[None, c:c + 256] * np.exp(-0.5 * d * d / var)).sum(1) * norm
        return grid, dens


def slq_density(
    hvp: HVP, n: int, steps: int = 80, draws: int = 1, *, seed: int = 0,
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
) -> SpectralDensity:
    r"""Stochastic Lanczos quadrature of the Hessian spectrum.

    Args:
        hvp: ``v -> H v``.
        n: Dimension.
        steps: Lanczos iterations per draw (80–90 in the literature).
        draws: Number of random start vectors (Rademacher, normalized).
        seed: Seed of the start vectors.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.

    Returns:
        The nodes and weights of every draw.

    Raises:
        ValueError: If ``steps`` or ``draws`` is not positive.
    """
    if steps < 1 or draws < 1:
        raise ValueError(f"steps and draws must be positive, got {steps}, {draws}")
    gen = generator(seed, device)
    m = min(steps, n)
    nodes, weights = np.full((draws, m), np.nan), np.zeros((draws, m))
    n_hvp = 0

    def matvec(x: np.ndarray) -> np.ndarray:
        nonlocal n_hvp
        n_hvp += 1
        v: Tensor = torch.from_numpy(x).to(device, dtype)
        return hvp(v).detach().to("cpu", torch.float64).numpy()

    for d in range(draws):
        v0 = rademacher(n, gen, torch.float64, device).cpu().numpy()
        a, b = lanczos_tridiagonal(matvec, v0, m)
        th, tau = tridiagonal_nodes_weights(a, b)
        nodes[d, :th.size], weights[d, :th.size] = th, tau
    return SpectralDensity(nodes, weights, n_hvp)


# =========================================================================== measure
@dataclass(frozen=True)
class DensityParams:
    """Parameters of the ``density`` measure."""

    slq_steps: int = param(80, "Lanczos steps per SLQ draw")
    slq_draws: int = param(1, "SLQ random start vectors")
    slq_sigma2: float = param(1e-5, "relative variance of the density's Gaussian kernel")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive setting."""
        check_positive(self, "slq_steps", "slq_draws", "slq_sigma2")


def density_measure(ctx: MeasureContext, p: DensityParams) -> Result:
    """SLQ eigenvalue density of the Hessian at the context's solution.

    Returns:
        Scalars (steps, draws, HVPs, the trace estimate ``n · E[θ]``) and the
        quadrature ``nodes``/``weights`` with the smoothed ``density`` on a ``grid``.
    """
    d = slq_density(ctx.hvp(), ctx.n, p.slq_steps, p.slq_draws, seed=ctx.seed,
                    dtype=ctx.dtype, device=ctx.device)
    grid, dens = d.density(sigma2=p.slq_sigma2)
    return ({"steps": p.slq_steps, "draws": p.slq_draws, "sigma2": p.slq_sigma2,
             "n_hvp": d.n_hvp, "trace_estimate": ctx.n * d.moment(1)},
            {"nodes": d.nodes, "weights": d.weights, "grid": grid, "density": dens})


register(MeasureSpec(
    name="density", order=30, params=DensityParams, compute=density_measure, unit="HVP",
    summary="eigenvalue density by stochastic Lanczos quadrature",
    headline=(), datasets=("nodes", "weights", "grid", "density"),
    line=lambda a: f"SLQ {a['steps']} steps x {a['draws']} draws ({a['n_hvp']} HVPs)",
    reference="Ghorbani, Krishnan & Xiao (ICML 2019)"))
