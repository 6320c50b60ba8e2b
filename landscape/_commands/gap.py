"""``landscape gap``: train–test gap per solution, trajectory point and along a line."""

from __future__ import annotations

import argparse

NAME = "gap"
ORDER = 35
HELP = "train-test gap per solution and trajectory point, and the shift along SGD->SWA"
DESCRIPTION = """\
Compute the train-test gap (test minus train loss and error) of every stored
solution (from its stored metrics) and of every recorded trajectory point
(evaluated with the BN statistics recorded with it), and evaluate the line
theta(t) = FROM + t (TO - FROM) at the t values of --grid (BN statistics
recomputed at each point for BN models) to locate the train-loss and
test-error minima and the shift between them, in t and in L2 distance (the SWA
paper's train-test shift).  The train loss along the line is the L2-regularized
one the SWA paper plots (--l2 auto: CE + wd/2 ||theta||^2 with the run's weight
decay); the shift is also given for the plain cross-entropy.  Results go to
/measures/gap."""
EPILOG = """\
examples:
  landscape gap runs/demo.h5
  landscape gap runs/demo.h5 --from sgd --to swa --grid -1:2:41 --l2 0
  landscape gap runs/demo.h5 --no-trajectories --bn keep"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape.evaluate import BNMode

    p.add_argument("file", help="run file (HDF5) written by `landscape train`")
    p.add_argument("--from", dest="from_point",
                   help="solution at t = 0 (default: sgd, else the one stored)")
    p.add_argument("--to", dest="to_point",
                   help="solution at t = 1 (default: swa, else the other stored "
                   "solution; a file of one solution gets no line)")
    p.add_argument("--grid", default="-0.5:1.5:21",
                   help="t values on the line, start:stop:num (default: -0.5:1.5:21)")
    p.add_argument("--bn", choices=[m.value for m in BNMode],
                   help="BN statistics along the line (default: recompute for BN "
                   "models, keep otherwise)")
    p.add_argument("--l2", default="auto",
                   help="train loss along the line: CE + l2*||theta||^2/2 with l2 = auto "
                   "(the run's weight decay, as the SWA paper plots it), 0 or a value "
                   "(default: auto); the shift is reported for both losses")
    p.add_argument("--trajectories", action=argparse.BooleanOptionalAction, default=True,
                   help="also evaluate every recorded trajectory point (default: yes)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--eval-batch-size", type=int, default=4096,
                   help="samples per forward pass of the evaluation (default: 4096)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from landscape.evaluate import resolve_device
    from landscape.jobs import measure_gap

    device = str(resolve_device(args.device))
    measure_gap(args.file, a=args.from_point, b=args.to_point, grid=args.grid,
                bn=args.bn, l2=args.l2,
                trajectories=args.trajectories, device=device,
                batch_size=args.eval_batch_size, progress=not args.quiet, log=print)
    return 0
