r"""SWA-Gaussian (Maddox, Garipov, Izmailov, Vetrov & Wilson 2019, arXiv 1902.02476).

Over the iterates :math:`\theta_1, \dots, \theta_T` that SWA averages, SWAG
keeps the first and second moments and the last :math:`K` deviations

.. math::
    \bar\theta_i = \tfrac1i \sum_{j \le i} \theta_j, \quad
    \overline{\theta^2} = \tfrac1T \sum_j \theta_j^2, \quad
    \Sigma_{\rm diag} = \operatorname{diag}(\overline{\theta^2} - \bar\theta^2), \quad
    D = [\theta_i - \bar\theta_i]_{i = T-K+1}^{T}

(each deviation from the running mean after adding :math:`\theta_i`, as the
authors collect them), and samples

.. math::
    \tilde\theta = \bar\theta + \tfrac{1}{\sqrt2}\,\Sigma_{\rm diag}^{1/2} z_1
    + \tfrac{1}{\sqrt{2(K-1)}}\, D z_2, \qquad z_1 \sim N(0, I_d),\ z_2 \sim N(0, I_K),

a Gaussian of covariance :math:`\tfrac12(\Sigma_{\rm diag} + D D^\top/(K-1))`.
With :math:`K = 0` (or one deviation, which is always zero) only the diagonal
part remains.  Here :math:`K` is the number of deviations actually kept (at
most the rank asked for), so a short SWA phase gives the sample covariance of
what it saw.  The moments accumulate in float64: :math:`\overline{\theta^2} -
\bar\theta^2` cancels badly in float32.

:class:`SwagCollector` collects during training (``landscape train --swag``
rides on the SWA run, once per averaging step), :func:`swag_moments` from
stored iterates, :func:`swag_sample` draws, :func:`swag_bma` does Bayesian model
averaging with BatchNorm recomputed per sample, and :func:`swag_grid` builds the
surface over the top principal directions of :math:`D`.  No files here.

Example:
    >>> W = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    >>> m = swag_moments(W, rank=2)
    >>> m.mean.tolist(), [round(v, 9) for v in m.variance.tolist()]
    ([2.0, 1.0], [2.666666667, 0.0])
    >>> m.deviations.tolist()
    [[1.0, 0.0], [2.0, 0.0]]
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape._errors import (
    UserError,
    UserTypeError,
    arg,
    check_generator,
    check_int,
    not_finite,
)
from landscape.evaluate import Evaluator
from landscape.params import ParamLayout
from landscape.posterior.ensemble import (
    ECE_BINS,
    EnsembleAverage,
    PredictiveMetrics,
    predict_proba,
    predictive_metrics,
)
from landscape.surface import SurfaceGrid, _axis, _check_dim

#: SWAG's default rank (Maddox et al. use K = 20).
SWAG_RANK = 20


@dataclass(frozen=True, eq=False)
class SwagMoments:
    """The SWAG posterior: mean, second moment and the last deviations (float64).

    Attributes:
        mean: ``(n,)`` :math:`\\bar\\theta` (the SWA solution).
        sq_mean: ``(n,)`` :math:`\\overline{\\theta^2}`.
        deviations: ``(k, n)`` :math:`\\theta_i - \\bar\\theta_i` of the last ``k``
            iterates, oldest first (``k <= rank``).
        n_collected: :math:`T`, the number of iterates.
        rank: The most deviations kept (:math:`K`).
    """

    mean: Tensor
    sq_mean: Tensor
    deviations: Tensor
    n_collected: int
    rank: int = SWAG_RANK

    def __post_init__(self) -> None:
        n = self.mean.numel()
        if self.mean.ndim != 1 or self.sq_mean.shape != self.mean.shape:
            raise UserError("SWAG mean and second moment must be two (n,) vectors of one "
                            f"length, got {tuple(self.mean.shape)} and "
                            f"{tuple(self.sq_mean.shape)}")
        if self.deviations.ndim != 2 or self.deviations.shape[1] != n:
            raise UserError(f"SWAG deviations must be (k, {n}), got "
                            f"{tuple(self.deviations.shape)}")
        if self.n_collected < 1:
            raise UserError("SWAG needs at least one collected iterate; collect the SWA "
                            "iterates first")

    @property
    def variance(self) -> Tensor:
        """``(n,)`` :math:`\\Sigma_{\\rm diag}`, clamped at 0 (float64 rounding)."""
        return (self.sq_mean.double() - self.mean.double() ** 2).clamp_min(0.0)

    @property
    def num_deviations(self) -> int:
        """``k``, the deviations kept."""
        return int(self.deviations.shape[0])

    def check_finite(self, before: str = "sampling SWAG") -> None:
        """Raise unless the mean, second moment and deviations are all finite.

        Raises:
            UserError: Naming the part that holds NaN/inf (a diverged SWA run).
        """
        for what, t in (("mean", self.mean), ("second moment", self.sq_mean),
                        ("deviations", self.deviations)):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise not_finite(f"the SWAG {what} holds {bad} NaN/inf entries", before)

    def with_rank(self, rank: int) -> SwagMoments:
        """The same posterior keeping only the last ``rank`` deviations (0: diagonal).

        A rank above the deviations kept keeps them all; the result records the
        rank it can hold (at most this posterior's), not the one asked for.

        Returns:
            The moments.

        Raises:
            UserTypeError: For a rank that is not an integer.
            UserError: For a negative rank.
        """
        _check_rank(rank)
        keep = self.deviations[self.num_deviations - min(rank, self.num_deviations):]
        return SwagMoments(self.mean, self.sq_mean, keep, self.n_collected,
                           min(int(rank), self.rank))

    def covariance(self, scale: float = 0.5) -> Tensor:
        """The dense ``(n, n)`` covariance of :func:`swag_sample` (small models, tests).

        .. math:: \\text{scale}\\,(\\Sigma_{\\rm diag} + D^\\top D / (k - 1))

        Returns:
            The covariance, float64.
        """
        D = self.deviations.double()
        low = D.T @ D / max(self.num_deviations - 1, 1)
        return scale * (torch.diag(self.variance) + low)


def _check_moments(moments: Any) -> None:
    """Raise unless ``moments`` is a :class:`SwagMoments`.

    Raises:
        UserTypeError: Naming what was given and where moments come from.
    """
    if not isinstance(moments, SwagMoments):
        raise UserTypeError(f"SWAG moments must be a SwagMoments, got "
                            f"{type(moments).__name__}; build them with "
                            "ls.swag_moments(iterates) from the SWA iterates (T, n) (or "
                            "SwagCollector.moments(), store.read_swag)")


def _check_rank(rank: Any) -> None:
    """Raise unless ``rank`` is an integer >= 0 (or ``None``: all deviations kept).

    Raises:
        UserTypeError: For a non-integer.
        UserError: For a negative rank.
    """
    check_int(rank, arg("rank"), 0, "None: all the deviations kept")


class SwagCollector:
    """Accumulates SWAG moments of iterates as they come, in O(n) per iterate.

    Call :meth:`collect` with each iterate that SWA averages (a flat weight
    vector, or the model).  Keeps float64 moments and a ring of the last ``rank`` float32
    deviations on the iterates' device; :meth:`state_dict` /
    :meth:`from_state` make it resumable.

    Args:
        numel: Length of the weight vectors.
        rank: Deviations to keep (:math:`K`, 0: diagonal only).
        device: Where to accumulate (default CPU).

    Raises:
        UserError: For a negative rank.

    Example:
        >>> c = SwagCollector(2, rank=2)
        >>> for w in ([0.0, 1.0], [2.0, 1.0], [4.0, 1.0]):
        ...     c.collect(torch.tensor(w))
        >>> c.moments().deviations.tolist()
        [[1.0, 0.0], [2.0, 0.0]]
    """

    def __init__(self, numel: int, rank: int = SWAG_RANK,
                 device: str | torch.device | None = None) -> None:
        if rank < 0:
            raise UserError(f"--swag-rank must be >= 0, got {rank}")
        dev = torch.device(device or "cpu")
        self.rank = int(rank)
        self.n = 0
        self.mean = torch.zeros(numel, dtype=torch.float64, device=dev)
        self.sq_mean = torch.zeros(numel, dtype=torch.float64, device=dev)
        self.ring = torch.zeros(self.rank, numel, dtype=torch.float32, device=dev)

    @torch.no_grad()
    def collect(self, weights: Tensor | nn.Module) -> None:
        """Add one iterate: an ``(n,)`` flat weight vector or the model itself.

        A model is read through its :class:`~landscape.params.ParamLayout` (its
        trainable parameters by name, as ``landscape train`` flattens them).

        Raises:
            UserTypeError: For anything but a tensor or a model.
            UserError: For a vector or model of another length; nothing is
                collected then.
        """
        w = _flat_iterate(weights, self.mean.numel(), f"iterate {self.n}")
        w = w.to(self.mean.device, torch.float64)
        k = self.n
        self.mean.mul_(k / (k + 1)).add_(w, alpha=1 / (k + 1))
        self.sq_mean.mul_(k / (k + 1)).add_(w * w, alpha=1 / (k + 1))
        if self.rank:
            self.ring[k % self.rank] = (w - self.mean).float()
        self.n = k + 1

    def moments(self) -> SwagMoments:
        """The posterior so far (copies on the CPU).

        Returns:
            The :class:`SwagMoments`.
        """
        k = min(self.n, self.rank)
        order = [(self.n - k + i) % self.rank for i in range(k)] if k else []
        dev = self.ring[order] if order else self.ring.new_zeros((0, self.mean.numel()))
        return SwagMoments(self.mean.cpu().clone(), self.sq_mean.cpu().clone(),
                           dev.cpu().clone(), self.n, self.rank)

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue (copies on the CPU: later collects leave them alone).

        Returns:
            The state.
        """
        return {"n": self.n, "rank": self.rank,
                **{k: getattr(self, k).to("cpu", copy=True)
                   for k in ("mean", "sq_mean", "ring")}}

    @classmethod
    def from_state(cls, state: dict[str, Any],
                   device: str | torch.device | None = None) -> SwagCollector:
        """Continue from :meth:`state_dict`.

        Returns:
            The collector.
        """
        c = cls(int(state["mean"].numel()), int(state["rank"]), device)
        c.n = int(state["n"])
        c.mean.copy_(state["mean"])
        c.sq_mean.copy_(state["sq_mean"])
        c.ring.copy_(state["ring"])
        return c


def _flat_iterate(w: Any, numel: int | None, what: str) -> Tensor:
    """``w`` (a flat vector or a model) as an ``(n,)`` vector, checked, before any use.

    Raises:
        UserTypeError: For anything but a tensor or a model.
        UserError: For a tensor that is not 1-D or a length other than ``numel``.
    """
    if isinstance(w, nn.Module):
        w = ParamLayout.from_module(w).read(w, dtype=torch.float64)
    elif not isinstance(w, Tensor):
        raise UserTypeError(f"SWAG {what} is a {type(w).__name__}; pass a flat weight "
                            "vector (n,) (e.g. ParamLayout.from_module(model).read(model)) "
                            "or the model")
    elif w.ndim != 1:
        raise UserError(f"SWAG {what} has shape {tuple(w.shape)}; pass one flat weight "
                        "vector (n,) per iterate (e.g. ParamLayout.from_module(model)"
                        ".read(model)) or the model")
    if numel is not None and w.numel() != numel:
        raise UserError(f"SWAG {what} has {w.numel()} entries but the posterior has "
                        f"{numel}: it was made for another model; collect the weights of "
                        "one architecture")
    return w.detach()


def swag_moments(iterates: Tensor | Iterable[Tensor], rank: int = SWAG_RANK
                 ) -> SwagMoments:
    """SWAG moments of stored iterates (rows of ``(T, n)``, or models), in order.

    Args:
        iterates: A ``(T, n)`` tensor, or ``T`` flat ``(n,)`` vectors or models.
        rank: Deviations to keep.

    Returns:
        The :class:`SwagMoments`.

    Raises:
        UserError: For no iterate, a tensor that is not ``(T, n)`` (one flat
            vector is one iterate, not ``n`` of them) or iterates of several lengths.
        UserTypeError: For an iterate that is neither a tensor nor a model.
    """
    if isinstance(iterates, Tensor) and iterates.ndim != 2:
        raise UserError(f"SWAG iterates must be rows of a (T, n) tensor, got shape "
                        f"{tuple(iterates.shape)}; stack the T flat weight vectors as rows "
                        "(torch.stack(iterates)), one (n,) vector as w[None]")
    if isinstance(iterates, nn.Module) or not isinstance(iterates, Iterable):
        raise UserTypeError(f"swag_moments got one {type(iterates).__name__}; pass the SWA "
                            "iterates as a (T, n) tensor or a list of flat weight vectors "
                            "or models")
    rows = list(iterates)
    if not rows:
        raise UserError("SWAG needs at least one iterate; pass the SWA iterates (T, n)")
    c = SwagCollector(_flat_iterate(rows[0], None, "iterate 0").numel(), rank)
    for w in rows:
        c.collect(w)
    return c.moments()


def swag_sample(moments: SwagMoments, generator: torch.Generator | None = None, *,
                scale: float = 0.5, rank: int | None = None) -> Tensor:
    r"""One draw :math:`\bar\theta + \sqrt{s}\,(\Sigma_{\rm diag}^{1/2} z_1 + D z_2/\sqrt{k-1})`.

    With the default ``scale`` :math:`s = \tfrac12` this is Maddox et al.'s
    :math:`\bar\theta + \Sigma_{\rm diag}^{1/2} z_1/\sqrt2 + D z_2/\sqrt{2(K-1)}`.
    :math:`z_1` is drawn first, then :math:`z_2`, from ``generator``, so the
    diagonal part of a draw does not depend on the rank.

    Args:
        moments: The posterior.
        generator: A seeded ``torch.Generator`` (CPU) for reproducible draws.
        scale: The covariance's factor :math:`s` (0: the SWA solution).
        rank: Use only the last ``rank`` deviations (0: SWAG-diagonal).

    Returns:
        ``(n,)`` float32 weights.

    Raises:
        UserError: For a negative scale or rank.
        UserTypeError: For a ``generator`` that is not a ``torch.Generator`` (an int
            seed: pass ``torch.Generator().manual_seed(seed)``).
    """
    check_generator(generator)
    _check_moments(moments)
    _check_scale(scale)
    moments.check_finite()
    m = moments if rank is None else moments.with_rank(rank)
    z1 = torch.randn(m.mean.numel(), generator=generator, dtype=torch.float64)
    out = m.variance.sqrt() * z1
    k = m.num_deviations
    if k:
        z2 = torch.randn(k, generator=generator, dtype=torch.float64)
        out = out + (m.deviations.double().T @ z2) / math.sqrt(max(k - 1, 1))
    return (m.mean.double() + math.sqrt(scale) * out).float()


def _check_scale(scale: Any) -> None:
    """Raise unless ``scale`` is a finite real number >= 0.

    Raises:
        UserTypeError: For a non-number.
        UserError: For a negative or non-finite scale.
    """
    try:
        value = float(scale) if not isinstance(scale, (bool, str, bytes)) else None
    except (TypeError, ValueError, RuntimeError):
        value = None
    if value is None:
        raise UserTypeError(f"{arg('scale')} must be a number >= 0, got "
                            f"{type(scale).__name__} {scale!r}; pass e.g. scale=0.5")
    if not math.isfinite(value) or value < 0:
        raise UserError(f"the SWAG scale must be finite and >= 0, got {scale}; pass e.g. "
                        f"{arg('scale')}=0.5 (0: the SWA solution)")


# =========================================================================== BMA
@dataclass(frozen=True, eq=False)
class SwagBMA:
    """A Bayesian model average over SWAG samples.

    Attributes:
        metrics: Of the average of all ``samples`` (accuracy, NLL, ECE, bins).
        samples: ``(S,)`` 1..S.
        acc: ``(S,)`` accuracy of the average of the first ``s`` samples.
        nll: ``(S,)`` its NLL.
        ece: ``(S,)`` its ECE.
        sample_acc: ``(S,)`` accuracy of each sample alone.
        sample_nll: ``(S,)`` NLL of each sample alone.
        probs: ``(N, C)`` the averaged class probabilities.
        attrs: ``samples``, ``seed``, ``scale``, ``rank`` (the deviations used: at
            most those kept), ``bins``, ``bn``, ``split``.
    """

    metrics: PredictiveMetrics
    samples: np.ndarray
    acc: np.ndarray
    nll: np.ndarray
    ece: np.ndarray
    sample_acc: np.ndarray
    sample_nll: np.ndarray
    probs: Tensor
    attrs: dict[str, Any] = field(default_factory=dict)


def swag_bma(evaluator: Evaluator, moments: SwagMoments, samples: int = 30, *,
             seed: int = 0, scale: float = 0.5, rank: int | None = None,
             split: str = "test", bins: int = ECE_BINS, progress: bool = False,
             on_sample: Callable[[int], None] | None = None) -> SwagBMA:
    """Bayesian model averaging over ``samples`` SWAG draws.

    Each draw is evaluated through the evaluation path; build the evaluator
    with ``bn="recompute"`` (the default for BN models) so BatchNorm
    statistics are recomputed on train data for every sample, as Maddox et al.
    do.  The draws come from a ``torch.Generator`` seeded with ``seed``.

    Args:
        evaluator: The evaluation path (with ``split`` data).
        moments: The posterior.
        samples: :math:`S` (30 in the paper).
        seed: Seed of the draws.
        scale: Covariance factor (see :func:`swag_sample`).
        rank: Deviations used (default: all kept; 0: SWAG-diagonal).
        split: Data to predict (``test``).
        bins: ECE bins.
        progress: A tqdm bar over samples.
        on_sample: Called with the number of samples done (tests).

    Returns:
        The :class:`SwagBMA`.

    Raises:
        UserError: For ``samples < 1`` or a non-classifier.
    """
    from tqdm.auto import tqdm

    if not isinstance(evaluator, Evaluator):
        raise UserTypeError(f"swag_bma takes an Evaluator, got {type(evaluator).__name__}; "
                            "pass ls.Evaluator(model, train, test) (it recomputes BatchNorm "
                            "per sample)")
    _check_moments(moments)
    check_int(samples, arg("samples"), 1)
    check_int(seed, arg("seed"), -(2**63))
    evaluator.layout.check_vector(moments.mean, "the SWAG mean")
    _check_scale(scale)
    moments.check_finite("the Bayesian model average")
    used = (moments if rank is None else moments.with_rank(rank)).num_deviations
    gen = torch.Generator().manual_seed(int(seed))
    avg = EnsembleAverage()
    rows: dict[str, list[float]] = {k: [] for k in ("acc", "nll", "ece", "sample_acc",
                                                    "sample_nll")}
    y = None
    with tqdm(total=samples, desc="swag samples", disable=not progress, leave=False,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for s in range(samples):
            w = swag_sample(moments, gen, scale=scale, rank=rank)
            p, y = predict_proba(evaluator, w, split=split)
            one = predictive_metrics(p, y, bins)
            avg.add(p, y)
            m = predictive_metrics(avg.probs, y, bins)
            for k, v in (("acc", m.acc), ("nll", m.nll), ("ece", m.ece),
                         ("sample_acc", one.acc), ("sample_nll", one.nll)):
                rows[k].append(v)
            bar.update(1)
            if on_sample is not None:
                on_sample(s + 1)
    assert y is not None
    final = predictive_metrics(avg.probs, y, bins)
    arr = {k: np.asarray(v) for k, v in rows.items()}
    return SwagBMA(final, np.arange(1, samples + 1), arr["acc"], arr["nll"], arr["ece"],
                   arr["sample_acc"], arr["sample_nll"], avg.probs, {
                       "samples": samples, "seed": seed, "scale": scale,
                       "rank": used,
                       "bins": bins, "bn": evaluator.bn.value, "split": split})


def solution_metrics(evaluator: Evaluator, weights: Tensor, buffers: Tensor | None = None,
                     *, split: str = "test", bins: int = ECE_BINS) -> PredictiveMetrics:
    """Accuracy, NLL and ECE of one model (SWA, SGD) through the same path as the BMA.

    Returns:
        The metrics.
    """
    p, y = predict_proba(evaluator, weights, buffers, split)
    return predictive_metrics(p, y, bins)


# =========================================================================== surface
def swag_directions(moments: SwagMoments, dim: int = 2) -> tuple[Tensor, Tensor]:
    r"""The top principal directions of the deviations :math:`D` (the SWAG subspace).

    Returns:
        ``(directions (dim, n) unit float64, std (dim,))``: the right singular
        vectors of :math:`D` and the standard deviation
        :math:`s_i/\sqrt{k-1}` of the deviations along each.

    Raises:
        UserError: With fewer than ``dim + 1`` deviations.
    """
    _check_moments(moments)
    check_int(dim, arg("dim"), 1)
    k = moments.num_deviations
    if k < dim + 1:
        raise UserError(f"the SWAG subspace of {dim} direction(s) needs at least {dim + 1} "
                        f"deviations and the posterior holds {k}; collect more SWA iterates "
                        "(a longer SWA phase) or a larger --swag-rank")
    D = moments.deviations.double()
    _, s, Vh = torch.linalg.svd(D, full_matrices=False)
    return Vh[:dim].clone(), s[:dim] / math.sqrt(max(k - 1, 1))


def swag_grid(moments: SwagMoments, center_buffers: Tensor | None = None, *,
              dim: int = 2, x: Any = None, y: Any = None, span: float = 3.0,
              points: dict[str, Tensor] | None = None, trajectory: Tensor | None = None,
              trajectory_epoch: np.ndarray | None = None,
              center_name: str = "swa") -> SurfaceGrid:
    """A grid around the SWAG mean over the top principal directions of ``D``.

    Coordinates are L2 distances along unit directions; the default axes span
    ``±span`` standard deviations of the deviations along each direction.

    Args:
        moments: The posterior (its mean is the centre).
        center_buffers: BN buffers at the mean (``bn=keep`` only).
        dim: 1 or 2.
        x: ``x`` axis (``start:stop:num`` or values).
        y: ``y`` axis.
        span: Default half-width of the axes in standard deviations.
        points: Named weight vectors to project (e.g. ``sgd``).
        trajectory: ``(T, n)`` weights to project (the SWA run's iterates).
        trajectory_epoch: Their epochs.
        center_name: Name of the centre.

    Returns:
        The :class:`~landscape.surface.SurfaceGrid`.

    Raises:
        UserError: For a dimension other than 1 or 2, a ``y`` axis with ``dim=1`` or
            too few deviations.
    """
    _check_dim(dim, y)
    _check_moments(moments)
    if (isinstance(span, bool) or not isinstance(span, (int, float, np.number))
            or not math.isfinite(span) or span <= 0):
        raise UserError(f"the SWAG grid's span (standard deviations either side) must be "
                        f"a finite number > 0, got {span!r}; pass e.g. span=3")
    c = moments.mean.double()
    for name, w in (points or {}).items():
        _check_point(w, c.numel(), f"point {name!r}")
    if trajectory is not None:
        if not isinstance(trajectory, Tensor) or trajectory.ndim != 2:
            raise UserError(f"the SWAG grid's trajectory must be a (T, {c.numel()}) tensor "
                            f"of weights, got {_shape(trajectory)}; stack the iterates as "
                            "rows")
        _check_point(trajectory[0] if len(trajectory) else c, c.numel(), "trajectory")
    dirs, std = swag_directions(moments, dim)
    used = [dirs[i] for i in range(dim)]

    def proj(w: Tensor) -> np.ndarray:
        return torch.stack([(w.double() - c) @ d for d in used], -1).numpy()

    def default(i: int) -> np.ndarray:
        h = span * float(std[i]) if float(std[i]) > 0 else 1.0
        return np.linspace(-h, h, 21)

    pts = {center_name: np.zeros(dim)}
    for name, w in (points or {}).items():
        pts[name] = proj(w[None])[0]
    kw: dict[str, Any] = {}
    if trajectory is not None:
        txy = proj(trajectory)
        kw = {"trajectory_xy": txy if dim == 2 else np.c_[txy, np.zeros(len(txy))],
              "trajectory_epoch": trajectory_epoch}
    b = torch.zeros(0, dtype=torch.float64) if center_buffers is None else \
        center_buffers.double()
    return SurfaceGrid(
        x=_axis(x, default(0)), y=_axis(y, default(1), "grid_y") if dim == 2 else None,
        center=c, center_buffers=b, d0=used[0], d1=used[1] if dim == 2 else None, points=pts,
        x_label=f"SWAG direction 1 (L2 distance; deviations' std {float(std[0]):.3g})",
        y_label=(f"SWAG direction 2 (L2 distance; deviations' std {float(std[1]):.3g})"
                 if dim == 2 else ""), **kw)


def _shape(t: Any) -> str:
    return (f"shape {tuple(t.shape)}" if isinstance(t, Tensor)
            else f"a {type(t).__name__}")


def _check_point(w: Any, numel: int, what: str) -> None:
    """Raise unless ``w`` is one flat weight vector of the posterior's length.

    Raises:
        UserError: Naming the shape given and the one expected.
    """
    if not isinstance(w, Tensor) or w.ndim != 1 or w.numel() != numel:
        raise UserError(f"the SWAG grid's {what} must be a flat ({numel},) weight vector "
                        f"of the posterior's model, got {_shape(w)}; pass the weights of "
                        "the same architecture (ParamLayout.from_module(model).read(model))")


def swag_surface(model: nn.Module, moments: SwagMoments, train: Any, test: Any = None, *,
                 dim: int = 2, grid: Any = None, grid_y: Any = None,
                 progress: bool = False, **kw: Any) -> Any:
    """Train (and test) metrics over the top principal directions of SWAG's ``D``.

    Args:
        model: A network of the posterior's architecture (evaluated on a copy).
        moments: The posterior.
        train: Train data.
        test: Test data, or ``None``.
        dim: 1 or 2.
        grid: ``x`` axis (default ``±3`` standard deviations of the deviations).
        grid_y: ``y`` axis.
        progress: A tqdm bar.
        **kw: ``loss``, ``bn``, ``device``, ``batch_size``, ``l2`` of the evaluator.

    Returns:
        The :class:`~landscape.surface.Surface` (kind ``swag``).
    """
    from landscape.surface import _attrs, _evaluator, _finish, evaluate_grid

    ev = _evaluator(copy.deepcopy(model), train, test, kw)
    ev.layout.check_vector(moments.mean, "the SWAG mean")
    g = swag_grid(moments, ev.read_buffers(), dim=dim, x=grid, y=grid_y)
    return _finish(evaluate_grid(g, ev, progress=progress, attrs=_attrs(
        "swag", g, ev, center="swa", rank=moments.num_deviations)), ev)
