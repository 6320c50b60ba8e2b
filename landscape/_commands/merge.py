"""``landscape merge``: the aligned average of several runs' solutions."""

from __future__ import annotations

import argparse

NAME = "merge"
ORDER = 39
HELP = "average several runs' solutions after aligning their hidden units"
DESCRIPTION = """\
Align solution --solutions of every run file to the first one's hidden units
(weight matching, then rounds of re-aligning each to the average of the
others until nothing changes; or activation matching), average the aligned
weights and recompute the BatchNorm statistics on the train data.  The
average is stored as solution --name of --out, a run file: created as a copy
of the first run (its data, model, solutions and history, without trajectories
and analyses) if it does not exist, so `landscape sharpness`, `surface` and
`compare` take it like any other solution.  All runs must be trained on the
same data (`landscape train --data-seed`).  A rerun with the same runs and
settings returns the stored solution; other runs or settings under an existing
--name need --force, and the names `landscape train` writes (sgd, swa,
swa_last, avg) are refused."""
EPILOG = """\
examples:
  landscape train --seed 0 --data-seed 0 --out runs/seed0.h5   # (and seeds 1, 2)
  landscape merge runs/seed0.h5 runs/seed1.h5 runs/seed2.h5 --out runs/merged.h5
  landscape sharpness runs/merged.h5 --solutions sgd,merged --measures width
  landscape compare runs/merged.h5 --solutions sgd,merged"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run files (HDF5) of the same model and data")
    p.add_argument("--solutions", default="sgd",
                   help="the solution to merge: one name for every run, or one per run "
                   "separated by commas (default: sgd)")
    p.add_argument("--method", default="weights", choices=["weights", "activations"],
                   help="weight matching or activation matching (default: weights)")
    p.add_argument("--samples", type=int, default=4096,
                   help="train inputs for activation matching (default: 4096)")
    p.add_argument("--seed", type=int, default=0, help="weight matching's seed (default: 0)")
    p.add_argument("--out", required=True,
                   help="run file to store the merged solution in (created if missing)")
    p.add_argument("--name", default="merged", help="solution name (default: merged)")
    p.add_argument("--force", action="store_true",
                   help="replace a stored --name merged from other runs or settings")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from landscape._errors import UserError
    from landscape.jobs import merge_runs

    if args.samples < 1:
        raise UserError(f"--samples must be positive, got {args.samples}")
    names = [s.strip() for s in args.solutions.split(",") if s.strip()]
    merge_runs(args.runs, args.out, solution=names[0] if len(names) == 1 else names,
               method=args.method,
               seed=args.seed, samples=args.samples, name=args.name, device=args.device,
               force=args.force, progress=not args.quiet, log=print)
    return 0
