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
float64 on the scipy side.  :func:`power_iteration` is PyHessian's power
iteration with deflation, kept as the baseline the benchmark compares with.

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
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor

from landscape.sharpness._base import HVP, LossFunction, Objective, check_flat
from landscape.sharpness._registry import (
    Headline,
    MeasureContext,
    MeasureSpec,
    Result,
    check_positive,
    param,
    register,
)


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
            (g,) = torch.autograd.grad(f(t), t, create_graph=True)
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
        converged: ``False`` if the solver stopped at its iteration limit (the
            values are then the best available, NaN where none).
    """

    eigenvalues: np.ndarray
    n_hvp: int
    eigenvectors: np.ndarray | None = None
    converged: bool = True


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


def hessian_smallest_eigenvalue(
    hvp: HVP, n: int, *, tol: float = 1e-2, ncv: int | None = 20,
    maxiter: int | None = 100, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Eigenpairs:
    r"""The smallest (most negative) eigenvalue by Lanczos, ``which='SA'``.

    At a trained solution the bottom of the spectrum is a dense bulk near zero,
    so this converges much more slowly than the top; ``converged`` says whether
    ARPACK met ``tol`` within ``maxiter`` restarts.

    Args:
        hvp: ``v -> H v``.
        n: Dimension of ``H``.
        tol: ARPACK's relative residual tolerance.
        ncv: Lanczos basis size.
        maxiter: ARPACK restart limit.
        seed: Seed of the start vector.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.

    Returns:
        One eigenvalue (ascending order) with the number of HVPs used.
    """
    return _eigsh(hvp, n, 1, "SA", tol=tol, ncv=ncv, maxiter=maxiter, seed=seed,
                  dtype=dtype, device=device, eigenvectors=False)


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

    top_k: int = param(5, "number of top Hessian eigenvalues (Lanczos)")
    eig_tol: float = param(1e-3, "ARPACK relative residual tolerance of the top Ritz pairs")
    smallest: bool = param(True, "also the smallest (most negative) eigenvalue")
    min_tol: float = param(1e-2, "ARPACK relative residual tolerance of the smallest")
    save_eigenvectors: bool = param(False, "store the top-k eigenvectors (k x n floats)")

    def validate(self) -> None:
        """Raise a one-line error for a non-positive count or tolerance."""
        check_positive(self, "top_k", "eig_tol", "min_tol")


def hessian_measure(ctx: MeasureContext, p: HessianParams) -> Result:
    """Top-k and smallest eigenvalues of the Hessian at the context's solution.

    Returns:
        Scalars (``lambda_max``, ``lambda_min``, HVP counts, convergence) and the
        ``eigenvalues`` (and optionally ``eigenvectors``) arrays.
    """
    hvp = ctx.hvp()
    kw = {"seed": ctx.seed, "dtype": ctx.dtype, "device": ctx.device}
    top = hessian_top_eigenvalues(hvp, ctx.n, min(p.top_k, ctx.n), tol=p.eig_tol,
                                  eigenvectors=p.save_eigenvectors, **kw)
    attrs: dict[str, Any] = {
        "lambda_max": float(top.eigenvalues[0]), "top_k": p.top_k,
        "n_hvp_top": top.n_hvp, "converged_top": top.converged, "eig_tol": p.eig_tol,
        "lambda_min": math.nan, "n_hvp_min": 0, "converged_min": False,
        "min_tol": p.min_tol}
    if p.smallest:
        low = hessian_smallest_eigenvalue(hvp, ctx.n, tol=p.min_tol, **kw)
        attrs |= {"lambda_min": float(low.eigenvalues[0]), "n_hvp_min": low.n_hvp,
                  "converged_min": low.converged}
    attrs["min_max_ratio"] = abs(attrs["lambda_min"] / attrs["lambda_max"])
    arrays: dict[str, np.ndarray] = {"eigenvalues": top.eigenvalues}
    if top.eigenvectors is not None:
        arrays["eigenvectors"] = top.eigenvectors.T.astype(np.float32)  # (k, n)
    return attrs, arrays


register(MeasureSpec(
    name="hessian", order=10, params=HessianParams, compute=hessian_measure, unit="HVP",
    summary="top-k eigenvalues by Lanczos (ARPACK) and the smallest eigenvalue",
    headline=(Headline("lambda_max", "λ_max (Hessian)"),
              Headline("lambda_min", "λ_min (Hessian)", report=False)),
    datasets=("eigenvalues", "eigenvectors"),
    line=lambda a: (f"lambda_max {a['lambda_max']:.6g}, lambda_min {a['lambda_min']:.6g} "
                    f"({a['n_hvp_top']}+{a['n_hvp_min']} HVPs)"),
    reference="Lanczos (1950) via ARPACK; cf. PyHessian (Yao et al. 2020)"))
