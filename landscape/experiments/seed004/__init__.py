r"""Protocol ``seed004``: the SVHN blog post's checkpoint averaging.

Constant lr, no SWA run, every epoch recorded, post-hoc average of the
checkpoints of epochs ``A..B`` (``average_epochs``); each checkpoint's test
accuracy is stored in the run file (``/measures/checkpoints``) by
:func:`evaluate_checkpoints`, and the averaged model is compared with the mean
and the last of its checkpoints.
"""

from __future__ import annotations

from landscape.experiments._common import Protocol, register_protocol
from landscape.experiments._settings import Settings
from landscape.experiments.seed004.report import (  # noqa: F401
    FIGURES,
    _figures,
    _report,
    verdicts,
)
from landscape.experiments.seed004.run import evaluate_checkpoints, run_seed004  # noqa: F401

register_protocol(Protocol(
    name="seed004", title="SmallCNN, checkpoints vs their average",
    settings=Settings, run=run_seed004, figures=_figures, report=_report))
