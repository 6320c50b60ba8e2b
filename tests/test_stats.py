"""Tests of :mod:`landscape.stats` on numbers known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from landscape._errors import UserError
from landscape.stats import bootstrap_ci, format_ci, mean_ci


def test_mean_ci_known_numbers() -> None:
    m, h = mean_ci([1, 2, 3, 4, 5])
    assert m == 3.0
    # t_{0.975, 4} = 2.7764451, s = sqrt(2.5) = 1.5811388
    assert h == pytest.approx(2.7764451 * 1.5811388 / math.sqrt(5), rel=1e-6)


def test_mean_ci_other_level_and_nan() -> None:
    m, h = mean_ci([1.0, 3.0, float("nan")], level=0.9)
    assert m == 2.0
    assert h == pytest.approx(6.3137515 * math.sqrt(2) / math.sqrt(2), rel=1e-6)


def test_mean_ci_single_value_has_no_interval() -> None:
    m, h = mean_ci([0.7])
    assert m == 0.7
    assert math.isnan(h)


@pytest.mark.parametrize("bad", [[], [float("nan")]], ids=["empty", "all_nan"])
def test_mean_ci_rejects_no_data(bad: list[float]) -> None:
    with pytest.raises(UserError, match=r"no values to summarise \(all missing/NaN\)"):
        mean_ci(bad)


def test_infinite_values_are_kept_not_dropped() -> None:
    """NaN is missing and dropped; inf is a value: inf mean, no half-width."""
    inf = math.inf
    m, h = mean_ci([1.0, 2.0, inf, float("nan")])
    assert (m, math.isnan(h)) == (inf, True)
    m, h = mean_ci([1.0, -inf])
    assert (m, math.isnan(h)) == (-inf, True)
    m, h = mean_ci([inf, -inf, 1.0])
    assert (math.isnan(m), math.isnan(h)) == (True, True)
    assert format_ci([1.0, inf]) == "inf"


def test_bootstrap_keeps_infinite_values() -> None:
    """Median of [1, 2, 3, inf] is 2.5; replicate medians are 1 with P = 13/256 and
    inf with P = 67/256, both above 2.5 %, so the 95 % interval is exactly [1, inf]."""
    est, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, math.inf], statistic=np.median,
                               n_resamples=2000, seed=0)
    assert (est, lo, hi) == (2.5, 1.0, math.inf)


def test_mean_ci_rejects_bad_level() -> None:
    with pytest.raises(UserError, match="level"):
        mean_ci([1, 2], level=95)


def test_bootstrap_matches_t_interval_for_normal_data() -> None:
    x = np.random.default_rng(1).normal(10, 2, 400)
    est, lo, hi = bootstrap_ci(x, n_resamples=4000, seed=0)
    m, h = mean_ci(x)
    assert est == pytest.approx(m)
    assert lo == pytest.approx(m - h, abs=0.05)
    assert hi == pytest.approx(m + h, abs=0.05)


def test_bootstrap_other_statistic_is_deterministic() -> None:
    a = bootstrap_ci([1, 5, 2, 8, 3], statistic=np.median, n_resamples=500, seed=3)
    b = bootstrap_ci([1, 5, 2, 8, 3], statistic=np.median, n_resamples=500, seed=3)
    assert a == b
    assert a[0] == 3.0
    assert a[1] <= 3.0 <= a[2]


def test_format_ci() -> None:
    assert format_ci([1, 2, 3, 4, 5], digits=3) == "3.000 ± 1.963"
    assert format_ci([0.5], scale=100) == "50.00"
