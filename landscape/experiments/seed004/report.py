"""Protocol ``seed004``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from landscape import store
from landscape.experiments._common import (
    Experiment,
    figure_lines,
)
from landscape.stats import verdict


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    from landscape import plot

    figs = plot.save_figure(plot.plot_swa_vs_sgd(res, metrics=["test_acc"])[0],
                            dest / "averaging")
    for run in result.get("extra", {}).get("runs", [])[:1]:
        figs += plot.save_figure(plot.plot_checkpoints(run)[0], dest / "checkpoints")
        if store.contents(run)["history"]:  # not with --eval-every 0
            figs += plot.save_figure(plot.plot_history(run)[0], dest / "history")
    return figs


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m = result["metrics"]
    return ["- " + verdict("the checkpoints' mean", m["checkpoints_mean"]["test_acc"],
                           "the averaged model", m["avg"]["test_acc"], "test accuracy"),
            "- " + verdict("the last checkpoint", m["last"]["test_acc"],
                           "the averaged model", m["avg"]["test_acc"], "test accuracy"),
            "", "## Figures", "", *figure_lines(figures, out)]
