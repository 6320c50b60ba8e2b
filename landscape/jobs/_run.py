"""The model and data of a run file."""

from __future__ import annotations

import os

from torch import nn

from landscape import store
from landscape.config import TrainConfig, training_data
from landscape.data import TensorData
from landscape.models import build_model


def resolve_l2(value: float | str | None, wd: float) -> float:
    """The weight-decay coefficient of a regularized train loss.

    Args:
        value: ``"auto"`` (the run's weight decay ``wd``), a number, or its text.
        wd: The run's ``wd``.

    Returns:
        The coefficient.

    Raises:
        UserError: For anything but ``auto`` or a number >= 0.
    """
    from landscape._errors import UserError

    if value is None or value == "auto":
        return float(wd)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"--l2 must be auto, 0 or a number >= 0, got {value!r}") from None
    if not v >= 0:
        raise UserError(f"--l2 must be auto, 0 or a number >= 0, got {value!r}")
    return v


def load_run_model(path: str | os.PathLike) -> tuple[nn.Module, TensorData]:
    """Rebuild the model and data of a run file (weights are not loaded).

    Returns:
        ``(model, data)``.

    Raises:
        UserError: If the stored layout does not match the rebuilt model.
    """
    with store.open_run(path) as f:
        cfg = TrainConfig(**store.config_of(f))
        name, kwargs = store.model_spec(f)
        layout, buffers = store.layouts(f)
    data, _ = training_data(cfg)  # the train labels it trained on (label noise)
    model = build_model(name, data.in_shape, data.n_classes, **kwargs)
    layout.check_module(model)
    buffers.check_module(model, buffers=True)
    return model, data
