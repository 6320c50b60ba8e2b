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
theta(t) = FROM + t (TO - FROM) at --points values of t in [--t-min, --t-max]
(BN statistics recomputed at each point for BN models) to locate the
train-loss and test-error minima and the shift between them, in t and in L2
distance (the SWA paper's train-test shift).  Results go to /measures/gap."""
EPILOG = """\
examples:
  landscape gap runs/demo.h5
  landscape gap runs/demo.h5 --from sgd --to swa --points 41 --t-min -1 --t-max 2
  landscape gap runs/demo.h5 --no-trajectories --bn keep"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape.evaluate import BNMode

    p.add_argument("file", help="run file (HDF5) written by `landscape train`")
    p.add_argument("--from", dest="from_point", default="sgd",
                   help="solution at t = 0 (default: sgd)")
    p.add_argument("--to", dest="to_point", default="swa",
                   help="solution at t = 1 (default: swa)")
    p.add_argument("--points", type=int, default=21,
                   help="number of t values on the line (default: 21)")
    p.add_argument("--t-min", type=float, default=-0.5, help="first t (default: -0.5)")
    p.add_argument("--t-max", type=float, default=1.5, help="last t (default: 1.5)")
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
    p.add_argument("--batch-size", type=int, default=4096,
                   help="samples per forward pass (default: 4096)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from landscape.evaluate import resolve_device
    from landscape.jobs import measure_gap

    device = str(resolve_device(args.device))
    measure_gap(args.file, a=args.from_point, b=args.to_point, points=args.points,
                t_min=args.t_min, t_max=args.t_max, bn=args.bn, l2=args.l2,
                trajectories=args.trajectories, device=device,
                batch_size=args.batch_size, progress=not args.quiet, log=print)
    return 0
