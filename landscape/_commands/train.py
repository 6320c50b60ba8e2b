"""``landscape train``: SGD baseline and SWA run into one run file."""

from __future__ import annotations

import argparse

from landscape._commands._common import add_config_flags, config_from_args
from landscape.config import TrainConfig

NAME = "train"
ORDER = 10
SECTION = None  # --config: the file's top-level keys (TrainConfig), see config_from_args
HELP = "train the SGD baseline and the SWA run, record the trajectory"
DESCRIPTION = """\
Train a plain-SGD baseline (the SWA paper's decaying schedule) and an SWA run
(same initialisation; constant or cyclic learning rate from --swa-start,
averaging with torch.optim.swa_utils, BatchNorm statistics recomputed) and
write both solutions, the last SGD iterate of the SWA run (swa_last), per-epoch
train/test metrics and the recorded weight trajectories to one HDF5 run file.

Killed at any point, the same command resumes from the last finished epoch
(state in OUT.partial/) and ends with the same weights as an uninterrupted run.
Flags override the --config TOML file, which overrides the defaults."""
EPILOG = """\
examples:
  landscape train --data mnist1d --epochs 40 --swa-start 30 --out runs/demo.h5
  landscape train --data kaggle-digits --data-root data/digits --out runs/k.h5
  landscape train --data svhn --data-root data/svhn --no-swa --sgd-schedule const \\
      --lr 0.05 --epochs 20 --average-epochs 11:20 --out runs/svhn.h5
  landscape train --config paper --out runs/paper.h5    # a shipped experiment's config"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run file to write (HDF5)")
    p.add_argument("--config", help="TOML file of overrides (keys as the flags, with _ "
                   "or -), or the name of a shipped experiment (paper, seed000, seed004)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a run file (or partial run) of another config")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(p, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from landscape.store import run_solutions_table
    from landscape.train import train

    cfg = config_from_args(args, TrainConfig)
    out = train(cfg, args.out, force=args.force, progress=not args.quiet)
    print(run_solutions_table(out))
    print(f"run file: {out}")
    return 0
