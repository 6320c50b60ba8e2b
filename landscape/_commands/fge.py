"""``landscape fge``: Fast Geometric Ensembling from a stored solution."""

from __future__ import annotations

import argparse

NAME = "fge"
ORDER = 39
HELP = "Fast Geometric Ensembling: cyclic-lr snapshots from a solution, as an ensemble"
DESCRIPTION = """\
Fast Geometric Ensembling (Garipov et al. 2018): from solution --from of the run
file, continue SGD with a cyclic learning rate, --cycle epochs per cycle
(2-4 in the paper), falling linearly from --alpha1 to --alpha2 over the first
half of each cycle and rising back over the second; after the step with the
lowest rate of each cycle a snapshot is taken, --snapshots in all.

After each snapshot the test accuracy, negative log-likelihood and expected
calibration error are measured for the ensemble of the snapshots so far (the
mean of their softmax outputs), for SWA of the same snapshots (their weight
average) and for the snapshot alone; the starting solution gives the SGD
baseline.  BatchNorm statistics are recomputed on the train data at every
evaluated point of a BN model.  Everything goes to /fge/NAME of the run file,
one atomic write per snapshot: killed, the same command continues from the
last snapshot and ends with the same ensemble."""
EPILOG = """\
examples:
  landscape fge runs/demo.h5
  landscape fge runs/demo.h5 --from sgd --snapshots 10 --cycle 4 \\
      --alpha1 0.05 --alpha2 0.0005
  landscape info runs/demo.h5
  landscape plot runs/demo.h5 --all --out-dir figures/demo"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape._commands._common import add_config_flags
    from landscape.config import FGEConfig

    p.add_argument("file", help="run file (HDF5) written by `landscape train`")
    p.add_argument("--from", dest="solution", default="sgd",
                   help="solution to start from (sgd, swa, swa_last, avg; default: sgd)")
    p.add_argument("--name", default="fge", help="group name under /fge (default: fge)")
    add_config_flags(p, FGEConfig)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--force", action="store_true",
                   help="replace a stored ensemble of that name made with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from landscape.config import FGEConfig, from_dict
    from landscape.jobs import fge_run

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FGEConfig)
              if getattr(args, f.name, None) is not None}
    fge_run(args.file, solution=args.solution, config=from_dict(values, FGEConfig),
            name=args.name, device=args.device, force=args.force,
            progress=not args.quiet, log=print)
    return 0
