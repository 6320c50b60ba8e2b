"""Trace estimators (:mod:`landscape.sharpness.hutchinson`): honest errors and
convergence to the exact trace."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cases import (
    random_spd,
)

from landscape.sharpness import (
    hutchinson_trace,
    hutchpp_trace,
)


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
