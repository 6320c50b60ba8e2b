"""Protocol ``controls``: the figure only its report draws (the others are in
:mod:`landscape.plot`).

Imported only to draw: it imports :mod:`landscape.plot`, and so matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from landscape._errors import UserError
from landscape.plot import CYCLE, fig_and_axes, style
from landscape.stats import mean_ci

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_log_ratio_bars(changes: Mapping[str, Mapping[str, np.ndarray]], *,
                        ax: Axes | None = None, title: str = "change of each quantity",
                        floor: float = 1e-16) -> tuple[Figure, Axes]:
    """Grouped bars of |log10 ratio| per quantity and condition, mean over seeds with
    its 95 % Student-t interval, on a log axis (unchanged values sit at ``floor``).

    Args:
        changes: ``{label: {condition: (n_seeds,) ratios}}`` (e.g. value at α over
            value at α = 1).
        ax: Axes to draw on.
        title: Axes title.
        floor: Smallest |log10 ratio| drawn (float64 rounding level).

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If no values are given.
    """
    if not changes:
        raise UserError("no ratios to plot")
    labels = list(changes)
    conds = list(dict.fromkeys(c for v in changes.values() for c in v))
    width = 0.8 / max(len(conds), 1)
    with style(**{"figure.figsize": (max(7.0, 0.7 * len(labels) + 2), 4.8)}):
        fig, ax = fig_and_axes(ax)
        for j, c in enumerate(conds):
            xs, ms, errs = [], [], []
            for i, label in enumerate(labels):
                r = np.asarray(changes[label].get(c, []), dtype=np.float64)
                r = r[np.isfinite(r) & (r > 0)]
                if not r.size:
                    continue
                v = np.maximum(np.abs(np.log10(r)), floor)
                m, h = mean_ci(v)
                xs.append(i - 0.4 + width * (j + 0.5))
                ms.append(m)
                errs.append(0.0 if np.isnan(h) else min(h, m - floor))
            ax.bar(xs, ms, width * 0.9, yerr=errs, capsize=3, label=c,
                   color=CYCLE[j % len(CYCLE)], alpha=0.85)
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, None)
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("|log10 ratio| (mean over seeds)")
        ax.set_title(title)
        ax.legend()
    return fig, ax
