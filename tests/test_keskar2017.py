"""Keskar et al. 2017 ε-sharpness (:mod:`landscape.sharpness.keskar2017`) against box-
vertex maxima of quadratics."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from cases import (
    F64,
    H_DIAG,
    W_STAR,
    quadratic,
    random_spd,
)
from torch import Tensor

from landscape.sharpness import (
    epsilon_sharpness,
)


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
