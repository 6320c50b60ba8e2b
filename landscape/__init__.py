"""landscape: the loss surface around a solution, for SGD vs SWA or any two models.

The public API, by stage (``landscape.__all__`` is grouped the same way):

* **data and evaluation** — your data as ``(inputs, targets)`` tensors or a
  ``DataLoader``; :class:`Evaluator` (loss, and accuracy for classifiers, at
  any weights) and :class:`EmpiricalRisk` (value, gradient and Hessian-vector
  products accumulated over batches) with any ``criterion(output, target)``;
* **directions** — random with filter/layer normalization, line, plane, PCA;
* **surfaces** — 1D/2D grids over those directions (:func:`random_surface`, ...);
* **measures** — every registered flatness/curvature measure (:func:`measure`,
  :func:`measures`), and the pure maths behind them;
* **gap** — the train–test gap along a line and a trajectory;
* **curves** — mode-connecting curves between two solutions (Bézier,
  polygonal chain; :func:`connect`, :func:`curve_profile`) and their barriers;
* **posteriors and ensembles** — SWA-Gaussian (:class:`SwagCollector`,
  :func:`swag_sample`, :func:`swag_bma`, :func:`swag_surface`) and Fast
  Geometric Ensembling (:func:`fge`), with accuracy, NLL and expected
  calibration error (:func:`predictive_metrics`);
* **alignment** — hidden units permuted into another network's order
  (:func:`align`), lines with REPAIR (:func:`align_paths`), aligned averages
  (:func:`merge`);
* **averaging** — checkpoint averaging on ``torch.optim.swa_utils``;
* **training** — SGD and SWA into a run file (:func:`landscape.train.train`);
* **save / load / plot** — results into a run file or a standalone HDF5 file
  (:func:`save`), back (:func:`load`), and figures from those files
  (``plot_*``; matplotlib is imported only when one is used).

Example:
    >>> import torch, landscape as ls
    >>> net = torch.nn.Linear(4, 3)
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> ls.measure(net, (x, y), "trace", trace_samples=10).trace > 0
    True
"""

from typing import Any

from landscape import _malloc
from landscape._errors import UserError
from landscape.averaging import average_checkpoints
from landscape.config import ConnectConfig, FGEConfig, TrainConfig
from landscape.data import StreamBatches, TensorBatches, TensorData, as_batches, load_dataset
from landscape.directions import (
    Normalization,
    line_direction,
    normalize_direction,
    pca_directions,
    plane_basis,
    project,
    random_direction,
)
from landscape.evaluate import BNMode, EmpiricalRisk, Evaluator, Loss, Metrics
from landscape.gap import LineGap, line_gap, metric_gaps, train_test_shift, trajectory_gaps
from landscape.models import build_model
from landscape.params import ParamLayout
from landscape.paths import (
    AlignedPaths,
    Alignment,
    Connection,
    Curve,
    CurveProfile,
    Merged,
    PermutationSpec,
    align,
    align_paths,
    barrier,
    connect,
    curve_plane_coords,
    curve_plane_grid,
    curve_profile,
    merge,
    permutation_spec,
    train_curve,
)
from landscape.posterior import (
    EnsembleAverage,
    FGEResult,
    PredictiveMetrics,
    SwagBMA,
    SwagCollector,
    SwagMoments,
    expected_calibration_error,
    fge,
    predict_proba,
    predictive_metrics,
    swag_bma,
    swag_directions,
    swag_grid,
    swag_moments,
    swag_sample,
    swag_surface,
)
from landscape.sharpness import (
    MeasureConfig,
    MeasureResult,
    adaptive_sharpness,
    average_sharpness,
    epsilon_sharpness,
    hessian_smallest_eigenvalue,
    hessian_top_eigenvalues,
    hutchinson_trace,
    hutchpp_trace,
    measure,
    median_ci,
    pacbayes_sigma,
    random_widths,
    sam_sharpness,
    slq_density,
    width_ratio,
)
from landscape.sharpness import specs as measures
from landscape.store import load, save
from landscape.surface import (
    Surface,
    SurfaceGrid,
    SurfaceInterrupted,
    evaluate_grid,
    line_grid,
    line_surface,
    parse_grid,
    pca_grid,
    pca_surface,
    plane_grid,
    plane_surface,
    random_grid,
    random_surface,
)

__version__ = "0.1.0"

_malloc.configure()  # before any large buffer: freed activations are reused, not unmapped

_PLOTS = ("plot_alignment", "plot_all", "plot_checkpoints", "plot_curve_plane",
          "plot_curve_profiles",
          "plot_eigenvalue_density", "plot_fge", "plot_history",
          "plot_swag_calibration", "plot_swag_samples",
          "plot_paired_ratios", "plot_rays", "plot_regimes",
          "plot_surface",
          "plot_surface_1d", "plot_surface_2d", "plot_surface_3d", "plot_swa_vs_sgd",
          "plot_top_eigenvalues", "plot_width_distribution", "save_figure")


def __getattr__(name: str) -> Any:
    """The ``plot_*`` functions, imported (with matplotlib) on first use.

    Raises:
        AttributeError: For any other unknown name.
    """
    if name in _PLOTS:
        from landscape import plot

        return getattr(plot, name)
    if name == "plot_log_ratio_bars":  # the controls protocol's own figure
        from landscape.experiments.controls import figures

        return figures.plot_log_ratio_bars
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 (grouped by stage, not sorted)
    # data and the one evaluation path
    "as_batches", "TensorBatches", "StreamBatches", "TensorData", "load_dataset",
    "build_model", "Evaluator", "EmpiricalRisk", "Loss", "Metrics", "BNMode",
    "ParamLayout",
    # directions
    "Normalization", "random_direction", "normalize_direction", "line_direction",
    "plane_basis", "pca_directions", "project",
    # surfaces
    "Surface", "SurfaceGrid", "random_surface", "line_surface", "plane_surface",
    "pca_surface", "random_grid", "line_grid", "plane_grid", "pca_grid", "evaluate_grid",
    "parse_grid", "SurfaceInterrupted",
    # measures
    "measure", "measures", "MeasureResult", "MeasureConfig", "hessian_top_eigenvalues",
    "hessian_smallest_eigenvalue", "hutchinson_trace", "hutchpp_trace", "slq_density",
    "epsilon_sharpness", "sam_sharpness", "adaptive_sharpness", "average_sharpness",
    "pacbayes_sigma", "random_widths", "median_ci", "width_ratio",
    # the train-test gap
    "line_gap", "trajectory_gaps", "train_test_shift", "metric_gaps", "LineGap",
    # curves between solutions
    "connect", "curve_profile", "train_curve", "barrier", "Curve", "CurveProfile",
    "Connection", "ConnectConfig", "curve_plane_grid", "curve_plane_coords",
    # posteriors and ensembles: SWAG, FGE, calibration
    "SwagCollector", "SwagMoments", "swag_moments", "swag_sample", "swag_bma", "SwagBMA",
    "swag_directions", "swag_grid", "swag_surface", "fge", "FGEConfig", "FGEResult",
    "predict_proba", "predictive_metrics", "expected_calibration_error",
    "PredictiveMetrics", "EnsembleAverage",
    # optima modulo permutation: alignment, REPAIR, merged solutions
    "align", "align_paths", "merge", "permutation_spec", "Alignment", "AlignedPaths",
    "Merged", "PermutationSpec",
    # checkpoint averaging (SGD/SWA training into run files: landscape.train.train)
    "average_checkpoints", "TrainConfig",
    # results: save, load, plot
    "save", "load", "plot_alignment", "plot_all", "plot_checkpoints", "plot_eigenvalue_density",
    "plot_history", "plot_log_ratio_bars", "plot_paired_ratios", "plot_rays", "plot_regimes",
    "plot_surface", "plot_surface_1d", "plot_surface_2d", "plot_surface_3d",
    "plot_swa_vs_sgd", "plot_top_eigenvalues", "plot_width_distribution", "save_figure",
    "plot_curve_profiles", "plot_curve_plane", "plot_swag_calibration", "plot_swag_samples",
    "plot_fge",
    # errors
    "UserError",
]
