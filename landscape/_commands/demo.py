"""``landscape demo``: the main job on the embedded MNIST-1D data (no download)."""

from __future__ import annotations

import argparse

NAME = "demo"
ORDER = 5
HELP = "run the main job on the embedded MNIST-1D data (train, analyse, plot, report)"
DESCRIPTION = """\
The main job, end to end, on MNIST-1D generated offline (no download): the
`paper` experiment (`landscape reproduce paper`).  Per seed it trains the SGD
baseline and the SWA run (and SWA at 1.25 and 1.5 budgets), measures the
flatness of both solutions (Hessian spectrum, trace, sharpness, PAC-Bayes
sigma, random-direction width) and the train-test gap; on the first seed it
computes the surfaces of the figures.  Writes the first seed's run file
(--out), the other seeds' run files (--runs-dir) and REPORT.md with figures
and mean +- 95 % CI over seeds (--out-dir).  Seeds run in parallel processes,
one per CPU core, each printing a line per finished stage; the main process
prints one per finished seed with an ETA.  Every stage is resumable: run it
again after an interruption and finished stages are skipped.  At the end the
demo compares its numbers with the committed figures/paper/results.h5."""
EPILOG = """\
examples:
  landscape demo                                      # what `make demo` runs
  landscape demo --seeds 2 --out-dir /tmp/report      # fewer seeds, elsewhere
  landscape demo --quick --out /tmp/q.h5 --runs-dir /tmp/q --out-dir /tmp/q  # smoke test"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo.h5",
                   help="run file of the first seed (default: %(default)s)")
    p.add_argument("--runs-dir", default="runs/paper",
                   help="folder for the other seeds' run files (default: %(default)s)")
    p.add_argument("--out-dir", default="figures/paper",
                   help="folder for results.h5, the figures and REPORT.md "
                        "(default: %(default)s)")
    p.add_argument("--seeds", type=int, help="number of seeds 0..N-1 (default: the "
                   "config's, 5)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes from the config's [experiment.quick] (a smoke test)")
    p.add_argument("--data-root", help="cache folder for MNIST-1D (default: data)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (they show only when seeds run in one process)")


def run(args: argparse.Namespace) -> int:
    from landscape._demo import run_demo

    run_demo(args.out, out_dir=args.out_dir, runs_dir=args.runs_dir, seeds=args.seeds,
             quick=args.quick, data_root=args.data_root, progress=not args.quiet)
    return 0
