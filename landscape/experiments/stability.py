r"""Do a report's verdicts survive a move to another machine?

Another CPU rounds the first training steps differently (at the 1e-8 level);
the trajectories then diverge and every per-seed number moves.  A verdict of
the report (SWA beats / does not beat SGD; SWA is flatter / sharper / no
different) holds across machines only if both machines' seeds give the same
call.  This module compares two results files of ``paper`` (accuracy and
flatness calls), ``seed000`` (SWA vs SGD on test, CV and train accuracy),
``seed004`` (the averaged model vs its checkpoints on test accuracy),
``connect`` (curve, alignment, FGE and SWAG calls, over pairs) or ``align``
(barriers modulo permutation over widths, merged vs SWA and SGD, over pairs)
seed count by seed count: the calls of the first N seeds of each, for N = 2 ..
the smaller count.

The second machine is emulated with ``landscape reproduce paper
--init-jitter 1e-7`` (every initial weight moved by about one float32 ulp, see
:func:`landscape.train.make_model`)::

    landscape reproduce paper --seeds 12 --out-dir A --runs-dir runs/A
    landscape reproduce paper --seeds 12 --init-jitter 1e-7 --out-dir B --runs-dir runs/B
    python -m landscape.experiments.stability A/results.h5 B/results.h5 --out STABILITY.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import store
from landscape._errors import UserError
from landscape.experiments import align, connect, paper, seed000, seed004
from landscape.stats import mean_ci


def first_seeds(result: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``{"metrics", "extra"}`` of a results file restricted to its first ``n`` seeds.

    Args:
        result: :func:`landscape.store.read_results` of a ``paper`` results file.
        n: Number of seeds to keep.

    Returns:
        The input of :func:`landscape.experiments.paper.verdicts`.
    """
    extra = result["attrs"].get("extra") or {}

    def cut(d: Mapping[str, Any]) -> dict[str, Any]:
        # A quantity of fewer than n seeds (e.g. the measures of ``measure_seeds``)
        # is left out: its claim is called only at the seed counts its data reaches.
        return {k: cut(v) if isinstance(v, Mapping) else list(np.asarray(v, float)[:n])
                for k, v in d.items() if isinstance(v, Mapping) or len(v) >= n}

    return {"metrics": cut(result["metrics"]),
            "extra": {"measures": cut(extra.get("measures") or {"sgd": {}, "swa": {}})}}


def _verdicts_of(result: Mapping[str, Any]) -> Any:
    """The verdict function of a results file's protocol.

    Raises:
        UserError: For a protocol without stability claims.
    """
    protocol = result["attrs"].get("protocol") or result.get("experiment")
    fns = {"paper": paper.verdicts, "seed000": seed000.verdicts,
           "seed004": seed004.verdicts, "connect": connect.verdicts,
           "align": align.verdicts}
    if protocol not in fns:
        raise UserError(f"results of protocol {protocol!r} have no verdicts to compare; "
                        f"give two results.h5 files of {sorted(fns)}")
    return fns[protocol]


def agreement(a: Mapping[str, Any], b: Mapping[str, Any],
              counts: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The verdicts of both results files for the first N seeds, per N.

    Args:
        a: :func:`landscape.store.read_results` of one machine's ``paper`` run.
        b: The same of the other machine's (same config, same seeds).
        counts: Seed counts to compare (default 2 .. the smaller seed count).

    Returns:
        One ``{"seeds": N, "a": calls, "b": calls, "differ": [claims]}`` per N.
    """
    n_max = min(len(a["seeds"]), len(b["seeds"]))
    if list(a["seeds"][:n_max]) != list(b["seeds"][:n_max]):
        raise UserError(f"the files ran different seeds ({a['seeds']} vs {b['seeds']}); "
                        "run both with the same --seeds")
    verdicts = _verdicts_of(a)
    out = []
    for n in counts or range(2, n_max + 1):
        va, vb = verdicts(first_seeds(a, n)), verdicts(first_seeds(b, n))
        out.append({"seeds": n, "a": va, "b": vb,
                    "differ": [k for k in va if va[k] != vb.get(k)]})
    return out


def per_seed_moves(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """How far each test accuracy moved between the machines, seed by seed."""
    lines = []
    for method, cols in a["metrics"].items():
        if "test_acc" not in cols or "test_acc" not in b["metrics"].get(method, {}):
            continue
        n = min(len(cols["test_acc"]), len(b["metrics"][method]["test_acc"]))
        d = 100 * np.abs(np.asarray(b["metrics"][method]["test_acc"][:n], float)
                         - np.asarray(cols["test_acc"][:n], float))
        m, _ = mean_ci(d)
        lines.append(f"| {method} | {m:.2f} | {d.max():.2f} |")
    return lines


def report(a_path: Path, b_path: Path) -> list[str]:
    """Markdown: the calls per seed count, and where the two files disagree."""
    a, b = store.read_results(a_path), store.read_results(b_path)
    for path, r in ((a_path, a), (b_path, b)):
        protocol = r["attrs"].get("protocol") or r.get("experiment")
        if protocol == "paper" and "measures" not in (r["attrs"].get("extra") or {}):
            raise UserError(f"{path} holds no flatness measures (experiment "
                            f"{r['experiment']!r}): give two results.h5 files of "
                            "`landscape reproduce paper`")
        _verdicts_of(r)
    if (a["attrs"].get("protocol") or a.get("experiment")) != (
            b["attrs"].get("protocol") or b.get("experiment")):
        raise UserError(f"{a_path} and {b_path} come from different protocols; compare "
                        "two runs of the same experiment")
    rows = agreement(a, b)
    if not rows:
        raise UserError("need at least 2 seeds in both files")
    claims = list(dict.fromkeys(c for r in rows for c in r["a"]))  # some stop early
    lines = [f"# Verdicts on two machines: `{a_path}` (A) vs `{b_path}` (B)", "",
             "```",
             f"{a['attrs'].get('command', '?')}    # A",
             f"{b['attrs'].get('command', '?')}    # B",
             f"python -m landscape.experiments.stability {a_path} {b_path}", "```", "",
             "Each cell: the call on A / on B from the first N seeds (paired over "
             "seeds, 95 % CI); **bold** where they differ.", "",
             "| claim | " + " | ".join(f"N={r['seeds']}" for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for c in claims:
        cells = []
        for r in rows:
            x, y = r["a"].get(c, "-"), r["b"].get(c, "-")
            cells.append(x if x == y else f"**{x} / {y}**")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    stable = next((r["seeds"] for i, r in enumerate(rows)
                   if all(not q["differ"] for q in rows[i:])), None)
    lines += ["", "Claims that differ: " + ", ".join(
        f"N={r['seeds']}: {len(r['differ'])}/{len(r['a'])}" for r in rows) + ".", ""]
    lines.append(f"Every verdict agrees from N = {stable} seeds on (up to "
                 f"{rows[-1]['seeds']})." if stable is not None else
                 f"Some verdict differs even with all {rows[-1]['seeds']} seeds.")
    lines += ["", "How far each seed's test accuracy moved from A to B (points):", "",
              "| method | mean | max |", "|---|---|---|", *per_seed_moves(a, b), ""]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m landscape.experiments.stability",
        description="Compare the verdicts of two `paper`, `seed000`, `seed004`, `connect` "
                    "or `align` results files (one machine's and another's, or one made "
                    "with --init-jitter) for the first N seeds, N = 2 .. all; print (or "
                    "write) a Markdown table.")
    p.add_argument("a", type=Path, help="results.h5 of the first machine")
    p.add_argument("b", type=Path, help="results.h5 of the second machine")
    p.add_argument("--out", type=Path, help="write the Markdown here (default: stdout)")
    args = p.parse_args(argv)
    try:
        text = "\n".join(report(args.a, args.b))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
