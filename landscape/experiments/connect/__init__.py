r"""Protocol ``connect``: paths between optima, FGE and SWAG over pairs of seeds.

``landscape reproduce connect`` (config ``experiments/connect.toml``).  Each
"seed" ``i`` of the runner is a **pair**: runs of training seeds ``2i`` and
``2i + 1``, both trained (``landscape train --swag``: the SGD baseline and the
SWA run with SWAG moments) on the same data (that of seed ``2i``), so that the
two SGD solutions differ by their initialisation and minibatch order only.
Per pair:

1. **Curve vs line** (Garipov et al. 2018): a curve between the two SGD
   solutions (:func:`landscape.jobs.connect_runs`), its profile and the
   straight line's at ``points`` values of ``t``, and their barriers
   (max over ``t`` minus the endpoints' mean) of train loss (L2-regularized),
   train and test error and test loss; for the first pair also the plane
   through both endpoints and the bend (``plane`` steps; 0: none).
2. **Alignment** (Ainsworth et al. 2022; Jordan et al. 2022): weight matching
   of the second solution to the first and the barriers of the aligned line
   and of the aligned line with REPAIR (:func:`landscape.jobs.align_runs`).
3. **FGE** from the first run's SGD solution (:func:`landscape.jobs.fge_run`)
   against that SGD solution, its run's SWA, and the ensemble of the two
   independently trained SGD solutions of the pair.
4. **SWAG** of the first run (:func:`landscape.jobs.swag_run`): the Bayesian
   model average's test accuracy, NLL and expected calibration error against
   SWA and SGD, all through the same evaluation path.

Every number in the report is a mean over pairs with a 95 % Student-t interval;
comparisons are paired over pairs, with the calls of :mod:`landscape.stats`.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments.connect.report import FIGURES, _figures, _report, verdicts  # noqa: F401
from landscape.experiments.connect.run import run_connect
from landscape.experiments.connect.settings import (  # noqa: F401
    ALIGNMENT,
    BARRIERS,
    METHODS,
    PATHS,
    ConnectSettings,
)

register_protocol(Protocol(
    name="connect", title="paths between optima, FGE and SWAG over pairs of seeds",
    settings=ConnectSettings, run=run_connect, figures=_figures, report=_report))


__all__ = ["ALIGNMENT", "ConnectSettings", "run_connect", "verdicts"]
