"""``landscape demo``: the main job on the embedded MNIST-1D data (no download)."""

from __future__ import annotations

import argparse

NAME = "demo"
ORDER = 5
HELP = "run the main job on the embedded MNIST-1D data (train, analyse, plot)"
DESCRIPTION = """\
The main job, end to end, on MNIST-1D generated offline (no download): train
the SGD baseline and the SWA run, then analyse both solutions. Every stage is
resumable: run it again after an interruption and finished stages are skipped."""
EPILOG = "example:\n  landscape demo --out runs/demo.h5"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo.h5", help="run file (default: %(default)s)")
    p.add_argument("--data-root", default="data", help="cache folder for MNIST-1D")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from landscape._demo import run_demo

    run_demo(args.out, data_root=args.data_root, progress=not args.quiet)
    return 0
