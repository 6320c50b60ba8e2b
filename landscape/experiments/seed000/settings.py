"""Protocol ``seed000``: its settings dataclass and constants."""

from __future__ import annotations

import dataclasses
from typing import Any

from landscape.experiments._settings import Settings

_SEARCH_KEYS = {"batch_size", "lr", "momentum", "patience", "epochs", "swa_lr_ratio"}


@dataclasses.dataclass(frozen=True)
class Seed000Settings(Settings):
    """``[experiment]`` of the ``seed000`` protocol.

    Attributes:
        trials: Optuna trials per method.
        folds: Cross-validation folds.
        search: ``{knob: [low, high]}`` (``batch_size``: the choices).
        swa_start_frac: SWA starts at this fraction of the epochs.
        workers: Worker processes of the CV folds (default one per core).
        serial_threads: Torch threads of the serial stages, or ``"auto"``
            (:func:`serial_threads`).
        kaggle_train: With ``--data mnist``: re-split at Kaggle's scale, this many
            training images (:func:`load_seed_data`).
    """

    trials: int = 0
    folds: int = 5
    search: dict[str, Any] = dataclasses.field(default_factory=dict)
    swa_start_frac: float = 0.5
    workers: int | None = None
    serial_threads: int | str = "auto"
    kaggle_train: int | None = None
