"""``landscape sharpness``: Hessian spectrum, sharpness, flatness and width of solutions."""

from __future__ import annotations

import argparse
import dataclasses

NAME = "sharpness"
ORDER = 30
SECTION = None  # --config: the [sharpness] table, split into common and measure keys
HELP = "Hessian eigenvalues/trace/density, sharpness, PAC-Bayes sigma and width"
EPILOG = """\
examples:
  landscape sharpness runs/demo.h5 --solutions sgd,swa
  landscape sharpness runs/demo.h5 --solutions swa --measures hessian,trace --top-k 10
  landscape sharpness runs/demo.h5 --measures width --directions 50 --tau 0.05
  landscape sharpness runs/demo.h5 --measures hessian --dtype float64 --samples 2000
  landscape compare runs/demo.h5 --solutions sgd,swa"""


def _description() -> str:
    from landscape.sharpness import specs

    rows = "\n".join(f"  {n:<13} {s.summary}" for n, s in specs().items())
    return f"""\
Measure the curvature and flatness of stored solutions on a fixed, seeded
subset of the train data (--samples), with BatchNorm in eval mode using each
solution's own statistics, and store every measure under
/measures/<solution>/<measure> of the run file with its parameters and seed.

Measures (--measures, comma-separated, or all):
{rows}

Each measure is written as soon as it finishes; a measure already stored with
the same parameters is kept (use --recompute).  Under torchrun the batches of
the loss are split over the ranks (HVPs, gradients and values are summed with
all_reduce; lower --eval-batch-size so there are batches to split):
  torchrun --nproc-per-node 2 -m landscape sharpness RUN.h5 --eval-batch-size 250
Flags override the [sharpness] section of the --config TOML file, which
overrides the defaults."""


def __getattr__(name: str) -> str:  # DESCRIPTION reads the registry when asked for
    if name == "DESCRIPTION":
        return _description()
    raise AttributeError(name)


def configure(p: argparse.ArgumentParser) -> None:
    from landscape._commands._common import add_config_flags
    from landscape.sharpness import MeasureConfig, specs

    p.add_argument("file", help="run file (HDF5) written by `landscape train`")
    p.add_argument("--solutions",
                   help="solution(s) to measure, comma-separated (default: swa, else "
                   "sgd, else the one stored)")
    p.add_argument("--measures", default="all",
                   help=f"comma-separated subset of {','.join(specs())} (default: all)")
    p.add_argument("--config", help="TOML file whose [sharpness] section overrides "
                   "the defaults")
    p.add_argument("--recompute", action="store_true",
                   help="recompute measures already stored with the same parameters")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(p, MeasureConfig)
    seen: set[str] = set()
    for s in specs().values():
        names = {f.name for f in dataclasses.fields(s.params)}
        add_config_flags(p, s.params, skip=tuple(seen))
        seen |= names


def run(args: argparse.Namespace) -> int:
    from landscape._errors import UserError
    from landscape.config import from_dict, load_toml
    from landscape.jobs import measure_solution
    from landscape.sharpness import MeasureConfig, all_params, parse_measures

    common_keys = {f.name for f in dataclasses.fields(MeasureConfig)}
    known = set(all_params())
    values = load_toml(args.config, section="sharpness") if args.config else {}
    bad = sorted(set(values) - common_keys - known)
    if bad:
        raise UserError(f"unknown [sharpness] key(s) {bad} in {args.config}; valid: "
                        f"{sorted(common_keys | known)}")
    for k in common_keys | known:
        v = getattr(args, k, None)
        if v is not None:
            values[k] = v
    common = from_dict({k: v for k, v in values.items() if k in common_keys}, MeasureConfig)
    if common.device is None:
        common = dataclasses.replace(common, device="cpu")
    params = {k: v for k, v in values.items() if k in known}
    measures = parse_measures(args.measures)
    if args.solutions is None:
        from landscape import store

        with store.open_run(args.file) as f:
            solutions = [store.main_solution(store.solution_names(f))]
    else:
        solutions = [s.strip() for s in args.solutions.split(",") if s.strip()]
    if not solutions:
        raise UserError("--solutions is empty; name a stored solution, e.g. --solutions swa")
    from landscape import _dist

    _, _, own_pg, device = _dist.setup(common.device)  # once for every solution
    try:
        for s in solutions:
            measure_solution(args.file, s, measures, dataclasses.replace(common, device=device),
                             params, recompute=args.recompute, progress=not args.quiet,
                             log=print)
    finally:
        _dist.teardown(own_pg)
    return 0
