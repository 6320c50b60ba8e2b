"""Protocol ``paper``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import store
from landscape.experiments._common import (
    LABELS,
    Experiment,
    FigureSpec,
    captions,
    draw_figures,
    figure_lines,
)
from landscape.sharpness import Headline, headlines
from landscape.stats import (
    call,
    finite_mean_ci,
    format_ci,
    format_pm,
    log_ratios,
    mean_ci,
    paired_call,
    verdict,
)


def scalar_table(measured: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    """Markdown rows: each measure for SGD and SWA with the paired SWA/SGD ratio."""
    rows = ["| measure | SGD | SWA | SWA / SGD (paired) |", "|---|---|---|---|"]
    for label in (h.label for _, h in headlines()):
        a = np.asarray(measured["sgd"].get(label, []), float)
        b = np.asarray(measured["swa"].get(label, []), float)
        if not a.size:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = b / a
        rc = format_pm(*finite_mean_ci(ratio), ".3g", ".2g")
        rows.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {rc} |")
    return rows


def _fmt(v: np.ndarray) -> str:
    return format_ci(v, spec=".4g", half_spec=".2g", finite=True)


# =========================================================================== report
#: The figures of the report, in report order: ``{stem: (caption, draw(plot, results,
#: seed0))}``, ``results`` the results file over seeds and ``seed0`` the trimmed copy of
#: the first seed's run file.
FIGURES: dict[str, FigureSpec] = {
    "swa_vs_sgd": (
        "Test accuracy of SGD, the last SGD iterate of the SWA run, and SWA at 1, 1.25 and "
        "1.5 budgets: mean ± 95 % CI over seeds, one dot per seed.",
        lambda plot, results, small: plot.plot_swa_vs_sgd(results, metrics=["test_acc"])),
    "history": (
        "Train (dashed) and test (solid) accuracy per epoch of the SGD iterate and the "
        "running SWA model (first seed).",
        lambda plot, results, small: plot.plot_history(small)),
    "plane_test_err": (
        "Test error on the plane through SGD, SWA and an early trajectory point (the SWA "
        "paper's Figure 1 layout; BN statistics recomputed at every point).",
        lambda plot, results, small: plot.plot_surface_2d(small, "plane", "test_err")),
    "plane_train_loss": (
        "L2-regularized train loss (CE + wd/2·‖θ‖²) on the same plane.",
        lambda plot, results, small: plot.plot_surface_2d(small, "plane", "train_loss")),
    "line": (
        "L2-regularized train loss (CE + wd/2·‖θ‖², as the SWA paper plots it) and test "
        "error along the line from SWA (0) to SGD, in L2 distance: where the train-loss "
        "minimum and the test-error minimum lie.",
        lambda plot, results, small: plot.plot_surface_1d(small, "line")),
    "rays": (
        "Train loss and test error along random unit directions from SGD and SWA as a "
        "function of L2 distance (the paper's width figure).",
        lambda plot, results, small: plot.plot_rays(small)),
    "width": (
        "Distance at which train loss rises by τ along random unit directions, per "
        "direction, for SGD and SWA.",
        lambda plot, results, small: plot.plot_width_distribution(
            plot.read_widths(small), title="width along random unit directions (seed 0)")),
    "random_swa_train_loss": (
        "Train loss on a filter-normalized random 2D slice around SWA.",
        lambda plot, results, small: plot.plot_surface_2d(small, "random_swa")),
    "random_sgd_train_loss": (
        "The same slice type around SGD (its own random directions, same seed).",
        lambda plot, results, small: plot.plot_surface_2d(small, "random_sgd")),
    "random_swa_3d": (
        "The slice around SWA as a 3D surface.",
        lambda plot, results, small: plot.plot_surface_3d(small, "random_swa")),
    "pca_train_loss": (
        "Train loss on the plane of the trajectory's top two principal components, with "
        "the recorded trajectory overlaid.",
        lambda plot, results, small: plot.plot_surface_2d(small, "pca")),
    "density": (
        "Hessian eigenvalue density (stochastic Lanczos quadrature) at SGD and SWA.",
        lambda plot, results, small: plot.plot_eigenvalue_density(plot.read_density(small))),
    "eigenvalues": (
        "Top Hessian eigenvalues (Lanczos) at SGD and SWA.",
        lambda plot, results, small: plot.plot_top_eigenvalues(
            plot.read_measure_arrays(small, "hessian", "eigenvalues"))),
}


def paper_figures(results: Path, result: Mapping[str, Any], dest: Path) -> list[Path]:
    """The report's figures, from ``results`` (over seeds) and the first seed's run file.

    A trimmed copy of the first seed's run file (no trajectory weights) is
    written to ``dest/seed0.h5`` so ``landscape plot`` can redraw every figure
    from ``dest`` alone.

    Returns:
        The PNG paths, in :data:`FIGURES` order.
    """
    small = store.trimmed_copy(Path(result["extra"]["main"]), dest / "seed0.h5")
    return draw_figures(FIGURES, dest, results, small)


def report_sections(result: Mapping[str, Any], figures: Sequence[Path],
                    out: Path) -> list[str]:
    """Markdown of the report after the accuracy table: measures, gap, figures."""
    ex = result["extra"]
    measured, gap = ex["measures"], ex["gap"]
    n = len(ex["measure_seeds"])
    lines = [f"## Flatness of SGD and SWA ({n} seed(s): {ex['measure_seeds']})", "",
             f"On {ex['settings']['measure_samples']} train samples, BN in eval mode "
             "with each solution's statistics (width: BN statistics recomputed at "
             f"every point; τ = {ex['settings']['tau']:g}, "
             f"{ex['settings']['directions']} random unit directions).  Larger width "
             "and σ mean flatter; larger eigenvalues, trace and sharpness mean "
             "sharper.", ""]
    lines += scalar_table(measured)
    lines += ["", *_flatness_verdicts(measured), "",
              "## Train–test gap and the shift along the SGD→SWA line", "",
              "| quantity | mean ± 95 % CI |", "|---|---|"]
    for k, v in gap.items():
        if k.endswith(("_loss", "_err")):  # the solutions' metrics are in the table above
            continue
        scale, unit = (100.0, " points") if k.endswith("err_gap") else (1.0, "")
        lines.append(f"| {k} | "
                     f"{format_pm(*mean_ci(np.asarray(v, float)), '.4g', '.2g', scale=scale)}"
                     f"{unit} |")
    lines += ["", "The shift is the L2 distance from the train-loss minimum to the "
              "test-error minimum along the line from SGD (t = 0) to SWA (t = 1), "
              "positive towards SWA (the paper's observation is a positive shift: the "
              "test-error minimum lies beyond the train-loss minimum, towards SWA). It "
              "is given for the L2-regularized train loss CE + wd/2·‖θ‖² that the SWA "
              "paper's line figure plots (wd the run's weight decay) and for the plain "
              "cross-entropy.", "",
              "## Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    lines += [f"Redraw: `landscape plot {out / 'seed0.h5'} --all --out-dir DIR` (first "
              "seed's surfaces and measures; the full run files stay in the runs "
              "folder).", ""]
    return lines


def _log_ratios(measured: Mapping[str, Mapping[str, Sequence[float]]]
                ) -> list[tuple[Headline, float, float]]:
    """``(headline, mean, 95 % half-width)`` of log(SWA/SGD) over seeds, per measure
    with positive values for both solutions."""
    out = []
    for _, head in headlines():
        a = np.asarray(measured["sgd"].get(head.label, []), float)
        b = np.asarray(measured["swa"].get(head.label, []), float)
        ok = np.isfinite(a) & np.isfinite(b) & (a != 0)
        if ok.any() and (a[ok] > 0).all() and (b[ok] > 0).all():
            out.append((head, *mean_ci(log_ratios(a, b)[ok])))
    return out


def _flatness_verdicts(measured: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    """One line per measure: is SWA flatter than SGD, paired over seeds?"""
    out = []
    for head, m, h in _log_ratios(measured):
        label, ratio = head.label, f"SWA/SGD = {math.exp(m):.3g}"
        c = _flatness_call(head, m, h)
        if c == "one seed":
            out.append(f"- {label}: {ratio} (one seed, no interval).")
        elif c == "no difference":
            out.append(f"- {label}: no difference beyond noise, {ratio} "
                       f"(95 % CI {math.exp(m - h):.3g}–{math.exp(m + h):.3g}).")
        else:
            ci = f"{math.exp(m - h):.3g}–{math.exp(m + h):.3g}"
            out.append(f"- {label}: SWA is **{c}** than SGD, {ratio} (geometric mean, "
                       f"95 % CI {ci}).")
    return out


def _flatness_call(head: Headline, m: float, h: float) -> str:
    c = call(m, h)
    if c in ("higher", "lower"):
        return "flatter" if (c == "higher") == (head.flatter == "higher") else "sharper"
    return c


def verdicts(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's verdicts as data: claim -> call, paired over the result's seeds.

    Accuracy claims (``"<method> vs SGD, test accuracy"``) are ``"beats"``,
    ``"worse"`` or ``"no difference"``; flatness claims (one per measure label)
    ``"flatter"``, ``"sharper"`` or ``"no difference"`` (SWA relative to SGD);
    ``"one seed"`` where no interval exists.

    Args:
        result: ``{"metrics": ..., "extra": ...}`` as :func:`run_paper` returns
            (or a results file's ``metrics`` with its ``attrs["extra"]``).

    Returns:
        The calls, in report order.
    """
    m = result["metrics"]
    out = {}
    for b in m:
        if b.startswith("swa") and "test_acc" in m[b]:
            out[f"{LABELS.get(b, b)} vs SGD, test accuracy"] = paired_call(
                m["sgd"]["test_acc"], m[b]["test_acc"])
    for head, mean, h in _log_ratios(result["extra"]["measures"]):
        out[head.label] = _flatness_call(head, mean, h)
    return out


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    return paper_figures(res, result, dest)


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m = result["metrics"]
    lines = ["- " + verdict("SGD", m["sgd"]["test_acc"], LABELS.get(b, b), m[b]["test_acc"],
                            "test accuracy") for b in m if b.startswith("swa")]
    return [*lines, "", *report_sections(result, figures, out)]
