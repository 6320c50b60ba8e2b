"""Hessian-vector products and eigenvalues (:mod:`landscape.sharpness.hessian`) against
dense matrices and a CNN's dense Hessian."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cases import (
    COMMON,
    F64,
    FAST,
    H_DIAG,
    W_STAR,
    quadratic,
    random_spd,
)
from helpers import allclose_report
from torch import Tensor, nn

from landscape.data import TensorData, load_dataset
from landscape.evaluate import Evaluator
from landscape.jobs import compare_solutions, measure_solution
from landscape.sharpness import (
    HVPMethod,
    dense_hessian,
    hessian_smallest_eigenvalue,
    hessian_top_eigenvalues,
    make_hvp,
    power_iteration,
)


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
