"""Surfaces in HDF5: ``/surfaces/<name>`` of a run file or a standalone results file.

Group layout: attrs ``kind``, ``dim``, ``norm``, ``bn``, ``center``, ``points``,
``x_label``, ``y_label``, ``train_samples``, ``test_samples``, ``seed``, ``l2``,
``config`` (JSON), ``complete``; datasets ``axes/x``, ``axes/y``,
``directions/d0``, ``directions/d1`` (and ``b0``), ``center``,
``center_buffers``, the metric grids of :data:`landscape.surface.METRICS` (NaN
= not yet computed), ``computed`` (bool), ``points/<name>`` and
``trajectory/{xy,epoch}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError
from landscape.store._h5 import KINDS, new_group, open_file, plain, set_attrs, write_array
from landscape.store.run import run_title
from landscape.surface import METRICS, Surface, SurfaceGrid


def _ds_name(point: str) -> str:
    return point.replace("/", ".")


def write_surface(f: h5py.File, name: str, s: Surface) -> None:
    """Write the whole surface ``/surfaces/<name>`` (replacing one of that name)."""
    grid = s.grid
    g = new_group(f, f"surfaces/{name}")
    attrs = {"norm": "", "center": "", "seed": 0, "l2": 0.0, "train_samples": 0,
             "test_samples": 0, **s.attrs}
    attrs |= {"dim": int(grid.dim), "points": list(grid.points), "x_label": grid.x_label,
              "y_label": grid.y_label, "complete": s.complete}
    set_attrs(g, attrs)
    a = g.create_group("axes")
    write_array(a, "x", grid.x.astype(np.float64))
    if grid.y is not None:
        write_array(a, "y", grid.y.astype(np.float64))
    d = g.create_group("directions")
    write_array(d, "d0", grid.d0.float())
    if grid.d1 is not None:
        write_array(d, "d1", grid.d1.float())
    if grid.b0 is not None:
        write_array(d, "b0", grid.b0.float())
    write_array(g, "center", grid.center.float())
    write_array(g, "center_buffers", grid.center_buffers.float())
    for m in METRICS:
        write_array(g, m, s.values[m])
    write_array(g, "computed", s.computed)
    p = g.create_group("points")
    for pname, xy in grid.points.items():
        ds = write_array(p, _ds_name(pname), np.asarray(xy, np.float64))
        ds.attrs["name"] = pname
    if grid.trajectory_xy is not None:
        t = g.create_group("trajectory")
        write_array(t, "xy", np.asarray(grid.trajectory_xy, np.float64))
        write_array(t, "epoch", np.asarray(grid.trajectory_epoch, np.float64))


def update_values(f: h5py.File, name: str, s: Surface) -> None:
    """Overwrite the metric grids, ``computed`` and ``complete`` of a stored surface."""
    g = f["surfaces"][name]
    for m in METRICS:
        g[m][...] = s.values[m]
    g["computed"][...] = s.computed
    g.attrs["complete"] = s.complete


def surface_progress(f: h5py.File, name: str
                     ) -> tuple[dict[str, Any] | None, tuple[int, ...], dict[str, np.ndarray]]:
    """The stored config, grid shape and metric grids of a surface (to resume it).

    Returns:
        ``(config or None, shape, {metric: grid, "computed": grid})``; ``None``
        config and empty dict if the surface does not exist.
    """
    g = f.get(f"surfaces/{name}")
    if g is None:
        return None, (), {}
    cfg = json.loads(g.attrs["config"]) if "config" in g.attrs else {}
    arrays = {m: g[m][()] for m in (*METRICS, "computed")}
    return cfg, tuple(g["train_loss"].shape), arrays


def surface_names(f: h5py.File) -> list[str]:
    """Names of the stored surfaces.

    Returns:
        The names.
    """
    return list(f["surfaces"]) if "surfaces" in f else []


def read_surface(path: str | os.PathLike, name: str) -> Surface:
    """A stored surface (directions and centre in the stored float32).

    Returns:
        The :class:`~landscape.surface.Surface`; ``attrs["title"]`` names the file.

    Raises:
        UserError: If there is no such surface.
    """
    with open_file(path, KINDS) as f:
        if name not in surface_names(f):
            have = surface_names(f)
            raise UserError(f"no surface {name!r} in {path}; choose one of "
                            f"{have or '(none: run `landscape surface` first)'}")
        g = f["surfaces"][name]
        attrs = {k: plain(v) for k, v in g.attrs.items()}
        stored = list(g["points"]) if "points" in g else []
        names = {g["points"][k].attrs.get("name", k): k for k in stored}
        order = [p for p in (attrs.get("points") or []) if p in names]
        order += [p for p in names if p not in order]
        points = {p: np.atleast_1d(g["points"][names[p]][()]).astype(np.float64)
                  for p in order}

        def vec(key: str) -> torch.Tensor:  # empty where a figure-only file has none
            return torch.from_numpy(g[key][()]).double() if key in g else torch.zeros(
                0, dtype=torch.float64)

        y = g["axes/y"][()].astype(np.float64) if "axes/y" in g else None
        c = vec("center")
        d0 = vec("directions/d0") if "directions/d0" in g else torch.zeros_like(c)
        d1 = (vec("directions/d1") if "directions/d1" in g else torch.zeros_like(c)
              ) if y is not None else None
        grid = SurfaceGrid(
            x=g["axes/x"][()].astype(np.float64), y=y,
            center=c, center_buffers=vec("center_buffers"), d0=d0, d1=d1,
            b0=vec("directions/b0") if "directions/b0" in g else None,
            points=points, x_label=str(attrs.get("x_label", "x")),
            y_label=str(attrs.get("y_label", "")),
            trajectory_xy=g["trajectory/xy"][()] if "trajectory/xy" in g else None,
            trajectory_epoch=g["trajectory/epoch"][()] if "trajectory/epoch" in g else None)
        values = {m: g[m][()].astype(np.float64) for m in METRICS if m in g}
        computed = g["computed"][()] if "computed" in g else np.isfinite(
            values["train_loss"])
        attrs["title"] = run_title(f)
    return Surface(grid, values, computed, attrs)
