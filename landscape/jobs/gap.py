"""The train–test gap of a run file: per solution, per trajectory point, along a line."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from landscape import store
from landscape._errors import UserError
from landscape.data import TensorData
from landscape.evaluate import BNMode, Evaluator
from landscape.gap import LineGap, line_gap, metric_gaps, train_test_shift, trajectory_gaps
from landscape.jobs._run import load_run_model, resolve_l2
from landscape.surface import parse_grid


def measure_gap(
    path: str | os.PathLike, *, a: str | None = None, b: str | None = None,
    grid: str | Sequence[float] = "-0.5:1.5:21", bn: str | None = None,
    l2: float | str = "auto",
    trajectories: bool = True, model: nn.Module | None = None,
    data: TensorData | None = None, device: str = "cpu", batch_size: int = 4096,
    progress: bool = False, log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compute every gap of a run file and store it under ``/measures/gap``.

    Args:
        path: Run file.
        a: Solution at ``t = 0`` of the line (``None``: ``sgd``, else the one
            stored).
        b: Solution at ``t = 1`` (``None``: ``swa``, else the other stored
            solution; with one solution stored there is no line).
        grid: The ``t`` values: ``"start:stop:num"`` or a sequence.
        bn: BN mode along the line (``None``: recompute for BN models).
        l2: Weight decay of the train loss along the line: ``"auto"`` (the
            run's ``wd``; the SWA paper plots CE + wd/2·‖θ‖²), or a number.
        trajectories: Also evaluate every recorded trajectory point.
        model: The run's model (``None``: rebuilt from the run file).
        data: The run's data (with ``model``).
        device: Where to evaluate.
        batch_size: Samples per forward pass.
        progress: tqdm bars on stderr.
        log: Called with summary lines.

    Returns:
        ``{"solutions": ..., "line": LineGap or None, "trajectories": {run: arrays}}``.
        A gap already stored for the same endpoints (their weights), grid, ``l2``,
        ``bn`` and trajectories is read back, not recomputed (a resumed protocol).

    Raises:
        UserError: For a missing solution or a grid of fewer than 3 points.
    """
    ts = parse_grid(grid) if isinstance(grid, str) else np.asarray(grid, dtype=np.float64)
    if ts.size < 3 or not np.all(np.diff(ts) > 0):
        raise UserError(f"the line needs at least 3 increasing t values, got {ts.tolist()}; "
                        "use e.g. --grid -0.5:1.5:21")
    with store.open_run(path) as f:
        coef = resolve_l2(l2, float(store.config_of(f).get("wd", 0.0)))
        sols = {n: metric_gaps(a_) for n, a_ in store.solution_attrs(f).items()}
        names = store.solution_names(f)
        no_line = ""
        if b is None:
            try:
                a, b = store.solution_pair(names, "the line", a)
            except UserError as e:
                no_line = str(e)
        a = a or store.main_solution(names)
        sa = store.read_solution(f, a)
        sb = store.read_solution(f, b) if b is not None else None
        points = sorted(store.trajectory_lengths(f).items()) if trajectories else []
        runs = [r for r, _ in points]
        key = {"endpoints": _digest(sa, sb), "bn_asked": bn or "default",
               "trajectory_points": ",".join(f"{r}:{n}" for r, n in points)}
        stored = _stored_gap(f, ts, coef, key)
    if stored is not None:
        line, traj_out = stored["line"], stored["trajectories"]
    else:
        line, traj_out = _compute(path, a, b, sa, sb, ts, runs, key, coef=coef, bn=bn,
                                  model=model, data=data, device=device,
                                  batch_size=batch_size, sols=sols, progress=progress)
    if log:
        for name, v in sols.items():
            log(f"{name}: test-train loss {v['loss_gap']:+.4f}, error "
                f"{100 * v['err_gap']:+.2f} points")
        if line is None:
            log(f"no line: {no_line}")
        else:
            s, sc = line.shift, line.shift_ce
            what = f"regularized train loss (l2 {coef:g})" if coef else "train loss"
            log(f"line {a}->{b}: {what} minimum at t={s.t_train:.3f}, test-error "
                f"minimum at t={s.t_test:.3f}; shift {s.shift:+.4g} in L2 distance "
                f"({s.shift_t:+.3f} of |{b}-{a}| = {s.distance:.4g})"
                + (f"; with the plain CE train loss {sc.shift:+.4g}" if coef else ""))
    return {"solutions": sols, "line": line, "trajectories": traj_out}


def _compute(path: str | os.PathLike, a: str, b: str | None, sa: Any, sb: Any,
             ts: np.ndarray, runs: list[str], key: dict[str, Any], *, coef: float,
             bn: str | None, model: nn.Module | None, data: TensorData | None, device: str,
             batch_size: int, sols: dict[str, Any], progress: bool
             ) -> tuple[LineGap | None, dict[str, dict[str, np.ndarray]]]:
    """Evaluate the line and the trajectories and store them under ``/measures/gap``.

    Returns:
        The line (``None`` without a second solution) and the trajectories' gaps.
    """
    if model is None or data is None:
        model, data = load_run_model(path)
    train, test = data.batches("train", batch_size), data.batches("test", batch_size)
    line = None
    attrs: dict[str, Any] = {"l2": coef, **key}
    if sb is not None:
        ev_line = Evaluator(copy.deepcopy(model), train, test, bn=bn, device=device,
                            batch_size=batch_size, l2=coef)
        line = line_gap(ev_line, sa.weights, sb.weights, ts, progress=progress)
        s, sc = line.shift, line.shift_ce
        attrs = {
            "from": a, "to": b, "points": int(ts.size), "t_min": float(ts[0]),
            "t_max": float(ts[-1]),
            "bn": ev_line.bn.value, "distance": s.distance, "l2": coef,
            "train_loss": "CE + l2/2 ||theta||^2" if coef else "CE",
            "t_train_min": s.t_train, "t_test_min": s.t_test, "shift_t": s.shift_t,
            "shift": s.shift, "shift_abs": abs(s.shift), "t_train_min_ce": sc.t_train,
            "shift_ce": sc.shift, "refine": "parabola", **key}
    traj_out = {}
    if runs:
        with store.open_run(path) as f:
            trajs = {run: store.trajectory_of(f, run) for run in runs}
        ev_keep = Evaluator(copy.deepcopy(model), train, test, bn=BNMode.KEEP,
                            device=device, batch_size=batch_size)
        for run, g in trajs.items():
            bufs = g.get("buffers")
            if bufs is not None and bufs.shape[-1] == 0:
                bufs = None
            traj_out[run] = trajectory_gaps(ev_keep, g["weights"], bufs, progress=progress)
            for k in ("epoch", "step"):
                if k in g:
                    traj_out[run][k] = np.asarray(g[k])
    with store.edit_run(path) as f:
        store.write_gap(f, attrs, {} if line is None else {"t": line.t, **line.metrics},
                        sols, traj_out)
    return line, traj_out


def _digest(*solutions: Any) -> str:
    """A short hash of the solutions' weights (``None`` entries skipped)."""
    h = hashlib.sha256()
    for sol in solutions:
        if sol is not None:
            h.update(sol.weights.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _stored_gap(f: Any, ts: np.ndarray, coef: float, key: dict[str, Any]
                ) -> dict[str, Any] | None:
    """The stored ``/measures/gap`` when it was made as asked (``key``: endpoints,
    requested BN mode, trajectory lengths; same grid and ``l2``), else ``None``."""
    g = f.get("measures/gap")
    if g is None:
        return None
    at = store.attrs_of(g)
    if any(at.get(k) != v for k, v in key.items()) or at.get("l2") != coef:
        return None
    lines = {k: np.asarray(v[()]) for k, v in g["line"].items()}
    trajs = {r: {k: np.asarray(v[()]) for k, v in gr.items()}
             for r, gr in g["trajectories"].items()}
    line = None
    if "from" in at:
        t = lines.pop("t", None)
        if t is None or t.shape != ts.shape or not np.array_equal(t, ts):
            return None

        def shift(train: np.ndarray) -> Any:
            return train_test_shift(t, train, lines["test_err"], distance=at["distance"])

        line = LineGap(t, lines, shift(lines["train_loss"]), shift(lines["train_ce"]), coef)
    return {"line": line, "trajectories": trajs}
