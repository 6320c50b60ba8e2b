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


# --------------------------------------------------------------------------- comparisons
def finite_mean_ci(values: Sequence[float] | np.ndarray,
                   level: float = 0.95) -> tuple[float, float]:
    """:func:`mean_ci` of the finite values only; ``(nan, nan)`` when there are none.

    Returns:
        ``(mean, half_width)``.

    Example:
        >>> m, h = finite_mean_ci([1.0, float("inf"), 3.0])
        >>> m, round(h, 4)
        (2.0, 12.7062)
        >>> finite_mean_ci([float("nan")])
        (nan, nan)
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    return mean_ci(a, level)


def comparison(a: Sequence[float] | np.ndarray,
               b: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95 % CI half-width of the paired difference ``b - a`` over seeds.

    Returns:
        ``(mean, half_width)``.

    Example:
        >>> round(comparison([0.9, 0.8], [0.95, 0.85])[0], 6)
        0.05
    """
    return mean_ci(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64))


def call(mean: float, half_width: float, null: float = 0.0) -> str:
    """Which way an estimate points from ``null``, by its 95 % interval.

    The one vocabulary of every verdict: ``"higher"`` or ``"lower"`` (the
    interval excludes ``null``), ``"no difference"`` (it includes ``null``),
    ``"one seed"`` (no interval) or ``"n/a"`` (no estimate).

    Returns:
        The call.

    Example:
        >>> call(0.3, 0.2), call(-0.3, 0.2), call(0.1, 0.2), call(0.1, float("nan"))
        ('higher', 'lower', 'no difference', 'one seed')
        >>> call(1.2, 0.1, null=1.0), call(float("nan"), float("nan"))
        ('higher', 'n/a')
    """
    if math.isnan(mean):
        return "n/a"
    if math.isnan(half_width):
        return "one seed"
    if mean - half_width > null:
        return "higher"
    if mean + half_width < null:
        return "lower"
    return "no difference"


def paired_call(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                higher: str = "beats", lower: str = "worse") -> str:
    """:func:`call` of ``b - a`` paired over seeds, in the words of a claim.

    Returns:
        ``higher``, ``lower``, ``"no difference"`` or ``"one seed"``.

    Example:
        >>> paired_call([0.80, 0.81, 0.79], [0.82, 0.83, 0.81])
        'beats'
    """
    c = call(*comparison(a, b))
    return {"higher": higher, "lower": lower}.get(c, c)


def log_ratios(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
               ) -> np.ndarray:
    """Per-seed ``log(b / a)`` where both are positive and finite (NaN elsewhere).

    Returns:
        The log ratios, shaped like ``a``.

    Example:
        >>> log_ratios([1.0, 2.0, -1.0], [np.e, 2.0, 1.0]).tolist()
        [1.0, 0.0, nan]
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    out = np.full(a.shape, np.nan)
    out[ok] = np.log(b[ok] / a[ok])
    return out


def geometric_ratio(log_ratio: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Geometric mean ratio and its 95 % interval from per-seed log ratios.

    The Student-t interval of the mean log ratio, exponentiated; non-finite
    log ratios are left out.

    Returns:
        ``(ratio, low, high)``: NaN ends for one seed, all NaN for none.

    Example:
        >>> [round(x, 4) for x in geometric_ratio(np.log([2.0, 2.0, 2.0]))]
        [2.0, 2.0, 2.0]
    """
    lr = np.asarray(log_ratio, float)
    lr = lr[np.isfinite(lr)]
    if not lr.size:
        return math.nan, math.nan, math.nan
    m, h = mean_ci(lr)
    if math.isnan(h):
        return math.exp(m), math.nan, math.nan
    return math.exp(m), math.exp(m - h), math.exp(m + h)


def verdict(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float],
            what: str) -> str:
    """One sentence: does ``b`` beat ``a`` on an accuracy, paired over seeds?

    Returns:
        Markdown.

    Example:
        >>> verdict("SGD", [0.90, 0.91, 0.92], "SWA", [0.93, 0.94, 0.95], "test accuracy")
        '**SWA beats SGD** on test accuracy: +3.00 ± 0.00 points (paired over seeds, 95 % CI excludes 0).'
    """  # noqa: E501
    d, h = comparison(a, b)
    c = call(d, h)
    if c == "one seed":
        sign = "higher" if d > 0 else "not higher"
        return (f"With one seed, {name_b}'s {what} is {sign} than {name_a}'s "
                f"({100 * d:+.2f} points); no interval can be given.")
    pts = format_pm(d, h, "+.2f", ".2f", scale=100.0, unit=" points")
    if c == "higher":
        return (f"**{name_b} beats {name_a}** on {what}: {pts} "
                f"(paired over seeds, 95 % CI excludes 0).")
    if c == "lower":
        return (f"**{name_b} does not beat {name_a}** on {what}: it is worse by "
                f"{format_pm(-d, h, '.2f', scale=100.0, unit=' points')} (95 % CI excludes 0).")
    return (f"**{name_b} does not beat {name_a}** on {what} beyond noise: "
            f"{pts} (95 % CI includes 0).")


# --------------------------------------------------------------------------- formatting
def format_pm(mean: float, half_width: float, spec: str = ".3g",
              half_spec: str | None = None, *, scale: float = 1.0, unit: str = "") -> str:
    """``"mean ± half"`` of a mean and its half-width (each times ``scale``).

    The one ± formatter of the reports: the mean alone where there is no
    interval (NaN half-width), ``"n/a"`` where there is no mean.

    Args:
        mean: The mean.
        half_width: Its half-width.
        spec: Format of the mean (``".3g"``, ``"+.2f"``, ...).
        half_spec: Format of the half-width (default ``spec`` without a sign).
        scale: Factor of both (100 for percent and points).
        unit: Appended after the numbers (not to ``"n/a"``).

    Returns:
        The text.

    Example:
        >>> format_pm(0.0123, 0.0045, "+.2f", scale=100, unit=" points")
        '+1.23 ± 0.45 points'
        >>> format_pm(2.0, float("nan")), format_pm(float("nan"), 1.0)
        ('2', 'n/a')
    """
    if math.isnan(mean):
        return "n/a"
    hs = half_spec if half_spec is not None else spec.lstrip("+ ")
    text = f"{scale * mean:{spec}}"
    if not math.isnan(half_width):
        text += f" ± {scale * half_width:{hs}}"
    return text + unit


def format_ci(values: Sequence[float] | np.ndarray, scale: float = 1.0,
              digits: int = 2, *, spec: str | None = None, half_spec: str | None = None,
              finite: bool = False) -> str:
    """:func:`format_pm` of the mean and 95 % half-width of ``values * scale``.

    Args:
        values: Per-seed numbers.
        scale: Factor applied to the values first (100 for percent).
        digits: Decimals of both numbers (unless ``spec`` is given).
        spec: Format of the mean (default ``.{digits}f``).
        half_spec: Format of the half-width (default: ``spec``'s).
        finite: Leave out infinite values too (``"n/a"`` when none is left).

    Returns:
        The text.

    Example:
        >>> format_ci([0.9, 0.92, 0.94], scale=100)
        '92.00 ± 4.97'
        >>> format_ci([1.0, float("inf")], spec=".4g", half_spec=".2g", finite=True)
        '1'
    """
    v = np.asarray(values, dtype=np.float64) * scale
    m, h = finite_mean_ci(v) if finite else mean_ci(v)
    return format_pm(m, h, spec if spec is not None else f".{digits}f", half_spec)
