"""Protocol ``seed000``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.experiments._common import (
    Experiment,
    FigureSpec,
    ci_cell,
    draw_figures,
    figure_lines,
)
from landscape.stats import comparison, format_pm, paired_call, verdict

#: The figures of the report: ``{stem: (caption, draw(plot, results))}``; the report
#: shows them without captions.
FIGURES: dict[str, FigureSpec] = {
    "swa_vs_sgd": (None, lambda plot, res: plot.plot_swa_vs_sgd(
        res, metrics=["cv_acc", "train_acc", "test_acc"])),
}


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    return draw_figures(FIGURES, dest, res)


#: The seed's own results (IIIT Vadodara report, Kaggle Digit Recognizer): Optuna's
#: best configs and the train / public-leaderboard test scores of one run each.
SEED_REPORTED = {
    "sgd": {"batch_size": 512, "epochs": 50, "lr": 2.714460153443568, "patience": 3,
            "momentum": 0.34345263068415116, "train_acc": 0.99514, "test_acc": 0.95771},
    "swa": {"batch_size": 128, "epochs": 50, "lr": 7.992390252758013, "patience": 5,
            "momentum": 0.8380950070538395, "train_acc": 0.98803, "test_acc": 0.97739},
}


def verdicts(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's calls as data (for :mod:`landscape.experiments.stability`).

    Args:
        result: ``{"metrics": ...}`` of a seed000 run or results file.

    Returns:
        ``{claim: "beats" | "worse" | "no difference" | "one seed"}`` for SWA vs SGD.
    """
    m = result["metrics"]
    return {f"SGD + SWA vs SGD, {k.replace('_acc', ' accuracy').replace('cv', 'CV')}":
            paired_call(m["sgd"][k], m["swa"][k])
            for k in ("test_acc", "cv_acc", "train_acc") if k in m["sgd"]}


def _ranges(space: Mapping[str, Any]) -> dict[str, str]:
    kinds = {"batch_size": "one of", "lr": "log-uniform", "momentum": "uniform",
             "patience": "integer", "epochs": "integer", "swa_lr_ratio": "log-uniform"}
    out = {}
    for k, v in space.items():
        if k == "batch_size":
            out[k] = "{" + ", ".join(str(b) for b in v) + "}"
        else:
            lo, hi = v
            out[k] = f"{lo:g}–{hi:g} ({kinds.get(k, '')})"
    return out


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m = result["metrics"]
    extra = result.get("extra", {})
    lines = ["- " + verdict("SGD", m["sgd"][k], "SWA", m["swa"][k], k.replace("_", " "))
             for k in ("test_acc", "cv_acc")]
    d = 100 * (np.asarray(m["swa"]["test_acc"]) - np.asarray(m["sgd"]["test_acc"]))
    lines += ["- Per seed, SWA − SGD test accuracy (points): "
              + ", ".join(f"{x:+.2f}" for x in d)
              + f"; SWA higher on {int((d > 0).sum())} of {len(d)} seeds."]
    n = len(m["sgd"]["test_acc"])
    dm, dh = comparison(m["sgd"]["test_acc"], m["swa"]["test_acc"])
    seed_d = 100 * (SEED_REPORTED["swa"]["test_acc"] - SEED_REPORTED["sgd"]["test_acc"])
    lines += ["", "## Beside the seed", "",
              f"| | seed 000 (Kaggle, one run each) | here (mean ± 95 % CI, {n} seeds) |",
              "|---|---|---|"]
    for method, label in (("sgd", "SGD (no SWA)"), ("swa", "SGD + SWA")):
        for k, what in (("train_acc", "train acc"), ("test_acc", "test acc")):
            lines.append(f"| {label}, {what} | {100 * SEED_REPORTED[method][k]:.2f} | "
                         f"{ci_cell(m[method][k], True)} |")
    lines += [f"| SWA − SGD, test acc (points) | {seed_d:+.2f} | "
              f"{format_pm(dm, dh, '+.2f', '.2f', scale=100.0)} (paired) |", "",
              "The seed's test scores are Kaggle public-leaderboard scores of its "
              "submissions; its train scores are on Kaggle's `train.csv`. Here test "
              "accuracy is that of the held-out images (see Data above), train accuracy "
              "that of the training images, each the mean over seeds."]
    space = exp.settings["search"]
    bp = extra.get("best_params", {})
    rng = _ranges(space)
    lines += ["", "## Search space and budget", "",
              "| knob | seed: best SGD | seed: best SWA | searched here | here: best SGD "
              "| here: best SWA |", "|---|---|---|---|---|---|"]
    for k in ("batch_size", "epochs", "lr", "momentum", "patience", "swa_lr_ratio"):
        def cell(v: Any) -> str:
            return "—" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
        lines.append(f"| {k} | {cell(SEED_REPORTED['sgd'].get(k))} | "
                     f"{cell(SEED_REPORTED['swa'].get(k))} | {rng.get(k, 'not searched')} "
                     f"| {cell(bp.get('sgd', {}).get(k))} | {cell(bp.get('swa', {}).get(k))} |")
    sec = extra.get("stage_seconds", {})
    tune_s = sum(v for k, v in sec.items() if k.startswith("tune"))
    seed_s = sum(v for k, v in sec.items() if not k.startswith("tune"))
    lines += ["", f"Budget: {exp.settings['trials']} Optuna trials per method (TPE, "
              f"seeded), each one fit on 4/5 of the training images scored on the other "
              f"fifth (seed 0), at most {space['epochs'][1]} epochs (the seed allowed "
              f"50; its trial count is not stated); then per seed {exp.settings['folds']}"
              "-fold CV of each best config and a final fit on all training images for "
              "the median CV stopping epoch. SWA averages once per epoch from "
              f"round({exp.settings.get('swa_start_frac', 0.5)} × epochs) at swa_lr = "
              "swa_lr_ratio × lr (the seed's SWA schedule is not stated). The trial "
              "count and the epoch cap set the time budget (below)."]
    if sec:
        per = ", ".join(f"{k.replace('/', ' ')} {v:.0f} s" for k, v in sec.items())
        lines += ["", f"Compute time: search {tune_s:.0f} s, CV and final fits "
                  f"{seed_s:.0f} s over {n} seeds; {(tune_s + seed_s) / n:.0f} s per seed "
                  f"with the search shared out ({per}; "
                  f"{extra.get('workers', 1)} CV worker process(es), "
                  f"{extra.get('serial_threads', 1)} thread(s) for the search and final "
                  "fits)."]
    subs = extra.get("submissions", [])
    if subs:
        lines += ["", "Kaggle submissions (seed 0's models, `ImageId,Label`): "
                  + ", ".join(f"`{s}`" for s in subs)]
    return [*lines, "", "## Figures", "", *figure_lines(figures, out)]
