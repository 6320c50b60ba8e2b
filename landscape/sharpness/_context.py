"""What a measure's ``compute`` gets: the solution, its loss, HVP and counters.

:class:`MeasureContext` is built by :func:`~landscape.sharpness.measure` (a user's
model and data) or by the run-file runner (:mod:`landscape.jobs.measures`);
:class:`Counted` and :class:`CountedObjective` count the passes a measure spends and
tick its progress bar.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from landscape._errors import not_finite
from landscape.evaluate import (
    BNMode,
    EmpiricalRisk,
    Evaluator,
    Loss,
    model_device,
    resolve_device,
)
from landscape.params import ParamLayout
from landscape.sharpness._base import HVP
from landscape.sharpness._config import MeasureConfig


class Counted:
    """A loss, metric, objective or HVP that counts its calls and ticks a bar."""

    def __init__(self, fn: Any, bar: Any = None) -> None:
        self.fn, self.bar, self.calls = fn, bar, 0

    def _tick(self) -> None:
        self.calls += 1
        if self.bar is not None:
            self.bar.update(1)

    def __call__(self, *args: Any) -> Any:
        """Call the wrapped function.

        Returns:
            Its value.
        """
        self._tick()
        return self.fn(*args)


class CountedObjective(Counted):
    """:class:`Counted` for an objective: value, gradient and HVP calls count."""

    def value(self, theta: Tensor) -> float:
        """The wrapped objective's value.

        Returns:
            The value.
        """
        self._tick()
        return self.fn.value(theta)

    def value_and_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        """The wrapped objective's value and gradient.

        Returns:
            Both.
        """
        self._tick()
        return self.fn.value_and_grad(theta)

    def hvp(self, theta: Tensor) -> HVP:
        """The wrapped objective's HVP, counting products.

        Returns:
            ``v -> H v``.
        """
        return Counted(self.fn.hvp(theta), self.bar)

    __call__ = value  # type: ignore[assignment]


def _finite_products(hvp: HVP) -> HVP:
    """``hvp`` that raises a one-line error for a non-finite product (NaN/inf data or
    weights), before it reaches an eigensolver's own message."""

    def checked(v: Tensor) -> Tensor:
        out = hvp(v)
        if not bool(torch.isfinite(out).all()):
            raise not_finite("a Hessian-vector product at the measured solution is not "
                              "finite")
        return out

    return checked


class MeasureContext:
    """What a measure's ``compute`` gets: the solution, its loss, HVP and helpers.

    Built by :func:`measure` (a user's model and data) or by the run-file
    runner.  The loss is the mean train loss over ``data`` with BatchNorm in
    eval mode and the solution's own statistics, accumulated over batches.

    Args:
        model: The network (copied, in the compute dtype; the caller's stays as it is).
        data: Train data (tensors or a ``DataLoader``).
        theta: ``(n,)`` solution weights (default: the model's).
        buffers: ``(n_buffers,)`` BN buffers (default: the model's).
        loss: Criterion (default cross-entropy).
        common: The shared parameters.
        init: ``(n,)`` weights at initialization (PAC-Bayes ``init`` bounds).
        n_train: Number of training samples the solution was fit on (bounds).

    Nothing is evaluated here: a measure of HVPs makes no other pass over the data.
    A non-finite loss (NaN/inf in the weights or the data) is a one-line
    :class:`UserError` when the first objective or HVP is asked for.
    """

    def __init__(self, model: nn.Module, data: Any, *, theta: Tensor | None = None,
                 buffers: Tensor | None = None, loss: Any = None,
                 common: MeasureConfig | None = None, init: Tensor | None = None,
                 n_train: int | None = None) -> None:
        self.common = (common or MeasureConfig()).validate()
        self.dtype = torch.float64 if self.common.dtype == "float64" else torch.float32
        device = model_device(model) if self.common.device is None else resolve_device(
            self.common.device)
        self.device = device
        self.layout = ParamLayout.from_module(model)
        self.buffer_layout = ParamLayout.buffers_of(model)
        th = self.layout.read(model, dtype=torch.float64) if theta is None else theta
        self.layout.check_vector(th, "solution weights" if theta is None else "theta")
        bf = (self.buffer_layout.read(model, buffers=True, dtype=torch.float64)
              if buffers is None else buffers)
        if buffers is not None and (self.buffer_layout.numel or not isinstance(bf, Tensor)):
            self.buffer_layout.check_vector(bf, "buffers")
        self.model = copy.deepcopy(model).to(device=device, dtype=self.dtype).eval()
        self.theta = th.detach().to(device, self.dtype)
        self.buffers = bf.detach().to(self.dtype)
        if self.buffer_layout.numel:  # the solution's BN statistics, held fixed
            self.buffer_layout.write(self.model, self.buffers, buffers=True)
        self.data = data
        self.loss_fn = loss if isinstance(loss, Loss) else Loss(loss)
        # A loader's graphs are kept when its samples fit one in-memory batch: the
        # memory the tensors path spends, and one backward pass per HVP instead of all.
        self.risk = EmpiricalRisk(self.model, data, self.loss_fn, device=device,
                                  dtype=self.dtype,
                                  graph_samples=self.common.eval_batch_size)
        self.init = init
        self.n_train = n_train
        self.bar: Any = None
        self._classifier: bool | None = None
        self._hvp: HVP | None = None
        self._recompute: Evaluator | None = None
        self._base_loss: float | None = None

    @property
    def n(self) -> int:
        """Number of parameters."""
        return self.layout.numel

    @property
    def seed(self) -> int:
        """The common seed."""
        return self.common.seed

    @property
    def samples(self) -> int:
        """Number of samples the loss averages."""
        return self.risk.num_samples

    @property
    def classifier(self) -> bool:
        """Whether the model gives class scores for integer targets (0-1 error defined)."""
        if self._classifier is None:
            self._classifier = self.risk.classifies(self.theta)
        return self._classifier

    @property
    def base_loss(self) -> float:
        """The train loss at the solution (one pass the first time).

        Raises:
            UserError: If it is not finite.
        """
        if self._base_loss is None:
            base = self.risk.value(self.theta)
            if not math.isfinite(base):
                raise not_finite(f"the loss at the measured solution is {base}")
            self._base_loss = base
        return self._base_loss

    def objective(self) -> CountedObjective:
        """The train loss, counted on the current bar.

        Returns:
            The objective.

        Raises:
            UserError: If the loss at the solution is not finite.
        """
        _ = self.base_loss
        return CountedObjective(self.risk, self.bar)

    def count(self, fn: Callable[..., Any]) -> Counted:
        """``fn`` (a loss or error at given weights) counted on the current bar.

        Returns:
            The wrapper.

        Raises:
            UserError: If the loss at the solution is not finite.
        """
        _ = self.base_loss
        return Counted(fn, self.bar)

    def hvp(self) -> Counted:
        """The HVP at the solution (one gradient graph shared by every HVP measure).

        Returns:
            ``v -> H v``, counted on the current bar.
        """
        if self._hvp is None:
            self._hvp = _finite_products(self.risk.hvp(self.theta))
        return Counted(self._hvp, self.bar)

    def error(self, theta: Tensor) -> float:
        """Train 0-1 error at ``theta`` (BN statistics of the solution).

        Returns:
            The error rate.
        """
        return self.risk.error(theta)

    def recomputed_loss(self, theta: Tensor) -> float:
        """Train loss at ``theta`` with BN statistics recomputed there.

        Returns:
            The loss (the plain loss for a model without BatchNorm).
        """
        if not self.buffer_layout.numel:
            return self.risk.value(theta)
        if self._recompute is None:
            self._recompute = Evaluator(copy.deepcopy(self.model), self.data,
                                        loss=self.loss_fn, bn=BNMode.RECOMPUTE,
                                        device=self.device,
                                        batch_size=self.common.eval_batch_size)
        return self._recompute.evaluate(theta, splits=("train",))["train"].loss

