r"""Loss surfaces: train and test metrics on 1D/2D grids over weight-space directions.

A surface is the set of points :math:`\theta(x, y) = c + x\,d_0 + y\,d_1` on a grid
of ``(x, y)``, each evaluated by the one :class:`~landscape.evaluate.Evaluator`
(train and test in one fused pass).  Results go to ``/surfaces/NAME`` of the run
file (schema in :func:`_create_group`), with NaN marking points not yet computed.

* Resumable: results are committed atomically (:func:`landscape.store.edit_run`)
  in batches whose interval adapts so that copying the file costs under ~5 % of
  compute; the same call run again computes only the missing points, and the
  final file equals an uninterrupted run's.
* Memory is flat in the grid size: only the centre and the directions are held;
  each point's weights are built when evaluated.
* Sharded: under ``torchrun`` (``WORLD_SIZE > 1``) the points are split over
  ``torch.distributed`` ranks (gloo on CPU, nccl on GPU); results are gathered
  to rank 0, which alone holds the writer lock and writes.

Example:
    >>> parse_grid("-1:1:5").tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from landscape import store
from landscape._errors import UserError
from landscape.directions import (
    Normalization,
    line_direction,
    pca_directions,
    plane_basis,
    project,
    random_direction,
    resolve_point,
    trajectory_of,
)
from landscape.evaluate import BNMode, Evaluator, resolve_device
from landscape.params import ParamLayout

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "train_loss_sem",
           "test_loss_sem")


class SurfaceKind(str, Enum):
    """Which directions span a surface."""

    RANDOM = "random"
    LINE = "line"
    PLANE = "plane"
    PCA = "pca"


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SurfaceConfig:
    """Every option that decides a surface's values (stored as its ``config`` attr).

    ``None`` fields take a default that depends on the kind and the run file;
    :meth:`resolved` fills them in.
    """

    kind: str = "random"
    dim: int | None = None  # random/pca: 2, line: 1, plane: 2
    center: str | None = None  # random/pca: swa (else sgd); line: from_point; plane: points[0]
    from_point: str | None = None  # line start (default sgd)
    to_point: str | None = None  # line end (default swa)
    points: tuple[str, ...] | None = None  # plane (default sgd, swa_last, swa)
    grid: str | None = None  # start:stop:num (default per kind)
    grid_y: str | None = None
    norm: str = "filter"
    keep_bias_bn: bool = False
    bn: str | None = None  # default recompute for BN models, keep otherwise
    distance: bool = False  # line: x is the L2 distance from from_point, not t
    trajectory: str | None = None  # run whose trajectory pca uses / plane overlays
    train_samples: int | None = None
    test_samples: int | None = None
    l2: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        d = dataclasses.asdict(self)
        if d["points"] is not None:
            d["points"] = list(d["points"])
        return d

    def resolved(self, f: h5py.File, has_bn: bool) -> SurfaceConfig:
        """Fill the kind-dependent defaults from the run file.

        Raises:
            UserError: For an unknown kind/normalization/BN mode or a bad dimension.
        """
        try:
            kind = SurfaceKind(self.kind)
            Normalization(self.norm)
            bn = BNMode(self.bn) if self.bn is not None else None
        except ValueError as e:
            raise UserError(f"{e}; check --kind, --norm and --bn") from None
        sols = store.solution_names(f)
        first = "swa" if "swa" in sols else (sols[0] if sols else "sgd")
        dim = self.dim or (1 if kind is SurfaceKind.LINE else 2)
        if dim not in (1, 2):
            raise UserError(f"--dim must be 1 or 2, got {dim}")
        if kind is SurfaceKind.LINE and dim != 1:
            raise UserError("a line surface is 1D; drop --dim or use --dim 1")
        if kind is SurfaceKind.PLANE and dim != 2:
            raise UserError("a plane surface is 2D; drop --dim or use --dim 2")
        if dim == 1 and self.grid_y is not None:
            raise UserError("--grid-y is for 2D surfaces; drop it or use --dim 2")
        rep: dict[str, Any] = {"kind": kind.value, "dim": dim,
                               "bn": (bn or (BNMode.RECOMPUTE if has_bn else BNMode.KEEP)).value}
        if kind is SurfaceKind.LINE:
            a = self.from_point or self.center or "sgd"
            rep |= {"from_point": a, "to_point": self.to_point or first, "center": a}
        elif kind is SurfaceKind.PLANE:
            pts = tuple(self.points or ("sgd", "swa_last", "swa"))
            if len(pts) != 3:
                raise UserError(f"--points needs three names, got {len(pts)}: {list(pts)}")
            rep |= {"points": pts, "center": pts[0]}
        else:
            rep["center"] = self.center or first
        if kind in (SurfaceKind.PLANE, SurfaceKind.PCA):
            c = rep.get("center", "")
            runs = list(f.get("trajectories", {}))
            default = "sgd" if c.startswith("sgd") and "sgd" in runs else (
                "swa" if "swa" in runs else (runs[0] if runs else "swa"))
            rep["trajectory"] = self.trajectory or default
        return dataclasses.replace(self, **rep)


def parse_grid(text: str) -> np.ndarray:
    """Grid values from ``start:stop:num`` (``num`` evenly spaced values, ends included).

    Returns:
        ``(num,)`` float64 values.

    Raises:
        UserError: For a malformed grid or one with no points.
    """
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise UserError(f"bad grid {text!r}; use start:stop:num, e.g. -1:1:21") from None
    if num < 1:
        raise UserError(f"grid {text!r} has {num} points; num must be at least 1")
    if not (np.isfinite(start) and np.isfinite(stop)):
        raise UserError(f"grid {text!r} has a non-finite end")
    return np.linspace(start, stop, num)


def _auto_grid(values: np.ndarray, num: int = 21) -> np.ndarray:
    lo, hi = float(np.min(values)), float(np.max(values))
    margin = 0.2 * (hi - lo) if hi > lo else 1.0
    return np.linspace(lo - margin, hi + margin, num)


def default_name(cfg: SurfaceConfig) -> str:
    """A descriptive surface name such as ``random_swa`` or ``line_sgd_swa``."""
    if cfg.kind == "line":
        return f"line_{cfg.from_point}_{cfg.to_point}".replace("/", "-").replace(":", "")
    if cfg.kind == "plane":
        return ("plane_" + "_".join(cfg.points or ())).replace("/", "-").replace(":", "")
    base = cfg.kind + ("1d" if cfg.dim == 1 else "")
    return f"{base}_{cfg.center}".replace("/", "-").replace(":", "")


# --------------------------------------------------------------------------- grid
@dataclass
class SurfaceGrid:
    r"""A grid of points :math:`c + x d_0 + y d_1` (float64 centre and directions).

    Attributes:
        x: ``(nx,)`` coordinates along ``d0``.
        y: ``(ny,)`` coordinates along ``d1`` (``None`` for 1D).
        center: ``(n_params,)`` centre weights.
        center_buffers: ``(n_buffers,)`` BN buffers used with ``bn=keep``.
        d0: ``(n_params,)`` first direction.
        d1: ``(n_params,)`` second direction (``None`` for 1D).
        b0: Optional ``(n_buffers,)`` buffer direction (a line interpolates the
            endpoints' BN statistics so that ``bn=keep`` is exact at both ends).
        points: Coordinates of named points, each ``(dim,)``.
        x_label: Axis label of ``x``.
        y_label: Axis label of ``y`` (empty for 1D).
        trajectory_xy: ``(n_rec, 2)`` projection of a trajectory (plane/pca).
        trajectory_epoch: ``(n_rec,)`` epochs of those records.
    """

    x: np.ndarray
    y: np.ndarray | None
    center: Tensor
    center_buffers: Tensor
    d0: Tensor
    d1: Tensor | None = None
    b0: Tensor | None = None
    points: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    x_label: str = "x"
    y_label: str = ""
    trajectory_xy: np.ndarray | None = None
    trajectory_epoch: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.center.numel()
        for nm, d in (("d0", self.d0), ("d1", self.d1)):
            if d is not None and (d.ndim != 1 or d.numel() != n):
                raise UserError(f"direction {nm} has shape {tuple(d.shape)} but the centre "
                                f"has {n} entries: it was made for another model")
        if (self.d1 is None) != (self.y is None):
            raise UserError("a 2D grid needs both d1 and y; a 1D grid neither")
        for nm, a in (("x", self.x), ("y", self.y)):
            if a is not None and len(a) == 0:
                raise UserError(f"the grid's {nm} axis has 0 points; give num >= 1")

    @property
    def dim(self) -> int:
        """1 or 2."""
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """``(nx,)`` or ``(nx, ny)``."""
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))

    @property
    def n_points(self) -> int:
        """Number of grid points."""
        return int(np.prod(self.shape))

    def coords(self, k: int) -> tuple[float, float]:
        """``(x, y)`` of the flat (C-order) point index ``k`` (``y = 0`` in 1D)."""
        if self.y is None:
            return float(self.x[k]), 0.0
        i, j = divmod(int(k), len(self.y))
        return float(self.x[i]), float(self.y[j])

    def weights(self, k: int) -> Tensor:
        """``(n_params,)`` float32 weights at point ``k``."""
        x, y = self.coords(k)
        w = self.center + x * self.d0
        if self.d1 is not None:
            w = w + y * self.d1
        return w.float()

    def buffers(self, k: int) -> Tensor:
        """``(n_buffers,)`` float32 BN buffers at point ``k`` (for ``bn=keep``)."""
        if self.b0 is None:
            return self.center_buffers.float()
        return (self.center_buffers + self.coords(k)[0] * self.b0).float()


def build_grid(f: h5py.File, cfg: SurfaceConfig, layout: ParamLayout) -> SurfaceGrid:
    """The directions, centre and axes that a resolved config asks for.

    Deterministic: the same file and config give bit-identical grids (random
    directions come from a ``torch.Generator`` seeded with ``cfg.seed``; PCA
    uses a full SVD), so every rank and every resumed run rebuilds the same one.

    Returns:
        The :class:`SurfaceGrid`.

    Raises:
        UserError: For unknown points, degenerate lines/planes, or short trajectories.
    """
    kind = SurfaceKind(cfg.kind)
    assert cfg.center is not None, "call cfg.resolved(f) first"
    c, cb = resolve_point(f, cfg.center)
    layout.check_vector(c, f"point {cfg.center}")
    c64, cb64 = c.double(), cb.double()
    gx = parse_grid(cfg.grid) if cfg.grid is not None else None
    gy = parse_grid(cfg.grid_y) if cfg.grid_y is not None else None
    two = cfg.dim == 2
    kw: dict[str, Any] = {}
    if kind is SurfaceKind.RANDOM:
        g = torch.Generator().manual_seed(cfg.seed)
        d0 = random_direction(layout, c, norm=cfg.norm, keep_bias_bn=cfg.keep_bias_bn,
                              generator=g)
        d1 = random_direction(layout, c, norm=cfg.norm, keep_bias_bn=cfg.keep_bias_bn,
                              generator=g) if two else None
        default = np.linspace(-1, 1, 21)
        x = gx if gx is not None else default
        y = (gy if gy is not None else x) if two else None
        kw = {"points": {cfg.center: np.zeros(cfg.dim)},
              "x_label": f"{cfg.norm}-normalized direction 1",
              "y_label": f"{cfg.norm}-normalized direction 2" if two else ""}
    elif kind is SurfaceKind.LINE:
        b, bb = resolve_point(f, cfg.to_point)
        d0, xb = line_direction(c, b, distance=cfg.distance)
        d1, y = None, None
        x = gx if gx is not None else np.linspace(-0.5 * xb, 1.5 * xb, 21)
        b0 = (bb.double() - cb64) / xb if cb.numel() else None
        kw = {"points": {cfg.from_point: np.zeros(1), cfg.to_point: np.array([xb])},
              "b0": b0, "x_label": f"L2 distance from {cfg.from_point}" if cfg.distance
              else f"t ({cfg.from_point} at 0, {cfg.to_point} at 1)"}
    elif kind is SurfaceKind.PLANE:
        pts = [resolve_point(f, p)[0] for p in cfg.points]
        d0, d1, xy = plane_basis(*pts)
        tr = trajectory_of(f, cfg.trajectory) if cfg.trajectory else None
        kw = {"points": {p: xy[i].numpy() for i, p in enumerate(cfg.points)},
              "x_label": f"u: L2 distance along {cfg.points[1]} − {cfg.points[0]}",
              "y_label": f"v: L2 distance, towards {cfg.points[2]} (⊥ u)"}
        allxy = xy.numpy()
        if tr is not None:
            txy = project(torch.from_numpy(tr["weights"]), c64, d0, d1).numpy()
            kw |= {"trajectory_xy": txy, "trajectory_epoch": tr["epoch"]}
        x = gx if gx is not None else _auto_grid(allxy[:, 0])
        y = gy if gy is not None else _auto_grid(allxy[:, 1])
    else:  # PCA
        tr = trajectory_of(f, cfg.trajectory)
        w = torch.from_numpy(tr["weights"])
        layout.check_vector(w[0], f"trajectory of {cfg.trajectory}")
        dirs, ev = pca_directions(w)
        d0, d1 = dirs[0], (dirs[1] if two else None)
        used = [d0] + ([d1] if two else [])
        txy = project(w, c64, *used).numpy()
        pts = {cfg.center: np.zeros(cfg.dim)}
        for s in store.solution_names(f):
            pts[s] = project(resolve_point(f, s)[0][None], c64, *used)[0].numpy()
        kw = {"points": pts, "x_label": f"PC1 ({100 * float(ev[0]):.1f}%)",
              "y_label": f"PC2 ({100 * float(ev[1]):.1f}%)" if two else "",
              "trajectory_xy": txy if two else np.c_[txy, np.zeros(len(txy))],
              "trajectory_epoch": tr["epoch"]}
        x = gx if gx is not None else _auto_grid(txy[:, 0])
        y = (gy if gy is not None else _auto_grid(txy[:, 1])) if two else None
    return SurfaceGrid(x=np.asarray(x, float), y=None if y is None else np.asarray(y, float),
                       center=c64, center_buffers=cb64, d0=d0, d1=d1, **kw)


def evaluate_grid(grid: SurfaceGrid, evaluator: Evaluator) -> dict[str, np.ndarray]:
    """Evaluate every point of a grid in memory (no file; one point's weights at a time).

    Returns:
        One ``grid.shape`` float64 array per name in :data:`METRICS`.
    """
    out = {m: np.full(grid.n_points, np.nan) for m in METRICS}
    for k in range(grid.n_points):
        for mname, v in zip(METRICS, _point_values(evaluator, grid, k), strict=True):
            out[mname][k] = v
    return {m: a.reshape(grid.shape) for m, a in out.items()}


def _point_values(ev: Evaluator, grid: SurfaceGrid, k: int) -> tuple[float, ...]:
    """The :data:`METRICS` values at point ``k``."""
    m = ev.evaluate(grid.weights(k), grid.buffers(k))
    tr, te = m["train"], m["test"]
    return tr.loss, tr.acc, te.loss, te.acc, tr.loss_sem, te.loss_sem


# --------------------------------------------------------------------------- storage
def _ds_name(point: str) -> str:
    return point.replace("/", ".")


def _create_group(f: h5py.File, name: str, grid: SurfaceGrid, cfg: SurfaceConfig,
                  train_n: int, test_n: int) -> None:
    """Write the empty surface ``/surfaces/NAME`` (metric grids all NaN)."""
    root = f.require_group("surfaces")
    if name in root:
        del root[name]
    g = root.create_group(name)
    store.set_attrs(g, {
        "kind": cfg.kind, "dim": int(grid.dim), "norm": cfg.norm, "bn": cfg.bn,
        "center": cfg.center, "points": list(grid.points), "x_label": grid.x_label,
        "y_label": grid.y_label, "train_samples": int(train_n), "test_samples": int(test_n),
        "seed": int(cfg.seed), "l2": float(cfg.l2), "config": cfg.to_dict(),
        "complete": False,
    })
    a = g.create_group("axes")
    store.write_array(a, "x", grid.x.astype(np.float64))
    if grid.y is not None:
        store.write_array(a, "y", grid.y.astype(np.float64))
    d = g.create_group("directions")
    store.write_array(d, "d0", grid.d0.float())
    if grid.d1 is not None:
        store.write_array(d, "d1", grid.d1.float())
    if grid.b0 is not None:
        store.write_array(d, "b0", grid.b0.float())
    store.write_array(g, "center", grid.center.float())
    store.write_array(g, "center_buffers", grid.center_buffers.float())
    for m in METRICS:
        store.write_array(g, m, np.full(grid.shape, np.nan))
    store.write_array(g, "computed", np.zeros(grid.shape, dtype=bool))
    p = g.create_group("points")
    for pname, xy in grid.points.items():
        ds = store.write_array(p, _ds_name(pname), np.asarray(xy, np.float64))
        ds.attrs["name"] = pname
    if grid.trajectory_xy is not None:
        t = g.create_group("trajectory")
        store.write_array(t, "xy", np.asarray(grid.trajectory_xy, np.float64))
        store.write_array(t, "epoch", np.asarray(grid.trajectory_epoch, np.float64))


def read_surface(path: str | os.PathLike, name: str) -> dict[str, Any]:
    """A stored surface as numpy arrays plus its attributes under ``"attrs"``.

    Returns:
        ``{"x", "y", "train_loss", ..., "points": {name: coords}, "attrs": {...}}``.

    Raises:
        UserError: If there is no such surface.
    """
    with store.open_run(path) as f:
        if "surfaces" not in f or name not in f["surfaces"]:
            have = list(f.get("surfaces", {}))
            raise UserError(f"no surface {name!r} in {path}; stored: {have or 'none'}")
        g = f["surfaces"][name]
        out: dict[str, Any] = {m: g[m][()] for m in (*METRICS, "computed", "center")}
        out["x"] = g["axes/x"][()]
        out["y"] = g["axes/y"][()] if "y" in g["axes"] else None
        out["d0"] = g["directions/d0"][()]
        out["d1"] = g["directions/d1"][()] if "d1" in g["directions"] else None
        out["points"] = {ds.attrs.get("name", k): ds[()] for k, ds in g["points"].items()}
        if "trajectory" in g:
            out["trajectory_xy"] = g["trajectory/xy"][()]
            out["trajectory_epoch"] = g["trajectory/epoch"][()]
        out["attrs"] = {k: store._plain(v) for k, v in g.attrs.items()}
    return out


# --------------------------------------------------------------------------- distributed
def _dist_setup(device: str) -> tuple[int, int, bool, str]:
    """``(rank, world, initialized_here, device)``; init only under torchrun."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False, device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False, device
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), True, device


def _broadcast(obj: Any, world: int) -> Any:
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------- compute
def _prepare(path: Path, name: str, cfg: SurfaceConfig, grid: SurfaceGrid, ev: Evaluator,
             force: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rank 0: create or reopen the surface; return the missing points and grids.

    Raises:
        UserError: If a surface of another config has this name and not ``force``.
    """
    want = json.loads(json.dumps(cfg.to_dict()))
    with store.open_run(path) as f:
        g = f.get(f"surfaces/{name}")
        if g is not None:
            same = store.json_attr(g, "config") == want and g["train_loss"].shape == grid.shape
            if not same and not force:
                raise UserError(f"surface {name!r} in {path} was computed with another "
                                "config; pass --force to overwrite it or choose --name")
            if same:
                arrays = {m: g[m][()] for m in (*METRICS, "computed")}
                return np.flatnonzero(~arrays["computed"].reshape(-1)), arrays
    with store.edit_run(path) as f:
        _create_group(f, name, grid, cfg, len(ev.y["train"]), len(ev.y["test"]))
    arrays = {m: np.full(grid.shape, np.nan) for m in METRICS}
    arrays["computed"] = np.zeros(grid.shape, dtype=bool)
    return np.arange(grid.n_points), arrays


def _commit(path: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    with store.edit_run(path) as f:
        g = f["surfaces"][name]
        for m, a in arrays.items():
            g[m][...] = a
        g.attrs["complete"] = bool(arrays["computed"].all())


def compute_surface(
    path: str | os.PathLike,
    cfg: SurfaceConfig | None = None,
    *,
    name: str | None = None,
    device: str = "cpu",
    batch_size: int = 4096,
    compile: bool = False,
    force: bool = False,
    progress: bool = False,
    commit_interval: float = 10.0,
    callback: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Compute (or resume) a surface of a run file and store it under ``/surfaces/NAME``.

    Under ``torchrun`` each rank calls this with the same arguments; the points
    are split over the ranks and only rank 0 writes.

    Args:
        path: Run file written by :func:`landscape.train.train`.
        cfg: The surface options (defaults: random 2D around ``swa``).
        name: Surface name (default from :func:`default_name`).
        device: ``cpu`` or ``cuda``.
        batch_size: Samples per forward pass.
        compile: Evaluate through ``torch.compile`` (see :class:`Evaluator`).
        force: Overwrite a surface of another config with the same name.
        progress: Show a tqdm bar over points (rank 0, stderr).
        commit_interval: Minimum seconds between commits (also at least 20× the
            last commit's duration); 0 commits after every round of points.
        callback: Called with the number of points this rank has evaluated
            after each one (tests use it to simulate a kill).
        log: Where one-line status messages go (rank 0).

    Returns:
        The surface's name.

    Raises:
        UserError: For bad options, unknown points, or a name clash without ``force``.
    """
    from landscape.train import load_run_model

    cfg = cfg or SurfaceConfig()
    path = Path(path)
    store.check_run_file(path)
    model, data = load_run_model(path)
    rank, world, own_pg, device = _dist_setup(device)
    try:
        dev = resolve_device(device)
        from landscape.models import has_batchnorm

        with store.open_run(path) as f:
            cfg = cfg.resolved(f, has_batchnorm(model))
            layout, _ = store.layouts(f)
            grid = build_grid(f, cfg, layout)
        name = name or default_name(cfg)
        ev = Evaluator(model, data, bn=cfg.bn, device=dev, batch_size=batch_size,
                       train_samples=cfg.train_samples, test_samples=cfg.test_samples,
                       l2=cfg.l2, seed=cfg.seed, compile=compile)
        with contextlib.ExitStack() as stack:
            msg: Any
            arrays: dict[str, np.ndarray] = {}
            if rank == 0:
                try:
                    stack.enter_context(store.WriterLock(path))
                    missing, arrays = _prepare(path, name, cfg, grid, ev, force)
                    msg = ("ok", missing)
                except UserError as e:
                    msg = ("error", str(e))
            else:
                msg = None
            msg = _broadcast(msg, world)
            if msg[0] == "error":
                raise UserError(msg[1])
            missing = msg[1]
            if len(missing) == 0:
                if rank == 0:
                    log(f"surface {name!r} is already complete for this config; nothing to do")
                return name
            _run_points(path, name, grid, ev, missing, arrays, rank, world, progress,
                        commit_interval, callback)
        return name
    finally:
        if own_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run_points(path: Path, name: str, grid: SurfaceGrid, ev: Evaluator, missing: np.ndarray,
                arrays: dict[str, np.ndarray], rank: int, world: int, progress: bool,
                commit_interval: float, callback: Callable[[int], None] | None) -> None:
    """Evaluate ``missing`` points in rounds; rank 0 gathers and commits."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(missing), desc=f"surface {name}", disable=not progress or rank != 0,
               dynamic_ncols=True, leave=False)
    pos, per_rank, done = 0, 1, 0
    last_commit, commit_cost, pending = time.perf_counter(), 0.0, False
    flat = {m: a.reshape(-1) for m, a in arrays.items()}  # views into arrays
    try:
        while pos < len(missing):
            chunk = missing[pos:pos + per_rank * world]
            pos += len(chunk)
            mine = chunk[rank::world]
            t0 = time.perf_counter()
            results, failure = [], None
            try:
                for k in mine:
                    k = int(k)
                    results.append((k, _point_values(ev, grid, k)))
                    done += 1
                    if callback is not None:
                        callback(done)
            except Exception as e:
                if world == 1:
                    raise
                failure = e  # tell the other ranks first, so that no rank waits forever
            elapsed = time.perf_counter() - t0
            gathered = _gather((results, elapsed, None if failure is None else
                                f"rank {rank}: {type(failure).__name__}: {failure}"), world)
            # every rank derives the same next round size from the slowest rank
            slowest = max(t for _, t, _ in gathered)
            per_point = slowest / max(len(mine), 1)
            per_rank = int(min(256, max(1, 1.0 / max(per_point, 1e-6))))
            if rank == 0:
                for res, _, _ in gathered:
                    for k, vals in res:
                        for mname, v in zip(METRICS, vals, strict=True):
                            flat[mname][k] = v
                        flat["computed"][k] = True
                        bar.update(1)
                pending = True
            errors = [e for _, _, e in gathered if e is not None]
            if failure is not None:
                raise failure
            if errors:  # rank 0 keeps every finished point (the finally below commits)
                raise RuntimeError(f"surface {name!r} stopped: {errors[0]}")
            if rank != 0:
                continue
            now = time.perf_counter()
            if pos >= len(missing) or now - last_commit >= max(commit_interval,
                                                               20 * commit_cost):
                _commit(path, name, arrays)
                pending = False
                last_commit = time.perf_counter()
                commit_cost = last_commit - now
    finally:
        bar.close()
        if rank == 0 and pending:
            with contextlib.suppress(Exception):  # keep what was computed before the error
                _commit(path, name, arrays)
