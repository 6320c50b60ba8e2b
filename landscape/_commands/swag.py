"""``landscape swag``: SWA-Gaussian Bayesian model averaging of a run file."""

from __future__ import annotations

import argparse

NAME = "swag"
ORDER = 38
HELP = "SWA-Gaussian: Bayesian model averaging over samples of the SWA posterior"
DESCRIPTION = """\
SWAG (Maddox et al. 2019) fits a Gaussian to the iterates that SWA averages:
mean theta_SWA, diagonal variance Sigma_diag (second moment minus squared mean)
and the last K deviations D = [theta_i - running mean].  `landscape train
--swag` collects these during the SWA run (stored in /swag); --from-trajectory
collects them here instead from the SWA iterates the run recorded (the same
float32 weights, so the same moments).

This command draws --samples weights
  theta = theta_SWA + Sigma_diag^(1/2) z1 / sqrt(2) + D z2 / sqrt(2 (K - 1))
(--scale 0.5; z1, z2 standard normal from --seed), recomputes the BatchNorm
statistics of each sample on the train data, averages their softmax outputs on
the test data (Bayesian model averaging) and reports test accuracy, negative
log-likelihood and expected calibration error (--bins equal-width confidence
bins) beside SWA and SGD evaluated the same way.  Results go to
/swag/evaluation of the run file, with the accuracy, NLL and ECE of the average
of the first s samples for s = 1..S.  For the loss along the SWAG subspace
(the top principal directions of D) use `landscape surface RUN.h5 --kind swag`."""
EPILOG = """\
examples:
  landscape train --swag --out runs/swag.h5
  landscape swag runs/swag.h5 --samples 30
  landscape swag runs/demo.h5 --from-trajectory --swag-rank 10   # an older run
  landscape surface runs/swag.h5 --kind swag
  landscape plot runs/swag.h5 --all --out-dir figures/swag"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="run file (HDF5) written by `landscape train` (with SWA)")
    p.add_argument("--samples", type=int, default=30,
                   help="SWAG samples averaged (S; default: 30, as the paper)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default: 0)")
    p.add_argument("--scale", type=float, default=0.5,
                   help="covariance factor: 0.5 is the paper's sampler, 0 gives the SWA "
                   "solution (default: 0.5)")
    p.add_argument("--rank", type=int,
                   help="use only the last RANK deviations (0: SWAG-diagonal; default: "
                   "all stored)")
    p.add_argument("--bins", type=int, default=20,
                   help="equal-width confidence bins of the calibration error (default: 20)")
    p.add_argument("--from-trajectory", action="store_true",
                   help="if the run file holds no SWAG moments, collect them from its "
                   "recorded SWA iterates and store them")
    p.add_argument("--swag-rank", type=int, default=20,
                   help="deviations kept when collecting --from-trajectory (default: 20)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--eval-batch-size", type=int, default=4096,
                   help="samples per forward pass (default: 4096)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from landscape._errors import UserError
    from landscape.jobs import swag_run

    if args.bins < 1:
        raise UserError(f"--bins must be >= 1, got {args.bins}")
    if args.swag_rank < 0:
        raise UserError(f"--swag-rank must be >= 0, got {args.swag_rank}")
    if args.eval_batch_size < 1:
        raise UserError(f"--eval-batch-size must be >= 1, got {args.eval_batch_size}")
    swag_run(args.file, samples=args.samples, seed=args.seed, scale=args.scale,
             rank=args.rank, bins=args.bins, from_trajectory=args.from_trajectory,
             swag_rank=args.swag_rank, device=args.device,
             batch_size=args.eval_batch_size, progress=not args.quiet, log=print)
    return 0
