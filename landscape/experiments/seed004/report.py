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
from landscape.stats import paired_call, verdict


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


#: The report's comparisons: ``(baseline key, its words)``, each against the averaged model.
_BASELINES = (("checkpoints_mean", "the checkpoints' mean"), ("last", "the last checkpoint"))


def verdicts(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's calls as data (for :mod:`landscape.experiments.stability`).

    Args:
        result: ``{"metrics": ...}`` of a seed004 results file.

    Returns:
        ``{claim: "beats" | "worse" | "no difference" | "one seed"}`` for the averaged
        model against each baseline, on test accuracy paired over seeds.
    """
    m = result["metrics"]
    return {f"averaged model vs {words}, test accuracy":
            paired_call(m[key]["test_acc"], m["avg"]["test_acc"])
            for key, words in _BASELINES}


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    runs = result.get("extra", {}).get("runs", [])
    return draw_figures(FIGURES, dest, res, runs[0] if runs else None)


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m = result["metrics"]
    return [*("- " + verdict(words, m[key]["test_acc"], "the averaged model",
                             m["avg"]["test_acc"], "test accuracy")
              for key, words in _BASELINES),
            "", "## Figures", "", *figure_lines(figures, out)]
