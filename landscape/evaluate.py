r"""The one evaluation path: a model, a loss and data, at given weights.

Every metric at every point (training history, surfaces, widths, sharpness,
the train–test gap) goes through this module, so the loss, batching, device
and BatchNorm logic live here once.

* :class:`Evaluator` gives mean loss (with its standard error), and accuracy
  for classification, on a train and a test set at flat weight vectors.
* :class:`EmpiricalRisk` is the differentiable train loss
  :math:`L(\theta) = \frac1N \sum_b \sum_{i \in b} \ell_i(\theta)` as the
  curvature and sharpness measures need it: value, gradient and
  Hessian-vector products, each **accumulated over batches**, so peak memory
  does not grow with the number of samples.  Under ``torchrun`` the batches
  are split over the ranks and summed with ``all_reduce``.

Data are in-memory tensors (fast path: moved to the device once) or any
re-iterable of ``(inputs, targets)`` batches such as a ``DataLoader`` (each
batch moved to the model's device as it is used); see
:func:`landscape.data.as_batches`.  The loss is any ``criterion(output,
target)`` returning the batch mean (default: cross-entropy); accuracy is
reported only for classification (integer targets and ``(N, C)`` outputs),
NaN otherwise.

BatchNorm modes (:class:`BNMode`):

* ``keep``: the running statistics stored with the weights;
* ``recompute``: statistics recomputed at each point by one pass over train
  data (``torch.optim.swa_utils.update_bn``), the right choice for any point
  that is not a trained solution (interpolations, perturbations, averages);
* ``batch``: batch statistics of each evaluation batch.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(3, 1, bias=False)
    >>> _ = net.weight.data.fill_(1.0)
    >>> x, y = torch.ones(4, 3), torch.zeros(4, 1)
    >>> ev = Evaluator(net, (x, y), loss=nn.MSELoss())
    >>> m = ev.metrics(["train"])["train"]
    >>> m.loss, m.acc != m.acc  # (1+1+1)^2 = 9; no accuracy for regression
    (9.0, True)
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import update_bn

from landscape._errors import UserError, UserTypeError, arg
from landscape._hessian_mode import HessianMode
from landscape.data import Batches, StreamBatches, TensorBatches, as_batches
from landscape.models import has_batchnorm
from landscape.params import ParamLayout

#: A loss ``criterion(output, target)`` returning the mean over the batch.
Criterion = Callable[[Tensor, Tensor], Tensor]


class BNMode(str, Enum):
    """How BatchNorm statistics are set at an evaluated point."""

    KEEP = "keep"
    RECOMPUTE = "recompute"
    BATCH = "batch"


@dataclass(frozen=True)
class Metrics:
    """Mean loss, accuracy and the standard error of the mean loss over ``n`` samples.

    ``acc`` is NaN for a regression loss; ``loss_sem`` is NaN when the loss
    gives no per-sample values (a plain callable).
    """

    loss: float
    acc: float
    loss_sem: float
    n: int

    @property
    def err(self) -> float:
        """Error rate, ``1 - acc``."""
        return 1.0 - self.acc


SPLITS = ("train", "test")


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` for a ``--device`` value, with a clear error if unavailable.

    Raises:
        UserTypeError: For anything but a string, a ``torch.device`` or an int.
        UserError: For a string torch does not take as a device, or CUDA asked for
            but not available.
    """
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise UserTypeError(f"{arg('device')} must be a device name such as 'cpu' or "
                            f"'cuda' (or a torch.device), got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"{arg('device')} {device!r} is not a device torch knows; use "
                        "cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{arg('device', 'cuda')} was given but no CUDA GPU is "
                        f"available; use {arg('device', 'cpu')}")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The one device the parameters of ``model`` live on.

    Raises:
        UserTypeError: If ``model`` is not a ``torch.nn.Module``.
        UserError: If the model has no parameters, none trainable, or they are
            spread over several devices.
    """
    if not isinstance(model, nn.Module):
        raise UserTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params or not any(p.requires_grad for p in params):
        raise UserError(
            f"the model ({type(model).__name__}) has no trainable parameters (none with "
            "requires_grad=True); pass a model whose parameters can be differentiated")
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise UserError(f"the model's parameters live on {sorted(map(str, devices))}; "
                        "put the model on one device with model.to(device)")
    return params[0].device


# =========================================================================== loss
class Loss:
    """A criterion with per-sample values where it can give them.

    ``torch.nn`` losses and ``torch.nn.functional`` losses that take a
    ``reduction`` argument give per-sample losses (for the standard error and
    exact sums); any other callable is used as a batch mean.  What is measured is
    the mean over samples, so a criterion that sums (``reduction='sum'``) is refused.

    Args:
        criterion: ``criterion(output, target) -> scalar`` (default
            ``nn.CrossEntropyLoss()``), the mean over the batch.

    Raises:
        UserTypeError: If ``criterion`` is not callable.
        UserError: If it has ``reduction='sum'``.
    """

    def __init__(self, criterion: Criterion | None = None) -> None:
        if criterion is None:
            criterion = nn.CrossEntropyLoss()
        if not callable(criterion):
            raise UserTypeError(f"the loss must be a callable criterion(output, target), "
                                f"got {type(criterion).__name__}")
        reduction = (criterion.keywords.get("reduction") if isinstance(criterion, partial)
                     else getattr(criterion, "reduction", None))
        if reduction == "sum":
            raise UserError("the loss has reduction='sum', but the loss measured is the "
                            "mean over samples; pass a criterion with reduction='mean' "
                            "(the default, e.g. nn.CrossEntropyLoss())")
        self.criterion = criterion
        self._none: Criterion | None = None
        self._sum: Criterion | None = None  # one fused kernel, exact for per-sample losses
        if isinstance(criterion, nn.CrossEntropyLoss) and criterion.weight is None:
            self._sum = partial(F.cross_entropy, ignore_index=criterion.ignore_index,
                                label_smoothing=criterion.label_smoothing,
                                reduction="sum")
        elif criterion is F.cross_entropy:
            self._sum = partial(F.cross_entropy, reduction="sum")
        if isinstance(criterion, nn.modules.loss._Loss):
            if getattr(criterion, "weight", None) is None:
                per = copy.copy(criterion)
                per.reduction = "none"
                self._none = per
        elif criterion is F.cross_entropy:
            self._none = partial(F.cross_entropy, reduction="none")
        else:
            try:
                params = inspect.signature(criterion).parameters
            except (TypeError, ValueError):
                params = {}
            if "reduction" in params:
                self._none = partial(criterion, reduction="none")

    @property
    def per_sample(self) -> bool:
        """Whether per-sample losses are available."""
        return self._none is not None

    def samples(self, out: Tensor, y: Tensor) -> Tensor:
        """``(n,)`` per-sample losses (mean over any further dimensions).

        Returns:
            The per-sample losses.
        """
        assert self._none is not None
        v = _checked(self._none, out, y)
        return v.reshape(len(y), -1).mean(1) if v.ndim > 1 else v

    def mean(self, out: Tensor, y: Tensor) -> Tensor:
        """The criterion's batch mean, checked to be a scalar.

        Returns:
            A 0-dim tensor.

        Raises:
            UserTypeError: If the criterion returns anything but a scalar tensor.
        """
        v = _checked(self.criterion, out, y)
        if not isinstance(v, Tensor) or v.ndim != 0:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise UserTypeError(
                f"the loss returned {shape}, not a scalar; pass a criterion that "
                "averages over the batch, e.g. nn.CrossEntropyLoss() or nn.MSELoss()")
        return v

    def total(self, out: Tensor, y: Tensor) -> Tensor:
        """Sum of the batch's losses (per-sample sum, else mean × batch size).

        Returns:
            A 0-dim tensor.
        """
        if self._sum is not None and y.ndim == 1:
            return _checked(self._sum, out, y)
        if self._none is not None:
            return self.samples(out, y).sum()
        return self.mean(out, y) * len(y)


#: What torch raises for data that does not fit a model or a loss.
_TORCH_ERRORS = (RuntimeError, IndexError, ValueError)


def _first_line(e: BaseException) -> str:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line if len(line) <= 160 else line[:157] + "..."


def _checked(criterion: Criterion, out: Tensor, y: Tensor) -> Tensor:
    """``criterion(out, y)``, turning torch's error for misfit targets into one line.

    Raises:
        UserError: Naming the output and target shapes (and, for class indices, the
            range of the targets against the number of outputs) and the fix.
    """
    if y.is_floating_point() and y.shape == out.shape and out.ndim >= 2 \
            and _is_cross_entropy(criterion):
        _check_soft_labels(out, y)
    try:
        return criterion(out, y)
    except UserError:
        raise
    except _TORCH_ERRORS as e:
        what = (f"outputs of shape {tuple(out.shape)} and targets of shape "
                f"{tuple(y.shape)} ({str(y.dtype).removeprefix('torch.')}")
        if not y.is_floating_point() and y.numel():
            lo, hi = int(y.min()), int(y.max())
            what += f", values {lo}..{hi})"
            if out.ndim >= 2 and (lo < 0 or hi >= out.shape[1]):
                raise UserError(
                    f"the loss got {what}: class targets must lie in 0..{out.shape[1] - 1} "
                    f"for a model with {out.shape[1]} outputs; give the model one output "
                    "per class or relabel the targets") from e
        else:
            what += ")"
        raise UserError(
            f"the loss cannot take {what}: {_first_line(e)}; give targets the loss "
            "expects (class indices (N,) for cross-entropy, floats shaped like the "
            "output for MSE) or pass loss=... that fits them") from e


def _is_cross_entropy(criterion: Criterion) -> bool:
    f = criterion.func if isinstance(criterion, partial) else criterion
    return isinstance(f, nn.CrossEntropyLoss) or f is F.cross_entropy


def _check_soft_labels(out: Tensor, y: Tensor) -> None:
    """Cross-entropy reads float targets shaped like the output as class probabilities;
    raise one line unless they are (regression targets would give a meaningless loss).

    Raises:
        UserError: Naming the targets' range and row sums, and the fix.
    """
    lo, sums = float(y.min()), y.sum(1)
    tol = max(1e-4, 16 * torch.finfo(y.dtype).eps)
    if lo < 0 or float((sums - 1).abs().max()) > tol:
        raise UserError(
            f"cross-entropy got float targets shaped like the output {tuple(out.shape)} "
            f"that are not class probabilities (values from {lo:.3g}, row sums "
            f"{float(sums.min()):.3g}..{float(sums.max()):.3g}); for regression pass "
            "loss=nn.MSELoss(), for classes integer class indices (N,)")


def is_classification(out: Tensor, y: Tensor) -> bool:
    """Integer targets with ``(N, C)`` scores: accuracy is defined."""
    return (not y.is_floating_point() and not y.is_complex() and out.ndim >= 2
            and out.shape[1] > 1 and y.ndim == 1)


def _forward(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``model(x)``, turning a device clash or a misfit input into a one-line error."""
    try:
        return model(x)
    except UserError:
        raise
    except _TORCH_ERRORS as e:
        text = str(e)
        if isinstance(e, torch.OutOfMemoryError) or "allocate" in text:
            raise  # not the data's shape: torch's own message says what ran out
        if any(k in text for k in ("same device", "expected device", "device type")):
            raise UserError(
                "the model and the data are on different devices (" +
                text.splitlines()[0][:120] + "); give the model's device with "
                "device=... or move the model with model.to(device)") from e
        raise UserError(
            f"the model cannot take inputs of shape {tuple(x.shape)} "
            f"({str(x.dtype).removeprefix('torch.')}): {_first_line(e)}; give data whose "
            "inputs fit the model's first layer (e.g. flatten images for an MLP) or a "
            "model built for this input") from e


class _CheckedForward(nn.Module):
    """``module`` whose forward turns a misfit input into the evaluation path's one line.

    ``update_bn`` finds the BatchNorm layers through this wrapper, calls it, and
    leaves it (and so ``module``) in the mode it found, ``module``'s.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.training = module.training

    def forward(self, x: Tensor) -> Tensor:
        return _forward(self.module, x)


def _lowp(out: Tensor) -> Tensor:
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


class _SplitStats:
    """Accumulated per-sample losses (or batch sums) and correctness of one split."""

    def __init__(self) -> None:
        self.losses: list[Tensor] = []
        self.sums: list[float] = []
        self.correct: list[Tensor] = []
        self.n = 0
        self.cls: bool | None = None

    def add(self, loss: Loss, out: Tensor, y: Tensor) -> None:
        if loss.per_sample:
            self.losses.append(loss.samples(out, y))
        else:
            self.sums.append(float(loss.mean(out, y).double()) * len(y))
        if self.cls is None:
            self.cls = is_classification(out, y)
        if self.cls:
            self.correct.append(out.argmax(1) == y)
        self.n += len(y)

    def part(self, start: int, n: int) -> _SplitStats:
        """The samples ``start .. start + n`` (of a fused pass with per-sample losses)."""
        p = _SplitStats()
        p.losses = [torch.cat(self.losses)[start:start + n]]
        if self.correct:
            p.correct = [torch.cat(self.correct)[start:start + n]]
        p.n, p.cls = n, self.cls
        return p

    def metrics(self) -> Metrics:
        n = self.n
        if self.losses:
            loss = (torch.cat(self.losses) if len(self.losses) > 1 else self.losses[0]
                    ).double()
            mean = float(loss.mean())
            sem = float(loss.std() / math.sqrt(n)) if n > 1 else math.nan
        else:
            mean, sem = math.fsum(self.sums) / n, math.nan
        acc = math.nan
        if self.correct:
            corr = torch.cat(self.correct) if len(self.correct) > 1 else self.correct[0]
            acc = float(corr.double().mean())
        return Metrics(mean, acc, sem, n)


# =========================================================================== cache
class ReplayedStream(StreamBatches):
    """A stream (e.g. a ``DataLoader``) kept in memory by its first full pass, in its own
    batches, when they take at most ``limit`` bytes; later passes replay them.

    An evaluator reads the same data at every point of a surface or profile: replaying
    skips the loader's per-sample indexing and collation (and any decoding) after the
    first pass, with the same batches, so the same numbers.  A larger stream, or a
    pass stopped early, keeps streaming.

    Args:
        batches: The re-iterable of ``(inputs, targets)`` batches.
        limit: Largest number of bytes kept (0: never keep).
    """

    def __init__(self, batches: Any, limit: int) -> None:
        super().__init__(batches)
        self.limit = int(limit)
        self.kept: list[tuple[Tensor, Tensor]] | None = None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield the checked batches: from memory once kept, else from the stream."""
        if self.kept is not None:
            yield from self.kept
            return
        keep: list[tuple[Tensor, Tensor]] | None = [] if self.limit > 0 else None
        size = 0
        for xb, yb in super().__iter__():
            if keep is not None:
                size += xb.nbytes + yb.nbytes
                keep = keep if size <= self.limit else None
                if keep is not None:
                    keep.append((xb, yb))
            yield xb, yb
        self.kept = keep


# =========================================================================== evaluator
class Evaluator:
    """Loss (and accuracy) of ``model`` at flat weight vectors, on train and test data.

    Args:
        model: The network; its parameters are overwritten by :meth:`set_point`
            (and it is moved to ``device``).
        train: Train data: ``(inputs, targets)`` tensors or a ``DataLoader``
            (see :func:`landscape.data.as_batches`), or ``None``.
        test: Test data, likewise.
        loss: ``criterion(output, target)`` (default cross-entropy); the loss
            reported is its mean over samples (``reduction='sum'`` is refused).
        bn: BatchNorm mode; ``None`` picks ``recompute`` for models with BN,
            ``keep`` otherwise.
        device: Where to evaluate (default: the model's device).
        batch_size: Samples per forward pass for in-memory tensors.
        bn_data: Data whose inputs recompute BN statistics (default: ``train``).
        bn_samples: Use only the first ``bn_samples`` (>= 1) samples of ``bn_data``
            (``None``: all).
        keep_bytes: A ``DataLoader`` (any stream) is kept in memory by its first
            full pass and replayed when its batches take at most this many bytes
            (default 512 MiB; 0: read the loader at every pass); see
            :class:`ReplayedStream`.
        l2: Weight decay coefficient; adds ``l2 * ||θ||² / 2`` to the train loss
            (the SWA paper plots this regularized train loss).
        compile: Run the forward pass through ``torch.compile``.

    Raises:
        UserError: For no data, a BN mode other than ``keep`` on a model
            without BN, a model without trainable parameters, a negative ``l2``
            or ``bn_samples`` below 1.
        UserTypeError: For a model that is not a module, or an ``l2`` or
            ``bn_samples`` that is not a number.

    Example:
        >>> from landscape.data import load_dataset
        >>> from landscape.models import build_model
        >>> d = load_dataset("mnist1d", root=None, num_samples=100)
        >>> net = build_model("mnist1d-mlp", d.in_shape, 10)
        >>> ev = Evaluator(net, (d.x_train, d.y_train), (d.x_test, d.y_test))
        >>> m = ev.evaluate(ev.layout.read(net))
        >>> m["train"].n, m["test"].n
        (80, 20)
    """

    def __init__(
        self,
        model: nn.Module,
        train: Any = None,
        test: Any = None,
        *,
        loss: Criterion | Loss | None = None,
        bn: BNMode | str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 4096,
        bn_data: Any = None,
        bn_samples: int | None = None,
        l2: float = 0.0,
        compile: bool = False,
        keep_bytes: int = 2**29,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UserTypeError(f"model must be a torch.nn.Module, got "
                                f"{type(model).__name__}")
        self.has_bn = has_batchnorm(model)
        if bn is None:
            bn = BNMode.RECOMPUTE if self.has_bn else BNMode.KEEP
        try:
            self.bn = BNMode(bn)
        except ValueError:
            raise UserError(f"unknown BN mode {bn!r}; use keep, recompute or batch"
                            ) from None
        if self.bn is not BNMode.KEEP and not self.has_bn:
            raise UserError(f"{arg('bn', self.bn.value)} needs a model with BatchNorm; "
                            f"this model has none, use {arg('bn', 'keep')}")
        if batch_size < 1:
            raise UserError(f"batch size must be positive, got {batch_size}")
        l2 = _l2_coefficient(l2)
        if bn_samples is not None:
            if isinstance(bn_samples, bool) or not isinstance(bn_samples, numbers.Integral):
                raise UserTypeError(f"bn_samples must be an int >= 1 or None (all of "
                                    f"bn_data), got {bn_samples!r}")
            if bn_samples < 1:
                raise UserError(f"bn_samples must be >= 1 (None: all of bn_data), got "
                                f"{bn_samples}; recomputing BN statistics needs samples")
            bn_samples = int(bn_samples)
        self.device = model_device(model) if device is None else resolve_device(device)
        self.model = model.to(self.device).eval()
        self.dtype = next(model.parameters()).dtype
        self.layout = ParamLayout.from_module(model)
        self.buffer_layout = ParamLayout.buffers_of(model)
        self.loss = loss if isinstance(loss, Loss) else Loss(loss)
        self.batch_size = batch_size
        self.l2 = l2
        self.data: dict[str, Batches] = {}
        if keep_bytes < 0:
            raise UserError(f"keep_bytes must be >= 0, got {keep_bytes}")

        def batches(d: Any) -> Batches:
            b = as_batches(d, batch_size)
            return (ReplayedStream(b.batches, keep_bytes)
                    if type(b) is StreamBatches and keep_bytes else b)

        for split, d in (("train", train), ("test", test)):
            if d is not None:
                self.data[split] = batches(d)
        if not self.data:
            raise UserError("no data to evaluate on; pass train (and test) data as "
                            "(inputs, targets) tensors or a DataLoader")
        self._bn = batches(bn_data) if bn_data is not None else self.data.get("train")
        self._bn_samples = bn_samples
        if self.bn is BNMode.RECOMPUTE and self._bn is None:
            raise UserError("bn=recompute needs train data (or bn_data) to recompute "
                            "the BatchNorm statistics")
        self._weights: Tensor | None = None
        self._fused: dict[tuple[str, ...], TensorBatches] = {}
        self._forward = torch.compile(self.model) if compile else self.model

    # ------------------------------------------------------------------ points
    def set_point(self, weights: Tensor, buffers: Tensor | None = None) -> None:
        """Load a flat weight vector (and BN buffers) into the model.

        With ``bn=recompute`` the BN statistics are recomputed here, so
        ``buffers`` only matter for ``keep``.

        Raises:
            UserError: If ``bn=keep`` on a BN model and no buffers are given, or
                ``bn=recompute`` with BN data whose inputs the model cannot take.
        """
        self.layout.write(self.model, weights)
        self._weights = weights
        if self.bn is BNMode.RECOMPUTE:
            update_bn(self._bn_inputs(), _CheckedForward(self.model))
        elif buffers is not None and self.buffer_layout.numel:
            self.buffer_layout.write(self.model, buffers, buffers=True)
        elif self.has_bn and self.bn is BNMode.KEEP:
            raise UserError("bn=keep needs the BN buffers stored with the weights")
        self.model.eval()
        if self.bn is BNMode.BATCH:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def _bn_inputs(self) -> Iterator[Tensor]:
        """Inputs (on the device) of the BN-recompute data, ``bn_samples`` at most."""
        assert self._bn is not None
        left = self._bn_samples
        source = (self._bn.to(self.device, self.dtype) if isinstance(self._bn, TensorBatches)
                  else self._bn)
        for xb, _ in source:
            if left is not None:
                if left <= 0:
                    return
                xb, left = xb[:left], left - len(xb)
            yield self._input(xb)

    def _input(self, xb: Tensor) -> Tensor:
        xb = xb.to(self.device, non_blocking=True)
        return xb.to(self.dtype) if xb.is_floating_point() else xb

    def read_buffers(self) -> Tensor:
        """The model's current BN buffers as a flat vector (after :meth:`set_point`)."""
        return self.buffer_layout.read(self.model, buffers=True)

    def num_samples(self, split: str) -> int | None:
        """Samples of ``split`` (``None`` for a stream not yet read once)."""
        return self.data[split].num_samples

    @torch.inference_mode()
    def check_data(self) -> None:
        """Run the first batch of every split through the model and the loss, so data
        that do not fit raise the evaluation path's one line before any long work
        (training a curve, aligning networks) whose result would be lost.

        The model stays in eval mode, so no BatchNorm statistics change.

        Raises:
            UserError: Naming the split, for inputs the model cannot take or targets
                the loss cannot take.
        """
        for split in self.data:
            for xb, yb in self._source(split):
                try:
                    out = _lowp(_forward(self.model, self._input(xb)))
                    self.loss.mean(out, yb.to(self.device))
                except UserError as e:
                    raise UserError(f"{split} data: {e}") from e
                break

    # ------------------------------------------------------------------ metrics
    def _source(self, split: str) -> Batches:
        d = self.data[split]
        return d.to(self.device, self.dtype) if isinstance(d, TensorBatches) else d

    def _fused_source(self, splits: tuple[str, ...]) -> TensorBatches:
        """In-memory splits concatenated once: in eval mode samples are independent,
        so train and test go through the model in one pass of large batches."""
        if splits not in self._fused:
            parts = [self._source(s) for s in splits]
            self._fused[splits] = TensorBatches(
                torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]),
                self.batch_size)
        return self._fused[splits]

    @torch.inference_mode()
    def _collect(self, splits: tuple[str, ...]) -> dict[str, _SplitStats]:
        """Per-sample losses (or batch sums) and correctness of each split."""
        fused = (len(splits) > 1 and self.loss.per_sample and self.bn is not BNMode.BATCH
                 and all(isinstance(self.data[s], TensorBatches) for s in splits)
                 and len({self.data[s].x.shape[1:] for s in splits}) == 1)
        sources = [("+", self._fused_source(splits))] if fused else [
            (s, self._source(s)) for s in splits]
        stats: dict[str, _SplitStats] = {}
        for name, src in sources:
            st = stats.setdefault(name, _SplitStats())
            for xb, yb in src:
                xb, yb = self._input(xb), yb.to(self.device, non_blocking=True)
                out = _lowp(_forward(self._forward, xb))
                st.add(self.loss, out, yb)
        if not fused:
            return stats
        whole, start = stats["+"], 0
        for s in splits:
            n = self.data[s].num_samples
            stats[s] = whole.part(start, n)
            start += n
        return stats

    def metrics(self, splits: Sequence[str] | None = None) -> dict[str, Metrics]:
        """Metrics at the point last given to :meth:`set_point` (or the model's own).

        Args:
            splits: The splits to evaluate (default: every split this evaluator has).

        Returns:
            ``{split: Metrics}``.

        Raises:
            UserError: For an unknown or absent split.
        """
        splits = tuple(self.data) if splits is None else tuple(splits)
        for s in splits:
            if s not in self.data:
                have = ", ".join(self.data)
                raise UserError(f"no {s!r} data in this evaluator (it has {have}); "
                                f"pass {s}=... when building it")
        per = self._collect(splits)
        reg = self.penalty()
        out = {s: per[s].metrics() for s in splits}
        if "train" in out and reg:
            m = out["train"]
            out["train"] = Metrics(m.loss + reg, m.acc, m.loss_sem, m.n)
        return out

    @torch.inference_mode()
    def outputs(self, split: str = "test") -> tuple[Tensor, Tensor]:
        """The model's outputs and the targets of ``split`` at the current point.

        The same forward pass as :meth:`metrics` (batching, device, BN mode), for
        analyses that need the predictions themselves: ensembles and Bayesian
        model averages (:mod:`landscape.posterior`).

        Returns:
            ``(outputs (N, ...), targets (N, ...))`` on the evaluator's device,
            outputs in float32 or wider.

        Raises:
            UserError: For an absent split.
        """
        if split not in self.data:
            raise UserError(f"no {split!r} data in this evaluator (it has "
                            f"{', '.join(self.data)}); pass {split}=... when building it")
        outs, ys = [], []
        for xb, yb in self._source(split):
            outs.append(_lowp(_forward(self._forward, self._input(xb))))
            ys.append(yb.to(self.device, non_blocking=True))
        return torch.cat(outs), torch.cat(ys)

    def penalty(self) -> float:
        """The ``l2 * ||θ||² / 2`` term the train loss includes at the current point.

        Returns:
            The term (0 without ``l2``).
        """
        if not self.l2:
            return 0.0
        w = self._weights if self._weights is not None else self.layout.read(self.model)
        return 0.5 * self.l2 * float(w.double().pow(2).sum())

    def evaluate(
        self, weights: Tensor, buffers: Tensor | None = None,
        splits: Sequence[str] | None = None,
    ) -> dict[str, Metrics]:
        """:meth:`set_point` then :meth:`metrics`.

        Args:
            weights: The flat weight vector.
            buffers: BN buffers (see :meth:`set_point`).
            splits: The splits to evaluate (default: every split this evaluator has).

        Returns:
            ``{split: Metrics}``.
        """
        self.set_point(weights, buffers)
        return self.metrics(splits)

    # ------------------------------------------------------------------ objective
    def risk(self, split: str = "train", buffers: Tensor | None = None, *,
             dtype: torch.dtype | None = None, graph_cache: int = 1) -> EmpiricalRisk:
        """The differentiable loss of ``split`` with BatchNorm frozen in eval mode.

        Args:
            split: ``train`` or ``test``.
            buffers: BN buffers to hold fixed (``None``: the model's current ones).
            dtype: Compute dtype (``None``: the model's).
            graph_cache: See :class:`EmpiricalRisk`.

        Returns:
            The :class:`EmpiricalRisk` (the train one includes the ``l2`` term).

        Raises:
            UserError: For an absent split.
        """
        if split not in self.data:
            raise UserError(f"no {split!r} data in this evaluator; pass {split}=...")
        fixed = None
        if buffers is not None and self.buffer_layout.numel:
            fixed = self.buffer_layout.unflatten(buffers)
        return EmpiricalRisk(self.model, self.data[split], self.loss, buffers=fixed,
                             l2=self.l2 if split == "train" else 0.0, device=self.device,
                             dtype=dtype, graph_cache=graph_cache)


def _l2_coefficient(l2: Any) -> float:
    """``l2`` as a float, checked to be a finite number >= 0.

    Raises:
        UserTypeError: For a string, a bool or anything ``float`` does not take.
        UserError: For a negative or non-finite number.
    """
    try:
        if isinstance(l2, (str, bytes, bool)):
            raise TypeError
        v = float(l2)
    except (TypeError, ValueError):
        raise UserTypeError(f"{arg('l2')} must be a number >= 0 (the weight decay "
                            f"coefficient), got {l2!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise UserError(f"{arg('l2')} must be a finite number >= 0 (the weight decay "
                        f"coefficient), got {l2!r}")
    return v


# =========================================================================== risk
class EmpiricalRisk:
    r"""The mean loss over fixed data as a function of a flat weight vector.

    .. math::
        L(\theta) = \frac{1}{N} \sum_b \sum_{i \in b} \ell(f_\theta(x_i), y_i)
            + \frac{\lambda}{2} \|\theta\|^2 ,

    with BatchNorm in eval mode and its buffers held fixed, so :math:`L` is a
    deterministic function of :math:`\theta` alone.  Values, gradients and
    Hessian-vector products are accumulated batch by batch (the HVP of batch
    :math:`b` is :math:`\nabla_\theta (\nabla_\theta L_b^\top v)`, double
    backward), so memory holds one batch's graph at a time.  When the data fit
    in ``graph_cache`` batches the gradient graphs are built once per point
    and reused by every product (one backward pass per HVP).  The gradient
    graphs are built under :class:`landscape._hessian_mode.HessianMode`: a
    convolution of the (constant) input and eval-mode BatchNorm get leaner
    double-backward formulas, equal up to float rounding (about 0.6x the time
    of autograd's own on the seed-000 CNN).

    Under ``torchrun`` (``torch.distributed`` initialized, world size > 1)
    each rank takes every ``world``-th batch and the sums are combined with
    ``all_reduce``; every rank must see the same batches in the same order.

    Args:
        model: The network (its own parameters are not changed).
        data: Batches (anything :func:`landscape.data.as_batches` accepts).
        loss: The criterion (a :class:`Loss` or a callable).
        buffers: Named BN buffers to use (``None``: the model's current ones).
        l2: Weight decay coefficient :math:`\lambda`.
        device: Where to compute (default: the model's device).
        dtype: Compute dtype (default: the model's parameters').
        graph_cache: Largest number of batches whose gradient graphs are kept
            between HVPs at the same point (memory grows with it).
        graph_samples: Keep the gradient graphs of a stream (a ``DataLoader``) of
            at most this many samples, whatever its batch count: the memory of
            one in-memory batch of that size (0: never; then each product
            recomputes the forward and backward passes of every batch).
        distributed: Split batches over ``torch.distributed`` ranks when
            initialized (``None``: automatically).

    Raises:
        UserError: For a model without trainable parameters.
    """

    def __init__(self, model: nn.Module, data: Any, loss: Criterion | Loss | None = None,
                 *, buffers: Mapping[str, Tensor] | None = None, l2: float = 0.0,
                 device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, graph_cache: int = 1,
                 graph_samples: int = 0, distributed: bool | None = None) -> None:
        self.device = model_device(model) if device is None else torch.device(device)
        self.model = model
        self.layout = ParamLayout.from_module(model)
        ref = next(model.parameters())
        self.dtype = dtype or ref.dtype
        self.data = as_batches(data)
        self.loss = loss if isinstance(loss, Loss) else Loss(loss)
        src = dict(model.named_buffers()) if buffers is None else dict(buffers)
        self.buffers = {k: v.detach().to(self.device).clone() for k, v in src.items()}
        for k, v in self.buffers.items():
            if v.is_floating_point():
                self.buffers[k] = v.to(self.dtype)
        self.l2 = _l2_coefficient(l2)
        self.graph_cache = int(graph_cache)
        self.graph_samples = int(graph_samples)
        self.rank, self.world = _dist_info(distributed)
        self._n: int | None = None
        self._fingerprint: tuple[int, float] | None = None

    @property
    def num_params(self) -> int:
        """Length of :math:`\\theta`."""
        return self.layout.numel

    #: Build HVP gradient graphs under :class:`HessianMode` (off: autograd's own
    #: formulas; for comparisons).
    _lean_graph: bool = True

    # -------------------------------------------------------------- batches
    def _all(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        """``(index, inputs, targets)`` of every batch, on the device, checked."""
        src = (self.data.to(self.device, self.dtype) if isinstance(self.data, TensorBatches)
               else self.data)
        for i, (xb, yb) in enumerate(src):
            if isinstance(self.data, StreamBatches):
                xb = xb.to(self.device, non_blocking=True)
                if xb.is_floating_point():
                    xb = xb.to(self.dtype)
                yb = yb.to(self.device, non_blocking=True)
                if yb.is_floating_point():
                    yb = yb.to(self.dtype)
                if i == 0:
                    self._check_fingerprint(xb)
            yield i, xb, yb

    def _check_fingerprint(self, xb: Tensor) -> None:
        fp = (len(xb), float(xb.detach().double().sum()))
        if self._fingerprint is None:
            self._fingerprint = fp
        elif fp != self._fingerprint:
            raise UserError(
                "the data loader yields different batches on each pass (shuffle=True or "
                "random augmentation?); curvature and sharpness need a fixed sample set: "
                "use a DataLoader with shuffle=False and no random transforms")

    def _mine(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        """This rank's batches (all of them without ``torch.distributed``)."""
        for i, xb, yb in self._all():
            if i % self.world == self.rank:
                yield i, xb, yb

    @property
    def num_samples(self) -> int:
        """:math:`N` (one counting pass over a stream the first time)."""
        if self._n is None:
            n = self.data.num_samples
            if n is None:
                n = sum(len(yb) for _, _, yb in self._all())
            self._n = int(n)
        return self._n

    def _reduce(self, t: Tensor) -> Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t)
        return t

    # -------------------------------------------------------------- maths
    def _batch_loss(self, theta: Tensor, i: int, xb: Tensor, yb: Tensor) -> Tensor:
        """``(sum of batch losses) / N`` (plus the ``l2`` term on batch 0)."""
        out = self._outputs(self.layout.unflatten(theta), xb)
        loss = self.loss.total(out, yb) / self.num_samples
        if self.l2 and i == 0:
            loss = loss + 0.5 * self.l2 * theta.pow(2).sum()
        return loss

    def _outputs(self, params: dict[str, Tensor], xb: Tensor) -> Tensor:
        """The model's outputs on ``xb`` at ``params`` (its buffers kept), errors in one line."""
        return _forward(partial(torch.func.functional_call, self.model,
                                {**params, **self.buffers}), xb)

    def _point(self, theta: Tensor) -> Tensor:
        self.layout.check_vector(theta, "theta")
        return theta.detach().to(self.device, self.dtype)

    def value(self, theta: Tensor) -> float:
        """:math:`L(\\theta)` (no graph).

        Returns:
            The loss.
        """
        t = self._point(theta)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for i, xb, yb in self._mine():
                total += self._batch_loss(t, i, xb, yb).double()
        return float(self._reduce(total))

    __call__ = value

    def value_and_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        """:math:`L(\\theta)` and :math:`\\nabla L(\\theta)`, one batch at a time.

        Returns:
            The loss and the ``(n,)`` gradient (dtype of the computation).
        """
        t = self._point(theta).requires_grad_(True)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        grad = torch.zeros_like(t)
        with torch.enable_grad():
            for i, xb, yb in self._mine():
                loss = self._batch_loss(t, i, xb, yb)
                (g,) = torch.autograd.grad(loss, t)
                grad += g
                total += loss.detach().double()
        self._reduce(grad)
        return float(self._reduce(total)), grad

    def _grad_graph(self, t: Tensor, i: int, xb: Tensor, yb: Tensor) -> Tensor:
        """The batch's gradient with its graph, built under :class:`HessianMode`.

        The mode (:mod:`landscape._hessian_mode`) routes the first convolution
        and eval-mode BatchNorm through ops with leaner double backward; the
        products are autograd's up to float rounding.
        """
        with torch.enable_grad(), (HessianMode() if self._lean_graph
                                   else contextlib.nullcontext()):
            (g,) = torch.autograd.grad(self._batch_loss(t, i, xb, yb), t,
                                       create_graph=True)
        return g

    def hvp(self, theta: Tensor) -> Callable[[Tensor], Tensor]:
        r"""The Hessian-vector product :math:`v \mapsto \nabla^2 L(\theta)\, v`.

        Returns:
            A function of ``(n,)`` vectors returning ``(n,)`` vectors; it raises a
            one-line :class:`UserError` for a vector of another shape.
        """
        t = self._point(theta).requires_grad_(True)
        cached: list[tuple[Tensor, Tensor]] | None = None
        mine = None  # this rank's batches: every world-th of them
        if isinstance(self.data, TensorBatches):
            total = math.ceil(self.data.num_samples / self.data.batch_size)
            mine = len(range(self.rank, total, self.world))
        small_stream = (mine is None and self.graph_samples > 0
                        and self.num_samples <= self.graph_samples)
        if small_stream or (mine is not None and mine <= self.graph_cache):
            cached = [(self._grad_graph(t, i, xb, yb), t) for i, xb, yb in self._mine()]

        def hv(v: Tensor) -> Tensor:
            if not isinstance(v, Tensor):
                raise UserTypeError(f"the Hessian-vector product takes a torch tensor of "
                                    f"{t.numel()} entries (theta's length), got "
                                    f"{type(v).__name__}")
            if v.shape != t.shape:
                raise UserError(f"the Hessian-vector product got v of shape "
                                f"{tuple(v.shape)} ({v.numel()} entries) but theta has "
                                f"{t.numel()}; pass a flat vector of theta's length")
            v = v.to(self.device, self.dtype)
            out = torch.zeros_like(t)
            with torch.enable_grad():
                if cached is not None:
                    for g, tt in cached:
                        out += _grad_dot(g, tt, v, retain=True)
                else:
                    for i, xb, yb in self._mine():
                        tb = t.detach().requires_grad_(True)
                        g = self._grad_graph(tb, i, xb, yb)
                        out += _grad_dot(g, tb, v, retain=False)
            return self._reduce(out)

        return hv

    @torch.no_grad()
    def classifies(self, theta: Tensor) -> bool:
        """Whether the model gives class scores for integer targets on the first batch.

        Returns:
            ``True`` when a 0-1 error is defined (see :func:`is_classification`).
        """
        t = self._point(theta)
        params = self.layout.unflatten(t)
        for _, xb, yb in self._all():
            return is_classification(self._outputs(params, xb), yb)
        return False

    @torch.no_grad()
    def error(self, theta: Tensor) -> float:
        """The 0-1 error of ``theta`` on the data (classification only).

        Returns:
            The error rate.

        Raises:
            UserError: For a regression loss.
        """
        t = self._point(theta)
        params = self.layout.unflatten(t)
        counts = torch.zeros(2, dtype=torch.float64, device=self.device)
        for _, xb, yb in self._mine():
            out = self._outputs(params, xb)
            if not is_classification(out, yb):
                raise UserError("a 0-1 error needs a classifier (integer targets, (N, C) "
                                "outputs); use the loss as the metric instead")
            counts += torch.stack([(out.argmax(1) == yb).sum().double(),
                                   torch.tensor(float(len(yb)), dtype=torch.float64,
                                                device=self.device)])
        right, n = self._reduce(counts).tolist()
        return 1.0 - right / n  # as Metrics.err: the same rounding as 1 - accuracy


def _grad_dot(g: Tensor, t: Tensor, v: Tensor, *, retain: bool) -> Tensor:
    """:math:`\\nabla_t (g^\\top v)` (zero where ``g`` does not depend on ``t``)."""
    if not g.requires_grad:  # the loss is linear in t: H = 0
        return torch.zeros_like(t)
    (hv,) = torch.autograd.grad(g, t, v, retain_graph=retain, allow_unused=True)
    return torch.zeros_like(t) if hv is None else hv.detach()


def _dist_info(distributed: bool | None) -> tuple[int, int]:
    """``(rank, world)`` when the batches are to be split, else ``(0, 1)``."""
    if distributed is False:
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if distributed:
        raise UserError("distributed=True but torch.distributed is not initialized; run "
                        "under torchrun or call init_process_group first")
    return 0, 1
