"""Protocol ``controls``: its settings dataclass and constants."""

from __future__ import annotations

import dataclasses
from typing import Any

from landscape.experiments._settings import Settings, measure_default
from landscape.sharpness import (
    headlines,
)

#: The arms of the batch-size control, as methods of the results file.
ARMS = ("small_batch", "large_batch")


#: Relative tolerance of the deterministic solvers against their closed forms.
SOLVER_TOL = 1e-3


#: Standard errors a Monte Carlo estimate may lie from its closed form.
SEM_TOL = 3.0


#: The label of ASAM with ``asam_normalize = "weights"`` (the headline is the default).
ASAM_WEIGHTS_LABEL = "ASAM sharpness, T on weights only (ASAM's code)"


#: Relative change up to which a measure counts as invariant under rescaling
#: (float64 rounding; the solvers follow identical paths) or approximately so.
INVARIANT_TOL, APPROX_TOL = 1e-6, 0.05


@dataclasses.dataclass(frozen=True)
class ControlsSettings(Settings):
    """``[experiment]`` of the ``controls`` protocol (measure defaults: the registry's).

    Attributes:
        large_batch: Batch size of the large-batch arm.
        large_lr: Its learning rate.
        large_epochs: Its epochs.
        measure_samples: Train samples of every measure.
        trace_samples: Trace HVPs.
        trace_method: Trace estimator: ``hutchinson``, the committed report's and the
            one its closed-form row names (the API's default is Hutch++).
        directions: Directions of the width measure.
        dinh_model: The ReLU network of the reparametrization control.
        alphas: Its rescaling factors (besides 1).
        geometry_samples: Samples of the least-squares problem.
        pacbayes_target_loss: PAC-Bayes loss rise Δ on the least-squares problem.
        workers: Worker processes (default one per core).
    """

    large_batch: int = 2048
    large_lr: float = 0.4
    large_epochs: int = 200
    measure_samples: int = measure_default("samples")
    trace_samples: int = measure_default("trace_samples")
    trace_method: str = "hutchinson"
    directions: int = measure_default("directions")
    dinh_model: str = "mnist1d-mlp"
    alphas: tuple[float, ...] = (10.0, 0.1)
    geometry_samples: int = 200
    pacbayes_target_loss: float = 0.01
    workers: int | None = None


def _headlines() -> list[tuple[str, Any]]:
    """``(measure, headline)`` of every headline the reports tabulate."""
    return headlines()


def _measures() -> list[str]:
    return list(dict.fromkeys(m for m, _ in _headlines()))
