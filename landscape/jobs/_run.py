"""The model and data of a run file."""

from __future__ import annotations

import os

from torch import nn

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig, training_data
from landscape.data import TensorData
from landscape.models import build_model

#: The ``/data`` attributes that identify a run's data set (mnist1d's generation
#: seed, a subset's seed, the label noise and its seed among them); the files' paths
#: are left out, so a copy of the data elsewhere is the same data.
DATA_KEYS = ("name", "n_train", "n_test", "num_samples", "seed", "subset_seed",
             "label_noise", "label_noise_seed")


def check_same_data(a: str | os.PathLike, b: str | os.PathLike) -> None:
    """One line for two run files trained on different data.

    Raises:
        UserError: Naming both files, the first attribute that differs and the fix.
    """
    attrs = []
    for path in (a, b):
        with store.open_run(path) as f:
            d = store.data_attrs(f)
        attrs.append({k: store.plain(d.get(k)) for k in DATA_KEYS})
    diff = [k for k in DATA_KEYS if attrs[0][k] != attrs[1][k]]
    if diff:
        k = diff[0]
        fix = ("train them with one --data-seed" if k in ("seed", "subset_seed",
                                                           "label_noise_seed")
               else "use runs of the same --data, --num-samples, --train-samples, "
                    "--test-samples and --label-noise")
        raise UserError(f"{a} and {b} were trained on different data ({k} "
                        f"{attrs[0][k]} vs {attrs[1][k]}); {fix}")


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
