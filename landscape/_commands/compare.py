"""``landscape compare``: two solutions' stored measures side by side."""

from __future__ import annotations

import argparse

NAME = "compare"
ORDER = 40
HELP = "SGD vs SWA: widths with the ratio and its bootstrap 95 %% CI, and other measures"
DESCRIPTION = """\
Print the measures stored by `landscape sharpness` for two solutions side by
side: the median width along random directions of each, with percentile
bootstrap intervals, and the ratio of medians B/A with its bootstrap interval
(paired when both used the same directions); and, where stored, the top and
smallest Hessian eigenvalues, the trace, epsilon-, SAM, ASAM and average-case
sharpness and the PAC-Bayes sigma and sigma' with ratios (delta-method
intervals where a standard error is stored).  The table is stored under
/measures/compare.

Where the file holds them, it also prints the barriers of the line and of the
trained curve of each stored curve (`landscape connect`; an analysis file of
curves alone works too), the barriers of each alignment (`landscape align`:
raw line, aligned, aligned + REPAIR, curve), the test accuracy, NLL and expected calibration
error of SWAG's model average beside SWA and SGD (`landscape swag`), and of
each FGE ensemble beside SWA of its snapshots and its start (`landscape fge`)."""
EPILOG = """\
examples:
  landscape sharpness runs/demo.h5 --solutions sgd,swa --measures width,hessian
  landscape compare runs/demo.h5
  landscape compare runs/demo.h5 --solutions sgd,avg --level 0.9
  landscape compare runs/curves.h5        # barriers of the curves stored there"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="run file (HDF5) with measures of both solutions")
    p.add_argument("--solutions",
                   help="A,B: ratios are B/A (default: sgd,swa, else the two solutions "
                   "the file holds)")
    p.add_argument("--level", type=float, default=0.95,
                   help="confidence level of the intervals (default: 0.95)")
    p.add_argument("--n-boot", type=int, default=2000,
                   help="bootstrap resamples (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--no-write", action="store_true",
                   help="print only; do not store /measures/compare")


def run(args: argparse.Namespace) -> int:
    from landscape._errors import UserError
    from landscape.jobs import compare_solutions, format_comparison

    if not 0 < args.level < 1:
        raise UserError(f"--level must lie in (0, 1), got {args.level}")
    if args.n_boot < 1:
        raise UserError(f"--n-boot must be >= 1, got {args.n_boot}")
    from landscape import store
    from landscape.jobs.posterior import format_paths

    paths = format_paths(args.file)
    if store.file_kind(args.file) != store.RUN_KIND and paths:
        print(paths)  # an analysis file of `landscape connect --out`: its curves only
        return 0
    if args.solutions is None:
        with store.open_run(args.file) as f:
            names = store.solution_names(f)
            has_measures = bool(store.measured_solutions(f))
        if not has_measures and paths:
            print(paths)
            return 0
        sols = list(store.solution_pair(names, "compare"))
    else:
        sols = [s.strip() for s in args.solutions.split(",") if s.strip()]
    rows = compare_solutions(args.file, sols, level=args.level, n_boot=args.n_boot,
                             seed=args.seed, write=not args.no_write)
    print(format_comparison(rows, sols, args.level))
    if paths:
        print()
        print(paths)
    return 0
