"""Analyses of run files: each reads a run file through :mod:`landscape.store`,
runs the pure analysis, and stores the result back, resumably.

* :func:`compute_surface` — a surface of stored points, resumable after a kill
  and sharded over ``torchrun`` ranks;
* :func:`measure_solution` / :func:`compare_solutions` — registered flatness
  measures of stored solutions, and two solutions side by side;
* :func:`measure_gap` — the train–test gap per solution, per trajectory point
  and along a line;
* :func:`connect_runs` — a mode-connecting curve between two stored solutions,
  its profile beside the line's and the barriers, resumable after a kill;
* :func:`swag_run` / :func:`fge_run` — SWAG's Bayesian model average and FGE
  ensembles, with accuracy, NLL and calibration against SWA and SGD;
* :func:`align_runs` / :func:`merge_runs` — two solutions aligned modulo
  permutation with their line profiles, and the aligned average of several runs;
* :func:`load_run_model` — the model and data a run file was trained with.
"""

from landscape.jobs._run import load_run_model
from landscape.jobs.align import align_runs, merge_runs
from landscape.jobs.connect import connect_runs
from landscape.jobs.gap import measure_gap
from landscape.jobs.measures import compare_solutions, format_comparison, measure_solution
from landscape.jobs.posterior import fge_run, swag_run
from landscape.jobs.surface import SurfaceConfig, compute_surface, default_name

__all__ = ["SurfaceConfig", "align_runs", "compare_solutions", "compute_surface",
           "connect_runs", "default_name", "fge_run", "format_comparison",
           "load_run_model", "measure_gap", "measure_solution", "merge_runs", "swag_run"]
