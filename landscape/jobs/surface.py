r"""Surfaces of run files: named points, resumable, sharded over ranks.

:func:`compute_surface` resolves the points a :class:`SurfaceConfig` names
(solutions, ``epoch:N`` records) from the run file, builds the grid with the
pure builders of :mod:`landscape.surface`, and evaluates the missing points:

* Resumable: results are committed atomically (:func:`landscape.store.edit_run`)
  in batches whose interval adapts so that copying the file costs under ~5 % of
  compute; the same call run again computes only the missing points, and the
  final file equals an uninterrupted run's.
* Sharded: under ``torchrun`` (``WORLD_SIZE > 1``) the points are split over
  ``torch.distributed`` ranks (gloo on CPU, nccl on GPU); results are gathered
  to rank 0, which alone holds the writer lock and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape import _dist, store
from landscape._errors import UserError
from landscape.directions import as_normalization
from landscape.evaluate import BNMode, Evaluator, resolve_device
from landscape.jobs._run import load_run_model, resolve_l2
from landscape.models import has_batchnorm
from landscape.params import ParamLayout
from landscape.posterior.swag import swag_grid
from landscape.surface import (
    Round,
    Surface,
    SurfaceGrid,
    SurfaceKind,
    evaluate_points,
    line_grid,
    pca_grid,
    plane_grid,
    random_grid,
)


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
    l2: float | str | None = None  # None: "auto" for line/plane, 0 for random/pca
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict.

        Returns:
            The fields.
        """
        d = dataclasses.asdict(self)
        if d["points"] is not None:
            d["points"] = list(d["points"])
        return d

    def resolved(self, solutions: list[str], trajectories: list[str], has_bn: bool,
                 wd: float = 0.0, epochs: Mapping[str, list[int]] | None = None,
                 has_swag: bool = False) -> SurfaceConfig:
        """Fill the kind-dependent defaults from what the run file holds.

        Points default to what is stored: the centre is ``swa`` (else ``sgd``,
        ...), the line runs from ``sgd`` to ``swa`` (else to the other stored
        solution), the plane passes through ``sgd``, ``swa_last`` and ``swa``
        (else through the stored solutions and recorded epochs).  The train loss
        of line and plane surfaces includes the run's weight decay by default
        (``l2="auto"``: the SWA paper's figures plot CE + wd/2·‖θ‖²); random and
        PCA surfaces (Li et al.'s) plot the plain loss.

        Args:
            solutions: The run file's solution names.
            trajectories: Its runs with a recorded trajectory.
            has_bn: Whether the model has BatchNorm.
            wd: The run's weight decay (for ``l2="auto"``).
            epochs: The whole epochs each trajectory recorded (for the plane's
                default points; ``None``: none).
            has_swag: Whether the file holds SWAG moments (kind ``swag``).

        Returns:
            The config with every default filled in.

        Raises:
            UserError: For an unknown kind/normalization/BN mode, a bad dimension,
                or defaults the file cannot fill (one solution for a line, no
                trajectory for PCA).
        """
        try:
            kind = SurfaceKind(self.kind)
            as_normalization(self.norm)
            bn = BNMode(self.bn) if self.bn is not None else None
        except ValueError as e:
            raise UserError(f"{e}; check --kind, --norm and --bn") from None
        first = store.main_solution(solutions)
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
        l2 = self.l2
        if l2 is None:
            l2 = "auto" if kind in (SurfaceKind.LINE, SurfaceKind.PLANE) else 0.0
        rep["l2"] = resolve_l2(l2, wd)
        if kind is SurfaceKind.LINE:
            a = self.from_point or self.center
            b = self.to_point
            if b is None:
                try:
                    a, b = store.solution_pair(solutions, "a line", a)
                except UserError:
                    run, eps = next(iter((epochs or {}).items()), ("sgd", []))
                    to = f"{'' if run == 'swa' else run + '/'}epoch:{eps[0]}" if eps else None
                    raise UserError(
                        f"a line needs two points and the run file holds one solution "
                        f"{solutions}; pass --to POINT" + (f" (e.g. --to {to})" if to else "")
                        + f" or {store.SECOND_SOLUTION}") from None
            a = a or ("sgd" if "sgd" in solutions else first)
            rep |= {"from_point": a, "to_point": b, "center": a}
        elif kind is SurfaceKind.PLANE:
            pts = tuple(self.points or _plane_points(solutions, epochs or {}))
            if len(pts) != 3:
                raise UserError(f"--points needs three names, got {len(pts)}: {list(pts)}")
            rep |= {"points": pts, "center": pts[0]}
        elif kind is SurfaceKind.SWAG:
            if self.center not in (None, "swa"):
                raise UserError("a swag surface is centred at the SWAG mean (the SWA "
                                "solution); drop --center")
            rep["center"] = "swa"
        else:
            rep["center"] = self.center or first
        if kind is SurfaceKind.SWAG and not has_swag:
            raise UserError(f"a swag surface needs SWAG moments and this run holds none; "
                            f"{store.SWAG_HINT} (`landscape swag RUN.h5 --from-trajectory`)")
        if kind is SurfaceKind.PCA and not trajectories:
            merged = any(n not in store.TRAIN_SOLUTIONS for n in solutions)
            raise UserError(
                "a pca surface needs a recorded trajectory and this file holds none; " + (
                    "`landscape merge` copies no trajectory: use one of the merged runs' "
                    "files, or " if merged else "") + store.RECORD_HINT)
        if kind in (SurfaceKind.PLANE, SurfaceKind.PCA):
            c = rep.get("center", "")
            default = "sgd" if c.startswith("sgd") and "sgd" in trajectories else (
                "swa" if "swa" in trajectories else (trajectories[0] if trajectories
                                                     else "swa"))
            rep["trajectory"] = self.trajectory or default
        return dataclasses.replace(self, **rep)


def _plane_points(solutions: list[str], epochs: Mapping[str, list[int]]
                  ) -> tuple[str, str, str]:
    """The plane's default points: ``sgd, swa_last, swa`` where stored, else the stored
    solutions and then recorded epochs (the middle one, then the first; the last
    epoch is the run's final iterate, a stored solution).

    Returns:
        Three point names.

    Raises:
        UserError: If the file holds fewer than three points.
    """
    if {"sgd", "swa_last", "swa"} <= set(solutions):
        return ("sgd", "swa_last", "swa")
    pts = [n for n in ("sgd", "swa", "avg", "swa_last") if n in solutions]
    pts += sorted(n for n in solutions if n not in pts)
    for run, eps in epochs.items():
        inner = eps[:-1]
        prefix = "" if run == "swa" else f"{run}/"
        picks = [inner[len(inner) // 2], inner[0]] if inner else []
        pts += [f"{prefix}epoch:{e}" for e in dict.fromkeys(picks)]
    if len(pts) < 3:
        raise UserError(f"a plane needs three points and the run file holds only {pts}; "
                        f"pass --points A,B,C or {store.RECORD_HINT}")
    return (pts[0], pts[1], pts[2])


def default_name(cfg: SurfaceConfig) -> str:
    """A descriptive surface name such as ``random_swa`` or ``line_sgd_swa``.

    Returns:
        The name.
    """
    if cfg.kind == "line":
        return f"line_{cfg.from_point}_{cfg.to_point}".replace("/", "-").replace(":", "")
    if cfg.kind == "plane":
        return ("plane_" + "_".join(cfg.points or ())).replace("/", "-").replace(":", "")
    base = cfg.kind + ("1d" if cfg.dim == 1 else "")
    return f"{base}_{cfg.center}".replace("/", "-").replace(":", "")


def build_grid(f: Any, cfg: SurfaceConfig, layout: ParamLayout) -> SurfaceGrid:
    """The directions, centre and axes that a resolved config asks for.

    Deterministic: the same file and config give bit-identical grids (random
    directions come from a ``torch.Generator`` seeded with ``cfg.seed``; PCA
    uses a full SVD), so every rank and every resumed run rebuilds the same one.

    Args:
        f: The open run file.
        cfg: A resolved config.
        layout: The model's parameter layout.

    Returns:
        The :class:`~landscape.surface.SurfaceGrid`.

    Raises:
        UserError: For unknown points, degenerate lines/planes, or short trajectories.
    """
    kind = SurfaceKind(cfg.kind)
    assert cfg.center is not None, "call cfg.resolved(...) first"
    if kind is SurfaceKind.SWAG:
        m = store.read_swag(f)
        layout.check_vector(m.mean, "the SWAG mean")
        _, cb = store.resolve_point(f, "swa")
        tr = store.trajectory_of(f, "swa") if "swa" in store.trajectory_runs(f) else None
        sols = {s: store.resolve_point(f, s)[0] for s in store.solution_names(f)
                if s != "swa"}
        return swag_grid(m, cb, dim=cfg.dim or 2, x=cfg.grid, y=cfg.grid_y, points=sols,
                         trajectory=None if tr is None else torch.from_numpy(tr["weights"]),
                         trajectory_epoch=None if tr is None else tr["epoch"])
    c, cb = store.resolve_point(f, cfg.center)
    layout.check_vector(c, f"point {cfg.center}")
    if kind is SurfaceKind.RANDOM:
        return random_grid(layout, c, cb, dim=cfg.dim or 2, norm=cfg.norm,
                           keep_bias_bn=cfg.keep_bias_bn, seed=cfg.seed, x=cfg.grid,
                           y=cfg.grid_y, center_name=cfg.center)
    if kind is SurfaceKind.LINE:
        b, bb = store.resolve_point(f, cfg.to_point)
        return line_grid(c, b, cb, bb, distance=cfg.distance, x=cfg.grid,
                         names=(cfg.from_point, cfg.to_point))
    if kind is SurfaceKind.PLANE:
        pts = [store.resolve_point(f, p)[0] for p in cfg.points]
        tr = store.trajectory_of(f, cfg.trajectory) if cfg.trajectory in \
            store.trajectory_runs(f) else None
        return plane_grid(
            *pts, cb, names=tuple(cfg.points),
            trajectory=None if tr is None else torch.from_numpy(tr["weights"]),
            trajectory_epoch=None if tr is None else tr["epoch"], x=cfg.grid, y=cfg.grid_y)
    tr = store.trajectory_of(f, cfg.trajectory)
    w = torch.from_numpy(tr["weights"])
    layout.check_vector(w[0], f"trajectory of {cfg.trajectory}")
    sols = {s: store.resolve_point(f, s)[0] for s in store.solution_names(f)}
    return pca_grid(w, c, cb, dim=cfg.dim or 2, trajectory_epoch=tr["epoch"],
                    layout=layout, keep_bias_bn=cfg.keep_bias_bn, points=sols,
                    center_name=cfg.center, x=cfg.grid, y=cfg.grid_y)


# --------------------------------------------------------------------------- compute
def _prepare(path: Path, name: str, cfg: SurfaceConfig, grid: SurfaceGrid, ev: Evaluator,
             force: bool) -> Surface:
    """Rank 0: create or reopen the surface.

    Returns:
        The surface with the points already stored.

    Raises:
        UserError: If a surface of another config has this name and not ``force``.
    """
    want = json.loads(json.dumps(cfg.to_dict()))
    with store.open_run(path) as f:
        stored, shape, arrays = store.surface_progress(f, name)
    if stored is not None:
        same = stored == want and shape == grid.shape
        if not same and not force:
            raise UserError(f"surface {name!r} in {path} was computed with another "
                            "config; pass --force to overwrite it or choose --name")
        if same:
            return Surface(grid, {m: a for m, a in arrays.items() if m != "computed"},
                           arrays["computed"], {})
    attrs = {"kind": cfg.kind, "norm": cfg.norm, "bn": cfg.bn, "center": cfg.center,
             "train_samples": ev.num_samples("train"), "test_samples": ev.num_samples("test"),
             "seed": cfg.seed, "l2": float(cfg.l2), "config": cfg.to_dict()}
    s = Surface.empty(grid, attrs)
    with store.edit_run(path) as f:
        store.write_surface(f, name, s)
    return s


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
        compile: Evaluate through ``torch.compile``.
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
    cfg = cfg or SurfaceConfig()
    if name is not None:
        store.check_name(name)
    path = store.check_run_file(path)
    if name is not None and not force and _complete_as_asked(path, name, cfg):
        log(f"surface {name!r} is already complete for this config; nothing to do")
        return name
    model, data = load_run_model(path)
    rank, world, own_pg, device = _dist.setup(device)
    try:
        dev = resolve_device(device)
        with store.open_run(path) as f:
            cfg = cfg.resolved(store.solution_names(f), store.trajectory_runs(f),
                               has_batchnorm(model), float(store.config_of(f).get("wd", 0)),
                               store.recorded_epochs(f), store.has_swag(f))
            layout, _ = store.layouts(f)
            grid = build_grid(f, cfg, layout)
        name = name or default_name(cfg)
        d = data.subset(cfg.train_samples, cfg.test_samples, cfg.seed)
        ev = Evaluator(model, d.batches("train", batch_size), d.batches("test", batch_size),
                       bn=cfg.bn, device=dev, batch_size=batch_size, l2=cfg.l2,
                       compile=compile)
        with contextlib.ExitStack() as stack:
            msg: Any = None
            surf: Surface | None = None
            if rank == 0:
                try:
                    stack.enter_context(store.WriterLock(path))
                    surf = _prepare(path, name, cfg, grid, ev, force)
                    msg = ("ok", surf.missing())
                except UserError as e:
                    msg = ("error", str(e))
            msg = _dist.broadcast(msg, world)
            if msg[0] == "error":
                raise UserError(msg[1])
            missing = msg[1]
            if len(missing) == 0:
                if rank == 0:
                    log(f"surface {name!r} is already complete for this config; nothing to do")
                return name
            _run(path, name, grid, ev, surf, missing, rank, world, progress,
                 commit_interval, callback)
        return name
    finally:
        _dist.teardown(own_pg)


def _complete_as_asked(path: Path, name: str, cfg: SurfaceConfig) -> bool:
    """Whether ``path`` holds every point of surface ``name``, made with each option
    ``cfg`` sets: a finished surface resumes without resolving its points again (a
    run file whose trajectory was since dropped keeps its plane and PCA surfaces)."""
    with store.open_run(path) as f:
        stored, _, arrays = store.surface_progress(f, name)
    if stored is None or not arrays["computed"].all():
        return False
    asked = json.loads(json.dumps({k: v for k, v in cfg.to_dict().items() if v is not None}))
    return all(stored.get(k) == v for k, v in asked.items())


def _run(path: Path, name: str, grid: SurfaceGrid, ev: Evaluator, surf: Surface | None,
         missing: np.ndarray, rank: int, world: int, progress: bool,
         commit_interval: float, callback: Callable[[int], None] | None) -> None:
    """Evaluate ``missing`` points; rank 0 stores them and commits now and then."""
    state = {"last": time.perf_counter(), "cost": 0.0, "pending": False}

    def commit() -> None:
        assert surf is not None
        t0 = time.perf_counter()
        with store.edit_run(path) as f:
            store.update_values(f, name, surf)
        state["pending"] = False
        state["last"] = time.perf_counter()
        state["cost"] = state["last"] - t0

    def on_round(results: Round) -> None:
        assert surf is not None
        for k, vals in results:
            surf.set(k, vals)
        state["pending"] = True
        now = time.perf_counter()
        if now - state["last"] >= max(commit_interval, 20 * state["cost"]):
            commit()

    try:
        evaluate_points(ev, grid, missing, rank=rank, world=world,
                        on_round=on_round if rank == 0 else None, callback=callback,
                        progress=progress, desc=f"surface {name}")
    except BaseException:
        if rank == 0 and state["pending"]:
            with contextlib.suppress(Exception):  # keep what was computed before the error
                commit()
        raise
    if rank == 0 and state["pending"]:
        commit()
