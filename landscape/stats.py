r"""Summary statistics over seeds: Student-t and bootstrap confidence intervals.

Every number an experiment reports over several seeds is a mean with a 95 %
confidence interval.  With ``n`` values of sample standard deviation ``s``

.. math::
    \bar x \pm t_{(1+\ell)/2,\, n-1}\, \frac{s}{\sqrt n},

where ``ℓ`` is the level (Student 1908).  With one value the half-width is NaN
(no spread can be estimated), never zero.

Missing values are NaN and are dropped.  Infinite values are data (a width
that never rose, a diverged loss) and are kept, never dropped silently: the
mean is then ``±inf`` (NaN if both signs occur) and the half-width NaN, and a
bootstrap statistic or interval end they make infinite is ``inf``.

Example:
    >>> m, h = mean_ci([1, 2, 3, 4, 5])
    >>> round(m, 4), round(h, 4)
    (3.0, 1.9632)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _st

from landscape._errors import UserError


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The values as a flat float64 array, NaN (missing) dropped, ``±inf`` kept."""
    a = np.asarray(values, dtype=np.float64).ravel()
    a = a[~np.isnan(a)]
    if a.size == 0:
        raise UserError("no values to summarise (all missing/NaN); pass at least one "
                        "number")
    return a


def _percentile(boot: np.ndarray, q: float) -> float:
    """Linear-interpolation percentile, equal to the order statistics when they agree.

    Between two equal order statistics (``inf`` and ``inf`` included) the answer is
    that value, where plain interpolation would give ``inf - inf = NaN``.
    """
    lo = np.quantile(boot, q, method="lower")
    if lo == np.quantile(boot, q, method="higher"):
        return float(lo)
    with np.errstate(invalid="ignore"):
        return float(np.quantile(boot, q))


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise UserError(f"confidence level must lie in (0, 1), got {level}")


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    r"""Mean and Student-t confidence half-width of ``values`` (NaNs dropped, ``inf`` kept).

    Args:
        values: Per-seed numbers.
        level: Confidence level.

    Returns:
        ``(mean, half_width)``; the half-width is NaN for a single value or when
        a value is infinite (the mean is then ``±inf``, or NaN for both signs).

    Raises:
        UserError: If every value is NaN or the level is outside (0, 1).

    Example:
        >>> mean_ci([2.0, 2.0, 2.0])
        (2.0, 0.0)
        >>> mean_ci([1.0, float("inf"), float("nan")])
        (inf, nan)
    """
    _check_level(level)
    a = _values(values)
    with np.errstate(invalid="ignore"):  # inf + -inf: a NaN mean, no warning
        mean = float(a.mean())
    n = a.size
    if n < 2 or not np.isfinite(a).all():
        return mean, math.nan
    t = float(_st.t.ppf(0.5 + level / 2, n - 1))
    return mean, t * float(a.std(ddof=1)) / math.sqrt(n)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    level: float = 0.95,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    r"""Percentile-bootstrap confidence interval of ``statistic`` (Efron 1979).

    Args:
        values: Per-seed numbers (NaNs dropped, ``inf`` kept).
        level: Confidence level.
        statistic: Function of a 1D array.
        n_resamples: Number of resamples with replacement.
        seed: Seed of the resampling.

    Returns:
        ``(estimate, low, high)``: the statistic of the data and the interval
        (linear-interpolated percentiles of the replicates; an end lying between
        two infinite replicates is ``inf``).

    Raises:
        UserError: If every value is NaN or the level is outside (0, 1).

    Example:
        >>> est, lo, hi = bootstrap_ci([1.0, 2, 3, 4, 5])
        >>> est, lo <= est <= hi
        (3.0, True)
    """
    _check_level(level)
    a = _values(values)
    with np.errstate(invalid="ignore"):  # inf + -inf in a replicate: NaN, no warning
        est = float(statistic(a))
        if a.size < 2:
            return est, math.nan, math.nan
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, a.size, size=(n_resamples, a.size))
        boot = np.apply_along_axis(statistic, 1, a[idx]) if statistic is not np.mean \
            else a[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return est, _percentile(boot, alpha), _percentile(boot, 1 - alpha)


def format_ci(values: Sequence[float] | np.ndarray, scale: float = 1.0,
              digits: int = 2) -> str:
    """``"mean ± half"`` of ``values * scale`` (``"mean"`` alone for one value).

    Example:
        >>> format_ci([0.9, 0.92, 0.94], scale=100)
        '92.00 ± 4.97'
    """
    m, h = mean_ci(np.asarray(values, dtype=np.float64) * scale)
    if math.isnan(h):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {h:.{digits}f}"
