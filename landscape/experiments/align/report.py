"""Protocol ``align``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

import re
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
from landscape.experiments.align.run import measure_keys
from landscape.experiments.align.settings import (
    PATHS,
    SOLUTIONS,
    alignment_name,
    width_method,
)
from landscape.experiments.connect.report import _lower_sentence
from landscape.stats import (
    call,
    comparison,
    finite_mean_ci,
    format_ci,
    geometric_ratio,
    log_ratios,
    paired_call,
    verdict,
)

_WIDTH = re.compile(r"^(sgd|swa)_(line|aligned|repair)_x(\d+)$")


def _multiples(m: Mapping[str, Any]) -> list[int]:
    """The width multiples a results file holds, ascending."""
    return sorted({int(g.group(3)) for k in m if (g := _WIDTH.match(k))})


def _solutions(m: Mapping[str, Any]) -> list[str]:
    """The aligned solutions (``sgd``, ``swa``) a results file holds."""
    return [s for s in ("sgd", "swa") if any(k.startswith(f"{s}_line_x") for k in m)]


def _prefixes(m: Mapping[str, Any]) -> list[str]:
    """``""`` (the base-width MLP) and ``"cnn_"`` where the CNN was merged."""
    return [p for p in ("", "cnn_") if f"{p}merged" in m]


def _measure_metrics(m: Mapping[str, Any], prefix: str) -> list[str]:
    return [k for k in m[f"{prefix}merged"] if k != "test_acc"]


def _flatter(metric: str) -> str:
    """``lower`` or ``higher``: which way the measure ``metric`` is flatter."""
    keys = measure_keys([metric.split("_")[0]])
    return keys[metric][2].flatter if metric in keys else "lower"


def _log_call(a: Sequence[float], b: Sequence[float]) -> str:
    """Is ``b`` higher or lower than ``a``, by the 95 % CI of the paired log ratio?"""
    return call(*finite_mean_ci(log_ratios(a, b)))


def verdicts(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's verdicts as data: claim -> call, paired over pairs.

    Barrier claims (``"<solution> aligned vs raw line, test_err_barrier, x1"``,
    ``"... x8 vs x1"`` for the width sweep) are ``"lower"``, ``"higher"`` or
    ``"no difference"``; accuracy claims ``"beats"``, ``"worse"`` or ``"no
    difference"``; measure claims the call of the paired log ratio (``"higher"``,
    ``"lower"``, ``"no difference"``); ``"one seed"`` with one pair.

    Returns:
        The calls, in report order.

    Example:
        >>> m = {"sgd_line_x1": {"test_err_barrier": [0.10, 0.12, 0.11]},
        ...      "sgd_aligned_x1": {"test_err_barrier": [0.01, 0.02, 0.01]},
        ...      "sgd_repair_x1": {"test_err_barrier": [0.01, 0.02, 0.01]}}
        >>> verdicts({"metrics": m})
        {'sgd aligned vs raw line, test_err_barrier, x1': 'lower', \
'sgd REPAIR vs aligned, test_err_barrier, x1': 'no difference'}
    """
    m = result["metrics"]
    out: dict[str, str] = {}
    ks = _multiples(m)
    ends = sorted({ks[0], ks[-1]}) if ks else []
    for sol in _solutions(m):
        for k in ends:
            for a, b, what in (("line", "aligned", "aligned vs raw line"),
                               ("aligned", "repair", "REPAIR vs aligned")):
                for metric in ("test_err_barrier", "train_loss_barrier"):
                    x, y = m[width_method(sol, a, k)], m[width_method(sol, b, k)]
                    if metric in x and metric in y:
                        out[f"{sol} {what}, {metric}, x{k}"] = call(
                            *comparison(x[metric], y[metric]))
        if len(ends) == 2:
            for path in ("aligned", "repair", "line"):
                for metric in ("test_err_barrier", "train_loss_barrier"):
                    x, y = m[width_method(sol, path, ks[0])], m[width_method(sol, path,
                                                                          ks[-1])]
                    if metric in x and metric in y:
                        out[f"{sol} {path} {metric}, x{ks[-1]} vs x{ks[0]}"] = call(
                            *comparison(x[metric], y[metric]))
    for p in _prefixes(m):
        for other in ("sgd", "swa"):
            out[f"{p}merged vs {p}{other}, test_acc"] = paired_call(
                m[f"{p}{other}"]["test_acc"], m[f"{p}merged"]["test_acc"])
            for k in _measure_metrics(m, p):
                out[f"{p}merged vs {p}{other}, {k}"] = _log_call(m[f"{p}{other}"][k],
                                                                 m[f"{p}merged"][k])
    return out


# =========================================================================== figures
def _sweep(result_path: Path, solution: str, metric: str) -> Any:
    """``{path label: {hidden units: per-pair barriers}}`` of the results file."""
    r = store.read_results(result_path)
    m, widths = r["metrics"], (r["attrs"].get("extra") or {}).get("widths") or []
    ks = _multiples(m)
    if solution not in _solutions(m) or len(widths) != len(ks):
        return None
    scale = 100.0 if "_err" in metric else 1.0
    return {label: {w: scale * np.asarray(m[width_method(solution, p, k)][metric], float)
                    for w, k in zip(widths, ks, strict=True)}
            for p, label in PATHS.items()}


def _draw_sweep(plot: Any, res: Path, files: Mapping[str, Path], solution: str,
                metric: str) -> Any:
    series = _sweep(res, solution, metric)
    if series is None:
        return None
    return plot.plot_sweep(series, xlabel="hidden units per layer (MLP, 2 hidden layers)",
                           ylabel=("test error barrier (points)" if "_err" in metric
                                   else "train loss barrier (nats)"),
                           title=f"{solution.upper()} solutions of each pair")


def _draw_profile(plot: Any, res: Path, files: Mapping[str, Path], which: str) -> Any:
    path = files.get(which)
    return None if path is None else plot.plot_alignment(path, alignment_name("sgd"),
                                                         "test_err")


def _draw_ratios(plot: Any, res: Path, files: Mapping[str, Path], other: str) -> Any:
    m = store.read_results(res)["metrics"]
    if "merged" not in m:
        return None
    keys = ["test_acc", *_measure_metrics(m, "")]
    return plot.plot_paired_ratios(
        {k: np.exp(log_ratios(m[other][k], m["merged"][k])) for k in keys},
        flatter={k: _flatter(k) for k in keys},
        title=f"merged / {other.upper()} per pair (base width)",
        xlabel=f"ratio merged / {other.upper()} (log scale)")


#: The figures, ``{stem: (caption, draw(plot, results_path, files))}``: ``files`` the
#: trimmed copies of the first pair's alignment files (``x<k>``) in the report folder.
FIGURES: dict[str, FigureSpec] = {
    "barrier_width_sgd_test_err": (
        "Test error barrier (points) of the line between the two SGD solutions of each "
        "pair against the MLP's width: raw, after weight matching, and with REPAIR "
        "(mean over pairs ± 95 % CI).",
        lambda plot, res, files: _draw_sweep(plot, res, files, "sgd", "test_err_barrier")),
    "barrier_width_sgd_train_loss": (
        "Train loss barrier (CE + wd/2·‖θ‖², nats) of the same lines.",
        lambda plot, res, files: _draw_sweep(plot, res, files, "sgd",
                                             "train_loss_barrier")),
    "barrier_width_swa_test_err": (
        "Test error barrier (points) of the line between the two SWA solutions of each "
        "pair, as above.",
        lambda plot, res, files: _draw_sweep(plot, res, files, "swa", "test_err_barrier")),
    "alignment_base_test_err": (
        "Test error (%) along the raw line, the weight-matched line and the line with "
        "REPAIR between the first pair's SGD solutions, base width.",
        lambda plot, res, files: _draw_profile(plot, res, files, "base")),
    "alignment_widest_test_err": (
        "The same at the widest MLP.",
        lambda plot, res, files: _draw_profile(plot, res, files, "widest")),
    "merged_vs_sgd": (
        "Per-pair ratios merged / SGD (base width) of test accuracy and each flatness "
        "measure: dots the pairs, diamonds the geometric mean with its 95 % CI.",
        lambda plot, res, files: _draw_ratios(plot, res, files, "sgd")),
    "merged_vs_swa": (
        "The same, merged / SWA.",
        lambda plot, res, files: _draw_ratios(plot, res, files, "swa")),
}


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    """The figures, from copies of the first pair's alignment files in ``dest``.

    Returns:
        The PNG paths.
    """
    main = result["extra"]["main"]
    ks = [k for k in main if re.fullmatch(r"x\d+", k)]
    files = {}
    for label, k in (("base", ks[0]), ("widest", ks[-1])):
        if label == "widest" and k == ks[0]:
            continue
        files[label] = store.trimmed_copy(  # profiles only: not the aligned weights
            Path(main[k]), dest / f"pair0_{k}.h5",
            drop=("trajectories", "alignments/*/aligned", "alignments/*/aligned_buffers"))
    return draw_figures(FIGURES, dest, res, files)


# =========================================================================== report
def _pts(k: str) -> dict[str, Any]:
    return ({"scale": 100.0, "unit": " points", "spec": "+.2f"} if "_err" in k else
            {"spec": "+.3g", "unit": " nats"})


def _cell(v: Sequence[float], k: str) -> str:
    return format_ci(v, 100.0, 2) if "_err" in k else format_ci(v, 1.0, 4)


def _sweep_table(m: Mapping[str, Any], sol: str, widths: Sequence[int]) -> list[str]:
    rows = ["| hidden units | " + " | ".join(
        f"{label}: test error barrier (points)" for label in PATHS.values()) + " | " +
        " | ".join(f"{label}: train loss barrier" for label in PATHS.values()) + " |",
        "|---|" + "---|" * (2 * len(PATHS))]
    for w, k in zip(widths, _multiples(m), strict=True):
        cells = [_cell(m[width_method(sol, p, k)][metric], metric)
                 for metric in ("test_err_barrier", "train_loss_barrier") for p in PATHS]
        rows.append(f"| {w} (×{k}) | " + " | ".join(cells) + " |")
    return rows


def _merged_table(m: Mapping[str, Any], prefix: str) -> list[str]:
    keys = _measure_metrics(m, prefix)
    labels = {k: h.label for k, (_, _, h) in measure_keys(
        [k.split("_")[0] for k in keys]).items()}
    rows = ["| solution | test acc (%) | " + " | ".join(labels.get(k, k) for k in keys)
            + " |", "|---|---|" + "---|" * len(keys)]
    for sol, label in SOLUTIONS.items():
        r = m[prefix + sol]
        rows.append(f"| {label} | {format_ci(r['test_acc'], 100.0, 2)} | " + " | ".join(
            format_ci(r[k], spec=".4g", half_spec=".2g", finite=True) for k in keys)
            + " |")
    rows += ["", "| ratio (geometric mean over pairs, 95 % CI) | " + " | ".join(
        labels.get(k, k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for other in ("sgd", "swa"):
        cells = []
        for k in keys:
            g, lo, hi = geometric_ratio(log_ratios(m[prefix + other][k],
                                                   m[prefix + "merged"][k]))
            cells.append("n/a" if np.isnan(g) else f"{g:.3g}" if np.isnan(lo) else
                         f"{g:.3g} [{lo:.3g}, {hi:.3g}]")
        rows.append(f"| merged / {other.upper()} | " + " | ".join(cells) + " |")
    return rows


def _ratio_sentence(m: Mapping[str, Any], prefix: str, other: str, k: str,
                    label: str) -> str:
    a, b = m[prefix + other][k], m[prefix + "merged"][k]
    c = _log_call(a, b)
    g, lo, hi = geometric_ratio(log_ratios(a, b))
    ratio = (f"ratio {g:.3g}" if np.isnan(lo) else f"ratio {g:.3g} [{lo:.3g}, {hi:.3g}]")
    flatter = _flatter(k)
    if c in ("higher", "lower"):
        word = "flatter" if c == flatter else "sharper"
        return (f"{label}: **the merged solution is {word} than {other.upper()}** "
                f"({c}; {ratio}, 95 % CI of the paired log ratio excludes 1).")
    if c == "one seed":
        return f"{label}: merged / {other.upper()} {ratio} with one pair; no interval."
    if c == "n/a":
        return (f"{label}: no finite ratio merged / {other.upper()} (a value is infinite "
                "or missing, e.g. σ = ∞ where no noise level reaches the loss rise).")
    return (f"{label}: the merged solution is no different from {other.upper()} beyond "
            f"noise ({ratio}, 95 % CI includes 1).")


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m, ex = result["metrics"], result["extra"]
    st, widths, ks = ex["settings"], ex["widths"], _multiples(m)
    n = len(ex["seeds_of_pairs"])
    per = ex.get("pair_seconds") or []
    lines = [f"Each of the {n} \"seeds\" above is a **pair** of runs: training seeds "
             f"{ex['seeds_of_pairs']}; both runs of a pair are trained on the same data "
             "(that of its even seed), so their solutions differ by initialisation and "
             "minibatch order only; intervals and paired differences are over pairs.  "
             f"Model: an MLP with 2 hidden ReLU layers of {', '.join(map(str, widths))} "
             f"units (the width sweep; `model = \"mlp\"`, `hidden`), SGD for "
             f"{ex['sgd_epochs']} epochs and an SWA run of {ex['swa_epochs']} epochs per "
             "seed (one run file holds both)"
             + ("; the data set's default CNN beside it" if st.get("cnn") else "") + "."
             + (f"  Work per pair: {min(per):.0f}–{max(per):.0f} s in "
                f"{ex.get('workers', 1)} worker process(es) (last invocation)."
                if per else ""), ""]
    sols = _solutions(m)
    for sol in sols:
        lines += [f"### Does weight matching remove the barrier between two "
                  f"{sol.upper()} solutions?", ""]
        for k, w in zip(ks, widths, strict=True):
            for metric in ("test_err_barrier", "train_loss_barrier"):
                a, b = m[width_method(sol, "line", k)], m[width_method(sol, "aligned", k)]
                lines.append(f"- {w} hidden units: " + _lower_sentence(
                    "the raw line", a[metric], "the aligned line", b[metric],
                    metric.replace("_barrier", " barrier").replace("_", " ")
                    .replace("err", "error"), **_pts(metric)))
        lines.append("")
    if len(ks) > 1:
        lines += [f"### Does the barrier shrink with width (×{ks[-1]} vs ×{ks[0]}, "
                  "paired over pairs)?", ""]
        for sol in sols:
            for path, label in PATHS.items():
                metric = "test_err_barrier"
                a = m[width_method(sol, path, ks[0])][metric]
                b = m[width_method(sol, path, ks[-1])][metric]
                lines.append(f"- {sol.upper()}, {label}: " + _lower_sentence(
                    f"the {widths[0]}-unit MLP", a, f"the {widths[-1]}-unit MLP", b,
                    "test error barrier", **_pts(metric)))
        lines.append("")
    if sols:
        lines += ["### Does REPAIR lower the aligned barrier further?", ""]
        for sol in sols:
            for k, w in zip(ks, widths, strict=True):
                if k not in (ks[0], ks[-1]):
                    continue
                metric = "test_err_barrier"
                lines.append(f"- {sol.upper()}, {w} units: " + _lower_sentence(
                    "the aligned line", m[width_method(sol, "aligned", k)][metric],
                    "REPAIR", m[width_method(sol, "repair", k)][metric],
                    "test error barrier", **_pts(metric)))
        lines.append("")
    for p in _prefixes(m):
        what = (f"the base-width MLP ({widths[0]} units)" if not p else "the CNN")
        lines += [f"### Is the merged solution as good and as flat as SWA? ({what})", ""]
        for other in ("sgd", "swa"):
            lines.append("- " + verdict(other.upper(), m[p + other]["test_acc"],
                                        "the merged solution", m[p + "merged"]["test_acc"],
                                        "test accuracy"))
        labels = {k: h.label for k, (_, _, h) in measure_keys(
            [k.split("_")[0] for k in _measure_metrics(m, p)]).items()}
        for other in ("sgd", "swa"):
            for k in _measure_metrics(m, p):
                lines.append("- " + _ratio_sentence(m, p, other, k, labels.get(k, k)))
        lines += ["", f"#### Merged vs SWA vs SGD, {what}", ""]
        lines += _merged_table(m, p)
        lines += ["", "Merged: the average of the pair's two SGD solutions after weight "
                  "matching of the second to the first (`landscape merge`; BN statistics "
                  "recomputed on the train data where the model has BN).  SGD and SWA: "
                  "the even seed's run.  Measures: `landscape measure` with the "
                  f"registry's defaults on {st['measure_samples']:,} train samples "
                  f"({', '.join(st['measures'])}), the trace by "
                  f"{st.get('trace_method', 'hutchpp')}; flatter is lower λ_max and "
                  "trace, higher width and σ.", ""]
    for sol in sols:
        lines += [f"## Barriers of the {sol.upper()} solutions over pairs", ""]
        lines += _sweep_table(m, sol, widths)
        lines.append("")
    for p in [q for q in _prefixes(m) if q] + (["cnn_"] if any(
            k.startswith("cnn_sgd_line") for k in m) and "cnn_merged" not in m else []):
        rows = [f"{p}{s}_{path}" for s in sols for path in PATHS]
        lines += ["## Barriers of the CNN over pairs", "",
                  "| path | test error barrier (points) | train loss barrier |",
                  "|---|---|---|"]
        lines += [f"| {r.removeprefix(p)} | "
                  f"{_cell(m[r]['test_err_barrier'], 'test_err_barrier')} | "
                  f"{_cell(m[r]['train_loss_barrier'], 'train_loss_barrier')} |"
                  for r in rows if r in m]
        lines.append("")
    lines += ["Barrier: the maximum over t of a metric along the path minus the mean of "
              f"its values at the two endpoints (t = 0, 1), at {st['points']} equally "
              "spaced values of t; errors in percentage points, losses in nats (the "
              "train loss with the runs' L2 term wd/2·‖θ‖²).  Alignment: weight matching "
              "(Ainsworth et al. 2022) of the odd seed's solution to the even seed's; "
              "REPAIR (Jordan et al. 2022): for the MLP, which has no BN, the affine "
              "correction of each hidden unit's preactivation to the interpolated "
              "endpoints' mean and standard deviation on "
              f"{st.get('align_samples') or 'the default number of'} train inputs.  "
              "Every error, loss and measure goes through the toolkit's one evaluation "
              "path.", "", "## Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    lines += [f"Redraw a profile: `landscape plot {out / f'pair0_x{ks[0]}.h5'} "
              "--all --out-dir DIR` (the full run files stay in the runs folder).", ""]
    return lines

