"""Random-direction width (:mod:`landscape.sharpness.width`): closed forms, medians,
ratios, invariance and recomputed BN."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cases import (
    COMMON,
    F64,
    FAST,
    quadratic,
    random_spd,
    relu_net,
)
from helpers import allclose_report
from torch import Tensor, nn

from landscape.jobs import measure_solution
from landscape.sharpness import measure as ls_measure
from landscape.sharpness import (
    median_ci,
    random_widths,
    width_along,
    width_ratio,
)


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


def test_width_ratio_takes_width_results_and_names_other_types() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    data = (torch.randn(64, 4), torch.randint(0, 3, (64,)))
    r = ls_measure(net, data, "width", directions=4)
    assert width_ratio(r, r) == width_ratio(r.arrays["widths"], r.arrays["widths"])
    with pytest.raises(TypeError, match=r"^widths must be an array of widths or a 'width'"):
        width_ratio(object(), r)
