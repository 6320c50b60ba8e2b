"""``landscape plot``: figures (PNG, optionally PDF) from a run or results file."""

from __future__ import annotations

import argparse

NAME = "plot"
ORDER = 60
HELP = "draw figures from a run file or a results file (PNG, optional PDF)"
DESCRIPTION = """\
Draw figures from an HDF5 file only (never from live state): per-epoch accuracy
of the SGD and SWA runs, the checkpoint-averaging figure (seed 004), 1D surface
curves (train loss and test error), 2D contours with the trajectory and named
points, 3D surfaces, width distributions and eigenvalue densities; for a results
file of `landscape reproduce`, the SWA-vs-SGD bar chart with 95 % intervals.
Files are named FILESTEM_<figure>.png in --out-dir."""
EPILOG = """\
examples:
  landscape plot runs/demo.h5 --all --out-dir figures/demo
  landscape plot runs/demo.h5 --surface plane --out-dir figures/demo --pdf
  landscape plot runs/demo.h5 --measure width --out-dir figures/demo
  landscape plot figures/seed000/results.h5 --out-dir figures/seed000"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="run file or results file (HDF5)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--surface", action="append", metavar="NAME",
                      help="plot this surface (repeatable)")
    what.add_argument("--measure", action="append", metavar="NAME",
                      help="plot this measure, e.g. width, density, checkpoints (repeatable)")
    what.add_argument("--all", action="store_true",
                      help="every figure the file supports (the default)")
    p.add_argument("--out-dir", required=True, help="folder for the figures")
    p.add_argument("--pdf", action="store_true", help="also write PDF files")


def run(args: argparse.Namespace) -> int:
    from landscape.plot import plot_all

    surfaces = args.surface if args.surface else ([] if args.measure else None)
    measures = args.measure if args.measure else ([] if args.surface else None)
    paths = plot_all(args.file, args.out_dir, surfaces=surfaces, measures=measures,
                     pdf=args.pdf, log=print)
    if not paths:
        print(f"{args.file} holds nothing to plot yet: `landscape surface` and `landscape "
              "sharpness` add figures (and `train --eval-every 1` the accuracy per epoch)")
    return 0
