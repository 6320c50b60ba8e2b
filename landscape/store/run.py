r"""The run file: one self-describing, crash-safe HDF5 file per training run.

Layout (``schema_version`` 1; ``docs/schema.md`` documents every dataset)::

    /                      attrs: kind, schema_version, landscape_version, created,
                                  config (JSON), seed, torch_version, device
    /model                 attrs: name, kwargs (JSON), in_shape, n_classes,
                                  params (JSON layout), buffers (JSON layout)
    /data                  attrs: name, n_train, n_test, seed, ...
    /history/<run>/...     per-epoch metrics of each training run (sgd, swa)
    /trajectories/<run>/   weights (n_rec, n_params), buffers, step, epoch, lr, loss
    /solutions/<name>/     weights, buffers; metrics as attrs
    /surfaces/<name>/      see :mod:`landscape.store.surfaces`
    /measures/...          see :mod:`landscape.store.measures`

Callers get open files from :func:`open_run` / :func:`edit_run` and pass them
to the functions here; they never index into them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError
from landscape.params import ParamLayout
from landscape.store._h5 import (
    RUN_KIND,
    attrs_of,
    check_file,
    edit_file,
    json_attr,
    new_group,
    open_file,
    plain,
    set_attrs,
    stamp,
    to_attr,
    write_array,
)


def check_run_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it is a readable run file of this schema.

    Raises:
        UserError: If it is missing, not HDF5, damaged, not ours, or of another version.
    """
    return check_file(path, (RUN_KIND,))


@contextmanager
def open_run(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a run file read-only after checking kind and schema version.

    Yields:
        The open file.
    """
    with open_file(path, (RUN_KIND,)) as f:
        yield f


@contextmanager
def edit_run(path: str | os.PathLike, *, create: bool = False) -> Iterator[h5py.File]:
    """Change a run file atomically (see :func:`landscape.store._h5.edit_file`).

    Yields:
        The writable copy.
    """
    with edit_file(path, create=create, kinds=(RUN_KIND,)) as f:
        yield f


# --------------------------------------------------------------------------- metadata
def init_run(
    f: h5py.File, *, config: Mapping[str, Any], seed: int, device: str,
    model: Mapping[str, Any], params: ParamLayout, buffers: ParamLayout,
    data: Mapping[str, Any],
) -> None:
    """Write the root, ``/model`` and ``/data`` metadata of a new run file."""
    stamp(f, RUN_KIND, config=dict(config), seed=int(seed), device=device)
    g = f.require_group("model")
    set_attrs(g, dict(model))
    g.attrs["params"] = params.to_json()
    g.attrs["buffers"] = buffers.to_json()
    g.attrs["n_params"] = params.numel
    set_attrs(f.require_group("data"), dict(data))


def layouts(f: h5py.File) -> tuple[ParamLayout, ParamLayout]:
    """The parameter and buffer layouts stored in ``/model``.

    Returns:
        ``(params, buffers)``.
    """
    g = f["model"]
    return ParamLayout.from_json(g.attrs["params"]), ParamLayout.from_json(
        g.attrs["buffers"])


def config_of(f: h5py.File) -> dict[str, Any]:
    """The resolved config stored at the root.

    Returns:
        The config as a dict.
    """
    return json_attr(f, "config", {})


def run_config(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`config_of` of the run file at ``path``.

    Returns:
        The config as a dict.
    """
    with open_run(path) as f:
        return config_of(f)


def data_attrs(f: h5py.File) -> dict[str, Any]:
    """The ``/data`` attributes (name, sample counts, files, ...).

    Returns:
        The attributes.
    """
    return attrs_of(f["data"]) if "data" in f else {}


def initial_weights(f: h5py.File) -> torch.Tensor | None:
    """The weights at initialization (the epoch-0 record of a trajectory), if recorded.

    Returns:
        ``(n_params,)`` weights or ``None``.
    """
    for run in ("sgd", "swa"):
        g = f.get(f"trajectories/{run}")
        if g is not None and "epoch" in g and len(g["epoch"]) and g["epoch"][0] == 0:
            return torch.from_numpy(g["weights"][0])
    return None


def model_spec(f: h5py.File) -> tuple[str, dict[str, Any]]:
    """Registry name and keyword arguments of the run's model.

    Returns:
        ``(name, kwargs)``.
    """
    g = f["model"]
    return str(plain(g.attrs["name"])), json_attr(g, "kwargs", {}) or {}


def run_title(f: h5py.File) -> str:
    """``"<file stem>: <model> on <data>"`` for figure titles.

    Returns:
        The title.
    """
    stem = Path(f.filename).stem
    model = plain(f["model"].attrs.get("name", "")) if "model" in f else ""
    data = plain(f["data"].attrs.get("name", "")) if "data" in f else ""
    detail = f"{model} on {data}" if model and data else (model or data)
    return f"{stem}: {detail}" if detail else stem


# --------------------------------------------------------------------------- solutions
@dataclass
class Solution:
    """A stored weight vector with its BN buffers and metrics."""

    name: str
    weights: torch.Tensor  # (n_params,)
    buffers: torch.Tensor  # (n_buffers,)
    attrs: dict[str, Any] = field(default_factory=dict)


def write_solution(f: h5py.File, sol: Solution) -> None:
    """Store a solution under ``/solutions/<name>`` (replacing one of that name)."""
    s = new_group(f, f"solutions/{sol.name}")
    write_array(s, "weights", sol.weights.float())
    write_array(s, "buffers", sol.buffers.float())
    set_attrs(s, sol.attrs)


def solution_names(f: h5py.File) -> list[str]:
    """Names of the stored solutions.

    Returns:
        The names.
    """
    return list(f["solutions"].keys()) if "solutions" in f else []


#: The solutions ``landscape train`` writes (other jobs must not replace them).
TRAIN_SOLUTIONS = ("sgd", "swa", "swa_last", "avg")

#: How the solutions that are not always there get into a run file.
_MADE_BY = {"swa": "without --no-swa", "swa_last": "without --no-swa",
            "avg": "with --average-epochs A:B"}


def _made_by(name: str) -> str:
    made = _MADE_BY.get(name)
    return f" ({name} is written by `landscape train` {made})" if made else ""


def read_solution(f: h5py.File, name: str) -> Solution:
    """Read ``/solutions/<name>``.

    Returns:
        The solution.

    Raises:
        UserError: If there is no such solution (the message lists those there are).
    """
    if "solutions" not in f or name not in f["solutions"]:
        raise UserError(
            f"no solution {name!r} in {f.filename}; choose one of "
            f"{solution_names(f) or '(none: run `landscape train` first)'}{_made_by(name)}")
    g = f["solutions"][name]
    return Solution(name, torch.from_numpy(g["weights"][()]),
                    torch.from_numpy(g["buffers"][()]), attrs_of(g))


#: The order in which defaults pick stored solutions.
_PREFERRED = ("swa", "sgd", "avg", "swa_last")

#: How a run file gets a second solution, for messages.
SECOND_SOLUTION = ("train with SWA (drop --no-swa) or add a post-hoc average "
                   "(--average-epochs A:B)")


def _by_preference(names: list[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(_PREFERRED)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def main_solution(names: list[str]) -> str:
    """The solution a command measures when none is named: ``swa``, else ``sgd``,
    else ``avg``, ``swa_last`` or the first by name.

    Returns:
        The name.

    Raises:
        UserError: If there is no solution at all.
    """
    if not names:
        raise UserError("the file holds no solution; run `landscape train` to write one")
    return _by_preference(names)[0]


def solution_pair(names: list[str], what: str, first: str | None = None
                  ) -> tuple[str, str]:
    """The two solutions a comparison takes when none are named.

    ``sgd`` and ``swa`` where both are stored (the SWA paper's pair); otherwise
    ``first`` (default ``sgd`` if stored) and the next of ``swa``, ``avg``,
    ``swa_last`` or any other solution.

    Args:
        names: The stored solution names.
        what: What needs the pair, for the message (e.g. ``compare``).
        first: The first solution if already chosen.

    Returns:
        ``(a, b)``.

    Raises:
        UserError: If the file holds fewer than two solutions.
    """
    order = _by_preference(names)
    a = first or ("sgd" if "sgd" in names else (order[0] if order else "sgd"))
    rest = [n for n in order if n != a]
    if not rest:
        raise UserError(f"{what} needs two solutions and the file holds only "
                        f"{names or 'none'}; {SECOND_SOLUTION}")
    return a, rest[0]


def solution_attrs(f: h5py.File) -> dict[str, dict[str, Any]]:
    """Every solution's attributes (metrics, source) without loading weights.

    Returns:
        ``{name: attrs}``.
    """
    return {n: attrs_of(f["solutions"][n]) for n in solution_names(f)}


# --------------------------------------------------------------------------- history
def write_history(f: h5py.File, run: str, table: Mapping[str, Any]) -> None:
    """Per-epoch metrics of ``run`` under ``/history/<run>``."""
    h = f.require_group(f"history/{run}")
    for k, v in table.items():
        write_array(h, k, np.asarray(v))


def read_history(path: str | os.PathLike) -> dict[str, Any]:
    """Per-epoch metrics of each training run.

    Returns:
        ``{"title": str, "runs": {run: {key: (n_epochs,) array}}}``.

    Raises:
        UserError: If the file has no ``/history``.
    """
    with open_run(path) as f:
        if "history" not in f or not len(f["history"]):
            raise UserError(f"{path} has no /history; it is not a finished run file")
        runs = {r: {k: g[k][()] for k in g} for r, g in f["history"].items()}
        return {"title": run_title(f), "runs": runs}


# --------------------------------------------------------------------------- trajectories
def write_trajectory(f: h5py.File, run: str, weights: np.ndarray, buffers: np.ndarray,
                     meta: Mapping[str, Any]) -> None:
    """Recorded weights (gzip), buffers and ``step``/``epoch``/``lr``/``loss`` of ``run``."""
    t = f.require_group(f"trajectories/{run}")
    write_array(t, "weights", weights, compress=True)
    write_array(t, "buffers", buffers, compress=True)
    for k, v in meta.items():
        write_array(t, k, np.asarray(v))


#: How a run file gets a trajectory, for messages.
RECORD_HINT = "rerun `landscape train` with --record-every N (e.g. 1) to record one"


def trajectory_runs(f: h5py.File) -> list[str]:
    """Runs with a recorded trajectory.

    Returns:
        Their names.
    """
    return [r for r, g in f.get("trajectories", {}).items() if "epoch" in g
            and len(g["epoch"])]


def trajectory_lengths(f: h5py.File) -> dict[str, int]:
    """Recorded points of each run's trajectory, counted without reading them.

    Returns:
        ``{run: points}`` for the runs of :func:`trajectory_runs`.
    """
    return {r: len(f[f"trajectories/{r}/weights"]) for r in trajectory_runs(f)}


def trajectory_of(f: h5py.File, run: str) -> dict[str, np.ndarray]:
    """Recorded ``weights``, ``buffers``, ``epoch`` and ``step`` of a run's trajectory.

    Returns:
        Arrays by name (weights ``(n_rec, n_params)``).

    Raises:
        UserError: If the run has no trajectory.
    """
    key = f"trajectories/{run}"
    if key not in f or "epoch" not in f[key] or len(f[key]["epoch"]) == 0:
        have = trajectory_runs(f)
        raise UserError(f"no recorded trajectory of the {run} run in {f.filename}; " + (
            f"recorded: {have} (choose with --trajectory)" if have
            else f"it recorded none; {RECORD_HINT}"))
    g = f[key]
    return {k: g[k][()] for k in ("weights", "buffers", "epoch", "step") if k in g}


def checkpoint_epochs(f: h5py.File, run: str, epochs: tuple[int, int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Which recorded checkpoints of ``run`` lie at whole completed epochs
    (``A..B`` inclusive), without reading their weights.

    Returns:
        ``(epochs (k,), rows (k,))``: the epochs and their rows in the trajectory.

    Raises:
        UserError: If the run has no trajectory or none in range.
    """
    if run not in trajectory_runs(f):
        raise UserError(f"no recorded trajectory of the {run} run in {f.filename}; "
                        f"{RECORD_HINT}")
    g = f[f"trajectories/{run}"]
    ep = g["epoch"][()] if "epoch" in g else np.zeros(0)
    keep = np.isclose(ep, np.round(ep)) & (ep >= 1)
    if epochs is not None:
        keep &= (ep >= epochs[0]) & (ep <= epochs[1])
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        raise UserError(f"no recorded checkpoint of the {run} run in epochs {epochs}; "
                        "train with --record-every 1 or pick recorded epochs")
    return np.round(ep[idx]), idx


def checkpoints(f: h5py.File, run: str, epochs: tuple[int, int] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recorded checkpoints of ``run`` at whole completed epochs (``A..B`` inclusive).

    Returns:
        ``(epochs (k,), weights (k, n_params), buffers (k, n_buffers))``.

    Raises:
        UserError: If the run has no trajectory or none in range.
    """
    ep, idx = checkpoint_epochs(f, run, epochs)
    g = f[f"trajectories/{run}"]
    return ep, g["weights"][idx], g["buffers"][idx]


# --------------------------------------------------------------------------- named points
_POINT = re.compile(r"^(?:(sgd|swa)/)?(epoch|step):(-?\d+)$")


def point_names(f: h5py.File) -> list[str]:
    """Valid point names of a run file (solutions and trajectory forms).

    Returns:
        The names.
    """
    names = solution_names(f)
    for run in trajectory_runs(f):
        prefix = "" if run == "swa" else f"{run}/"
        names += [f"{prefix}{k}:N" for k in ("epoch", "step") if k in f["trajectories"][run]]
    return names


def recorded_epochs(f: h5py.File) -> dict[str, list[int]]:
    """The whole epochs each run's trajectory recorded (``0``: the initialization).

    Returns:
        ``{run: sorted epochs}`` of the runs with a recorded trajectory.
    """
    out = {}
    for run in trajectory_runs(f):
        ep = f["trajectories"][run]["epoch"][()]
        out[run] = sorted({int(np.rint(e)) for e in ep if np.isclose(e, np.rint(e))})
    return out


def resolve_point(f: h5py.File, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and BN buffers of a named point of a run file.

    Names: a solution (``sgd``, ``swa``, ``swa_last``, ``avg``), or ``epoch:N`` /
    ``step:N`` of the SWA run's trajectory (``sgd/epoch:N`` for the baseline's).

    Returns:
        ``(weights, buffers)`` float32 flat vectors.

    Raises:
        UserError: For an unknown name (the message lists valid ones) or an
            unrecorded epoch/step.
    """
    if "solutions" in f and name in f["solutions"]:
        s = read_solution(f, name)
        return s.weights, s.buffers
    m = _POINT.match(name)
    if m is None:
        raise UserError(f"unknown point {name!r}; choose one of {point_names(f)}"
                        f"{_made_by(name)}")
    run, key, n = m.group(1) or "swa", m.group(2), int(m.group(3))
    if run not in trajectory_runs(f):
        raise UserError(f"unknown point {name!r}: the {run} run recorded no trajectory; "
                        f"choose one of {point_names(f)} or {RECORD_HINT}")
    g = f[f"trajectories/{run}"]
    vals = g[key][()] if key in g else np.zeros(0)
    idx = np.flatnonzero(np.isclose(vals, n))
    if len(idx) == 0:
        have = ", ".join(f"{v:g}" for v in vals[:20])
        raise UserError(f"{key} {n} of the {run} run was not recorded; recorded {key}s: "
                        f"{have or 'none'}")
    i = int(idx[-1])
    w = torch.from_numpy(g["weights"][i])
    b = torch.from_numpy(g["buffers"][i]) if "buffers" in g else torch.zeros(0)
    return w, b


# --------------------------------------------------------------------------- groups
def group_attrs(path: str | os.PathLike, key: str,
                match: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The attributes of group ``key`` (e.g. ``measures/budgets/swa_1.5x``), or None.

    Args:
        path: Run file.
        key: Group path.
        match: ``{name: value}`` the group must have been stored with (compared as
            :func:`to_attr` stores them): finished work is reused only if made with
            the same parameters.

    Returns:
        The attributes as stored (JSON not decoded), or ``None`` if the group is
        absent or one of ``match`` is missing or differs.
    """
    with open_run(path) as f:
        attrs = attrs_of(f[key]) if key in f else None
    if attrs is None or any(attrs.get(k) != to_attr(v) for k, v in (match or {}).items()):
        return None
    return attrs


def write_group_attrs(path: str | os.PathLike, key: str, attrs: Mapping[str, Any]) -> None:
    """Create (or update) group ``key`` of a run file with ``attrs``."""
    with edit_run(path) as f:
        set_attrs(f.require_group(key), attrs)


# --------------------------------------------------------------------------- label noise
def write_label_noise(f: h5py.File, indices: Any, original: Any, noisy: Any,
                      attrs: Mapping[str, Any]) -> None:
    """The corrupted train labels under ``/data/label_noise`` (``indices``, ``original``,
    ``noisy``: positions in the train split and the labels before and after)."""
    g = new_group(f, "data/label_noise")
    write_array(g, "indices", np.asarray(indices, dtype=np.int64))
    write_array(g, "original", np.asarray(original, dtype=np.int64))
    write_array(g, "noisy", np.asarray(noisy, dtype=np.int64))
    set_attrs(g, {**attrs, "n_changed": int(np.asarray(indices).size)})


def read_label_noise(f: h5py.File) -> dict[str, Any] | None:
    """The stored label noise of a run, or ``None`` if its labels were not corrupted.

    Returns:
        ``{"indices", "original", "noisy": (k,) int64 arrays, "attrs": {...}}``.
    """
    g = f.get("data/label_noise")
    if g is None:
        return None
    return {k: g[k][()] for k in ("indices", "original", "noisy")} | {"attrs": attrs_of(g)}
