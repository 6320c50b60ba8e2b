r"""Protocol ``paper``: the SWA paper's analyses (Izmailov et al. 2018), over seeds.

``landscape reproduce paper`` (config ``experiments/paper.toml``; ``landscape demo``):

1. For every seed, one ``landscape train`` run: the SGD baseline with the
   paper's decaying schedule over ``epochs`` and the SWA run (``swa_start``,
   constant ``swa_lr``) of the same budget; and SWA runs of longer budgets
   (``budgets`` × ``epochs``, the paper's 1.25 and 1.5 budgets) — the accuracy
   table.
2. For every seed, flatness measures of the SGD and the SWA solution
   (every registered measure, :func:`landscape.jobs.measure_solution`) and the
   train–test gap with the shift along the SGD→SWA line
   (:func:`landscape.jobs.measure_gap`).
3. On seed 0, the surfaces of the paper's figures: random 2D slices around SWA
   and SGD, the plane through SGD, SWA and an early point of the trajectory,
   PCA of the trajectory, the SGD→SWA line in L2 distance, and train loss /
   test error along random unit rays from each solution (the paper's width
   figure).

Every number in the report is a mean over seeds with a 95 % Student-t interval;
SGD-vs-SWA differences are paired over seeds.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments.paper.report import (  # noqa: F401
    FIGURES,
    _figures,
    _flatness_verdicts,
    _report,
    paper_figures,
    report_sections,
    scalar_table,
    verdicts,
)
from landscape.experiments.paper.run import paper_surfaces, ray_profiles, run_paper  # noqa: F401
from landscape.experiments.paper.settings import MEASURES, PaperSettings  # noqa: F401

register_protocol(Protocol(
    name="paper", title="the SWA paper's analyses (Izmailov et al. 2018), SGD vs SWA",
    settings=PaperSettings, run=run_paper, figures=_figures, report=_report))
