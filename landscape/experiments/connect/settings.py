"""Protocol ``connect``: its settings dataclass and constants."""

from __future__ import annotations

import dataclasses
from typing import Any

from landscape._errors import UserError
from landscape.config import ConnectConfig, FGEConfig
from landscape.experiments._settings import Settings

#: Name of the alignment in each pair's file (the curve's is its family, e.g. ``bezier``).
ALIGNMENT = "weights_repair"


#: Barrier metrics, in table order.
BARRIERS = ("train_loss", "train_err", "test_loss", "test_err")


#: The line profiles whose barriers are compared, with their table labels.
PATHS = {"line": "line (raw)", "curve": "trained curve",
         "aligned": "line after weight matching",
         "repair": "line after weight matching + REPAIR"}


#: The predictive methods, with their table labels.
METHODS = {"sgd": "SGD (first run of the pair)", "swa": "SWA (same run)",
           "swag": "SWAG model average", "fge": "FGE ensemble from SGD",
           "fge_swa": "SWA of the FGE snapshots",
           "sgd_ensemble": "two-run SGD ensemble"}


@dataclasses.dataclass(frozen=True)
class ConnectSettings(Settings):
    """``[experiment]`` of the ``connect`` protocol.

    The curve's and FGE's settings are tables of
    :class:`~landscape.config.ConnectConfig` and
    :class:`~landscape.config.FGEConfig` fields; what they leave out takes
    those classes' defaults (the weight decay: the runs').

    Attributes:
        curve: ``[experiment.curve]``: curve family, bends, epochs, lr, points, ...
        plane: Grid steps from ``a`` to ``b`` of the first pair's curve plane
            (0: no plane).
        fge: ``[experiment.fge]``: snapshots, cycle, alpha1, alpha2, ...
        swag_samples: SWAG samples averaged (default: ``swag_run``'s).
        align_samples: Train inputs of REPAIR's statistics (default: ``align_runs``').
        workers: Worker processes (default one per core, at most one per pair).
    """

    curve: dict[str, Any] = dataclasses.field(default_factory=dict)
    plane: int = 0
    fge: dict[str, Any] = dataclasses.field(default_factory=dict)
    swag_samples: int | None = None
    align_samples: int | None = None
    workers: int | None = None

    def configs(self) -> tuple[ConnectConfig, FGEConfig]:
        """The curve's and FGE's configs (checked).

        Returns:
            ``(curve config, FGE config)``.

        Raises:
            UserError: For an unknown key or a bad value, in one line.
        """
        out = []
        for key, cls in (("curve", ConnectConfig), ("fge", FGEConfig)):
            table = getattr(self, key)
            unknown = sorted(set(table) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise UserError(f"[experiment.{key}] has unknown key(s) {unknown}; valid: "
                                f"{sorted(f.name for f in dataclasses.fields(cls))}")
            out.append(cls().replace(**table).validate())
        if self.plane < 0:
            raise UserError(f"[experiment] plane must be >= 0 (0: no plane), got "
                            f"{self.plane}")
        if self.swag_samples is not None and self.swag_samples < 1:
            raise UserError(f"[experiment] swag_samples must be >= 1, got "
                            f"{self.swag_samples}")
        return out[0], out[1]
