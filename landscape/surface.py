r"""Loss surfaces: train and test metrics on 1D/2D grids over weight-space directions.

A surface is the set of points :math:`\theta(x, y) = c + x\,d_0 + y\,d_1` on a
grid of ``(x, y)``, each evaluated by the one
:class:`~landscape.evaluate.Evaluator` (train and test in one pass).  The
grid builders turn points and directions into a :class:`SurfaceGrid`:

* :func:`random_grid` — filter/layer-normalized Gaussian directions (Li et
  al. 2018) around a centre;
* :func:`line_grid` — the line through two points, in ``t`` or in L2 distance;
* :func:`plane_grid` — the plane through three points (Garipov et al. 2018);
* :func:`pca_grid` — the top principal components of a trajectory;
* :func:`landscape.posterior.swag_grid` — the top principal directions of
  SWAG's deviations (kind ``swag``).

:func:`evaluate_points` evaluates any subset of a grid's points, in rounds
that are split over ``torch.distributed`` ranks under ``torchrun`` (only rank 0
receives the results), and :class:`Surface` holds the result.  The functions
:func:`random_surface`, :func:`line_surface`, :func:`plane_surface` and
:func:`pca_surface` do the whole thing for a user's model and data; the
resumable run-file version is :func:`landscape.jobs.surface.compute_surface`.
Memory is flat in the grid size: only the centre and the directions are
held, and each point's weights are built when it is evaluated.

Example:
    >>> parse_grid("-1:1:5").tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape import _dist
from landscape._errors import UserError, UserTypeError, arg, not_finite
from landscape.directions import (
    PCA_MIN_POINTS,
    Normalization,
    as_normalization,
    line_direction,
    pca_directions,
    plane_basis,
    project,
    random_direction,
)
from landscape.evaluate import Evaluator
from landscape.params import ParamLayout

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "train_loss_sem",
           "test_loss_sem")


class SurfaceKind(str, Enum):
    """Which directions span a surface."""

    RANDOM = "random"
    LINE = "line"
    PLANE = "plane"
    PCA = "pca"
    SWAG = "swag"


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


def auto_grid(values: np.ndarray, num: int = 21) -> np.ndarray:
    """``num`` values spanning ``values`` with a 20 % margin on each side.

    Returns:
        ``(num,)`` float64 values.
    """
    lo, hi = float(np.min(values)), float(np.max(values))
    margin = 0.2 * (hi - lo) if hi > lo else 1.0
    return np.linspace(lo - margin, hi + margin, num)


def _axis(values: np.ndarray | Sequence[float] | str | None, default: np.ndarray,
          name: str = "grid") -> np.ndarray:
    """One axis of a grid: ``default``, a ``start:stop:num`` string or values.

    Raises:
        UserError: Naming ``name`` (``grid`` or ``grid_y``) unless the values are a
            1-D sequence of finite numbers.
    """
    if values is None:
        return np.asarray(default, dtype=np.float64)
    if isinstance(values, str):
        return parse_grid(values)
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 1 or not np.isfinite(a).all():
        text = repr(values) if len(repr(values)) <= 60 else repr(values)[:57] + "..."
        got = (f"an array of shape {a.shape}" if a is not None and a.ndim > 1
               else f"{text} (not finite)" if a is not None and a.ndim == 1 else text)
        raise UserError(f"{arg(name)} must be a 'start:stop:num' string or a 1-D sequence "
                        f"of finite values, got {got}")
    return a


def _check_dim(dim: int, y: Any) -> None:
    """Raise a one-line error unless ``dim`` is 1 or 2, with a ``y`` axis only for 2."""
    if dim not in (1, 2):
        raise UserError(f"{arg('dim')} must be 1 or 2, got {dim}")
    if dim == 1 and y is not None:
        raise UserError(f"{arg('grid_y')} is for 2D surfaces; drop it or use {arg('dim', 2)}")


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
    points: dict[str, np.ndarray] = field(default_factory=dict)
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

    def to(self, device: torch.device | str) -> SurfaceGrid:
        """The same grid with its centre and directions on ``device``.

        Points are then built on the device, so a GPU evaluation copies no weights
        from the host per point.

        Returns:
            The grid (``self`` if already there).
        """
        device = torch.device(device)
        if self.center.device == device:
            return self
        mv = {k: getattr(self, k) for k in ("center", "center_buffers", "d0", "d1", "b0")}
        return dataclasses.replace(self, **{k: None if v is None else v.to(device)
                                            for k, v in mv.items()})

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


def random_grid(layout: ParamLayout, center: Tensor, center_buffers: Tensor | None = None,
                *, dim: int = 2, norm: Normalization | str = "filter",
                keep_bias_bn: bool = False, seed: int = 0,
                x: np.ndarray | Sequence[float] | str | None = None,
                y: np.ndarray | Sequence[float] | str | None = None,
                center_name: str = "center") -> SurfaceGrid:
    """Random normalized directions around ``center`` (Li et al. 2018).

    Directions come from a ``torch.Generator`` seeded with ``seed``, so the same
    arguments give bit-identical grids.

    Returns:
        The grid (default axes ``-1:1:21``; ``y`` defaults to ``x``).

    Raises:
        UserError: For a dimension other than 1 or 2, a ``y`` axis with ``dim=1`` or an
            unknown normalization.
    """
    _check_dim(dim, y)
    norm = as_normalization(norm)
    g = torch.Generator().manual_seed(seed)
    d0 = random_direction(layout, center, norm=norm, keep_bias_bn=keep_bias_bn, generator=g)
    d1 = random_direction(layout, center, norm=norm, keep_bias_bn=keep_bias_bn,
                          generator=g) if dim == 2 else None
    xs = _axis(x, np.linspace(-1, 1, 21))
    ys = _axis(y, xs, "grid_y") if dim == 2 else None
    return SurfaceGrid(
        x=xs, y=ys, center=center.double(), center_buffers=_buf(center_buffers),
        d0=d0, d1=d1, points={center_name: np.zeros(dim)},
        x_label=f"{norm.value}-normalized direction 1",
        y_label=f"{norm.value}-normalized direction 2" if dim == 2 else "")


def _check_finite(what: str, names: Sequence[str], points: Sequence[Tensor]) -> None:
    """Raise :func:`~landscape._errors.not_finite` (as a measure does) for a point
    holding NaN/inf, which would make every point of the grid NaN."""
    for name, w in zip(names, points, strict=False):
        if not bool(torch.isfinite(w).all()):
            raise not_finite(f"the {what} {name!r} is not finite",
                             before="evaluating a surface")


def line_grid(a: Tensor, b: Tensor, a_buffers: Tensor | None = None,
              b_buffers: Tensor | None = None, *, distance: bool = False,
              x: np.ndarray | Sequence[float] | str | None = None,
              names: tuple[str, str] = ("a", "b")) -> SurfaceGrid:
    r"""The line :math:`a + t (b - a)`, in ``t`` or (``distance``) in L2 distance from ``a``.

    BN buffers are interpolated along the line so ``bn=keep`` is exact at both ends.

    Returns:
        The 1D grid (default axis: 21 values from -0.5 to 1.5 of the segment).

    Raises:
        UserError: If an endpoint holds NaN/inf (every point of the line would be NaN).
    """
    _check_finite("line's endpoint", names, (a, b))
    d0, xb = line_direction(a, b, distance=distance)
    ab, bb = _buf(a_buffers), _buf(b_buffers)
    b0 = (bb - ab) / xb if ab.numel() and bb.numel() == ab.numel() else None
    return SurfaceGrid(
        x=_axis(x, np.linspace(-0.5 * xb, 1.5 * xb, 21)), y=None, center=a.double(),
        center_buffers=ab, d0=d0, b0=b0,
        points={names[0]: np.zeros(1), names[1]: np.array([xb])},
        x_label=f"L2 distance from {names[0]}" if distance
        else f"t ({names[0]} at 0, {names[1]} at 1)")


def plane_grid(p1: Tensor, p2: Tensor, p3: Tensor, p1_buffers: Tensor | None = None,
               *, names: tuple[str, str, str] = ("p1", "p2", "p3"),
               trajectory: Tensor | None = None, trajectory_epoch: np.ndarray | None = None,
               x: np.ndarray | Sequence[float] | str | None = None,
               y: np.ndarray | Sequence[float] | str | None = None) -> SurfaceGrid:
    """The plane through three points with an orthonormal basis (Garipov et al. 2018).

    Args:
        p1: Origin (``(n,)`` weights).
        p2: Second point; ``u`` points from ``p1`` to it.
        p3: Third point; ``v`` is its direction orthogonal to ``u``.
        p1_buffers: BN buffers at ``p1`` (for ``bn=keep``).
        names: Names of the three points.
        trajectory: ``(n_rec, n)`` weights to project onto the plane, if any.
        trajectory_epoch: Their epochs.
        x: ``u`` axis (default: around the points).
        y: ``v`` axis (default: around the points).

    Returns:
        The 2D grid.

    Raises:
        UserError: If a point holds NaN/inf (every point of the plane would be NaN).
    """
    _check_finite("plane's point", names, (p1, p2, p3))
    d0, d1, xy = plane_basis(p1, p2, p3)
    kw: dict[str, Any] = {}
    if trajectory is not None:
        kw = {"trajectory_xy": project(trajectory, p1.double(), d0, d1).numpy(),
              "trajectory_epoch": trajectory_epoch}
    allxy = xy.numpy()
    return SurfaceGrid(
        x=_axis(x, auto_grid(allxy[:, 0])), y=_axis(y, auto_grid(allxy[:, 1]), "grid_y"),
        center=p1.double(), center_buffers=_buf(p1_buffers), d0=d0, d1=d1,
        points={nm: allxy[i] for i, nm in enumerate(names)},
        x_label=f"u: L2 distance along {names[1]} − {names[0]}",
        y_label=f"v: L2 distance, towards {names[2]} (⊥ u)", **kw)


def pca_grid(trajectory: Tensor, center: Tensor, center_buffers: Tensor | None = None,
             *, dim: int = 2, trajectory_epoch: np.ndarray | None = None,
             layout: ParamLayout | None = None, keep_bias_bn: bool = True,
             points: Mapping[str, Tensor] | None = None, center_name: str = "center",
             x: np.ndarray | Sequence[float] | str | None = None,
             y: np.ndarray | Sequence[float] | str | None = None) -> SurfaceGrid:
    """The top principal directions of a trajectory (a centred PCA), around ``center``.

    With a ``layout`` and ``keep_bias_bn=False`` the bias and BN entries are left
    out of the fit, as for random directions (Li et al.'s ``ignore='biasbn'``).

    Returns:
        The grid, with the projected trajectory and the named ``points``.

    Raises:
        UserError: For a dimension other than 1 or 2, a ``y`` axis with ``dim=1``, or a
            short trajectory.
    """
    _check_dim(dim, y)
    dirs, ev = pca_directions(trajectory, layout=layout,
                              keep_bias_bn=keep_bias_bn or layout is None)
    share = "centred variance" if keep_bias_bn or layout is None else \
        "centred weight variance"
    d0, d1 = dirs[0], (dirs[1] if dim == 2 else None)
    used = [d0] + ([d1] if d1 is not None else [])
    c64 = center.double()
    txy = project(trajectory, c64, *used).numpy()
    pts = {center_name: np.zeros(dim)}
    for name, w in (points or {}).items():
        pts[name] = project(w[None], c64, *used)[0].numpy()
    return SurfaceGrid(
        x=_axis(x, auto_grid(txy[:, 0])),
        y=_axis(y, auto_grid(txy[:, 1]), "grid_y") if dim == 2 else None,
        center=c64, center_buffers=_buf(center_buffers), d0=d0, d1=d1, points=pts,
        x_label=f"PC1 ({100 * float(ev[0]):.1f}% of {share})",
        y_label=f"PC2 ({100 * float(ev[1]):.1f}% of {share})" if dim == 2 else "",
        trajectory_xy=txy if dim == 2 else np.c_[txy, np.zeros(len(txy))],
        trajectory_epoch=trajectory_epoch)


def _buf(b: Tensor | None) -> Tensor:
    return torch.zeros(0, dtype=torch.float64) if b is None else b.double()


# --------------------------------------------------------------------------- result
@dataclass
class Surface:
    """A surface: its grid, the metric values at each point and how it was made.

    Attributes:
        grid: Axes, centre, directions, named points, labels, trajectory.
        values: One ``grid.shape`` float64 array per name in :data:`METRICS`
            (NaN where not computed; accuracies NaN for regression).
        computed: ``grid.shape`` booleans.
        attrs: ``kind``, ``dim``, ``norm``, ``bn``, ``center``, ``l2``,
            ``train_samples``, ``test_samples``, ``seed``, ``config``, ...
    """

    grid: SurfaceGrid
    values: dict[str, np.ndarray]
    computed: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, grid: SurfaceGrid, attrs: Mapping[str, Any] | None = None) -> Surface:
        """A surface of ``grid`` with no point computed yet.

        Returns:
            The surface.
        """
        return cls(grid, {m: np.full(grid.shape, np.nan) for m in METRICS},
                   np.zeros(grid.shape, dtype=bool), dict(attrs or {}))

    @property
    def complete(self) -> bool:
        """Whether every point is computed."""
        return bool(self.computed.all())

    def missing(self) -> np.ndarray:
        """Flat indices of the points not yet computed.

        Returns:
            ``(m,)`` int array.
        """
        return np.flatnonzero(~self.computed.reshape(-1))

    def set(self, k: int, vals: Sequence[float]) -> None:
        """Store the :data:`METRICS` values of flat point ``k``."""
        for m, v in zip(METRICS, vals, strict=True):
            self.values[m].reshape(-1)[k] = v
        self.computed.reshape(-1)[k] = True


def point_values(ev: Evaluator, grid: SurfaceGrid, k: int) -> tuple[float, ...]:
    """The :data:`METRICS` values at flat point ``k`` of ``grid``.

    Returns:
        ``(train_loss, train_acc, test_loss, test_acc, train_loss_sem, test_loss_sem)``.
    """
    splits = tuple(s for s in ("train", "test") if s in ev.data)
    m = ev.evaluate(grid.weights(k), grid.buffers(k), splits=splits)
    nan = math.nan
    tr, te = m.get("train"), m.get("test")
    return (tr.loss if tr else nan, tr.acc if tr else nan, te.loss if te else nan,
            te.acc if te else nan, tr.loss_sem if tr else nan, te.loss_sem if te else nan)


Round = list[tuple[int, tuple[float, ...]]]


def evaluate_points(
    ev: Evaluator, grid: SurfaceGrid, indices: Sequence[int] | np.ndarray, *,
    rank: int = 0, world: int = 1, on_round: Callable[[Round], None] | None = None,
    callback: Callable[[int], None] | None = None, progress: bool = False,
    desc: str = "surface",
) -> Round:
    """Evaluate the points ``indices`` of ``grid``, split over ``world`` ranks.

    Points go in rounds sized so that each lasts about a second; each rank
    evaluates every ``world``-th point of a round and the results are gathered
    to rank 0.  A rank that fails tells the others at the next gather, so all
    stop with its error and rank 0 still gets the points finished before.

    Args:
        ev: The evaluation path.
        grid: The grid.
        indices: Flat point indices to evaluate (the same on every rank).
        rank: This rank.
        world: Number of ranks.
        on_round: Called on rank 0 with each round's ``(k, values)`` pairs, also
            when a rank failed (then with the points finished).
        callback: Called with the number of points this rank has evaluated
            after each one (tests use it to simulate a kill).
        progress: A tqdm bar over points (rank 0, stderr).
        desc: The bar's label.

    Returns:
        Every ``(k, values)`` pair gathered on rank 0 (empty on other ranks).

    Raises:
        RuntimeError: If another rank failed (its error in the message).
    """
    from tqdm.auto import tqdm

    indices = np.asarray(indices, dtype=np.int64)
    grid = grid.to(ev.device)
    bar = tqdm(total=len(indices), desc=desc, disable=not progress or rank != 0,
               dynamic_ncols=True, leave=False, file=sys.stderr)
    pos, per_rank, done = 0, 1, 0
    out: Round = []
    try:
        while pos < len(indices):
            chunk = indices[pos:pos + per_rank * world]
            pos += len(chunk)
            mine = chunk[rank::world]
            t0 = time.perf_counter()
            results: Round = []
            failure: Exception | None = None
            try:
                for k in mine:
                    results.append((int(k), point_values(ev, grid, int(k))))
                    done += 1
                    if callback is not None:
                        callback(done)
            except BaseException as e:  # Ctrl-C too: this round's points are not lost
                if world == 1:
                    if on_round is not None and results:
                        on_round(results)
                    raise
                if not isinstance(e, Exception):
                    raise
                failure = e  # tell the other ranks first, so that no rank waits forever
            elapsed = time.perf_counter() - t0
            gathered = _dist.gather((results, elapsed, None if failure is None else
                                     f"rank {rank}: {type(failure).__name__}: {failure}"),
                                    world)
            # every rank derives the same next round size from the slowest rank
            slowest = max(t for _, t, _ in gathered)
            per_point = slowest / max(len(mine), 1)
            per_rank = int(min(256, max(1, 1.0 / max(per_point, 1e-6))))
            if rank == 0:
                got = [r for res, _, _ in gathered for r in res]
                out += got
                bar.update(len(got))
                if on_round is not None and got:
                    on_round(got)
            errors = [e for _, _, e in gathered if e is not None]
            if failure is not None:
                raise failure
            if errors:
                raise RuntimeError(f"{desc} stopped: {errors[0]}")
    finally:
        bar.close()
    return out


class SurfaceInterrupted(KeyboardInterrupt):
    """Ctrl-C during a surface in Python: ``surface`` keeps the points computed so far.

    Its ``computed`` mask marks them (the others are NaN), so a long 2D surface
    stopped from a notebook can still be plotted or saved; the command line's
    ``landscape surface`` resumes instead.

    Attributes:
        surface: The partial :class:`Surface`.
    """

    def __init__(self, surface: Surface) -> None:
        done = int(surface.computed.sum())
        super().__init__(f"surface interrupted after {done} of {surface.computed.size} "
                         "points; the exception's .surface holds them")
        self.surface = surface


def evaluate_grid(grid: SurfaceGrid, evaluator: Evaluator, *, progress: bool = False,
                  attrs: Mapping[str, Any] | None = None) -> Surface:
    """Evaluate every point of a grid in memory (one point's weights at a time).

    Returns:
        The complete :class:`Surface`.

    Raises:
        SurfaceInterrupted: On Ctrl-C (a ``KeyboardInterrupt``), with the points
            computed so far.
    """
    s = Surface.empty(grid, attrs)

    def keep(done: Round) -> None:
        for k, vals in done:
            s.set(k, vals)

    try:
        evaluate_points(evaluator, grid, np.arange(grid.n_points), on_round=keep,
                        progress=progress)
    except KeyboardInterrupt:
        raise SurfaceInterrupted(s) from None
    return s


# --------------------------------------------------------------------------- user API
def as_point(layout: ParamLayout, buffers: ParamLayout, point: Any
             ) -> tuple[Tensor, Tensor | None]:
    """Flat weights (and BN buffers, if known) of a model, a state dict or a vector.

    Returns:
        ``(weights, buffers or None)``.

    Raises:
        UserTypeError: For another type.
    """
    if isinstance(point, nn.Module):
        return (layout.read(point, dtype=torch.float64),
                buffers.read(point, buffers=True, dtype=torch.float64))
    if isinstance(point, Mapping):
        w = layout.flatten(point)
        b = buffers.flatten(point) if buffers.numel and all(
            n in point for n in buffers.names) else None
        return w, b
    if isinstance(point, Tensor):
        layout.check_vector(point, "point")
        return point, None
    raise UserTypeError(f"a point must be a model, a state dict or a flat weight vector, "
                        f"got {type(point).__name__}")


#: The :class:`~landscape.evaluate.Evaluator` options the surface functions pass on.
EVALUATOR_OPTIONS = ("loss", "bn", "device", "batch_size", "l2", "keep_bytes")


def _evaluator(model: nn.Module, train: Any, test: Any, kw: Mapping[str, Any]) -> Evaluator:
    bad = sorted(set(kw) - set(EVALUATOR_OPTIONS))
    if bad:
        raise UserTypeError(f"unknown option(s) {bad}; the evaluator takes "
                            f"{list(EVALUATOR_OPTIONS)}")
    return Evaluator(model, train, test, **kw)


def _keeps_modes(surface: Callable[..., Surface]) -> Callable[..., Surface]:
    """``surface(model, ...)`` that gives each module of ``model`` back its own training
    flag (the evaluator puts the model in eval mode), whether it returns or raises."""

    @functools.wraps(surface)
    def kept(model: nn.Module, *args: Any, **kwargs: Any) -> Surface:
        modes = [(m, m.training) for m in model.modules()]
        try:
            return surface(model, *args, **kwargs)
        finally:
            for m, training in modes:
                m.train(training)

    return kept


def _attrs(kind: str, grid: SurfaceGrid, ev: Evaluator, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "dim": grid.dim, "bn": ev.bn.value, "l2": ev.l2,
            "train_samples": ev.num_samples("train") if "train" in ev.data else 0,
            "test_samples": ev.num_samples("test") if "test" in ev.data else 0,
            "x_label": grid.x_label, "y_label": grid.y_label,
            "points": list(grid.points), **extra}


def _finish(s: Surface, ev: Evaluator) -> Surface:
    for split in ("train", "test"):  # streams know their size after the first pass
        if split in ev.data:
            s.attrs[f"{split}_samples"] = ev.num_samples(split)
    return s


@_keeps_modes
def random_surface(model: nn.Module, train: Any, test: Any = None, *, dim: int = 2,
                   norm: str = "filter", keep_bias_bn: bool = False,
                   grid: Any = None, grid_y: Any = None, seed: int = 0,
                   progress: bool = False, **kw: Any) -> Surface:
    """Train (and test) metrics on random normalized directions around a model.

    Args:
        model: The network, at the centre weights (its parameters are changed
            during the evaluation and restored afterwards, and so is its
            train/eval mode).
        train: Train data (tensors or a ``DataLoader``).
        test: Test data, or ``None``.
        dim: 1 or 2.
        norm: ``filter`` (Li et al. 2018), ``layer`` or ``none``.
        keep_bias_bn: Keep bias and BN entries of the directions.
        grid: ``x`` axis (``"start:stop:num"`` or values; default ``-1:1:21``).
        grid_y: ``y`` axis (default: as ``x``).
        seed: Seed of the directions.
        progress: A tqdm bar on stderr.
        **kw: ``loss``, ``bn``, ``device``, ``batch_size``, ``l2``, ``keep_bytes``
            of the :class:`~landscape.evaluate.Evaluator` (a ``DataLoader`` is kept
            in memory after its first pass up to ``keep_bytes``, 512 MiB); the loss
            is the mean over samples (a ``reduction='sum'`` criterion is refused).

    Returns:
        The :class:`Surface`.
    """
    ev = _evaluator(model, train, test, kw)
    c, cb = ev.layout.read(model), ev.read_buffers()
    g = random_grid(ev.layout, c, cb, dim=dim, norm=norm, keep_bias_bn=keep_bias_bn,
                    seed=seed, x=grid, y=grid_y)
    with _restored(ev, c, cb):
        return _finish(evaluate_grid(g, ev, progress=progress, attrs=_attrs(
            "random", g, ev, norm=Normalization(norm).value, seed=seed, center="center")),
            ev)


@_keeps_modes
def line_surface(model: nn.Module, start: Any, end: Any, train: Any, test: Any = None, *,
                 distance: bool = False, grid: Any = None, names: tuple[str, str] = (
                     "start", "end"), progress: bool = False, **kw: Any) -> Surface:
    """Train (and test) metrics on the line between two points.

    Args:
        model: A network of the points' architecture (evaluated in place; its
            weights and train/eval mode are restored afterwards).
        start: The point at 0: a model, a state dict or a flat weight vector.
        end: The point at 1 (or at its distance with ``distance``).
        train: Train data.
        test: Test data, or ``None``.
        distance: Measure ``x`` in L2 distance from ``start`` instead of ``t``.
        grid: ``x`` axis (default: 21 values from -0.5 to 1.5 of the segment).
        names: Names of the two points.
        progress: A tqdm bar on stderr.
        **kw: As :func:`random_surface`.

    Returns:
        The :class:`Surface`.
    """
    ev = _evaluator(model, train, test, kw)
    (a, ab), (b, bb) = (as_point(ev.layout, ev.buffer_layout, p) for p in (start, end))
    g = line_grid(a, b, ab, bb, distance=distance, x=grid, names=names)
    c, cb = ev.layout.read(model), ev.read_buffers()
    with _restored(ev, c, cb):
        return _finish(evaluate_grid(g, ev, progress=progress, attrs=_attrs(
            "line", g, ev, center=names[0])), ev)


@_keeps_modes
def plane_surface(model: nn.Module, p1: Any, p2: Any, p3: Any, train: Any,
                  test: Any = None, *, grid: Any = None, grid_y: Any = None,
                  names: tuple[str, str, str] = ("p1", "p2", "p3"),
                  progress: bool = False, **kw: Any) -> Surface:
    """Train (and test) metrics on the plane through three points.

    Returns:
        The :class:`Surface` (see :func:`plane_grid` for the coordinates).
    """
    ev = _evaluator(model, train, test, kw)
    pts = [as_point(ev.layout, ev.buffer_layout, p) for p in (p1, p2, p3)]
    g = plane_grid(pts[0][0], pts[1][0], pts[2][0], pts[0][1], names=names, x=grid,
                   y=grid_y)
    c, cb = ev.layout.read(model), ev.read_buffers()
    with _restored(ev, c, cb):
        return _finish(evaluate_grid(g, ev, progress=progress, attrs=_attrs(
            "plane", g, ev, center=names[0])), ev)


@_keeps_modes
def pca_surface(model: nn.Module, trajectory: Sequence[Any], train: Any, test: Any = None,
                *, dim: int = 2, keep_bias_bn: bool = False, grid: Any = None,
                grid_y: Any = None, progress: bool = False, **kw: Any) -> Surface:
    """Train (and test) metrics on the top principal directions of a trajectory.

    Args:
        model: The network at the centre (e.g. the final weights).
        trajectory: At least 3 points (models, state dicts or flat vectors).
        train: Train data.
        test: Test data, or ``None``.
        dim: 1 or 2.
        keep_bias_bn: Fit the PCA on bias and BN entries too (default: weights only).
        grid: ``x`` axis (default: around the projected trajectory).
        grid_y: ``y`` axis.
        progress: A tqdm bar on stderr.
        **kw: As :func:`random_surface`.

    Returns:
        The :class:`Surface` with the projected trajectory.

    Raises:
        UserError: For fewer than 3 points (or one that is not a point of the model).
    """
    try:
        trajectory = list(trajectory)
    except TypeError:
        raise UserTypeError(f"trajectory must be a sequence of points (models, state dicts "
                            f"or flat weight vectors), got {type(trajectory).__name__}") from None
    if len(trajectory) < PCA_MIN_POINTS:
        raise UserError(f"PCA needs a trajectory of at least {PCA_MIN_POINTS} points (models, "
                        f"state dicts or flat weight vectors), got {len(trajectory)}")
    ev = _evaluator(model, train, test, kw)
    W = torch.stack([as_point(ev.layout, ev.buffer_layout, p)[0] for p in trajectory])
    c, cb = ev.layout.read(model), ev.read_buffers()
    g = pca_grid(W, c, cb, dim=dim, trajectory_epoch=np.arange(len(W), dtype=float),
                 layout=ev.layout, keep_bias_bn=keep_bias_bn, x=grid, y=grid_y)
    with _restored(ev, c, cb):
        return _finish(evaluate_grid(g, ev, progress=progress, attrs=_attrs(
            "pca", g, ev, center="center")), ev)


class _restored:
    """Put the model's own weights and buffers back after a surface is evaluated."""

    def __init__(self, ev: Evaluator, weights: Tensor, buffers: Tensor) -> None:
        self.ev, self.w, self.b = ev, weights, buffers

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.ev.layout.write(self.ev.model, self.w)
        if self.ev.buffer_layout.numel:
            self.ev.buffer_layout.write(self.ev.model, self.b, buffers=True)


__all__ = ["METRICS", "Surface", "SurfaceGrid", "SurfaceKind", "auto_grid", "evaluate_grid",
           "evaluate_points", "line_grid", "line_surface", "parse_grid", "pca_grid",
           "pca_surface", "plane_grid", "plane_surface", "point_values", "random_grid",
           "random_surface"]
