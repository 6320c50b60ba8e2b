"""The smallest Hessian eigenvalue against dense spectra: both stopping tests, the
Ritz value and residual of a run that does not converge, and the HVP count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from landscape.data import TensorData, load_dataset
from landscape.evaluate import Evaluator
from landscape.sharpness.hessian import (
    MinEigMethod,
    hessian_smallest_eigenvalue,
    hessian_top_eigenvalues,
    make_hvp,
)

F64 = torch.float64


def bulk_spectrum_matrix(n: int = 60, seed: int = 0) -> tuple[Tensor, np.ndarray]:
    """Q diag(λ) Q^T: a bulk in [-0.02, 0.05], top outliers 3..40, λ_min = -0.5 alone.

    Returns:
        The matrix and its eigenvalues in ascending order.
    """
    rng = np.random.default_rng(seed)
    top = np.array([3.0, 7.0, 15.0, 40.0])
    neg = np.array([-0.5, -0.3, -0.2])
    eigs = np.concatenate([neg, rng.uniform(-0.02, 0.05, n - top.size - neg.size), top])
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.from_numpy((Q * eigs) @ Q.T), np.sort(eigs)


class Counted:
    """An HVP that counts its calls."""

    def __init__(self, H: Tensor) -> None:
        self.H, self.calls = H, 0

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        return self.H @ v


def dense_residual(H: Tensor, theta: float, x: np.ndarray) -> float:
    """||H x - theta x|| computed with the matrix."""
    return float(np.linalg.norm(H.numpy() @ x - theta * x))


# =========================================================================== converged
@pytest.mark.parametrize("method", list(MinEigMethod), ids=lambda m: m.value)
def test_both_stopping_tests_find_lambda_min_below_a_bulk(method: MinEigMethod) -> None:
    H, eigs = bulk_spectrum_matrix()
    hvp = Counted(H)
    r = hessian_smallest_eigenvalue(hvp, 60, method=method, tol=1e-8, eigenvectors=True)
    assert r.converged
    assert r.n_hvp == hvp.calls  # every product is counted, λ_max's included for shift
    theta = float(r.eigenvalues[0])
    assert theta == pytest.approx(-0.5, abs=1e-9)
    assert theta >= eigs[0] - 1e-12  # a Ritz value lies below λ_min by rounding only
    assert r.eigenvectors is not None
    x = r.eigenvectors[:, 0]
    assert np.linalg.norm(x) == pytest.approx(1.0, abs=1e-12)
    assert r.residuals is not None
    assert r.relative_residuals is not None
    assert r.residuals[0] == pytest.approx(dense_residual(H, theta, x), rel=1e-6, abs=1e-12)
    scale = 0.5 if method is MinEigMethod.SA else 40.0 + 0.5  # |θ|, or λ_max - θ
    assert r.relative_residuals[0] == pytest.approx(r.residuals[0] / scale, rel=1e-6)
    assert r.relative_residuals[0] <= 1e-8


def test_shift_uses_the_given_lambda_max_or_pays_for_it() -> None:
    H, _ = bulk_spectrum_matrix()
    top = hessian_top_eigenvalues(lambda v: H @ v, 60, 1, tol=1e-3)
    assert top.eigenvalues[0] == pytest.approx(40.0, rel=1e-6)
    given = hessian_smallest_eigenvalue(Counted(H), 60, method="shift",
                                        lambda_max=float(top.eigenvalues[0]))
    own = hessian_smallest_eigenvalue(Counted(H), 60, method="shift")
    assert own.n_hvp == given.n_hvp + top.n_hvp
    assert own.eigenvalues[0] == pytest.approx(given.eigenvalues[0], rel=1e-12)


def test_the_sa_test_is_stricter_at_the_same_tol() -> None:
    """Same Krylov spaces: at one tol, "sa" needs a residual 81x smaller (|λ_min| vs
    λ_max - λ_min) and so at least as many products, and is at least as accurate."""
    H, eigs = bulk_spectrum_matrix()
    shift = hessian_smallest_eigenvalue(Counted(H), 60, method="shift", lambda_max=40.0,
                                        tol=1e-4, ncv=10)
    sa = hessian_smallest_eigenvalue(Counted(H), 60, method="sa", tol=1e-4, ncv=10)
    assert shift.converged
    assert sa.converged
    assert sa.n_hvp >= shift.n_hvp
    assert sa.residuals[0] <= 1e-4 * 0.5 + 1e-12 < 1e-4 * 40.5
    # A Ritz value lies above λ_min in exact arithmetic; in floats, within rounding of
    # the products: a few ulps of ||H|| = 40 (eigs itself is rounded as much).
    ulps = 16 * np.finfo(np.float64).eps * np.abs(eigs).max()
    assert -ulps <= sa.eigenvalues[0] - eigs[0] <= shift.eigenvalues[0] - eigs[0] + ulps


def test_the_shift_test_stops_inside_a_dense_bulk_and_the_default_does_not() -> None:
    """A Hessian-like spectrum: 600 eigenvalues 40 u^8 (a bulk at 0 with a tail to 40)
    and 200 at -0.04 u^3 (a negative edge).  After one basis of 20 the residual is
    below 1e-2 (λ_max - θ), so the shift test stops with θ > 0, above the whole
    negative edge; the 'sa' test (the default) goes on to λ_min = -0.04."""
    rng = np.random.default_rng(0)
    u = np.linspace(0, 1, 600)
    eigs = np.concatenate([-0.04 * np.linspace(0, 1, 200) ** 3, 40 * u**8])
    Q, _ = np.linalg.qr(rng.standard_normal((800, 800)))
    H = torch.from_numpy((Q * eigs) @ Q.T)
    shift = hessian_smallest_eigenvalue(lambda v: H @ v, 800, method="shift",
                                        lambda_max=40.0, ncv=20)
    assert shift.converged
    assert shift.n_hvp == 20
    assert shift.eigenvalues[0] > 0  # λ_min = -0.04 not even found to be negative
    assert shift.residuals[0] <= 1e-2 * (40.0 - shift.eigenvalues[0])
    default = hessian_smallest_eigenvalue(lambda v: H @ v, 800)
    assert default.converged
    assert default.eigenvalues[0] == pytest.approx(-0.04, rel=1e-3)
    assert default.relative_residuals[0] <= 1e-2


def test_small_network_lambda_min_matches_dense_hessian() -> None:
    """A float64 MLP on 24 MNIST-1D samples: its Hessian is indefinite (163 parameters)."""
    d = load_dataset("mnist1d", root=None, num_samples=200, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(40, 3), nn.Tanh(), nn.Linear(3, 10)).double()
    data = TensorData("mnist1d", d.x_train[:24].double(), d.y_train[:24],
                      d.x_test[:4].double(), d.y_test[:4], 10)
    risk = Evaluator(net, *data.splits()).risk()
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    layout = risk.layout

    def f(th: torch.Tensor) -> torch.Tensor:  # the test's own single-graph reference
        out = torch.func.functional_call(net, layout.unflatten(th), (data.x_train,))
        return nn.functional.cross_entropy(out, data.y_train)

    dense = torch.func.hessian(f)(theta).numpy()
    exact = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    assert exact[0] < -1e-3  # indefinite: a real λ_min to find
    for method in MinEigMethod:
        r = hessian_smallest_eigenvalue(make_hvp(risk, theta), theta.numel(), method=method,
                                        tol=1e-9)
        assert r.converged
        assert r.eigenvalues[0] == pytest.approx(exact[0], rel=1e-6)


# =========================================================================== not converged
def test_stopped_run_returns_its_ritz_value_not_nan() -> None:
    """The old ARPACK path stored NaN here (ArpackNoConvergence, nothing converged)."""
    H, eigs = bulk_spectrum_matrix()
    r = hessian_smallest_eigenvalue(lambda v: H @ v, 60, tol=1e-10, ncv=6, maxiter=1)
    assert not r.converged
    assert np.isfinite(r.eigenvalues[0])
    assert r.eigenvalues[0] >= eigs[0]


@pytest.mark.parametrize("method", list(MinEigMethod), ids=lambda m: m.value)
def test_stopped_run_reports_the_true_residual(method: MinEigMethod) -> None:
    H, eigs = bulk_spectrum_matrix()
    hvp = Counted(H)
    r = hessian_smallest_eigenvalue(hvp, 60, method=method, lambda_max=40.0, tol=1e-10,
                                    ncv=6, maxiter=0, eigenvectors=True)
    assert not r.converged
    assert r.n_hvp == hvp.calls == 6  # maxiter=0: one basis of ncv products
    theta = float(r.eigenvalues[0])
    assert eigs[0] < theta < eigs[-1]
    x = r.eigenvectors[:, 0]
    assert theta == pytest.approx(float(x @ H.numpy() @ x), rel=1e-12)  # a Ritz pair
    assert r.residuals[0] == pytest.approx(dense_residual(H, theta, x), rel=1e-8)
    assert r.residuals[0] > 1e-10 * 40.5  # why it did not converge
    scale = abs(theta) if method is MinEigMethod.SA else 40.0 - theta
    assert r.relative_residuals[0] == pytest.approx(r.residuals[0] / scale, rel=1e-12)


def test_more_restarts_only_lower_the_ritz_value_towards_lambda_min() -> None:
    H, eigs = bulk_spectrum_matrix()
    vals = [float(hessian_smallest_eigenvalue(lambda v: H @ v, 60, method="sa", tol=0.0,
                                              ncv=6, maxiter=it).eigenvalues[0])
            for it in (0, 1, 2, 4, 8, 16, 64)]
    assert all(b <= a + 1e-13 for a, b in itertools.pairwise(vals))
    assert vals[0] - eigs[0] > 1e-2  # far from it after one basis of 6
    assert vals[-1] == pytest.approx(eigs[0], abs=1e-10)


def test_bad_arguments_are_one_line_errors() -> None:
    H, _ = bulk_spectrum_matrix(10)
    with pytest.raises(ValueError, match="ncv >= 2"):
        hessian_smallest_eigenvalue(lambda v: H @ v, 10, ncv=1)
    with pytest.raises(ValueError, match="'bogus' is not a valid MinEigMethod"):
        hessian_smallest_eigenvalue(lambda v: H @ v, 10, method="bogus")
