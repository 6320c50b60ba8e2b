"""The SWA family beyond one average: SWA-Gaussian posteriors and FGE ensembles.

Pure like :mod:`landscape.paths`: models, weights and data in, dataclasses out.

* :mod:`~landscape.posterior.swag` — SWAG moments (Maddox et al. 2019), collected
  during training or from stored iterates; samples, Bayesian model averaging,
  the SWAG subspace as a surface;
* :mod:`~landscape.posterior.fge` — Fast Geometric Ensembling (Garipov et al. 2018);
* :mod:`~landscape.posterior.ensemble` — accuracy, NLL and expected calibration
  error of a model or an ensemble's mean softmax.

:mod:`landscape.store.posterior` stores them; :mod:`landscape.jobs.posterior`
runs them on run files.
"""

from landscape.posterior.ensemble import (
    ECE_BINS,
    EnsembleAverage,
    PredictiveMetrics,
    check_classifier,
    expected_calibration_error,
    predict_proba,
    predictive_metrics,
)
from landscape.posterior.fge import (
    FGE_COLUMNS,
    FGEResult,
    FGEState,
    fge,
    fge_learning_rate,
    is_snapshot_step,
)
from landscape.posterior.swag import (
    SWAG_RANK,
    SwagBMA,
    SwagCollector,
    SwagMoments,
    solution_metrics,
    swag_bma,
    swag_directions,
    swag_grid,
    swag_moments,
    swag_sample,
    swag_surface,
)

__all__ = ["ECE_BINS", "FGE_COLUMNS", "SWAG_RANK", "EnsembleAverage", "FGEResult",
           "FGEState", "PredictiveMetrics", "SwagBMA", "SwagCollector", "SwagMoments",
           "check_classifier", "expected_calibration_error", "fge", "fge_learning_rate",
           "is_snapshot_step", "predict_proba", "predictive_metrics", "solution_metrics",
           "swag_bma", "swag_directions", "swag_grid", "swag_moments", "swag_sample",
           "swag_surface"]
