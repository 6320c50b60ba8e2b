r"""Figures from HDF5 files only: surfaces, training curves, checkpoints, measures.

The *plot functions* (``plot_*``) take a file path — a run file, a results
file or an analysis file written by :func:`landscape.save` — (or, for the
measure plots, plain arrays from the :mod:`landscape.store` readers), draw on
``ax`` (a new figure when ``ax=None``) and return ``(fig, ax)``, in the spirit
of torchmetrics' ``plot()``.  Files are read through :mod:`landscape.store`.
Style is applied through :func:`matplotlib.rc_context`, with the Okabe–Ito
colour-blind-safe palette (Okabe & Ito 2008), so nothing global changes.

This is the only module that imports matplotlib, and ``import landscape`` does
not import it.  If pyplot has not been imported yet, the non-interactive Agg
backend is selected, so plotting works on headless machines.

Example:
    >>> from landscape.plot import OKABE_ITO
    >>> OKABE_ITO["blue"]
    '#0072B2'
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

if "matplotlib.pyplot" not in sys.modules:  # headless default; keep a user's choice
    matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape._errors import UserError, check_int
from landscape.stats import mean_ci
from landscape.store import (
    KINDS,
    RESULTS_KIND,
    alignment_profiles,
    contents,
    curve_attrs,
    file_title,
    open_file,
    read_checkpoints,
    read_density,
    read_fge,
    read_history,
    read_measure_arrays,
    read_profile,
    read_rays,
    read_results,
    read_surface,
    read_swag_evaluation,
    read_widths,
)
from landscape.surface import Surface

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {
    "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
    "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000",
}
#: Fixed colour per solution / run so every figure agrees.
COLORS = {
    "sgd": OKABE_ITO["blue"], "swa": OKABE_ITO["vermillion"], "swa_last": OKABE_ITO["green"],
    "avg": OKABE_ITO["vermillion"], "swa_model": OKABE_ITO["vermillion"],
    "checkpoints": OKABE_ITO["blue"], "mean": OKABE_ITO["black"],
}
#: The colour cycle of every figure, in this order.
CYCLE = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "orange", "purple", "sky",
                                "yellow", "black")]
STYLE: dict[str, Any] = {
    "axes.prop_cycle": matplotlib.cycler(color=CYCLE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.figsize": (6.0, 4.2),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "legend.frameon": False,
    "font.size": 10,
    "image.cmap": "viridis",
}
METRIC_LABELS = {
    "train_loss": "train loss (cross-entropy, nats)",
    "test_loss": "test loss (cross-entropy, nats)",
    "train_acc": "train accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_err": "train error (%)",
    "test_err": "test error (%)",
}

__all__ = [
    "CYCLE",
    "METRIC_LABELS",
    "OKABE_ITO",
    "PLOTS",
    "FilePlot",
    "fig_and_axes",
    "plot_all",
    "plot_checkpoints",
    "plot_curve_profiles",
    "plot_eigenvalue_density",
    "plot_fge",
    "plot_history",
    "plot_paired_ratios",
    "plot_rays",
    "plot_regimes",
    "plot_surface",
    "plot_surface_1d",
    "plot_surface_2d",
    "plot_surface_3d",
    "plot_swa_vs_sgd",
    "plot_swag_calibration",
    "plot_swag_samples",
    "plot_sweep",
    "plot_top_eigenvalues",
    "plot_width_distribution",
    "save_figure",
]


@contextmanager
def style(**overrides: Any) -> Iterator[None]:
    """The package's matplotlib style as a context manager (nothing global changes)."""
    with matplotlib.rc_context({**STYLE, **overrides}):
        yield


# =========================================================================== helpers
def fig_and_axes(ax: Axes | None, projection: str | None = None) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure with one axes (of ``projection``).

    Returns:
        ``(fig, ax)``.
    """
    if ax is not None:
        return ax.figure, ax
    fig = plt.figure()
    return fig, fig.add_subplot(projection=projection)


def _label(metric: str, l2: float = 0.0) -> str:
    if metric == "train_loss" and l2:
        return f"train loss (CE + {l2:g}/2·‖θ‖², nats)"
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _grid(s: Surface, name: str, metric: str) -> np.ndarray:
    """A metric grid in display units (accuracy/error in %).

    Raises:
        UserError: If the surface has no such (finite) grid.
    """
    g = s.values
    key = metric.replace("_err", "_acc") if metric.endswith("_err") else metric
    if key not in g or not np.isfinite(g[key]).any():
        have = sorted(k for k, v in g.items() if np.isfinite(v).any())
        raise UserError(f"surface {name} has no {key} values (a regression loss has no "
                        f"accuracy, a surface without test data no test values); it has "
                        f"{have}")
    if metric.endswith("_err"):
        return 100.0 * (1.0 - g[key])
    return 100.0 * g[key] if metric.endswith("_acc") else g[key]


def _l2(s: Surface) -> float:
    """The weight decay the surface's train loss includes (0: plain loss)."""
    try:
        return float(s.attrs.get("l2", 0.0) or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _has(s: Surface, metric: str) -> bool:
    return metric in s.values and bool(np.isfinite(s.values[metric]).any())


def _surface_title(s: Surface, name: str) -> str:
    """``"<run> — surface <name>"``, naming the kind only where the name does not."""
    kind = str(s.attrs.get("kind", ""))
    what = f"surface {name}" if not kind or kind in name else f"{kind} surface {name}"
    return f"{s.attrs.get('title', '')} — {what}"


def _point_color(name: str, i: int) -> str:
    return COLORS.get(name, CYCLE[(i + 2) % len(CYCLE)])


# =========================================================================== surfaces
def plot_surface_1d(path: str | os.PathLike, name: str, *, ax: Axes | None = None,
                    ) -> tuple[Figure, Axes]:
    r"""Train loss (left axis) and test error (right axis) along a 1D surface.

    Named points (e.g. ``sgd``, ``swa``) are marked by vertical lines.  Shaded
    bands are ± one standard error of each value as an estimate from finitely
    many samples: the stored ``train_loss_sem`` for the train loss, and
    :math:`\sqrt{p(1-p)/n}` for a test error ``p`` on the surface's
    ``test_samples`` ``n`` (the binomial standard error of a proportion).

    Returns:
        ``(fig, ax)``; the test-error axis is ``ax.right_ax``.
    """
    s = read_surface(path, name)
    with style():
        fig, ax = fig_and_axes(ax)
        x = s.grid.x
        loss = _grid(s, name, "train_loss")
        (l1,) = ax.plot(x, loss, color=OKABE_ITO["blue"], lw=2, label="train loss")
        sem = s.values.get("train_loss_sem")
        handles = [l1]
        if sem is not None and np.isfinite(sem).any():
            band = ax.fill_between(x, loss - sem, loss + sem, color=OKABE_ITO["blue"],
                                   alpha=0.25, lw=0, label="± 1 standard error")
            band.set_gid("train_loss_se")
            handles.append(band)
        ax.set_xlabel(s.grid.x_label or "distance along direction")
        ax.set_ylabel(_label("train_loss", _l2(s)), color=OKABE_ITO["blue"])
        if _has(s, "test_acc"):
            ax2 = ax.twinx()
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            err = _grid(s, name, "test_err")
            (l2,) = ax2.plot(x, err, color=OKABE_ITO["vermillion"],
                             lw=2, ls="--", label="test error")
            n_test = int(s.attrs.get("test_samples", 0) or 0)
            if n_test > 0:
                p = err / 100.0
                se = 100.0 * np.sqrt(np.clip(p * (1 - p), 0.0, None) / n_test)
                band = ax2.fill_between(x, err - se, err + se, color=OKABE_ITO["vermillion"],
                                        alpha=0.2, lw=0)
                band.set_gid("test_err_se")
            ax2.set_ylabel(_label("test_err"), color=OKABE_ITO["vermillion"])
            ax.right_ax = ax2  # type: ignore[attr-defined]
            handles.insert(1, l2)
        for i, (p, xy) in enumerate(s.grid.points.items()):
            ax.axvline(float(xy[0]), color=_point_color(p, i), ls=":", lw=1.2)
            ax.annotate(p, (float(xy[0]), 1.0), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=9, color=_point_color(p, i))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.15),
                  ncol=len(handles))
        ax.set_title(_surface_title(s, name), pad=16)
    return fig, ax


def _levels(z: np.ndarray, n: int, log: bool) -> np.ndarray:
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        raise UserError("the surface has no computed point yet (all NaN)")
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1e-9
    if log and lo > 0:
        return np.geomspace(lo, hi, n)
    return np.linspace(lo, hi, n)


def plot_surface_2d(path: str | os.PathLike, name: str, metric: str = "train_loss", *,
                    ax: Axes | None = None, levels: int = 25) -> tuple[Figure, Axes]:
    """Filled contours of ``metric`` on a 2D surface, with contour lines, the recorded
    trajectory (if stored) and the named points overlaid.

    Loss levels are spaced geometrically (the minimum basin would be one band
    otherwise); accuracy/error levels linearly.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If the surface is not 2D.
    """
    levels = _check_levels(levels)
    s = read_surface(path, name)
    gx, gy = s.grid.x, s.grid.y
    if gy is None:
        raise UserError(f"surface {name} is 1D; use plot_surface_1d")
    z = _grid(s, name, metric).T  # (ny, nx) for contourf
    lv = _levels(z, levels, metric.endswith("_loss"))  # before a figure is opened
    with style():
        fig, ax = fig_and_axes(ax)
        cs = ax.contourf(gx, gy, z, levels=lv, cmap="viridis", extend="max")
        ax.contour(gx, gy, z, levels=lv[::3], colors="white", linewidths=0.5, alpha=0.7)
        fig.colorbar(cs, ax=ax, label=_label(metric, _l2(s)), format="%.3g")
        t = s.grid.trajectory_xy
        if t is not None and len(t):
            t = np.asarray(t)
            ax.plot(t[:, 0], t[:, 1], "-o", color=OKABE_ITO["orange"], ms=2.5, lw=1,
                    label="trajectory")
        for i, (p, xy) in enumerate(s.grid.points.items()):
            if len(xy) >= 2:
                ax.plot(xy[0], xy[1], marker="*", ms=13, color=_point_color(p, i),
                        mec="white", ls="none", label=p)
        ax.set_xlim(gx[0], gx[-1])  # the trajectory may leave the grid
        ax.set_ylim(gy[0], gy[-1])
        ax.set_xlabel(s.grid.x_label or "x (direction 1)")
        ax.set_ylabel(s.grid.y_label or "y (direction 2)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", frameon=True, framealpha=0.8, fontsize=8)
        ax.set_title(f"{_surface_title(s, name)}: {_label(metric).split(' (')[0]}")
    return fig, ax


def plot_surface_3d(path: str | os.PathLike, name: str, metric: str = "train_loss", *,
                    ax: Axes | None = None) -> tuple[Figure, Axes]:
    """3D surface plot of ``metric`` over a 2D surface (NaN points left blank).

    Returns:
        ``(fig, ax)`` with a 3D axes.

    Raises:
        UserError: If the surface is not 2D.
    """
    s = read_surface(path, name)
    if s.grid.y is None:
        raise UserError(f"surface {name} is 1D; use plot_surface_1d")
    z = _grid(s, name, metric).T
    X, Y = np.meshgrid(s.grid.x, s.grid.y)
    with style(**{"axes.grid": False}):
        fig, ax = fig_and_axes(ax, projection="3d")
        ax.plot_surface(X, Y, np.ma.masked_invalid(z), cmap="viridis", linewidth=0,
                        antialiased=True, alpha=0.95)
        ax.set_xlabel(s.grid.x_label or "x", labelpad=8)
        ax.set_ylabel(s.grid.y_label or "y", labelpad=8)
        ax.set_zlabel(_label(metric, _l2(s)), labelpad=14)  # clear of the tick labels
        ax.set_title(_surface_title(s, name))
    return fig, ax


def plot_surface(path: str | os.PathLike, name: str, **kw: Any) -> tuple[Figure, Axes]:
    """:func:`plot_surface_1d` or :func:`plot_surface_2d` by the surface's dimension.

    Returns:
        ``(fig, ax)``.
    """
    if read_surface(path, name).grid.y is None:
        return plot_surface_1d(path, name, ax=kw.get("ax"))
    return plot_surface_2d(path, name, **kw)


# =========================================================================== training
def plot_history(path: str | os.PathLike, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Train (dashed) and test (solid) accuracy per epoch of the SGD run's iterate,
    the SWA run's iterate and the running SWA model.

    Returns:
        ``(fig, ax)``.
    """
    h = read_history(path)
    series = []
    for run, g in h["runs"].items():
        series.append((f"{run} run iterate" if run == "swa" else f"{run} iterate",
                       COLORS["swa_last"] if run == "swa" else COLORS.get(run), g, ""))
        if run == "swa" and "swa_test_acc" in g:
            series.append(("SWA model", COLORS["swa_model"], g, "swa_"))
    with style():
        fig, ax = fig_and_axes(ax)
        for label, color, g, pre in series:
            ep = g["epoch"]
            for split, ls in (("train", "--"), ("test", "-")):
                k = f"{pre}{split}_acc"
                if k in g and np.isfinite(g[k]).any():
                    ax.plot(ep, 100 * g[k], ls=ls, color=color, lw=1.6,
                            label=f"{label}, {split}")
        ax.set_xlabel("epoch (completed)")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=8, ncol=2)
        ax.set_title(f"{h['title']} — accuracy per epoch")
    return fig, ax


def plot_checkpoints(path: str | os.PathLike, *, ax: Axes | None = None,
                     ) -> tuple[Figure, Axes]:
    """Seed 004's figure: each checkpoint's test accuracy, the averaged model
    (dashed) and the checkpoints' mean accuracy (dash-dot).

    Returns:
        ``(fig, ax)``.
    """
    c = read_checkpoints(path)
    acc = 100 * np.asarray(c["test_acc"], dtype=np.float64)
    with style():
        fig, ax = fig_and_axes(ax)
        ax.plot(c["epoch"], acc, "o-", color=COLORS["checkpoints"], label="checkpoints")
        if np.isfinite(c["avg_acc"]):
            ax.axhline(100 * c["avg_acc"], color=COLORS["avg"], ls="--", lw=1.8,
                       label="averaged model")
        ax.axhline(float(np.nanmean(acc)), color=COLORS["mean"], ls="-.", lw=1.4,
                   label="mean accuracy of checkpoints")
        ref = [float(np.nanmean(acc))] + ([100 * c["avg_acc"]] if np.isfinite(c["avg_acc"])
                                          else [])
        lo, hi = min(np.nanmin(acc), *ref), max(np.nanmax(acc), *ref)
        pad = 0.08 * max(hi - lo, 1e-3)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("checkpoint (completed epoch)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend()
        ax.set_title(f"{c['title']} — checkpoints vs their average")
    return fig, ax


# =========================================================================== measures
def plot_width_distribution(widths: Mapping[str, np.ndarray], *, ax: Axes | None = None,
                            title: str = "width along random directions",
                            unit: str = "L2 distance") -> tuple[Figure, Axes]:
    """Violin + box plot of per-direction widths per solution, with the mean and its
    95 % Student-t interval drawn as an error bar.

    Args:
        widths: ``{solution: (n_directions,) widths}`` (e.g. from :func:`read_widths`).
        ax: Axes to draw on.
        title: Axes title.
        unit: Unit of the widths, for the y label.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If no widths are given.
    """
    if not widths:
        raise UserError("no widths to plot")
    names = list(widths)
    raw = [np.asarray(widths[n], dtype=np.float64) for n in names]
    data = [d[np.isfinite(d)] for d in raw]
    unreached = [int((~np.isfinite(d)).sum()) for d in raw]
    pos = np.arange(1, len(names) + 1)
    with style():
        fig, ax = fig_and_axes(ax)
        vp = ax.violinplot([d if d.size else [np.nan] for d in data], positions=pos,
                           showextrema=False)
        for body, n in zip(vp["bodies"], names, strict=True):
            body.set_facecolor(COLORS.get(n, CYCLE[0]))
            body.set_alpha(0.3)
        ax.boxplot(data, positions=pos, widths=0.15, showfliers=True)
        for p, d in zip(pos, data, strict=True):
            if d.size:
                m, h = mean_ci(d)
                ax.errorbar(p + 0.22, m, yerr=0 if np.isnan(h) else h, fmt="o",
                            color=OKABE_ITO["black"], capsize=4, ms=4)
        ax.set_xticks(pos, [(n.upper() if n in ("sgd", "swa") else n)
                            + (f"\n({u} beyond r_max)" if u else "")
                            for n, u in zip(names, unreached, strict=True)])
        ax.set_xlabel("solution")
        ax.set_ylabel(f"width ({unit})")
        ax.set_title(title)
    return fig, ax


def plot_eigenvalue_density(densities: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                            ax: Axes | None = None,
                            title: str = "Hessian eigenvalue density") -> tuple[Figure, Axes]:
    """Eigenvalue density per solution on a log-scaled density axis.

    Args:
        densities: ``{solution: (grid, density)}`` (e.g. from :func:`read_density`).
        ax: Axes to draw on.
        title: Axes title.

    Returns:
        ``(fig, ax)``.
    """
    with style():
        fig, ax = fig_and_axes(ax)
        for i, (n, (x, d)) in enumerate(densities.items()):
            d = np.asarray(d, dtype=np.float64)
            ax.semilogy(x, np.clip(d, 1e-12, None), color=_point_color(n, i), lw=1.6,
                        label=n.upper() if n in ("sgd", "swa") else n)
        ax.set_xlabel("eigenvalue of the train-loss Hessian")
        ax.set_ylabel("density (log scale)")
        ax.legend()
        ax.set_title(title)
    return fig, ax


def plot_top_eigenvalues(eigenvalues: Mapping[str, np.ndarray], *, ax: Axes | None = None,
                         title: str = "top Hessian eigenvalues") -> tuple[Figure, Axes]:
    """Top-k Hessian eigenvalues by rank per solution (log scale when all positive).

    Args:
        eigenvalues: ``{solution: (k,) eigenvalues}``, largest first.
        ax: Axes to draw on.
        title: Axes title.

    Returns:
        ``(fig, ax)``.
    """
    with style():
        fig, ax = fig_and_axes(ax)
        positive = True
        for i, (n, ev) in enumerate(eigenvalues.items()):
            ev = np.sort(np.asarray(ev, dtype=np.float64))[::-1]
            positive &= bool((ev > 0).all())
            ax.plot(np.arange(1, ev.size + 1), ev, "o-", color=_point_color(n, i),
                    label=n.upper() if n in ("sgd", "swa") else n)
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel("rank k")
        ax.set_ylabel("eigenvalue λ_k of the train-loss Hessian")
        ax.legend()
        ax.set_title(title)
    return fig, ax


def plot_rays(path: str | os.PathLike, *, solutions: Sequence[str] = ("sgd", "swa"),
              axes: Sequence[Axes] | None = None) -> tuple[Figure, np.ndarray]:
    """Train loss (left) and test error (right) against the L2 distance from each
    solution along random unit rays: one thin line per ray, the mean over rays
    bold (the SWA paper's width figure).

    Returns:
        ``(fig, axes)`` with two axes.
    """
    rays = read_rays(path, solutions)
    title = file_title(path)
    with style(**{"figure.figsize": (10.0, 4.0)}):
        if axes is None:
            fig, axes = plt.subplots(1, 2)
        else:
            fig = axes[0].figure
        for i, (n, r) in enumerate(rays.items()):
            c = _point_color(n, i)
            for ax, key in zip(axes, ("train_loss", "test_err"), strict=True):
                z = r[key] * (100.0 if key == "test_err" else 1.0)
                for row in z:
                    ax.plot(r["distance"], row, color=c, lw=0.6, alpha=0.35)
                ax.plot(r["distance"], np.nanmean(z, axis=0), color=c, lw=2.2,
                        label=f"{n.upper() if n in ('sgd', 'swa') else n} "
                              f"(mean of {z.shape[0]} rays)")
        for ax, key in zip(axes, ("train_loss", "test_err"), strict=True):
            ax.set_xlabel("L2 distance from the solution (random unit direction)")
            ax.set_ylabel(_label(key))
            ax.set_title(_label(key).split(" (")[0])
            ax.legend()
        axes[0].set_yscale("log")
        fig.suptitle(f"{title} — train loss and test error along random rays")
    return fig, np.asarray(axes)


# =========================================================================== results
def plot_swa_vs_sgd(path: str | os.PathLike, *, metrics: Sequence[str] | None = None,
                    ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Grouped bars of each method's mean over seeds with 95 % CI error bars, the
    per-seed values as dots.  Metrics ending in ``_acc`` are shown in %.

    Returns:
        ``(fig, ax)``.
    """
    r = read_results(path)
    methods = list(r["metrics"])
    all_metrics = list(dict.fromkeys(k for m in methods for k in r["metrics"][m]))
    metrics = list(metrics or all_metrics)
    width = 0.8 / max(len(methods), 1)
    xs = np.arange(len(metrics))
    with style():
        fig, ax = fig_and_axes(ax)
        for i, m in enumerate(methods):
            color = COLORS[m] if m in ("sgd", "swa") else CYCLE[i % len(CYCLE)]
            for j, k in enumerate(metrics):
                v = r["metrics"][m].get(k)
                if v is None or not np.isfinite(v).any():
                    continue
                v = 100 * v if k.endswith("_acc") else v
                mean, h = mean_ci(v)
                x = xs[j] - 0.4 + width * (i + 0.5)
                ax.bar(x, mean, width * 0.9, color=color, alpha=0.85,
                       label=m if j == 0 or m not in ax.get_legend_handles_labels()[1]
                       else None,
                       yerr=None if np.isnan(h) else h, capsize=4)
                ax.plot(np.full(v.shape, x), v, "o", ms=3, color=OKABE_ITO["black"])
        lo = [np.nanmin(100 * v if k.endswith("_acc") else v) for m in methods
              for k, v in r["metrics"][m].items() if k in metrics and np.isfinite(v).any()]
        if lo and all(k.endswith("_acc") for k in metrics):
            ax.set_ylim(max(0.0, min(lo) - 5), 100)
        ax.set_xticks(xs, [k.replace("_", " ") for k in metrics])
        ax.set_ylabel("accuracy (%)" if all(k.endswith("_acc") for k in metrics)
                      else "value")
        ax.set_xlabel("metric")
        ax.legend()
        n = len(next(iter(r["metrics"][methods[0]].values()))) if methods else 0
        ax.set_title(f"{r['experiment']}: mean ± 95 % CI over {n} seed(s)")
    return fig, ax


# =========================================================================== paths, posteriors
#: Metrics stored along a curve or a line (``train_ce``: the train loss without L2).
PROFILE_METRICS = ("train_loss", "train_ce", "train_err", "test_loss", "test_err")


def _check_levels(levels: Any) -> int:
    """``levels`` as an int >= 2, else one line (before any figure is opened)."""
    return check_int(levels, "levels", 2, "filled contours; e.g. levels=25")


def plot_curve_profiles(path: str | os.PathLike, name: str, metric: str = "train_loss", *,
                        ax: Axes | None = None) -> tuple[Figure, Axes]:
    """A metric along the trained curve and along the line between the same endpoints.

    Garipov et al.'s comparison: the line between two solutions crosses a
    barrier, the trained curve stays low.  The legend gives each barrier
    (max over t minus the mean of the endpoints).

    Args:
        path: File with ``/curves/<name>`` (``landscape connect``).
        name: Curve name.
        metric: ``train_loss`` (L2-regularized), ``train_err``, ``test_loss`` or
            ``test_err``.
        ax: Axes to draw into.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If the curve or its profiles are missing.
    """
    from landscape.paths.curves import barrier
    from landscape.store._h5 import check_file
    from landscape.store.curves import CURVE_KINDS

    if metric not in PROFILE_METRICS:
        raise UserError(f"unknown profile metric {metric!r}; use one of "
                        f"{', '.join(PROFILE_METRICS)}")
    check_file(path, CURVE_KINDS)  # a missing file says so, not "no curve"
    attrs = curve_attrs(path, name)
    if attrs is None:
        raise UserError(f"no curve {name!r} in {path}; run `landscape connect` first")
    profs = {w: read_profile(path, name, w) for w in ("curve", "line")}
    if any(p is None or metric not in p.metrics for p in profs.values()):
        raise UserError(f"curve {name!r} in {path} has no {metric} profile of the curve "
                        "and the line yet; rerun the same `landscape connect` to finish it")
    scale = 100.0 if metric.endswith("_err") else 1.0
    with style():
        fig, ax = fig_and_axes(ax)
        for which, color, ls in (("line", COLORS["sgd"], "--"),
                                 ("curve", COLORS["swa"], "-")):
            p = profs[which]
            assert p is not None
            v = p.metrics[metric] * scale
            label = (f"{which if which == 'line' else attrs.get('curve', 'curve')} "
                     f"(barrier {barrier(v):.3g})")
            ax.plot(p.t, v, ls=ls, color=color, lw=2, marker=".", label=label)
        ax.set_xlabel("t (endpoint a at 0, b at 1)")
        l2 = float(profs["curve"].l2 or 0.0) if profs["curve"] is not None else 0.0
        ax.set_ylabel(_label(metric, l2 if metric == "train_loss" else 0.0))
        ax.legend()
        ax.set_title(f"{file_title(path)} — line vs curve {name}")
    return fig, ax


def plot_curve_plane(path: str | os.PathLike, name: str, metric: str = "train_loss", *,
                     ax: Axes | None = None, levels: int = 25) -> tuple[Figure, Axes]:
    """A curve's plane (Garipov et al.'s Figure 1) with the curve and the line drawn on it.

    The contours of ``metric`` on the plane through both endpoints and the
    bend (:func:`plot_surface_2d`), the curve projected onto it at the
    profile's ``t`` and the straight line from ``a`` to ``b``.

    Args:
        path: File with the surface (``landscape connect --plane``).
        name: Surface name (``<curve>_plane``).
        metric: ``train_loss``, ``train_err``, ``test_loss`` or ``test_err``.
        ax: Axes to draw into.
        levels: Number of contour levels.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If the surface is not a curve's plane.
    """
    from landscape.store import read_curve_plane

    levels = _check_levels(levels)
    drawn = read_curve_plane(path, name)
    if drawn is None:
        raise UserError(f"surface {name!r} of {path} is not a curve's plane; make one "
                        "with `landscape connect ... --plane`")
    curve, _, xy = drawn
    fig, ax = plot_surface_2d(path, name, metric, ax=ax, levels=levels)
    s = read_surface(path, name)
    a, b = s.grid.points["a"], s.grid.points["b"]
    with style():
        ax.plot([a[0], b[0]], [a[1], b[1]], ls="--", color=COLORS["sgd"], lw=1.5,
                label="line", zorder=3)
        ax.plot(xy[:, 0], xy[:, 1], "-", color=OKABE_ITO["vermillion"], lw=2,
                marker=".", ms=4, label=f"curve {curve}", zorder=3)
        ax.legend(loc="best", frameon=True, framealpha=0.8, fontsize=8)
    return fig, ax


def _swag_evaluation(path: str | os.PathLike) -> dict[str, Any]:
    """The file's SWAG evaluation (:func:`read_swag_evaluation`).

    Raises:
        UserError: If the file holds none.
    """
    with open_file(path, KINDS) as f:
        ev = read_swag_evaluation(f)
    if ev is None:
        raise UserError(f"{path} holds no SWAG evaluation; run `landscape swag` first")
    return ev


def plot_swag_calibration(path: str | os.PathLike, *, ax: Axes | None = None,
                          ) -> tuple[Figure, Axes]:
    """Reliability diagram of SWAG's Bayesian model average, SWA and SGD.

    Per equal-width confidence bin: accuracy minus mean confidence (below 0:
    over-confident), as Maddox et al. draw it; the legend gives each ECE.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If the file holds no SWAG evaluation.
    """
    ev = _swag_evaluation(path)
    a = ev["attrs"]
    with style():
        fig, ax = fig_and_axes(ax)
        for method, c in ev["calibration"].items():
            keep = c["count"] > 0
            ax.plot(c["confidence"][keep], (c["accuracy"] - c["confidence"])[keep],
                    marker="o", lw=1.6, color=COLORS.get(method, OKABE_ITO["green"]),
                    label=f"{method} (ECE {float(a.get(f'{method}_ece', math.nan)):.3f})")
        ax.axhline(0.0, color=OKABE_ITO["black"], lw=0.8)
        ax.set_xlabel("confidence (max class probability)")
        ax.set_ylabel("accuracy − confidence")
        ax.legend()
        ax.set_title(f"{file_title(path)} — calibration, SWAG with {a.get('samples')} "
                     "samples")
    return fig, ax


#: y-labels of the metrics of SWAG's and FGE's ensembles (accuracy drawn in %).
_ENSEMBLE_LABELS = {"acc": "test accuracy (%)", "nll": "test NLL (nats)",
                    "ece": "test expected calibration error"}


def _ensemble_metric(metric: Any, stored: Sequence[str], what: str) -> None:
    """Raise unless ``metric`` is one of the ``stored`` metrics of ``what``.

    Raises:
        UserError: Naming the metric and the valid ones.
    """
    if not isinstance(metric, str) or metric not in stored:
        raise UserError(f"{what} stores no metric {metric!r}; pass metric= one of "
                        f"{', '.join(map(repr, stored))}")


@contextmanager
def _close_on_error(fig: Figure, owned: bool) -> Iterator[None]:
    """Close ``fig`` (if this call made it) when drawing on it raises."""
    try:
        yield
    except BaseException:
        if owned:
            plt.close(fig)
        raise


def plot_swag_samples(path: str | os.PathLike, metric: str = "nll", *,
                      ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Test NLL (accuracy or ECE) of SWAG's model average as samples accumulate, beside
    SWA and SGD.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If the file holds no SWAG evaluation, or no curve of ``metric``.
    """
    ev = _swag_evaluation(path)
    a, c = ev["attrs"], ev["curves"]
    _ensemble_metric(metric, [m for m in _ENSEMBLE_LABELS if m in c],
                     f"the SWAG evaluation in {path}")
    scale = 100.0 if metric == "acc" else 1.0
    with style():
        fig, ax = fig_and_axes(owned := ax)
        with _close_on_error(fig, owned is None):
            ax.plot(c["samples"], scale * c[metric], marker=".", color=COLORS["swa_last"],
                    lw=2, label="SWAG model average")
            for method in ("swa", "sgd"):
                v = a.get(f"{method}_{metric}")
                if v is not None and np.isfinite(float(v)):
                    ax.axhline(scale * float(v), color=COLORS[method], ls="--",
                               label=method)
            ax.set_xlabel("SWAG samples averaged")
            ax.set_ylabel(_ENSEMBLE_LABELS[metric])
            ax.legend()
            ax.set_title(f"{file_title(path)} — SWAG Bayesian model average")
    return fig, ax


def plot_fge(path: str | os.PathLike, name: str = "fge", metric: str = "acc", *,
             ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Test accuracy (NLL or ECE) of the FGE ensemble as snapshots accumulate, against
    SWA of the same snapshots, each snapshot alone (accuracy and NLL: the ECE of a
    snapshot is not stored) and the starting solution.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If the ensemble has no snapshot, or no history of ``metric``.
    """
    r = read_fge(path, name)
    h, a = r["history"], r["attrs"]
    if not h:
        raise UserError(f"FGE ensemble {name!r} in {path} has no snapshot yet; rerun "
                        "`landscape fge` to continue it")
    _ensemble_metric(metric, [m for m in _ENSEMBLE_LABELS
                              if f"ensemble_{m}" in h and f"swa_{m}" in h],
                     f"FGE ensemble {name!r} in {path}")
    scale = 100.0 if metric == "acc" else 1.0
    k = h["snapshot"]
    with style():
        fig, ax = fig_and_axes(owned := ax)
        with _close_on_error(fig, owned is None):
            ax.plot(k, scale * h[f"ensemble_{metric}"], marker="o", lw=2,
                    color=COLORS["swa_last"], label="FGE ensemble (mean softmax)")
            ax.plot(k, scale * h[f"swa_{metric}"], marker="s", lw=2, color=COLORS["swa"],
                    label="SWA of the snapshots")
            if f"snapshot_{metric}" in h:
                ax.plot(k, scale * h[f"snapshot_{metric}"], ls=":", marker=".",
                        color=OKABE_ITO["orange"], label="snapshot alone")
            start = a.get(f"start_{metric}")
            if start is not None:
                sol = (a.get("start") or {}).get("solution", "start")
                ax.axhline(scale * float(start), ls="--", color=COLORS["sgd"],
                           label=f"start ({sol})")
            ax.set_xlabel("snapshots in the ensemble")
            ax.set_ylabel(_ENSEMBLE_LABELS[metric])
            ax.legend()
            ax.set_title(f"{file_title(path)} — fast geometric ensembling ({name})")
    return fig, ax


# =========================================================================== files
def make_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) for figures.

    Returns:
        The folder.

    Raises:
        UserError: If it is a file, lies under one, or cannot be written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "it is a file" if folder.exists() else (e.strerror or str(e)).lower()
        raise UserError(f"cannot write figures to {folder}: {why}; pass an --out-dir "
                        "that is a folder you can write (it is created if missing)") from None
    return folder


def save_figure(fig: Figure, stem: str | os.PathLike, *, pdf: bool = False,
                close: bool = True) -> list[Path]:
    """Save ``fig`` as ``STEM.png`` (and ``STEM.pdf``); close it unless told not to.

    Returns:
        The paths written.
    """
    stem = Path(stem)
    make_folder(stem.parent)
    out = []
    with style():
        for ext in ("png", "pdf") if pdf else ("png",):
            p = stem.with_suffix(f".{ext}")
            fig.savefig(p)
            out.append(p)
    if close:
        plt.close(fig)
    return out


# --------------------------------------------------------------------------- plot --all
#: What a registry entry's ``draw`` yields: ``(figure name, (fig, ax))``, saved as
#: ``<file stem>_<figure name>.png``.
Drawn = Iterator[tuple[str, tuple[Figure, Axes]]]


@dataclass(frozen=True)
class FilePlot:
    """One entry of :data:`PLOTS`: a family of figures ``plot --all`` draws from a file.

    Attributes:
        name: What the entry draws (for reading; figure names come from ``draw``).
        when: ``when(contents, item) -> bool``, ``contents`` the file's
            :func:`landscape.store.contents`: whether the entry draws ``item``.
        draw: ``draw(path, contents, item)`` yields ``(figure name, (fig, ax))``.
        over: What the entry is drawn for: ``"results"`` once per results file (and
            nothing else is drawn from one), ``None`` once per run or analysis file,
            or a key of ``contents`` (``"surfaces"``, ``"measures"``,
            ``"alignments"``, ``"curves"``, ``"fge"``) once per name it lists — or
            per name selected, for ``"surfaces"`` and ``"measures"``; the others are
            drawn only when nothing is selected.  Each name is drawn by the first
            entry of its group (consecutive entries with the same ``over``) that
            claims it.
    """

    name: str
    when: Callable[[Mapping[str, Any], Any], bool]
    draw: Callable[[Any, Mapping[str, Any], Any], Drawn]
    over: str | None = None


def _once(name: str, fn: Callable[[Any], tuple[Figure, Axes]]
          ) -> Callable[[Any, Mapping[str, Any], Any], Drawn]:
    """A ``draw`` of one figure ``name``: ``fn(path)``."""

    def draw(path: Any, c: Mapping[str, Any], item: Any) -> Drawn:
        yield name, fn(path)

    return draw


def _draw_regimes(path: Any, c: Mapping[str, Any], item: Any) -> Drawn:
    for metric in ("diff_test_acc", "width_ratio"):
        yield f"regimes_{metric}", plot_regimes(path, metric)


def _draw_surface_2d(path: Any, c: Mapping[str, Any], n: str) -> Drawn:
    s = read_surface(path, n)  # a surface of train data only has no test error
    draw = plot_curve_plane if s.attrs.get("curve") else plot_surface_2d
    for metric in ("train_loss", "test_err"):
        if _has(s, metric.replace("_err", "_acc")):
            yield f"surface_{n}_{metric}", draw(path, n, metric)
    yield f"surface_{n}_3d", plot_surface_3d(path, n)


def _draw_alignment(path: Any, c: Mapping[str, Any], n: str) -> Drawn:
    for metric in ("test_err", "train_loss"):
        try:
            fig_ax = plot_alignment(path, n, metric)
        except UserError:  # e.g. no test data: nothing of that metric
            continue
        yield f"alignment_{n}_{metric}", fig_ax


def _draw_width(path: Any, c: Mapping[str, Any], m: str) -> Drawn:
    yield f"measure_{m}", plot_width_distribution(
        read_widths(path, measure=m), title=f"{Path(path).stem}: {m} along random directions",
        unit=c["units"].get(m, "L2 distance"))


def _draw_hessian(path: Any, c: Mapping[str, Any], m: str) -> Drawn:
    yield f"measure_{m}", plot_top_eigenvalues(read_measure_arrays(path, m, "eigenvalues"),
                                               title=f"{Path(path).stem}: top Hessian "
                                                     "eigenvalues")


def _draw_density(path: Any, c: Mapping[str, Any], m: str) -> Drawn:
    yield f"measure_{m}", plot_eigenvalue_density(
        read_density(path, measure=m), title=f"{Path(path).stem}: Hessian eigenvalue density")


def _draw_curve(path: Any, c: Mapping[str, Any], n: str) -> Drawn:
    for metric in ("train_loss", "test_err"):
        yield f"curve_{n}_{metric}", plot_curve_profiles(path, n, metric)


def _draw_fge(path: Any, c: Mapping[str, Any], n: str) -> Drawn:
    for metric in ("acc", "nll"):
        yield f"fge_{n}_{metric}", plot_fge(path, n, metric)


def _always(c: Mapping[str, Any], item: Any) -> bool:
    return True


#: What ``plot --all`` draws, in order: adding a plot is one entry here plus its
#: function.  Consecutive entries with the same ``over`` form a group.
PLOTS: list[FilePlot] = [
    FilePlot("regimes", lambda c, _: c["protocol"] == "regimes", _draw_regimes, "results"),
    FilePlot("swa_vs_sgd", lambda c, _: c["protocol"] != "regimes",
             _once("swa_vs_sgd", plot_swa_vs_sgd), "results"),
    FilePlot("history", lambda c, _: c["history"], _once("history", plot_history)),
    FilePlot("checkpoints", lambda c, _: c["checkpoints"],
             _once("checkpoints", plot_checkpoints)),
    FilePlot("surface_1d", lambda c, n: c["surfaces"].get(n) == 1,
             lambda p, c, n: iter([(f"surface_{n}", plot_surface_1d(p, n))]), "surfaces"),
    FilePlot("surface_2d", lambda c, n: (c["surfaces"].get(n) or 0) > 1, _draw_surface_2d,
             "surfaces"),
    FilePlot("alignment", _always, _draw_alignment, "alignments"),
    FilePlot("checkpoints", lambda c, m: m == "checkpoints",
             _once("checkpoints", plot_checkpoints), "measures"),
    FilePlot("width", lambda c, m: "width" in m, _draw_width, "measures"),
    FilePlot("rays", lambda c, m: m == "rays", _once("measure_rays", plot_rays), "measures"),
    FilePlot("hessian", lambda c, m: m == "hessian", _draw_hessian, "measures"),
    FilePlot("density", lambda c, m: "density" in m, _draw_density, "measures"),
    FilePlot("curve", _always, _draw_curve, "curves"),
    FilePlot("swag", lambda c, _: c["swag"],
             lambda p, c, _: iter([("swag_calibration", plot_swag_calibration(p)),
                                   ("swag_samples_nll", plot_swag_samples(p, "nll"))])),
    FilePlot("fge", _always, _draw_fge, "fge"),
]


def plot_all(path: str | os.PathLike, out_dir: str | os.PathLike, *,
             surfaces: Sequence[str] | None = None, measures: Sequence[str] | None = None,
             pdf: bool = False, log: Any = None) -> list[Path]:
    """Every figure a file supports, saved under ``out_dir``: the entries of
    :data:`PLOTS` that claim something in the file, in order.

    Args:
        path: Run file or results file.
        out_dir: Folder for the figures.
        surfaces: Only these surfaces (``None``: all; ``[]``: none).
        measures: Only these measures (``None``: all; ``[]``: none).
        pdf: Also write PDFs.
        log: Callable for one line per figure (or ``None``).

    Returns:
        The paths written.

    Raises:
        UserError: If a selected surface or measure is neither in the file nor drawn,
            or ``out_dir`` cannot be a folder.
    """
    out_dir = make_folder(out_dir)
    written: list[Path] = []
    c = contents(path)
    chosen = {"surfaces": surfaces, "measures": measures}
    everything = surfaces is None and measures is None
    results = c["kind"] == RESULTS_KIND
    stem = Path(path).stem
    def emit(e: FilePlot, item: Any) -> None:
        for name, (fig, _) in e.draw(path, c, item):
            ps = save_figure(fig, out_dir / f"{stem}_{name}", pdf=pdf)
            written.extend(ps)
            if log:
                log(f"wrote {ps[0]}")

    for over, entries in groupby(PLOTS, key=lambda e: e.over):
        group = list(entries)
        if results != (over == "results") or (
                over not in chosen and not everything and not results):
            continue
        if over is None or over == "results":
            for e in group:
                if e.when(c, None):
                    emit(e, None)
            continue
        have = list(c.get(over, []))
        for item in have if chosen.get(over) is None else chosen[over]:
            e = next((e for e in group if e.when(c, item)), None)
            if e is not None:
                emit(e, item)
            elif item not in have:
                raise UserError(f"no {over[:-1]} {item!r} in {path}; choose one of {have}")
    return written


# =========================================================================== alignments
#: Colour and label of each profile of an alignment.
_PROFILE_STYLE = {"line": (OKABE_ITO["black"], "raw line"),
                  "aligned": (OKABE_ITO["blue"], "aligned line"),
                  "repair": (OKABE_ITO["green"], "aligned + REPAIR"),
                  "curve": (OKABE_ITO["vermillion"], "trained curve")}


def plot_alignment(path: str | os.PathLike, name: str, metric: str = "test_err", *,
                   ax: Axes | None = None) -> tuple[Figure, Axes]:
    """One metric along the raw line, the aligned line, REPAIR and the curve, over t.

    The legend gives each profile's barrier, max_t e(t) - (e(0) + e(1))/2.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If no stored profile has ``metric``.
    """
    profiles = {w: p for w, p in alignment_profiles(path, name).items()
                if metric in p.metrics}
    if not profiles:  # before a figure is opened
        raise UserError(f"alignment {name!r} of {path} has no {metric} profile; use "
                        f"one of {', '.join(PROFILE_METRICS)} once `landscape align` "
                        "has finished")
    with style():
        fig, ax = fig_and_axes(ax)
        for which, p in profiles.items():
            color, label = _PROFILE_STYLE.get(which, (OKABE_ITO["purple"], which))
            scale = 100.0 if metric.endswith("_err") else 1.0
            bar = p.barriers.get(metric, float("nan")) * scale
            ax.plot(p.t, p.metrics[metric] * scale, color=color, lw=2,
                    label=f"{label} (barrier {bar:.3g})")
        ax.set_xlabel("t (A at 0, B at 1)")
        ax.set_ylabel(_label(metric) if metric != "test_err" else "test error (%)")
        ax.set_title(f"{Path(path).stem}: {name}")
        ax.legend()
    return fig, ax


def plot_sweep(series: Mapping[str, Mapping[float, Sequence[float]]], *,
               xlabel: str, ylabel: str, title: str = "", logx: bool = True,
               colors: Mapping[str, str] | None = None, ax: Axes | None = None
               ) -> tuple[Figure, Axes]:
    """Mean over seeds ± the 95 % Student-t interval of quantities against a setting.

    Args:
        series: ``{label: {x: per-seed values}}`` (non-finite values left out).
        xlabel: X label.
        ylabel: Y label.
        title: Axes title.
        logx: Log-2 x axis (widths, sizes).
        colors: Colour per label (default the cycle's).
        ax: Axes to draw on.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If no series is given.
    """
    if not series:
        raise UserError("no series to plot")
    with style():
        fig, ax = fig_and_axes(ax)
        for i, (label, points) in enumerate(series.items()):
            xs = sorted(points)
            stats = []
            for x in xs:
                v = np.asarray(points[x], dtype=np.float64)
                stats.append(mean_ci(v[np.isfinite(v)]) if np.isfinite(v).any()
                             else (math.nan, math.nan))
            m = np.array([s[0] for s in stats])
            h = np.nan_to_num(np.array([s[1] for s in stats]))
            c = (colors or {}).get(label, CYCLE[i % len(CYCLE)])
            ax.errorbar(xs, m, yerr=h, fmt="o-", color=c, capsize=4, lw=2, label=label)
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        ax.legend()
    return fig, ax


# =========================================================================== ratios
def plot_paired_ratios(ratios: Mapping[str, np.ndarray], *,
                       flatter: Mapping[str, str] | None = None, ax: Axes | None = None,
                       title: str = "paired ratios over seeds",
                       xlabel: str = "ratio (log scale)") -> tuple[Figure, Axes]:
    """Forest plot of per-seed ratios per quantity: one dot per seed, the geometric
    mean with the 95 % Student-t interval of the log ratios, a line at 1.

    Args:
        ratios: ``{label: (n_seeds,) ratios}`` (non-positive or non-finite values
            are left out).
        flatter: ``{label: "lower" | "higher"}``: which way is flatter; the label
            gets an arrow pointing to the side that means "sharper" for the
            numerator (``→`` for "lower", ``←`` for "higher").
        ax: Axes to draw on.
        title: Axes title.
        xlabel: X label.

    Returns:
        ``(fig, ax)``.

    Raises:
        UserError: If no ratios are given.
    """
    if not ratios:
        raise UserError("no ratios to plot")
    labels = list(ratios)
    with style(**{"figure.figsize": (7.0, 0.45 * len(labels) + 1.5)}):
        fig, ax = fig_and_axes(ax)
        for i, label in enumerate(labels):
            y = len(labels) - 1 - i
            r = np.asarray(ratios[label], dtype=np.float64)
            r = r[np.isfinite(r) & (r > 0)]
            if not r.size:
                continue
            ax.plot(r, np.full(r.shape, y), "o", ms=4, alpha=0.5, color=CYCLE[0])
            m, h = mean_ci(np.log(r))
            lo, hi = (m, m) if np.isnan(h) else (m - h, m + h)
            ax.errorbar(np.exp(m), y, xerr=[[np.exp(m) - np.exp(lo)],
                                            [np.exp(hi) - np.exp(m)]],
                        fmt="D", color=OKABE_ITO["black"], capsize=4, ms=6)
        ax.axvline(1.0, color=OKABE_ITO["vermillion"], lw=1)
        ax.set_xscale("log")
        arrows = {"lower": " (→ sharper)", "higher": " (← sharper)"}
        ax.set_yticks(range(len(labels)),
                      [lb + arrows.get((flatter or {}).get(lb, ""), "")
                       for lb in reversed(labels)])
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.0)
    return fig, ax


# =========================================================================== regimes
#: Display names and null values of the regimes protocol's per-cell quantities.
REGIME_QUANTITIES = {
    "diff_test_acc": ("SWA − SGD test accuracy (points)", 0.0),
    "width_ratio": ("width ratio SWA / SGD (median over directions)", 1.0),
    "sgd_test_acc": ("SGD test accuracy (%)", math.nan),
    "swa_test_acc": ("SWA test accuracy (%)", math.nan),
}


def _regime_cells(r: Mapping[str, Any], metric: str) -> dict[str, tuple[float, float]]:
    """Mean and 95 % CI half-width over seeds of ``metric`` in every cell (acc in %)."""
    out = {}
    for cell, cols in r["metrics"].items():
        v = np.asarray(cols.get(metric, []), dtype=np.float64)
        v = v[np.isfinite(v)] * (100.0 if metric.endswith("_acc") else 1.0)
        out[cell] = mean_ci(v) if v.size else (math.nan, math.nan)
    return out


def _regime_heat(ax: Axes, z: np.ndarray, half: np.ndarray, text: list[list[str]],
                 null: float, norm: Any) -> Any:
    """One annotated heat map; cells whose CI excludes ``null`` in bold."""
    im = ax.imshow(np.ma.masked_invalid(z), cmap="RdBu", norm=norm, aspect="auto")
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            if not text[i][j]:
                continue
            sig = np.isfinite(null) and np.isfinite(half[i, j]) and (
                abs(z[i, j] - null) > half[i, j])
            r, g, b, _ = im.cmap(im.norm(z[i, j])) if np.isfinite(z[i, j]) else (1, 1, 1, 1)
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7,
                    color="white" if dark else "black",
                    fontweight="bold" if sig else "normal")
    ax.grid(False)
    return im


def plot_regimes(path: str | os.PathLike, metric: str = "diff_test_acc", *,
                 axes: Sequence[Axes] | None = None) -> tuple[Figure, np.ndarray]:
    """Heat maps of a per-cell quantity of a ``regimes`` results file.

    Left: one row per factor, its levels left to right (each cell annotated
    with its level, the mean over seeds and the 95 % CI half-width).  Right
    (when the design has one): the two-factor map.  The colour scale diverges
    at the quantity's null value (0 for the accuracy difference, 1 for the
    width ratio); bold numbers: the CI excludes it.

    Args:
        path: The results file (``landscape reproduce regimes``).
        metric: A metric of ``/metrics/<cell>/`` (``diff_test_acc``, ``width_ratio``).
        axes: One or two axes to draw on (default: a new figure).

    Returns:
        ``(fig, axes)``.

    Raises:
        UserError: If the file is not a regimes results file.
    """
    from matplotlib.colors import Normalize, TwoSlopeNorm

    r = read_results(path)
    extra = r["attrs"].get("extra") or {}
    lay = extra.get("design") if isinstance(extra, Mapping) else None
    if not lay or "factors" not in lay:
        raise UserError(f"{path} is not a results file of the regimes protocol (no "
                        "design in its extra attributes)")
    title, null = REGIME_QUANTITIES.get(metric, (metric.replace("_", " "), math.nan))
    vals = _regime_cells(r, metric)
    fmt = (2, null == 0.0) if metric.endswith("_acc") else (3, False)  # digits, sign
    factors = lay["factors"]
    n_cols = max(len(v) for v in factors.values())
    z = np.full((len(factors), n_cols), np.nan)
    h = np.full_like(z, np.nan)
    txt = [["" for _ in range(n_cols)] for _ in factors]
    for i, levels in enumerate(factors.values()):
        for j, lv in enumerate(levels):
            z[i, j], h[i, j] = vals[lv["cell"]]
            txt[i][j] = f"{lv['label']}\n{_pm(z[i, j], h[i, j], *fmt)}"
    g = lay.get("map")
    zm = hm = None
    if g:
        zm = np.array([[vals[k][0] for k in row] for row in g["cells"]])
        hm = np.array([[vals[k][1] for k in row] for row in g["cells"]])
    every = np.concatenate([z.ravel(), zm.ravel() if zm is not None else []])
    every = every[np.isfinite(every)]
    if np.isfinite(null):
        span = float(np.max(np.abs(every - null))) if every.size else 1.0
        span = span or 1e-9
        norm: Any = TwoSlopeNorm(vcenter=null, vmin=null - span, vmax=null + span)
    else:
        norm = Normalize(*(float(every.min()), float(every.max())) if every.size else None)
    n_panels = 2 if g else 1
    with style(**{"figure.figsize": (6.5 * n_panels, 1.0 + 0.75 * max(len(factors), 4))}):
        if axes is None:
            fig, axs = plt.subplots(1, n_panels, squeeze=False, layout="constrained")
            axs = axs[0]
        else:
            axs = np.atleast_1d(np.asarray(axes, dtype=object))
            fig = axs[0].figure
        im = _regime_heat(axs[0], z, h, txt, null, norm)
        axs[0].set_yticks(range(len(factors)), [k.replace("_", " ") for k in factors])
        axs[0].set_xticks([])
        axs[0].set_title("one factor at a time (around the base)")
        if g and len(axs) > 1:
            mt = [[_pm(a, b, *fmt) for a, b in zip(zr, hr, strict=True)]
                  for zr, hr in zip(zm, hm, strict=True)]
            im = _regime_heat(axs[1], zm, hm, mt, null, norm)
            axs[1].set_xticks(range(len(g["col_labels"])), g["col_labels"], rotation=20,
                              ha="right")
            axs[1].set_yticks(range(len(g["row_labels"])), g["row_labels"])
            axs[1].set_xlabel(g["cols"].replace("_", " "))
            axs[1].set_ylabel(g["rows"].replace("_", " "))
            axs[1].set_title(f"{g['rows']} × {g['cols']}".replace("_", " "))
        fig.colorbar(im, ax=list(axs), label=title, shrink=0.9)
        n = len(r["seeds"] or [])
        fig.suptitle(f"{r['experiment']}: {title}, mean ± 95 % CI over {n} seeds")
    return fig, np.asarray(axs)


def _pm(m: float, h: float, digits: int = 2, sign: bool = False) -> str:
    if not np.isfinite(m):
        return "n/a"
    text = f"{m:+.{digits}f}" if sign else f"{m:.{digits}f}"
    return text + ("" if not np.isfinite(h) else f"±{h:.{digits}f}")
