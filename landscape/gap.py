r"""The train–test gap: per solution, along the trajectory, and along the SGD→SWA line.

* **Per solution**: test − train loss and test − train error from the metrics
  stored with each solution (evaluated with its own BN statistics).
* **Per trajectory point**: every recorded weight vector of each training run
  is evaluated through the :class:`~landscape.evaluate.Evaluator` with the BN
  statistics recorded with it.
* **Along the line** :math:`\theta(t) = \theta_{a} + t(\theta_{b} - \theta_{a})`
  (``a = sgd``, ``b = swa`` by default, ``t`` in ``[-0.5, 1.5]``, BN statistics
  recomputed at every point for BN models): the SWA paper's observation that
  the test-error minimum is shifted from the train-loss minimum.  Each minimum
  is located on the grid and refined by the vertex of the parabola through it
  and its two neighbours (or, for a run of equal minimal values, such as a
  plateau of test error, the run's midpoint); the shift
  :math:`(t_{test} - t_{train})\,\|\theta_b - \theta_a\|` is an L2 distance,
  positive when the test-error minimum lies further towards ``b``.

:func:`landscape.jobs.gap.measure_gap` runs all three on a run file and stores
them under ``/measures/gap``.

Example:
    >>> t = np.linspace(-0.5, 1.5, 21)
    >>> s = train_test_shift(t, (t - 0.8) ** 2, 0.1 + (t - 1.1) ** 2, distance=2.0)
    >>> round(s.t_train, 9), round(s.t_test, 9), round(s.shift, 9)
    (0.8, 1.1, 0.6)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError, UserTypeError
from landscape.evaluate import SPLITS, Evaluator


# =========================================================================== pure maths
def minimum_location(t: np.ndarray, values: np.ndarray, *, refine: bool = True) -> float:
    """Where ``values`` (sampled at increasing ``t``) is smallest.

    Args:
        t: ``(m,)`` increasing grid.
        values: ``(m,)`` values (NaNs ignored).
        refine: Refine an interior minimum by a parabola through it and its
            neighbours; a run of several equal minimal values gives its midpoint.

    Returns:
        The location of the minimum.

    Raises:
        ValueError: If the shapes differ or no value is finite.
    """
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"t and values must be equal 1D arrays, got {t.shape}, {v.shape}")
    if not np.isfinite(v).any():
        raise ValueError("no finite value to locate a minimum in")
    v = np.where(np.isfinite(v), v, np.inf)
    i = int(np.argmin(v))
    if not refine:
        return float(t[i])
    j = i
    while j + 1 < v.size and v[j + 1] == v[i]:
        j += 1
    if j > i:  # a run of equal minima: its midpoint
        return float(0.5 * (t[i] + t[j]))
    if i == 0 or i == v.size - 1 or not np.isfinite(v[i - 1:i + 2]).all():
        return float(t[i])
    (t0, t1, t2), (v0, v1, v2) = t[i - 1:i + 2], v[i - 1:i + 2]
    denom = (t0 - t1) * (v0 - v2) - (t0 - t2) * (v0 - v1)
    if denom == 0:
        return float(t1)
    num = (t0 - t1) ** 2 * (v0 - v2) - (t0 - t2) ** 2 * (v0 - v1)
    return float(np.clip(t0 - 0.5 * num / denom, t0, t2))


def _line_coordinates(t: Any, what: str = "line_gap") -> np.ndarray:
    """``t`` as a float64 array, checked to be 1-D, finite and strictly increasing.

    Raises:
        UserTypeError: For a single number (not a grid of coordinates).
        UserError: For anything but at least two finite increasing values.
    """
    eg = "e.g. np.linspace(-0.5, 1.5, 21)"
    if np.ndim(t) == 0:
        raise UserTypeError(f"{what} takes the line coordinates t as a sequence, got "
                            f"the single value {t!r}; pass the values, {eg}")
    try:
        ts = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserTypeError(f"{what} needs numbers for t, got {t!r}; pass the values, "
                            f"{eg}") from None
    if ts.ndim != 1 or ts.size < 2 or not np.isfinite(ts).all() or np.any(
            np.diff(ts) <= 0):
        shown = np.array2string(ts.ravel(), threshold=8, separator=", ")
        raise UserError(f"{what} needs t as a 1-D increasing sequence of at least 2 "
                        f"distinct finite values, got {shown} (shape {ts.shape}); {eg}")
    return ts


def _minimum_or_nan(t: np.ndarray, values: np.ndarray, refine: bool) -> float:
    v = np.asarray(values, dtype=np.float64)
    return minimum_location(t, v, refine=refine) if np.isfinite(v).any() else np.nan


@dataclass(frozen=True)
class Shift:
    """Locations of the train-loss and test-error minima along a line.

    Attributes:
        t_train: ``t`` of the train-loss minimum.
        t_test: ``t`` of the test-error minimum.
        shift_t: ``t_test - t_train``.
        distance: :math:`\\|\\theta_b - \\theta_a\\|` (the length of one unit of ``t``).
        shift: ``shift_t * distance`` (L2 distance, signed).
    """

    t_train: float
    t_test: float
    shift_t: float
    distance: float
    shift: float


def train_test_shift(t: np.ndarray, train_loss: np.ndarray, test_err: np.ndarray, *,
                     distance: float, refine: bool = True) -> Shift:
    """The shift between the train-loss and the test-error minimum on a line.

    Args:
        t: ``(m,)`` line coordinates.
        train_loss: ``(m,)`` train loss at each ``t``.
        test_err: ``(m,)`` test error at each ``t``.
        distance: L2 length of one unit of ``t``.
        refine: See :func:`minimum_location`.

    Returns:
        The two minima and the shift; a minimum of values with none finite (the
        test error of a regression model) is NaN, and so is the shift.

    Raises:
        UserError: For ``t`` not a 1-D increasing sequence of at least 2 finite
            values, values of another length, or a distance not finite and > 0.
    """
    t = _line_coordinates(t, "train_test_shift")
    for name, v in (("train_loss", train_loss), ("test_err", test_err)):
        if np.shape(v) != t.shape:
            raise UserError(f"train_test_shift needs {name} with one value per t "
                            f"{t.shape}, got shape {np.shape(v)}")
    try:
        distance = float(distance)
    except (TypeError, ValueError):
        raise UserTypeError(f"distance must be a number, got {distance!r}") from None
    if not (np.isfinite(distance) and distance > 0):
        raise UserError(f"distance is the L2 length ||b - a|| of one unit of t and must "
                        f"be finite and > 0, got {distance}")
    a = _minimum_or_nan(t, train_loss, refine)
    b = _minimum_or_nan(t, test_err, refine)
    return Shift(a, b, b - a, float(distance), (b - a) * float(distance))


def metric_gaps(metrics: Mapping[str, float]) -> dict[str, float]:
    """Test − train loss and error from a solution's stored metrics.

    Args:
        metrics: ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` (a
            stored solution's attributes; NaN accuracies for a regression model).

    Returns:
        ``{train_loss, test_loss, train_err, test_err, loss_gap, err_gap}``.

    Raises:
        UserError: If a key is missing (it gave NaN gaps without a word), or an
            accuracy lies outside [0, 1] (given in percent).
        UserTypeError: If ``metrics`` is not a mapping or a value is not a number.

    Example:
        >>> metric_gaps({"train_loss": 0.1, "test_loss": 0.4, "train_acc": 1.0,
        ...              "test_acc": 0.9})["err_gap"]
        0.09999999999999998
    """
    need = ("train_loss", "test_loss", "train_acc", "test_acc")
    if not isinstance(metrics, Mapping):
        raise UserTypeError(f"metric_gaps takes a mapping of {', '.join(need)}, got "
                            f"{type(metrics).__name__}")
    missing = [k for k in need if k not in metrics]
    if missing:
        raise UserError(
            f"metric_gaps needs {', '.join(need)}; missing {', '.join(missing)}: pass a "
            "solution's stored metrics (store.solution_attrs), NaN accuracies for a "
            "regression model")

    def get(k: str) -> float:
        try:
            return float(metrics[k])
        except (TypeError, ValueError):
            raise UserTypeError(f"metric_gaps needs numbers, got {k}={metrics[k]!r}"
                                ) from None

    for k in ("train_acc", "test_acc"):  # NaN: a regression model
        if not (math.isnan(get(k)) or 0.0 <= get(k) <= 1.0):
            raise UserError(f"metric_gaps needs accuracies as fractions in [0, 1], got "
                            f"{k}={get(k)!r}; divide percentages by 100")
    tl, vl = get("train_loss"), get("test_loss")
    te, ve = 1 - get("train_acc"), 1 - get("test_acc")
    return {"train_loss": tl, "test_loss": vl, "train_err": te, "test_err": ve,
            "loss_gap": vl - tl, "err_gap": ve - te}


# =========================================================================== evaluation
def _bar(progress: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr,
                leave=False, dynamic_ncols=True)


def _metrics_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = ("train_loss", "test_loss", "train_err", "test_err")
    out = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    out["loss_gap"] = out["test_loss"] - out["train_loss"]
    out["err_gap"] = out["test_err"] - out["train_err"]
    return out


def _row(m: dict[str, Any]) -> dict[str, float]:
    return {"train_loss": m["train"].loss, "test_loss": m["test"].loss,
            "train_err": m["train"].err, "test_err": m["test"].err}


def trajectory_gaps(evaluator: Evaluator, weights: np.ndarray | Tensor,
                    buffers: np.ndarray | Tensor | None = None, *,
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Train/test metrics and gaps at each recorded point of a trajectory.

    Args:
        evaluator: The evaluation path (``bn=keep`` with ``buffers`` uses the
            recorded BN statistics).
        weights: ``(m, n_params)`` recorded weights.
        buffers: ``(m, n_buffers)`` recorded BN buffers (or ``None``).
        progress: A tqdm bar on stderr.

    Returns:
        ``{train_loss, test_loss, train_err, test_err, loss_gap, err_gap}``,
        each ``(m,)``.
    """
    W = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    B = None if buffers is None else torch.as_tensor(np.asarray(buffers),
                                                     dtype=torch.float32)
    if W.ndim != 2 or len(W) == 0:
        raise UserError(f"trajectory_gaps needs weights of shape (points, parameters) "
                        f"with at least one point, got {tuple(W.shape)}; pass the "
                        "recorded trajectory (one flat weight vector per row)")
    evaluator.layout.check_vector(W[0], "each row of the trajectory's weights")
    if B is not None and (B.ndim != 2 or len(B) != len(W)):
        raise UserError(f"trajectory_gaps needs one row of buffers per row of weights "
                        f"({len(W)}), got buffers of shape {tuple(B.shape)}; pass the "
                        "buffers recorded with these weights, or None")
    rows = []
    with _bar(progress, len(W), "trajectory gap") as bar:
        for i in range(len(W)):
            rows.append(_row(evaluator.evaluate(W[i], None if B is None else B[i], splits=SPLITS)))
            bar.update(1)
    return _metrics_rows(rows)


@dataclass(frozen=True)
class LineGap:
    """Metrics along the line from ``a`` to ``b`` and the train–test shift.

    Attributes:
        t: ``(m,)`` line coordinates (``a`` at 0, ``b`` at 1).
        metrics: ``{train_loss, train_ce, test_loss, train_err, test_err,
            loss_gap, err_gap}``, each ``(m,)``; ``train_loss`` includes the
            evaluator's ``l2`` term (the SWA paper's regularized loss),
            ``train_ce`` does not.
        shift: The minima of the (regularized) train loss and the test error.
        shift_ce: The same with the unregularized train loss.
        l2: The weight-decay coefficient of ``train_loss``.
    """

    t: np.ndarray
    metrics: dict[str, np.ndarray]
    shift: Shift
    shift_ce: Shift
    l2: float = 0.0


def line_gap(evaluator: Evaluator, a: Tensor, b: Tensor, t: Sequence[float] | np.ndarray,
             *, refine: bool = True, progress: bool = False) -> LineGap:
    r"""Evaluate :math:`\theta_a + t(\theta_b - \theta_a)` at each ``t``.

    Args:
        evaluator: The evaluation path (``bn=recompute`` for BN models).
        a: ``(n,)`` weights at ``t = 0``.
        b: ``(n,)`` weights at ``t = 1``.
        t: Line coordinates, increasing (e.g. ``np.linspace(-0.5, 1.5, 21)``; a
            number of points is refused: the range is not implied).
        refine: See :func:`minimum_location`.
        progress: A tqdm bar on stderr.

    Returns:
        The metrics and the train–test shift (NaN minimum and shift for the test
        error of a regression model).

    Raises:
        UserError: If the endpoints coincide or differ in length, or ``t`` is not a
            1-D increasing sequence of at least 2 finite values.
    """
    for name, v in (("a", a), ("b", b)):
        if not isinstance(v, Tensor):
            raise UserTypeError(f"line_gap's endpoint {name} must be a flat weight vector, "
                                f"got {type(v).__name__}; for a model pass "
                                "evaluator.layout.read(model)")
    if a.shape != b.shape:
        raise UserError(f"line endpoints have shapes {tuple(a.shape)} and "
                        f"{tuple(b.shape)}; they belong to different models")
    d = b.double() - a.double()
    dist = float(d.norm())
    if dist == 0:
        raise UserError("the two solutions are identical, so there is no line between "
                        "them; pick two different solutions with --from/--to")
    ts = _line_coordinates(t)
    rows, ce = [], []
    with _bar(progress, ts.size, "line gap") as bar:
        for ti in ts:
            w = (a.double() + float(ti) * d).to(a.dtype)
            m = evaluator.evaluate(w, splits=SPLITS)
            rows.append(_row(m))
            ce.append(m["train"].loss - evaluator.penalty())
            bar.update(1)
    metrics = _metrics_rows(rows)
    metrics["train_ce"] = np.asarray(ce)

    def shift(train: np.ndarray) -> Shift:
        return train_test_shift(ts, train, metrics["test_err"], distance=dist, refine=refine)

    return LineGap(ts, metrics, shift(metrics["train_loss"]), shift(metrics["train_ce"]),
                   evaluator.l2)
