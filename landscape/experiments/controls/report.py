"""Protocol ``controls``: its figures (``FIGURES``) and the report's Markdown."""

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
from landscape.experiments.controls.settings import (
    APPROX_TOL,
    ARMS,
    ASAM_WEIGHTS_LABEL,
    INVARIANT_TOL,
    SEM_TOL,
    SOLVER_TOL,
    _headlines,
)
from landscape.sharpness import (
    params_of,
)
from landscape.stats import format_ci, geometric_ratio, log_ratios


# =========================================================================== report
def _fmt(v: Sequence[float], digits: int = 4) -> str:
    return format_ci(v, spec=f".{digits}g", half_spec=".2g", finite=True)


def _pct(v: Sequence[float]) -> str:
    return format_ci(v, scale=100.0, spec=".4g", half_spec=".2g", finite=True)


def _ratio_cell(g: tuple[float, float, float]) -> str:
    r, lo, hi = g
    if math.isnan(r):
        return "n/a"
    return f"{r:.3g}" + ("" if math.isnan(lo) else f" [{lo:.3g}, {hi:.3g}]")


def batch_verdicts(batch: Mapping[str, Mapping[str, Sequence[float]]]
                   ) -> list[tuple[str, str, str, str, str]]:
    """Per headline: small, large, ratio cell and the verdict sentence.

    Returns:
        ``(label, small cell, large cell, ratio cell, verdict)`` rows.
    """
    rows = []
    for _, h in _headlines():
        sb = batch["small_batch"].get(h.label, [])
        lb = batch["large_batch"].get(h.label, [])
        g = geometric_ratio(log_ratios(sb, lb))
        r, lo, hi = g
        sharper_hi = h.flatter == "lower"  # a larger value means sharper
        way = "larger" if sharper_hi else "smaller"
        if math.isnan(r):
            v = "**fails**: no positive values to compare (no ranking)."
        elif math.isnan(lo):
            v = (f"one seed only, ratio {r:.3g}: large batch ranked "
                 f"{'sharper' if (r > 1) == sharper_hi else 'flatter'}, no interval.")
        elif (lo > 1) if sharper_hi else (hi < 1):
            v = (f"**passes**: ranks the large-batch solution sharper beyond noise "
                 f"({way} by ×{r if sharper_hi else 1 / r:.3g}, 95 % CI of the ratio "
                 f"{lo:.3g}–{hi:.3g} excludes 1).")
        elif (hi < 1) if sharper_hi else (lo > 1):
            v = (f"**fails**: ranks the large-batch solution *flatter* beyond noise "
                 f"(ratio {r:.3g}, 95 % CI {lo:.3g}–{hi:.3g}).")
        else:
            v = (f"**fails**: no difference beyond noise (ratio {r:.3g}, 95 % CI "
                 f"{lo:.3g}–{hi:.3g} includes 1).")
        rows.append((h.label, _fmt(sb), _fmt(lb), _ratio_cell(g), v))
    return rows


def _dinh_labels(dinh: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    first = next(iter(dinh.values()), {})
    return [k for k in first if k != "loss"]


def _expected(label: str) -> str:
    """Expected behaviour of a measure under Dinh's rescaling (reference §7)."""
    if label.startswith(ASAM_WEIGHTS_LABEL):
        return "changes (T = 1 on the rescaled bias)"
    if label.startswith("ASAM") and "η = 0" in label:
        return "invariant"
    if label.startswith("PAC-Bayes σ′") and "ε = 0" in label:
        return "invariant"
    if label.startswith(("ASAM", "PAC-Bayes σ′")):
        return "≈ invariant (η, ε > 0)"
    return "changes"


def dinh_table(dinh: Mapping[str, Mapping[str, Sequence[float]]]) -> list[dict[str, Any]]:
    """Per measure: values at each α, per-seed ratios to α = 1 and the observed class.

    Returns:
        Rows ``{label, values: {alpha: list}, ratios: {alpha: array}, max_change,
        observed, expected}``.
    """
    alphas = [k for k in dinh if k != "alpha=1"]
    rows = []
    for label in _dinh_labels(dinh):
        base = np.asarray(dinh["alpha=1"][label], float)
        ratios = {}
        for a in alphas:
            v = np.asarray(dinh[a][label], float)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios[a] = v / base
        allr = np.concatenate(list(ratios.values())) if ratios else np.zeros(0)
        change = float(np.nanmax(np.abs(allr - 1))) if np.isfinite(allr).any() else math.nan
        observed = ("invariant" if change <= INVARIANT_TOL else
                    "≈ invariant" if change <= APPROX_TOL else "changes")
        rows.append({"label": label, "values": {a: dinh[a][label] for a in dinh},
                     "ratios": ratios, "max_change": change, "observed": observed,
                     "expected": _expected(label)})
    return rows


def _agrees(expected: str, observed: str) -> bool:
    return expected.split(" (")[0].lstrip("≈ ") == observed.lstrip("≈ ") or (
        expected.startswith("≈") and observed in ("invariant", "≈ invariant"))


def _log_ratio_bars(changes: Mapping[str, Mapping[str, Any]]) -> Any:
    from landscape.experiments.controls.figures import plot_log_ratio_bars

    return plot_log_ratio_bars(changes, title="change under Dinh et al.'s rescaling")


#: The figures of the report, in report order: ``{stem: (caption, draw(plot, results,
#: ratios, flatter, changes))}`` with the inputs :func:`controls_figures` reads from
#: the results file.
FIGURES: dict[str, FigureSpec] = {
    "accuracy": (
        "Train and test accuracy of the small-batch and large-batch solutions (and of the "
        "ReLU MLP of the reparametrization control): mean ± 95 % CI over seeds, one dot "
        "per seed.",
        lambda plot, results, ratios, flatter, changes: plot.plot_swa_vs_sgd(
            results, metrics=["train_acc", "test_acc"])),
    "batch_ratios": (
        "Batch-size control: large-batch / small-batch ratio of each measure, one dot per "
        "seed, the geometric mean with its 95 % Student-t interval (log scale). For "
        "λ_max, trace and the sharpness values a ratio above 1 means the large-batch "
        "solution is sharper; for σ, σ′ and the width a ratio below 1 does.",
        lambda plot, results, ratios, flatter, changes: plot.plot_paired_ratios(
            ratios, flatter=flatter, title="large batch / small batch, paired over seeds",
            xlabel="ratio large / small (log scale)")),
    "dinh_log_ratios": (
        "Reparametrization control: |log10 (value at α / value at α = 1)| of each measure "
        "for each α, mean over seeds with its 95 % interval (log scale; bars at the floor "
        "1e-16 are unchanged to float64 rounding). A function-preserving rescaling should "
        "leave an invariant measure at the floor.",
        lambda plot, results, ratios, flatter, changes: _log_ratio_bars(changes)),
}


def controls_figures(results: Path, result: Mapping[str, Any], dest: Path) -> list[Path]:
    """The report's figures, from the results file alone.

    Returns:
        The PNG paths, in :data:`FIGURES` order.
    """
    r = store.read_results(results)
    ex = r["attrs"]["extra"]
    ratios, flatter = {}, {}
    for _, h in _headlines():
        lr = log_ratios(ex["batch"]["small_batch"].get(h.label, []),
                        ex["batch"]["large_batch"].get(h.label, []))
        ratios[h.label] = np.exp(lr)
        flatter[h.label] = h.flatter
    changes = {row["label"]: {a.replace("alpha=", "α = "): v for a, v in row["ratios"].items()}
               for row in dinh_table(ex["dinh"])}
    return draw_figures(FIGURES, dest, results, ratios, flatter, changes)


def report_sections(exp: Experiment, result: Mapping[str, Any], figures: Sequence[Path],
                    out: Path) -> list[str]:
    """The report after the accuracy table: the three controls, a summary, figures.

    Returns:
        Markdown lines.
    """
    ex, m = result["extra"], result["metrics"]
    st = ex["settings"]
    n = len(ex["seeds"])
    lines = [*_summary(ex), ""]
    # ------------------------------------------------------------- batch size
    acc = {a: np.asarray(m[a]["train_acc"], float) for a in ARMS}
    reached = all((v >= 1.0).all() for v in acc.values())
    lines += [
        "## 1. Positive control: small vs large batches (Keskar et al. 2017)", "",
        f"Per seed, `{exp.cfg.model}` on the same data and from the same initialization, "
        f"plain SGD (momentum {exp.cfg.momentum:g}, weight decay {exp.cfg.wd:g}, "
        f"`{exp.cfg.sgd_schedule}` schedule, no SWA run): **small batch** "
        f"{exp.cfg.batch_size}, lr {exp.cfg.lr:g}, {exp.cfg.epochs} epochs (the train "
        f"config above); **large batch** {st['large_batch']}, lr {st['large_lr']:g} "
        f"({st['large_lr'] / exp.cfg.lr:.3g}× the small-batch lr for "
        f"{st['large_batch'] / exp.cfg.batch_size:.3g}× the batch), "
        f"{st['large_epochs']} epochs. The run files record the initial and the final "
        "weights. "
        + ("Both reached 100 % train accuracy on every seed." if reached else
           "**Not every run reached 100 % train accuracy**: minimum over seeds "
           + ", ".join(f"{LABELS[a]} {100 * acc[a].min():.2f} %" for a in ARMS) + "."),
        f"Test accuracy: small batch {_pct(m['small_batch']['test_acc'])} %, large batch "
        f"{_pct(m['large_batch']['test_acc'])} %.", "",
        f"Measures on a fixed, seeded subset of {st['measure_samples']} train samples, BN "
        f"in eval mode with each solution's statistics (width: statistics recomputed "
        f"along the rays), registry defaults except {st['trace_samples']} trace probes, "
        f"{st['directions']} width directions and no λ_min. The ratio is the geometric "
        f"mean of the {n} per-seed ratios large/small with the 95 % Student-t interval "
        "of their logarithms (paired: same seed, data and initialization).", "",
        "| measure | small batch | large batch | large / small [95 % CI] | verdict |",
        "|---|---|---|---|---|"]
    for label, a, b, r, v in batch_verdicts(ex["batch"]):
        lines.append(f"| {label} | {a} | {b} | {r} | {v.split(':')[0]} |")
    lines += [""] + [f"- **{label}**: {v}" for label, _, _, _, v in
                     batch_verdicts(ex["batch"])] + [""]
    # ------------------------------------------------------------- geometry
    geo = ex["geometry"]
    lines += [
        "## 2. Positive control: known geometry (linear least squares)", "",
        f"A linear model with 4 inputs and a bias, squared loss (`nn.MSELoss`), on "
        f"{st['geometry_samples']} samples (x ~ N(0.5, diag(2, 1, 0.5, 0.25)²), "
        "y = xᵀ(1, −2, 0.5, 3) + 0.3 + 0.1·noise; one draw per seed), at its least-squares "
        "minimum (float64). The loss is exactly quadratic there with H = 2AᵀA/N, "
        "A = [X, 1], so every measure has a closed form (reference §9). Measures in "
        "float64 on all samples with the registry defaults (ρ = 0.05, ASAM ρ = 0.5 and "
        f"η = 0.01, σ = 0.01, ε = 1e-3, τ = 0.1), ASAM with both `asam_normalize` "
        "choices (T on every entry, the default, and on weights only as ASAM's code), "
        f"{st['trace_samples']} trace probes, "
        f"{st['directions']} width directions, PAC-Bayes on the loss with rise "
        f"Δ = {st['pacbayes_target_loss']:g} (the model is a regressor). Pass: solvers "
        f"within a relative {SOLVER_TOL:g} (their own tolerances: ARPACK, width "
        f"bisection); Monte Carlo estimators (trace, average sharpness, σ, σ′) within "
        f"{SEM_TOL:g} of their reported standard errors. The table is seed 0; the last "
        f"column counts the seeds (of {len(geo)}) that pass.", "",
        "| measure | closed form | closed-form value | measured | relative error | "
        "pass (seed 0) | "
        "seeds passing |", "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(geo[0]):
        passes = sum(g[i]["passed"] for g in geo)
        err = f"{row['rel_err']:+.2e}"
        if not math.isnan(row["z"]):
            err += f" ({row['z']:+.2f} SE)"
        lines.append(f"| {row['label']} | {row['closed_text']} | {row['closed']:.6g} | "
                     f"{row['measured']:.6g} | {err} | "
                     f"{'yes' if row['passed'] else '**no**'} | {passes}/{len(geo)} |")
    lines += ["", *_geometry_verdicts(geo), ""]
    # ------------------------------------------------------------- Dinh
    dinh = ex["dinh"]
    alphas = [k for k in dinh if k != "alpha=1"]
    loss = {a: np.asarray(dinh[a]["loss"], float) for a in dinh}
    dl = max(float(np.max(np.abs(loss[a] - loss["alpha=1"]))) for a in alphas)
    lines += [
        "## 3. Negative control: reparametrization (Dinh et al. 2017)", "",
        f"Per seed, `{st['dinh_model']}` (ReLU, biases, no BatchNorm) trained like the "
        "small-batch arm, then rescaled layer-wise: the first linear layer's weight and "
        "bias × α, the second's weight × 1/α, which leaves the function unchanged: the "
        f"float64 train loss changed by at most {dl:.1e} over seeds and α "
        f"(loss {_fmt(loss['alpha=1'], 6)} at α = 1). Every measure in float64 on "
        f"{st['measure_samples']} train samples at α ∈ {{1, "
        + ", ".join(a.split("=")[1] for a in alphas) + "} with the same seed (same "
        "probes, noise and directions). Observed class: **invariant** if every seed's "
        f"value moved by at most a relative {INVARIANT_TOL:g}, **≈ invariant** up to "
        f"{APPROX_TOL:g}, else **changes**; the ratio columns are geometric means of "
        "the per-seed ratios value(α)/value(1).", "",
        "| measure | α = 1 | " + " | ".join(f"{a.replace('alpha', 'α')} (ratio)"
                                         for a in alphas)
        + " | max rel. change | expected | observed |",
        "|---|---|" + "---|" * len(alphas) + "---|---|---|"]
    rows = dinh_table(dinh)
    for row in rows:
        cells = [f"{_fmt(row['values'][a])} (×{geometric_ratio(np.log(row['ratios'][a]))[0]:.3g})"
                 for a in alphas]
        ok = _agrees(row["expected"], row["observed"])
        lines.append(f"| {row['label']} | {_fmt(row['values']['alpha=1'])} | "
                     + " | ".join(cells) + f" | {row['max_change']:.2g} | "
                     f"{row['expected']} | {row['observed']}"
                     + ("" if ok else " (**not as expected**)") + " |")
    lines += ["", *_dinh_verdicts(rows), "", "## Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    lines += [f"Run files (training runs and every stored measure): `{ex['runs']}`.", ""]
    return lines


def _summary(ex: Mapping[str, Any]) -> list[str]:
    """One line per control: which measures pass and which fail."""
    batch = batch_verdicts(ex["batch"])
    ok = [label for label, *_, v in batch if v.startswith("**passes")]
    bad = [label for label, *_, v in batch if not v.startswith("**passes")]
    geo = ex["geometry"]
    gbad = sorted({r["label"] for g in geo for r in g if not r["passed"]},
                  key=[r["label"] for r in geo[0]].index)
    dbad = [r["label"] for r in dinh_table(ex["dinh"])
            if not _agrees(r["expected"], r["observed"])]
    return [
        f"- **Batch size** (large batch sharper beyond noise): {len(ok)}/{len(batch)} "
        f"measures pass" + (f"; fail: {', '.join(bad)}." if bad else "."),
        "- **Known geometry** (closed forms): "
        + (f"misses on some seed: {', '.join(gbad)}; every other row matches on every "
           "seed." if gbad else "every row matches on every seed.")
        + "".join(f" ε-sharpness is {w}." for w in _eps_exactness(geo)),
        "- **Reparametrization**: "
        + (f"not as expected: {', '.join(dbad)}; every other measure behaves as "
           "expected." if dbad else "every measure behaves as expected.")]


def _geometry_verdicts(geo: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    out = []
    for i, row in enumerate(geo[0]):
        misses = [(s, g[i]) for s, g in enumerate(geo) if not g[i]["passed"]]
        if not misses:
            continue
        worst = max(misses, key=lambda t: abs(t[1]["rel_err"]))[1]
        line = (f"- **{row['label']} misses its closed form** on {len(misses)} of "
                f"{len(geo)} seeds (worst: measured {worst['measured']:.6g} vs "
                f"{worst['closed']:.6g}, relative error {worst['rel_err']:+.2e}"
                + (f", {worst['z']:+.1f} standard errors" if not math.isnan(worst["z"])
                   else "") + ").")
        if row["key"] == "eps" and not all(g[i].get("exact", False) for g in geo):
            line += (" The maximum of a convex quadratic over the box is at a vertex; "
                     "L-BFGS-B and the vertex ascents stopped below the best vertex, so "
                     "the value is a lower bound (raise `eps_vertex_starts` until every "
                     "vertex is evaluated).")
        out.append(line)
    if not out:
        out.append("- Every measure matches its closed form on every seed.")
    out += _eps_method(geo)
    z = {row["label"]: max(abs(g[i]["z"]) for g in geo) for i, row in enumerate(geo[0])
         if not math.isnan(row["z"])}
    out.append("- The Monte Carlo estimators agree within their own standard errors; "
               "largest |error| / standard error over the seeds: "
               + ", ".join(f"{k} {v:.2f}" for k, v in z.items()) + ". Their relative "
               "errors (see the table) are those of the default sample counts.")
    return out


def _eps_exactness(geo: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    """``["exact on every seed"]``, ``["a lower bound on k of n seeds"]`` or ``[]``."""
    i = next((i for i, row in enumerate(geo[0]) if row["key"] == "eps"), None)
    if i is None or "exact" not in geo[0][i]:
        return []
    lower = sum(not g[i]["exact"] for g in geo)
    return ["exact on every seed (every box vertex evaluated)" if not lower else
            f"a lower bound on {lower} of {len(geo)} seeds (not every vertex evaluated)"]


def _eps_method(geo: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    """Say how ε-sharpness was found on each seed: exact or a lower bound."""
    i = next((i for i, row in enumerate(geo[0]) if row["key"] == "eps"), None)
    if i is None or "exact" not in geo[0][i]:
        return []
    exact = [s for s, g in enumerate(geo) if g[i]["exact"]]
    methods = sorted({g[i]["method"] for g in geo})
    if len(exact) == len(geo):
        return ["- **ε-sharpness (Keskar)** is **exact** on every seed: after L-BFGS-B "
                "every vertex of the 5-dimensional box was evaluated (the box has 2^5 = "
                "32 vertices, within the default vertex budget `eps_vertex_starts` × "
                "`eps_maxiter`), and the maximum of this convex quadratic over the box "
                "is at a vertex."]
    return [f"- **ε-sharpness (Keskar)** is a **lower bound** on {len(geo) - len(exact)} "
            f"of {len(geo)} seeds ({', '.join(methods)}): not every vertex of the box "
            "was evaluated."]


#: Why ASAM with T on every entry but η > 0 moves under the rescaling.
_ETA_NOTE = (" Its T = |θ| + η covers every entry, biases included, but follows the "
             "rescaling only where |θ_i| ≫ η = {eta:g}: shrinking a layer ten-fold (the "
             "first layer at α = 0.1, the second layer's weight at α = 10) brings many of "
             "its entries near η, so the normalized region is not mapped onto itself. This "
             "is η's approximation, not the bias: with η = 0 the same T is invariant (the "
             "row *ASAM sharpness, η = 0, T = |θ| on every entry*), while T on weights "
             "only changes far more (its rows).")


def _asam_headline() -> str:
    return next(h.label for m, h in _headlines() if m == "asam")


def _dinh_verdicts(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out, own = [], set()
    for row in rows:
        ok = _agrees(row["expected"], row["observed"])
        label = row["label"]
        if label.startswith(ASAM_WEIGHTS_LABEL) and ok:
            out.append(
                f"- **{label}** changes, as expected (max relative change "
                f"{row['max_change']:.2g}). "
                + ("The same cause." if own & {r["label"] for r in rows
                                               if r["label"].startswith(ASAM_WEIGHTS_LABEL)}
                   else "ASAM's code normalizes the parameters named `weight` only (T = 1 "
                   "on biases), while the rescaling also multiplies the first layer's "
                   "bias by α. With T = |θ| + η on every entry (`asam_normalize = "
                   "\"all\"`, the default: the row *ASAM sharpness*) the normalization "
                   "follows the bias too; with η = 0 the value is invariant (its row)."))
            own.add(label)
        elif not ok:
            out.append(f"- **{label}**: expected {row['expected']}, observed "
                       f"{row['observed']} (max relative change {row['max_change']:.2g})."
                       + (_ETA_NOTE.format(eta=params_of("asam", {}).eta)
                          if label == _asam_headline() else ""))
            own.add(label)
    out.append("- Every other measure behaves as expected: "
               + ", ".join(f"{r['label']} {r['observed']}" for r in rows
                           if r["label"] not in own) + ".")
    return out


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    return controls_figures(res, result, dest)


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    return report_sections(exp, result, figures, out)
