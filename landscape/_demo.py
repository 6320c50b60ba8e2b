"""The main job behind ``landscape demo`` / ``make demo``: the ``paper`` experiment.

Runs the shipped ``paper`` experiment on MNIST-1D (generated offline): per seed, the
SGD baseline and the SWA run, SWA at longer budgets, the flatness measures of
both solutions and the train–test gap; on the first seed (``runs/demo.h5``)
the figures' surfaces and rays; then the figures and ``REPORT.md``.  Every
stage resumes: a second call skips what is finished.
"""

from __future__ import annotations

import shlex
from pathlib import Path

#: The experiment the demo runs.
EXPERIMENT = "paper"


def run_demo(out: str | Path = "runs/demo.h5", *, report: str | Path = "figures",
             runs: str | Path = "runs/paper", seeds: int | None = None,
             quick: bool = False, data_root: str | None = None,
             progress: bool = False) -> Path:
    """Run the ``paper`` experiment with its first seed in ``out``; print the tables.

    Args:
        out: Run file of the first seed (surfaces and measures included).
        report: Parent folder of the report (``REPORT/paper/``).
        runs: Folder of the other seeds' run files.
        seeds: Number of seeds (default: the config's).
        quick: The config's tiny smoke-test sizes.
        data_root: Cache folder for MNIST-1D (default: the config's).
        progress: Progress bars (only when the seeds run in one process).

    Returns:
        The report path.
    """
    from landscape.experiments import reproduce
    from landscape.jobs import compare_solutions, format_comparison
    from landscape.store import run_solutions_table

    out = Path(out)
    command = shlex.join(
        ["landscape", "demo", "--out", str(out), "--runs", str(runs), "--report", str(report)]
        + (["--seeds", str(seeds)] if seeds is not None else [])
        + (["--quick"] if quick else [])
        + (["--data-root", str(data_root)] if data_root else []))
    overrides = {"data_root": data_root} if data_root else None
    path = reproduce(EXPERIMENT, seeds=seeds, out=report, runs=runs, quick=quick,
                     overrides=overrides, command=command, main_run=out, progress=progress,
                     log=lambda m: print(m, flush=True))
    print(run_solutions_table(out))
    print(format_comparison(compare_solutions(out, ("sgd", "swa"))))
    print(f"[demo] first seed's run file: {out}  (`landscape info {out}`)")
    print(f"[demo] report: {path}")
    return path
