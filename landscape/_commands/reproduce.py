"""``landscape reproduce``: run a shipped experiment (or a TOML file) over seeds."""

from __future__ import annotations

import argparse
import shlex

NAME = "reproduce"
ORDER = 70
HELP = "run an experiment (shipped config or TOML file) over seeds; results, REPORT.md"
DESCRIPTION = """\
Run one of the shipped experiments (or a TOML file of your own) over --seeds
seeds:
  paper     the SWA paper's analyses: accuracy by budget, Hessian spectrum,
            sharpness, width and the train-test shift of SGD vs SWA, surfaces
            for the figures (what `landscape demo` runs)
  controls  positive and negative controls of every flatness measure: small vs
            large batches, a model of known geometry, a function-preserving
            rescaling
  regimes   SWA vs SGD across label noise, the SWA learning rate, model width,
            budget and train-set size
  seed000   Optuna search, 5-fold CV and train/test scores of SGD with vs
            without SWA
  seed004   checkpoints vs their post-hoc average
  connect   over pairs of seeds: line vs trained curve barriers, lines after
            weight matching and REPAIR, FGE vs SWA vs SGD vs a two-run
            ensemble, SWAG's model average and calibration
  align     over pairs of seeds and MLP widths: barriers of the raw line, the
            line after weight matching and after REPAIR; the aligned average
            of two SGD solutions vs SGD and SWA
Real-MNIST variants (--data-root DIR with DIR/mnist/*-ubyte.gz): paper_mnist,
seed004_mnist, connect_mnist, align_mnist; seed000_mnist1d is seed000 on
MNIST-1D (offline) with the 1D counterpart of its CNN.
Writes results.h5 (per-seed values, config and command as attributes),
figures and REPORT.md with mean +- 95 % CI of every number to --out-dir
(default figures/NAME).  Without --data the experiments run on MNIST-1D
(generated offline); the report says so.  Killed, the same command resumes."""
EPILOG = """\
examples:
  landscape reproduce paper --seeds 5
  landscape reproduce seed004
  landscape reproduce seed000 --seeds 3 --out-dir /tmp/seed000
  landscape reproduce seed000 --data kaggle-digits --data-root data/digits
  landscape reproduce seed004 --data svhn --data-root data/svhn --threads 2
  landscape reproduce seed004 --quick --seeds 1 --out-dir /tmp/smoke
  landscape reproduce connect --data mnist --data-root ../shared/data
  landscape reproduce align_mnist --data-root ../shared/data"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape.experiments import available

    names = available()
    p.add_argument("name", help=f"experiment name ({', '.join(names) or 'none found'}) "
                   "or a TOML file")
    p.add_argument("--seeds", type=int, help="number of seeds 0..N-1 (default: the "
                   "config's, 5)")
    p.add_argument("--out-dir", help="folder for results.h5, the figures and REPORT.md "
                   "(default: figures/NAME)")
    p.add_argument("--runs-dir", help="folder for per-seed run files (default: runs/NAME)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes from the config's [experiment.quick] (a smoke test)")
    p.add_argument("--data", help="dataset instead of the config's (e.g. kaggle-digits, svhn)")
    p.add_argument("--data-root", help="folder with the dataset files")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--init-jitter", type=float, help="move every initial weight by this "
                   "relative amount (1e-7: another machine's rounding; compare the "
                   "reports with python -m landscape.experiments.stability)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (the per-stage lines stay)")


def run(args: argparse.Namespace) -> int:
    from landscape.experiments import reproduce

    overrides = {k: v for k, v in (("data", args.data), ("data_root", args.data_root),
                                   ("device", args.device), ("threads", args.threads),
                                   ("init_jitter", args.init_jitter))
                 if v is not None}
    command = ["landscape", "reproduce", args.name]
    for flag, v in (("--seeds", args.seeds), ("--out-dir", args.out_dir),
                    ("--runs-dir", args.runs_dir),
                    ("--data", args.data),
                    ("--data-root", args.data_root), ("--device", args.device),
                    ("--threads", args.threads), ("--init-jitter", args.init_jitter)):
        if v is not None:
            command += [flag, str(v)]
    command += ["--quick"] if args.quick else []
    reproduce(args.name, seeds=args.seeds, out_dir=args.out_dir, runs_dir=args.runs_dir,
              quick=args.quick, overrides=overrides, command=shlex.join(command),
              log=lambda m: print(m, flush=True), progress=not args.quiet)
    return 0
