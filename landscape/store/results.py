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

import copy
import fnmatch
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from torch import nn

from landscape._errors import UserError, UserTypeError
from landscape.store._h5 import (
    ANALYSIS_KIND,
    KINDS,
    RESULTS_KIND,
    RUN_KIND,
    _h5,
    attrs_of,
    check_file,
    check_name,
    edit_file,
    file_kind,
    open_file,
    plain,
    set_attrs,
    stamp,
    to_attr,
    weights_sha256,
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

    Each result goes where and as the matching job of the CLI writes it, through
    the same writers, so the same plots and ``landscape info`` read it: a
    :class:`~landscape.surface.Surface` to ``/surfaces/<name>``, a
    :class:`~landscape.sharpness.MeasureResult` to ``/measures/<solution>/<measure>``,
    a :class:`~landscape.paths.Connection` (:func:`~landscape.connect`) to
    ``/curves/<name>`` (as ``landscape connect``), an
    :class:`~landscape.paths.align.AlignedPaths` (:func:`~landscape.align_paths`)
    to ``/alignments/<name>`` (as ``landscape align``), an
    :class:`~landscape.posterior.FGEResult` (:func:`~landscape.fge`) to
    ``/fge/<name>`` and a :class:`~landscape.posterior.SwagBMA`
    (:func:`~landscape.swag_bma`) to ``/swag/evaluation`` (as ``landscape fge``
    and ``landscape swag``).  What only the CLI knows (endpoint files, their
    SHA-256 where the result does not hold the weights) is recorded as
    ``docs/schema.md`` says.  :func:`load` reads each back.

    Args:
        result: One of the results above, or a dict of them.
        path: The file; created as an analysis file if it does not exist.
        name: Surface, curve, alignment or FGE name (default: the surface's kind,
            the curve's kind, ``<method>[_repair]``, ``fge``), or the solution
            name a measure is stored under (default: the result's ``solution``).
            A :class:`~landscape.posterior.SwagBMA` takes none (a file holds one
            SWAG evaluation).

    Returns:
        ``path``.

    Raises:
        UserTypeError: For another kind of object (naming those that save).
        UserError: For a name that is empty or holds ``/`` (it would nest groups),
            a name for a ``SwagBMA``, a curve or alignment into a results file, or
            an alignment without its model (:func:`load` without ``model=``).
    """
    from landscape.paths.align import AlignedPaths
    from landscape.paths.curves import Connection
    from landscape.posterior.fge import FGEResult
    from landscape.posterior.swag import SwagBMA
    from landscape.sharpness import MeasureResult
    from landscape.store.curves import CURVE_KINDS
    from landscape.store.measures import write_measure
    from landscape.store.posterior import write_swag_evaluation
    from landscape.store.surfaces import write_surface
    from landscape.surface import Surface

    items = list(result.values()) if isinstance(result, Mapping) else [result]
    for r in items:
        if not isinstance(r, (Surface, MeasureResult, Connection, AlignedPaths, FGEResult,
                              SwagBMA)):
            raise UserTypeError(
                f"cannot save a {type(r).__name__}; save a Surface, a MeasureResult, a "
                "Connection (ls.connect), an AlignedPaths (ls.align_paths), an FGEResult "
                "(ls.fge) or a SwagBMA (ls.swag_bma), or a dict of them")
        if isinstance(r, AlignedPaths) and r.alignment.model is None:
            raise UserError("cannot save alignment without its aligned model (ls.load "
                            "without model= gives none); load it with model= a module of "
                            "its architecture, then save it")
    if name is not None:
        check_name(name, "name")
        if any(isinstance(r, SwagBMA) for r in items):
            raise UserError(f"name {name!r} cannot name a SwagBMA: a file holds one SWAG "
                            "evaluation, at /swag/evaluation; save it without a name")
    p = Path(path)
    create = not p.exists()
    paths = [r for r in items if isinstance(r, (Connection, AlignedPaths))]
    if paths and not create:
        check_file(p, CURVE_KINDS)  # a results file holds no curves: say so first
    with edit_file(p, create=create) as f:
        if create:
            stamp(f, ANALYSIS_KIND)
        for r in items:
            if isinstance(r, Surface):
                write_surface(f, name or str(r.attrs.get("kind", "surface")), r)
            elif isinstance(r, MeasureResult):
                if name is not None:
                    r = MeasureResult(r.measure, {**r.scalars, "solution": name},
                                      r.arrays, name)
                write_measure(f, r)
            elif isinstance(r, FGEResult):
                _save_fge(f, name or "fge", r)
            elif isinstance(r, SwagBMA):
                write_swag_evaluation(f, r, {}, {})
    for r in paths:  # the CLI's path writers: one atomic edit per finished unit
        if isinstance(r, Connection):
            _save_connection(p, name or r.curve.kind.value, r)
        else:
            _save_alignment(p, name, r)
    return p


def _save_connection(path: Path, name: str, c: Any) -> None:
    """:func:`save` of a Connection, through ``landscape connect``'s writers."""
    from landscape.params import ParamKind, ParamLayout
    from landscape.paths.curves import CurveState
    from landscape.store.curves import init_curve, write_curve_state, write_profile

    curve = c.curve
    # the curve holds flat vectors only: its layout is one vector of n weights
    layout = ParamLayout(("weights",), ((int(curve.start.numel()),),), (ParamKind.WEIGHT,))
    epochs = len(next(iter(c.history.values()), []))
    ends = {k: {"file": "python", "solution": k, "sha256": weights_sha256(w)}
            for k, w in (("a", curve.start), ("b", curve.end))}
    config = {"curve": curve.kind.value, "bends": curve.num_bends, "epochs": epochs,
              "points": len(c.profile.t), "wd": float(c.profile.l2)}
    init_curve(path, name, curve, layout, {"config": config, "endpoints": ends})
    write_curve_state(path, name, CurveState(curve, epochs, history=dict(c.history)))
    write_profile(path, name, "curve", c.profile)
    write_profile(path, name, "line", c.line, complete=True)


def _save_alignment(path: Path, name: str | None, res: Any) -> None:
    """:func:`save` of an AlignedPaths, through ``landscape align``'s writers."""
    from landscape.params import ParamLayout
    from landscape.paths.align import PROFILES
    from landscape.store.align import write_alignment, write_alignment_profile

    al = res.alignment
    repair = "repair" in res.profiles
    name = name or f"{al.method.value}{'_repair' if repair else ''}"
    layout = ParamLayout.from_module(al.model)
    aligned = layout.read(al.model).cpu()
    buffers = ParamLayout.buffers_of(al.model).read(al.model, buffers=True).cpu()
    which = [w for w in PROFILES if w in res.profiles]
    t = res.profiles[which[0]].t if which else []
    ends = {k: {"file": "python", "solution": k} for k in ("a", "b")}
    write_alignment(path, name, {k: v.cpu() for k, v in al.perms.items()}, aligned, buffers,
                    layout, {"method": al.method.value,
                             "config": {"points": len(t), "repair": repair},
                             "endpoints": ends, "spec": al.spec.to_json(),
                             "sweeps": al.sweeps})
    for w in which:
        write_alignment_profile(path, name, w, res.profiles[w], complete=w == which[-1])


def _save_fge(f: h5py.File, name: str, r: Any) -> None:
    """:func:`save` of an FGEResult, through ``landscape fge``'s writers."""
    import torch

    from landscape.posterior.fge import FGEState
    from landscape.store.posterior import init_fge, write_fge_state

    snaps = r.snapshots.detach().cpu()
    k = int(snaps.shape[0])
    # the result holds no BN buffers, momentum or step: its state is the last snapshot
    # and the final ensemble's probabilities (as `landscape fge` keeps them; load reads them)
    state = FGEState(0, snaps[-1], torch.zeros(0), snapshots=snaps,
                     snapshot_buffers=torch.zeros(k, 0),
                     ensemble=r.probs.detach().cpu().double(), history=dict(r.history),
                     start=dict(r.start))
    init_fge(f, name, {"config": {"snapshots": k},
                       "start": {"file": "python", "solution": "start"}})
    write_fge_state(f, name, state, complete=True, final=r.ensemble)


#: ``load`` names of the result groups: ``<group>/<name>``, and the SWAG evaluation.
_RESULT_GROUPS = ("curves", "alignments", "fge")
_SWAG_NAMES = ("swag", "swag/evaluation")


def load(path: str | os.PathLike, name: str, *, model: nn.Module | None = None) -> Any:
    """A stored result, as :func:`save` (or the matching CLI command) stored it.

    Names: a surface ``NAME``; a measure ``"solution/measure"``; a curve
    ``"curves/NAME"`` (a :class:`~landscape.paths.Connection`, as
    ``landscape connect`` or :func:`save` wrote it); an alignment
    ``"alignments/NAME"`` (an :class:`~landscape.paths.align.AlignedPaths`); an FGE
    ensemble ``"fge/NAME"`` (an :class:`~landscape.posterior.FGEResult`); the SWAG
    evaluation ``"swag"`` or ``"swag/evaluation"`` (a
    :class:`~landscape.posterior.SwagBMA`).  Where a name could be two things, the
    stored measure comes first (a solution named ``curves`` with a measure ``x``
    hides curve ``x``), then a surface (a surface named ``swag`` hides the
    evaluation, which ``"swag/evaluation"`` still reads), then the result group.

    What a file does not keep comes back empty: a ``SwagBMA``'s ``probs``
    (``landscape swag`` does not store them either) and an ``FGEResult``'s
    ``probs`` in a file written before ``save`` kept them are ``(0, 0)`` tensors.
    An alignment's ``profiles`` include the stored ``curve`` profile when
    ``landscape align`` linked a curve between the same endpoints, as its result does.

    Args:
        path: A run, results or analysis file.
        name: What to read (above).
        model: For an alignment only: a module of the aligned networks'
            architecture.  The returned ``alignment.model`` is a deep copy of it
            holding the stored aligned weights and buffers; without it
            ``alignment.model`` is ``None`` (a file cannot rebuild the
            architecture), and such a result cannot be saved again.

    Returns:
        A :class:`~landscape.surface.Surface`, a
        :class:`~landscape.sharpness.MeasureResult`, a ``Connection``, an
        ``AlignedPaths``, an ``FGEResult`` or a ``SwagBMA``.

    Raises:
        UserError: If the file holds nothing of that name (the message lists what
            it holds), for a name that is empty or has more than one ``/``, for
            ``model`` with anything but an alignment, for a ``model`` of another
            architecture, or for a curve or FGE ensemble whose command has not
            finished.
        UserTypeError: If ``model`` is not an ``nn.Module``.
    """
    from landscape.store.align import alignment_names
    from landscape.store.curves import curve_names
    from landscape.store.measures import read_measure
    from landscape.store.posterior import fge_names
    from landscape.store.surfaces import read_surface, surface_names

    try:
        for part in name.split("/", 1):
            check_name(part)
    except (UserError, AttributeError):
        raise UserError(f"name {name!r} cannot name a stored result: use a surface name "
                        "or solution/measure (plain names without '/'), or curves/NAME, "
                        "alignments/NAME, fge/NAME or swag") from None
    if model is not None and not isinstance(model, nn.Module):
        raise UserTypeError(f"model must be an nn.Module of the aligned networks' "
                            f"architecture, got {type(model).__name__}")
    group, _, member = name.partition("/")
    with open_file(path, KINDS) as f:
        kind = None
        if member and isinstance(f.get(f"measures/{group}/{member}"), h5py.Group):
            kind = "measure"
        elif not member and name in surface_names(f):
            kind = "surface"
        elif name in _SWAG_NAMES and "swag/evaluation" in f:
            kind = "swag"
        elif group in _RESULT_GROUPS and member in {
                "curves": curve_names, "alignments": alignment_names,
                "fge": fge_names}[group](f):
            kind = group
        if kind is None:
            raise UserError(f"{path} holds no result {name!r}; it holds {_inventory(f)}")
        if model is not None and kind != "alignments":
            what = {"curves": "curve", "fge": "FGE ensemble",
                    "swag": "SWAG evaluation"}.get(kind, kind)
            raise UserError(f"model= rebuilds an alignment's aligned network, only an "
                            f"alignment takes it, and {name!r} is a {what}; drop model=")
        if kind == "measure":
            return read_measure(f, group, member)
        if kind == "swag":
            return _load_swag(f)
        if kind == "fge":
            return _load_fge(f, path, member)
    if kind == "surface":
        return read_surface(path, name)
    if kind == "curves":
        return _load_connection(path, member)
    return _load_alignment(path, member, model)


def _inventory(f: h5py.File) -> str:
    """What :func:`load` can read from ``f``, by kind, in ``load``'s names (one line)."""
    from landscape.store.align import alignment_names
    from landscape.store.curves import curve_names
    from landscape.store.measures import measured_solutions
    from landscape.store.posterior import fge_names
    from landscape.store.surfaces import surface_names

    def names(items: Sequence[str]) -> str:
        return ", ".join(items) if items else "none"

    measures = [f"{s}/{m}" for s in measured_solutions(f) for m, o in f["measures"][s].items()
                if isinstance(o, h5py.Group)]
    return "; ".join([
        f"surfaces: {names(surface_names(f))}", f"measures: {names(measures)}",
        f"curves: {names([f'curves/{n}' for n in curve_names(f)])}",
        f"alignments: {names([f'alignments/{n}' for n in alignment_names(f)])}",
        f"fge: {names([f'fge/{n}' for n in fge_names(f)])}",
        f"swag: {'swag' if 'swag/evaluation' in f else 'none'}"])


def _load_connection(path: str | os.PathLike, name: str) -> Any:
    """:func:`load` of ``/curves/<name>``, through ``landscape connect``'s readers."""
    from landscape.paths.curves import Connection
    from landscape.store.curves import read_curve, read_profile

    curve, state = read_curve(path, name)
    profile, line = (read_profile(path, name, w) for w in ("curve", "line"))
    if profile is None or line is None:
        raise UserError(f"curve {name!r} of {path} has no profile of the "
                        f"{'curve' if profile is None else 'line'} yet; rerun its "
                        "`landscape connect` to finish it")
    return Connection(curve, profile, line, state.history)


def _load_alignment(path: str | os.PathLike, name: str, model: nn.Module | None) -> Any:
    """:func:`load` of ``/alignments/<name>``, through ``landscape align``'s readers."""
    from landscape.params import ParamLayout
    from landscape.paths.align import AlignedPaths, Alignment, AlignMethod
    from landscape.paths.permutation import PermutationSpec
    from landscape.store.align import alignment_attrs, alignment_profiles, read_alignment

    attrs = alignment_attrs(path, name) or {}
    perms, aligned, buffers = read_alignment(path, name)
    spec = PermutationSpec.from_json(json.dumps(attrs["spec"]))
    net = None
    if model is not None:
        fix = (f"pass model= a module of the architecture of alignment {name!r} of "
               f"{path}, or none")
        ParamLayout.from_json(json.dumps(attrs["params"])).check_module(model, fix=fix)
        layout, buf = ParamLayout.from_module(model), ParamLayout.buffers_of(model)
        if buf.numel != buffers.numel():
            raise UserError(f"the stored buffers belong to another architecture "
                            f"({buffers.numel()} values, model= has {buf.numel}); {fix}")
        net = copy.deepcopy(model)
        layout.write(net, aligned)
        buf.write(net, buffers, buffers=True)
    al = Alignment(perms, net, spec, AlignMethod(attrs["method"]),
                   int(attrs.get("sweeps", 0)))
    return AlignedPaths(al, alignment_profiles(path, name))


def _load_fge(f: h5py.File, path: str | os.PathLike, name: str) -> Any:
    """:func:`load` of ``/fge/<name>``, through ``landscape fge``'s readers."""
    import torch

    from landscape.posterior.ensemble import PredictiveMetrics
    from landscape.posterior.fge import FGEResult
    from landscape.store.posterior import fge_attrs, read_fge_state

    state = read_fge_state(f, name)
    cal = f["fge"][name].get("calibration")
    if state is None or state.snapshots is None or cal is None:
        raise UserError(f"FGE ensemble {name!r} of {path} is not finished; rerun its "
                        "`landscape fge` to finish it")
    a = fge_attrs(f, name) or {}
    bins = {k: cal[k][()] for k in ("confidence", "accuracy", "count")}
    final = PredictiveMetrics(float(a["ensemble_acc"]), float(a["ensemble_nll"]),
                              float(a["ensemble_ece"]), int(bins["count"].sum()), **bins)
    probs = state.ensemble if state.ensemble is not None else torch.zeros(0, 0)
    return FGEResult(state.snapshots, {k: np.asarray(v) for k, v in state.history.items()},
                     state.start, final, probs)


def _load_swag(f: h5py.File) -> Any:
    """:func:`load` of ``/swag/evaluation``, through ``landscape swag``'s reader."""
    import torch

    from landscape.posterior.ensemble import PredictiveMetrics
    from landscape.posterior.swag import SwagBMA
    from landscape.store.posterior import read_swag_evaluation

    ev = read_swag_evaluation(f)
    assert ev is not None  # load checked /swag/evaluation
    a, c = ev["attrs"], ev["curves"]
    bins = ev["calibration"]["swag"]
    metrics = PredictiveMetrics(float(a["swag_acc"]), float(a["swag_nll"]),
                                float(a["swag_ece"]), int(bins["count"].sum()),
                                bins["confidence"], bins["accuracy"], bins["count"])
    # the evaluation's attrs less the per-method metrics write_swag_evaluation adds
    methods = a.get("methods") or ["swag"]
    flat = {f"{m}_{k}" for m in methods for k in ("acc", "nll", "ece")}
    attrs = {k: v for k, v in a.items() if k != "methods" and k not in flat}
    return SwagBMA(metrics, c["samples"], c["acc"], c["nll"], c["ece"], c["sample_acc"],
                   c["sample_nll"], torch.zeros(0, 0), attrs)


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
