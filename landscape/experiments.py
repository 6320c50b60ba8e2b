r"""Experiment runners: the two seed protocols over several seeds, with reports.

An experiment is ``experiments/NAME.toml``: top-level keys override
:class:`landscape.config.TrainConfig`, and an ``[experiment]`` table names the
``protocol`` and its settings (``seeds``, and a ``[experiment.quick]`` table of
overrides for a smoke test).  :func:`reproduce` runs it over seeds, writes one
results file ``OUT/NAME/results.h5`` (per-seed values; config and command as
attributes), figures, and ``OUT/NAME/REPORT.md`` with mean ± 95 % CI
(Student t, :func:`landscape.stats.mean_ci`) of every number.

Protocols:

``seed000``
    The IIIT Vadodara report's protocol.  An Optuna search (TPE, seeded) for SGD
    without SWA and SGD with SWA over batch size, learning rate, momentum,
    early-stopping patience and maximum epochs (and the SWA learning-rate ratio),
    scored on one held-out fold of the training set; then ``folds``-fold
    cross-validation of each best config; then a fit on the whole training set
    scored on train and test.  *Early stopping*: each fit evaluates the
    validation fold after every epoch; the stopping epoch is the best epoch
    before ``patience`` epochs without improvement (Keras' ``restore_best_weights``
    semantics), monitored on the iterate for SGD and on the running SWA model
    (BN statistics recomputed) for SWA.  Because the SGD schedule is constant and
    the SWA schedule depends only on ``swa_start``, a run truncated at epoch
    ``e`` equals the first ``e`` epochs of a longer run, so reading the history is
    exact.  The final fit trains for the median CV stopping epoch.  With
    ``--data kaggle-digits`` and a ``test.csv``, Kaggle submissions are written.
``seed004``
    The SVHN blog post's protocol: constant lr, no SWA run, every epoch
    recorded, post-hoc average of the checkpoints of epochs ``A..B``; each
    checkpoint's test accuracy is stored in the run file
    (``/measures/checkpoints``) by :func:`evaluate_checkpoints`.
``paper``
    The SWA paper's analyses (:mod:`landscape.paper`): accuracy by budget,
    flatness measures and the train–test shift over seeds, surfaces and random
    rays of the first seed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as _dt
import json
import math
import shlex
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import landscape
from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig, from_dict
from landscape.data import TensorData, kfold_indices, write_submission
from landscape.evaluate import BNMode, Evaluator, resolve_device
from landscape.params import ParamLayout
from landscape.stats import format_ci, mean_ci

EXPERIMENTS_DIR = Path(landscape.__file__).resolve().parents[1] / "experiments"
RESULTS_KIND = "landscape-results"
Log = Callable[[str], None]

_EXPERIMENT_KEYS = {
    "seed000": {"protocol", "seeds", "trials", "folds", "swa_start_frac", "search", "quick"},
    "seed004": {"protocol", "seeds", "quick"},
    "paper": {"protocol", "seeds", "budgets", "grid", "rays", "ray_points", "plane_point",
              "measure_samples", "directions", "tau", "trace_samples", "slq_steps",
              "gap_points", "measure_seeds", "workers", "quick"},
}
_SEARCH_KEYS = {"batch_size", "lr", "momentum", "patience", "epochs", "swa_lr_ratio"}


# =========================================================================== configs
@dataclasses.dataclass
class Experiment:
    """A resolved experiment: the train config, the protocol settings and its origin."""

    name: str
    cfg: TrainConfig
    settings: dict[str, Any]
    path: Path

    @property
    def protocol(self) -> str:
        """The protocol name (``seed000`` or ``seed004``)."""
        return self.settings["protocol"]


def available() -> list[str]:
    """Names of the experiments in :data:`EXPERIMENTS_DIR`."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.toml"))


def load_experiment(name: str, *, quick: bool = False,
                    overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Read ``experiments/NAME.toml`` (or a path to a TOML file).

    Args:
        name: Experiment name or TOML path.
        quick: Apply the ``[experiment.quick]`` overrides.
        overrides: Further TrainConfig overrides (applied last).

    Returns:
        The resolved :class:`Experiment`.

    Raises:
        UserError: For a missing file, unknown keys or a bad protocol.
    """
    path = Path(name) if name.endswith(".toml") else EXPERIMENTS_DIR / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"no experiment {name!r} (looked for {path}); choose one of "
                        f"{available()}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None
    settings = dict(raw.pop("experiment", {}))
    protocol = settings.get("protocol")
    if protocol not in _EXPERIMENT_KEYS:
        raise UserError(f"{path}: [experiment] protocol must be one of "
                        f"{sorted(_EXPERIMENT_KEYS)}, got {protocol!r}")
    unknown = set(settings) - _EXPERIMENT_KEYS[protocol]
    if unknown:
        raise UserError(f"{path}: unknown [experiment] key(s) {sorted(unknown)}; valid: "
                        f"{sorted(_EXPERIMENT_KEYS[protocol])}")
    train_kw = {k.replace("-", "_"): v for k, v in raw.items()}
    quick_kw = settings.pop("quick", {})
    if quick:
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for k, v in quick_kw.items():
            if k in fields:
                train_kw[k] = v
            elif k == "search":
                settings["search"] = {**settings.get("search", {}), **v}
            elif k in _EXPERIMENT_KEYS[protocol]:
                settings[k] = v
            else:
                raise UserError(f"{path}: unknown [experiment.quick] key {k!r}")
    if overrides:
        if overrides.get("data", train_kw.get("data")) != train_kw.get("data"):
            train_kw.pop("model", None)  # the registry's model for the other dataset
        train_kw |= dict(overrides)
    cfg = from_dict(train_kw, TrainConfig)
    if protocol == "seed000":
        bad = set(settings.get("search", {})) - _SEARCH_KEYS
        if bad:
            raise UserError(f"{path}: unknown [experiment.search] key(s) {sorted(bad)}")
    return Experiment(path.stem, cfg, settings, path)


# =========================================================================== fitting
@dataclasses.dataclass
class Fit:
    """One training run on given tensors: per-epoch history and its final solution."""

    history: dict[str, np.ndarray]
    weights: torch.Tensor
    buffers: torch.Tensor
    metrics: dict[str, float]
    model: torch.nn.Module


def fit(cfg: TrainConfig, data: TensorData, run: str = "sgd") -> Fit:
    """Train one run (``sgd`` or ``swa``) of ``cfg`` on ``data`` (no run file).

    The validation data of a fold goes in ``data.x_test``; the per-epoch history
    then holds validation metrics.  For ``swa`` the solution is the SWA average
    with BN statistics recomputed, else the last iterate.

    Args:
        cfg: Config (its ``data`` fields are ignored).
        data: Train and test (or validation) tensors.
        run: ``sgd`` or ``swa``.

    Returns:
        The :class:`Fit`.

    Raises:
        UserError: If the run diverges or averaged nothing.
    """
    from landscape import train as _train

    device = resolve_device(cfg.device)
    with tempfile.TemporaryDirectory(prefix="landscape-fit-") as d:
        model, swa_model, st, _ = _train.train_run(cfg, run, data, device, Path(d),
                                                    checkpoint=False)
    model0 = _train.make_model(cfg, data)
    layout, buf = ParamLayout.from_module(model0), ParamLayout.buffers_of(model0)
    if swa_model is not None:
        if int(swa_model.n_averaged) == 0:
            raise UserError("the SWA run averaged no model; lower swa_start")
        w = layout.read(swa_model.module)
        b = _train.bn_buffers(model0, w, data, device)
    else:
        w, b = layout.read(model), buf.read(model, buffers=True)
    metrics = _train.solution_metrics(model0, data, w, b, device)
    hist = {k: np.asarray(v, dtype=np.float64) for k, v in st.history.items()}
    return Fit(hist, w, b, metrics, model0)


def early_stop(acc: Sequence[float] | np.ndarray, patience: int) -> tuple[int, float]:
    """Stopping epoch and its accuracy for early stopping with ``patience``.

    Epochs with NaN accuracy (e.g. before SWA averages) are skipped.  Training
    stops once ``patience`` evaluated epochs pass without a strictly better
    accuracy; the best epoch's model is kept.

    Args:
        acc: Validation accuracy after each completed epoch (index 0 = epoch 1).
        patience: Epochs without improvement before stopping (>= 1).

    Returns:
        ``(epoch, accuracy)`` of the kept model, epochs counted from 1.

    Raises:
        UserError: If no epoch has a finite accuracy.

    Example:
        >>> early_stop([0.5, 0.7, 0.6, 0.65, 0.9], patience=2)
        (2, 0.7)
        >>> early_stop([float("nan"), 0.5, 0.6], patience=2)
        (3, 0.6)
    """
    best_e, best, wait = -1, -math.inf, 0
    for i, a in enumerate(np.asarray(acc, dtype=np.float64)):
        if not np.isfinite(a):
            continue
        if a > best:
            best_e, best, wait = i + 1, float(a), 0
        else:
            wait += 1
            if wait >= patience:
                break
    if best_e < 0:
        raise UserError("no epoch was evaluated; set eval_every = 1")
    return best_e, best


def _fold(data: TensorData, train_idx: torch.Tensor, val_idx: torch.Tensor) -> TensorData:
    """A fold of the training split: train on ``train_idx``, validate on ``val_idx``."""
    return dataclasses.replace(
        data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx],
        x_test=data.x_train[val_idx], y_test=data.y_train[val_idx], x_predict=None,
        meta={**data.meta, "fold_of": data.name})


# =========================================================================== seed000
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
         trials: int, frac: float, seed: int = 0) -> tuple[dict[str, Any], float]:
    """Optuna search for ``method`` on one held-out fold (1/5) of the training set.

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
    fold = _fold(data, tr, va)

    def objective(trial: Any) -> float:
        p = _suggest(trial, space, method)
        try:
            f = fit(_method_cfg(base, method, p, frac), fold, method)
        except UserError:  # diverged: the worst score, the search goes on
            return 0.0
        return early_stop(_monitor(f.history, method), p["patience"])[1]

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
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
                runs_dir: Path | None = None) -> dict[str, Any]:
    """Tune once (seed 0), then per seed: k-fold CV of each best config and a final fit.

    Returns:
        ``{"metrics": {method: {metric: list}}, "extra": {...}}``.
    """
    from landscape.train import load_data

    s = exp.settings
    space, frac = s["search"], float(s.get("swa_start_frac", 0.5))
    data0 = load_data(exp.cfg.replace(seed=seeds[0]))
    best: dict[str, dict[str, Any]] = {}
    for method in ("sgd", "swa"):
        t0 = time.perf_counter()
        best[method], score = tune(exp.cfg, data0, method, space, trials=int(s["trials"]),
                                   frac=frac, seed=seeds[0])
        log(f"[tune {method}] {s['trials']} trials, best val acc {score:.4f} with "
            f"{_fmt_params(best[method])} ({time.perf_counter() - t0:.0f} s)")
    metrics: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in ("cv_acc", "stop_epoch", "train_acc", "test_acc")}
        for m in ("sgd", "swa")}
    submissions = []
    for seed in seeds:
        t0 = time.perf_counter()
        data = data0 if seed == seeds[0] else load_data(exp.cfg.replace(seed=seed))
        folds = kfold_indices(len(data.y_train), int(s["folds"]), seed=seed)
        for method in ("sgd", "swa"):
            p = best[method]
            cfg = _method_cfg(exp.cfg.replace(seed=seed), method, p, frac)
            stops = [early_stop(_monitor(fit(cfg, _fold(data, tr, va), method).history,
                                         method), p["patience"]) for tr, va in folds]
            e_final = int(np.median([e for e, _ in stops]))
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
    return {"metrics": metrics, "extra": {"best_params": best, "submissions": submissions}}


def _final_cfg(cfg: TrainConfig, method: str, epochs: int) -> TrainConfig:
    """``cfg`` cut to ``epochs`` (the CV stopping epoch); the schedule is unchanged."""
    if method == "sgd":
        return cfg.replace(epochs=epochs)
    return cfg.replace(swa_epochs=max(epochs, cfg.swa_start + 1))


def _fmt_params(p: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in p.items())


# =========================================================================== seed004
def evaluate_checkpoints(path: str | Path, run: str = "sgd",
                         epochs: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Evaluate recorded checkpoints of ``run`` and store them in the run file.

    Each recorded weight vector at a whole completed epoch (within ``epochs``,
    inclusive, if given) is evaluated with its own BN buffers (``bn=keep``)
    through :class:`landscape.evaluate.Evaluator`; the results go to
    ``/measures/checkpoints/{epoch,train_acc,test_acc,train_loss,test_loss}``.

    Returns:
        The stored arrays.

    Raises:
        UserError: If the run has no trajectory or no checkpoint in range.
    """
    from landscape.train import load_run_model

    model, data = load_run_model(path)
    with store.open_run(path) as f:
        if f"trajectories/{run}" not in f:
            raise UserError(f"no trajectory of the {run} run in {path}")
        g = f[f"trajectories/{run}"]
        ep = g["epoch"][()]
        keep = np.isclose(ep, np.round(ep)) & (ep >= 1)
        if epochs is not None:
            keep &= (ep >= epochs[0]) & (ep <= epochs[1])
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            raise UserError(f"no recorded checkpoint of the {run} run in epochs {epochs}")
        W, B = g["weights"][idx], g["buffers"][idx]  # (k, n_params), (k, n_buffers)
        ep = np.round(ep[idx])
    ev = Evaluator(model, data, bn=BNMode.KEEP)
    cols: dict[str, list[float]] = {k: [] for k in ("train_acc", "test_acc", "train_loss",
                                                    "test_loss")}
    for w, b in zip(W, B, strict=True):
        m = ev.evaluate(torch.from_numpy(w), torch.from_numpy(b) if b.size else None)
        for s in ("train", "test"):
            cols[f"{s}_acc"].append(m[s].acc)
            cols[f"{s}_loss"].append(m[s].loss)
    out = {"epoch": ep, **{k: np.asarray(v) for k, v in cols.items()}}
    with store.edit_run(path) as f:
        h = f.require_group("measures/checkpoints")
        for k, v in out.items():
            store.write_array(h, k, v)
        store.set_attrs(h, {"run": run, "bn": "keep", "source": "recorded checkpoints"})
    return out


def run_seed004(exp: Experiment, seeds: Sequence[int], out: Path, log: Log,
                runs_dir: Path | None = None) -> dict[str, Any]:
    """Per seed: train (no SWA run), evaluate every checkpoint, compare with their average.

    Run files (large: every epoch's weights) go to ``runs_dir/seedS.h5``
    (default ``OUT/runs``).

    Returns:
        ``{"metrics": {method: {metric: list}}, "extra": {...}}``.
    """
    from landscape.config import parse_range
    from landscape.train import train

    rng = parse_range(exp.cfg.average_epochs or f"1:{exp.cfg.epochs}")
    metrics: dict[str, dict[str, list[float]]] = {
        m: {"test_acc": [], "train_acc": []} for m in ("last", "checkpoints_mean", "avg")}
    metrics["checkpoints_best"] = {"test_acc": []}
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        path = (runs_dir or out / "runs") / f"seed{seed}.h5"
        train(exp.cfg.replace(seed=seed), path, force=True, progress=False,
              log=lambda _m: None)
        ck = evaluate_checkpoints(path, exp.cfg.average_run, rng)
        with store.open_run(path) as f:
            last = store.read_solution(f, exp.cfg.average_run if exp.cfg.average_run == "sgd"
                                       else "swa_last").attrs
            avg = store.read_solution(f, "avg").attrs
        for m, tr, te in (("last", last["train_acc"], last["test_acc"]),
                          ("checkpoints_mean", ck["train_acc"].mean(), ck["test_acc"].mean()),
                          ("avg", avg["train_acc"], avg["test_acc"])):
            metrics[m]["train_acc"].append(float(tr))
            metrics[m]["test_acc"].append(float(te))
        metrics["checkpoints_best"]["test_acc"].append(float(ck["test_acc"].max()))
        runs.append(str(path))
        log(f"[seed {seed}] checkpoints {rng[0]}..{rng[1]}: mean test acc "
            f"{ck['test_acc'].mean():.4f} (min {ck['test_acc'].min():.4f}, max "
            f"{ck['test_acc'].max():.4f}); averaged model {avg['test_acc']:.4f}; last "
            f"{last['test_acc']:.4f} ({time.perf_counter() - t0:.0f} s)")
    return {"metrics": metrics, "extra": {"runs": runs, "average_epochs": list(rng)}}


def run_paper(exp: Experiment, seeds: Sequence[int], out: Path, log: Log,
              runs_dir: Path | None = None, main_run: Path | None = None,
              progress: bool = False) -> dict[str, Any]:
    """The ``paper`` protocol (:func:`landscape.paper.run_paper`).

    Returns:
        ``{"metrics": {method: {metric: list}}, "extra": {...}}``.
    """
    from landscape import paper

    return paper.run_paper(exp, seeds, out, log, runs_dir=runs_dir or out / "runs",
                           main_run=main_run, progress=progress)


PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "seed000": run_seed000, "seed004": run_seed004, "paper": run_paper}


# =========================================================================== outputs
def write_results(path: Path, exp: Experiment, seeds: Sequence[int], result: Mapping,
                  command: str, seconds: float) -> Path:
    """The results file: ``/metrics/<method>/<metric>`` arrays over seeds, config as attrs.

    Returns:
        ``path``.
    """
    with store.edit_run(path, create=True) as f:
        store.set_attrs(f, {
            "kind": RESULTS_KIND, "experiment": exp.name, "protocol": exp.protocol,
            "command": command, "config": exp.cfg.to_dict(),
            "settings": exp.settings, "seeds": list(seeds), "seconds": float(seconds),
            "landscape_version": landscape.__version__, "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "extra": result.get("extra", {}), "methods": list(result["metrics"])})
        for method, cols in result["metrics"].items():
            g = f.require_group(f"metrics/{method}")
            for k, v in cols.items():
                store.write_array(g, k, np.asarray(v, dtype=np.float64))
    return path


def _ci_cell(v: Sequence[float], pct: bool, digits: int | None = None) -> str:
    return format_ci(v, scale=100.0 if pct else 1.0,
                     digits=digits if digits is not None else 2 if pct else 1)


def comparison(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % CI half-width of the paired difference ``b - a`` over seeds.

    Example:
        >>> round(comparison([0.9, 0.8], [0.95, 0.85])[0], 6)
        0.05
    """
    return mean_ci(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64))


def _verdict(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float],
             what: str) -> str:
    d, h = comparison(a, b)
    if math.isnan(h):
        sign = "higher" if d > 0 else "not higher"
        return (f"With one seed, {name_b}'s {what} is {sign} than {name_a}'s "
                f"({100 * d:+.2f} points); no interval can be given.")
    if d - h > 0:
        return (f"**{name_b} beats {name_a}** on {what}: {100 * d:+.2f} ± {100 * h:.2f} "
                f"points (paired over seeds, 95 % CI excludes 0).")
    if d + h < 0:
        return (f"**{name_b} does not beat {name_a}** on {what}: it is worse by "
                f"{-100 * d:.2f} ± {100 * h:.2f} points (95 % CI excludes 0).")
    return (f"**{name_b} does not beat {name_a}** on {what} beyond noise: "
            f"{100 * d:+.2f} ± {100 * h:.2f} points (95 % CI includes 0).")


def write_report(out: Path, exp: Experiment, seeds: Sequence[int], result: Mapping,
                 command: str, figures: Sequence[Path], seconds: float) -> Path:
    """``OUT/REPORT.md``: command and config first, then tables and figures.

    Returns:
        The report path.
    """
    cfg = exp.cfg
    m = result["metrics"]
    embedded = cfg.data == "mnist1d"
    lines = [f"# {exp.name}: {_TITLES.get(exp.protocol, exp.protocol)}", "",
             "```", command, "```", "",
             f"Config `{exp.path.name}` resolved (TrainConfig overrides + [experiment]):", "",
             "```json", json.dumps({"train": {k: v for k, v in cfg.to_dict().items()
                                              if v is not None},
                                    "experiment": exp.settings}, indent=1), "```", "",
             f"Seeds: {list(seeds)}; wall time {seconds:.0f} s; every number is the mean "
             "over seeds ± the 95 % Student-t half-width.", ""]
    if embedded and exp.protocol == "paper":
        lines += [f"**Data: MNIST-1D** (generated offline, {cfg.num_samples} samples, "
                  f"model `{cfg.model}`); the SWA paper used CIFAR and ImageNet, so "
                  "magnitudes differ from its figures.", ""]
    elif embedded:
        lines += [f"**Data: MNIST-1D** (generated offline, {cfg.num_samples} samples, "
                  f"model `{cfg.model}`), not the seed's dataset "
                  f"({'Kaggle Digit Recognizer' if exp.protocol == 'seed000' else 'SVHN'}); "
                  "pass `--data` and `--data-root` for that.", ""]
    else:
        lines += [f"Data: `{cfg.data}` from `{cfg.data_root}`.", ""]
    all_keys = list(dict.fromkeys(k for cols in m.values() for k in cols))
    lines += ["| method | " + " | ".join(all_keys) + " |",
              "|---|" + "---|" * len(all_keys)]
    for method, cols in m.items():
        cells = [_ci_cell(cols[k], k.endswith("_acc"), 4 if k.endswith("_loss") else None)
                 if k in cols else "" for k in all_keys]
        lines.append(f"| {_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracies in %" + (", stop_epoch in epochs." if "stop_epoch" in all_keys
                                       else "; losses: mean cross-entropy (nats)."), ""]
    lines.append("## Verdict")
    lines.append("")
    if exp.protocol == "seed000":
        for k in ("test_acc", "cv_acc"):
            lines.append("- " + _verdict("SGD", m["sgd"][k], "SWA", m["swa"][k],
                                         k.replace("_", " ")))
        bp = result.get("extra", {}).get("best_params", {})
        lines += ["", "Best hyperparameters (Optuna, seed-0 holdout fold):", ""]
        lines += [f"- {k.upper()}: {_fmt_params(v)}" for k, v in bp.items()]
        subs = result.get("extra", {}).get("submissions", [])
        if subs:
            lines += ["", "Kaggle submissions: " + ", ".join(f"`{s}`" for s in subs)]
    elif exp.protocol == "paper":
        from landscape.paper import report_sections

        for b in [k for k in m if k.startswith("swa")]:
            lines.append("- " + _verdict("SGD", m["sgd"]["test_acc"], _LABELS.get(b, b),
                                         m[b]["test_acc"], "test accuracy"))
        lines += ["", *report_sections(result, figures, out)]
    else:
        lines.append("- " + _verdict("the checkpoints' mean", m["checkpoints_mean"]["test_acc"],
                                     "the averaged model", m["avg"]["test_acc"],
                                     "test accuracy"))
        lines.append("- " + _verdict("the last checkpoint", m["last"]["test_acc"],
                                     "the averaged model", m["avg"]["test_acc"],
                                     "test accuracy"))
    if exp.protocol != "paper":
        lines += ["", "## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures
                  if p.suffix == ".png"]
    lines += ["", f"Per-seed values: `results.h5` (`landscape plot {out / 'results.h5'} "
              f"--out {out}`)."]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path


_TITLES = {"seed000": "tiny BN CNN, Optuna + 5-fold CV, SGD with vs without SWA",
           "seed004": "SmallCNN, checkpoints vs their average",
           "paper": "the SWA paper's analyses (Izmailov et al. 2018), SGD vs SWA"}
_LABELS = {"sgd": "SGD (no SWA)", "swa": "SGD + SWA", "last": "last checkpoint",
           "swa_last": "last SGD iterate of the SWA run", "swa_1.25x": "SWA, 1.25 budgets",
           "swa_1.5x": "SWA, 1.5 budgets",
           "checkpoints_mean": "checkpoints' mean", "avg": "averaged model",
           "checkpoints_best": "best checkpoint"}


# =========================================================================== entry
def reproduce(name: str, *, seeds: int | None = None, out: str | Path = "figures",
              runs: str | Path | None = None, quick: bool = False,
              overrides: Mapping[str, Any] | None = None,
              command: str | None = None, log: Log = print,
              main_run: str | Path | None = None, progress: bool = False) -> Path:
    """Run an experiment over seeds and write results, figures and ``REPORT.md``.

    Args:
        name: Experiment name (``experiments/NAME.toml``) or a TOML path.
        seeds: Number of seeds (``0..seeds-1``); default from the config.
        out: Parent folder; outputs go to ``OUT/NAME/``.
        runs: Folder for per-seed run files (default ``runs/NAME``, git-ignored,
            so ``figures/`` holds only small files).
        quick: Use the config's ``[experiment.quick]`` overrides.
        overrides: TrainConfig overrides (e.g. ``data``, ``data_root``).
        command: The command line to record (default: reconstructed).
        log: One line per stage and seed.
        main_run: ``paper`` only: the first seed's run file (``landscape demo``
            uses ``runs/demo.h5``).
        progress: Progress bars on long stages (``paper`` with one worker).

    Returns:
        The report path.

    Raises:
        UserError: For a bad config or seeds < 1.
    """
    exp = load_experiment(name, quick=quick, overrides=overrides)
    n = int(seeds if seeds is not None else exp.settings.get("seeds", 5))
    if n < 1:
        raise UserError(f"--seeds must be >= 1, got {n}")
    seed_list = list(range(n))
    if command is None:
        command = shlex.join(["landscape", "reproduce", name, "--seeds", str(n), "--out",
                              str(out)] + (["--quick"] if quick else []))
    dest = Path(out) / exp.name
    dest.mkdir(parents=True, exist_ok=True)
    if exp.cfg.threads:
        torch.set_num_threads(exp.cfg.threads)
    log(f"[{exp.name}] protocol {exp.protocol}, {n} seed(s), data {exp.cfg.data}, "
        f"model {exp.cfg.model or '(default)'} -> {dest}")
    t0 = time.perf_counter()
    runs_dir = Path(runs) if runs is not None else Path("runs") / exp.name
    kw = ({"main_run": Path(main_run) if main_run else None, "progress": progress}
          if exp.protocol == "paper" else {})
    result = PROTOCOLS[exp.protocol](exp, seed_list, dest, log, runs_dir=runs_dir, **kw)
    seconds = time.perf_counter() - t0
    res = write_results(dest / "results.h5", exp, seed_list, result, command, seconds)
    figures = _figures(exp, res, result, dest)
    report = write_report(dest, exp, seed_list, result, command, figures, seconds)
    log(f"[{exp.name}] done in {seconds:.0f} s: {report}")
    return report


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    from landscape import plot

    if exp.protocol == "paper":
        from landscape.paper import paper_figures

        return paper_figures(res, result, dest)
    figs = []
    metrics = ["cv_acc", "train_acc", "test_acc"] if exp.protocol == "seed000" else [
        "test_acc"]
    name = "swa_vs_sgd" if exp.protocol == "seed000" else "averaging"
    figs += plot.save_figure(plot.plot_swa_vs_sgd(res, metrics=metrics)[0], dest / name)
    for run in result.get("extra", {}).get("runs", [])[:1]:
        with contextlib.suppress(UserError):
            figs += plot.save_figure(plot.plot_checkpoints(run)[0], dest / "checkpoints")
            figs += plot.save_figure(plot.plot_history(run)[0], dest / "history")
    return figs
