r"""Protocol ``paper``: the SWA paper's analyses (Izmailov et al. 2018), over seeds.

``landscape reproduce paper`` (config ``experiments/paper.toml``; ``landscape demo``):

1. For every seed, one ``landscape train`` run: the SGD baseline with the
   paper's decaying schedule over ``epochs`` and the SWA run (``swa_start``,
   constant ``swa_lr``) of the same budget; and SWA runs of longer budgets
   (``budgets`` × ``epochs``, the paper's 1.25 and 1.5 budgets) — the accuracy
   table.
2. For every seed, flatness measures of the SGD and the SWA solution
   (every registered measure, :func:`landscape.jobs.measure_solution`) and the
   train–test gap with the shift along the SGD→SWA line
   (:func:`landscape.jobs.measure_gap`).
3. On seed 0, the surfaces of the paper's figures: random 2D slices around SWA
   and SGD, the plane through SGD, SWA and an early point of the trajectory,
   PCA of the trajectory, the SGD→SWA line in L2 distance, and train loss /
   test error along random unit rays from each solution (the paper's width
   figure).

Every number in the report is a mean over seeds with a 95 % Student-t interval;
SGD-vs-SWA differences are paired over seeds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig
from landscape.evaluate import Evaluator
from landscape.experiments._common import (
    LABELS,
    Experiment,
    FigureSpec,
    Log,
    Protocol,
    captions,
    draw_figures,
    figure_lines,
    fit,
    register_protocol,
)
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments._settings import Settings, measure_default
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

#: The flatness measures computed for both solutions of every seed (``measures``).
MEASURES = ("hessian", "trace", "density", "eps", "sam", "asam", "avg", "pacbayes", "width")


@dataclasses.dataclass(frozen=True)
class PaperSettings(Settings):
    """``[experiment]`` of the ``paper`` protocol (measure defaults: the registry's).

    Attributes:
        budgets: SWA budgets in units of ``epochs``; the first is 1.0 (the SGD budget).
        grid: Points per axis of the figures' 2D surfaces.
        rays: Random unit rays of the width figure.
        ray_points: Radii per ray.
        plane_point: The third point of the plane (``epoch:E``).
        measure_samples: Train samples of every measure.
        directions: Directions of the width measure.
        tau: The width's loss rise.
        trace_samples: Trace HVPs.
        trace_method: Trace estimator: ``hutchinson``, the committed reports'
            (the API's default is Hutch++).
        slq_steps: Lanczos steps of the density.
        gap_points: Points of the SGD→SWA line of the gap.
        measure_seeds: How many seeds are measured (default all).
        workers: Worker processes (default one per core).
        measures: The measures of both solutions.
    """

    budgets: tuple[float, ...] = (1.0, 1.25, 1.5)
    grid: int = 21
    rays: int = 10
    ray_points: int = 25
    plane_point: str = "epoch:15"
    measure_samples: int = measure_default("samples")
    directions: int = measure_default("directions")
    tau: float = measure_default("tau")
    trace_samples: int = measure_default("trace_samples")
    trace_method: str = "hutchinson"
    slq_steps: int = measure_default("slq_steps")
    gap_points: int = 41
    measure_seeds: int | None = None
    workers: int | None = None
    measures: tuple[str, ...] = MEASURES


def run_paper(exp: Experiment, seeds: Sequence[int], out: Path, log: Log, *,
              runs_dir: Path, main_run: Path | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Run the ``paper`` protocol (see the module docstring).

    Seeds are independent, so they run in ``[experiment] workers`` processes
    (default: one per CPU core, at most one per seed), each with the config's
    ``threads``; the first seed's task also computes the figures' surfaces.
    The per-seed results do not depend on the number of workers.

    Args:
        exp: The resolved experiment (``exp.cfg``: TrainConfig, ``exp.settings``).
        seeds: Seeds to run.
        out: Report folder (unused here; figures are made by the caller).
        log: One line per stage.
        runs_dir: Folder of the per-seed run files.
        main_run: Run file of the first seed (default ``runs_dir/seed0.h5``).
        progress: Progress bars for the long stages (only with one worker).

    Returns:
        ``{"metrics": {method: {metric: per-seed list}}, "extra": {...}}``.

    Raises:
        UserError: For bad settings, or the first error of any seed.
    """
    settings = PaperSettings.parse(exp.settings)
    cfg: TrainConfig = exp.cfg
    budgets = settings.budgets
    if not budgets or budgets[0] != 1.0 or any(b < 1.0 for b in budgets):
        raise UserError("[experiment] budgets must start with 1.0 (the SGD budget) and "
                        f"be >= 1, got {list(budgets)}")
    runs_dir.mkdir(parents=True, exist_ok=True)
    n_measure = len(seeds) if settings.measure_seeds is None else settings.measure_seeds
    st = settings.to_dict()  # plain data for the tasks and the results file
    tasks = []
    workers = worker_count(settings.workers, len(seeds))
    for i, s in enumerate(seeds):
        path = main_run if (main_run is not None and i == 0) else runs_dir / f"seed{s}.h5"
        tasks.append(dict(cfg=cfg.to_dict(), seed=s, path=str(path), st=st,
                          measure=i < n_measure, main=i == 0,
                          progress=progress and workers <= 1))
    done = map_seeds(_seed_task, tasks, workers, log, name="paper", threads=cfg.threads)
    per_seed = stack(done)
    return {"metrics": per_seed["metrics"],
            "extra": {"runs": per_seed["path"], "main": done[0]["path"],
                      "seed_seconds": per_seed["seconds"], "workers": workers,
                      "measures": {"sgd": {}, "swa": {}, **per_seed["measured"]},
                      "gap": per_seed["gap"],
                      "settings": st,
                      "measure_seeds": [t["seed"] for t in tasks if t["measure"]]}}


def _seed_task(task: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """Everything of one seed: training, budgets, measures, gap (and, for the
    first seed, the figures' surfaces and rays).  Plain data in and out."""
    cfg, seed, path, st = task["cfg"], task["seed"], task["path"], task["st"]
    measure, main, progress = task["measure"], task["main"], task["progress"]
    from landscape.config import from_dict, load_data
    from landscape.jobs import measure_gap, measure_solution
    from landscape.sharpness import MeasureConfig
    from landscape.train import same_config, train

    base = from_dict(cfg, TrainConfig).replace(seed=seed)
    run = Path(path)
    metrics: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    train(base, run, progress=progress, log=lambda _: None)
    _add_seconds(run, "train", time.perf_counter() - t0)
    with store.open_run(run) as f:
        sols = store.solution_attrs(f)
    for method in ("sgd", "swa_last", "swa"):
        metrics[method] = _solution_metrics(sols[method])
    log(f"[paper] seed {seed}: trained SGD and SWA ({base.epochs} epochs) -> {run} "
        f"({time.perf_counter() - t0:.0f} s)")
    budgets = st["budgets"][1:]
    if budgets:
        t0 = time.perf_counter()
        data = None
        for b in budgets:  # SWA runs of longer budgets: only their solution is needed
            cfg_b = base.replace(swa_epochs=round(b * base.epochs), record_every=0,
                                 record_steps=0, eval_every=0)
            key = f"measures/budgets/{_budget_name(b)}"
            m = store.group_attrs(run, key)
            if m is None or not same_config(m["config"], cfg_b):
                data = data if data is not None else load_data(base)
                m = _solution_metrics(fit(cfg_b, data, "swa").metrics)
                store.write_group_attrs(run, key, {**m, "config": cfg_b.to_dict()})
            metrics[_budget_name(b)] = _solution_metrics(m)
        _add_seconds(run, "budgets", time.perf_counter() - t0)
        log(f"[paper] seed {seed}: SWA with {', '.join(f'{b:g}' for b in budgets)} "
            f"budgets ({time.perf_counter() - t0:.0f} s)")
    measured: dict[str, dict[str, float]] = {}
    gap: dict[str, float] = {}
    if measure:
        t0 = time.perf_counter()
        common = MeasureConfig(samples=st["measure_samples"], device="cpu")
        params = {"directions": st["directions"], "tau": st["tau"],
                  "trace_samples": st["trace_samples"], "slq_steps": st["slq_steps"],
                  "trace_method": st["trace_method"],
                  "width_bn": "recompute"}
        for sol in ("sgd", "swa"):
            res = measure_solution(run, sol, st["measures"], common, params,
                                   progress=progress)
            measured[sol] = {h.label: float(res[m].get(h.key, math.nan))
                             for m, h in headlines() if m in res}
        g = measure_gap(run, grid=f"-0.5:1.5:{st['gap_points']}", progress=progress)
        line = g["line"]
        gap = {"shift (L2), train loss CE + wd/2·‖θ‖²": line.shift.shift,
               "absolute shift (L2), train loss CE + wd/2·‖θ‖²": abs(line.shift.shift),
               "shift (L2), train loss CE": line.shift_ce.shift,
               "SGD–SWA distance (L2)": line.shift.distance}
        for sol, d in g["solutions"].items():
            gap |= {f"{sol} {k}": v for k, v in d.items()}
        gap = {k: float(v) for k, v in gap.items()}
        _add_seconds(run, "measures", time.perf_counter() - t0)
        log(f"[paper] seed {seed}: flatness measures of SGD and SWA, train-test gap "
            f"({time.perf_counter() - t0:.0f} s)")
    if main:
        t0 = time.perf_counter()
        paper_surfaces(run, st, progress=progress)
        for sol in ("sgd", "swa"):
            ray_profiles(run, sol, rays=st["rays"], points=st["ray_points"], seed=0)
        _add_seconds(run, "surfaces", time.perf_counter() - t0)
        log(f"[paper] seed {seed}: surfaces (random around SWA and SGD, plane, PCA, "
            f"SGD-SWA line) and random rays ({time.perf_counter() - t0:.0f} s)")
    seconds = sum((store.group_attrs(run, _SECONDS) or {}).values())
    return {"path": str(run), "metrics": metrics, "measured": measured, "gap": gap,
            "seconds": float(seconds)}


#: Group of a seed's run file with the seconds each stage took, summed over the
#: invocations that worked on it (so a resumed seed still counts its earlier work).
_SECONDS = "measures/paper_seconds"


def _add_seconds(run: Path, stage: str, seconds: float) -> None:
    """Add this invocation's ``seconds`` of ``stage`` to those recorded in ``run``."""
    before = float((store.group_attrs(run, _SECONDS) or {}).get(stage, 0.0))
    store.write_group_attrs(run, _SECONDS, {stage: before + seconds})


def _budget_name(b: float) -> str:
    return "swa" if b == 1.0 else f"swa_{b:g}x"


def _solution_metrics(a: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(a[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}


def paper_surfaces(path: Path, st: Mapping[str, Any], *, progress: bool = False,
                   ) -> list[str]:
    """The surfaces behind the paper's figures, computed (or resumed) in ``path``."""
    from landscape.jobs import SurfaceConfig, compute_surface

    n = st["grid"]
    g = f"-1:1:{n}"
    specs = {
        "random_swa": SurfaceConfig(kind="random", center="swa", grid=g, grid_y=g),
        "random_sgd": SurfaceConfig(kind="random", center="sgd", grid=g, grid_y=g),
        "plane": SurfaceConfig(kind="plane", points=("sgd", "swa", st["plane_point"]),
                               grid=None),
        "pca": SurfaceConfig(kind="pca", trajectory="swa"),
        "line": SurfaceConfig(kind="line", from_point="swa", to_point="sgd",
                              distance=True, grid=None),
    }
    for name, spec in specs.items():
        compute_surface(path, spec, name=name, progress=progress, log=lambda _: None)
    return list(specs)


def ray_profiles(path: Path, solution: str, *, rays: int = 10, points: int = 25,
                 r_max: float | None = None, seed: int = 0) -> None:
    r"""Train loss and test error along random unit rays from a solution.

    The paper's width figure: for ``rays`` random directions :math:`d` of unit L2
    norm, evaluate :math:`\theta + r d` for ``points`` radii in ``[0, r_max]``
    (BN statistics recomputed at each point for BN models).  ``r_max`` defaults
    to 2.5 × the largest finite width stored by the ``width`` measure, so SGD
    and SWA share one axis when both are measured.  Stored under
    ``/measures/<solution>/rays`` (``distance``, ``train_loss``, ``test_err``
    of shape ``(rays, points)``).

    Raises:
        UserError: If ``rays`` or ``points`` is below 1 or 2.
    """
    from landscape.jobs import load_run_model
    from landscape.sharpness.width import width_directions

    if rays < 1 or points < 2:
        raise UserError("need rays >= 1 and points >= 2")
    with store.open_run(path) as f:
        sol = store.read_solution(f, solution)
        layout, _ = store.layouts(f)
    if r_max is None:
        stored = store.read_widths(path, ("sgd", "swa"), required=False)
        widths = np.concatenate(list(stored.values()) or [np.zeros(0)])
        finite = widths[np.isfinite(widths)]
        r_max = 2.5 * float(finite.max()) if finite.size else 1.0
    params = {"rays": rays, "points": points, "r_max": r_max, "seed": seed}
    if store.group_attrs(path, f"measures/{solution}/rays", params) is not None:
        return
    model, data = load_run_model(path)
    ev = Evaluator(model, data.batches("train"), data.batches("test"))
    dirs = width_directions(layout, sol.weights.double(), rays, seed=seed)
    radius = np.linspace(0.0, r_max, points)
    train_loss = np.full((rays, points), np.nan)
    test_err = np.full((rays, points), np.nan)
    center = sol.weights.double()
    for i in range(rays):
        for j, r in enumerate(radius):
            m = ev.evaluate((center + r * dirs[i]).float(), sol.buffers)
            train_loss[i, j], test_err[i, j] = m["train"].loss, m["test"].err
    with store.edit_run(path) as f:
        store.write_rays(f, solution, {"distance": radius, "train_loss": train_loss,
                                       "test_err": test_err},
                         {**params, "bn": ev.bn.value, "units": "L2 distance",
                          "solution": solution})


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


register_protocol(Protocol(
    name="paper", title="the SWA paper's analyses (Izmailov et al. 2018), SGD vs SWA",
    settings=PaperSettings, run=run_paper, figures=_figures, report=_report))
