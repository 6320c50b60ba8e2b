"""``landscape sharpness``: Hessian spectrum, sharpness, flatness and width of solutions."""

from __future__ import annotations

import argparse

NAME = "sharpness"
ORDER = 30
HELP = "Hessian eigenvalues/trace/density, sharpness, PAC-Bayes sigma and width"
DESCRIPTION = """\
Measure the curvature and flatness of stored solutions on a fixed, seeded
subset of the train data (--samples), with BatchNorm in eval mode using each
solution's own statistics, and store every measure under
/measures/<solution>/<measure> of the run file with its parameters and seed.

Measures (--measures, comma-separated, or all):
  hessian   top-k eigenvalues by Lanczos (ARPACK) and the smallest eigenvalue
  trace     Hutchinson trace estimate with its standard error (or Hutch++)
  density   eigenvalue density by stochastic Lanczos quadrature
  eps       Keskar et al. 2017 epsilon-sharpness (box, L-BFGS-B)
  sam       worst-case L2-ball sharpness (Foret et al. 2021), multi- and one-step
  asam      adaptive sharpness, T_w = |w| + eta (Kwon et al. 2021)
  avg       average-case sharpness under Gaussian noise
  pacbayes  Jiang et al. 2020 PAC-Bayes sigma and magnitude-aware sigma'
  width     distance along random directions at which train loss rises by tau

Each measure is written as soon as it finishes; a measure already stored with
the same parameters is kept (use --recompute).  Flags override the
[sharpness] section of the --config TOML file, which overrides the defaults."""
EPILOG = """\
examples:
  landscape sharpness runs/demo.h5 --solution sgd,swa
  landscape sharpness runs/demo.h5 --solution swa --measures hessian,trace --top-k 10
  landscape sharpness runs/demo.h5 --measures width --directions 50 --tau 0.05
  landscape sharpness runs/demo.h5 --measures hessian --dtype float64 --samples 2000
  landscape compare runs/demo.h5 --solutions sgd,swa"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape._commands._common import add_config_flags
    from landscape.sharpness.runner import MEASURES, SharpnessConfig

    p.add_argument("file", help="run file (HDF5) written by `landscape train`")
    p.add_argument("--solution", default="swa",
                   help="solution(s) to measure, comma-separated (default: swa)")
    p.add_argument("--measures", default="all",
                   help=f"comma-separated subset of {','.join(MEASURES)} (default: all)")
    p.add_argument("--config", help="TOML file whose [sharpness] section overrides "
                   "the defaults")
    p.add_argument("--recompute", action="store_true",
                   help="recompute measures already stored with the same parameters")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(p, SharpnessConfig)


def run(args: argparse.Namespace) -> int:
    from landscape._commands._common import config_from_args
    from landscape._errors import UserError
    from landscape.sharpness.runner import SharpnessConfig, measure_solution, parse_measures

    cfg = config_from_args(args, SharpnessConfig, "sharpness")
    measures = parse_measures(args.measures)
    solutions = [s.strip() for s in args.solution.split(",") if s.strip()]
    if not solutions:
        raise UserError("--solution is empty; name a stored solution, e.g. --solution swa")
    for s in solutions:
        measure_solution(args.file, s, measures, cfg, recompute=args.recompute,
                         progress=not args.quiet, log=print)
    return 0
