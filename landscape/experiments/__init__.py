"""Experiments: protocols over seeds with results files and reports.

``landscape reproduce NAME`` runs a shipped config (:func:`available`) or any
TOML file through its protocol:

* ``seed000`` — Optuna + k-fold CV, SGD with vs without SWA (:mod:`.seed000`);
* ``seed004`` — checkpoints vs their average (:mod:`.seed004`);
* ``paper`` — the SWA paper's analyses over seeds (:mod:`.paper`);
* ``controls`` — positive and negative controls of every flatness measure
  (:mod:`.controls`);
* ``align`` — barriers modulo permutation over MLP widths, merged solutions vs
  SWA and SGD, over pairs of seeds (:mod:`.align`);
* ``connect`` — curves between optima, alignment, FGE and SWAG over pairs of
  seeds (:mod:`.connect`);
* ``regimes`` — SWA vs SGD across label noise, SWA lr, width, budget and data
  size (:mod:`.regimes`).

Every protocol module registers itself; :func:`reproduce` writes
``OUT/NAME/results.h5``, the figures and ``OUT/NAME/REPORT.md``.
"""

from landscape.experiments import align, connect, controls, paper, regimes, seed000, seed004
from landscape.experiments._common import (
    CONFIGS_DIR,
    PROTOCOLS,
    Experiment,
    Fit,
    Protocol,
    available,
    compare_results,
    early_stop,
    fit,
    fold,
    load_experiment,
    register_protocol,
    reproduce,
    write_report,
    write_results,
)
from landscape.experiments.seed000 import tune
from landscape.experiments.seed004 import evaluate_checkpoints
from landscape.stats import comparison, verdict

__all__ = ["CONFIGS_DIR", "PROTOCOLS", "Experiment", "Fit", "Protocol", "align", "available",
           "compare_results", "comparison", "connect", "controls", "early_stop",
           "evaluate_checkpoints",
           "fit", "fold", "load_experiment", "paper", "regimes", "register_protocol",
           "reproduce", "seed000", "seed004", "tune",
           "verdict", "write_report", "write_results"]
