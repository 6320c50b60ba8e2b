"""Protocol ``regimes``: its settings dataclass and constants."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from landscape._errors import UserError
from landscape.experiments._settings import Settings, measure_default

#: The per-seed metrics of every cell (``/metrics/<cell>/<metric>``).
METRICS = ("sgd_test_acc", "swa_test_acc", "diff_test_acc", "sgd_width", "swa_width",
           "width_ratio")


#: TrainConfig keys that only say how a run is recorded or executed, not what it trains.
_EXECUTION = ("record_every", "record_steps", "eval_every", "threads", "device",
              "data_root", "download", "seed")


#: The run-file group of a finished unit's summary.
SUMMARY_GROUP = "regimes"


@dataclasses.dataclass(frozen=True)
class RegimesSettings(Settings):
    """``[experiment]`` of the ``regimes`` protocol (measure defaults: the registry's).

    Attributes:
        factors: ``{factor: [level table]}``, each level a table of TrainConfig
            overrides with an optional ``label``.
        map: Two factors crossed level by level.
        directions: Directions of the width measure (fewer than its default: one
            width per unit, many units).
        tau: The width's loss rise.
        width_samples: Train samples of the width.
        width_bn: BN statistics along the rays.
        workers: Worker processes (default one per core).
    """

    factors: dict[str, Any] = dataclasses.field(default_factory=dict)
    map: tuple[str, ...] = ()
    directions: int = 8
    tau: float = measure_default("tau")
    width_samples: int = measure_default("samples")
    width_bn: str = "recompute"
    workers: int | None = None


def _settings(s: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as plain data, with at least one factor."""
    factors = s.get("factors", {})
    if not isinstance(factors, Mapping) or not factors:
        raise UserError("[experiment.factors] must name at least one factor, e.g. "
                        "label_noise = [{label = \"0 %\"}, {label_noise = 0.2}]")
    st = RegimesSettings.parse(s).to_dict()
    return st | {"factors": {str(k): list(v) for k, v in factors.items()}}
