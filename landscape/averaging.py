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
from landscape.evaluate import model_device
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
        UserError: For no checkpoint, or a BN model without ``bn_data``.
        UserTypeError: For a checkpoint that is neither a model nor a state dict.
    """
    device = model_device(model)
    avg = AveragedModel(model)
    scratch = copy.deepcopy(model)
    n = 0
    for c in checkpoints:
        if isinstance(c, nn.Module):
            src = c
        elif isinstance(c, Mapping):
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
        update_bn((x.to(device) for x, _ in batches), avg)
    return avg


__all__ = ["average_checkpoints"]
