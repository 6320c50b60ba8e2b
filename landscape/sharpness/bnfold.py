r"""Fold BatchNorm into the convolution or linear layer before it (eval mode).

In eval mode a BatchNorm layer is the fixed affine map
:math:`y = \gamma (z - \mu)/\sqrt{v + \epsilon} + \beta` per channel, so after
:math:`z = Wx + b` the pair is one layer with

.. math::
    W' = \operatorname{diag}(s)\, W, \qquad b' = s \odot (b - \mu) + \beta,
    \qquad s = \gamma / \sqrt{v + \epsilon},

(:math:`s` scales the output channels, dimension 0 of the weight).  Jiang et
al. 2020 measure their PAC-Bayes quantities on this folded network, as does
nitarshan/robust-generalization-measures (folding into the preceding
``Conv2d``), so that noise acts on the weights the function actually uses
rather than on the redundant pair (conv weight, BN scale).

Example:
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).eval()
    >>> with torch.no_grad():
    ...     _ = net[1].running_var.fill_(4.0)
    >>> folded = fold_batchnorm(net)
    >>> x = torch.randn(5, 3)
    >>> torch.allclose(folded(x), net(x), atol=1e-6), type(folded[1]).__name__
    (True, 'Identity')
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: Layers a following BatchNorm is folded into (output channels on dimension 0).
FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BN = nn.modules.batchnorm._BatchNorm


def _fold_into(layer: nn.Module, bn: _BN, name: str) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"BatchNorm {name!r} has track_running_stats=False and uses batch "
                         "statistics in eval mode, so it cannot be folded; measure without "
                         "BN folding")
    w = layer.weight
    if bn.num_features != w.shape[0]:
        raise ValueError(f"BatchNorm {name!r} has {bn.num_features} features but the layer "
                         f"before it has {w.shape[0]} outputs; measure without BN folding")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.to(w.dtype) + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
        new_bias = (bias - bn.running_mean.to(w.dtype)) * scale
        if bn.bias is not None:
            new_bias = new_bias + bn.bias
        w.mul_(scale.reshape(-1, *([1] * (w.ndim - 1))))
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias, requires_grad=w.requires_grad)
        else:
            layer.bias.copy_(new_bias)


def _fold_sequential(seq: nn.Sequential, prefix: str, prev: nn.Module | None
                     ) -> nn.Module | None:
    """Fold in execution order through nested Sequentials; return the last module run."""
    for key, child in list(seq.named_children()):
        name = f"{prefix}{key}"
        if isinstance(child, nn.Sequential):
            prev = _fold_sequential(child, f"{name}.", prev)
        elif isinstance(child, _BN):
            if not isinstance(prev, FOLDABLE):
                after = "nothing" if prev is None else type(prev).__name__
                raise ValueError(
                    f"BatchNorm {name!r} follows {after}, not a Conv1d/Conv2d/Conv3d/Linear "
                    "in an nn.Sequential, so it cannot be folded; place it directly after "
                    "that layer or measure without BN folding")
            _fold_into(prev, child, name)
            prev = nn.Identity()
            setattr(seq, key, prev)
        else:
            _fold_inside(child, f"{name}.")  # an opaque block: only its own Sequentials
            prev = child
    return prev


def _fold_inside(module: nn.Module, prefix: str) -> None:
    """Fold within the Sequentials of a module whose own forward order is unknown."""
    for key, child in module.named_children():
        if isinstance(child, nn.Sequential):
            _fold_sequential(child, f"{prefix}{key}.", None)
        else:
            _fold_inside(child, f"{prefix}{key}.")


def fold_batchnorm(model: nn.Module) -> nn.Module:
    r"""An eval-mode copy of ``model`` with each BatchNorm folded into the layer before it.

    Each BatchNorm that directly follows a ``Conv1d``/``Conv2d``/``Conv3d``/
    ``Linear`` in ``nn.Sequential`` execution order (nested Sequentials
    included) is folded into that layer's weight and bias (a bias is added
    where the layer has none) and replaced by ``nn.Identity``.  The copy
    computes the same function as ``model.eval()``; its parameters are the
    folded layers' (no BatchNorm parameters or buffers are left), so build its
    :class:`landscape.params.ParamLayout` afresh.  ``model`` is not changed.

    Args:
        model: A network whose BatchNorm layers hold the running statistics to
            fold (its eval-mode function is the one preserved).

    Returns:
        The folded copy, in eval mode.

    Raises:
        ValueError: Naming the first BatchNorm that cannot be folded: one not
            directly after such a layer in an ``nn.Sequential`` (e.g. inside a
            custom module's ``forward``), one without running statistics, or
            one whose feature count does not match.
    """
    out = copy.deepcopy(model).eval()
    if isinstance(out, nn.Sequential):
        _fold_sequential(out, "", None)
    else:
        _fold_inside(out, "")
    left = [name for name, mod in out.named_modules() if isinstance(mod, _BN)]
    if left:
        raise ValueError(f"BatchNorm {left[0]!r} is not inside an nn.Sequential, so the "
                         "layer before it is unknown and it cannot be folded; build the "
                         "model from nn.Sequential or measure without BN folding")
    return out

