"""Average-case sharpness (:mod:`landscape.sharpness.average`): σ² tr(H)/2 on
quadratics, adaptive noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import (
    F64,
    H_DIAG,
    W_STAR,
    quadratic,
    quadratic_regression,
    random_spd,
)
from torch import nn

from landscape.sharpness import (
    average_sharpness,
)
from landscape.sharpness import measure as ls_measure


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


def test_adaptive_average_sharpness_closed_form() -> None:
    """E[L(θ + σ|θ|u)] − L(θ) = σ²/2 Σ H_ii θ_i² for a quadratic at its minimum."""
    net, x, y, H = quadratic_regression()
    theta = np.r_[net.weight.detach().numpy().ravel(), net.bias.item()]
    sigma = 0.05
    r = ls_measure(net, (x, y), "avg", loss=nn.MSELoss(), dtype="float64", sigma=sigma,
                   avg_samples=400, avg_adaptive=True)
    exact = sigma**2 / 2 * float(np.sum(np.diag(H) * theta**2))
    assert r.adaptive
    assert r.value == pytest.approx(exact, abs=4 * r.sem)
    assert r.sem < 0.1 * exact
