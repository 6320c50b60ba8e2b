r"""Protocol ``align``: optima modulo permutation over pairs of seeds and MLP widths.

``landscape reproduce align`` (config ``experiments/align.toml``, MNIST-1D;
``experiments/align_mnist.toml``, real MNIST).  Each "seed" ``i`` of the runner
is a **pair**: runs of training seeds ``2i`` and ``2i + 1`` trained on the same
data (that of seed ``2i``), each run file holding the SGD baseline and the SWA
run.  Per pair:

1. **Width sweep** (Entezari et al. 2021; Ainsworth et al. 2022, "Git Re-Basin";
   Jordan et al. 2022, "REPAIR"): an MLP with two hidden layers of
   ``base_width × k`` units for each multiple ``k``; for the SGD (and SWA)
   solutions of both seeds, the barriers (max over ``t`` minus the endpoints'
   mean) of the raw line, of the line after weight matching and of the aligned
   line with REPAIR (:func:`landscape.jobs.align_runs`), test error and train
   loss among them.  The report asks whether alignment removes the barrier and
   whether the aligned barrier shrinks with width (widest vs base, paired).
2. **Merged vs SWA vs SGD** at the base width (and for the data set's CNN with
   ``cnn = true``): the aligned average of the pair's two SGD solutions
   (:func:`landscape.jobs.merge_runs`) against seed ``2i``'s SGD and SWA on test
   accuracy and the flatness measures (:func:`landscape.jobs.measure_solution`,
   the registry's defaults): λ_max, trace, median width, PAC-Bayes σ.

Every number in the report is a mean over pairs with a 95 % Student-t interval;
comparisons are paired over pairs, with the calls of :mod:`landscape.stats`;
:func:`verdicts` gives them to :mod:`landscape.experiments.stability`.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments.align.report import FIGURES, _figures, _report, verdicts
from landscape.experiments.align.run import measure_keys, run_align
from landscape.experiments.align.settings import (
    BARRIERS,
    PATHS,
    SOLUTIONS,
    AlignSettings,
    alignment_name,
    width_method,
)

register_protocol(Protocol(
    name="align", title="optima modulo permutation: barriers over MLP widths, merged "
    "solutions vs SWA and SGD, over pairs of seeds",
    settings=AlignSettings, run=run_align, figures=_figures, report=_report))


__all__ = ["BARRIERS", "FIGURES", "PATHS", "SOLUTIONS", "AlignSettings", "alignment_name",
           "measure_keys", "run_align", "verdicts", "width_method"]
