"""The ``trace`` measure's default estimator, Hutch++ with an early stop, against dense
Hessians in float64 (the Hutchinson tests are in ``test_sharpness.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import landscape as ls
from landscape.evaluate import EmpiricalRisk
from landscape.sharpness import dense_hessian, hutchpp_trace


def _outliers(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """A symmetric matrix whose trace is dominated by 5 outliers above a signed bulk."""
    rng = np.random.default_rng(seed)
    eigs = np.concatenate([[400.0, 250.0, 150.0, 90.0, 60.0], rng.normal(0.0, 1.0, n - 5)])
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.from_numpy(Q @ np.diag(eigs) @ Q.T), eigs


def test_hutchpp_stops_at_its_relative_standard_error_with_the_full_runs_probes() -> None:
    H, eigs = _outliers()
    hv = lambda v: H @ v  # noqa: E731
    full = hutchpp_trace(hv, 60, 200, sketch=4, seed=3)
    q = full.samples  # residual probes of the full budget (200 - 2*4)
    exact_part = full.trace - q.mean()
    want = next(m for m in range(10, len(q) + 1)
                if q[:m].std(ddof=1) / np.sqrt(m) <= 0.03 * abs(exact_part + q[:m].mean()))
    assert 10 < want < len(q)  # the stop is reached, and not at once
    r = hutchpp_trace(hv, 60, 200, sketch=4, rtol=0.03, seed=3)
    assert (r.n_hvp, len(r.samples)) == (8 + want, want)
    np.testing.assert_allclose(r.samples, q[:want], rtol=1e-12)
    assert r.sem <= 0.03 * abs(r.trace)
    assert abs(r.trace - eigs.sum()) <= 4 * r.sem
    fro = float((eigs**2).sum())
    assert abs(r.frobenius_sq - fro) <= 4 * r.frobenius_sq_sem + 1e-9 * fro


def test_hutchpp_is_exact_once_the_sketch_spans_the_space() -> None:
    H, eigs = _outliers(n=8, seed=1)
    r = hutchpp_trace(lambda v: H @ v, 8, 20, sketch=8, seed=0)
    assert r.n_hvp == 20  # 16 for the sketch, 4 residual probes of a zero residual
    assert r.trace == pytest.approx(eigs.sum(), rel=1e-10, abs=1e-9)
    assert r.frobenius_sq == pytest.approx((eigs**2).sum(), rel=1e-10)
    assert np.abs(r.samples).max() < 1e-8 * np.abs(eigs).max()


def test_hutchpp_budget_and_sketch_are_checked() -> None:
    H, _ = _outliers(n=8)
    with pytest.raises(ValueError, match="at least 3 HVPs"):
        hutchpp_trace(lambda v: H @ v, 8, 2)
    with pytest.raises(ValueError, match="at least 1 column"):
        hutchpp_trace(lambda v: H @ v, 8, 10, sketch=0)
    r = hutchpp_trace(lambda v: H @ v, 8, 7, sketch=10)  # clamped: 3 columns, 1 probe
    assert (r.n_hvp, len(r.samples)) == (7, 1)


def test_the_trace_measure_defaults_to_hutchpp_and_matches_the_dense_hessian() -> None:
    """``ls.measure(net, data, "trace")`` as a user calls it: Hutch++ (sketch 10), stopped
    at a 5 % standard error, within 4 standard errors of tr H of the dense Hessian."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x = torch.randn(256, 6, dtype=torch.float64)
    y = (x[:, :4].argmax(1) + (x[:, 4] > 1).long()) % 4
    res = ls.measure(net, (x, y), "trace", dtype="float64")
    risk = EmpiricalRisk(net, (x, y))
    theta = risk.layout.read(net).double()
    H = dense_hessian(risk.hvp(theta), risk.num_params)
    s = res.scalars
    assert s["method"] == "hutchpp"
    assert 21 <= s["n_hvp"] <= 100
    assert s["trace_sem"] <= 0.05 * abs(s["trace"]) or s["n_hvp"] == 100
    assert abs(s["trace"] - np.trace(H)) <= 4 * s["trace_sem"] + 1e-9 * np.abs(H).sum()
    assert abs(s["frobenius_sq"] - (H**2).sum()) <= 4 * s["frobenius_sq_sem"] + 1e-9
