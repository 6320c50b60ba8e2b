"""Protocol ``seed004``: its figures (``FIGURES``) and the report's Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from landscape import store
from landscape.experiments._common import (
    Experiment,
    FigureSpec,
    draw_figures,
    figure_lines,
)
from landscape.stats import verdict


def _history(plot: Any, res: Path, run: str | None) -> Any:
    """The first seed's training curves, or ``None`` (no run, or ``--eval-every 0``)."""
    return plot.plot_history(run) if run and store.contents(run)["history"] else None


#: The figures of the report, in order: ``{stem: (caption, draw(plot, results, first
#: seed's run file or None))}``; the report shows them without captions.
FIGURES: dict[str, FigureSpec] = {
    "averaging": (None, lambda plot, res, run: plot.plot_swa_vs_sgd(res, metrics=["test_acc"])),
    "checkpoints": (None, lambda plot, res, run: plot.plot_checkpoints(run) if run else None),
    "history": (None, _history),
}


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    runs = result.get("extra", {}).get("runs", [])
    return draw_figures(FIGURES, dest, res, runs[0] if runs else None)


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m = result["metrics"]
    return ["- " + verdict("the checkpoints' mean", m["checkpoints_mean"]["test_acc"],
                           "the averaged model", m["avg"]["test_acc"], "test accuracy"),
            "- " + verdict("the last checkpoint", m["last"]["test_acc"],
                           "the averaged model", m["avg"]["test_acc"], "test accuracy"),
            "", "## Figures", "", *figure_lines(figures, out)]
