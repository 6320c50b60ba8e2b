"""Protocol ``align``: the run over pairs of seeds and its per-pair task."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig, from_dict
from landscape.experiments._common import Experiment, Log, SeedPair
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments.align.settings import (
    BARRIERS,
    PATHS,
    SOLUTIONS,
    AlignSettings,
    alignment_name,
    width_method,
)


def measure_keys(measures: Sequence[str]) -> dict[str, tuple[str, str, Any]]:
    """The results file's metric of each reported headline of ``measures``.

    Returns:
        ``{metric: (measure, headline key, headline)}``, e.g. ``"hessian_lambda_max"``.
    """
    from landscape.sharpness import headlines

    return {f"{m}_{h.key}": (m, h.key, h) for m, h in headlines() if m in measures}


def run_align(exp: Experiment, seeds: Sequence[int], out: Path, log: Log, *,
              runs_dir: Path, main_run: Path | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Run the ``align`` protocol (see the package docstring); one task per pair.

    Returns:
        ``{"metrics": {method: {metric: per-pair list}}, "extra": {...}}``.

    Raises:
        UserError: For bad settings, or the first error of any pair.
    """
    settings = AlignSettings.parse(exp.settings).check()
    cfg: TrainConfig = exp.cfg
    if not cfg.swa:
        raise UserError("the align protocol sets the merged solution beside SWA's; drop "
                        "swa = false from the config")
    if cfg.model not in (None, "mlp"):
        raise UserError(f"the align protocol sweeps the width of the MLP; drop model = "
                        f"{cfg.model!r} from the config (cnn = true adds the data set's CNN)")
    runs_dir.mkdir(parents=True, exist_ok=True)
    workers = worker_count(settings.workers, len(seeds))
    st = settings.to_dict()
    tasks = [dict(cfg=cfg.to_dict(), pair=int(i), runs_dir=str(runs_dir), st=st,
                  progress=progress and workers <= 1) for i in seeds]
    done = map_seeds(_pair_task, tasks, workers, log, name="align", threads=cfg.threads)
    per_pair = stack(done)
    return {"metrics": per_pair["metrics"],
            "extra": {"files": per_pair["files"], "main": done[0]["files"],
                      "seeds_of_pairs": [[2 * i, 2 * i + 1] for i in seeds],
                      "widths": [settings.base_width * k for k in settings.multiples],
                      "settings": st, "pair_seconds": per_pair["seconds"],
                      "workers": workers, "sgd_epochs": cfg.epochs,
                      "swa_epochs": cfg.swa_budget}}


def _variant(base: TrainConfig, st: Mapping[str, Any], which: str) -> TrainConfig:
    """The pair's train config of one variant: ``x<k>`` (the MLP) or ``cnn``."""
    if which == "cnn":
        from landscape.models import default_model

        return base.replace(model=default_model(base.data), model_width=None)
    return base.replace(model="mlp", model_width=st["base_width"] * int(which[1:]))


def _pair_task(task: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """Everything of one pair: trainings per width, alignments, the merge, measures.

    Plain data in and out; every stage resumes from what its files hold.
    """
    from landscape.jobs import align_runs, measure_solution, merge_runs
    from landscape.sharpness import MeasureConfig
    from landscape.train import train

    base = from_dict(task["cfg"], TrainConfig)
    i, st, progress = task["pair"], task["st"], task["progress"]
    runs_dir = Path(task["runs_dir"])
    seed_pair = SeedPair.of(base, i)
    seeds = seed_pair.seeds
    quiet = lambda _m: None  # noqa: E731
    t_pair = time.perf_counter()
    variants = [f"x{k}" for k in st["multiples"]] + (["cnn"] if st["cnn"] else [])
    kw = {} if st["align_samples"] is None else {"samples": st["align_samples"]}
    metrics: dict[str, dict[str, float]] = {}
    files: dict[str, str] = {}
    for which in variants:
        cfg = _variant(base, st, which)
        if which not in (variants[0], "cnn") and "swa" not in st["solutions"]:
            cfg = cfg.replace(swa=False)  # only the base width's SWA solution is used
        folder = runs_dir / (which if which == "cnn" else f"mlp{cfg.model_width}")
        runs = [folder / f"seed{s}.h5" for s in seeds]
        t0 = time.perf_counter()
        for s, path in zip(seeds, runs, strict=True):
            train(seed_pair.config(cfg, s), path, progress=progress, log=quiet,
                  data=seed_pair.data)
        pair = folder / f"pair{i}.h5"
        for sol in st["solutions"]:
            al = align_runs(runs[0], runs[1], pair, solution_a=sol, solution_b=sol,
                            method="weights", repair=True, points=st["points"],
                            name=alignment_name(sol), progress=progress, **kw)
            for path in PATHS:
                metrics[width_method(sol, path, int(which[1:])) if which != "cnn"
                        else f"cnn_{sol}_{path}"] = {
                    f"{k}_barrier": float(al.barriers[path][k]) for k in BARRIERS}
        files[which] = str(pair)
        bars = {p: 100 * metrics[width_method("sgd", p, int(which[1:])) if which != "cnn"
                                 else f"cnn_sgd_{p}"]["test_err_barrier"]
                for p in PATHS} if "sgd" in st["solutions"] else {}
        log(f"[align] pair {i}: {cfg.model} "
            f"{'' if which == 'cnn' else f'hidden {cfg.model_width} '}trained and "
            "aligned; SGD test error barrier " + ", ".join(
                f"{p} {v:.2f}" for p, v in bars.items()) +
            f" points ({time.perf_counter() - t0:.0f} s)")
        if which not in (variants[0], "cnn"):
            continue
        t0 = time.perf_counter()
        merged = folder / f"merged{i}.h5"
        merge_runs(runs, merged, solution="sgd", method="weights", name="merged",
                   force=True)  # its own file: one merged from older code is remade
        files[f"{which}_merged"] = str(merged)
        common = MeasureConfig(samples=st["measure_samples"], device="cpu")
        keys = measure_keys(st["measures"])
        with store.open_run(merged) as f:
            sols = store.solution_attrs(f)
        prefix = "cnn_" if which == "cnn" else ""
        for sol in SOLUTIONS:
            res = measure_solution(merged, sol, st["measures"], common,
                                   {"trace_method": st["trace_method"]}, progress=progress)
            metrics[prefix + sol] = {"test_acc": float(sols[sol]["test_acc"])} | {
                k: float(res.get(m, {}).get(key, math.nan))
                for k, (m, key, _) in keys.items()}
        log(f"[align] pair {i}: {cfg.model} merged; test acc " + ", ".join(
            f"{sol} {metrics[prefix + sol]['test_acc']:.4f}" for sol in SOLUTIONS)
            + f"; measures of all three ({time.perf_counter() - t0:.0f} s)")
    return {"files": files, "metrics": metrics,
            "seconds": float(time.perf_counter() - t_pair)}
