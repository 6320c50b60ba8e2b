r"""Leaner gradient graphs for Hessian-vector products (private).

:class:`EmpiricalRisk.hvp <landscape.evaluate.EmpiricalRisk.hvp>` builds the
gradient :math:`g = \nabla_\theta L` with ``create_graph=True`` and then runs one
more backward pass per product, :math:`Hv = \nabla_\theta (g^\top v)`.  Two of
autograd's generic double-backward formulas do work that product never uses:

* **convolution of a constant input** (the first layer: the data need no
  gradient).  Autograd's ``_convolution_double_backward`` computes the gradient
  towards the input whenever the weight's is asked for, a transposed
  convolution that is thrown away (~20 % of an HVP of the seed-000 CNN).
  :class:`_ConstInputConv` runs the same forward kernel; its backward,
  :class:`_ConvWeightGrad`, differentiates only through the weight gradient,
  whose derivative towards the output gradient is one forward convolution of
  the input.
* **eval-mode batch norm** is the per-channel affine map
  :math:`x s + t` with :math:`s = w / \sqrt{\sigma^2 + \epsilon}`,
  :math:`t = b - \mu s`; written so, its double backward is a few elementwise
  products instead of the general batch-norm formula (~12 %).

:class:`HessianMode` (a ``TorchFunctionMode``) makes those substitutions while
it is active and passes every other call through unchanged; it is entered only
around the forward and first backward pass that build an HVP's gradient graph.
Results equal autograd's up to float rounding.

What is rewritten and what is left alone:

* ``torch.conv1d/conv2d/conv3d`` (what ``nn.Conv1d/2d/3d`` and
  ``F.conv1d/2d/3d`` call; any stride, dilation, groups, integer or tuple
  padding, ``"valid"``, with or without bias, any ``padding_mode``, since
  non-zero modes pad before the call) **when** gradient mode is on, the input
  is a batched floating-point tensor that needs no gradient and the weight
  needs one.  Left to autograd: an input that needs a gradient (every later
  layer), ``padding="same"`` (asymmetric padding), unbatched inputs, a frozen
  weight, transposed convolutions.
* ``F.batch_norm`` with ``training=False`` and running statistics (what
  ``nn.BatchNorm1d/2d/3d`` call in eval mode).  Left to autograd: train mode or
  no running statistics (batch statistics), and every other normalization.
* Nothing while gradient mode is off (``torch.no_grad``/``inference_mode``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

_CONVS: dict[Callable[..., Tensor], int] = {torch.conv1d: 1, torch.conv2d: 2,
                                            torch.conv3d: 3}
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training",
            "momentum", "eps")


class _ConvWeightGrad(torch.autograd.Function):
    """``(grad_weight, grad_bias)`` of a convolution of a constant input, from ``grad_out``.

    Linear in ``grad_out``; its backward is one forward convolution of the
    input (plus the bias broadcast), the only term a Hessian-vector product
    needs from this node.
    """

    @staticmethod
    def forward(ctx: Any, g_out: Tensor, x: Tensor, w: Tensor, bias: bool,
                conf: tuple[list[int], list[int], list[int], int]) -> tuple[Tensor, Tensor]:
        stride, padding, dilation, groups = conf
        ctx.save_for_backward(x)
        ctx.conf = conf
        _, gw, gb = torch.ops.aten.convolution_backward(
            g_out, x, w, [w.shape[0]] if bias else None, stride, padding, dilation,
            False, [0] * len(stride), groups, [False, True, bias])
        return gw, gb

    @staticmethod
    def backward(ctx: Any, ggw: Tensor, ggb: Tensor | None
                 ) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        (x,) = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        gg_out = torch.ops.aten.convolution(x, ggw, ggb, stride, padding, dilation, False,
                                            [0] * len(stride), groups)
        return gg_out, None, None, None, None


class _ConstInputConv(torch.autograd.Function):
    """A convolution whose input needs no gradient, differentiable twice in its weights."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None,
                conf: tuple[list[int], list[int], list[int], int]) -> Tensor:
        stride, padding, dilation, groups = conf
        ctx.save_for_backward(x, w)
        ctx.conf = conf
        return torch.ops.aten.convolution(x, w, b, stride, padding, dilation, False,
                                          [0] * len(stride), groups)

    @staticmethod
    def backward(ctx: Any, g_out: Tensor) -> tuple[None, Tensor, Tensor | None, None]:
        x, w = ctx.saved_tensors
        bias = bool(ctx.needs_input_grad[2])
        gw, gb = _ConvWeightGrad.apply(g_out, x, w.detach(), bias, ctx.conf)
        return None, gw, gb if bias else None, None


def _ints(v: Any, d: int) -> list[int] | None:
    """``v`` as ``d`` ints (an int is repeated), or ``None`` if it is not one of those."""
    if isinstance(v, int) and not isinstance(v, bool):
        return [v] * d
    if isinstance(v, (tuple, list)) and len(v) == d and all(
            isinstance(i, int) and not isinstance(i, bool) for i in v):
        return list(v)
    return None


def _bind(names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any]
          ) -> dict[str, Any] | None:
    """Positional and keyword arguments by name, or ``None`` for an unknown keyword."""
    if len(args) > len(names) or any(k not in names for k in kwargs):
        return None
    return dict(zip(names, args, strict=False)) | kwargs


def _const_input_conv(d: int, a: dict[str, Any]) -> Tensor | None:
    """The convolution through :class:`_ConstInputConv`, or ``None`` to fall back."""
    x, w, b = a.get("input"), a.get("weight"), a.get("bias")
    if not (isinstance(x, Tensor) and isinstance(w, Tensor)
            and (b is None or isinstance(b, Tensor))):
        return None
    if (x.requires_grad or not w.requires_grad or x.ndim != d + 2
            or not x.is_floating_point()):
        return None
    padding = a.get("padding", 0)
    if padding == "valid":
        padding = 0
    stride, pad = _ints(a.get("stride", 1), d), _ints(padding, d)
    dilation, groups = _ints(a.get("dilation", 1), d), a.get("groups", 1)
    if stride is None or pad is None or dilation is None or not isinstance(groups, int):
        return None  # padding="same", or something unexpected: autograd's own path
    return _ConstInputConv.apply(x, w, b, (stride, pad, dilation, groups))


def _affine_batch_norm(a: dict[str, Any]) -> Tensor | None:
    """Eval-mode batch norm as ``x * s + t`` per channel, or ``None`` to fall back."""
    x, mean, var = a.get("input"), a.get("running_mean"), a.get("running_var")
    if a.get("training", False) or not all(isinstance(t, Tensor) for t in (x, mean, var)):
        return None
    w, b = a.get("weight"), a.get("bias")
    s = torch.rsqrt(var + a.get("eps", 1e-5))
    if w is not None:
        s = w * s
    t = -mean * s
    if b is not None:
        t = b + t
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * s.view(shape) + t.view(shape)


class HessianMode(TorchFunctionMode):
    """Cheaper double-backward graphs while an HVP's gradient graph is built.

    See the module docstring for what is rewritten.  Use as a context manager
    around the forward pass and ``autograd.grad(..., create_graph=True)``.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2)).double().eval()
        >>> x = torch.randn(4, 1, 8, dtype=torch.float64)
        >>> with HessianMode():
        ...     y = net(x)
        >>> torch.allclose(y, net(x)), type(y.grad_fn).__name__
        (True, 'AddBackward0')
    """

    def __torch_function__(self, func: Callable[..., Any], types: Any,
                           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
                           ) -> Any:
        kwargs = kwargs or {}
        if torch.is_grad_enabled():
            out = None
            if func in _CONVS:
                a = _bind(_CONV_ARGS, args, kwargs)
                out = None if a is None else _const_input_conv(_CONVS[func], a)
            elif func is F.batch_norm:
                a = _bind(_BN_ARGS, args, kwargs)
                out = None if a is None else _affine_batch_norm(a)
            if out is not None:
                return out
        return func(*args, **kwargs)
