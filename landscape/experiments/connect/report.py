"""Protocol ``connect``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import store
from landscape.experiments._common import (
    Experiment,
    FigureSpec,
    captions,
    draw_figures,
    figure_lines,
)
from landscape.experiments.connect.settings import (
    ALIGNMENT,
    BARRIERS,
    METHODS,
    PATHS,
)
from landscape.stats import call, comparison, format_ci, format_pm, paired_call, verdict

# =========================================================================== report
#: The figures, ``{stem: (caption, draw(plot, pair_file, run_file, curve))}``:
#: ``pair_file`` the first pair's curve/alignment file, ``run_file`` its first run
#: (trimmed), ``curve`` the curve's name there.
FIGURES: dict[str, FigureSpec] = {
    "curve_train_loss": (
        "L2-regularized train loss (CE + wd/2·‖θ‖²) along the straight line and the "
        "trained curve between the first pair's two SGD solutions (t = 0: seed 0, t = 1: "
        "seed 1); the legend gives each barrier.",
        lambda plot, pair, run, curve: plot.plot_curve_profiles(pair, curve, "train_loss")),
    "curve_test_err": (
        "Test error (%) along the same line and curve.",
        lambda plot, pair, run, curve: plot.plot_curve_profiles(pair, curve, "test_err")),
    "plane_train_loss": (
        "Train loss on the plane through both SGD solutions and the curve's bend "
        "(Garipov et al.'s Figure 1), with the line and the curve drawn.",
        lambda plot, pair, run, curve: plot.plot_curve_plane(
            pair, store.plane_surface_name(curve), "train_loss")),
    "alignment_test_err": (
        "Test error (%) along the raw line, the line to the weight-matched second "
        "solution, the same with REPAIR, and the trained curve (first pair).",
        lambda plot, pair, run, curve: plot.plot_alignment(pair, ALIGNMENT, "test_err")),
    "fge_acc": (
        "Test accuracy of the FGE ensemble from the first run's SGD solution as snapshots "
        "accumulate, against the SWA of the same snapshots, each snapshot alone and the "
        "starting SGD solution.",
        lambda plot, pair, run, curve: plot.plot_fge(run, "fge", "acc")),
    "fge_nll": (
        "Test NLL of the same ensembles.",
        lambda plot, pair, run, curve: plot.plot_fge(run, "fge", "nll")),
    "swag_nll": (
        "Test NLL of SWAG's Bayesian model average as samples accumulate, against SWA and "
        "SGD (first run).",
        lambda plot, pair, run, curve: plot.plot_swag_samples(run, "nll")),
    "swag_calibration": (
        "Reliability diagram (accuracy − confidence per confidence bin) of SWAG, SWA and "
        "SGD (first run); the legend gives each ECE.",
        lambda plot, pair, run, curve: plot.plot_swag_calibration(run)),
}


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    """The figures, from copies of the first pair's file and first run in ``dest``.

    Returns:
        The PNG paths.
    """
    ex = result["extra"]
    pair = store.trimmed_copy(Path(ex["main_pair"]), dest / "pair0.h5")
    run = store.trimmed_copy(Path(ex["main_run"]), dest / "seed0.h5")
    figs = {k: v for k, v in FIGURES.items() if ex.get("plane") or k != "plane_train_loss"}
    return draw_figures(figs, dest, pair, run, ex["curve_name"])


def _lower_sentence(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float],
                    what: str, *, scale: float = 1.0, unit: str = "",
                    spec: str = "+.3g") -> str:
    """One sentence: is ``b`` lower than ``a`` (a barrier, an NLL, an ECE), paired?"""
    d, h = comparison(a, b)
    c = call(d, h)
    diff = format_pm(d, h, spec, scale=scale, unit=unit)
    if c == "one seed":
        return (f"With one pair, {name_b}'s {what} is {diff} against {name_a}'s; no "
                "interval can be given.")
    if c == "lower":
        return (f"**{name_b} is lower than {name_a}** on {what}: {diff} (paired over "
                "pairs, 95 % CI excludes 0).")
    if c == "higher":
        return (f"**{name_b} is not lower than {name_a}** on {what}: it is higher, {diff} "
                "(95 % CI excludes 0).")
    return (f"**{name_b} is not lower than {name_a}** on {what} beyond noise: {diff} "
            "(95 % CI includes 0).")


#: Lower-is-better claims ``(a, b, metric)``: is ``b`` lower than ``a``?
_LOWER = (("line", "curve", "test_err_barrier"), ("line", "curve", "train_loss_barrier"),
          ("line", "aligned", "test_err_barrier"), ("line", "aligned", "train_loss_barrier"),
          ("line", "repair", "test_err_barrier"), ("aligned", "repair", "test_err_barrier"),
          ("swa", "swag", "test_nll"), ("sgd", "swag", "test_nll"),
          ("swa", "swag", "test_ece"), ("sgd", "swag", "test_ece"),
          ("sgd", "fge", "test_nll"), ("swa", "fge", "test_nll"),
          ("sgd_ensemble", "fge", "test_nll"))


#: Higher-is-better claims ``(a, b)`` on test accuracy: does ``b`` beat ``a``?
_BEATS = (("sgd", "fge"), ("swa", "fge"), ("sgd_ensemble", "fge"), ("sgd", "swa"),
          ("swa", "swag"), ("sgd", "swag"))


#: How the report names a barrier metric.
_WHAT = {f"{k}_barrier": k.replace("_err", " error").replace("_", " ") + " barrier"
         for k in BARRIERS}


def _label(m: str) -> str:
    return PATHS.get(m) or METHODS.get(m, m)


def verdicts(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's verdicts as data: claim -> call, paired over pairs.

    Lower-is-better claims (``"<b> vs <a>, <metric>"`` on barriers, NLL, ECE) are
    ``"lower"``, ``"higher"`` or ``"no difference"``; accuracy claims
    ``"beats"``, ``"worse"`` or ``"no difference"``; ``"one seed"`` with one pair.

    Returns:
        The calls, in report order.
    """
    m = result["metrics"]
    out = {f"{b} vs {a}, {k}": call(*comparison(m[a][k], m[b][k])) for a, b, k in _LOWER}
    out |= {f"{b} vs {a}, test_acc": paired_call(m[a]["test_acc"], m[b]["test_acc"])
            for a, b in _BEATS}
    return out


def _barrier_table(m: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    rows = ["| path | train loss barrier | train error barrier (points) | test loss barrier"
            " | test error barrier (points) |", "|---|---|---|---|---|"]
    for which, label in PATHS.items():
        cells = [format_ci(m[which][f"{k}_barrier"], 100.0 if k.endswith("_err") else 1.0,
                           2 if k.endswith("_err") else 4) for k in BARRIERS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def _predictive_table(m: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    rows = ["| method | test acc (%) | test NLL | test ECE |", "|---|---|---|---|"]
    for which, label in METHODS.items():
        r = m[which]
        rows.append(f"| {label} | {format_ci(r['test_acc'], 100.0, 2)} | "
                    f"{format_ci(r['test_nll'], 1.0, 4)} | {format_ci(r['test_ece'], 1.0, 4)}"
                    " |")
    return rows


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m, ex = result["metrics"], result["extra"]
    n = len(ex["pairs"])
    cc, fc = ex["curve"], ex["fge"]
    lines = [f"Each of the {n} \"seeds\" above is a **pair** of runs: training seeds "
             f"{ex['seeds_of_pairs']}, both runs of a pair trained on the same data, so "
             "that their SGD solutions differ by initialisation and minibatch order only; "
             "intervals and paired differences are over pairs.", "",
             "### Is the trained curve's barrier lower than the line's?", ""]
    lines += ["- " + _lower_sentence(_label(a), m[a][k], _label(b), m[b][k],
                                     _WHAT[k],
                                     **({"scale": 100.0, "unit": " points", "spec": "+.2f"}
                                        if "_err" in k else {}))
              for a, b, k in _LOWER[:2]]
    lines += ["", "### Is the barrier lower after alignment (weight matching, REPAIR)?", ""]
    lines += ["- " + _lower_sentence(_label(a), m[a][k], _label(b), m[b][k],
                                     _WHAT[k],
                                     **({"scale": 100.0, "unit": " points", "spec": "+.2f"}
                                        if "_err" in k else {}))
              for a, b, k in _LOWER[2:6]]
    if all(np.allclose(m["repair"][k], m["aligned"][k], rtol=1e-4, atol=1e-6)
           for k in m["aligned"]):
        lines += ["- REPAIR changed no barrier beyond 1e-4: with BatchNorm statistics "
                  "recomputed at every point (RESET), each normalised channel's mean and "
                  "scale already are the interpolated BN shift and scale, which equal "
                  "REPAIR's targets (the interpolated endpoints' statistics); REPAIR "
                  "matters for networks without BN."]
    lines += ["", "### Do FGE and SWAG predict better than SWA and SGD?", ""]
    lines += ["- " + verdict(_label(a), m[a]["test_acc"], _label(b), m[b]["test_acc"],
                             "test accuracy") for a, b in _BEATS]
    lines += ["- " + _lower_sentence(_label(a), m[a][k], _label(b), m[b][k],
                                     "test " + k.removeprefix("test_").upper())
              for a, b, k in _LOWER[6:]]
    lines += ["", "## Barriers over pairs", "",
              "Barrier: the maximum over t of a metric along the path minus the mean of "
              "its values at the two endpoints (t = 0, 1); errors in percentage points, "
              "losses in nats (the train loss with the runs' L2 term wd/2·‖θ‖²).  BN "
              "statistics recomputed on train data at every point.", ""]
    lines += _barrier_table(m)
    lines += ["", f"Curve: {cc['curve']} with {cc['bends']} bend(s), {cc['epochs']} epochs "
              f"of SGD (lr {cc['lr']:g}, {cc['schedule']} schedule, one t ~ U[0, 1] per "
              f"minibatch), profiles at {cc['points']} values of t.  Alignment: weight "
              "matching of the second SGD solution to the first; REPAIR rescales each "
              "channel of the interpolated network to the interpolated endpoints' "
              "statistics.", "",
              "## Predictions over pairs (test set)", ""]
    lines += _predictive_table(m)
    lines += ["", f"Budgets in epochs: SGD {ex['sgd_epochs']} per run; the SWA run "
              f"{ex['swa_epochs']}; FGE {ex['fge_epochs']} more from the SGD solution "
              f"({fc['snapshots']} cycles of {fc['cycle']}, lr {fc['alpha1']:g} → "
              f"{fc['alpha2']:g}), so FGE's total is "
              f"{ex['sgd_epochs'] + ex['fge_epochs']} against "
              f"{2 * ex['sgd_epochs']} for the two-run SGD ensemble.  SWAG: "
              f"{ex['settings'].get('swag_samples') or 'the default number of'} samples of "
              "the SWA run's Gaussian (diagonal plus low rank), BN statistics recomputed "
              "per sample; SWA and SGD go through the same path.  ECE: "
              f"{fc['bins']} equal-width confidence bins.", "",
              "## Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    lines += [f"Redraw: `landscape plot {out / 'pair0.h5'} --all --out-dir DIR` and "
              f"`landscape plot {out / 'seed0.h5'} --all --out-dir DIR` (first pair; the "
              "full run files stay in the runs folder).", ""]
    return lines
