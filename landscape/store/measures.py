"""Measures in HDF5: ``/measures/<solution>/<measure>`` and the run-level groups.

* ``/measures/<solution>/<measure>/``: one group per flatness measure (attrs:
  the measure's scalars, ``params`` JSON, ``seconds``, ...; datasets: its arrays);
* ``/measures/<solution>/rays``: train loss and test error along random rays;
* ``/measures/compare``: the side-by-side table of ``landscape compare``;
* ``/measures/gap``: the train–test gap and the shift along a line;
* ``/measures/checkpoints``: accuracies of recorded checkpoints (seed004).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from landscape._errors import UserError
from landscape.store._h5 import KINDS, attrs_of, new_group, open_file, set_attrs, write_array

#: Groups under ``/measures`` that are not solutions.
RUN_LEVEL = ("compare", "gap", "checkpoints", "budgets")


def _result_type() -> type:
    from landscape.sharpness import MeasureResult

    return MeasureResult


# --------------------------------------------------------------------------- measures
def write_measure(f: h5py.File, result: Any) -> None:
    """Store a :class:`~landscape.sharpness.MeasureResult` (replacing one there)."""
    g = new_group(f, f"measures/{result.solution}/{result.measure}")
    for k, v in result.arrays.items():
        write_array(g, k, np.asarray(v))
    set_attrs(g, result.scalars)


def stored_params(f: h5py.File, solution: str, measures: Sequence[str]) -> dict[str, str]:
    """The ``params`` JSON of each stored measure of ``solution``.

    Returns:
        ``{measure: params}`` for the measures that are stored.
    """
    out = {}
    for m in measures:
        key = f"measures/{solution}/{m}"
        if key in f:
            out[m] = str(attrs_of(f[key]).get("params"))
    return out


def read_measure(f: h5py.File, solution: str, measure: str) -> Any:
    """A stored measure as a :class:`~landscape.sharpness.MeasureResult`, or ``None``.

    Returns:
        The result or ``None``.
    """
    key = f"measures/{solution}/{measure}"
    if key not in f:
        return None
    g = f[key]
    arrays = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}
    return _result_type()(measure, attrs_of(g), arrays, solution)


def measured_solutions(f: h5py.File) -> list[str]:
    """Solutions with at least one stored measure.

    Returns:
        Their names.
    """
    return [s for s in f.get("measures", {}) if s not in RUN_LEVEL]


def measures_of(f: h5py.File, solution: str) -> dict[str, Any]:
    """Every stored measure of ``solution`` (``rays`` excluded).

    Returns:
        ``{measure: MeasureResult}``.
    """
    g = f.get(f"measures/{solution}")
    if g is None:
        return {}
    return {m: read_measure(f, solution, m) for m in g if m != "rays"}


def measure_units(f: h5py.File) -> dict[str, str]:
    """The ``units`` attribute of every stored measure that has one.

    Returns:
        ``{measure: units}``.
    """
    out: dict[str, str] = {}
    for s in measured_solutions(f):
        for m, g in f["measures"][s].items():
            if "units" in g.attrs:
                out.setdefault(m, str(attrs_of(g)["units"]))
    return out


# --------------------------------------------------------------------------- compare
def write_compare(f: h5py.File, rows: Sequence[Mapping[str, Any]],
                  attrs: Mapping[str, Any]) -> None:
    """The ``landscape compare`` table under ``/measures/compare``."""
    c = new_group(f, "measures/compare")
    set_attrs(c, attrs)
    c.attrs["quantities"] = json.dumps([r["quantity"] for r in rows])
    for col in ("a", "b", "a_low", "a_high", "b_low", "b_high", "ratio", "low", "high"):
        write_array(c, col, np.array([r[col] for r in rows], dtype=float))


# --------------------------------------------------------------------------- gap
def write_gap(f: h5py.File, attrs: Mapping[str, Any], line: Mapping[str, np.ndarray],
              solutions: Mapping[str, Mapping[str, float]],
              trajectories: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """The train–test gap under ``/measures/gap`` (line, solutions, trajectories)."""
    g = new_group(f, "measures/gap")
    set_attrs(g, attrs)
    gl = g.create_group("line")
    for k, v in line.items():
        write_array(gl, k, np.asarray(v))
    gs = g.create_group("solutions")
    for name, vals in solutions.items():
        set_attrs(gs.create_group(name), vals)
    gt = g.create_group("trajectories")
    for run, arrs in trajectories.items():
        gr = gt.create_group(run)
        for k, v in arrs.items():
            write_array(gr, k, np.asarray(v))


# --------------------------------------------------------------------------- rays
def write_rays(f: h5py.File, solution: str, arrays: Mapping[str, np.ndarray],
               attrs: Mapping[str, Any]) -> None:
    """Train loss and test error along random rays under ``/measures/<sol>/rays``."""
    r = new_group(f, f"measures/{solution}/rays")
    for k, v in arrays.items():
        write_array(r, k, v)
    set_attrs(r, attrs)


def read_rays(path: str | os.PathLike, solutions: Sequence[str] = ("sgd", "swa"),
              ) -> dict[str, dict[str, np.ndarray]]:
    """Train loss and test error along random rays of each solution that has them.

    Returns:
        ``{solution: {"distance": (points,), "train_loss": (rays, points),
        "test_err": (rays, points)}}``.

    Raises:
        UserError: If no solution has rays.
    """
    out = {}
    with open_file(path, KINDS) as f:
        for s in solutions:
            g = f.get(f"measures/{s}/rays")
            if g is not None:
                out[s] = {k: np.asarray(g[k][()], dtype=np.float64)
                          for k in ("distance", "train_loss", "test_err")}
    if not out:
        raise UserError(f"no /measures/<solution>/rays in {path}; run "
                        "`landscape reproduce paper` (or landscape.experiments.paper."
                        "ray_profiles)")
    return out


# --------------------------------------------------------------------------- checkpoints
def write_checkpoints(f: h5py.File, arrays: Mapping[str, np.ndarray],
                      attrs: Mapping[str, Any]) -> None:
    """Accuracies of recorded checkpoints under ``/measures/checkpoints``."""
    h = f.require_group("measures/checkpoints")
    for k, v in arrays.items():
        write_array(h, k, v)
    set_attrs(h, attrs)


def read_checkpoints(path: str | os.PathLike) -> dict[str, Any]:
    """Stored per-checkpoint test accuracies and the averaged model's accuracy.

    Returns:
        ``{"epoch", "test_acc", "avg_acc" (float or NaN), "title"}``.

    Raises:
        UserError: If the checkpoint accuracies were not stored.
    """
    from landscape.store.run import run_title

    with open_file(path, KINDS) as f:
        if "measures/checkpoints/test_acc" not in f:
            raise UserError(f"{path} has no /measures/checkpoints; evaluate them with "
                            "landscape.experiments.evaluate_checkpoints (`landscape "
                            "reproduce seed004` does)")
        g = f["measures/checkpoints"]
        avg = (float(f["solutions/avg"].attrs.get("test_acc", np.nan))
               if "solutions/avg" in f else np.nan)
        return {"epoch": g["epoch"][()], "test_acc": g["test_acc"][()], "avg_acc": avg,
                "title": run_title(f)}


# --------------------------------------------------------------------------- arrays
def read_measure_arrays(path: str | os.PathLike, measure: str, key: str,
                        solutions: Sequence[str] | None = None, *,
                        required: bool = True) -> dict[str, np.ndarray]:
    """Dataset ``key`` of ``/measures/<sol>/<measure>`` for each solution that has it.

    Args:
        path: Run, results or analysis file.
        measure: Measure name (e.g. ``hessian``).
        key: Dataset (e.g. ``eigenvalues``).
        solutions: Which solutions (default: every measured one).
        required: Raise if no solution has it (else return an empty dict).

    Returns:
        ``{solution: float64 array}``.

    Raises:
        UserError: If no solution has it and it is ``required``.
    """
    out = {}
    with open_file(path, KINDS) as f:
        for s in solutions if solutions is not None else measured_solutions(f):
            k = f"measures/{s}/{measure}/{key}"
            if k in f:
                out[s] = np.asarray(f[k][()], dtype=np.float64)
    if not out and required:
        raise UserError(f"no /measures/<solution>/{measure}/{key} in {path}; run "
                        "`landscape sharpness` first")
    return out


def read_widths(path: str | os.PathLike, solutions: Sequence[str] | None = None,
                measure: str = "width", *, required: bool = True) -> dict[str, np.ndarray]:
    """Per-direction widths of each solution, ``/measures/<sol>/<measure>/widths``.

    Returns:
        ``{solution: (n_directions,) widths}``.
    """
    return {s: a.ravel() for s, a in read_measure_arrays(
        path, measure, "widths", solutions, required=required).items()}


def read_density(path: str | os.PathLike, solutions: Sequence[str] | None = None,
                 measure: str = "density") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Eigenvalue densities ``/measures/<sol>/<measure>/{grid,density}``.

    Returns:
        ``{solution: (grid, density)}``.
    """
    grid = read_measure_arrays(path, measure, "grid", solutions)
    dens = read_measure_arrays(path, measure, "density", solutions)
    return {s: (grid[s], dens[s]) for s in grid if s in dens}
