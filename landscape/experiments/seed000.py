r"""Protocol ``seed000``: the IIIT Vadodara report's protocol (tiny BN CNN, Kaggle digits).

An Optuna search (TPE, seeded) for SGD without SWA and SGD with SWA over batch
size, learning rate, momentum, early-stopping patience and maximum epochs (and
the SWA learning-rate ratio), scored on one held-out fold of the training set;
then ``folds``-fold cross-validation of each best config; then a fit on the
whole training set scored on train and test.  *Early stopping*: each fit
evaluates the validation fold after every epoch; the stopping epoch is the
best epoch before ``patience`` epochs without improvement (Keras'
``restore_best_weights`` semantics), monitored on the iterate for SGD and on
the running SWA model (BN statistics recomputed) for SWA.  Because the SGD
schedule is constant and the SWA schedule depends only on ``swa_start``, a run
truncated at epoch ``e`` equals the first ``e`` epochs of a longer run, so
reading the history is exact.  The final fit trains for the median CV
stopping epoch.  With ``--data kaggle-digits`` and a ``test.csv``, Kaggle
submissions are written.
"""

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

from landscape._errors import UserError
from landscape.config import TrainConfig, load_data
from landscape.data import TensorData, kfold_indices, write_submission
from landscape.experiments._common import (
    Experiment,
    Fit,
    Log,
    Protocol,
    early_stop,
    figure_lines,
    fit,
    fmt_params,
    fold,
    register_protocol,
    verdict,
)
from landscape.params import ParamLayout

_SEARCH_KEYS = {"batch_size", "lr", "momentum", "patience", "epochs", "swa_lr_ratio"}


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


def run_seed000(exp: Experiment, seeds: Sequence[int], out: Path, log: Log,
                runs_dir: Path | None = None, **_: Any) -> dict[str, Any]:
    """Tune once (seed 0), then per seed: k-fold CV of each best config and a final fit.

    Returns:
        ``{"metrics": {method: {metric: list}}, "extra": {...}}``.
    """
    s = exp.settings
    space, frac = s["search"], float(s.get("swa_start_frac", 0.5))
    bad = set(space) - _SEARCH_KEYS
    if bad:
        raise UserError(f"{exp.path}: unknown [experiment.search] key(s) {sorted(bad)}; "
                        f"valid: {sorted(_SEARCH_KEYS)}")
    data0 = load_data(exp.cfg.replace(seed=seeds[0]))
    threads = serial_threads(exp, data0)
    best: dict[str, dict[str, Any]] = {}
    for method in ("sgd", "swa"):
        t0 = time.perf_counter()
        with _torch_threads(threads):
            best[method], score = tune(exp.cfg, data0, method, space,
                                       trials=int(s["trials"]), frac=frac, seed=seeds[0],
                                       log=log)
        log(f"[tune {method}] {s['trials']} trials, best val acc {score:.4f} with "
            f"{fmt_params(best[method])} ({time.perf_counter() - t0:.0f} s)")
    metrics: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in ("cv_acc", "stop_epoch", "train_acc", "test_acc")}
        for m in ("sgd", "swa")}
    submissions = []
    workers = min(int(s["folds"]), int(s.get("workers") or os.cpu_count() or 1))
    with _pool(workers) as pool:
        _cv_seeds(exp, seeds, data0, best, frac, pool, metrics, submissions, out, log,
                  threads=threads)
    return {"metrics": metrics, "extra": {"best_params": best, "submissions": submissions,
                                          "serial_threads": threads}}


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
              out: Path, log: Log, threads: int = 1) -> None:
    """Per seed: k-fold CV of each best config and a final fit (fills ``metrics``)."""
    s = exp.settings
    for seed in seeds:
        t0 = time.perf_counter()
        data = data0 if seed == seeds[0] else load_data(exp.cfg.replace(seed=seed))
        folds = kfold_indices(len(data.y_train), int(s["folds"]), seed=seed)
        for method in ("sgd", "swa"):
            p = best[method]
            cfg = _method_cfg(exp.cfg.replace(seed=seed), method, p, frac)
            stops = _cross_validate(cfg, data, folds, method, p["patience"], pool=pool,
                                    log=log, label=f"[seed {seed}] {method.upper()}")
            e_final = int(np.median([e for e, _ in stops]))
            with _torch_threads(threads):
                final = fit(_final_cfg(cfg, method, e_final), data, method)
            row = metrics[method]
            row["cv_acc"].append(float(np.mean([a for _, a in stops])))
            row["stop_epoch"].append(float(e_final))
            row["train_acc"].append(final.metrics["train_acc"])
            row["test_acc"].append(final.metrics["test_acc"])
            if data.x_predict is not None and seed == seeds[0]:
                sub = write_submission(out / f"submission_{method}.csv",
                                       _predict(final, data.x_predict))
                submissions.append(str(sub))
        log(f"[seed {seed}] " + "; ".join(
            f"{m.upper()} cv {metrics[m]['cv_acc'][-1]:.4f} train "
            f"{metrics[m]['train_acc'][-1]:.4f} test {metrics[m]['test_acc'][-1]:.4f}"
            for m in ("sgd", "swa")) + f" ({time.perf_counter() - t0:.0f} s)")


def _fold_stop(cfg: dict[str, Any], data: TensorData, train_idx: torch.Tensor,
               val_idx: torch.Tensor, method: str, patience: int) -> tuple[int, float]:
    """Early-stopping epoch and validation accuracy of one CV fold (picklable)."""
    from landscape.config import from_dict

    c = from_dict(cfg, TrainConfig)
    if c.threads:
        torch.set_num_threads(c.threads)
    f = fit(c, fold(data, train_idx, val_idx), method)
    return early_stop(_monitor(f.history, method), patience)


def _pool(workers: int) -> Any:
    """A pool of ``workers`` spawned processes (``None`` for one worker)."""
    if workers <= 1:
        return contextlib.nullcontext(None)
    from concurrent.futures import ProcessPoolExecutor

    import torch.multiprocessing as tmp

    return ProcessPoolExecutor(workers, mp_context=tmp.get_context("spawn"))


def _cross_validate(cfg: TrainConfig, data: TensorData, folds: Sequence[tuple],
                    method: str, patience: int, *, pool: Any, log: Log,
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

    if pool is None:
        for i, (tr, va) in enumerate(folds):
            done(i, _fold_stop(cfg.to_dict(), data, tr, va, method, patience), i + 1)
    else:
        from concurrent.futures import as_completed

        futs = {pool.submit(_fold_stop, cfg.to_dict(), data, tr, va, method,
                            patience): i for i, (tr, va) in enumerate(folds)}
        for k, fut in enumerate(as_completed(futs), start=1):
            done(futs[fut], fut.result(), k)
    return [r for r in out if r is not None]


def _final_cfg(cfg: TrainConfig, method: str, epochs: int) -> TrainConfig:
    """``cfg`` cut to ``epochs`` (the CV stopping epoch); the schedule is unchanged."""
    if method == "sgd":
        return cfg.replace(epochs=epochs)
    return cfg.replace(swa_epochs=max(epochs, cfg.swa_start + 1))


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    from landscape import plot

    return plot.save_figure(plot.plot_swa_vs_sgd(
        res, metrics=["cv_acc", "train_acc", "test_acc"])[0], dest / "swa_vs_sgd")


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m = result["metrics"]
    lines = ["- " + verdict("SGD", m["sgd"][k], "SWA", m["swa"][k], k.replace("_", " "))
             for k in ("test_acc", "cv_acc")]
    bp = result.get("extra", {}).get("best_params", {})
    lines += ["", "Best hyperparameters (Optuna, seed-0 holdout fold):", ""]
    lines += [f"- {k.upper()}: {fmt_params(v)}" for k, v in bp.items()]
    subs = result.get("extra", {}).get("submissions", [])
    if subs:
        lines += ["", "Kaggle submissions: " + ", ".join(f"`{s}`" for s in subs)]
    return [*lines, "", "## Figures", "", *figure_lines(figures, out)]


register_protocol(Protocol(
    name="seed000", title="tiny BN CNN, Optuna + 5-fold CV, SGD with vs without SWA",
    keys=frozenset({"protocol", "seeds", "trials", "folds", "swa_start_frac", "search",
                    "workers", "serial_threads", "quick"}),
    run=run_seed000, figures=_figures, report=_report))
