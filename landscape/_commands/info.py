"""``landscape info``: what a run, results or analysis file holds."""

from __future__ import annotations

import argparse

NAME = "info"
ORDER = 90
HELP = "print the groups, shapes, attributes and metrics of a landscape file"
DESCRIPTION = """\
Print what a landscape file holds: a run file (`landscape train`), a results
file (`landscape reproduce`) or an analysis file (landscape.save): its config,
model and data, solutions with their metrics, surfaces and the headline
numbers of every stored measure; --tree lists every group and dataset with
its attributes."""
EPILOG = """\
examples:
  landscape info runs/demo.h5
  landscape info figures/paper/results.h5
  landscape info runs/demo.h5 --tree"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="run, results or analysis file (HDF5)")
    p.add_argument("--tree", action="store_true",
                   help="list every group and dataset with its attributes")


def run(args: argparse.Namespace) -> int:
    from landscape.store import describe

    print(describe(args.file, args.tree))
    return 0
