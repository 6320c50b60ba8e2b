"""Curves between two solutions in HDF5: ``/curves/<name>`` of a run or analysis file.

Group layout (``docs/schema.md``): attrs ``curve``, ``bends``, ``config`` (JSON of
the resolved :class:`~landscape.config.ConnectConfig`), ``endpoints`` (JSON: file,
solution and SHA-256 of the weights of each end), ``params`` (JSON layout),
``epochs_done``, ``complete`` and the barriers ``<curve|line>_<metric>_barrier``;
datasets ``start``, ``end``, ``bends (K, n)``, ``knots``; ``train/`` (per-epoch
``epoch``, ``lr``, ``loss``, ``t_mean``, ``seconds``; the resume state
``momentum (K, n)``, ``generator`` and ``rng``); ``profiles/curve/`` and ``profiles/line/``
(``t`` and the metrics along it; attrs ``l2``, ``bn`` and the barriers).
The plane through the endpoints and the first bend (Garipov et al.'s Figure 1) is a
surface ``/surfaces/<name>_plane`` of the same file, with attr ``curve`` and the
curve projected onto it in ``curve/t`` and ``curve/xy``.

Each finished unit (an epoch of training, a profile) is one atomic edit of the
file, so a kill loses nothing finished.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError
from landscape.params import ParamLayout
from landscape.paths.curves import (
    BARRIER_METRICS,
    Curve,
    CurveProfile,
    CurveState,
    format_barriers,
)
from landscape.store._h5 import (
    ANALYSIS_KIND,
    KINDS,
    RESULTS_KIND,
    attrs_of,
    edit_file,
    member_attrs,
    member_names,
    new_group,
    open_file,
    plain,
    set_attrs,
    stamp,
    write_array,
)
from landscape.store.surfaces import surface_progress, update_values, write_surface
from landscape.surface import Surface

#: File kinds a curve can be stored in.
CURVE_KINDS = tuple(k for k in KINDS if k != RESULTS_KIND)


def curve_names(f: h5py.File) -> list[str]:
    """Names of the stored curves.

    Returns:
        The names.
    """
    return member_names(f, "curves")


def curve_attrs(path: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The attributes of ``/curves/<name>`` (JSON decoded), or ``None`` if absent.

    Returns:
        The attributes.
    """
    if not os.path.exists(path):
        return None
    with open_file(path, CURVE_KINDS) as f:
        return member_attrs(f, "curves", name)


def init_curve(path: str | os.PathLike, name: str, curve: Curve, layout: ParamLayout,
               attrs: Mapping[str, Any]) -> None:
    """Create ``/curves/<name>`` with its initial bends (the file too, if missing).

    Args:
        path: Output file (created as an analysis file if it does not exist).
        name: Curve name.
        curve: The initial curve.
        layout: Names and shapes of the flat vectors.
        attrs: ``config``, ``endpoints`` and anything else to keep.
    """
    create = not os.path.exists(path)
    with edit_file(path, create=create, kinds=CURVE_KINDS) as f:
        if create:
            stamp(f, ANALYSIS_KIND)
        g = new_group(f, f"curves/{name}")
        set_attrs(g, {**attrs, "curve": curve.kind.value, "bends": curve.num_bends,
                      "params": layout.to_json(), "epochs_done": 0, "complete": False})
        write_array(g, "start", curve.start.float())
        write_array(g, "end", curve.end.float())
        write_array(g, "bends", curve.bends.float())
        write_array(g, "knots", curve.knots)


def write_curve_state(path: str | os.PathLike, name: str, state: CurveState) -> None:
    """Store one finished epoch: the bends, the history and the resume state."""
    with edit_file(path, kinds=CURVE_KINDS) as f:
        g = f["curves"][name]
        write_array(g, "bends", state.curve.bends.float())
        t = new_group(g, "train")
        for k, v in state.history.items():
            write_array(t, k, np.asarray(v, dtype=np.float64))
        if state.momentum is not None:
            write_array(t, "momentum", state.momentum.float())
        for key in ("generator", "rng"):
            v = getattr(state, key)
            if v is not None:
                write_array(t, key, v.numpy().astype(np.uint8))
        g.attrs["epochs_done"] = int(state.epoch)


def read_curve(path: str | os.PathLike, name: str) -> tuple[Curve, CurveState]:
    """The stored curve and its training state (to resume or to use).

    Returns:
        ``(curve, state)``; the state's ``epoch`` is the completed epochs.

    Raises:
        UserError: If there is no such curve.
    """
    with open_file(path, CURVE_KINDS) as f:
        if name not in curve_names(f):
            raise UserError(f"no curve {name!r} in {path}; stored curves: "
                            f"{curve_names(f) or 'none (run `landscape connect`)'}")
        g = f["curves"][name]
        curve = Curve(str(plain(g.attrs["curve"])), torch.from_numpy(g["start"][()]),
                      torch.from_numpy(g["end"][()]), torch.from_numpy(g["bends"][()]))
        t = g.get("train")
        history: dict[str, list[float]] = {}
        extra: dict[str, torch.Tensor] = {}
        for k in t if t is not None else ():
            if k == "momentum":
                extra[k] = torch.from_numpy(t[k][()])
            elif k in ("generator", "rng"):
                extra[k] = torch.from_numpy(t[k][()].astype(np.uint8))
            else:
                history[k] = t[k][()].tolist()
        epoch = int(g.attrs.get("epochs_done", 0))
    return curve, CurveState(curve, epoch, history=history, **extra)


def write_profile(path: str | os.PathLike, name: str, which: str,
                  profile: CurveProfile, *, complete: bool = False) -> None:
    """Store the profile along the curve (``which = "curve"``) or the line.

    The barriers go into the profile's attrs and, as ``<which>_<metric>_barrier``,
    into the curve group's attrs (``landscape info`` shows them).
    """
    with edit_file(path, kinds=CURVE_KINDS) as f:
        g = f["curves"][name]
        profile_group(g, which, profile)
        if complete:
            g.attrs["complete"] = True


def profile_group(g: h5py.Group, which: str, profile: CurveProfile) -> None:
    """Write ``profile`` to ``g/profiles/<which>`` and its barriers into ``g``'s attrs."""
    p = new_group(g, f"profiles/{which}")
    write_array(p, "t", profile.t)
    for k, v in profile.metrics.items():
        write_array(p, k, v)
    set_attrs(p, {"l2": profile.l2, "bn": profile.bn})
    for k, v in profile.barriers.items():
        p.attrs[f"{k}_barrier"] = v
        g.attrs[f"{which}_{k}_barrier"] = v


def profile_of(g: h5py.Group, which: str) -> CurveProfile | None:
    """The profile ``g/profiles/<which>``, or ``None`` if absent.

    Returns:
        The profile.
    """
    p = g.get(f"profiles/{which}")
    if p is None:
        return None
    metrics = {k: p[k][()] for k in p if k != "t"}
    return CurveProfile(p["t"][()], metrics, float(p.attrs.get("l2", 0.0)),
                        str(plain(p.attrs.get("bn", "keep"))))


def read_profile(path: str | os.PathLike, name: str, which: str) -> CurveProfile | None:
    """A stored profile (``curve`` or ``line``), or ``None`` if not yet computed.

    Returns:
        The profile.
    """
    with open_file(path, CURVE_KINDS) as f:
        g = f.get(f"curves/{name}")
        return None if g is None else profile_of(g, which)


def describe_curves(f: h5py.File) -> list[str]:
    """Lines for ``landscape info``: each curve with its training and barriers.

    Returns:
        The lines (none without curves).
    """
    lines = []
    for name in curve_names(f):
        a = {k: plain(v) for k, v in attrs_of(f["curves"][name]).items()}
        ends = a.get("endpoints") or {}
        if isinstance(ends, str):
            ends = json.loads(ends)
        cfg = a.get("config") or {}
        which = " -> ".join(f"{e.get('file', '?')}:{e.get('solution', '?')}"
                            for e in (ends.get("a", {}), ends.get("b", {})))
        lines.append(f"  {name}: {a.get('curve')} with {a.get('bends')} bend(s), "
                     f"{a.get('epochs_done')}/{cfg.get('epochs', '?')} epochs, "
                     f"{'complete' if a.get('complete') else 'incomplete'}; {which}")
        lines += barrier_lines(a, ("curve", "line"))
    return lines


def barrier_lines(attrs: Mapping[str, Any], parts: Sequence[str]) -> list[str]:
    """``info``'s lines of the stored ``<part>_<metric>_barrier`` attributes, per part.

    Returns:
        One indented line per part that has a finite barrier.
    """
    lines = []
    for part in parts:
        vals = [(m, attrs.get(f"{part}_{m}_barrier")) for m in BARRIER_METRICS]
        vals = [(m, v) for m, v in vals if v is not None and not math.isnan(float(v))]
        if vals:
            lines.append(f"    {part} barrier: {format_barriers(vals)}")
    return lines


# --------------------------------------------------------------------------- the plane
def plane_surface_name(name: str) -> str:
    """The surface name of curve ``name``'s plane.

    Returns:
        ``<name>_plane``.
    """
    return f"{name}_plane"


def write_curve_plane(path: str | os.PathLike, name: str, surface: Surface,
                      t: np.ndarray, xy: np.ndarray) -> None:
    """Create (or replace) the plane of curve ``name`` with the curve projected onto it.

    Args:
        path: The file holding ``/curves/<name>``.
        name: The curve's name; the surface is :func:`plane_surface_name`.
        surface: The surface so far (see :func:`landscape.paths.curve_plane_grid`).
        t: ``(m,)`` curve parameters.
        xy: ``(m, 2)`` coordinates of the curve at ``t`` on the plane.
    """
    with edit_file(path, kinds=CURVE_KINDS) as f:
        sname = plane_surface_name(name)
        write_surface(f, sname, surface)
        g = f["surfaces"][sname]
        g.attrs["curve"] = name
        c = g.create_group("curve")
        write_array(c, "t", np.asarray(t, np.float64))
        write_array(c, "xy", np.asarray(xy, np.float64))


def update_curve_plane(path: str | os.PathLike, name: str, surface: Surface) -> None:
    """Store the values computed so far on curve ``name``'s plane."""
    with edit_file(path, kinds=CURVE_KINDS) as f:
        update_values(f, plane_surface_name(name), surface)


def curve_plane_progress(path: str | os.PathLike, name: str
                         ) -> tuple[dict[str, Any] | None, tuple[int, ...],
                                    dict[str, np.ndarray]]:
    """The stored config, shape and values of curve ``name``'s plane (to resume it).

    Returns:
        As :func:`landscape.store.surface_progress` (``None`` config if absent).
    """
    with open_file(path, CURVE_KINDS) as f:
        return surface_progress(f, plane_surface_name(name))


def read_curve_plane(path: str | os.PathLike, surface: str
                     ) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The curve drawn on a plane surface, or ``None`` if ``surface`` is no curve's plane.

    Returns:
        ``(curve name, t (m,), xy (m, 2))``.
    """
    with open_file(path, KINDS) as f:
        g = f.get(f"surfaces/{surface}")
        if g is None or "curve" not in g or "curve" not in g.attrs:
            return None
        return str(plain(g.attrs["curve"])), g["curve/t"][()], g["curve/xy"][()]
