"""``landscape connect``: a mode-connecting curve between two solutions, and its barrier."""

from __future__ import annotations

import argparse

NAME = "connect"
ORDER = 37
HELP = "train a low-loss curve between two solutions and compare its barrier with the line's"
DESCRIPTION = """\
Join solution --solution-a of run file A and --solution-b of run file B by a
curve phi(t), t in [0, 1], with the endpoints fixed and K bends trained
(Garipov et al. 2018): a quadratic Bezier curve (--curve bezier; with K bends
the Bernstein curve of degree K+1) or a polygonal chain (--curve polychain,
bends at t = i/(K+1)).  The bends start on the segment and are trained by SGD
on E_t L(phi(t)), one t ~ U[0, 1] per minibatch, BatchNorm in train mode at
the sampled t; the objective and the reported train loss include
wd/2 ||phi(t)||^2 (--wd, default: A's weight decay).

Then the curve and the straight line between the same endpoints are evaluated
at --points values of t (BN statistics recomputed on the train data at each
point for BN models): train loss, train and test error; the barrier
max_t e(t) - (e(0) + e(1))/2 is reported for the loss and the error of both.
Everything goes to /curves/NAME of --out (an analysis file, created if
missing).  Killed, the same command continues from the last finished epoch
and ends with the same bends.

With --plane, also the loss on the plane through both endpoints and the first
bend (Garipov et al.'s Figure 1), on a grid of --plane-steps steps from A to
B, is stored as the surface NAME_plane with the curve projected onto it;
`landscape plot --all` draws it with the curve and the line."""
EPILOG = """\
examples:
  landscape train --seed 1 --data-seed 0 --out runs/seed1.h5   # seed 0's data
  landscape connect runs/seed0.h5 runs/seed1.h5 --out runs/curves.h5
  landscape connect runs/demo.h5 runs/demo.h5 --solution-a sgd --solution-b swa \\
      --curve polychain --bends 3 --epochs 40 --out runs/demo_curves.h5
  landscape connect runs/seed0.h5 runs/seed1.h5 --out runs/curves.h5 --plane
  landscape info runs/curves.h5"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape._commands._common import add_config_flags
    from landscape.config import ConnectConfig

    p.add_argument("a", help="run file (HDF5) of the start, written by `landscape train`")
    p.add_argument("b", help="run file of the end (may be A, with another solution)")
    p.add_argument("--solution-a", default="sgd", help="solution of A at t = 0 "
                   "(sgd, swa, swa_last, avg; default: sgd)")
    p.add_argument("--solution-b", default="sgd", help="solution of B at t = 1 "
                   "(default: sgd)")
    p.add_argument("--out", required=True, help="file to store the curve in (created as "
                   "an analysis file if missing)")
    p.add_argument("--name", help="curve name in --out (default: the --curve kind)")
    add_config_flags(p, ConnectConfig)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--plane", action="store_true", help="also evaluate the plane "
                   "through both endpoints and the first bend, with the curve drawn "
                   "on it (surface NAME_plane)")
    p.add_argument("--plane-steps", type=int, default=10, metavar="K",
                   help="grid steps of the plane from A to B and from the line to the "
                   "bend, plus 30 percent on each side (default: 10)")
    p.add_argument("--force", action="store_true",
                   help="replace a stored curve of that name made with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from landscape.config import ConnectConfig, from_dict
    from landscape.jobs import connect_runs

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ConnectConfig)
              if getattr(args, f.name, None) is not None}
    connect_runs(args.a, args.b, args.out, solution_a=args.solution_a,
                 solution_b=args.solution_b, config=from_dict(values, ConnectConfig),
                 name=args.name, device=args.device, force=args.force,
                 plane=args.plane_steps if args.plane else None,
                 progress=not args.quiet, log=print)
    return 0
