"""A mode-connecting curve between two solutions of run files, resumable after a kill."""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from landscape import store
from landscape._errors import UserError
from landscape.config import ConnectConfig
from landscape.evaluate import Evaluator, resolve_device
from landscape.jobs._run import check_same_data, load_run_model
from landscape.paths.curves import (
    Connection,
    Curve,
    check_endpoints,
    curve_plane_coords,
    curve_plane_grid,
    curve_profile,
    format_barriers,
    profile_grid,
    train_curve,
)
from landscape.surface import METRICS, Round, Surface, evaluate_points


def _endpoint(path: str | os.PathLike, solution: str) -> dict[str, Any]:
    """What one end needs: its weights and what identifies its model and data."""
    with store.open_run(path) as f:
        s = store.read_solution(f, solution)
        params, buffers = store.layouts(f)
        name, kwargs = store.model_spec(f)
        return {"file": str(path), "solution": solution, "weights": s.weights,
                "params": params, "buffers": buffers, "model": name, "kwargs": kwargs,
                "wd": float(store.config_of(f).get("wd", 0.0))}


def _check_pair(a: dict[str, Any], b: dict[str, Any], verb: str = "connect") -> None:
    """One-line errors for endpoints that cannot be joined.

    Raises:
        UserError: For different architectures or data, or the same solution twice.
    """
    pa, pb = a["params"], b["params"]
    if (a["model"], a["kwargs"]) != (b["model"], b["kwargs"]) or (
            pa.names, pa.shapes) != (pb.names, pb.shapes):
        def arch(e: dict[str, Any]) -> str:
            kw = "".join(f" {k}={v}" for k, v in sorted(e["kwargs"].items()))
            return f"{e['file']} ({e['model']}{kw}, {e['params'].numel} weights)"

        raise UserError(f"{arch(a)} and {arch(b)} are different architectures; {verb} "
                        "runs of the same --model and --model-width")
    check_same_data(a["file"], b["file"])
    check_endpoints(a["weights"], b["weights"])


def connect_runs(
    a: str | os.PathLike, b: str | os.PathLike, out: str | os.PathLike, *,
    solution_a: str = "sgd", solution_b: str = "sgd", config: ConnectConfig | None = None,
    name: str | None = None, device: str = "cpu", force: bool = False,
    plane: int | None = None, progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Connection:
    """Train a curve from solution ``solution_a`` of ``a`` to ``solution_b`` of ``b``.

    The curve, its training state after every epoch, the profiles of the curve
    and of the line at ``config.points`` values of ``t`` and the barriers go to
    ``/curves/<name>`` of ``out`` (an analysis file, created if missing; a run
    file works too).  Run again after a kill, it continues from the last
    finished epoch or profile and ends with the same bends; with everything
    done it only reads the result back.

    Args:
        a: Run file of the start.
        b: Run file of the end (may be ``a``, with another solution).
        out: File to store the curve in.
        solution_a: Solution of ``a`` at ``t = 0``.
        solution_b: Solution of ``b`` at ``t = 1``.
        config: The curve's settings (``wd=None``: ``a``'s weight decay).
        name: Group name (default: the curve kind, e.g. ``bezier``).
        device: Where to train and evaluate.
        force: Replace a stored curve of that name made with other settings.
        plane: Also evaluate the plane through both endpoints and the first
            bend (Garipov et al.'s Figure 1) on a grid of ``plane`` steps from
            ``a`` to ``b`` (:func:`~landscape.paths.curve_plane_grid`), stored
            with the curve projected onto it as the surface ``<name>_plane``
            of ``out``; resumable like the rest.  ``None``: no plane.
        progress: tqdm bars.
        log: Called with one-line summaries.

    Returns:
        The :class:`~landscape.paths.Connection`.

    Raises:
        UserError: For endpoints that cannot be joined, bad settings, or a
            stored curve of another config without ``force``.
    """
    cfg = (config or ConnectConfig()).validate()
    if name is not None:
        store.check_name(name)
    if plane is not None and plane < 1:
        raise UserError(f"--plane-steps must be >= 1, got {plane}")
    ea, eb = _endpoint(a, solution_a), _endpoint(b, solution_b)
    _check_pair(ea, eb)
    if cfg.wd is None:
        cfg = cfg.replace(wd=ea["wd"])
    name = name or cfg.curve
    dev = str(resolve_device(device))
    ends = {k: {"file": str(e["file"]), "solution": e["solution"],
                "sha256": store.weights_sha256(e["weights"])} for k, e in (("a", ea), ("b", eb))}
    same = {"config": cfg.to_dict(), "hashes": [ends["a"]["sha256"], ends["b"]["sha256"]]}
    out = Path(out)
    with store.WriterLock(out):
        stored = store.curve_attrs(out, name)
        if stored is not None:
            old = stored.get("endpoints") or {}
            mine = {"config": stored.get("config"),
                    "hashes": [old.get(k, {}).get("sha256") for k in ("a", "b")]}
            if mine != same:
                if not force:
                    raise UserError(
                        f"{out} holds a curve {name!r} of other settings or endpoints; "
                        "pass --force to replace it or --name to store another")
                stored = None
        curve = Curve.on_segment(cfg.curve, ea["weights"], eb["weights"], cfg.bends)
        if stored is None:
            store.init_curve(out, name, curve, ea["params"],
                             {"config": cfg.to_dict(), "endpoints": ends})
            state = None
        else:
            curve, state = store.read_curve(out, name)
        model, data = load_run_model(a)
        if state is None or state.epoch < cfg.epochs:
            state = train_curve(model, state or curve, data.batches("train"), cfg,
                                device=dev, progress=progress,
                                on_epoch=lambda s: store.write_curve_state(out, name, s))
            if log:
                log(f"trained {cfg.curve} curve ({cfg.bends} bend(s)) for {cfg.epochs} "
                    f"epochs: mean objective {state.history['loss'][-1]:.4f}")
        curve = state.curve
        ev = Evaluator(copy.deepcopy(model), *data.splits(cfg.eval_batch_size),
                       device=dev, batch_size=cfg.eval_batch_size, l2=float(cfg.wd or 0))
        grid = profile_grid(cfg.points)
        profiles = {}
        for which, c in (("curve", curve), ("line", Curve.line(curve.start, curve.end))):
            p = store.read_profile(out, name, which)
            if p is None:
                p = curve_profile(ev, c, grid, progress=progress)
                store.write_profile(out, name, which, p, complete=which == "line")
            profiles[which] = p
        if plane is not None:
            sname = _curve_plane(out, name, curve, ev, profiles["curve"].t, plane,
                                 progress=progress)
            if log:
                log(f"plane through a, b and the bend: surface {sname} in {out}")
    res = Connection(curve, profiles["curve"], profiles["line"], state.history)
    if log:
        for which, bars in res.barriers.items():
            log(f"{which} barrier: {format_barriers(bars)}")
        log(f"curve {name} in {out}")
    return res


def _curve_plane(out: Path, name: str, curve: Curve, ev: Evaluator, t: Any, steps: int,
                 *, progress: bool = False, commit_interval: float = 10.0) -> str:
    """Evaluate (or resume) the plane of curve ``name`` with the profiles' evaluator.

    The grid, the evaluator and so the values at ``a`` and ``b`` are those of the
    profiles; a plane of other bends or steps is replaced (it is derived data).

    Returns:
        The surface's name.
    """
    grid = curve_plane_grid(curve, steps=steps)
    want = {"curve": name, "bend": 0, "steps": int(steps), "margin": 0.3,
            "bends_sha256": store.weights_sha256(curve.bends)}
    stored, shape, arrays = store.curve_plane_progress(out, name)
    if stored == want and shape == grid.shape:
        surf = Surface(grid, {m: arrays[m] for m in METRICS}, arrays["computed"])
    else:
        has_test = "test" in ev.data
        surf = Surface.empty(grid, {
            "kind": "plane", "bn": ev.bn.value, "center": "a", "l2": float(ev.l2),
            "train_samples": ev.num_samples("train"),
            "test_samples": ev.num_samples("test") if has_test else 0,
            "config": want, "curve": name})
        store.write_curve_plane(out, name, surf, t, curve_plane_coords(curve, grid, t))
    state = {"last": time.perf_counter(), "pending": False}

    def commit() -> None:
        store.update_curve_plane(out, name, surf)
        state["pending"], state["last"] = False, time.perf_counter()

    def on_round(results: Round) -> None:
        for k, vals in results:
            surf.set(k, vals)
        state["pending"] = True
        if time.perf_counter() - state["last"] >= commit_interval:
            commit()

    try:
        evaluate_points(ev, grid, surf.missing(), on_round=on_round, progress=progress,
                        desc=f"plane {name}")
    finally:
        if state["pending"]:
            with contextlib.suppress(Exception):  # keep what was computed
                commit()
    return store.plane_surface_name(name)
