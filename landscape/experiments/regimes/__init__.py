r"""Protocol ``regimes``: where does SWA beat SGD, and where not?

``landscape reproduce regimes`` (config ``experiments/regimes.toml``) trains SGD and
SWA at matched budgets (same initialisation, same epochs; the SWA paper's
schedules, :mod:`landscape.train`) in *cells* of a design over the factors the
literature ties to SWA's gains (Izmailov et al. 2018; label noise: Guo et al.
2023, "Stochastic Weight Averaging Revisited"):

* each ``[experiment.factors]`` entry is one factor, a list of levels; a level
  is a table of :class:`landscape.config.TrainConfig` overrides of the base
  config (the top-level keys) with an optional display ``label``;
* one factor at a time is varied around the base point (the cell of the base
  config is shared by every factor), plus the two-factor ``map`` (every pair
  of levels of two named factors).

Per cell and seed (one run file each, ``RUNS/<cell hash>/seedS.h5``): the test
accuracy of the SGD solution and of the SWA average, and the median train-loss
width of each along random unit directions (the ``width`` measure,
:mod:`landscape.sharpness.width`).  Per cell: the accuracy difference SWA − SGD
paired over seeds and the width ratio SWA/SGD, each a mean over seeds with a
95 % Student-t interval.  The report's paragraph is generated from these
intervals; the cell with the largest significantly positive accuracy
difference ("the regime where SWA helps") is stored in the results file
(``extra.regime``) with the overrides that put the ``paper`` experiment there,
and written as ``paper_at_regime.toml`` beside the report.

Resumable: a finished (cell, seed) keeps its summary in its run file (group
``/regimes``) and is not recomputed; a killed training run resumes from its
last epoch.  Units run in ``[experiment] workers`` processes (one torch thread
each), largest first; a progress line follows every finished cell.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments.regimes.report import (  # noqa: F401
    FIGURES,
    findings,
    regime_lines,
    regimes_figures,
    regimes_report,
    tables,
)
from landscape.experiments.regimes.run import (  # noqa: F401
    cell_folder,
    cell_key,
    design,
    factor_title,
    find_regime,
    paper_overrides,
    run_regimes,
    run_unit,
    summarize,
    write_paper_toml,
)
from landscape.experiments.regimes.settings import METRICS, SUMMARY_GROUP, RegimesSettings  # noqa: F401

register_protocol(Protocol(
    name="regimes", title="where SWA beats SGD (label noise, SWA lr, width, budget, data)",
    settings=RegimesSettings, run=run_regimes, figures=regimes_figures, report=regimes_report))
