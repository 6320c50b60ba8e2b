r"""Hessian-vector products and the extreme eigenvalues of the Hessian.

The Hessian :math:`H = \nabla^2 L(\theta)` of a loss over a fixed sample set is
never formed.  Everything here works through a Hessian-vector product (HVP)
:math:`v \mapsto Hv`, built in one of two ways:

* **double backward** (Pearlmutter 1994; PyHessian's way): the gradient
  :math:`g = \nabla L` is computed once with ``create_graph=True`` and every
  HVP is one more backward pass, :math:`Hv = \nabla_\theta (g^\top v)`,
  through that saved graph;
* **forward-over-reverse**: ``torch.func.jvp(torch.func.grad(f), (θ,), (v,))``,
  which recomputes the forward and backward passes at every call.

On this project's CPU models the double-backward product costs about two
forward+backward passes and forward-over-reverse four to five (see
``benchmarks/bench_hessian.py``), so double backward is the default.

The top eigenvalues come from Lanczos as implemented by ARPACK
(``scipy.sparse.linalg.eigsh``) over a :class:`HessianLinearOperator`, with
float64 on the scipy side.  The smallest eigenvalue comes from the same
iteration (thick-restart Lanczos) written out here, so that a run stopped at
its iteration limit still returns its Ritz value and residual
(:func:`hessian_smallest_eigenvalue`).  :func:`power_iteration` is PyHessian's
power iteration with deflation, kept as the baseline the benchmark compares with.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> f = lambda w: 0.5 * w @ H @ w
    >>> hvp = make_hvp(f, torch.zeros(3, dtype=torch.float64))
    >>> hessian_top_eigenvalues(hvp, 3, k=2).eigenvalues.round(6).tolist()
    [4.0, 1.0]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor

from landscape._errors import UserError
from landscape.sharpness._base import HVP, LossFunction, Objective, check_flat, scalar_loss
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register


class HVPMethod(str, Enum):
    """How a Hessian-vector product is computed."""

    DOUBLE_BACKWARD = "double-backward"
    FORWARD_OVER_REVERSE = "forward-over-reverse"


def hvp_double_backward(f: LossFunction, theta: Tensor, *,
                        reuse_graph: bool = True) -> HVP:
    r"""HVP by differentiating :math:`g(\theta)^\top v` (double backward).

    Args:
        f: Differentiable loss of a flat vector.
        theta: Point at which the Hessian is taken, ``(n,)``.
        reuse_graph: Compute the gradient graph once and run one backward pass
            per product (fast; keeps the graph of the whole sample set in
            memory).  ``False`` recomputes it at every call.

    Returns:
        A function ``v -> H v`` on ``(n,)`` tensors of ``theta``'s dtype.
    """
    check_flat(theta)
    t = theta.detach().clone().requires_grad_(True)

    def grad_graph() -> Tensor:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(scalar_loss(f(t)), t, create_graph=True)
        return g

    saved = grad_graph() if reuse_graph else None

    def hvp(v: Tensor) -> Tensor:
        g = saved if saved is not None else grad_graph()
        if not g.requires_grad:  # the loss is linear in theta: H = 0
            return torch.zeros_like(t)
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(g, t, v.to(t), retain_graph=reuse_graph,
                                        allow_unused=True)
        return torch.zeros_like(t) if hv is None else hv.detach()

    return hvp


def hvp_forward_over_reverse(f: LossFunction, theta: Tensor) -> HVP:
    r"""HVP as the directional derivative of the gradient, ``jvp(grad(f))``.

    Args:
        f: Loss of a flat vector, composable with ``torch.func`` transforms.
        theta: Point at which the Hessian is taken, ``(n,)``.

    Returns:
        A function ``v -> H v`` on ``(n,)`` tensors of ``theta``'s dtype.
    """
    check_flat(theta)
    t = theta.detach()
    grad_f = torch.func.grad(f)

    def hvp(v: Tensor) -> Tensor:
        with warnings.catch_warnings():  # torch loads its jvp decompositions with jit
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated",
                                    FutureWarning)
            return torch.func.jvp(grad_f, (t,), (v.to(t),))[1].detach()

    return hvp


def make_hvp(f: LossFunction | Objective, theta: Tensor,
             method: HVPMethod | str = HVPMethod.DOUBLE_BACKWARD) -> HVP:
    """The HVP of ``f`` at ``theta`` by the chosen :class:`HVPMethod`.

    An :class:`~landscape.sharpness._base.Objective` (such as the batched
    :class:`landscape.evaluate.EmpiricalRisk`) supplies its own double-backward
    product, accumulated over batches.

    Returns:
        A function ``v -> H v``.

    Raises:
        ValueError: For forward-over-reverse on an objective that is not a callable
            of the flat vector.
    """
    method = HVPMethod(method)
    if isinstance(f, Objective):
        if method is not HVPMethod.DOUBLE_BACKWARD:
            raise ValueError("a batched objective computes double-backward HVPs only; "
                             "use method='double-backward'")
        return f.hvp(theta)
    if method is HVPMethod.DOUBLE_BACKWARD:
        return hvp_double_backward(f, theta)
    return hvp_forward_over_reverse(f, theta)


class HessianLinearOperator(LinearOperator):
    """A symmetric scipy ``LinearOperator`` (float64) over a torch HVP.

    Args:
        hvp: ``v -> H v`` on ``(n,)`` tensors.
        n: Dimension.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.

    Attributes:
        n_hvp: Number of products computed so far.
    """

    def __init__(self, hvp: HVP, n: int, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(dtype=np.dtype(np.float64), shape=(n, n))
        self.hvp = hvp
        self.torch_dtype = dtype
        self.device = torch.device(device)
        self.n_hvp = 0

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
        out = self.hvp(v.to(self.device, self.torch_dtype))
        self.n_hvp += 1
        return out.detach().to("cpu", torch.float64).numpy()

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._matvec(x)

    def _adjoint(self) -> HessianLinearOperator:
        return self


@dataclass(frozen=True)
class Eigenpairs:
    """Eigenvalues (and optionally eigenvectors) found with a count of HVPs.

    Attributes:
        eigenvalues: ``(k,)``, descending for the top, ascending for the bottom.
        n_hvp: Hessian-vector products used.
        eigenvectors: ``(n, k)`` unit columns, or ``None``.
        converged: ``False`` if the solver stopped at its iteration limit.  The
            values are then the best available: for the smallest eigenvalue the
            final Ritz value with its residual; for the top eigenvalues
            (ARPACK, which returns converged pairs only) NaN where none.
        residuals: ``(k,)`` residual norms :math:`\\|Hx - \\theta x\\|` of the
            unit Ritz vectors, or ``None`` where the solver does not report them.
            Some eigenvalue of ``H`` lies within this distance of each value.
        relative_residuals: ``(k,)`` the residuals divided by the scale the
            stopping test used (``tol`` bounds them when ``converged``), or
            ``None``.
    """

    eigenvalues: np.ndarray
    n_hvp: int
    eigenvectors: np.ndarray | None = None
    converged: bool = True
    residuals: np.ndarray | None = None
    relative_residuals: np.ndarray | None = None


def dense_hessian(hvp: HVP, n: int, dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """The ``(n, n)`` Hessian from ``n`` products with unit vectors (symmetrized).

    Only for small ``n`` (tests and tiny models).

    Returns:
        The float64 matrix.
    """
    H = np.empty((n, n))
    e = torch.zeros(n, dtype=dtype, device=device)
    for i in range(n):
        e.zero_()
        e[i] = 1
        H[:, i] = hvp(e).detach().to("cpu", torch.float64).numpy()
    return 0.5 * (H + H.T)


def _eigsh(hvp: HVP, n: int, k: int, which: str, *, tol: float, ncv: int | None,
           maxiter: int | None, seed: int, dtype: torch.dtype,
           device: torch.device | str, eigenvectors: bool) -> Eigenpairs:
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, n={n}], got {k}; ask for fewer eigenvalues")
    op = HessianLinearOperator(hvp, n, dtype, device)
    if ncv is None:
        ncv = max(2 * k + 2, 4)
    ncv = min(ncv, n)
    descending = which == "LA"
    if k >= n - 1 or ncv >= n:  # ARPACK needs k < ncv < n: solve densely instead
        w, V = np.linalg.eigh(dense_hessian(hvp, n, dtype, device))
        order = np.argsort(-w if descending else w)[:k]
        return Eigenpairs(w[order], n, V[:, order] if eigenvectors else None)
    v0 = np.random.default_rng(seed).standard_normal(n)
    converged = True
    try:
        out = eigsh(op, k=k, which=which, tol=tol, ncv=ncv, maxiter=maxiter, v0=v0,
                    return_eigenvectors=eigenvectors)
    except ArpackNoConvergence as e:  # keep what did converge, NaN for the rest
        converged = False
        vals = np.full(k, np.nan)
        vals[:len(e.eigenvalues)] = e.eigenvalues
        vecs = None
        if eigenvectors:
            vecs = np.full((n, k), np.nan)
            vecs[:, :len(e.eigenvalues)] = e.eigenvectors
        out = (vals, vecs) if eigenvectors else vals
    w, V = out if eigenvectors else (out, None)
    order = np.argsort(-w if descending else w)
    return Eigenpairs(np.asarray(w)[order], op.n_hvp,
                      None if V is None else np.asarray(V)[:, order], converged)


def hessian_top_eigenvalues(
    hvp: HVP, n: int, k: int = 5, *, tol: float = 1e-3, ncv: int | None = None,
    maxiter: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu", eigenvectors: bool = False,
) -> Eigenpairs:
    r"""The ``k`` largest (algebraic) eigenvalues by Lanczos (ARPACK ``eigsh``).

    ARPACK stops when every wanted Ritz pair has residual
    :math:`\|Hx - \theta x\| \le \mathrm{tol}\,|\theta|`, so each returned
    value lies within ``tol`` (relative) of a true eigenvalue, and within about
    :math:`\mathrm{tol}^2 |\theta|^2 / \mathrm{gap}` when it is separated from
    the rest.  A looser ``tol`` (1e-2) saves a few HVPs but can, with clustered
    top eigenvalues, return a lower eigenvalue in place of a missed one; the
    default 1e-3 did not in ``benchmarks/bench_hessian.py`` and the tests.

    Args:
        hvp: ``v -> H v``.
        n: Dimension of ``H``.
        k: Number of eigenvalues.
        tol: ARPACK's relative residual tolerance.
        ncv: Lanczos basis size (default ``max(2k + 2, 4)``; small values save
            HVPs when the top eigenvalues are well separated).
        maxiter: ARPACK restart limit (``None``: scipy's default).
        seed: Seed of the start vector.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.
        eigenvectors: Also return the eigenvectors.

    Returns:
        The eigenvalues in descending order, with the number of HVPs used.

    Raises:
        ValueError: If ``k`` is not in ``[1, n]``.
    """
    return _eigsh(hvp, n, k, "LA", tol=tol, ncv=ncv, maxiter=maxiter, seed=seed,
                  dtype=dtype, device=device, eigenvectors=eigenvectors)


class MinEigMethod(str, Enum):
    """How :func:`hessian_smallest_eigenvalue` decides that λ_min has converged."""

    SHIFT = "shift"  # ‖r‖ <= tol (s - θ): Lanczos on s I - H, s = λ_max (loss-landscape)
    SA = "sa"  # ‖r‖ <= tol |θ|: ARPACK's which='SA' test on H itself


@dataclass(frozen=True)
class _Ritz:
    """The wanted (smallest) Ritz pair of a Lanczos run."""

    value: float
    vector: np.ndarray  # (n,) unit
    residual: float
    scale: float
    n_hvp: int
    converged: bool


def _restarted_lanczos_smallest(
    matvec: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, *, ncv: int,
    maxiter: int, tol: float, scale: Callable[[float], float],
    history: list[tuple[int, float, float]] | None = None,
) -> _Ritz:
    r"""Thick-restart Lanczos for the smallest eigenpair (Wu & Simon 2000).

    Builds an orthonormal basis ``V`` (float64, each new vector orthogonalized
    twice against all earlier ones) and the projection :math:`T = V^\top H V`.
    Each time the basis holds ``ncv`` vectors the smallest Ritz pair
    :math:`(\theta, x = Vs)` of ``T`` is checked: with :math:`w` the part of
    the last product orthogonal to ``V``, :math:`Hx - \theta x = w\,
    s_{\mathrm{last}}`, so its residual :math:`\|w\|\,|s_{\mathrm{last}}|`
    costs no product.  If it is not small enough, the half of the Ritz vectors
    with the smallest values is kept (with :math:`w/\|w\|`) and the basis is
    refilled: the restart ARPACK performs with exact shifts, keeping
    ``ncv // 2`` vectors as ARPACK does for one wanted eigenvalue (Sorensen
    1992; Wu & Simon 2000), so the wanted Ritz value never increases.  As in
    ARPACK, the test runs only on a full basis: in a dense bulk of
    eigenvalues every Ritz value has a small residual (some eigenvalue is
    near it), so an early test would stop inside the bulk, above λ_min.

    Args:
        matvec: ``x -> H x`` on float64 vectors.
        v0: Start vector (normalized here).
        ncv: Basis size.
        maxiter: Restarts allowed; at most ``ncv + maxiter (ncv - ncv // 2)``
            products.
        tol: Stop once the residual is at most ``tol * scale(theta)``.
        scale: The stopping test's scale as a function of the Ritz value.
        history: If given, ``(n_hvp, theta, residual)`` is appended at every test.

    Returns:
        The final (smallest) Ritz pair, its residual and the products used.
    """
    n = v0.size
    m = min(ncv, n)
    keep = max(1, m // 2)
    V = np.zeros((m + 1, n))  # (basis, n)
    T = np.zeros((m, m))
    V[0] = v0 / np.linalg.norm(v0)
    j, n_hvp, restarts = 0, 0, 0
    while True:
        w = np.asarray(matvec(V[j]), dtype=np.float64).ravel()
        n_hvp += 1
        h = V[:j + 1] @ w
        w = w - V[:j + 1].T @ h
        h2 = V[:j + 1] @ w  # second pass (classical Gram-Schmidt, twice)
        w, h = w - V[:j + 1].T @ h2, h + h2
        T[:j + 1, j] = T[j, :j + 1] = h
        j += 1
        beta = float(np.linalg.norm(w))
        size = max(float(np.abs(T[:j, :j]).max()), np.finfo(float).tiny)
        invariant = beta <= 1e-12 * size or j == n  # the Krylov space is exact
        if j < m and not invariant:
            V[j] = w / beta
            continue
        theta, S = np.linalg.eigh(T[:j, :j])
        res = beta * float(abs(S[j - 1, 0]))
        if history is not None:
            history.append((n_hvp, float(theta[0]), res))
        ok = invariant or res <= tol * scale(float(theta[0]))
        if ok or restarts >= maxiter:
            x = V[:j].T @ S[:, 0]
            return _Ritz(float(theta[0]), x / np.linalg.norm(x), res,
                         scale(float(theta[0])), n_hvp, ok)
        restarts += 1  # keep the `keep` smallest Ritz vectors and w / beta
        V[:keep] = S[:, :keep].T @ V[:m]
        V[keep] = w / beta
        T[:] = 0.0
        T[:keep, :keep] = np.diag(theta[:keep])
        j = keep


def hessian_smallest_eigenvalue(
    hvp: HVP, n: int, *, method: MinEigMethod | str = MinEigMethod.SA,
    lambda_max: float | None = None, tol: float = 1e-2, ncv: int = 40,
    maxiter: int = 100, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu", eigenvectors: bool = False,
) -> Eigenpairs:
    r"""The smallest (most negative) eigenvalue by restarted Lanczos.

    At a trained solution the bottom of the spectrum is a dense bulk near
    zero, so λ_min converges much more slowly than the top eigenvalues.  The
    search is thick-restart Lanczos (:func:`_restarted_lanczos_smallest`), the
    iteration ARPACK's ``eigsh`` runs, done here so that a run that stops at
    ``maxiter`` still returns its final Ritz value :math:`\theta` (an upper
    bound on λ_min, the lowest one the run found) with its residual
    :math:`\|Hx - \theta x\|`, instead of NaN.

    ``method`` is the stopping test.  ``"sa"`` is ARPACK's ``which='SA'`` on
    :math:`H`: stop when :math:`\|Hx - \theta x\| \le \mathrm{tol}\,|\theta|`.
    ``"shift"`` is the spectrum shift of tomgoldstein/loss-landscape: the top
    eigenvalue of :math:`sI - H`, :math:`s = \lambda_{\max}`, is
    :math:`s - \lambda_{\min}`, and ARPACK (``which='LA'``) stops when
    :math:`\|Hx - \theta x\| \le \mathrm{tol}\,(s - \theta)`.  Lanczos is
    shift invariant (:math:`H` and :math:`sI - H` have the same Krylov spaces,
    Ritz vectors and residuals; the Ritz values move by :math:`s`), so the
    two iterate identically and differ only in when they stop (running on
    :math:`H` avoids the cancellation in :math:`s - (s - \lambda_{\min})`).
    The shift test is :math:`\lambda_{\max}/|\lambda_{\min}|` times looser,
    and a residual that small does not locate λ_min below a dense bulk: some
    eigenvalue of the bulk lies within it of any Ritz value there.  On
    MNIST-1D CNN solutions (``benchmarks/bench_hessian.py``, ``"min_eig"``)
    the shift test at ``tol`` 1e-2 stopped after 20 HVPs 22–27 % (small
    batch) and 96–97 % (large batch: −0.0016 for −0.0380) above λ_min, and
    needed ``tol`` 1e-4 and 120–180 HVPs for 0.02–1.7 %; the ``"sa"`` test at
    1e-2 was within 0.5 % (mostly 1e-5) for 130–560 HVPs at ``ncv`` 20.  At
    equal accuracy neither is cheaper, so ``"sa"`` is the default, and the
    lever on the cost is ``ncv``: a larger basis loses less at each restart
    (median 150 → 80 and 460 → 200 HVPs from ``ncv`` 20 to 40 there, errors
    ≤ 0.5 %; at 80 one run stopped on its first basis 1.5 % high) for
    ``ncv + 1`` stored float64 vectors of length ``n``.

    Args:
        hvp: ``v -> H v``.
        n: Dimension of ``H``.
        method: The stopping test, a :class:`MinEigMethod`.
        lambda_max: :math:`s` for ``"shift"``; ``None`` computes it
            (:func:`hessian_top_eigenvalues`, ``k=1``, ``tol=1e-3``) and counts
            those HVPs in ``n_hvp``.  Unused by ``"sa"``.
        tol: Relative residual tolerance of the stopping test.
        ncv: Lanczos basis size (ARPACK's ``ncv``); half is kept at a restart.
            Memory: ``ncv + 1`` float64 vectors of length ``n``.
        maxiter: Restarts allowed (ARPACK's ``maxiter``): at most
            ``ncv + maxiter * (ncv - ncv // 2)`` HVPs for the search.
        seed: Seed of the start vector.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.
        eigenvectors: Also return the Ritz vector.

    Returns:
        One eigenvalue with its residual, relative residual (the residual over
        the stopping test's scale), ``converged`` and the number of HVPs used.

    Raises:
        ValueError: If ``tol`` is negative, ``ncv < 2``, ``maxiter < 0`` or
            ``n < 1``.

    Example:
        >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.5, -0.25], dtype=torch.float64))
        >>> r = hessian_smallest_eigenvalue(lambda v: H @ v, 4)
        >>> round(float(r.eigenvalues[0]), 12), r.converged
        (-0.25, True)
    """
    method = MinEigMethod(method)
    if tol < 0 or ncv < 2 or maxiter < 0 or n < 1:
        raise ValueError(f"need tol >= 0, ncv >= 2, maxiter >= 0 and n >= 1, got tol={tol}, "
                         f"ncv={ncv}, maxiter={maxiter}, n={n}; pass valid values")
    n_top = 0
    floor = np.finfo(float).eps ** (2 / 3)  # ARPACK's floor on the scale
    if method is MinEigMethod.SHIFT:
        if lambda_max is None:
            top = hessian_top_eigenvalues(hvp, n, 1, tol=1e-3, seed=seed, dtype=dtype,
                                          device=device)
            lambda_max, n_top = float(top.eigenvalues[0]), top.n_hvp
        s = float(lambda_max)

        def scale(theta: float) -> float:
            return max(s - theta, floor)
    else:
        def scale(theta: float) -> float:
            return max(abs(theta), floor)

    op = HessianLinearOperator(hvp, n, dtype, device)
    v0 = np.random.default_rng(seed).standard_normal(n)
    r = _restarted_lanczos_smallest(op.matvec, v0, ncv=ncv, maxiter=maxiter, tol=tol,
                                    scale=scale)
    return Eigenpairs(np.array([r.value]), n_top + r.n_hvp,
                      r.vector[:, None] if eigenvectors else None, r.converged,
                      np.array([r.residual]), np.array([r.residual / r.scale]))


def power_iteration(
    hvp: HVP, n: int, k: int = 1, *, max_iter: int = 100, tol: float = 1e-3,
    seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Eigenpairs:
    r"""Top-``k`` eigenvalues by power iteration with deflation (PyHessian's method).

    For each eigenvalue a Gaussian start vector is repeatedly orthogonalized
    against the eigenvectors already found, multiplied by ``H`` and normalized;
    the Rayleigh quotient :math:`v^\top H v` is the estimate, and the iteration
    stops when it changes by less than ``tol`` relative (Yao et al. 2020,
    PyHessian, ``maxIter=100, tol=1e-3``).  It finds the largest-*magnitude*
    eigenvalues.

    Args:
        hvp: ``v -> H v``.
        n: Dimension.
        k: Number of eigenvalues.
        max_iter: HVPs per eigenvalue at most.
        tol: Relative change of the estimate at which to stop.
        seed: Seed of the start vectors.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.

    Returns:
        The estimates in the order found, with their eigenvectors.
    """
    gen = torch.Generator(device=device).manual_seed(int(seed))
    vecs: list[Tensor] = []
    vals: list[float] = []
    n_hvp = 0
    for _ in range(k):
        v = torch.randn(n, generator=gen, dtype=dtype, device=device)
        v = v / v.norm()
        est: float | None = None
        for _ in range(max_iter):
            for u in vecs:
                v = v - (v @ u) * u
            v = v / v.norm()
            hv = hvp(v).to(dtype)
            n_hvp += 1
            new = float(hv @ v)
            v = hv / hv.norm()
            done = est is not None and abs(new - est) / (abs(est) + 1e-6) < tol
            est = new
            if done:
                break
        vecs.append(v)
        vals.append(float("nan") if est is None else est)
    V = torch.stack(vecs, 1).to("cpu", torch.float64).numpy()
    return Eigenpairs(np.asarray(vals), n_hvp, V)


# =========================================================================== measure
@dataclass(frozen=True)
class HessianParams:
    """Parameters of the ``hessian`` measure."""

    top_k: int = param(5, "number of top Hessian eigenvalues (Lanczos, at most the "
                       "parameter count); ARPACK's basis holds 2k+2 vectors, so a few "
                       "tens of HVPs unless the top eigenvalues cluster")
    eig_tol: float = param(1e-3, "ARPACK relative residual tolerance of the top Ritz pairs")
    smallest: bool = param(False, "also the smallest (most negative) eigenvalue; opt in: "
                           "it costs at least min-eig-ncv more HVPs and up to "
                           "min-eig-ncv x min-eig-maxiter where λ_min sits in a bulk")
    min_eig_tol: float = param(1e-2, "relative residual tolerance of the smallest "
                               "eigenvalue")
    min_eig_maxiter: int = param(100, "Lanczos restarts for the smallest eigenvalue; if it "
                                 "has not converged by then the best Ritz value is stored "
                                 "with its residual")
    min_eig_ncv: int = param(40, "Lanczos basis size for the smallest eigenvalue")
    min_eig_method: str = param(MinEigMethod.SA.value, "stopping test: sa (residual "
                                "relative to |λ_min|) or shift (relative to λ_max − "
                                "λ_min; stops sooner, far less accurate)",
                                choices=tuple(m.value for m in MinEigMethod))
    save_eigenvectors: bool = param(False, "store the top-k eigenvectors (k x n floats)")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive count or tolerance."""
        check_positive(self, "top_k", "eig_tol", "min_eig_tol", "min_eig_maxiter",
                       "min_eig_ncv")


def hessian_measure(ctx: MeasureContext, p: HessianParams) -> Result:
    """Top-k eigenvalues of the Hessian at the context's solution, and the smallest
    one when ``smallest`` asks for it.

    Returns:
        Scalars (``lambda_max``, ``lambda_min`` (NaN unless asked for), HVP counts,
        convergence) and the ``eigenvalues`` (and optionally ``eigenvectors``) arrays.

    Raises:
        UserError: If ``top_k`` exceeds the number of parameters.
    """
    if p.top_k > ctx.n:
        raise UserError(f"top_k = {p.top_k} exceeds the model's {ctx.n} parameters "
                        f"(the Hessian has {ctx.n} eigenvalues); choose top_k <= {ctx.n}")
    hvp = ctx.hvp()
    kw = {"seed": ctx.seed, "dtype": ctx.dtype, "device": ctx.device}
    top = hessian_top_eigenvalues(hvp, ctx.n, p.top_k, tol=p.eig_tol,
                                  eigenvectors=p.save_eigenvectors, **kw)
    attrs: dict[str, Any] = {
        "lambda_max": float(top.eigenvalues[0]), "top_k": p.top_k,
        "n_hvp_top": top.n_hvp, "converged_top": top.converged, "eig_tol": p.eig_tol,
        "lambda_min": math.nan, "n_hvp_min": 0, "converged_min": False,
        "residual_min": math.nan, "relative_residual_min": math.nan,
        "min_eig_tol": p.min_eig_tol, "min_eig_method": p.min_eig_method}
    if p.smallest:
        low = hessian_smallest_eigenvalue(
            hvp, ctx.n, method=p.min_eig_method, lambda_max=attrs["lambda_max"],
            tol=p.min_eig_tol, ncv=p.min_eig_ncv, maxiter=p.min_eig_maxiter, **kw)
        res = low.residuals if low.residuals is not None else [math.nan]
        rel = low.relative_residuals if low.relative_residuals is not None else [math.nan]
        attrs |= {"lambda_min": float(low.eigenvalues[0]), "n_hvp_min": low.n_hvp,
                  "converged_min": bool(low.converged), "residual_min": float(res[0]),
                  "relative_residual_min": float(rel[0])}
    attrs["min_max_ratio"] = abs(attrs["lambda_min"] / attrs["lambda_max"])
    arrays: dict[str, np.ndarray] = {"eigenvalues": top.eigenvalues}
    if top.eigenvectors is not None:
        arrays["eigenvectors"] = top.eigenvectors.T.astype(np.float32)  # (k, n)
    return attrs, arrays


register(MeasureSpec(
    name="hessian", order=10, params=HessianParams, compute=hessian_measure, unit="HVP",
    summary="top-k eigenvalues by Lanczos (ARPACK); the smallest one with --smallest",
    headline=(Headline("lambda_max", "λ_max (Hessian)"),
              Headline("lambda_min", "λ_min (Hessian)", report=False,
                       converged="converged_min", residual="residual_min")),
    datasets=("eigenvalues", "eigenvectors"),
    line=lambda a: (f"lambda_max {a['lambda_max']:.6g}"
                    + (f" ({a['n_hvp_top']} HVPs)" if not a.get("n_hvp_min") else
                       f", lambda_min {a['lambda_min']:.6g}"
                       + ("" if a.get("converged_min", True) else
                          f" (not converged, residual {a.get('residual_min', math.nan):.2g})")
                       + f" ({a['n_hvp_top']}+{a['n_hvp_min']} HVPs)")),
    reference="Lanczos (1950) via ARPACK; cf. PyHessian (Yao et al. 2020)"))
