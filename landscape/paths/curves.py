r"""Mode-connecting curves between two solutions (Garipov et al. 2018, arXiv 1802.10026).

Two trained solutions :math:`\hat w_1, \hat w_2` (flat weight vectors of one
:class:`~landscape.params.ParamLayout`, so weights keep their names) are joined
by a curve :math:`\phi_\theta(t)`, :math:`t \in [0, 1]`, with the endpoints
fixed and the bend(s) :math:`\theta` trained:

* **Bézier** (quadratic with one bend; with :math:`K` bends the Bernstein
  polynomial of degree :math:`K + 1` through them as control points):

  .. math::
      \phi_\theta(t) = (1-t)^2 \hat w_1 + 2t(1-t)\,\theta + t^2 \hat w_2 ;

* **polygonal chain** with :math:`K` bends at the knots :math:`t_i = i/(K+1)`:
  linear between consecutive points of
  :math:`(\hat w_1, \theta_1, \dots, \theta_K, \hat w_2)`.

Bends start on the segment (bend :math:`i` at :math:`\hat w_1 + t_i(\hat w_2 - \hat
w_1)`; the Bézier bend at the midpoint), where both curves *are* the line.
:func:`train_curve` minimises :math:`\mathbb E_{t \sim U[0,1]} L(\phi_\theta(t))`
by SGD on the bends only, one :math:`t` per minibatch, BatchNorm in train mode
(the batch statistics of :math:`\phi(t)`), as the authors do.  :func:`curve_profile`
evaluates a curve at equally spaced :math:`t` through the one evaluation path
(:class:`~landscape.evaluate.Evaluator`, BN statistics recomputed on train data
at each :math:`\phi(t)`), and the **barrier** of a profile is

.. math::
    B = \max_t e(\phi(t)) - \tfrac12 \bigl(e(\hat w_1) + e(\hat w_2)\bigr)

(Frankle et al. 2020), for the error and for the loss.  :func:`connect` does
all of it and also evaluates the straight line between the same endpoints.

Nothing here touches files: :mod:`landscape.store.curves` stores curves and
:func:`landscape.jobs.connect_runs` joins the two for run files.

Example:
    >>> a, b = torch.zeros(2), torch.tensor([2.0, 0.0])
    >>> c = Curve.on_segment("bezier", a, b).with_bends(torch.tensor([[1.0, 2.0]]))
    >>> c.point(0.5).tolist(), torch.equal(c.point(0.0), a)
    ([1.0, 1.0], True)
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape._errors import UserError, UserTypeError, check_int, not_finite
from landscape.config import ConnectConfig
from landscape.data import TensorBatches, as_batches
from landscape.directions import plane_basis, project
from landscape.evaluate import Evaluator, Loss, _forward, model_device, resolve_device
from landscape.params import ParamLayout
from landscape.schedules import swa_paper_factor
from landscape.surface import SurfaceGrid, plane_grid


class CurveKind(str, Enum):
    """Curve families (the values feed ``--curve``, TOML and HDF5 attributes)."""

    BEZIER = "bezier"
    POLYCHAIN = "polychain"


def _kind(kind: CurveKind | str) -> CurveKind:
    try:
        return CurveKind(kind)
    except ValueError:
        raise UserError(f"unknown curve {kind!r}; use bezier or polychain") from None


# =========================================================================== the curve
def _num_bends(bends: Any) -> int:
    """``bends`` as an int ``K >= 0``, else one line."""
    return check_int(bends, "the number of bends", 0)


def _weights(w: Any, what: str) -> Tensor:
    """``w`` checked to be a flat weight tensor, else one line naming the fix."""
    if not isinstance(w, Tensor):
        kind = ("a (K, n) tensor of flat weight vectors" if what == "bends"
                else "a flat weight vector (a 1-D tensor)")
        raise UserTypeError(f"the curve's {what} must be {kind}, got "
                            f"{type(w).__name__}; for a model pass "
                            "ParamLayout.from_module(model).read(model)")
    return w


def curve_coefficients(kind: CurveKind | str, bends: int, t: float) -> list[float]:
    r"""Weights of :math:`(\hat w_1, \theta_1, \dots, \theta_K, \hat w_2)` in :math:`\phi(t)`.

    They are exactly one-hot at :math:`t = 0`, :math:`t = 1` and (polygonal
    chain) at each knot, so the curve passes *exactly* through those points.

    Args:
        kind: ``bezier`` or ``polychain``.
        bends: :math:`K \ge 0` (``polychain`` with 0 bends is the line).
        t: Curve parameter in ``[0, 1]``.

    Returns:
        ``K + 2`` floats summing to 1.

    Raises:
        UserError: For ``t`` outside ``[0, 1]`` or an unknown kind.

    Example:
        >>> curve_coefficients("bezier", 1, 0.5)
        [0.25, 0.5, 0.25]
        >>> curve_coefficients("polychain", 3, 0.375)
        [0.0, 0.5, 0.5, 0.0, 0.0]
    """
    bends = _num_bends(bends)
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise UserError(f"a curve is defined for t in [0, 1], got t={t}")
    n = bends + 1  # number of segments / polynomial degree
    if _kind(kind) is CurveKind.BEZIER:
        return [math.comb(n, j) * t**j * (1.0 - t) ** (n - j) for j in range(n + 1)]
    knots = [i / n for i in range(n + 1)]
    i = min(int(np.searchsorted(knots, t, side="right")) - 1, n - 1)
    s = (t - knots[i]) / (knots[i + 1] - knots[i])
    out = [0.0] * (n + 1)
    out[i], out[i + 1] = 1.0 - s, s
    return out


def _combine(coef: Sequence[float], start: Tensor, bends: Tensor, end: Tensor) -> Tensor:
    """:math:`\\sum_j c_j w_j` (differentiable in ``bends``; exact for one-hot ``c``)."""
    out = coef[0] * start + coef[-1] * end
    for j in range(bends.shape[0]):
        out = out + coef[j + 1] * bends[j]
    return out


@dataclass(frozen=True, eq=False)
class Curve:
    """A curve between two fixed endpoints through ``K`` bends, over flat weight vectors.

    Attributes:
        kind: :class:`CurveKind`.
        start: ``(n,)`` weights at ``t = 0`` (:math:`\\hat w_1`).
        end: ``(n,)`` weights at ``t = 1`` (:math:`\\hat w_2`).
        bends: ``(K, n)`` the trainable points :math:`\\theta`.
    """

    kind: CurveKind
    start: Tensor
    end: Tensor
    bends: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind(self.kind))
        for what in ("start", "end", "bends"):
            _weights(getattr(self, what), what)
        if self.start.ndim != 1 or self.start.shape != self.end.shape:
            raise UserError(
                f"curve endpoints have shapes {tuple(self.start.shape)} and "
                f"{tuple(self.end.shape)}; pass two flat weight vectors of one model")
        if self.bends.ndim != 2 or self.bends.shape[1] != self.start.numel():
            raise UserError(f"bends must be (K, {self.start.numel()}), got "
                            f"{tuple(self.bends.shape)}")

    @classmethod
    def on_segment(cls, kind: CurveKind | str, start: Tensor, end: Tensor,
                   bends: int = 1) -> Curve:
        """The curve with its bends on the segment, bend ``i`` at ``t_i = i/(K+1)``.

        Both families are then the line :math:`\\hat w_1 + t(\\hat w_2 - \\hat w_1)`
        (a Bézier curve reproduces a line from control points equally spaced on it).

        Returns:
            The initial curve.

        Raises:
            UserError: For ``bends < 0`` or endpoints of different shapes.
            UserTypeError: For endpoints that are not tensors (e.g. models) or a
                number of bends that is not an int.
        """
        bends = _num_bends(bends)
        start, end = _weights(start, "start"), _weights(end, "end")
        if start.ndim != 1 or start.shape != end.shape:
            raise UserError(
                f"curve endpoints have shapes {tuple(start.shape)} and "
                f"{tuple(end.shape)}; pass two flat weight vectors of one model")
        d = end.double() - start.double()
        rows = [(start.double() + (i / (bends + 1)) * d).to(start.dtype)
                for i in range(1, bends + 1)]
        b = torch.stack(rows) if rows else start.new_zeros((0, start.numel()))
        return cls(_kind(kind), start, end, b)

    @classmethod
    def line(cls, start: Tensor, end: Tensor) -> Curve:
        """The segment from ``start`` to ``end`` (a polygonal chain without bends).

        Returns:
            The line as a curve.
        """
        return cls.on_segment(CurveKind.POLYCHAIN, start, end, 0)

    def with_bends(self, bends: Tensor) -> Curve:
        """The same curve through other bends.

        Returns:
            The new curve.
        """
        return replace(self, bends=bends)

    @property
    def num_bends(self) -> int:
        """:math:`K`."""
        return int(self.bends.shape[0])

    @property
    def knots(self) -> np.ndarray:
        """``(K + 2,)`` parameters ``i / (K + 1)`` of the endpoints and bends.

        A polygonal chain passes through bend ``i`` at ``knots[i]``.
        """
        return np.array([i / (self.num_bends + 1) for i in range(self.num_bends + 2)])

    def coefficients(self, t: float) -> list[float]:
        """See :func:`curve_coefficients`.

        Returns:
            ``K + 2`` weights.
        """
        return curve_coefficients(self.kind, self.num_bends, t)

    def point(self, t: float) -> Tensor:
        r""":math:`\phi_\theta(t)`, a ``(n,)`` vector (exactly an endpoint at 0 and 1).

        Returns:
            The weights on the curve.
        """
        return _combine(self.coefficients(t), self.start, self.bends, self.end)


# =========================================================================== training
@dataclass
class CurveState:
    """A curve in training: enough to continue exactly where it stopped.

    Attributes:
        curve: The curve with its current bends (CPU).
        epoch: Completed epochs.
        momentum: ``(K, n)`` SGD momentum buffer of the bends (``None`` before
            the first step or without momentum).
        generator: State of the generator of minibatch order and ``t``.
        rng: State of torch's global CPU generator (dropout) during training.
        history: Per completed epoch: ``epoch``, ``lr``, ``loss`` (mean
            minibatch objective), ``t_mean`` (mean sampled ``t``), ``seconds``.
    """

    curve: Curve
    epoch: int = 0
    momentum: Tensor | None = None
    generator: Tensor | None = None
    rng: Tensor | None = None
    history: dict[str, list[float]] = field(default_factory=dict)


def _progress(progress: bool, total: int, initial: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not progress,
                file=sys.stderr, leave=False, dynamic_ncols=True)


def train_curve(
    model: nn.Module, curve: Curve | CurveState, train: Any,
    config: ConnectConfig | None = None, *, wd: float | None = None,
    loss: Any = None, device: str | torch.device | None = None,
    on_epoch: Callable[[CurveState], None] | None = None, progress: bool = False,
) -> CurveState:
    r"""Train the bends of ``curve`` on :math:`\mathbb E_{t \sim U[0,1]} L(\phi_\theta(t))`.

    Each minibatch draws one :math:`t` and takes an SGD step on the bends only
    (momentum ``config.momentum``; learning rate ``config.lr`` times the
    ``config.schedule`` factor of the epoch); the objective of a
    minibatch is its mean loss at :math:`\phi(t)` plus
    :math:`\tfrac{wd}{2}\|\phi(t)\|^2` (weight decay on the point of the curve,
    as Garipov et al.'s code regularizes a curve).  The network runs in train
    mode, so BatchNorm normalises with the batch statistics at :math:`\phi(t)`.
    In-memory data are shuffled every epoch by a generator seeded with
    ``config.seed``; a ``DataLoader`` is iterated as it is.  Torch's global CPU
    generator (dropout) is seeded from ``config.seed`` too, inside a fork that
    leaves the caller's unchanged, and kept in the state, so a resumed run ends
    with the same bends (on a GPU, dropout draws from the device's generator,
    which is not kept: there a resumed run with dropout differs).

    Args:
        model: The network (copied; its parameters are not changed).
        curve: The initial curve (e.g. :meth:`Curve.on_segment`) or a
            :class:`CurveState` to continue.
        train: Train data: ``(inputs, targets)`` tensors or any iterable of batches.
        config: Epochs, lr, momentum, batch size, seed (``wd``, ``None``: 0).
        wd: Overrides ``config.wd``.
        loss: ``criterion(output, target)`` (default cross-entropy).
        device: Where to train (default: the model's device).
        on_epoch: Called with the state after every epoch (a checkpoint hook).
        progress: A tqdm bar over epochs.

    Returns:
        The final state (its ``curve`` holds the trained bends).

    Raises:
        UserError: For a curve without bends, a curve of another model, or a
            diverging objective.
    """
    if not isinstance(model, nn.Module):
        raise UserTypeError(f"train_curve's first argument must be the model (a torch.nn."
                            f"Module), got {type(model).__name__}; call train_curve(model, "
                            "curve, train)")
    if not isinstance(curve, (Curve, CurveState)):
        raise UserTypeError(f"train_curve's curve must be a Curve or a CurveState, got "
                            f"{type(curve).__name__}; call train_curve(model, curve, "
                            "train)")
    cfg = (config or ConnectConfig()).validate()
    if wd is not None:  # checked as the config checks its own wd
        cfg = cfg.replace(wd=wd)
    coef_wd = float(cfg.wd or 0.0)
    state = curve if isinstance(curve, CurveState) else CurveState(curve)
    c = state.curve
    if c.num_bends < 1:
        raise UserError("the curve has no bends to train; build it with "
                        "Curve.on_segment(kind, a, b, bends=K) and K >= 1")
    for what, w in (("start (endpoint a)", c.start), ("end (endpoint b)", c.end),
                    ("bends", c.bends)):
        check_finite(w, f"the curve's {what}")
    dev = model_device(model) if device is None else resolve_device(device)
    net = copy.deepcopy(model).to(dev).train()
    layout = ParamLayout.from_module(net)
    layout.check_vector(c.start, "the curve's start")
    crit = loss if isinstance(loss, Loss) else Loss(loss)
    dtype = next(net.parameters()).dtype
    start, end = c.start.to(dev, dtype), c.end.to(dev, dtype)
    bends = nn.Parameter(c.bends.detach().to(dev, dtype).clone())
    opt = torch.optim.SGD([bends], lr=cfg.lr, momentum=cfg.momentum)
    if state.momentum is not None:
        opt.state[bends]["momentum_buffer"] = state.momentum.to(dev, dtype).clone()
    gen = torch.Generator().manual_seed(cfg.seed)
    if state.generator is not None:
        gen.set_state(state.generator)
    data = as_batches(train, cfg.batch_size)
    history = {k: list(v) for k, v in state.history.items()}

    def batches() -> Any:
        if not isinstance(data, TensorBatches):
            yield from data
            return
        src = data.to(dev, dtype)
        perm = torch.randperm(src.num_samples, generator=gen).to(dev)
        for idx in perm.split(cfg.batch_size):
            yield src.x[idx], src.y[idx]

    epoch = state.epoch
    with _progress(progress, cfg.epochs, epoch, f"curve {c.kind.value}") as bar, \
            torch.random.fork_rng(devices=[]):
        if state.rng is not None:
            torch.set_rng_state(state.rng)
        else:
            torch.manual_seed(cfg.seed)
        while epoch < cfg.epochs:
            t0 = time.perf_counter()
            lr = cfg.lr * (swa_paper_factor(epoch, cfg.epochs, 0.01)
                           if cfg.schedule == "swa-paper" else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            total = torch.zeros((), dtype=torch.float64, device=dev)
            ts: list[float] = []
            for xb, yb in batches():
                xb, yb = xb.to(dev), yb.to(dev)
                if xb.is_floating_point():
                    xb = xb.to(dtype)
                t = float(torch.rand((), generator=gen, dtype=torch.float64))
                w = _combine(c.coefficients(t), start, bends, end)
                out = _forward(partial(torch.func.functional_call, net,
                                       layout.unflatten(w)), xb)
                obj = crit.mean(out, yb)
                if coef_wd:
                    obj = obj + 0.5 * coef_wd * w.pow(2).sum()
                opt.zero_grad(set_to_none=True)
                obj.backward()
                opt.step()
                total += obj.detach().double()
                ts.append(t)
            mean = float(total) / max(len(ts), 1)
            if not math.isfinite(mean):
                raise UserError(f"curve training diverged in epoch {epoch + 1} (mean "
                                f"objective {mean}); lower --lr (now {cfg.lr})")
            epoch += 1
            for k, v in (("epoch", epoch), ("lr", lr), ("loss", mean),
                         ("t_mean", float(np.mean(ts)) if ts else math.nan),
                         ("seconds", time.perf_counter() - t0)):
                history.setdefault(k, []).append(float(v))
            buf = opt.state[bends].get("momentum_buffer")
            state = CurveState(
                c.with_bends(bends.detach().cpu().clone()), epoch,
                None if buf is None else buf.detach().cpu().clone(), gen.get_state(),
                torch.get_rng_state(), {k: list(v) for k, v in history.items()})
            if on_epoch is not None:
                on_epoch(state)
            bar.update(1)
            bar.set_postfix(loss=f"{mean:.4f}")
    return state


# =========================================================================== evaluation
#: Metrics of a profile whose barrier is reported (``train_loss`` is L2-regularized).
BARRIER_METRICS = ("train_loss", "train_err", "test_loss", "test_err")


def format_barriers(bars: Mapping[str, float] | Sequence[tuple[str, float]]) -> str:
    """Barriers as one line: errors in percentage points, losses as they are.

    Example:
        >>> format_barriers({"train_loss": 0.0312, "test_err": 0.0525})
        'train_loss 0.0312, test_err 5.25 points'

    Returns:
        The line.
    """
    items = bars.items() if isinstance(bars, Mapping) else bars
    return ", ".join(f"{k} {100 * float(v):.3g} points" if k.endswith("_err")
                     else f"{k} {float(v):.4g}" for k, v in items)


def barrier(values: Sequence[float] | np.ndarray) -> float:
    r""":math:`\max_t e(t) - \tfrac12(e(0) + e(1))` of values sampled from ``t = 0`` to ``1``.

    Example:
        >>> barrier([0.1, 0.5, 0.3])
        0.3
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise UserError("a barrier needs the values at t = 0, ..., 1 (at least two)")
    return float(np.max(v) - 0.5 * (v[0] + v[-1]))


@dataclass(frozen=True, eq=False)
class CurveProfile:
    """Train/test metrics along a curve (or the line) at equally spaced ``t``.

    Attributes:
        t: ``(m,)`` curve parameters, ``t[0] = 0`` and ``t[-1] = 1``.
        metrics: ``(m,)`` arrays: ``train_loss`` (with the ``l2`` term),
            ``train_ce`` (without), ``train_err``, and ``test_loss``,
            ``test_err`` when the evaluator has test data (errors NaN for a
            regression loss).
        l2: The weight-decay coefficient in ``train_loss``.
        bn: The BatchNorm mode of the evaluation.
    """

    t: np.ndarray
    metrics: dict[str, np.ndarray]
    l2: float = 0.0
    bn: str = "keep"

    @property
    def barriers(self) -> dict[str, float]:
        """:func:`barrier` of each of :data:`BARRIER_METRICS` that was measured."""
        return {k: barrier(self.metrics[k]) for k in BARRIER_METRICS if k in self.metrics}


def profile_grid(points: int) -> np.ndarray:
    """``points`` equally spaced ``t`` from 0 to 1 (31 hits the knots of K = 1, 2, 4, 5).

    Returns:
        The ``(points,)`` grid.

    Raises:
        UserError: For fewer than 3 points.
    """
    if points < 3:
        raise UserError(f"a profile needs at least 3 values of t, got {points}")
    return np.linspace(0.0, 1.0, int(points))


def curve_profile(evaluator: Evaluator, curve: Curve,
                  t: int | Sequence[float] | np.ndarray = 31, *,
                  progress: bool = False) -> CurveProfile:
    r"""Evaluate :math:`\phi(t)` at each ``t`` through the evaluation path.

    Build the evaluator with ``bn="recompute"`` (the default for BN models) to
    recompute the BatchNorm statistics on train data at every :math:`\phi(t)`,
    and with ``l2=wd`` for the SWA paper's regularized train loss.

    Args:
        evaluator: The evaluation path.
        curve: The curve (:meth:`Curve.line` for the straight line).
        t: A number of equally spaced points from 0 to 1, or the values
            themselves (increasing, from 0 to 1, so that barriers compare with
            the endpoints).
        progress: A tqdm bar.

    Returns:
        The profile.

    Raises:
        UserError: For a grid that does not run from 0 to 1.
    """
    if not isinstance(evaluator, Evaluator):
        raise UserTypeError(f"curve_profile's first argument must be an Evaluator, got "
                            f"{type(evaluator).__name__}; call curve_profile(Evaluator("
                            "model, train, test), curve, t)")
    if not isinstance(curve, Curve):
        raise UserTypeError(f"curve_profile's curve must be a Curve, got "
                            f"{type(curve).__name__}; e.g. Curve.line(a, b) or a "
                            "connection's .curve")
    if isinstance(t, bool) or (np.ndim(t) == 0 and not isinstance(t, numbers.Integral)):
        raise UserTypeError(f"t must be a number of points (an int) or the values of t, "
                            f"got {t!r}; e.g. t=31")
    ts = (profile_grid(int(t)) if isinstance(t, numbers.Integral)
          else np.asarray(t, dtype=np.float64))
    if ts.ndim != 1 or ts.size < 2 or ts[0] != 0.0 or ts[-1] != 1.0 or np.any(
            np.diff(ts) <= 0):
        raise UserError("the t values of a profile must increase from 0 to 1 (both "
                        "included); pass a number of points instead")
    evaluator.layout.check_vector(curve.start, "the curve's start")
    rows: dict[str, list[float]] = {}
    what = "line" if curve.bends.shape[0] == 0 else curve.kind.value
    with _progress(progress, ts.size, 0, f"profile {what}") as bar:
        for ti in ts:
            m = evaluator.evaluate(curve.point(float(ti)), splits=tuple(evaluator.data))
            for split, v in m.items():
                rows.setdefault(f"{split}_loss", []).append(v.loss)
                rows.setdefault(f"{split}_err", []).append(v.err)
            if "train" in m:
                rows.setdefault("train_ce", []).append(m["train"].loss -
                                                       evaluator.penalty())
            bar.update(1)
    return CurveProfile(ts, {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()},
                        evaluator.l2, evaluator.bn.value)


# =========================================================================== the plane
#: Names of the three points of a curve's plane (:func:`curve_plane_grid`).
PLANE_POINTS = ("a", "b", "bend")


def curve_plane_coords(curve: Curve, grid: SurfaceGrid,
                       t: Sequence[float] | np.ndarray) -> np.ndarray:
    r"""Coordinates of :math:`\phi(t)` projected onto a plane grid, one ``t`` at a time.

    The points are built in float64 and projected onto the grid's orthonormal
    ``d0``, ``d1`` from its centre, the same arithmetic that places the grid's
    named points, so :math:`\phi(0)` is exactly ``(0, 0)`` and :math:`\phi(1)`
    exactly the point ``b`` of :func:`curve_plane_grid`.

    Args:
        curve: The curve.
        grid: A 2D grid over the same weights (e.g. :func:`curve_plane_grid`).
        t: Curve parameters in ``[0, 1]``.

    Returns:
        ``(len(t), 2)`` float64 coordinates.

    Raises:
        UserError: For a 1D grid.
    """
    if grid.d1 is None:
        raise UserError("the curve is projected onto a 2D (plane) grid; got a 1D one")
    start, end = curve.start.double(), curve.end.double()
    bends = curve.bends.double()
    rows = [project(_combine(curve.coefficients(float(ti)), start, bends, end)[None],
                    grid.center, grid.d0, grid.d1)[0] for ti in np.asarray(t).ravel()]
    return torch.stack(rows).numpy() if rows else np.zeros((0, 2))


def curve_plane_grid(curve: Curve, *, bend: int = 0, steps: int = 10,
                     margin: float = 0.3) -> SurfaceGrid:
    r"""The plane through both endpoints and a bend, as in Garipov et al.'s Figure 1.

    The basis is :func:`~landscape.surface.plane_grid`'s: the origin at
    :math:`\hat w_1` (point ``a``), ``u`` towards :math:`\hat w_2` (``b``, at
    ``(L, 0)``), ``v`` towards the bend (``bend``, at ``(u_\theta, V)``), both
    axes in L2 distance.  The axes step by ``L / steps`` and ``V / steps``,
    so ``a``, ``b`` and the line between them, and the bend, lie *on* grid
    nodes; they span the three points and the curve's projection with
    ``ceil(margin * steps)`` steps more on every side.

    Args:
        curve: A curve with at least one bend off the line (e.g. a trained one).
        bend: Which bend spans the plane (0: the first).
        steps: Grid steps from ``a`` to ``b`` (and from the line to the bend).
        margin: Extra steps on each side, as a fraction of ``steps``.

    Returns:
        The 2D grid, with the points ``a``, ``b`` and ``bend``.

    Raises:
        UserError: For a bend index out of range, ``steps < 1``, a negative
            margin, or a bend on the line (an untrained curve).

    Example:
        >>> a, b = torch.zeros(3), torch.tensor([2.0, 0.0, 0.0])
        >>> c = Curve.on_segment("bezier", a, b).with_bends(torch.tensor([[1.0, 1.0, 0.0]]))
        >>> g = curve_plane_grid(c, steps=2, margin=0.5)
        >>> g.x.tolist(), g.y.tolist()
        ([-1.0, 0.0, 1.0, 2.0, 3.0], [-0.5, 0.0, 0.5, 1.0, 1.5])
        >>> curve_plane_coords(c, g, [0.5]).tolist()
        [[1.0, 0.5]]
    """
    if not isinstance(curve, Curve):
        raise UserTypeError(f"curve_plane_grid takes a Curve, got {type(curve).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise UserTypeError(f"steps must be an int >= 1 (grid steps from a to b), got "
                            f"{steps!r}")
    if isinstance(bend, bool) or not isinstance(bend, numbers.Integral):
        raise UserTypeError(f"bend must be an int (the bend's index), got {bend!r}")
    if not 0 <= bend < curve.num_bends:
        raise UserError(f"bend {bend} does not exist: the curve has {curve.num_bends} "
                        f"bend(s), numbered from 0")
    if steps < 1 or not margin >= 0:
        raise UserError(f"a curve's plane needs steps >= 1 and margin >= 0, got steps="
                        f"{steps}, margin={margin}")
    theta = curve.bends[bend]
    try:
        plane_basis(curve.start, curve.end, theta)
    except UserError:
        raise UserError("the bend lies on the line between the endpoints (an untrained "
                        "curve), so it spans no plane; train the curve first") from None
    base = plane_grid(curve.start, curve.end, theta, names=PLANE_POINTS, x=[0.0],
                      y=[0.0])
    L, V = (float(v) for v in (base.points["b"][0], base.points["bend"][1]))
    xy = np.concatenate([np.stack(list(base.points.values())),
                         curve_plane_coords(curve, base, np.linspace(0, 1, 101))])
    r = math.ceil(margin * steps)

    def axis(lo: float, hi: float, unit: float) -> np.ndarray:
        i0 = math.floor(lo / unit * steps + 1e-9) - r
        i1 = math.ceil(hi / unit * steps - 1e-9) + r
        return unit * (np.arange(i0, i1 + 1) / steps)  # i = 0 and i = steps are exact

    return replace(base, x=axis(float(xy[:, 0].min()), float(xy[:, 0].max()), L),
                   y=axis(float(xy[:, 1].min()), float(xy[:, 1].max()), V))


# =========================================================================== all of it
@dataclass(frozen=True, eq=False)
class Connection:
    """A trained curve, its profile and the line's between the same endpoints.

    Attributes:
        curve: The trained curve.
        profile: Metrics along the curve.
        line: Metrics along the straight line.
        history: Per-epoch training history (see :class:`CurveState`).
    """

    curve: Curve
    profile: CurveProfile
    line: CurveProfile
    history: dict[str, list[float]]

    @property
    def barriers(self) -> dict[str, dict[str, float]]:
        """``{"curve": {metric: barrier}, "line": {...}}``."""
        return {"curve": self.profile.barriers, "line": self.line.barriers}


def as_vector(layout: ParamLayout, w: nn.Module | Mapping[str, Tensor] | Tensor,
              what: str) -> Tensor:
    """A model, a ``state_dict`` or a flat vector as this layout's flat vector, by name.

    Returns:
        The ``(n,)`` vector.

    Raises:
        UserError: If the weights belong to another architecture.
    """
    if isinstance(w, nn.Module):
        w = dict(w.named_parameters())
    if isinstance(w, Mapping):
        return layout.flatten(w)
    if isinstance(w, Tensor):
        layout.check_vector(w, what)
        return w.detach()
    raise UserError(f"{what} must be a model, a state_dict or a flat weight vector, got "
                    f"{type(w).__name__}")


def check_finite(w: Tensor, what: str) -> None:
    """Raise one line if the weights ``w`` hold NaN/inf (a diverged solution).

    Raises:
        UserError: Naming ``what`` and how many entries are not finite.
    """
    bad = int((~torch.isfinite(w.detach())).sum())
    if bad:
        raise not_finite(f"{what} has {bad} NaN/inf weight(s) of {w.numel()}",
                         "connecting")


def check_endpoints(a: Tensor, b: Tensor) -> None:
    """Raise unless ``a`` and ``b`` are two different finite weight vectors of one
    length.

    Raises:
        UserError: Naming the problem and the fix.
    """
    if a.shape != b.shape:
        raise UserError(f"the endpoints have {a.numel()} and {b.numel()} weights: they "
                        "are of different architectures; connect two solutions of the "
                        "same model")
    check_finite(a, "endpoint a")
    check_finite(b, "endpoint b")
    if torch.equal(a, b):
        raise UserError("both endpoints are the same weights, so there is nothing to "
                        "connect; pass two different solutions (e.g. --solution-a sgd "
                        "--solution-b swa, or two runs of different seeds)")


def connect(
    model: nn.Module, a: nn.Module | Mapping[str, Tensor] | Tensor,
    b: nn.Module | Mapping[str, Tensor] | Tensor, train: Any, test: Any = None,
    config: ConnectConfig | None = None, *, loss: Any = None,
    device: str | torch.device | None = None, progress: bool = False, **overrides: Any,
) -> Connection:
    r"""Train a curve between two solutions and evaluate it beside the line.

    Args:
        model: The network both solutions belong to (its weights are not used).
        a: :math:`\hat w_1`: a model, a ``state_dict`` or a flat vector.
        b: :math:`\hat w_2`, likewise.
        train: Train data (tensors or a ``DataLoader``): curve training, the
            BN statistics at each :math:`\phi(t)` and the train metrics.
        test: Test data for the test metrics (optional).
        config: :class:`~landscape.config.ConnectConfig` (curve, bends, epochs,
            lr, ...); keyword ``overrides`` replace its fields.
        loss: ``criterion(output, target)`` (default cross-entropy).
        device: Where to train and evaluate (default: the model's device).
        progress: tqdm bars.

    Returns:
        The :class:`Connection` (curve, profiles, barriers).

    Raises:
        UserError: For endpoints of another architecture or equal endpoints,
            ``bends < 1`` and other bad settings.

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = nn.Linear(2, 2)
        >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
        >>> a, b = torch.randn(6), torch.randn(6)
        >>> res = connect(net, a, b, (x, y), epochs=2, points=5)
        >>> res.profile.t.tolist(), sorted(res.barriers)
        ([0.0, 0.25, 0.5, 0.75, 1.0], ['curve', 'line'])
    """
    if not isinstance(model, nn.Module):
        raise UserTypeError(f"connect's model must be the network both solutions belong "
                            f"to (a torch.nn.Module), got {type(model).__name__}")
    cfg = config or ConnectConfig()
    cfg = cfg.replace(**overrides) if overrides else cfg.validate()
    layout = ParamLayout.from_module(model)
    wa, wb = as_vector(layout, a, "endpoint a"), as_vector(layout, b, "endpoint b")
    check_endpoints(wa, wb)
    wd = float(cfg.wd or 0.0)
    ev = Evaluator(copy.deepcopy(model), train, test, loss=loss, device=device,
                   batch_size=cfg.eval_batch_size, l2=wd)
    ev.check_data()  # data that do not fit fail here, not after training the curve
    grid = profile_grid(cfg.points)
    state = train_curve(model, Curve.on_segment(cfg.curve, wa, wb, cfg.bends), train, cfg,
                        wd=wd, loss=loss, device=device, progress=progress)
    return Connection(state.curve, curve_profile(ev, state.curve, grid, progress=progress),
                      curve_profile(ev, Curve.line(wa, wb), grid, progress=progress),
                      state.history)
