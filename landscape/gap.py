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

Results are stored under ``/measures/gap``.

Example:
    >>> t = np.linspace(-0.5, 1.5, 21)
    >>> s = train_test_shift(t, (t - 0.8) ** 2, 0.1 + (t - 1.1) ** 2, distance=2.0)
    >>> round(s.t_train, 9), round(s.t_test, 9), round(s.shift, 9)
    (0.8, 1.1, 0.6)
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape import store
from landscape._errors import UserError
from landscape.data import TensorData
from landscape.evaluate import BNMode, Evaluator


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
        The two minima and the shift.
    """
    a = minimum_location(t, train_loss, refine=refine)
    b = minimum_location(t, test_err, refine=refine)
    return Shift(a, b, b - a, float(distance), (b - a) * float(distance))


def solution_gaps(f: Any) -> dict[str, dict[str, float]]:
    """Test − train loss and error of every stored solution, from its stored metrics.

    Args:
        f: An open run file.

    Returns:
        ``{solution: {train_loss, test_loss, train_err, test_err, loss_gap,
        err_gap}}`` (NaN where a metric is missing).
    """
    out = {}
    for name in store.solution_names(f):
        a = f["solutions"][name].attrs

        def get(k: str, a: Any = a) -> float:
            return float(a[k]) if k in a else math.nan

        tl, vl = get("train_loss"), get("test_loss")
        te, ve = 1 - get("train_acc"), 1 - get("test_acc")
        out[name] = {"train_loss": tl, "test_loss": vl, "train_err": te, "test_err": ve,
                     "loss_gap": vl - tl, "err_gap": ve - te}
    return out


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
    rows = []
    with _bar(progress, len(W), "trajectory gap") as bar:
        for i in range(len(W)):
            rows.append(_row(evaluator.evaluate(W[i], None if B is None else B[i])))
            bar.update(1)
    return _metrics_rows(rows)


@dataclass(frozen=True)
class LineGap:
    """Metrics along the line from ``a`` to ``b`` and the train–test shift.

    Attributes:
        t: ``(m,)`` line coordinates (``a`` at 0, ``b`` at 1).
        metrics: ``{train_loss, test_loss, train_err, test_err, loss_gap,
            err_gap}``, each ``(m,)``.
        shift: The minima and their shift.
    """

    t: np.ndarray
    metrics: dict[str, np.ndarray]
    shift: Shift


def line_gap(evaluator: Evaluator, a: Tensor, b: Tensor, t: Sequence[float] | np.ndarray,
             *, refine: bool = True, progress: bool = False) -> LineGap:
    r"""Evaluate :math:`\theta_a + t(\theta_b - \theta_a)` at each ``t``.

    Args:
        evaluator: The evaluation path (``bn=recompute`` for BN models).
        a: ``(n,)`` weights at ``t = 0``.
        b: ``(n,)`` weights at ``t = 1``.
        t: Line coordinates.
        refine: See :func:`minimum_location`.
        progress: A tqdm bar on stderr.

    Returns:
        The metrics and the train–test shift.

    Raises:
        UserError: If the endpoints coincide or differ in length.
    """
    if a.shape != b.shape:
        raise UserError(f"line endpoints have shapes {tuple(a.shape)} and "
                        f"{tuple(b.shape)}; they belong to different models")
    d = b.double() - a.double()
    dist = float(d.norm())
    if dist == 0:
        raise UserError("the two solutions are identical, so there is no line between "
                        "them; pick two different solutions with --from/--to")
    ts = np.asarray(t, dtype=np.float64)
    rows = []
    with _bar(progress, ts.size, "line gap") as bar:
        for ti in ts:
            w = (a.double() + float(ti) * d).to(a.dtype)
            rows.append(_row(evaluator.evaluate(w)))
            bar.update(1)
    metrics = _metrics_rows(rows)
    return LineGap(ts, metrics, train_test_shift(ts, metrics["train_loss"],
                                                 metrics["test_err"], distance=dist,
                                                 refine=refine))


# =========================================================================== run file
def measure_gap(
    path: str | os.PathLike, *, a: str = "sgd", b: str = "swa", points: int = 21,
    t_min: float = -0.5, t_max: float = 1.5, bn: str | None = None,
    trajectories: bool = True, model: nn.Module | None = None,
    data: TensorData | None = None, device: str = "cpu", batch_size: int = 4096,
    progress: bool = False, log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compute every gap of a run file and store it under ``/measures/gap``.

    Args:
        path: Run file.
        a: Solution at ``t = 0`` of the line.
        b: Solution at ``t = 1``.
        points: Number of ``t`` values.
        t_min: First ``t``.
        t_max: Last ``t``.
        bn: BN mode along the line (``None``: recompute for BN models).
        trajectories: Also evaluate every recorded trajectory point.
        model: The run's model (``None``: rebuilt with
            :func:`landscape.train.load_run_model`).
        data: The run's data (with ``model``).
        device: Where to evaluate.
        batch_size: Samples per forward pass.
        progress: tqdm bars on stderr.
        log: Called with summary lines.

    Returns:
        ``{"solutions": ..., "line": LineGap, "trajectories": {run: arrays}}``.

    Raises:
        UserError: For a missing solution or a grid of fewer than 3 points.
    """
    if points < 3 or not t_max > t_min:
        raise UserError(f"the line needs --points >= 3 and --t-max > --t-min, got "
                        f"{points} points on [{t_min}, {t_max}]")
    with store.open_run(path) as f:
        sols = solution_gaps(f)
        sa, sb = store.read_solution(f, a), store.read_solution(f, b)
        trajs = {}
        if trajectories and "trajectories" in f:
            for run, g in f["trajectories"].items():
                if "weights" in g and len(g["weights"]):
                    trajs[run] = {k: g[k][()] for k in ("weights", "buffers", "epoch",
                                                        "step") if k in g}
    if model is None or data is None:
        from landscape.train import load_run_model

        model, data = load_run_model(path)
    ev_line = Evaluator(copy.deepcopy(model), data, bn=bn, device=device,
                        batch_size=batch_size)
    line = line_gap(ev_line, sa.weights, sb.weights,
                    np.linspace(t_min, t_max, points), progress=progress)
    traj_out = {}
    if trajs:
        ev_keep = Evaluator(copy.deepcopy(model), data, bn=BNMode.KEEP, device=device,
                            batch_size=batch_size)
        for run, g in trajs.items():
            bufs = g.get("buffers")
            if bufs is not None and bufs.shape[-1] == 0:
                bufs = None
            traj_out[run] = trajectory_gaps(ev_keep, g["weights"], bufs,
                                            progress=progress)
            for k in ("epoch", "step"):
                if k in g:
                    traj_out[run][k] = np.asarray(g[k])
    s = line.shift
    with store.edit_run(path) as f:
        root = f.require_group("measures")
        if "gap" in root:
            del root["gap"]
        g = root.create_group("gap")
        store.set_attrs(g, {
            "from": a, "to": b, "points": points, "t_min": t_min, "t_max": t_max,
            "bn": ev_line.bn.value, "distance": s.distance, "t_train_min": s.t_train,
            "t_test_min": s.t_test, "shift_t": s.shift_t, "shift": s.shift,
            "shift_abs": abs(s.shift), "refine": "parabola"})
        gl = g.create_group("line")
        store.write_array(gl, "t", line.t)
        for k, v in line.metrics.items():
            store.write_array(gl, k, v)
        gs = g.create_group("solutions")
        for name, vals in sols.items():
            store.set_attrs(gs.create_group(name), vals)
        gt = g.create_group("trajectories")
        for run, arrs in traj_out.items():
            gr = gt.create_group(run)
            for k, v in arrs.items():
                store.write_array(gr, k, np.asarray(v))
    if log:
        for name, v in sols.items():
            log(f"{name}: test-train loss {v['loss_gap']:+.4f}, error "
                f"{100 * v['err_gap']:+.2f} points")
        log(f"line {a}->{b}: train-loss minimum at t={s.t_train:.3f}, test-error "
            f"minimum at t={s.t_test:.3f}; shift {s.shift:+.4g} in L2 distance "
            f"({s.shift_t:+.3f} of |{b}-{a}| = {s.distance:.4g})")
    return {"solutions": sols, "line": line, "trajectories": traj_out}
