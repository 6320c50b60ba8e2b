"""Shared plumbing of the sharpness measures: objectives, gradients, seeded noise.

The measures are pure functions of an *objective* and a flat weight vector.
An objective is either a differentiable callable ``f(θ) -> scalar tensor``
(closed-form tests, small models) or an object with ``value``,
``value_and_grad`` and ``hvp`` methods, such as
:class:`landscape.evaluate.EmpiricalRisk`, which accumulates them over
batches so memory stays flat in the number of samples.  :func:`value_and_grad`,
:func:`loss_value` and :func:`landscape.sharpness.hessian.make_hvp` accept
both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserTypeError

#: A differentiable loss of a flat ``(n_params,)`` vector, returning a scalar tensor.
LossFunction = Callable[[Tensor], Tensor]
#: A (possibly non-differentiable) metric of a flat vector, returning a float.
Metric = Callable[[Tensor], float]
#: A Hessian-vector product ``v -> H v`` on flat vectors.
HVP = Callable[[Tensor], Tensor]


@runtime_checkable
class Objective(Protocol):
    """A loss of a flat weight vector that computes its own gradient and HVPs."""

    def value(self, theta: Tensor) -> float:
        """The loss at ``theta``."""

    def value_and_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        """The loss and its gradient at ``theta``."""

    def hvp(self, theta: Tensor) -> HVP:
        """The Hessian-vector product at ``theta``."""


def check_flat(theta: Tensor, name: str = "theta") -> None:
    """Raise ``ValueError`` unless ``theta`` is a non-empty flat float vector.

    Raises:
        ValueError: If ``theta`` is not 1D floating point with at least one entry.
    """
    if theta.ndim != 1 or theta.numel() == 0 or not theta.is_floating_point():
        raise ValueError(
            f"{name} must be a non-empty flat float vector, got shape "
            f"{tuple(theta.shape)} and dtype {theta.dtype}; flatten it with "
            "ParamLayout.flatten"
        )


def scalar_loss(loss: object, name: str = "f") -> Tensor:
    """``loss`` if it is a one-element tensor that autograd can differentiate.

    Returns:
        ``loss``.

    Raises:
        UserTypeError: For a Python number, a tensor of several entries or one
            built without a graph, before autograd's own error.
    """
    if isinstance(loss, Tensor) and loss.numel() == 1 and loss.requires_grad:
        return loss
    got = (type(loss).__name__ if not isinstance(loss, Tensor)
           else f"a tensor of shape {tuple(loss.shape)}" if loss.numel() != 1
           else "a tensor without a graph (detached or under no_grad)")
    raise UserTypeError(f"{name} must return a scalar tensor of theta, got {got}; compute "
                        "it with torch operations on theta (no float(), .item() or numpy)")


def value_and_grad(f: LossFunction | Objective, theta: Tensor) -> tuple[float, Tensor]:
    """``f(theta)`` and its gradient (one forward and one backward pass).

    Returns:
        The loss as a float and the gradient, detached, with ``theta``'s dtype.

    Raises:
        UserTypeError: If ``f`` does not return a scalar tensor of ``theta``.
    """
    if isinstance(f, Objective):
        val, g = f.value_and_grad(theta)
        return val, g.detach().to(theta)
    t = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = scalar_loss(f(t))
        (g,) = torch.autograd.grad(loss, t)
    return float(loss.detach()), g.detach()


def loss_value(f: LossFunction | Metric | Objective, theta: Tensor) -> float:
    """``f(theta)`` as a float without building a graph.

    Returns:
        The value.

    Raises:
        UserTypeError: If ``f`` returns a tensor of several entries.
    """
    if isinstance(f, Objective):
        return float(f.value(theta))
    with torch.no_grad():
        out = f(theta.detach())
    if isinstance(out, Tensor) and out.numel() != 1:
        raise UserTypeError(f"f must return a scalar, got a tensor of shape "
                            f"{tuple(out.shape)}; reduce it (e.g. .mean())")
    return float(out)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded ``torch.Generator`` on ``device``.

    Returns:
        The generator.
    """
    return torch.Generator(device=device).manual_seed(int(seed))


def rademacher(n: int, gen: torch.Generator, dtype: torch.dtype,
               device: torch.device | str = "cpu") -> Tensor:
    """``(n,)`` vector of independent ±1 entries.

    Returns:
        The vector.
    """
    bits = torch.randint(0, 2, (n,), generator=gen, device=device)
    return (bits * 2 - 1).to(dtype)


def gaussian(n: int, gen: torch.Generator, dtype: torch.dtype,
             device: torch.device | str = "cpu") -> Tensor:
    """``(n,)`` standard normal vector.

    Returns:
        The vector.
    """
    return torch.randn(n, generator=gen, dtype=dtype, device=device)


def sem(values: np.ndarray) -> float:
    """Standard error of the mean (NaN for fewer than two values).

    Returns:
        ``std(values, ddof=1) / sqrt(len(values))``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) / np.sqrt(values.size))
