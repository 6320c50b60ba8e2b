"""``landscape info``: what a run file holds."""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np

NAME = "info"
ORDER = 90
HELP = "print the groups, shapes, attributes and metrics of a run file"
EPILOG = "example:\n  landscape info runs/demo.h5\n  landscape info runs/demo.h5 --tree"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="run file (HDF5)")
    p.add_argument("--tree", action="store_true",
                   help="list every group and dataset with its attributes")


def solutions_table(f: h5py.File) -> str:
    """Markdown-style table of the stored solutions' train/test metrics."""
    if "solutions" not in f:
        return "(no solutions)"
    rows = ["| solution | train loss | train acc | test loss | test acc | source |",
            "|---|---|---|---|---|---|"]
    for name, g in f["solutions"].items():
        a = g.attrs
        rows.append(
            f"| {name} | {a.get('train_loss', np.nan):.4f} | {a.get('train_acc', np.nan):.4f}"
            f" | {a.get('test_loss', np.nan):.4f} | {a.get('test_acc', np.nan):.4f} | "
            f"{a.get('source', '')} |")
    return "\n".join(rows)


#: The headline attributes of each stored measure, in display order.
_HEADLINE = ("lambda_max", "lambda_min", "trace", "value", "sigma", "sigma_mag", "median",
             "rays", "r_max")


def _measure_summary(g: h5py.Group) -> str:
    """``key=value`` of a measure's headline attributes and its datasets' shapes."""
    parts = [f"{k}={float(g.attrs[k]):.4g}" for k in _HEADLINE if k in g.attrs]
    parts += [f"{k} {g[k].shape}" for k in g if isinstance(g[k], h5py.Dataset)]
    return ", ".join(parts)


def _short(v: object, limit: int = 100) -> str:
    s = v.decode() if isinstance(v, bytes) else str(v)
    return s if len(s) <= limit else s[:limit] + "..."


def describe(f: h5py.File, tree: bool = False) -> str:
    """Human-readable summary of a run file."""
    lines = [f"{f.filename}"]
    for k in ("schema_version", "landscape_version", "created", "seed", "device",
              "torch_version"):
        if k in f.attrs:
            lines.append(f"  {k}: {f.attrs[k]}")
    if "config" in f.attrs:
        cfg = json.loads(f.attrs["config"])
        lines.append("  config: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())
                                              if v is not None))
    if "model" in f:
        m = f["model"].attrs
        lines.append(f"  model: {m.get('name')} ({m.get('n_params')} parameters), "
                     f"input {m.get('in_shape')}")
    if "data" in f:
        d = f["data"].attrs
        lines.append(f"  data: {d.get('name')} (train {d.get('n_train')}, "
                     f"test {d.get('n_test')})")
    for run, g in f.get("trajectories", {}).items():
        lines.append(f"  trajectory {run}: weights {g['weights'].shape}, epochs "
                     f"{g['epoch'][0]:g}..{g['epoch'][-1]:g}" if len(g["epoch"]) else
                     f"  trajectory {run}: empty")
    lines.append("solutions:")
    lines.append(solutions_table(f))
    for title, group in (("surfaces", "surfaces"), ("measures", "measures")):
        if group in f:
            lines.append(f"{title}:")
            f[group].visititems(lambda n, o, g=group: lines.append(
                f"  {g}/{n}: {o.shape}" if isinstance(o, h5py.Dataset) and tree else None)
                or None)
            for n, o in f[group].items():
                kind = o.attrs.get("kind", "")
                detail = ", ".join(f"{k}={_short(v, 40)}" for k, v in o.attrs.items()
                                   if k in ("kind", "norm", "bn", "dim", "center"))
                lines.append(f"  {n}" + (f" ({detail})" if detail or kind else ""))
                if group == "measures" and n in f.get("solutions", {}):
                    lines.extend(f"    {m}: {_measure_summary(g)}" for m, g in o.items()
                                 if isinstance(g, h5py.Group))
    if tree:
        lines.append("tree:")

        def visit(name: str, obj: h5py.HLObject) -> None:
            if isinstance(obj, h5py.Dataset):
                lines.append(f"  /{name}  {obj.shape} {obj.dtype}")
            else:
                lines.append(f"  /{name}/")
            for k, v in obj.attrs.items():
                lines.append(f"      @{k} = {_short(v)}")

        f.visititems(visit)
    return "\n".join(x for x in lines if x is not None)


def run(args: argparse.Namespace) -> int:
    from landscape.store import open_run

    with open_run(args.file) as f:
        print(describe(f, args.tree))
    return 0
