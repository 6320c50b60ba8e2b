"""Sharpness measures against closed forms, dense Hessians and invariances."""

from __future__ import annotations

import copy
import itertools
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from helpers import allclose_report
from torch import Tensor, nn

from landscape.cli import main
from landscape.data import TensorData, load_dataset
from landscape.evaluate import Evaluator
from landscape.jobs import compare_solutions, measure_solution
from landscape.sharpness import (
    HVPMethod,
    MeasureConfig,
    SpectralDensity,
    adaptive_sharpness,
    average_sharpness,
    dense_hessian,
    epsilon_sharpness,
    hessian_smallest_eigenvalue,
    hessian_top_eigenvalues,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_tridiagonal,
    make_hvp,
    median_ci,
    pacbayes_sigma,
    power_iteration,
    random_widths,
    sam_one_step,
    sam_sharpness,
    slq_density,
    specs,
    tridiagonal_nodes_weights,
    width_along,
    width_ratio,
)
from landscape.sharpness import measure as ls_measure
from landscape.sharpness.oracles import ball_max_rise, quadratic

F64 = torch.float64
H_DIAG = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=F64))
W_STAR = torch.tensor([1.0, -2.0, 0.5], dtype=F64)


# =========================================================================== helpers
def random_spd(n: int, seed: int, *, low: float = 0.1, high: float = 10.0,
               negative: int = 0) -> tuple[Tensor, np.ndarray]:
    """Q diag(eigs) Q^T with log-uniform eigenvalues (``negative`` of them < 0)."""
    rng = np.random.default_rng(seed)
    eigs = np.exp(rng.uniform(np.log(low), np.log(high), n))
    eigs[:negative] *= -0.3
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.from_numpy(Q @ np.diag(eigs) @ Q.T), np.sort(eigs)


def relu_net(d_in: int = 4, hidden: int = 6, classes: int = 3, n: int = 40,
             seed: int = 0) -> tuple[nn.Module, TensorData]:
    """A bias-free one-hidden-layer ReLU net (float64) and random data."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d_in, hidden, bias=False), nn.ReLU(),
                        nn.Linear(hidden, classes, bias=False)).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=g)
    return net, TensorData("random", x, y, x[:4], y[:4], classes)


# =========================================================================== HVP
@pytest.mark.parametrize("method", list(HVPMethod), ids=lambda m: m.value)
def test_hvp_matches_matrix_on_quadratic(method: HVPMethod) -> None:
    H, _ = random_spd(20, seed=1)
    hvp = make_hvp(quadratic(H, torch.zeros(20, dtype=F64)), torch.randn(20, dtype=F64),
                   method)
    v = torch.randn(20, dtype=F64)
    allclose_report(hvp(v).numpy(), (H @ v).numpy(), rtol=1e-12, atol=1e-12)
    allclose_report(hvp(2 * v).numpy(), (2 * H @ v).numpy(), rtol=1e-12, atol=1e-12)


def _tiny_cnn_loss(samples: int = 32) -> tuple[Callable[[Tensor], Tensor], Tensor, Any]:
    """A float64 Conv1d + BN net on a few MNIST-1D samples: the test's own functional
    loss, the solution and the evaluation path's batched risk of the same loss."""
    d = load_dataset("mnist1d", root=None, num_samples=200, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 3, 5, stride=2), nn.BatchNorm1d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 18, 10)).double()
    with torch.no_grad():  # non-trivial BN statistics, held fixed (eval mode)
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    d64 = TensorData("mnist1d", d.x_train[:samples].double(), d.y_train[:samples],
                     d.x_test[:8].double(), d.y_test[:8], 10)
    ev = Evaluator(net, *d64.splits(), bn="keep")
    theta = ev.layout.read(net).double()
    buffers = dict(net.named_buffers())
    x, y = d64.x_train, d64.y_train

    def f(th: Tensor) -> Tensor:
        out = torch.func.functional_call(net, {**ev.layout.unflatten(th), **buffers}, (x,))
        return nn.functional.cross_entropy(out, y)

    return f, theta, ev.risk()  # the model's own (float64) BN buffers


def test_small_cnn_top_eigenvalue_matches_dense_hessian() -> None:
    f, theta, risk = _tiny_cnn_loss()
    dense = torch.func.hessian(f)(theta).numpy()  # (n, n), n = 574
    assert theta.numel() == dense.shape[0] == 574
    exact = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    v = torch.randn(theta.numel(), dtype=F64)
    for method in HVPMethod:
        hvp = make_hvp(f, theta, method)
        allclose_report(hvp(v).numpy(), dense @ v.numpy(), rtol=1e-8, atol=1e-10)
    allclose_report(risk.hvp(theta)(v).numpy(), dense @ v.numpy(), rtol=1e-8,
                        atol=1e-10)
    top = hessian_top_eigenvalues(make_hvp(risk, theta), theta.numel(), k=3)
    assert top.converged
    allclose_report(top.eigenvalues, exact[::-1][:3], rtol=1e-4)
    assert top.n_hvp < 30


# =========================================================================== eigenvalues
def test_top_eigenvalues_of_reference_quadratic() -> None:
    hvp = make_hvp(quadratic(H_DIAG, W_STAR), W_STAR)
    r = hessian_top_eigenvalues(hvp, 3, k=3)  # n <= ncv: solved densely
    allclose_report(r.eigenvalues, [4.0, 1.0, 0.25], rtol=1e-12)
    low = hessian_smallest_eigenvalue(hvp, 3)
    assert low.eigenvalues[0] == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_eigenvalues_random_spd_to_1e6(seed: int) -> None:
    H, eigs = random_spd(80, seed)
    hvp = make_hvp(quadratic(H, torch.zeros(80, dtype=F64)), torch.zeros(80, dtype=F64))
    tight = hessian_top_eigenvalues(hvp, 80, k=5, tol=1e-10, eigenvectors=True)
    allclose_report(tight.eigenvalues, eigs[::-1][:5], rtol=1e-6)
    V = tight.eigenvectors
    assert V is not None
    np.testing.assert_allclose(H.numpy() @ V, V * tight.eigenvalues, atol=1e-6)
    default = hessian_top_eigenvalues(hvp, 80, k=5)  # the CLI default tolerance
    allclose_report(default.eigenvalues, eigs[::-1][:5], rtol=1e-3)


def test_smallest_eigenvalue_of_indefinite_matrix() -> None:
    H, eigs = random_spd(60, seed=3, negative=4)
    hvp = make_hvp(quadratic(H, torch.zeros(60, dtype=F64)), torch.zeros(60, dtype=F64))
    r = hessian_smallest_eigenvalue(hvp, 60, tol=1e-10)
    assert r.converged
    assert r.eigenvalues[0] == pytest.approx(eigs[0], rel=1e-6)
    assert r.eigenvalues[0] < 0


def test_power_iteration_top_eigenvalue() -> None:
    H, eigs = random_spd(50, seed=4)
    r = power_iteration(lambda v: H @ v, 50, k=2, max_iter=100, tol=1e-3)
    assert r.n_hvp <= 200
    allclose_report(r.eigenvalues, eigs[::-1][:2], rtol=2e-2)
    exact = power_iteration(lambda v: H @ v, 50, k=1, max_iter=5000, tol=1e-14)
    assert exact.eigenvalues[0] == pytest.approx(eigs[-1], rel=1e-8)


def test_dense_hessian_is_the_matrix() -> None:
    H, _ = random_spd(12, seed=5)
    np.testing.assert_allclose(dense_hessian(lambda v: H @ v, 12), H.numpy(), atol=1e-14)


# =========================================================================== trace
def test_hutchinson_trace_within_its_3_sigma_and_predicted_sem() -> None:
    H, eigs = random_spd(50, seed=6)
    r = hutchinson_trace(lambda v: H @ v, 50, samples=400, seed=0)
    assert r.n_hvp == 400
    assert abs(r.trace - eigs.sum()) <= 3 * r.sem
    Hn = H.numpy()
    var = 2 * ((Hn**2).sum() - (np.diag(Hn) ** 2).sum())  # Rademacher variance
    assert r.sem == pytest.approx(math.sqrt(var / 400), rel=0.2)
    assert abs(r.frobenius_sq - (Hn**2).sum()) <= 3 * r.frobenius_sq_sem


def test_hutchinson_stops_at_its_relative_standard_error() -> None:
    """The early stop: the first probe count (>= 10) whose standard error is within rtol
    of the mean, the same probes as a full run's first ones; rtol = 0 draws them all."""
    H, eigs = random_spd(50, seed=6)
    full = hutchinson_trace(lambda v: H @ v, 50, samples=400, seed=0)
    q = full.samples
    want = next(m for m in range(10, 401)
                if q[:m].std(ddof=1) / math.sqrt(m) <= 0.02 * abs(q[:m].mean()))
    assert 10 < want < 400  # the test is not vacuous on this spectrum
    r = hutchinson_trace(lambda v: H @ v, 50, samples=400, rtol=0.02, seed=0)
    assert r.n_hvp == want == len(r.samples)
    np.testing.assert_allclose(r.samples, q[:want], rtol=1e-12)
    assert r.sem <= 0.02 * abs(r.trace)
    assert abs(r.trace - eigs.sum()) <= 4 * r.sem
    capped = hutchinson_trace(lambda v: H @ v, 50, samples=want - 1, rtol=0.02, seed=0)
    assert capped.n_hvp == want - 1
    assert capped.sem > 0.02 * abs(capped.trace)
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        hutchinson_trace(lambda v: H @ v, 50, rtol=-1.0)


def test_trace_estimators_converge_with_budget() -> None:
    """Error shrinks as the HVP budget grows; Hutch++ wins on a decaying spectrum."""
    rng = np.random.default_rng(0)
    n = 100
    eigs = 100.0 * 0.7 ** np.arange(n)  # a few outliers dominate the trace
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    H = torch.from_numpy(Q @ np.diag(eigs) @ Q.T)
    errs = {"hutchinson": [], "hutchpp": []}
    for budget in (30, 120):
        for name, fn in (("hutchinson", hutchinson_trace), ("hutchpp", hutchpp_trace)):
            e = [abs(fn(lambda v: H @ v, n, budget, seed=s).trace - eigs.sum())
                 for s in range(10)]
            errs[name].append(float(np.mean(e)))
    for name in errs:
        assert errs[name][1] < errs[name][0]
    assert errs["hutchpp"][1] < 0.01 * errs["hutchinson"][1]
    r = hutchpp_trace(lambda v: H @ v, n, 60, seed=0)
    assert r.n_hvp == 60
    assert abs(r.trace - eigs.sum()) <= 3 * r.sem + 1e-9


# =========================================================================== SLQ
def test_slq_density_integrates_to_one_with_mass_at_the_eigenvalues() -> None:
    rng = np.random.default_rng(7)
    values, mult = np.array([-1.0, 0.5, 2.0, 7.0]), np.array([5, 10, 3, 2])
    eigs = np.repeat(values, mult)
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    H = torch.from_numpy(Q @ np.diag(eigs) @ Q.T)
    d = slq_density(lambda v: H @ v, 20, steps=10, draws=300, seed=0)
    nodes = d.nodes[d.weights > 0]
    # the Krylov space has dimension 4: every node is a true eigenvalue
    assert np.abs(nodes[:, None] - values[None]).min(1).max() < 1e-8
    allclose_report(d.weights.sum(1), np.ones(300), rtol=1e-12)
    grid, dens = d.density(sigma2=1e-4)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-6)
    for lam, m in zip(values, mult, strict=True):
        near = np.abs(grid - lam) < 0.3
        assert np.trapezoid(dens[near], grid[near]) == pytest.approx(m / 20, abs=0.03)
    assert d.moment(1) == pytest.approx(eigs.mean(), abs=0.15)  # 3 MC standard errors
    assert d.n_hvp == 300 * 4  # the 4th step finds the invariant subspace and stops


def _gauss(t: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (t - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)


@pytest.mark.parametrize(("lo", "hi", "var"), [
    pytest.param(-1.0, 3.0, 4 * 0.01, id="range4"),  # sigma2 * (hi - lo)
    pytest.param(0.2, 0.7, 0.01, id="range_below_1"),  # sigma2 * max(1, 0.5)
])
def test_slq_density_of_diag2_is_two_gaussians(lo: float, hi: float, var: float) -> None:
    """diag(lo, hi): every Rademacher start gives nodes lo, hi with weights 1/2, so
    the density is (N(lo, s2) + N(hi, s2)) / 2 with s2 = sigma2 max(1, hi - lo)."""
    H = torch.diag(torch.tensor([hi, lo], dtype=F64))
    d = slq_density(lambda v: H @ v, 2, steps=2, draws=3, seed=1)
    t = np.array([lo - 0.3, lo - 0.05, lo, 0.5 * (lo + hi), hi, hi + 0.1, hi + 0.4])
    grid, dens = d.density(t, sigma2=0.01)
    np.testing.assert_array_equal(grid, t)
    allclose_report(dens, 0.5 * _gauss(t, lo, var) + 0.5 * _gauss(t, hi, var),
                        rtol=1e-12)


def test_slq_kernel_width_uses_the_range_of_all_nodes() -> None:
    """Nodes of every draw count (padding ignored): range 5 - 0, so s2 = 5 sigma2."""
    nan = math.nan
    d = SpectralDensity(nodes=np.array([[0.0, 1.0, nan], [2.0, 5.0, 4.0]]),
                        weights=np.array([[0.25, 0.75, 0.0], [0.5, 0.25, 0.25]]), n_hvp=0)
    t = np.linspace(-0.5, 5.5, 13)
    var = 5 * 1e-3
    exact = (0.25 * _gauss(t, 0.0, var) + 0.75 * _gauss(t, 1.0, var)
             + 0.5 * _gauss(t, 2.0, var) + 0.25 * _gauss(t, 5.0, var)
             + 0.25 * _gauss(t, 4.0, var)) / 2
    allclose_report(d.density(t, sigma2=1e-3)[1], exact, rtol=1e-12)


def test_lanczos_quadrature_reproduces_moments() -> None:
    H, _ = random_spd(50, seed=8)
    Hn = H.numpy()
    v = np.random.default_rng(0).standard_normal(50)
    v /= np.linalg.norm(v)
    a, b = lanczos_tridiagonal(lambda x: Hn @ x, v, 6)
    nodes, w = tridiagonal_nodes_weights(a, b)
    for k in range(2 * 6):  # exact for k <= 2m - 1
        exact = v @ np.linalg.matrix_power(Hn, k) @ v
        assert (w * nodes**k).sum() == pytest.approx(exact, rel=1e-8)
    a3, b3 = lanczos_tridiagonal(lambda x: Hn @ x, v, 40, stop=lambda a, b: len(a) == 3)
    np.testing.assert_array_equal(a3, a[:3])
    np.testing.assert_array_equal(b3, b[:2])
    full = slq_density(lambda x: H @ x, 50, steps=50, draws=1)
    np.testing.assert_allclose(np.sort(full.nodes[0]), np.linalg.eigvalsh(Hn), rtol=1e-8)


# =========================================================================== Keskar
def test_keskar_epsilon_sharpness_diagonal_oracle() -> None:
    r = epsilon_sharpness(quadratic(H_DIAG, W_STAR), W_STAR, eps=1e-3)
    assert r.value == pytest.approx(1.278125e-3, rel=1e-9)
    assert r.loss == 0.0
    assert r.n_evals <= 25


def test_keskar_rotated_quadratic_vertex_enumeration() -> None:
    """Starting inside the box (not at 0) avoids the critical-point trap."""
    H, _ = random_spd(3, seed=9, low=0.25, high=4.0)
    f = quadratic(H, W_STAR)
    eps = 1e-3
    b = eps * (W_STAR.abs() + 1)
    exact = max(float(f(W_STAR + torch.tensor(s, dtype=F64) * b))
                for s in itertools.product((-1.0, 1.0), repeat=3))
    r1 = epsilon_sharpness(f, W_STAR, eps=eps, seed=0)  # may end at a local maximum
    assert 0.2 * 100 * exact < r1.value <= 100 * exact * (1 + 1e-9)
    r = epsilon_sharpness(f, W_STAR, eps=eps, restarts=10, seed=0)
    assert r.value == pytest.approx(100 * exact, rel=1e-6)


@pytest.mark.parametrize(("n", "dim", "seed"), [
    pytest.param(3, 2, 0, id="n3_dim2"), pytest.param(8, 3, 1, id="n8_dim3"),
    pytest.param(10, 4, 2, id="n10_dim4")])
def test_keskar_subspace_is_the_box_vertex_maximum(n: int, dim: int, seed: int) -> None:
    """In the subspace θ + Ay the loss is ½ yᵀAᵀHAy + c, convex in y: its maximum
    over the box |y_i| <= ε(|(A⁺θ)_i| + 1) is at one of the 2^dim vertices.

    A is built as documented (``default_rng(seed).random((n, dim))``, unit
    columns).  The offset c = 0.5 makes the 1 + L(θ) = 1.5 denominator count.
    """
    H, _ = random_spd(n, seed=20 + n, low=0.25, high=4.0)
    theta = torch.from_numpy(np.random.default_rng(30 + n).normal(size=n))
    quad = quadratic(H, theta)
    f = lambda w: quad(w) + 0.5  # noqa: E731
    eps = 1e-3
    A = np.random.default_rng(seed).random((n, dim))
    A /= np.linalg.norm(A, axis=0)
    box = eps * (np.abs(np.linalg.pinv(A) @ theta.numpy()) + 1.0)
    M = A.T @ H.numpy() @ A
    rise = max(0.5 * (np.array(s) * box) @ M @ (np.array(s) * box)
               for s in itertools.product((-1.0, 1.0), repeat=dim))
    r = epsilon_sharpness(f, theta, eps=eps, dim=dim, seed=seed)
    assert r.loss == 0.5
    assert r.value == pytest.approx(100 * rise / 1.5, rel=1e-9)


def _vertex_max(f: Callable[[Tensor], Tensor], theta: Tensor, bound: Tensor) -> float:
    """The largest loss over the 2^n vertices of the box theta ± bound."""
    return max(float(f(theta + torch.tensor(s, dtype=F64) * bound))
               for s in itertools.product((-1.0, 1.0), repeat=theta.numel()))


@pytest.mark.parametrize("seed", range(5))
def test_keskar_is_the_vertex_maximum_of_random_convex_quadratics(seed: int) -> None:
    """A convex quadratic's maximum over the box is at a vertex; with n = 5 the default
    vertex budget (4 starts × 10) covers the 32 vertices, so the value is exact.  The
    quadratic's minimum lies off θ (so the gradient at θ is not 0) and L(θ) > 0."""
    n, eps = 5, 0.05
    H, _ = random_spd(n, seed=40 + seed, low=0.05, high=5.0)
    rng = np.random.default_rng(50 + seed)
    theta = torch.from_numpy(rng.normal(size=n))
    quad = quadratic(H, theta + torch.from_numpy(0.03 * rng.normal(size=n)))
    f = lambda w: quad(w) + 0.2  # noqa: E731
    loss0 = float(f(theta))
    exact = _vertex_max(f, theta, eps * (theta.abs() + 1))
    r = epsilon_sharpness(f, theta, eps=eps, seed=seed)
    assert (r.exact, r.method) == (True, "L-BFGS-B + every vertex")
    assert r.n_loss_evals == 1 + 2**n  # L(θ) and every vertex
    assert r.max_loss == pytest.approx(exact, rel=1e-12)
    assert r.value == pytest.approx(100 * (exact - loss0) / (1 + loss0), rel=1e-9)


def test_keskar_without_the_vertex_search_is_a_flagged_lower_bound() -> None:
    """L-BFGS-B alone (``vertex_starts=0``) stops below the best vertex on this rotated
    quadratic at its minimum, and says so: exact is False."""
    H, _ = random_spd(5, seed=1, low=0.1, high=10.0)  # L-BFGS-B reaches 86 % here
    theta = torch.from_numpy(np.random.default_rng(4).normal(size=5))
    f = quadratic(H, theta)
    exact = 100 * _vertex_max(f, theta, 1e-3 * (theta.abs() + 1))
    off = epsilon_sharpness(f, theta, eps=1e-3, vertex_starts=0, seed=0)
    assert (off.exact, off.method, off.vertex_ascents) == (False, "L-BFGS-B", 0)
    assert off.n_loss_evals == 1
    assert off.value < exact * (1 - 1e-3)  # a strict lower bound here
    on = epsilon_sharpness(f, theta, eps=1e-3, seed=0)
    assert on.exact
    assert on.value == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="vertex_starts >= 0"):
        epsilon_sharpness(f, theta, vertex_starts=-1)


def test_keskar_vertex_ascent_beyond_the_budget_is_a_lower_bound() -> None:
    """n = 12: 4096 vertices exceed 2 starts × 10, so the search ascends over vertices
    instead; the value is flagged as a lower bound, lies between L-BFGS-B's value and the
    exact vertex maximum, and each ascent costs at most ``maxiter`` evaluations."""
    n, eps = 12, 1e-2
    H, _ = random_spd(n, seed=5, low=0.1, high=10.0)
    theta = torch.from_numpy(np.random.default_rng(6).normal(size=n))
    f = quadratic(H, theta)
    exact = 100 * _vertex_max(f, theta, eps * (theta.abs() + 1))
    alone = epsilon_sharpness(f, theta, eps=eps, vertex_starts=0, seed=1)
    r = epsilon_sharpness(f, theta, eps=eps, vertex_starts=2, seed=1)
    assert (r.exact, r.method, r.vertex_ascents) == (False, "L-BFGS-B + vertex ascent", 2)
    assert r.n_evals <= alone.n_evals + 2 * 10
    assert alone.value <= r.value <= exact * (1 + 1e-9)


def test_keskar_vertex_ascent_rises_to_a_vertex_that_maps_to_itself() -> None:
    """Each move goes to sign(∇L) ⊙ b, the maximizer of the linearization: on a convex
    quadratic the losses rise strictly and the last vertex is its own image (or the loss
    stopped rising)."""
    from landscape.sharpness.keskar2017 import _vertex_ascent

    n = 10
    H, _ = random_spd(n, seed=8, low=0.1, high=10.0)
    Hn = H.numpy()
    c = np.random.default_rng(9).normal(size=n) * 0.01
    bound = np.full(n, 0.1)
    seen: list[tuple[float, np.ndarray, np.ndarray]] = []

    def loss_and_grad(y: np.ndarray) -> tuple[float, np.ndarray]:
        val, g = 0.5 * (y - c) @ Hn @ (y - c), Hn @ (y - c)
        seen.append((val, y.copy(), g))
        return val, g

    for start in range(5):
        seen.clear()
        s0 = np.random.default_rng(start).choice((-1.0, 1.0), size=n)
        _vertex_ascent(loss_and_grad, s0, bound, maxiter=50)
        vals = [v for v, _, _ in seen]
        assert np.allclose(np.abs(seen[0][1]), bound)  # starts on a vertex
        assert all(b > a for a, b in itertools.pairwise(vals))  # strictly rising
        _, y, g = seen[-1]
        assert np.array_equal(np.sign(g) * bound, y)  # a fixed point: a local maximum


# =========================================================================== SAM / ASAM
def test_sam_at_minimum_is_rho2_lambda_max_over_2() -> None:
    r = sam_sharpness(quadratic(H_DIAG, W_STAR), W_STAR, rho=0.1)
    assert r.random_start
    assert r.value == pytest.approx(0.02, rel=1e-6)
    H, eigs = random_spd(30, seed=10)
    r = sam_sharpness(quadratic(H, torch.zeros(30, dtype=F64)), torch.zeros(30, dtype=F64),
                      rho=0.2, steps=200)
    assert r.value == pytest.approx(0.2**2 * eigs[-1] / 2, rel=1e-3)


def test_sam_one_step_and_multi_step_off_minimum() -> None:
    f = quadratic(H_DIAG, W_STAR)
    w = W_STAR + 0.05
    exact = ball_max_rise(H_DIAG.numpy(), np.full(3, 0.05), 0.1)
    assert exact == pytest.approx(0.040264, abs=1e-6)  # the reference's oracle
    one = sam_one_step(f, w, rho=0.1)
    assert one == pytest.approx(0.039706, abs=1e-6)
    multi = sam_sharpness(f, w, rho=0.1, steps=30)
    assert one <= multi.value
    assert multi.one_step == one
    assert multi.value == pytest.approx(exact, rel=1e-6)


def test_sam_value_when_the_one_step_point_overshoots() -> None:
    """L(x) = x - 4x^2 from 0, rho = 1/2: the step x = 1/2 lands on L = -1/2 < L(0).

    The ball's maximum is at x = 1/8 (inside), max L = 1/16; with no ascent
    steps the best point seen is x = 0 itself, so the value is 0, not -1/2.
    """
    f = lambda w: (w - 4 * w * w).sum()  # noqa: E731
    x0 = torch.zeros(1, dtype=F64)
    none = sam_sharpness(f, x0, rho=0.5, steps=0)
    assert (none.one_step, none.value, none.max_loss) == (-0.5, 0.0, 0.0)
    full = sam_sharpness(f, x0, rho=0.5, steps=20)
    assert full.one_step == -0.5
    assert full.value == 1 / 16  # max_{|x| <= 1/2} x - 4x^2, at x = 1/8


def test_sam_and_asam_value_at_a_local_maximum_is_zero() -> None:
    """At a strict local maximum the ball's maximum is L(θ): S = 0 exactly.

    The random start lands on L = -rho^2 and steps of 0.3 rho only approach 0,
    so every iterate lies below L(θ); the value must still be 0.
    """
    x0 = torch.zeros(1, dtype=F64)
    r = sam_sharpness(lambda w: -(w * w).sum(), x0, rho=0.5, step_size=0.3)
    assert r.random_start
    assert r.one_step == -0.25
    assert (r.value, r.max_loss) == (0.0, r.loss)
    one = torch.ones(1, dtype=F64)
    a = adaptive_sharpness(lambda w: -((w - 1) ** 2).sum(), one, rho=0.5, eta=0.0,
                           step_size=0.3)
    assert a.one_step == -0.25  # T = |1| + 0: the same ball
    assert (a.value, a.max_loss) == (0.0, a.loss)


def test_asam_closed_forms() -> None:
    r = adaptive_sharpness(quadratic(H_DIAG, W_STAR), W_STAR, rho=0.5, eta=0.0)
    assert r.value == pytest.approx(0.5, rel=1e-6)
    H, _ = random_spd(20, seed=11)
    w = torch.from_numpy(np.random.default_rng(1).normal(size=20))
    T = np.diag(np.abs(w.numpy()) + 0.01)
    lam = np.linalg.eigvalsh(T @ H.numpy() @ T)[-1]
    r = adaptive_sharpness(quadratic(H, w), w, rho=0.3, eta=0.01, steps=300)
    assert r.value == pytest.approx(0.3**2 * lam / 2, rel=1e-3)


# =========================================================================== average
@pytest.mark.parametrize("offset", [0.0, 0.3], ids=["at_min", "off_min"])
def test_average_sharpness_is_sigma2_trace_over_2(offset: float) -> None:
    f = quadratic(H_DIAG, W_STAR)
    r = average_sharpness(lambda w: float(f(w)), W_STAR + offset, sigma=0.1, samples=500)
    assert abs(r.value - 0.02625) <= 3 * r.sem
    assert r.sem < 0.002
    H, eigs = random_spd(40, seed=12)
    g = quadratic(H, torch.zeros(40, dtype=F64))
    r = average_sharpness(lambda w: float(g(w)), torch.zeros(40, dtype=F64), 0.05, 300)
    assert abs(r.value - 0.05**2 * eigs.sum() / 2) <= 3 * r.sem


# =========================================================================== PAC-Bayes
def test_pacbayes_sigma_for_a_given_loss_rise() -> None:
    f = quadratic(H_DIAG, W_STAR)
    loss = lambda w: float(f(w))  # noqa: E731
    r = pacbayes_sigma(loss, W_STAR, 0.01, samples=50, seed=0)
    assert abs(r.sigma - 0.0617213) <= 3 * r.sigma_sem
    assert 0 < r.sigma_sem < 0.15 * r.sigma  # about 8 % for 50 draws
    assert r.flatness == pytest.approx(1 / r.sigma**2)
    many = pacbayes_sigma(loss, W_STAR, 0.01, samples=3000, seed=1)
    assert many.sigma == pytest.approx(0.0617213, rel=0.01)
    assert abs(many.rise - 0.01) < 1e-4
    mag = pacbayes_sigma(loss, W_STAR, 0.01, magnitude_aware=True, eps=1e-3,
                         samples=3000, seed=2)
    assert abs(mag.sigma - 0.0497993) <= 3 * mag.sigma_sem
    assert mag.sigma == pytest.approx(0.0497993, rel=0.01)


def test_pacbayes_sigma_standard_error_is_honest() -> None:
    """Over independent seeds, σ spreads about as much as its reported SE."""
    f = quadratic(H_DIAG, W_STAR)
    runs = [pacbayes_sigma(lambda w: float(f(w)), W_STAR, 0.01, samples=20, seed=s)
            for s in range(40)]
    sig = np.array([r.sigma for r in runs])
    sem = np.median([r.sigma_sem for r in runs])
    assert sig.std(ddof=1) == pytest.approx(sem, rel=0.4)
    assert abs(sig.mean() - 0.0617213) < 3 * sem / math.sqrt(40) + 0.002


# =========================================================================== width
def test_width_is_sqrt_2tau_over_dHd() -> None:
    H, _ = random_spd(30, seed=13)
    theta = torch.zeros(30, dtype=F64)
    g = quadratic(H, theta)
    d = torch.randn(8, 30, dtype=F64, generator=torch.Generator().manual_seed(0))
    d = d / d.norm(dim=1, keepdim=True)
    r = random_widths(lambda w: float(g(w)), theta, d, tau=0.1, rel_tol=1e-12)
    exact = np.sqrt(2 * 0.1 / np.einsum("ki,ij,kj->k", d.numpy(), H.numpy(), d.numpy()))
    allclose_report(r.widths, exact, rtol=1e-6)
    med, lo, hi = r.summary()
    assert med == pytest.approx(np.median(exact), rel=1e-6)
    assert lo <= med <= hi


def test_width_along_brackets_both_ways_and_gives_up() -> None:
    w, _ = width_along(lambda r: r * r, 4.0, r_init=100.0, rel_tol=1e-12)
    assert w == pytest.approx(2.0, rel=1e-10)
    w, _ = width_along(lambda r: r * r, 4.0, r_init=1e-3, rel_tol=1e-12)
    assert w == pytest.approx(2.0, rel=1e-10)
    w, n = width_along(lambda r: 0.0, 1.0, r_max=1e3)
    assert w == math.inf
    assert n == 10
    with pytest.raises(ValueError, match="tau"):
        width_along(lambda r: r, 0.0)


def test_median_ci_and_width_ratio() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    med, lo, hi = median_ci(a, seed=0)
    assert (med, lo <= 3.0 <= hi) == (3.0, True)
    r, lo, hi = width_ratio(a, 2 * a, paired=True)
    assert (r, lo, hi) == (2.0, 2.0, 2.0)
    rng = np.random.default_rng(0)
    r, lo, hi = width_ratio(rng.uniform(1, 2, 50), rng.uniform(2, 4, 50))
    assert lo < r < hi
    assert 1.4 < r < 2.6
    med, lo, hi = median_ci(np.array([1.0, np.inf, np.inf]))
    assert med == math.inf
    assert not math.isnan(lo)


def test_width_median_is_one_midpoint_median_with_inf() -> None:
    """The median of [1, 2, 3, inf] is (2 + 3)/2; a middle pair holding inf gives inf."""
    inf = math.inf
    a, b = np.array([1.0, 2.0, 3.0, inf]), np.array([3.0, 5.0, 7.0])
    ma, lo, hi = median_ci(a, seed=0)
    assert ma == 2.5
    # replicate medians: 1 needs >= 3 draws of 1 (P = 13/256 > 2.5 %), inf needs
    # >= 2 draws of inf (P = 67/256 > 2.5 %)
    assert (lo, hi) == (1.0, inf)
    assert median_ci(np.array([1.0, 2.0, inf, inf]))[0] == inf
    mb = median_ci(b)[0]
    assert mb == 5.0
    assert width_ratio(a, b)[0] == 2.0


@pytest.mark.parametrize(("wa", "wb", "expected"), [
    pytest.param([1.0, 2.0, 3.0, math.inf], [3.0, 5.0, 7.0], 2.0, id="inf_outside_middle"),
    pytest.param([1.0, 2.0, math.inf, math.inf], [1.0, 2.0, 3.0, math.inf], 0.0,
                 id="a_median_inf"),
    pytest.param([1.0, 2.0, 3.0, math.inf], [1.0, math.inf, math.inf], math.inf,
                 id="b_median_inf"),
])
def test_width_ratio_is_the_ratio_of_the_reported_medians(
    wa: list[float], wb: list[float], expected: float,
) -> None:
    ma, mb = median_ci(np.array(wa))[0], median_ci(np.array(wb))[0]
    r, lo, hi = width_ratio(np.array(wa), np.array(wb))
    assert r == expected
    assert r == mb / ma
    assert lo <= r <= hi


def test_width_ratio_nan_widths_are_missing() -> None:
    a, b = np.array([1.0, math.nan, 3.0]), np.array([2.0, 5.0, 6.0])
    assert width_ratio(a, b, paired=True)[0] == 4.0 / 2.0  # pairs 0 and 2
    assert width_ratio(a, b)[0] == 5.0 / 2.0
    assert math.isnan(width_ratio(np.array([1.0, math.inf, math.inf]),
                                  np.array([math.inf, math.inf]))[0])
    with pytest.raises(ValueError, match=">= 0"):
        median_ci(np.array([1.0, -1.0]))


# =========================================================================== invariance
def _rescale(theta: Tensor, n1: int, alpha: float) -> Tensor:
    out = theta.clone()
    out[:n1] *= alpha
    out[n1:] /= alpha
    return out


def test_dinh_rescaling_changes_lambda_max_not_asam_or_sigma_mag() -> None:
    net, data = relu_net()
    ev = Evaluator(net, *data.splits())
    theta = ev.layout.read(net).double()
    n1 = net[0].weight.numel()
    f = ev.risk()
    loss = f.value
    vals: dict[str, list[float]] = {k: [] for k in
                                    ("loss", "lmax", "asam", "sigma_mag", "sigma")}
    for alpha in (1.0, 10.0, 0.1):
        th = _rescale(theta, n1, alpha)
        vals["loss"].append(loss(th))
        vals["lmax"].append(hessian_top_eigenvalues(make_hvp(f, th), th.numel(), 1,
                                                    tol=1e-8).eigenvalues[0])
        vals["asam"].append(adaptive_sharpness(f, th, rho=0.1, eta=0.0).value)
        vals["sigma_mag"].append(pacbayes_sigma(loss, th, 0.05, magnitude_aware=True,
                                                eps=0.0, samples=10).sigma)
        vals["sigma"].append(pacbayes_sigma(loss, th, 0.05, samples=10).sigma)
    for k in ("loss", "asam", "sigma_mag"):
        allclose_report(vals[k], [vals[k][0]] * 3, rtol=1e-8)
    assert vals["lmax"][1] > 20 * vals["lmax"][0]  # rescaling inflates the curvature
    assert abs(vals["sigma"][1] / vals["sigma"][0] - 1) > 0.1


# =========================================================================== determinism
@pytest.mark.parametrize("measure", ["trace", "eps", "sam", "avg", "pacbayes", "density"])
def test_measures_are_deterministic_given_the_seed(measure: str) -> None:
    H, _ = random_spd(15, seed=14)
    w = torch.full((15,), 0.1, dtype=F64)
    f = quadratic(H, torch.zeros(15, dtype=F64))
    calls = {
        "trace": lambda s: hutchinson_trace(lambda v: H @ v, 15, 10, seed=s).trace,
        "eps": lambda s: epsilon_sharpness(f, w, 0.01, dim=4, seed=s).value,
        "sam": lambda s: sam_sharpness(f, torch.zeros(15, dtype=F64), 0.1, seed=s).value,
        "avg": lambda s: average_sharpness(lambda x: float(f(x)), w, 0.1, 5, seed=s).value,
        "pacbayes": lambda s: pacbayes_sigma(lambda x: float(f(x)), w, 0.01, samples=3,
                                             seed=s).sigma,
        "density": lambda s: slq_density(lambda v: H @ v, 15, 5, seed=s).nodes.sum(),
    }
    assert calls[measure](3) == calls[measure](3)
    assert calls[measure](3) != calls[measure](4)


# =========================================================================== runner
@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    p = tmp_path / "run.h5"
    shutil.copyfile(tiny_run, p)
    return p


COMMON = MeasureConfig(samples=200, device="cpu")
FAST = {"top_k": 2, "trace_samples": 10, "slq_steps": 10, "eps_maxiter": 3,
        "ascent_steps": 3, "avg_samples": 4, "pacbayes_samples": 2,
        "pacbayes_metric": "loss", "pacbayes_target": 0.05, "directions": 4,
        "width_tol": 1e-2, "smallest": False}


def test_measure_solution_stores_every_measure(run_copy: Path) -> None:
    logs: list[str] = []
    out = measure_solution(run_copy, "swa", ["all"], COMMON, FAST, log=logs.append)
    assert set(out) == set(specs())  # every registered measure
    with h5py.File(run_copy) as f:
        g = f["measures/swa"]
        h = g["hessian"]
        assert h["eigenvalues"].shape == (2,)
        assert h.attrs["lambda_max"] == h["eigenvalues"][0] >= h["eigenvalues"][1]
        assert math.isnan(h.attrs["lambda_min"])  # --no-smallest: NaN, not -1
        assert h.attrs["samples"] == 200
        assert h.attrs["seed"] == 0
        # Hutch++ in 10 HVPs: the sketch clamped to 4 columns (8 HVPs), 2 residual probes
        assert (g["trace"].attrs["method"], g["trace"].attrs["n_hvp"]) == ("hutchpp", 10)
        assert g["trace"]["samples"].shape == (2,)
        assert g["density"]["grid"].shape == g["density"]["density"].shape
        assert g["width"]["widths"].shape == (4,)
        assert g["width"].attrs["median"] == pytest.approx(
            np.median(g["width"]["widths"][()]))
        assert g["sam"].attrs["value"] >= g["sam"].attrs["one_step"]
        assert g["eps"].attrs["value"] > 0
        assert math.isnan(g["eps"].attrs["dim"])
        for m in g.values():
            assert isinstance(m.attrs["params"], str)  # JSON, no pickles
    assert len(logs) == len(specs())
    again: list[str] = []
    measure_solution(run_copy, "swa", ["width"], COMMON, FAST, log=again.append)
    assert again == ["swa width: kept (stored with the same parameters)"]


def test_compare_reports_width_ratio(run_copy: Path) -> None:
    for s in ("sgd", "swa"):
        measure_solution(run_copy, s, ["width", "avg"], COMMON, FAST)
    rows = compare_solutions(run_copy, ("sgd", "swa"))
    width = rows[1]
    with h5py.File(run_copy) as f:
        wa = f["measures/sgd/width/widths"][()]
        wb = f["measures/swa/width/widths"][()]
        assert f["measures/compare/ratio"][1] == pytest.approx(width["ratio"])
    assert width["ratio"] == pytest.approx(np.median(wb) / np.median(wa))
    assert width["paired"]
    assert width["low"] <= width["ratio"] <= width["high"]
    assert [r["quantity"] for r in rows] == ["average sharpness", "median width (tau=0.1)"]


def test_cli_sharpness_and_compare(run_copy: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    common = ["--measures", "width,hessian", "--samples", "100", "--directions", "3",
              "--top-k", "1", "--no-smallest", "--quiet"]
    assert main(["sharpness", str(run_copy), "--solutions", "sgd,swa", *common]) == 0
    assert main(["compare", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert "| median width (tau=0.1) |" in out
    assert "swa/sgd" in out
    assert "| λ_max (Hessian) |" in out
    assert main(["sharpness", str(run_copy), "--measures", "width", "--samples", "99999",
                 "--directions", "2", "--quiet"]) == 0
    assert "using all 400 train samples" in capsys.readouterr().out
    with h5py.File(run_copy) as f:
        assert f["measures/swa/width"].attrs["samples"] == 400


@pytest.mark.parametrize(("args", "message"), [
    (["sharpness", "{run}", "--solutions", "nope"], "no solution 'nope'"),
    (["sharpness", "{run}", "--measures", "hessian,foo"], "unknown measure(s) ['foo']"),
    (["sharpness", "{run}", "--tau", "-1"], "--tau must be > 0"),
    (["sharpness", "{missing}"], "does not exist"),
    (["compare", "{run}", "--solutions", "sgd"], "takes two names"),
    (["compare", "{run}"], "no measures stored"),
])
def test_cli_user_errors_are_one_line(run_copy: Path, args: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(run=run_copy, missing=run_copy.with_name("nope.h5")) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1


@pytest.mark.parametrize("command", ["sharpness", "gap", "compare"])
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([command, "--help"], ["--help"]):  # the top-level help lists it
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert ("example" if argv[0] == command else command) in out


# =========================================================================== measures on models
def test_measured_loss_is_the_evaluation_paths_train_loss(run_copy: Path) -> None:
    """The loss every measure works on is the Evaluator's train loss on the same subset
    (BN in eval mode with the solution's own statistics)."""
    from landscape.jobs import load_run_model
    from landscape.store import open_run, read_solution

    measure_solution(run_copy, "swa", ["sam", "avg"], COMMON, FAST)
    model, data = load_run_model(run_copy)
    sub = data.subset(COMMON.samples, 1, COMMON.seed)
    with open_run(run_copy) as f:
        sol = read_solution(f, "swa")
    ev = Evaluator(model, *sub.splits(), bn="keep")
    loss = ev.evaluate(sol.weights, sol.buffers, splits=("train",))["train"].loss
    with h5py.File(run_copy) as f:
        assert f["measures/swa/sam"].attrs["loss"] == pytest.approx(loss, rel=1e-6)
        assert f["measures/swa/avg"].attrs["loss"] == pytest.approx(loss, rel=1e-6)


def test_pacbayes_default_error_path_with_folded_bn(run_copy: Path) -> None:
    """The default: 0-1 train error, BN folded into the conv/linear layers."""
    from landscape.jobs import load_run_model
    from landscape.store import open_run, read_solution

    params = {**FAST, "pacbayes_metric": "error", "pacbayes_target": 0.1,
              "pacbayes_samples": 3}
    out = measure_solution(run_copy, "swa", ["pacbayes"], COMMON, params)["pacbayes"]
    model, data = load_run_model(run_copy)
    sub = data.subset(COMMON.samples, 1, COMMON.seed)
    with open_run(run_copy) as f:
        sol = read_solution(f, "swa")
    err = Evaluator(model, *sub.splits(), bn="keep").evaluate(
        sol.weights, sol.buffers, splits=("train",))["train"].err
    assert out["fold_bn"]
    assert out["bound"] == "rise"
    assert out["metric"] == "error"
    assert out["base"] == pytest.approx(err, abs=1e-9)  # folding keeps the function
    assert 0 < out["sigma"] < math.inf
    assert 0 < out["sigma_mag"] < math.inf
    assert out["m"] == len(data.y_train)
    for k in ("pac_bayes_orig", "pac_bayes_init", "pac_bayes_mag_orig",
              "pac_bayes_mag_init"):  # epoch 0 is recorded: the init forms exist
        assert math.isfinite(out[k]), k


def test_lambda_min_not_converged_keeps_the_ritz_value_and_residual(run_copy: Path,
                                                                    capsys) -> None:
    params = {**FAST, "smallest": True, "min_eig_maxiter": 1, "min_eig_ncv": 4,
              "min_eig_tol": 1e-12}
    for s in ("sgd", "swa"):
        out = measure_solution(run_copy, s, ["hessian"], COMMON, params)["hessian"]
        assert not out["converged_min"]
        assert math.isfinite(out["lambda_min"])
        assert out["residual_min"] > 0
        assert out["lambda_min"] <= out["lambda_max"]
    rows = compare_solutions(run_copy, ("sgd", "swa"), write=False)
    from landscape.jobs import format_comparison

    table = format_comparison(rows)
    assert "not converged (residual" in table
    assert "nan" not in table.lower()


def _quadratic_regression() -> tuple[nn.Module, Tensor, Tensor, np.ndarray]:
    """A linear model (with bias) at its least-squares minimum: MSE is an exact quadratic."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(60, 3, generator=g, dtype=F64)
    y = x @ torch.tensor([[0.5], [-1.0], [2.0]], dtype=F64) + 0.3 + 0.1 * torch.randn(
        60, 1, generator=g, dtype=F64)
    X = torch.cat([x, torch.ones(60, 1, dtype=F64)], 1)
    sol = torch.linalg.lstsq(X, y).solution.ravel()
    net = nn.Linear(3, 1).double()
    with torch.no_grad():
        net.weight.copy_(sol[:3][None])
        net.bias.copy_(sol[3:])
    H = (2 * X.T @ X / 60).numpy()  # Hessian of the MSE in (weight, bias)
    return net, x, y, H


@pytest.mark.parametrize("normalize", ["all", "weights"])
def test_asam_normalize_closed_form_from_a_dense_hessian(normalize: str) -> None:
    """At the minimum of a quadratic the value is ρ² λ_max(T H T) / 2, with H the dense
    float64 Hessian of the loss (torch.autograd) and T = |θ| + η on every entry (all)
    or on the weight only, 1 on the bias (weights, ASAM's code)."""
    net, x, y, _ = _quadratic_regression()
    theta = torch.cat([net.weight.detach().ravel(), net.bias.detach()])

    def loss(t: Tensor) -> Tensor:
        return ((x @ t[:3] + t[3] - y[:, 0]) ** 2).mean()

    H = torch.autograd.functional.hessian(loss, theta).numpy()
    eta, rho = 0.01, 0.5
    T = {"all": np.abs(theta.numpy()) + eta,
         "weights": np.r_[np.abs(theta.numpy()[:3]) + eta, 1.0]}
    exact = {k: rho**2 * np.linalg.eigvalsh(t[:, None] * H * t)[-1] / 2
             for k, t in T.items()}
    assert abs(exact["all"] / exact["weights"] - 1) > 1e-3  # 10x the tolerance below
    r = ls_measure(net, (x, y), "asam", loss=nn.MSELoss(), dtype="float64", asam_rho=rho,
                   eta=eta, ascent_steps=60, asam_normalize=normalize)
    assert r.normalize == normalize
    assert r.value == pytest.approx(exact[normalize], rel=1e-4)


def test_asam_normalizes_every_entry_by_default() -> None:
    net, x, y, _ = _quadratic_regression()
    args = dict(loss=nn.MSELoss(), dtype="float64", ascent_steps=5)
    default = ls_measure(net, (x, y), "asam", **args)
    assert default.normalize == "all"
    every = ls_measure(net, (x, y), "asam", asam_normalize="all", **args)
    assert default.value == pytest.approx(every.value, rel=1e-12)
    with pytest.raises(ValueError, match="asam_normalize must be one of"):
        ls_measure(net, (x, y), "asam", asam_normalize="bias", **args)


def test_adaptive_average_sharpness_closed_form() -> None:
    """E[L(θ + σ|θ|u)] − L(θ) = σ²/2 Σ H_ii θ_i² for a quadratic at its minimum."""
    net, x, y, H = _quadratic_regression()
    theta = np.r_[net.weight.detach().numpy().ravel(), net.bias.item()]
    sigma = 0.05
    r = ls_measure(net, (x, y), "avg", loss=nn.MSELoss(), dtype="float64", sigma=sigma,
                   avg_samples=400, avg_adaptive=True)
    exact = sigma**2 / 2 * float(np.sum(np.diag(H) * theta**2))
    assert r.adaptive
    assert r.value == pytest.approx(exact, abs=4 * r.sem)
    assert r.sem < 0.1 * exact


def test_filter_normalized_widths_are_invariant_to_dinh_rescaling() -> None:
    """Filter-normalized directions scale with each filter (d' = A d), so widths of a
    ReLU net and of its α-rescaled twin are equal; unit L2 directions do not scale."""
    net, data = relu_net()
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[0].weight.mul_(10.0)
        twin[2].weight.div_(10.0)
    out = {}
    for norm in ("filter", "none"):
        out[norm] = [ls_measure(m, (data.x_train, data.y_train), "width", dtype="float64",
                                directions=4, normalization=norm, width_tol=1e-6)
                     for m in (net, twin)]
    np.testing.assert_allclose(out["filter"][1].widths, out["filter"][0].widths, rtol=1e-5)
    assert out["filter"][0].units == "filter-normalized"
    assert np.abs(out["none"][1].widths / out["none"][0].widths - 1).max() > 0.1


def test_width_with_recomputed_bn_brackets_the_rise(run_copy: Path) -> None:
    """width_bn=recompute: the train loss with BN statistics recomputed at θ + w d
    (computed here with update_bn) rises by τ between w(1 - tol) and w(1 + tol)."""
    from torch.optim.swa_utils import update_bn

    from landscape.jobs import load_run_model
    from landscape.params import ParamLayout
    from landscape.sharpness import width_directions
    from landscape.store import open_run, read_solution

    params = {**FAST, "width_bn": "recompute", "directions": 2, "width_tol": 1e-3}
    out = measure_solution(run_copy, "swa", ["width"], COMMON, params)["width"]
    model, data = load_run_model(run_copy)
    x = data.subset(COMMON.samples, 1, COMMON.seed)
    with open_run(run_copy) as f:
        sol = read_solution(f, "swa")
    layout = ParamLayout.from_module(model)

    def loss(theta: Tensor) -> float:
        m = copy.deepcopy(model)
        layout.write(m, theta)
        update_bn([x.x_train], m)
        m.eval()
        with torch.no_grad():
            return float(nn.functional.cross_entropy(m(x.x_train), x.y_train))

    with h5py.File(run_copy) as f:
        widths = f["measures/swa/width/widths"][()]
    assert out["bn"] == "recompute"
    base = loss(sol.weights)
    dirs = width_directions(layout, sol.weights.double(), 2, seed=COMMON.seed)
    for w, d in zip(widths, dirs, strict=True):
        assert loss((sol.weights.double() + w * (1 + 2e-3) * d).float()) - base >= 0.1
        assert loss((sol.weights.double() + w * (1 - 2e-3) * d).float()) - base < 0.1


@pytest.mark.parametrize("alpha", [10.0, 0.1])
def test_asam_scaling_every_entry_is_invariant_on_a_biased_relu_net(alpha: float) -> None:
    """Rescaling layer 1's weight and bias by α and layer 2's weight by 1/α keeps the
    function; ASAM with T on every entry (η = 0) is unchanged, T on weights only is not."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(40, 4, generator=g, dtype=F64), torch.randint(0, 3, (40,), generator=g))
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[0].weight.mul_(alpha)
        twin[0].bias.mul_(alpha)
        twin[2].weight.div_(alpha)
    assert torch.allclose(twin(data[0]), net(data[0]), rtol=1e-12, atol=1e-12)
    vals = {s: [ls_measure(m, data, "asam", dtype="float64", eta=0.0, asam_rho=0.1,
                           asam_normalize=s).value for m in (net, twin)]
            for s in ("all", "weights")}
    assert vals["all"][1] == pytest.approx(vals["all"][0], rel=1e-6)
    assert abs(vals["weights"][1] / vals["weights"][0] - 1) > 0.01  # 4.6 % at α = 10


def test_pacbayes_on_a_model_without_initial_weights() -> None:
    net, data = relu_net()
    r = ls_measure(net, (data.x_train, data.y_train), "pacbayes", dtype="float64",
                   pacbayes_metric="loss", pacbayes_target=0.05, pacbayes_eps=0.0,
                   pacbayes_samples=3)
    assert math.isfinite(r.pac_bayes_orig)
    assert math.isfinite(r.pac_bayes_mag_orig)
    assert math.isnan(r.pac_bayes_init)  # unknown without the weights at initialization
