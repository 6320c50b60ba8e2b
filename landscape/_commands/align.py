"""``landscape align``: two solutions modulo permutation, and the barriers of their lines."""

from __future__ import annotations

import argparse

NAME = "align"
ORDER = 38
HELP = "permute B's hidden units into A's order; barriers of the raw, aligned and REPAIRed lines"
DESCRIPTION = """\
Find the permutation of the hidden units of solution --solution-b of run file
B that brings it closest to solution --solution-a of run file A (the function
of B is unchanged): weight matching (--method weights, Ainsworth et al. 2022;
no data) or activation matching (--method activations, correlations of the
two networks' activations on --samples train inputs).  The permutation groups
are traced from the model (Linear, Conv including depthwise, BatchNorm,
activations, pooling, dropout, flatten, residual additions, squeeze-and-
excitation products: torchvision's ResNets, VGGs, MobileNets and
EfficientNets trace).

Then the straight line from A to B, the line from A to the aligned B and,
with --repair, the aligned line with REPAIR (each hidden layer's channels
rescaled to the interpolated endpoints' mean and std, Jordan et al. 2022) are
evaluated at --points values of t, BN statistics recomputed at each point; the
barrier max_t e(t) - (e(0) + e(1))/2 is reported for the loss and the error.
Everything goes to /alignments/NAME of --out (an analysis file, created if
missing); a curve of `landscape connect` between the same endpoints stored in
--out is reported beside them."""
EPILOG = """\
examples:
  landscape train --seed 0 --data-seed 0 --out runs/seed0.h5   # one data set, two seeds
  landscape train --seed 1 --data-seed 0 --out runs/seed1.h5
  landscape align runs/seed0.h5 runs/seed1.h5 --out runs/align.h5
  landscape align runs/seed0.h5 runs/seed1.h5 --method activations --repair \\
      --out runs/align.h5
  landscape info runs/align.h5"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="run file (HDF5) of the reference solution A")
    p.add_argument("b", help="run file of the solution B to align")
    p.add_argument("--solution-a", default="sgd", help="solution of A (default: sgd)")
    p.add_argument("--solution-b", default="sgd", help="solution of B (default: sgd)")
    p.add_argument("--method", default="weights", choices=["weights", "activations"],
                   help="weight matching or activation matching (default: weights)")
    p.add_argument("--repair", action="store_true",
                   help="also profile the aligned line with REPAIR")
    p.add_argument("--points", type=int, default=21,
                   help="values of t from 0 to 1 (default: 21)")
    p.add_argument("--samples", type=int, default=4096,
                   help="train inputs for activation matching and REPAIR (default: 4096)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of weight matching's visiting order (default: 0)")
    p.add_argument("--out", required=True, help="file to store the alignment in "
                   "(created as an analysis file if missing)")
    p.add_argument("--name", help="group name in --out (default: the method, "
                   "with _repair)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--force", action="store_true",
                   help="replace a stored alignment of that name made otherwise")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from landscape._errors import UserError
    from landscape.jobs import align_runs

    if args.points < 3:
        raise UserError(f"--points must be at least 3, got {args.points}")
    if args.samples < 1:
        raise UserError(f"--samples must be positive, got {args.samples}")
    align_runs(args.a, args.b, args.out, solution_a=args.solution_a,
               solution_b=args.solution_b, method=args.method, repair=args.repair,
               points=args.points, seed=args.seed, samples=args.samples, name=args.name,
               device=args.device, force=args.force, progress=not args.quiet, log=print)
    return 0
