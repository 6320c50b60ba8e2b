"""Protocol ``regimes``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.experiments._common import (
    Experiment,
    FigureSpec,
    captions,
    draw_figures,
    figure_lines,
)
from landscape.experiments.regimes.run import (
    _finite,
    _pts,
    _ratio,
    _toml_value,
    factor_title,
)
from landscape.stats import call, finite_mean_ci, format_pm


# =========================================================================== report
def _acc(m: float, h: float) -> str:
    return format_pm(m, h, ".2f", scale=100.0)


def _mark(sign: str) -> str:
    """``▲`` / ``▼`` where the interval lies above / below its null, else nothing."""
    return {"higher": " ▲", "lower": " ▼"}.get(sign, "")


def _names(keys: Sequence[str], summary: Mapping[str, Any], cells: Mapping[str, Any],
           what: str) -> str:
    parts = []
    for k in keys:
        s = summary[k]
        v = _pts(s["diff"], s["diff_ci"]) if what == "diff" else _ratio(s["ratio"],
                                                                         s["ratio_ci"])
        parts.append(f"{' = '.join(cells[k]['labels'])} ({v})")
    return "; ".join(parts)


def findings(result: Mapping[str, Any]) -> list[str]:
    """The report's paragraph on where SWA helps, generated from the intervals.

    Returns:
        Markdown lines: the paragraph, then one bullet per factor.
    """
    ex = result["extra"]
    summary, cells, lay = ex["summary"], ex["design"]["cells"], ex["design"]
    n = len(summary)
    seeds = len(next(iter(result["metrics"].values()))["diff_test_acc"])
    up = sorted((k for k, s in summary.items() if s["diff_sign"] == "higher"),
                key=lambda k: -summary[k]["diff"])
    down = sorted((k for k, s in summary.items() if s["diff_sign"] == "lower"),
                  key=lambda k: summary[k]["diff"])
    rest = [k for k in summary if k not in up and k not in down]
    out = [f"Over {n} cells and {seeds} seeds per cell (test sets of {ex['n_test']:,} "
           f"samples: one test error step is {100 / ex['n_test']:.3g} points), "]
    if up:
        out[0] += (f"SWA's test accuracy is **higher** than SGD's, with a 95 % CI that "
                   f"excludes 0, in {len(up)} cell(s): {_names(up, summary, cells, 'diff')}.")
    else:
        out[0] += ("SWA's test accuracy is **not significantly higher** than SGD's in any "
                   "cell (no 95 % CI of SWA − SGD lies above 0).")
    if down:
        out.append(f"It is **lower** (CI below 0) in {len(down)} cell(s): "
                   f"{_names(down, summary, cells, 'diff')}.")
    d = [summary[k]["diff"] for k in rest if math.isfinite(summary[k]["diff"])]
    if d:
        which = f"In the other {len(rest)} cell(s)" if up or down else f"In all {n} cells"
        out.append(f"{which} the difference is within noise (means from "
                   f"{100 * min(d):+.2f} to {100 * max(d):+.2f} points).")
    per_factor: list[str] = []
    for name, levels in lay["factors"].items():
        keys = [lv["cell"] for lv in levels]
        vals = ", ".join(f"{lv['label']}: " + _pts(summary[lv["cell"]]["diff"],
                                                    summary[lv["cell"]]["diff_ci"])
                         for lv in levels)
        line = f"Along {factor_title(name)} — {vals}."
        if "base" in keys:
            best = max((k for k in keys if k != "base"),
                       key=lambda k: _finite(summary[k]["diff"]), default=None)
            if best is not None:
                m = result["metrics"]
                dd = np.asarray(m[best]["diff_test_acc"]) - np.asarray(
                    m["base"]["diff_test_acc"])
                dm, dh = finite_mean_ci(dd)
                lbl = next(lv["label"] for lv in levels if lv["cell"] == best)
                ci = ("excludes 0" if call(dm, dh) in ("higher", "lower")
                      else "includes 0")
                line += (f" At {lbl} (the non-base level with the largest mean) it differs "
                         f"from the base level's by {_pts(dm, dh)} (paired over seeds; "
                         f"the CI {ci}).")
        per_factor.append(line)
    wide = [k for k, s in summary.items() if s["ratio_sign"] == "higher"]
    narrow = [k for k, s in summary.items() if s["ratio_sign"] == "lower"]
    wline = (f"Widths: the SWA solution is **wider** than SGD's (ratio CI above 1) in "
             f"{len(wide)} of {n} cells")
    wline += f" ({_names(wide, summary, cells, 'ratio')})" if 0 < len(wide) <= 6 else ""
    wline += f", **narrower** (CI below 1) in {len(narrow)}"
    wline += f" ({_names(narrow, summary, cells, 'ratio')})" if 0 < len(narrow) <= 6 else ""
    wline += ", and not distinguishable in the rest."
    x = np.array([summary[k]["ratio"] for k in summary], float)
    y = np.array([summary[k]["diff"] for k in summary], float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 4 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        from scipy.stats import spearmanr

        rho, p = spearmanr(x[ok], y[ok])
        wline += (f" Across cells, the rank correlation between the width ratio and the "
                  f"accuracy difference is ρ = {rho:.2f} (Spearman, p = {p:.2g}, "
                  f"{int(ok.sum())} cells).")
    out.append(wline)
    out.append(f"Caveat: with {n} cells each tested at the 95 % level, about "
               f"{0.05 * n:.1f} interval(s) would exclude 0 by chance alone if SWA made no "
               "difference anywhere, and the best cell's gain is biased upwards by its "
               "selection; a regime should be confirmed with fresh seeds (the `paper` "
               "run below does that).")
    return [" ".join(out), "", *(f"- {line}" for line in per_factor)]


def _cell_row(label: str, s: Mapping[str, Any]) -> str:
    return (f"| {label} | {_acc(s['sgd'], s['sgd_ci'])} | {_acc(s['swa'], s['swa_ci'])} | "
            f"{_pts(s['diff'], s['diff_ci'])}{_mark(s['diff_sign'])} | "
            f"{_ratio(s['ratio'], s['ratio_ci'])}{_mark(s['ratio_sign'])} |")


def tables(result: Mapping[str, Any]) -> list[str]:
    """Markdown tables: each factor's levels, then the two-factor map.

    Returns:
        The lines.
    """
    ex = result["extra"]
    summary, lay = ex["summary"], ex["design"]
    head = ["| level | SGD test acc (%) | SWA test acc (%) | SWA − SGD | width ratio SWA/SGD |",
            "|---|---|---|---|---|"]
    lines: list[str] = []
    for name, levels in lay["factors"].items():
        lines += [f"**{factor_title(name)}**", "", *head]
        lines += [_cell_row(lv["label"] + (" (base)" if lv["cell"] == "base" else ""),
                            summary[lv["cell"]]) for lv in levels]
        lines.append("")
    g = lay["map"]
    if g is not None:
        for what, fmt in (("SWA − SGD test accuracy (points)", "diff"),
                          ("width ratio SWA/SGD", "ratio")):
            lines += [f"**{factor_title(g['rows'])} × {factor_title(g['cols'])}: {what}**",
                      "", f"| {factor_title(g['rows'])} | " + " | ".join(g["col_labels"])
                      + " |", "|---|" + "---|" * len(g["col_labels"])]
            for rl, row in zip(g["row_labels"], g["cells"], strict=True):
                cells = []
                for k in row:
                    s = summary[k]
                    v = (_pts(s["diff"], s["diff_ci"]).replace(" points", "")
                         if fmt == "diff" else _ratio(s["ratio"], s["ratio_ci"]))
                    cells.append(v + _mark(s[f"{fmt}_sign"]))
                lines.append(f"| {rl} | " + " | ".join(cells) + " |")
            lines.append("")
    lines.append("▲ / ▼: the 95 % CI over seeds lies above / below 0 (difference) or 1 "
                 "(ratio).")
    return lines


def regime_lines(result: Mapping[str, Any], out: Path) -> list[str]:
    """Which cell is "the regime where SWA helps", and how to run ``paper`` there.

    Returns:
        The lines.
    """
    ex = result["extra"]
    r = ex["regime"]
    if r is None:
        b = ex["best_cell"]
        s = ex["summary"][b]
        return ["No cell has a significant SWA gain, so no regime is recorded "
                f"(`extra.regime` is null). The largest mean difference is in "
                f"{' = '.join(ex['design']['cells'][b]['labels'])} "
                f"({_pts(s['diff'], s['diff_ci'])})."]
    over = ", ".join(f"`{k} = {_toml_value(v)}`" for k, v in r["paper_overrides"].items())
    return [f"The regime where SWA helps most (largest significant gain): "
            f"**{' = '.join(r['labels'])}**, SWA − SGD {_pts(r['diff'], r['diff_ci'])} "
            f"(cell `{r['cell']}`; stored as `extra.regime` in `results.h5`).", "",
            f"To run the `paper` experiment there, override in `paper.toml`: {over or '(none)'}"
            f" — written out as `{r['paper_toml']}`: "
            f"`landscape reproduce {out / r['paper_toml']}`."]


#: The report's figures, in report order: ``{stem: (caption, draw(plot, results))}``.
FIGURES: dict[str, FigureSpec] = {
    "regimes_acc_diff": (
        "Test accuracy difference SWA − SGD (points; mean over seeds, paired; ± the 95 % "
        "CI), one factor at a time around the base point (left) and the two-factor map "
        "(right). Bold cells: CI excludes 0.",
        lambda plot, results: plot.plot_regimes(results, "diff_test_acc")),
    "regimes_width_ratio": (
        "Width ratio SWA/SGD (median width along random unit directions; mean over seeds "
        "± 95 % CI). Bold cells: CI excludes 1.",
        lambda plot, results: plot.plot_regimes(results, "width_ratio")),
}


def regimes_figures(exp: Experiment, results: Path, result: Mapping[str, Any],
                    dest: Path) -> list[Path]:
    """The heat maps of the report, drawn from ``results`` alone.

    Returns:
        The PNG paths.
    """
    return draw_figures(FIGURES, dest, results)


def regimes_report(exp: Experiment, result: Mapping[str, Any], figures: Sequence[Path],
                   out: Path) -> list[str]:
    """The report after the common header: findings, tables, regime, figures, design.

    Returns:
        Markdown lines.
    """
    ex = result["extra"]
    st = ex["settings"]
    cfg = exp.cfg
    lines = ["### Where SWA helps on this data", "", *findings(result), "",
             "### The regime for the `paper` experiment", "", *regime_lines(result, out), "",
             "### Per factor", "",
             f"Base point: the top-level config ({cfg.model}"
             f"{'' if cfg.model_width is None else f', width {cfg.model_width}'}, "
             f"{ex['n_train']:,} train / {ex['n_test']:,} test samples, {cfg.epochs} epochs, "
             f"SWA from epoch {cfg.swa_start} at lr {cfg.swa_lr:g}); every other row "
             "changes one factor. SGD and SWA always train the same number of epochs "
             "from the same initialisation (budget × epochs, SWA start scaled alike). "
             "Width: median over "
             f"{st['directions']} random unit directions of the distance at which the "
             f"train loss (on the labels trained on) rises by τ = {st['tau']:g}, on "
             f"{st['width_samples']:,} train samples, BN statistics {st['width_bn']}; "
             "the ratio is taken per seed, then averaged.", "",
             *tables(result), "", "### Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    return lines
