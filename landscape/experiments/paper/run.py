"""Protocol ``paper``: the run over seeds and its per-seed task."""

from __future__ import annotations

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
    Experiment,
    Log,
    fit,
)
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments.paper.settings import PaperSettings
from landscape.sharpness import headlines


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
