"""``landscape surface``: train/test loss and accuracy on a 1D/2D grid of weights."""

from __future__ import annotations

import argparse

NAME = "surface"
ORDER = 20
HELP = "loss/accuracy surface around a solution (random, line, plane or PCA directions)"
DESCRIPTION = """\
Evaluate train and test loss and accuracy on a grid of weights
theta = centre + x*d0 (+ y*d1) and store it under /surfaces/NAME of the run file.

Kinds: random (filter/layer/none-normalized Gaussian directions around --center),
line (from --from to --to; x is t, or the L2 distance with --distance), plane
(through the three --points, orthonormal u/v basis) and pca (top principal
components of the recorded --trajectory) and swag (the top principal
directions of the SWAG deviations D around the SWAG mean, axes +-3 standard
deviations of D along each; needs `landscape train --swag` or `landscape swag
--from-trajectory`).  Points are solutions (sgd, swa,
swa_last, avg) or trajectory records (epoch:N, step:N of the SWA run;
sgd/epoch:N of the baseline); the defaults name what the run file holds.

Killed, the same command resumes and computes only the missing points.  Run it
under torchrun to split the points over processes:
  torchrun --nproc-per-node 2 -m landscape surface RUN.h5 ..."""
EPILOG = """\
examples:
  landscape surface runs/demo.h5                       # random 2D around swa
  landscape surface runs/demo.h5 --kind line --from sgd --to swa --distance
  landscape surface runs/demo.h5 --kind plane --points sgd,swa_last,swa --bn recompute
  landscape surface runs/demo.h5 --kind pca --center swa --grid -5:5:41 --grid-y -5:5:41
  landscape surface runs/swag.h5 --kind swag      # the basin in SWAG's directions"""


def configure(p: argparse.ArgumentParser) -> None:
    from landscape.directions import Normalization
    from landscape.evaluate import BNMode
    from landscape.surface import SurfaceKind

    p.add_argument("file", help="run file (HDF5) written by `landscape train`")
    p.add_argument("--kind", default="random", choices=[k.value for k in SurfaceKind],
                   help="directions (default: random)")
    p.add_argument("--dim", type=int, choices=(1, 2),
                   help="1D or 2D (default: 1 for line, else 2)")
    p.add_argument("--center", help="centre point for random/pca (default: swa, else "
                   "sgd)")
    p.add_argument("--from", dest="from_point", help="line start (default: sgd)")
    p.add_argument("--to", dest="to_point", help="line end (default: swa, else the "
                   "other stored solution)")
    p.add_argument("--points", help="plane: three comma-separated points (default: "
                   "sgd,swa_last,swa, else the stored solutions and recorded epochs)")
    p.add_argument("--distance", action="store_true",
                   help="line: x is the L2 distance from --from instead of t")
    p.add_argument("--trajectory", choices=("sgd", "swa"),
                   help="run whose trajectory pca uses and plane overlays")
    p.add_argument("--grid", help="x axis start:stop:num (default: -1:1:21 for random, "
                   "-0.5:1.5:21 in t for line, around the points for plane/pca)")
    p.add_argument("--grid-y", help="y axis start:stop:num (default: as --grid or auto)")
    p.add_argument("--norm", default="filter", choices=[n.value for n in Normalization],
                   help="random direction normalization (default: filter)")
    p.add_argument("--keep-bias-bn", action="store_true",
                   help="keep bias and BN entries of random directions (default: zeroed)")
    p.add_argument("--bn", choices=[b.value for b in BNMode],
                   help="BatchNorm statistics at each point (default: recompute for "
                   "BN models, keep otherwise)")
    p.add_argument("--train-samples", type=int, help="evaluate on a seeded train subset")
    p.add_argument("--test-samples", type=int, help="evaluate on a seeded test subset")
    p.add_argument("--l2", help="add l2*||theta||^2/2 to the train loss: auto (the run's "
                   "weight decay, the SWA paper's regularized loss), 0 or a value "
                   "(default: auto for line and plane, 0 for random and pca)")
    p.add_argument("--seed", type=int, default=0, help="seed of directions and subsets")
    p.add_argument("--name", help="surface name (default: e.g. random_swa, line_sgd_swa)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--eval-batch-size", type=int, default=4096,
                   help="samples per forward pass of the evaluation (default: 4096)")
    p.add_argument("--compile", action="store_true",
                   help="evaluate through torch.compile (compiles once; pays off for 2D "
                        "conv nets and large grids)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a surface of another config with the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from landscape.jobs import SurfaceConfig, compute_surface

    points = tuple(s.strip() for s in args.points.split(",")) if args.points else None
    cfg = SurfaceConfig(
        kind=args.kind, dim=args.dim, center=args.center, from_point=args.from_point,
        to_point=args.to_point, points=points, grid=args.grid, grid_y=args.grid_y,
        norm=args.norm, keep_bias_bn=args.keep_bias_bn, bn=args.bn, distance=args.distance,
        trajectory=args.trajectory, train_samples=args.train_samples,
        test_samples=args.test_samples, l2=args.l2, seed=args.seed)
    name = compute_surface(args.file, cfg, name=args.name, device=args.device,
                           batch_size=args.eval_batch_size, compile=args.compile,
                           force=args.force,
                           progress=not args.quiet)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"surface {name} in {args.file}")
    return 0
