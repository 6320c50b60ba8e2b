r"""Checkpoint averaging on ``torch.optim.swa_utils``: the SWA solution of any run.

:func:`average_checkpoints` averages the weights of several checkpoints with
equal weights (``AveragedModel.update_parameters``), then recomputes the
BatchNorm statistics of the average by one pass over train data
(``update_bn``), as Izmailov et al. (2018) do for the SWA solution.

Example:
    >>> import torch
    >>> from torch import nn
    >>> a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    >>> _ = a.weight.data.fill_(1.0), b.weight.data.fill_(3.0)
    >>> average_checkpoints(a, [a, b]).module.weight.item()
    2.0
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from landscape._errors import UserError, UserTypeError
from landscape.data import TensorBatches, as_batches
from landscape.evaluate import _CheckedForward, model_device
from landscape.models import has_batchnorm


def average_checkpoints(model: nn.Module, checkpoints: Iterable[nn.Module | Mapping[str, Any]],
                        bn_data: Any = None) -> AveragedModel:
    """Equal-weight average of checkpoints, BN statistics recomputed on ``bn_data``.

    Args:
        model: A network of the checkpoints' architecture (copied, not changed).
        checkpoints: Models or state dicts, in any order.
        bn_data: Train data (tensors or a ``DataLoader``) for ``update_bn``;
            needed when the model has BatchNorm.

    Returns:
        The ``AveragedModel`` (its ``.module`` is the averaged network).

    Raises:
        UserError: For no checkpoint, a BN model without ``bn_data``, or
            ``bn_data`` whose inputs the model cannot take.
        UserTypeError: For a ``model`` that is not a module, or a checkpoint that
            is neither a model nor a state dict.
    """
    if not isinstance(model, nn.Module):
        raise UserTypeError(f"model must be a torch.nn.Module of the checkpoints' "
                            f"architecture, got {type(model).__name__}; pass a network "
                            "(e.g. build_model(...)) as model and the state dicts as "
                            "checkpoints")
    device = model_device(model)
    avg = AveragedModel(model)
    scratch = copy.deepcopy(model)
    n = 0
    for i, c in enumerate(checkpoints):
        if isinstance(c, nn.Module):
            _check_state(model, c.state_dict(), i)
            src = c
        elif isinstance(c, Mapping):
            _check_state(model, c, i)
            scratch.load_state_dict(c)
            src = scratch
        else:
            raise UserTypeError(f"a checkpoint must be a model or a state dict, got "
                                f"{type(c).__name__}")
        avg.update_parameters(src)
        n += 1
    if n == 0:
        raise UserError("no checkpoint to average; pass at least one model or state dict")
    if has_batchnorm(model):
        if bn_data is None:
            raise UserError("the model has BatchNorm: pass bn_data (train data) so the "
                            "average's statistics can be recomputed")
        batches = as_batches(bn_data)
        if isinstance(batches, TensorBatches):
            batches = batches.to(device)
        update_bn((x.to(device) for x, _ in batches), _CheckedForward(avg))
    return avg


def _check_state(model: nn.Module, state: Mapping[str, Any], index: int) -> None:
    """Raise a one-line error unless ``state`` has ``model``'s keys and shapes.

    Raises:
        UserError: Naming the checkpoint, its missing and unexpected keys (a few of
            each) or the first entry whose shape differs.
    """
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing or extra:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3
                                          else "")

        raise UserError(
            f"checkpoint {index} is not a state of this model: "
            + "; ".join(p for p in (f"missing {few(missing)}" if missing else "",
                                    f"unexpected {few(extra)}" if extra else "") if p)
            + "; pass checkpoints of the model's architecture (a state dict saved "
            "under a wrapper may need its key prefix, e.g. 'module.', removed)")
    for k, v in want.items():
        shape = tuple(getattr(state[k], "shape", ()))
        if shape != tuple(v.shape):
            raise UserError(f"checkpoint {index} does not fit this model: {k} has shape "
                            f"{shape}, the model's {tuple(v.shape)}; pass checkpoints of "
                            "the same architecture and width")


__all__ = ["average_checkpoints"]
