r"""Protocol ``controls``: positive and negative controls of every flatness measure.

``landscape reproduce controls`` (config ``experiments/controls.toml``) asks, for
every registered headline measure (λ_max, trace, ε-sharpness, SAM, ASAM,
average sharpness, PAC-Bayes σ and σ′, width), whether it passes three
controls whose answer is known before measuring:

1. **Batch size** (positive; Keskar et al. 2017): per seed, the same
   ``mnist1d-cnn`` on the same data from the same initialization, trained with
   small batches and with large batches (no SWA run) to ~100 % train accuracy.
   A measure passes if it ranks the large-batch solution sharper beyond noise:
   the paired ratio large/small over seeds (geometric mean of the per-seed
   ratios, 95 % Student-t interval on their logarithms) excludes 1 in the
   sharper direction.
2. **Known geometry** (positive): linear regression with 4 inputs and a bias,
   squared loss (``nn.MSELoss``), at its least-squares minimum, where the loss
   is exactly quadratic with :math:`H = 2A^\top A/N`, :math:`A = [X, 1]`.  Every
   measure against its closed form (``reference/sharpness-measures.md`` §9):
   solvers (eigenvalues, SAM/ASAM ascent, ε-sharpness, width bisection) within
   a relative 1e-3, the solvers' own tolerance; Monte Carlo estimators (trace,
   average sharpness, σ, σ′) within 3 of their reported standard errors.  ASAM
   is measured with both ``asam_normalize`` choices (T on every entry, T on
   weights only), each against its own closed form; the report says whether
   ε-sharpness evaluated every box vertex (exact here) or is a lower bound.
3. **Reparametrization** (negative; Dinh et al. 2017): a trained ReLU MLP
   rescaled layer-wise, first layer's weight and bias by α, second layer's
   weight by 1/α, which leaves the function unchanged (checked: the float64
   loss).  Every measure at α ∈ {1, 10, 0.1}; λ_max, trace, ε-sharpness, SAM,
   average sharpness, σ and width should change, ASAM with T on every entry
   and η = 0 and σ′ with ε = 0 should not (with the defaults η = 0.01,
   ε = 1e-3 only approximately); ASAM with T on weights only (ASAM's code)
   changes, because the rescaling also multiplies a bias, where T = 1.

Everything finished is stored as it is done and never recomputed on a rerun:
the training runs and their measures in per-seed run files
(``RUNS/small-seedS.h5``, ``large-seedS.h5``, ``mlp-seedS.h5``; measures of
the rescaled networks under ``/measures/dinh_alphaA``, the extra invariant
variants under ``/controls/dinh/...``) and the known-geometry measures in an
analysis file per seed (``RUNS/geometry-seedS.h5``).  Seeds run in ``workers``
processes, one torch thread each.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments.controls.report import (  # noqa: F401
    FIGURES,
    _figures,
    _geometry_verdicts,
    _report,
    _summary,
    batch_verdicts,
    controls_figures,
    dinh_table,
    report_sections,
)
from landscape.experiments.controls.run import (
    GEOMETRY_ROWS,
    GEOMETRY_VARIANTS,
    known_geometry,
    reparametrization,
    run_controls,
)
from landscape.experiments.controls.settings import (  # noqa: F401
    APPROX_TOL,
    ARMS,
    ASAM_WEIGHTS_LABEL,
    INVARIANT_TOL,
    SEM_TOL,
    SOLVER_TOL,
    ControlsSettings,
)

register_protocol(Protocol(
    name="controls",
    title="positive and negative controls of the flatness measures",
    settings=ControlsSettings, run=run_controls, figures=_figures, report=_report))


__all__ = ["ASAM_WEIGHTS_LABEL", "FIGURES", "GEOMETRY_ROWS", "GEOMETRY_VARIANTS",
           "batch_verdicts", "controls_figures", "dinh_table", "known_geometry",
           "reparametrization", "run_controls"]
