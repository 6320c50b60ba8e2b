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


def run_demo(out: str | Path = "runs/demo.h5", *, out_dir: str | Path = "figures/paper",
             runs_dir: str | Path = "runs/paper", seeds: int | None = None,
             quick: bool = False, data_root: str | None = None,
             progress: bool = False) -> Path:
    """Run the ``paper`` experiment with its first seed in ``out``; print the tables.

    The last line compares the new numbers with the results file that was in
    ``out_dir`` before (in a checkout: the committed one): identical, or the
    largest difference in units of the earlier 95 % half-width.

    Args:
        out: Run file of the first seed (surfaces and measures included).
        out_dir: Folder of the results file, figures and report.
        runs_dir: Folder of the other seeds' run files.
        seeds: Number of seeds (default: the config's).
        quick: The config's tiny smoke-test sizes.
        data_root: Cache folder for MNIST-1D (default: the config's).
        progress: Progress bars (only when the seeds run in one process).

    Returns:
        The report path.
    """
    from landscape.experiments import compare_results, reproduce
    from landscape.jobs import compare_solutions, format_comparison
    from landscape.store import read_results, run_solutions_table

    out = Path(out)
    command = shlex.join(
        ["landscape", "demo", "--out", str(out), "--runs-dir", str(runs_dir), "--out-dir",
         str(out_dir)]
        + (["--seeds", str(seeds)] if seeds is not None else [])
        + (["--quick"] if quick else [])
        + (["--data-root", str(data_root)] if data_root else []))
    overrides = {"data_root": data_root} if data_root else None
    earlier_path = Path(out_dir) / "results.h5"
    earlier = read_results(earlier_path) if earlier_path.is_file() else None
    path = reproduce(EXPERIMENT, seeds=seeds, out_dir=out_dir, runs_dir=runs_dir,
                     quick=quick, overrides=overrides, command=command, main_run=out,
                     progress=progress, log=lambda m: print(m, flush=True))
    print(run_solutions_table(out))
    print(format_comparison(compare_solutions(out, ("sgd", "swa"))))
    print(f"[demo] first seed's run file: {out}  (`landscape info {out}`)")
    print(f"[demo] report: {path}")
    print("[demo] " + (f"first run into {earlier_path.parent}: no earlier results to "
                       "compare with" if earlier is None else
                       compare_results(earlier, read_results(earlier_path),
                                       what=f"the earlier {earlier_path}")))
    return path
