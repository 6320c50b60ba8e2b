"""Spectral density by stochastic Lanczos quadrature (:mod:`landscape.sharpness.slq`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cases import (
    F64,
    random_spd,
)
from helpers import allclose_report

from landscape.sharpness import (
    SpectralDensity,
    lanczos_tridiagonal,
    slq_density,
    tridiagonal_nodes_weights,
)


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
