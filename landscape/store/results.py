"""Results files, standalone analysis files, trimmed copies, and a text summary of any file.

* **Results file** (``kind = "landscape-results"``): one per ``landscape
  reproduce``: ``/metrics/<method>/<metric>`` arrays over seeds, the command
  and the resolved config as root attributes.
* **Analysis file** (``kind = "landscape-analysis"``): what :func:`save` writes
  for results of the Python API on a user's own model — the same
  ``/surfaces/<name>`` and ``/measures/<solution>/<measure>`` groups as a run
  file, so the same plots and ``landscape info`` read it.  :func:`save` into an
  existing run file adds the result there instead.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape._errors import UserError, UserTypeError
from landscape.store._h5 import (
    ANALYSIS_KIND,
    KINDS,
    RESULTS_KIND,
    RUN_KIND,
    _h5,
    attrs_of,
    check_name,
    edit_file,
    file_kind,
    open_file,
    plain,
    set_attrs,
    stamp,
    to_attr,
    write_array,
)


# --------------------------------------------------------------------------- results
def write_results(path: str | os.PathLike, attrs: Mapping[str, Any],
                  metrics: Mapping[str, Mapping[str, Sequence[float]]]) -> Path:
    """Write a results file: root ``attrs`` and ``/metrics/<method>/<metric>`` arrays.

    Returns:
        ``path``.
    """
    with edit_file(path, create=True) as f:
        stamp(f, RESULTS_KIND, **attrs, methods=list(metrics))
        for method, cols in metrics.items():
            g = f.require_group(f"metrics/{method}")
            for k, v in cols.items():
                write_array(g, k, np.asarray(v, dtype=np.float64))
    return Path(path)


def stage_attrs(path: str | os.PathLike, key: str,
                match: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """A finished stage of an interrupted ``reproduce``: group ``key``'s attributes, or None.

    A protocol that is not built on run files (``seed000``) keeps what it has
    finished (a search, a seed's scores) as groups of a progress file of kind
    ``landscape-results``; a rerun reads them back instead of recomputing.

    Args:
        path: Progress file (absent: nothing finished).
        key: Group path, e.g. ``seed3/swa``.
        match: ``{name: value}`` the stage must have been stored with (compared as
            stored, numbers as they are and the rest as JSON): a stage made with
            other parameters is not reused.

    Returns:
        The attributes, JSON decoded, or ``None``.
    """
    p = Path(path)
    if not p.is_file():
        return None
    with open_file(p, (RESULTS_KIND,)) as f:
        if key not in f:
            return None
        attrs = {k: plain(v) for k, v in f[key].attrs.items()}
    if any(attrs.get(k) != plain(to_attr(v)) for k, v in (match or {}).items()):
        return None
    return attrs


def write_stage_attrs(path: str | os.PathLike, key: str, attrs: Mapping[str, Any]) -> None:
    """Record a finished stage (see :func:`stage_attrs`); the file is replaced atomically."""
    p = Path(path)
    new = not p.is_file()
    with edit_file(p, create=new, kinds=(RESULTS_KIND,)) as f:
        if new:
            stamp(f, RESULTS_KIND, progress=True)
        set_attrs(f.require_group(key), attrs)


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """A multi-seed results file written by :mod:`landscape.experiments`.

    Returns:
        ``{"experiment", "seeds", "metrics": {method: {metric: (n_seeds,)}}, "attrs"}``.
    """
    with open_file(path, (RESULTS_KIND,)) as f:
        attrs = {k: plain(v) for k, v in f.attrs.items()}
        stored = list(f["metrics"]) if "metrics" in f else []
        order = [m for m in (attrs.get("methods") or []) if m in stored]
        metrics = {m: {k: f["metrics"][m][k][()].astype(np.float64) for k in f["metrics"][m]}
                   for m in order + [m for m in stored if m not in order]}
    return {"experiment": attrs.get("experiment", Path(path).stem),
            "seeds": attrs.get("seeds"), "metrics": metrics, "attrs": attrs}


def trimmed_copy(src: str | os.PathLike, dst: str | os.PathLike,
                 drop: Sequence[str] = ("trajectories",)) -> Path:
    """Copy ``src`` to ``dst`` without the members named in ``drop`` (atomically).

    Args:
        src: The file.
        dst: The copy.
        drop: Paths of groups or datasets to leave out, ``fnmatch`` patterns
            (``"trajectories"``, ``"alignments/*/aligned"``).

    Returns:
        ``dst``.
    """
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")

    def copy(a: h5py.Group, b: h5py.Group) -> None:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        for name, item in a.items():
            path = item.name.lstrip("/")
            if any(fnmatch.fnmatchcase(path, d) for d in drop):
                continue
            if isinstance(item, h5py.Group):
                copy(item, b.create_group(name))
            else:
                a.copy(name, b)

    with open_file(src, KINDS) as f, _h5(tmp, "w") as g:
        copy(f, g)
    tmp.replace(dst)
    return dst


# --------------------------------------------------------------------------- save / load
def save(result: Any, path: str | os.PathLike, name: str | None = None) -> Path:
    """Store a result of the Python API in an analysis file (or an existing run file).

    Args:
        result: A :class:`~landscape.surface.Surface`, a
            :class:`~landscape.sharpness.MeasureResult` or a dict of them.
        path: The file; created as an analysis file if it does not exist.
        name: Surface name (default: its kind), or the solution name a measure is
            stored under (default: the result's ``solution``).

    Returns:
        ``path``.

    Raises:
        UserTypeError: For another kind of object.
        UserError: For a name that is empty or holds ``/`` (it would nest groups).
    """
    from landscape.sharpness import MeasureResult
    from landscape.store.measures import write_measure
    from landscape.store.surfaces import write_surface
    from landscape.surface import Surface

    items = list(result.values()) if isinstance(result, Mapping) else [result]
    for r in items:
        if not isinstance(r, (Surface, MeasureResult)):
            raise UserTypeError(f"cannot save a {type(r).__name__}; save a Surface or a "
                                "MeasureResult (or a dict of them)")
    if name is not None:
        check_name(name, "name")
    p = Path(path)
    create = not p.exists()
    with edit_file(p, create=create) as f:
        if create:
            stamp(f, ANALYSIS_KIND)
        for r in items:
            if isinstance(r, Surface):
                write_surface(f, name or str(r.attrs.get("kind", "surface")), r)
            else:
                if name is not None:
                    r = MeasureResult(r.measure, {**r.scalars, "solution": name},
                                      r.arrays, name)
                write_measure(f, r)
    return p


def load(path: str | os.PathLike, name: str) -> Any:
    """A stored surface (``name``) or measure (``"solution/measure"``).

    Returns:
        A :class:`~landscape.surface.Surface` or a
        :class:`~landscape.sharpness.MeasureResult`.

    Raises:
        UserError: If the file holds neither, or for a name that is empty or holds
            ``/`` other than the one between a solution and its measure.
    """
    from landscape.store.measures import read_measure
    from landscape.store.surfaces import read_surface, surface_names

    try:
        for part in name.split("/", 1):
            check_name(part)
    except (UserError, AttributeError):
        raise UserError(f"name {name!r} cannot name a stored result: use a surface name "
                        "or solution/measure (plain names without '/')") from None
    with open_file(path, KINDS) as f:
        surfaces = surface_names(f)
        if "/" in name:
            sol, meas = name.split("/", 1)
            r = read_measure(f, sol, meas)
            if r is not None:
                return r
    if name in surfaces:
        return read_surface(path, name)
    raise UserError(f"{path} has no surface {name!r} and no measure of that name; "
                    f"surfaces: {surfaces or 'none'}; measures are named solution/measure")


# --------------------------------------------------------------------------- describe
def _short(v: object, limit: int = 100) -> str:
    s = v.decode() if isinstance(v, bytes) else str(v)
    return s if len(s) <= limit else s[:limit] + "..."


def solutions_table(f: h5py.File) -> str:
    """Markdown table of the stored solutions' train/test metrics.

    Returns:
        The table.
    """
    if "solutions" not in f:
        return "(no solutions)"
    rows = ["| solution | train loss | train acc | test loss | test acc | source |",
            "|---|---|---|---|---|---|"]
    for name, g in f["solutions"].items():
        a = g.attrs
        rows.append(
            f"| {name} | {a.get('train_loss', np.nan):.4f} | {a.get('train_acc', np.nan):.4f}"
            f" | {a.get('test_loss', np.nan):.4f} | {a.get('test_acc', np.nan):.4f} | "
            f"{plain(a.get('source', ''))} |")
    return "\n".join(rows)


def file_title(path: str | os.PathLike) -> str:
    """``"<file stem>: <model> on <data>"`` of any landscape file, for figure titles.

    Returns:
        The title.
    """
    from landscape.store.run import run_title

    with open_file(path, KINDS) as f:
        return run_title(f)


def contents(path: str | os.PathLike) -> dict[str, Any]:
    """What figures a file supports: its kind, surfaces, measures, history, checkpoints.

    Returns:
        ``{"kind", "protocol": the protocol of a results file ("" for others),
        "surfaces": {name: dim}, "measures": [names], "units":
        {measure: units}, "history": bool (accuracy at two or more epochs),
        "checkpoints": bool, "curves": [names with both profiles], "swag": bool (an
        evaluation is stored), "fge": [names], "alignments": [names]}``.
    """
    from landscape.store.align import alignment_names
    from landscape.store.curves import curve_names
    from landscape.store.measures import measure_units, measured_solutions
    from landscape.store.posterior import fge_names
    from landscape.store.surfaces import surface_names

    with open_file(path, KINDS) as f:
        dims = {n: int(plain(f["surfaces"][n].attrs.get(
            "dim", 2 if "axes/y" in f["surfaces"][n] else 1))) for n in surface_names(f)}
        meas = sorted({m for s in measured_solutions(f) for m, o in f["measures"][s].items()
                       if isinstance(o, h5py.Group)})
        return {"kind": str(plain(f.attrs.get("kind", ""))),
                "protocol": str(plain(f.attrs.get("protocol", "")) or ""), "surfaces": dims,
                "measures": meas, "units": measure_units(f), "history": _has_curves_per_epoch(f),
                "checkpoints": "measures/checkpoints/test_acc" in f,
                "curves": [n for n in curve_names(f)
                           if f"{n}/profiles/curve" in f["curves"]
                           and f"{n}/profiles/line" in f["curves"]],
                "swag": "swag/evaluation" in f,
                "fge": [n for n in fge_names(f) if "history" in f["fge"][n]],
                "alignments": alignment_names(f)}


def _has_curves_per_epoch(f: h5py.File) -> bool:
    """Whether some run was evaluated at two or more epochs (``--eval-every 0`` keeps
    only the last, which draws no curve)."""
    return "history" in f and any(
        isinstance(g, h5py.Group) and "test_acc" in g
        and int(np.isfinite(g["test_acc"][()]).sum()) > 1 for g in f["history"].values())


def run_solutions_table(path: str | os.PathLike) -> str:
    """:func:`solutions_table` of the run file at ``path``.

    Returns:
        The table.
    """
    with open_file(path) as f:
        return solutions_table(f)


def _measure_line(name: str, g: h5py.Group) -> str:
    from landscape.sharpness import specs

    s = specs().get(name)
    keys = [h.key for h in s.headline] if s is not None else []
    keys += [k for k in ("rays", "r_max") if k in g.attrs]
    parts = [f"{k}={float(g.attrs[k]):.4g}" for k in keys if k in g.attrs]
    parts += [f"{k} {g[k].shape}" for k in g if isinstance(g[k], h5py.Dataset)]
    return ", ".join(parts)


def describe(path: str | os.PathLike, tree: bool = False) -> str:
    """A human-readable summary of any landscape file (run, results or analysis).

    Returns:
        The text.
    """
    from landscape.store.run import trajectory_runs

    kind = file_kind(path)
    lines = [f"{path}  ({kind})"]
    with open_file(path, KINDS) as f:
        for k in ("schema_version", "landscape_version", "created", "seed", "device",
                  "torch_version", "experiment", "protocol", "command", "seeds",
                  "seconds"):
            if k in f.attrs:
                lines.append(f"  {k}: {plain(f.attrs[k])}")
        if "config" in f.attrs:
            cfg = json.loads(f.attrs["config"])
            lines.append("  config: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())
                                                  if v is not None))
        if "model" in f:
            m = attrs_of(f["model"])
            lines.append(f"  model: {m.get('name')} ({m.get('n_params')} parameters), "
                         f"input {m.get('in_shape')}")
        if "data" in f:
            d = attrs_of(f["data"])
            lines.append(f"  data: {d.get('name')} (train {d.get('n_train')}, "
                         f"test {d.get('n_test')})")
        for run in trajectory_runs(f):
            g = f["trajectories"][run]
            lines.append(f"  trajectory {run}: weights {g['weights'].shape}, epochs "
                         f"{g['epoch'][0]:g}..{g['epoch'][-1]:g}")
        if "metrics" in f:
            lines.append("metrics (per seed):")
            for method, g in f["metrics"].items():
                cols = ", ".join(f"{k}={np.round(g[k][()], 4).tolist()}" for k in g)
                lines.append(f"  {method}: {cols}")
        if kind == RUN_KIND or (kind != RESULTS_KIND and "solutions" in f):
            lines += ["solutions:", solutions_table(f)]
        if "surfaces" in f:
            lines.append("surfaces:")
            for n, o in f["surfaces"].items():
                detail = ", ".join(f"{k}={_short(plain(v), 40)}" for k, v in o.attrs.items()
                                   if k in ("kind", "norm", "bn", "dim", "center",
                                            "complete"))
                lines.append(f"  {n} ({detail}) {o['train_loss'].shape}")
        if "measures" in f:
            lines.append("measures:")
            for n, o in f["measures"].items():
                lines.append(f"  {n}")
                if isinstance(o, h5py.Group) and "measure" not in o.attrs:
                    lines.extend(f"    {m}: {_measure_line(m, g)}" for m, g in o.items()
                                 if isinstance(g, h5py.Group))
        if "curves" in f:
            from landscape.store.curves import describe_curves

            lines.append("curves:")
            lines.extend(describe_curves(f))
        from landscape.store.posterior import describe_posterior

        lines.extend(describe_posterior(f))
        if "alignments" in f:
            from landscape.store.align import describe_alignments

            lines.append("alignments:")
            lines.extend(describe_alignments(f))
        if tree:
            lines.append("tree:")

            def visit(name: str, obj: h5py.HLObject) -> None:
                if isinstance(obj, h5py.Dataset):
                    lines.append(f"  /{name}  {obj.shape} {obj.dtype}")
                else:
                    lines.append(f"  /{name}/")
                for k, v in obj.attrs.items():
                    lines.append(f"      @{k} = {_short(v)}")

            f.visititems(visit)
    return "\n".join(lines)
