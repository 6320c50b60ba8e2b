r"""The one evaluation path: loss and accuracy of a model at given weights.

Every metric at every point (training history, surfaces, widths, sharpness,
the train–test gap) goes through :class:`Evaluator`, so BatchNorm handling,
batching and device logic live here once.

Speed: data are pre-loaded on the device; train and test inputs are
concatenated and pushed through the model in one pass of large batches under
``torch.inference_mode`` (valid because in eval mode every sample is
independent); weights are copied into the module in place.

BatchNorm modes (:class:`BNMode`):

* ``keep``: the running statistics stored with the weights;
* ``recompute``: statistics recomputed at each point by one pass over a train
  subset (``torch.optim.swa_utils.update_bn``), the right choice for any point
  that is not a trained solution (interpolations, perturbations, averages);
* ``batch``: batch statistics of each evaluation batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import update_bn

from landscape._errors import UserError
from landscape.data import TensorData
from landscape.models import has_batchnorm
from landscape.params import ParamLayout


class BNMode(str, Enum):
    """How BatchNorm statistics are set at an evaluated point."""

    KEEP = "keep"
    RECOMPUTE = "recompute"
    BATCH = "batch"


@dataclass(frozen=True)
class Metrics:
    """Mean loss, accuracy and the standard error of the mean loss over ``n`` samples."""

    loss: float
    acc: float
    loss_sem: float
    n: int

    @property
    def err(self) -> float:
        """Error rate, ``1 - acc``."""
        return 1.0 - self.acc


SPLITS = ("train", "test")


def resolve_device(device: str) -> torch.device:
    """``torch.device`` for a ``--device`` value, with a clear error if unavailable.

    Raises:
        UserError: If CUDA is asked for but not available.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was given but no CUDA GPU is available; "
                        "use --device cpu")
    return dev


class Evaluator:
    """Loss and accuracy of ``model`` at flat weight vectors, on train and test data.

    Args:
        model: The network; its parameters are overwritten by :meth:`set_point`.
        data: Pre-loaded tensors.
        bn: BatchNorm mode; ``None`` picks ``recompute`` for models with BN,
            ``keep`` otherwise.
        device: Where to evaluate.
        batch_size: Samples per forward pass.
        train_samples: Evaluate on a seeded subset of the train split.
        test_samples: Evaluate on a seeded subset of the test split.
        bn_samples: Train samples used to recompute BN statistics (``None``: the
            whole evaluated train split).
        l2: Weight decay coefficient; adds ``l2 * ||θ||² / 2`` to the train loss
            (the SWA paper plots this regularized train loss).
        seed: Seed of the subsets.
        compile: Run the forward pass through ``torch.compile`` (seconds to
            compile once; then faster for 2D convolutions on CPU, e.g. 1.6x on
            the seed-000 CNN, and no gain for the small 1D CNN).

    Raises:
        UserError: If a BN mode other than ``keep`` is asked of a model without BN.

    Example:
        >>> from landscape.data import load_dataset
        >>> from landscape.models import build_model
        >>> d = load_dataset("mnist1d", root=None, num_samples=100)
        >>> net = build_model("mnist1d-mlp", d.in_shape, 10)
        >>> ev = Evaluator(net, d)
        >>> m = ev.evaluate(ev.layout.read(net))
        >>> m["train"].n, m["test"].n
        (80, 20)
    """

    def __init__(
        self,
        model: nn.Module,
        data: TensorData,
        *,
        bn: BNMode | str | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 4096,
        train_samples: int | None = None,
        test_samples: int | None = None,
        bn_samples: int | None = None,
        l2: float = 0.0,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        self.has_bn = has_batchnorm(model)
        if bn is None:
            bn = BNMode.RECOMPUTE if self.has_bn else BNMode.KEEP
        self.bn = BNMode(bn)
        if self.bn is not BNMode.KEEP and not self.has_bn:
            raise UserError(f"--bn {self.bn.value} needs a model with BatchNorm; "
                            "this model has none, use --bn keep")
        if batch_size < 1:
            raise UserError(f"batch size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.layout = ParamLayout.from_module(model)
        self.buffer_layout = ParamLayout.buffers_of(model)
        self.batch_size = batch_size
        self.l2 = float(l2)
        d = data.subset(train_samples, test_samples, seed)
        self.x = {"train": d.x_train.to(self.device), "test": d.x_test.to(self.device)}
        self.y = {"train": d.y_train.to(self.device), "test": d.y_test.to(self.device)}
        n_bn = len(d.y_train) if bn_samples is None else min(bn_samples, len(d.y_train))
        self._bn_batches = list(self.x["train"][:n_bn].split(batch_size))
        self._weights: Tensor | None = None
        self._cat: dict[tuple[str, ...], tuple[Tensor, Tensor]] = {}
        self._forward = torch.compile(self.model) if compile else self.model

    # ------------------------------------------------------------------ points
    def set_point(self, weights: Tensor, buffers: Tensor | None = None) -> None:
        """Load a flat weight vector (and BN buffers) into the model.

        With ``bn=recompute`` the BN statistics are recomputed here, so
        ``buffers`` only matter for ``keep``.

        Raises:
            UserError: If ``bn=keep`` on a BN model and no buffers are given.
        """
        self.layout.write(self.model, weights)
        self._weights = weights
        if self.bn is BNMode.RECOMPUTE:
            update_bn(self._bn_batches, self.model)
        elif buffers is not None and self.buffer_layout.numel:
            self.buffer_layout.write(self.model, buffers, buffers=True)
        elif self.has_bn and self.bn is BNMode.KEEP:
            raise UserError("bn=keep needs the BN buffers stored with the weights")
        self.model.eval()
        if self.bn is BNMode.BATCH:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def read_buffers(self) -> Tensor:
        """The model's current BN buffers as a flat vector (after :meth:`set_point`)."""
        return self.buffer_layout.read(self.model, buffers=True)

    # ------------------------------------------------------------------ metrics
    def _fused(self, splits: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Inputs and labels of ``splits`` concatenated once and cached."""
        key = tuple(splits)
        if key not in self._cat:
            if len(key) == 1:
                self._cat[key] = (self.x[key[0]], self.y[key[0]])
            else:
                self._cat[key] = (torch.cat([self.x[s] for s in key]),
                                  torch.cat([self.y[s] for s in key]))
        return self._cat[key]

    @torch.inference_mode()
    def _per_sample(self, splits: Sequence[str]) -> dict[str, tuple[Tensor, Tensor]]:
        """Per-sample losses and correctness for each split, in one fused pass."""
        x, y = self._fused(splits)
        losses, correct = [], []
        for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True):
            out = self._forward(xb)
            losses.append(F.cross_entropy(out.float(), yb, reduction="none"))
            correct.append(out.argmax(1) == yb)
        loss = torch.cat(losses) if len(losses) > 1 else losses[0]
        corr = torch.cat(correct) if len(correct) > 1 else correct[0]
        out_d, start = {}, 0
        for s in splits:
            n = len(self.y[s])
            out_d[s] = (loss[start:start + n], corr[start:start + n])
            start += n
        return out_d

    def metrics(self, splits: Sequence[str] = SPLITS) -> dict[str, Metrics]:
        """Metrics at the point last given to :meth:`set_point`.

        Raises:
            UserError: For an unknown split name.
        """
        for s in splits:
            if s not in self.x:
                raise UserError(f"unknown split {s!r}; use train or test")
        if self.bn is BNMode.BATCH:  # batch statistics: evaluate splits separately
            per = {}
            for s in splits:
                per.update(self._per_sample([s]))
        else:
            per = self._per_sample(list(splits))
        reg = 0.0
        if self.l2 and self._weights is not None:
            reg = 0.5 * self.l2 * float(self._weights.double().pow(2).sum())
        out = {}
        for s, (loss, corr) in per.items():
            n = loss.numel()
            mean = float(loss.double().mean())
            sem = float(loss.double().std() / math.sqrt(n)) if n > 1 else float("nan")
            if s == "train":
                mean += reg
            out[s] = Metrics(mean, float(corr.double().mean()), sem, n)
        return out

    def evaluate(
        self, weights: Tensor, buffers: Tensor | None = None,
        splits: Sequence[str] = SPLITS,
    ) -> dict[str, Metrics]:
        """:meth:`set_point` then :meth:`metrics`."""
        self.set_point(weights, buffers)
        return self.metrics(splits)

    # ------------------------------------------------------------------ functional
    def loss_function(
        self, buffers: Tensor | None = None, split: str = "train",
        samples: int | None = None,
    ) -> Callable[[Tensor], Tensor]:
        r"""A differentiable ``f(θ) -> mean loss`` over a fixed sample set.

        BatchNorm runs in eval mode with the given buffers (the solution's
        statistics), so ``f`` is a deterministic function of ``θ`` alone, as the
        Hessian and the sharpness measures need.  Built on
        ``torch.func.functional_call``; works with ``torch.func`` transforms.

        Args:
            buffers: BN buffers to hold fixed (``None``: the model's current ones).
            split: ``train`` or ``test``.
            samples: Use only the first ``samples`` samples of the split.

        Returns:
            The loss function of a flat ``(n_params,)`` vector.
        """
        if buffers is not None and self.buffer_layout.numel:
            self.buffer_layout.write(self.model, buffers, buffers=True)
        self.model.eval()
        x, y = self.x[split], self.y[split]
        if samples is not None:
            x, y = x[:samples], y[:samples]
        fixed = {k: v.detach() for k, v in self.model.named_buffers()}
        model, layout, bs, n = self.model, self.layout, self.batch_size, len(y)
        l2 = self.l2 if split == "train" else 0.0

        def f(theta: Tensor) -> Tensor:
            params = layout.unflatten(theta)
            total = theta.new_zeros(())
            for xb, yb in zip(x.split(bs), y.split(bs), strict=True):
                out = torch.func.functional_call(model, {**params, **fixed}, (xb,))
                total = total + F.cross_entropy(out, yb, reduction="sum")
            loss = total / n
            if l2:
                loss = loss + 0.5 * l2 * theta.pow(2).sum()
            return loss

        return f
