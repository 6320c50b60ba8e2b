"""Protocol ``connect``: the run over seeds and its per-seed task."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from landscape import store
from landscape._errors import UserError
from landscape.config import ConnectConfig, FGEConfig, TrainConfig, from_dict
from landscape.experiments._common import Experiment, Log, SeedPair
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments.connect.settings import (
    ALIGNMENT,
    BARRIERS,
    PATHS,
    ConnectSettings,
)


def run_connect(exp: Experiment, seeds: Sequence[int], out: Path, log: Log, *,
                runs_dir: Path, main_run: Path | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Run the ``connect`` protocol (see the module docstring); one task per pair.

    Returns:
        ``{"metrics": {method: {metric: per-pair list}}, "extra": {...}}``.

    Raises:
        UserError: For bad settings, or the first error of any pair.
    """
    settings = ConnectSettings.parse(exp.settings)
    curve_cfg, fge_cfg = settings.configs()
    cfg: TrainConfig = exp.cfg
    if not cfg.swa:
        raise UserError("the connect protocol compares SWA and SWAG, which ride on the "
                        "SWA run; drop swa = false from the config")
    runs_dir.mkdir(parents=True, exist_ok=True)
    workers = worker_count(settings.workers, len(seeds))
    st = settings.to_dict()
    tasks = [dict(cfg=cfg.to_dict(), pair=int(i), runs_dir=str(runs_dir), st=st,
                  curve=curve_cfg.to_dict(), fge=fge_cfg.to_dict(), main=k == 0,
                  progress=progress and workers <= 1) for k, i in enumerate(seeds)]
    done = map_seeds(_pair_task, tasks, workers, log, name="connect", threads=cfg.threads)
    per_pair = stack(done)
    return {"metrics": per_pair["metrics"],
            "extra": {"pairs": per_pair["pair"], "runs": per_pair["runs"],
                      "main_pair": done[0]["pair"], "main_run": done[0]["runs"][0],
                      "seeds_of_pairs": [[2 * i, 2 * i + 1] for i in seeds],
                      "settings": st, "curve": curve_cfg.to_dict(),
                      "curve_name": curve_cfg.curve,
                      "fge": fge_cfg.to_dict(), "plane": bool(settings.plane),
                      "fge_epochs": fge_cfg.snapshots * fge_cfg.cycle,
                      "sgd_epochs": cfg.epochs, "swa_epochs": cfg.swa_budget}}


def _predictive(m: Any) -> dict[str, float]:
    """``test_acc``, ``test_nll``, ``test_ece`` of :class:`PredictiveMetrics`."""
    return {"test_acc": float(m.acc), "test_nll": float(m.nll), "test_ece": float(m.ece)}


def _pair_task(task: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """Everything of one pair: two trainings, curve, alignment, FGE, SWAG, ensemble.

    Plain data in and out; every stage resumes from what its files hold.
    """
    from landscape.evaluate import Evaluator
    from landscape.jobs import align_runs, connect_runs, fge_run, load_run_model, swag_run
    from landscape.posterior import EnsembleAverage, predict_proba, predictive_metrics
    from landscape.train import train

    base = from_dict(task["cfg"], TrainConfig).replace(swag=True)
    i, st, progress = task["pair"], task["st"], task["progress"]
    runs_dir = Path(task["runs_dir"])
    seed_pair = SeedPair.of(base, i)
    seeds = seed_pair.seeds
    runs = [runs_dir / f"seed{s}.h5" for s in seeds]
    quiet = lambda _m: None  # noqa: E731
    t0 = time.perf_counter()
    for s, path in zip(seeds, runs, strict=True):
        train(seed_pair.config(base, s), path, progress=progress, log=quiet,
              data=seed_pair.data)
    log(f"[connect] pair {i}: trained seeds {seeds[0]} and {seeds[1]} (SGD, SWA with "
        f"SWAG; {base.epochs} epochs each) ({time.perf_counter() - t0:.0f} s)")

    pair = runs_dir / f"pair{i}.h5"
    t0 = time.perf_counter()
    plane = (st["plane"] or None) if task["main"] else None
    con = connect_runs(runs[0], runs[1], pair, config=ConnectConfig(**task["curve"]),
                       name=task["curve"]["curve"], plane=plane, progress=progress)
    log(f"[connect] pair {i}: {task['curve']['curve']} curve trained; test error barrier line "
        f"{100 * con.barriers['line']['test_err']:.2f} vs curve "
        f"{100 * con.barriers['curve']['test_err']:.2f} points "
        f"({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    kw = {} if st["align_samples"] is None else {"samples": st["align_samples"]}
    al = align_runs(runs[0], runs[1], pair, method="weights", repair=True,
                    points=task["curve"]["points"], name=ALIGNMENT, progress=progress,
                    **kw)
    log(f"[connect] pair {i}: weight matching; test error barrier aligned "
        f"{100 * al.barriers['aligned']['test_err']:.2f}, with REPAIR "
        f"{100 * al.barriers['repair']['test_err']:.2f} points "
        f"({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    fg = fge_run(runs[0], solution="sgd", config=FGEConfig(**task["fge"]),
                 progress=progress)
    kw = {} if st["swag_samples"] is None else {"samples": st["swag_samples"]}
    sw = swag_run(runs[0], progress=progress, bins=int(task["fge"]["bins"]), **kw)
    model, pdata = load_run_model(runs[0])
    ev = Evaluator(copy.deepcopy(model), *pdata.splits(4096), batch_size=4096)
    ens = EnsembleAverage()
    for path in runs:
        with store.open_run(path) as f:
            s = store.read_solution(f, "sgd")
        probs, y = predict_proba(ev, s.weights, s.buffers)
        ens.add(probs)
    pair_ens = predictive_metrics(ens.probs, y, int(task["fge"]["bins"]))
    h = fg.history
    metrics: dict[str, dict[str, float]] = {
        "sgd": _predictive(sw["sgd"]), "swa": _predictive(sw["swa"]),
        "swag": _predictive(sw["bma"].metrics), "fge": _predictive(fg.ensemble),
        "fge_swa": {"test_acc": float(h["swa_acc"][-1]), "test_nll": float(h["swa_nll"][-1]),
                    "test_ece": float(h["swa_ece"][-1])},
        "sgd_ensemble": _predictive(pair_ens)}
    log(f"[connect] pair {i}: FGE ({len(h['snapshot'])} snapshots) test acc "
        f"{fg.ensemble.acc:.4f}, SWAG acc {sw['bma'].metrics.acc:.4f}, SWA "
        f"{sw['swa'].acc:.4f}, SGD {sw['sgd'].acc:.4f}, two-SGD ensemble "
        f"{pair_ens.acc:.4f} ({time.perf_counter() - t0:.0f} s)")
    bars = {**con.barriers, **{k: v for k, v in al.barriers.items() if k != "curve"}}
    for which in PATHS:
        metrics[which] = {f"{k}_barrier": float(bars[which][k]) for k in BARRIERS}
    return {"pair": str(pair), "runs": [str(r) for r in runs], "metrics": metrics}
