"""Protocol ``seed000``: the run over seeds and its per-seed task."""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig, load_data
from landscape.data import TensorData, kaggle_split, kfold_indices, write_submission
from landscape.experiments._common import (
    Experiment,
    Fit,
    Log,
    early_stop,
    fit,
    fmt_params,
    fold,
)
from landscape.experiments._runner import Workers, worker_count
from landscape.experiments.seed000.settings import _SEARCH_KEYS, Seed000Settings
from landscape.params import ParamLayout


def _method_cfg(base: TrainConfig, method: str, p: Mapping[str, Any], frac: float,
                ) -> TrainConfig:
    """The TrainConfig of one method for hyperparameters ``p``."""
    common = {"batch_size": int(p["batch_size"]), "lr": float(p["lr"]),
              "momentum": float(p["momentum"]), "epochs": int(p["epochs"]), "eval_every": 1,
              "record_every": 0, "record_steps": 0, "average_epochs": None}
    if method == "sgd":
        return base.replace(swa=False, **common)
    e = int(p["epochs"])
    start = max(1, min(e - 1, round(frac * e)))
    return base.replace(swa=True, swa_epochs=e, swa_start=start, schedule="const",
                        swa_lr=float(p["lr"]) * float(p.get("swa_lr_ratio", 1.0)), **common)


def _monitor(h: Mapping[str, np.ndarray], method: str) -> np.ndarray:
    return h["swa_test_acc"] if method == "swa" else h["test_acc"]


def _suggest(trial: Any, space: Mapping[str, Any], method: str) -> dict[str, Any]:
    p: dict[str, Any] = {"batch_size": trial.suggest_categorical(
        "batch_size", [int(b) for b in space["batch_size"]])}
    lo, hi = space["lr"]
    p["lr"] = trial.suggest_float("lr", lo, hi, log=True)
    lo, hi = space["momentum"]
    p["momentum"] = trial.suggest_float("momentum", lo, hi)
    lo, hi = space["patience"]
    p["patience"] = trial.suggest_int("patience", int(lo), int(hi))
    lo, hi = space["epochs"]
    p["epochs"] = trial.suggest_int("epochs", int(lo), int(hi))
    if method == "swa" and "swa_lr_ratio" in space:
        lo, hi = space["swa_lr_ratio"]
        p["swa_lr_ratio"] = trial.suggest_float("swa_lr_ratio", lo, hi, log=True)
    return p


def tune(base: TrainConfig, data: TensorData, method: str, space: Mapping[str, Any], *,
         trials: int, frac: float, seed: int = 0, log: Log | None = None,
         ) -> tuple[dict[str, Any], float]:
    """Optuna search for ``method`` on one held-out fold (1/5) of the training set.

    Trials run one after the other (TPE's next suggestion depends on every
    finished trial, so parallel trials would make the search depend on timing);
    ``log`` gets a line per finished trial with the best score so far.

    Returns:
        ``(best hyperparameters, best validation accuracy)``.

    Raises:
        UserError: If Optuna is not installed or every trial failed.
    """
    try:
        import optuna
    except ImportError:
        raise UserError("the seed000 experiment needs Optuna: pip install "
                        "landscape[tune] (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tr, va = kfold_indices(len(data.y_train), 5, seed=seed)[0]
    holdout = fold(data, tr, va)

    def objective(trial: Any) -> float:
        p = _suggest(trial, space, method)
        try:
            f = fit(_method_cfg(base, method, p, frac), holdout, method)
        except UserError:  # diverged: the worst score, the search goes on
            return 0.0
        return early_stop(_monitor(f.history, method), p["patience"])[1]

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()

    def report(study: Any, trial: Any) -> None:
        if log is not None:
            k = trial.number + 1
            el = time.perf_counter() - t0
            log(f"[tune {method}] trial {k}/{trials}: val acc {trial.value:.4f} (best "
                f"{study.best_value:.4f}); {el:.0f} s, ETA {el / k * (trials - k):.0f} s")

    study.optimize(objective, n_trials=trials, callbacks=[report])
    if study.best_value <= 0:
        raise UserError(f"every {method} trial diverged; narrow the lr range")
    return dict(study.best_params), float(study.best_value)


def _predict(f: Fit, x: torch.Tensor) -> torch.Tensor:
    m = copy.deepcopy(f.model)
    ParamLayout.from_module(m).write(m, f.weights)
    buf = ParamLayout.buffers_of(m)
    if buf.numel:
        buf.write(m, f.buffers, buffers=True)
    m.eval()
    with torch.inference_mode():
        return torch.cat([m(xb).argmax(1) for xb in x.split(4096)])


def load_seed_data(exp: Experiment, seed: int) -> TensorData:
    """The data of one seed: the config's, re-split as Kaggle's when asked.

    ``[experiment] kaggle_train = N`` applies to ``--data mnist`` only
    (:func:`landscape.data.kaggle_split`); other data sets keep their splits.

    Returns:
        The data.

    Raises:
        UserError: For a ``kaggle_train`` that is not a positive count.
    """
    n = exp.settings.get("kaggle_train")
    if n is not None and exp.cfg.data == "mnist" and (
            isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UserError(f"{exp.path}: [experiment] kaggle_train = {n!r}; give the number "
                        "of training images (Kaggle: 42000)")
    data = load_data(exp.cfg.replace(seed=seed))
    if n is None or data.name != "mnist":
        return data
    return kaggle_split(data, n)


def _stamp(exp: Experiment) -> dict[str, Any]:
    """What a finished stage must have been made with to be reused on resume."""
    cfg = {k: v for k, v in exp.cfg.to_dict().items() if k not in ("data_root", "download")}
    return {"config": cfg, "settings": exp.settings}


def run_seed000(exp: Experiment, seeds: Sequence[int], out: Path, log: Log,
                runs_dir: Path | None = None, **_: Any) -> dict[str, Any]:
    """Tune once (seed 0), then per seed: k-fold CV of each best config and a final fit.

    Finished stages are kept in ``runs_dir/progress.h5`` and reused by a rerun
    of the same config (see the module docstring).

    Returns:
        ``{"metrics": {method: {metric: list}}, "extra": {...}}``.

    Raises:
        UserError: For an unknown search key.
    """
    s = exp.settings
    settings = Seed000Settings.parse(s)
    space, frac = s["search"], settings.swa_start_frac
    bad = set(space) - _SEARCH_KEYS
    if bad:
        raise UserError(f"{exp.path}: unknown [experiment.search] key(s) {sorted(bad)}; "
                        f"valid: {sorted(_SEARCH_KEYS)}")
    progress = None if runs_dir is None else Path(runs_dir) / "progress.h5"
    stamp = _stamp(exp)
    data0 = load_seed_data(exp, seeds[0])
    log(f"[data] {data0.name}: {len(data0.y_train)} train, {len(data0.y_test)} test"
        + ("" if data0.x_predict is None else f", {len(data0.x_predict)} to predict"))
    threads = serial_threads(exp, data0)
    best: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for method in ("sgd", "swa"):
        key = f"tune/{method}"
        done = None if progress is None else store.stage_attrs(progress, key, stamp)
        if done is not None:
            best[method], score = dict(done["best"]), float(done["score"])
            seconds[f"tune_{method}"] = float(done["seconds"])
            log(f"[tune {method}] kept from {progress}: best val acc {score:.4f} with "
                f"{fmt_params(best[method])}")
            continue
        t0 = time.perf_counter()
        with _torch_threads(threads):
            best[method], score = tune(exp.cfg, data0, method, space,
                                       trials=int(s["trials"]), frac=frac, seed=seeds[0],
                                       log=log)
        seconds[f"tune_{method}"] = time.perf_counter() - t0
        if progress is not None:
            store.write_stage_attrs(progress, key, {
                "best": best[method], "score": score,
                "seconds": seconds[f"tune_{method}"], **stamp})
        log(f"[tune {method}] {s['trials']} trials, best val acc {score:.4f} with "
            f"{fmt_params(best[method])} ({seconds[f'tune_{method}']:.0f} s)")
    metrics: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in ("cv_acc", "stop_epoch", "train_acc", "test_acc")}
        for m in ("sgd", "swa")}
    submissions: list[str] = []
    workers = worker_count(settings.workers, settings.folds)
    with Workers(workers, log) as pool:
        _cv_seeds(exp, seeds, data0, best, frac, pool, metrics, submissions, out, log,
                  threads=threads, progress=progress, stamp=stamp, seconds=seconds)
    return {"metrics": metrics, "extra": {
        "best_params": best, "submissions": submissions, "serial_threads": threads,
        "workers": workers, "stage_seconds": seconds, "seconds": sum(seconds.values()),
        "data": _data_summary(data0), "data_note": data_note(_data_summary(data0))}}


def _data_summary(data: TensorData) -> dict[str, Any]:
    """Sizes and split of the data, for the report."""
    keep = ("files", "split", "kaggle_train", "train_images", "held_out_images",
            "test_fraction", "holdout_seed")
    return {"name": data.name, "n_train": len(data.y_train), "n_test": len(data.y_test),
            "n_predict": 0 if data.x_predict is None else len(data.x_predict),
            "in_shape": list(data.in_shape),
            **{k: data.meta[k] for k in keep if k in data.meta}}


def serial_threads(exp: Experiment, data: TensorData) -> int:
    """Torch threads of the stages that run one at a time here (trials, final fits).

    ``[experiment] serial_threads``: a count, or ``"auto"`` (the default): every
    core for image-sized inputs (at least 256 values per sample; two threads fit
    the seed-000 CNN on 28x28 inputs 1.7x faster than one on 2 cores), else the
    config's ``threads``, so the MNIST-1D default keeps its numbers (a thread
    count changes the float rounding).  The CV folds run in worker processes
    with the config's ``threads`` each.

    Raises:
        UserError: For a value that is neither ``"auto"`` nor a positive count.
    """
    v = exp.settings.get("serial_threads", "auto")
    if v == "auto":
        if int(np.prod(data.in_shape)) >= 256:
            return os.cpu_count() or 1
        return int(exp.cfg.threads or torch.get_num_threads())
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UserError(f"{exp.path}: [experiment] serial_threads = {v!r}; give a positive "
                        "thread count or \"auto\"")
    return v


@contextlib.contextmanager
def _torch_threads(n: int) -> Any:
    """Run the block with ``n`` torch intra-op threads, then restore the count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _cv_seeds(exp: Experiment, seeds: Sequence[int], data0: TensorData,
              best: Mapping[str, Any], frac: float, pool: Any,
              metrics: dict[str, dict[str, list[float]]], submissions: list[str],
              out: Path, log: Log, threads: int = 1, progress: Path | None = None,
              stamp: Mapping[str, Any] | None = None,
              seconds: dict[str, float] | None = None) -> None:
    """Per seed: k-fold CV of each best config and a final fit (fills ``metrics``)."""
    s = exp.settings
    seconds = {} if seconds is None else seconds
    keys = ("cv_acc", "stop_epoch", "train_acc", "test_acc")
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        data = data0 if seed == seeds[0] else load_seed_data(exp, seed)
        folds = kfold_indices(len(data.y_train), int(s["folds"]), seed=seed)
        for method in ("sgd", "swa"):
            sub_path = out / f"submission_{method}.csv"
            wants_sub = data.x_predict is not None and seed == seeds[0]
            key = f"seed{seed}/{method}"
            done = None
            if progress is not None and not (wants_sub and not sub_path.is_file()):
                done = store.stage_attrs(progress, key, {**(stamp or {}),
                                                         "best": best[method]})
            if done is not None:
                for k in keys:
                    metrics[method][k].append(float(done[k]))
                seconds[key] = float(done["seconds"])
                if wants_sub:
                    submissions.append(str(sub_path))
                log(f"[seed {seed}] {method.upper()} kept from {progress}")
                continue
            t1 = time.perf_counter()
            p = best[method]
            cfg = _method_cfg(exp.cfg.replace(seed=seed), method, p, frac)
            stops = _cross_validate(cfg, data, folds, method, p["patience"], pool=pool,
                                    log=log, label=f"[seed {seed}] {method.upper()}")
            e_final = int(np.median([e for e, _ in stops]))
            log(f"[seed {seed}] {method.upper()} final fit on all {len(data.y_train)} "
                f"train images, {e_final} epochs")
            with _torch_threads(threads):
                final = fit(_final_cfg(cfg, method, e_final), data, method)
            row = {"cv_acc": float(np.mean([a for _, a in stops])),
                   "stop_epoch": float(e_final), "train_acc": final.metrics["train_acc"],
                   "test_acc": final.metrics["test_acc"]}
            for k in keys:
                metrics[method][k].append(row[k])
            if wants_sub:
                sub = write_submission(sub_path, _predict(final, data.x_predict))
                submissions.append(str(sub))
            seconds[key] = time.perf_counter() - t1
            if progress is not None:
                store.write_stage_attrs(progress, key, {
                    **row, "stops": [list(t) for t in stops], "seconds": seconds[key],
                    **(stamp or {}), "best": best[method]})
        el = time.perf_counter() - t0
        log(f"[seed {seed}] " + "; ".join(
            f"{m.upper()} cv {metrics[m]['cv_acc'][-1]:.4f} train "
            f"{metrics[m]['train_acc'][-1]:.4f} test {metrics[m]['test_acc'][-1]:.4f}"
            for m in ("sgd", "swa")) + f" ({el:.0f} s; seed {i + 1}/{len(seeds)}, "
            f"ETA {el * (len(seeds) - i - 1):.0f} s)")


def _fold_stop(task: tuple[dict[str, Any], TensorData, torch.Tensor, torch.Tensor, str, int],
               log: Log) -> tuple[int, float]:
    """Early-stopping epoch and validation accuracy of one CV fold: ``task`` is
    ``(config dict, data, train indices, validation indices, method, patience)``."""
    from landscape.config import from_dict

    cfg, data, train_idx, val_idx, method, patience = task
    c = from_dict(cfg, TrainConfig)
    if c.threads:
        torch.set_num_threads(c.threads)
    f = fit(c, fold(data, train_idx, val_idx), method)
    return early_stop(_monitor(f.history, method), patience)


def _cross_validate(cfg: TrainConfig, data: TensorData, folds: Sequence[tuple],
                    method: str, patience: int, *, pool: Workers, log: Log,
                    label: str) -> list[tuple[int, float]]:
    """Early-stopping results of every fold; folds in parallel worker processes.

    Each fold's fit is independent and runs with the config's ``threads``, so the
    results do not depend on the number of workers (``[experiment] workers``,
    default one per CPU core).

    Returns:
        ``[(stop epoch, validation accuracy)]`` in fold order.
    """
    n = len(folds)
    t0 = time.perf_counter()
    out: list[tuple[int, float] | None] = [None] * n

    def done(i: int, r: tuple[int, float], k: int) -> None:
        out[i] = r
        el = time.perf_counter() - t0
        log(f"{label} fold {i + 1}/{n}: stop epoch {r[0]}, val acc {r[1]:.4f} "
            f"({k}/{n} done, {el:.0f} s, ETA {el / k * (n - k):.0f} s)")

    tasks = [(cfg.to_dict(), data, tr, va, method, patience) for tr, va in folds]
    for k, (i, r) in enumerate(pool.as_completed(_fold_stop, tasks), start=1):
        done(i, r, k)
    return [r for r in out if r is not None]


def _final_cfg(cfg: TrainConfig, method: str, epochs: int) -> TrainConfig:
    """``cfg`` cut to ``epochs`` (the CV stopping epoch); the schedule is unchanged."""
    if method == "sgd":
        return cfg.replace(epochs=epochs)
    return cfg.replace(swa_epochs=max(epochs, cfg.swa_start + 1))


def data_note(d: Mapping[str, Any]) -> str:
    """The report's data paragraph from :func:`_data_summary`'s record.

    Returns:
        Markdown.
    """
    if d.get("split") == "kaggle":
        return (f"**Data: real MNIST digits at the Kaggle Digit Recognizer's scale** "
                f"({', '.join(f'`{Path(f).name}`' for f in d.get('files', []))}). "
                f"Train (as Kaggle's `train.csv`): {d['n_train']:,} images, MNIST's "
                f"{d['train_images']} (file order); held out (as `test.csv`): "
                f"{d['n_test']:,} images, {d['held_out_images']}. The split is fixed "
                "(no randomness; every seed sees it); seeds change the initial weights, "
                "the batch order and the CV folds. The held-out images are predicted "
                "into the submissions and, since MNIST has their labels, scored: test "
                "accuracy is the submission's accuracy. The search and CV see only "
                "the training images.")
    if d.get("name") == "kaggle-digits":
        return (f"Data: Kaggle Digit Recognizer CSVs: {d['n_train']:,} rows of "
                f"`train.csv` for training, {d['n_test']:,} held out of it (fraction "
                f"{d.get('test_fraction', 0):.3g}, seed {d.get('holdout_seed')}) as the "
                f"labelled test split, {d['n_predict']:,} rows of `test.csv` predicted.")
    return ""
