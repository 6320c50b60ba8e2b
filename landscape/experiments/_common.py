r"""Shared machinery of the experiments: configs, fitting, the protocol registry, reports.

An experiment is ``experiments/NAME.toml`` at the top of the repository (shipped
inside the wheel) or any TOML file: top-level keys override
:class:`landscape.config.TrainConfig`, and an ``[experiment]`` table names the
``protocol`` and its settings (``seeds``, and a ``[experiment.quick]`` table of
overrides for a smoke test).  :func:`reproduce` runs it over seeds, writes one
results file ``OUT/NAME/results.h5`` (per-seed values; config and command as
attributes), figures, and ``OUT/NAME/REPORT.md`` with mean ± 95 % CI
(Student t, :func:`landscape.stats.mean_ci`) of every number.

Each protocol is a module of this package that registers a :class:`Protocol`:
how to run it over seeds, its figures and the sections of its report.
"""

from __future__ import annotations

import dataclasses
import importlib
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

from landscape import store
from landscape._errors import UserError
from landscape.config import CONFIGS_DIR, TrainConfig, from_dict, training_data
from landscape.data import TensorData
from landscape.evaluate import resolve_device
from landscape.experiments._settings import Settings
from landscape.models import default_model
from landscape.params import ParamLayout
from landscape.stats import format_ci, mean_ci

Log = Callable[[str], None]


# =========================================================================== protocols
@dataclasses.dataclass(frozen=True)
class Protocol:
    """An experiment protocol.

    Attributes:
        name: The ``[experiment] protocol`` value.
        title: The report's title after the experiment name.
        settings: Its :class:`~landscape.experiments._settings.Settings` dataclass:
            the valid ``[experiment]`` keys (:attr:`keys`), types and defaults.
        run: ``run(exp, seeds, out, log, runs_dir=..., main_run=..., progress=...)``
            returning ``{"metrics": {method: {metric: per-seed list}}, "extra": ...}``.
        figures: ``figures(exp, results_path, result, dest) -> [paths]``.
        report: ``report(exp, result, figures, out) -> [markdown lines]``: the
            verdicts and sections under the report's ``## Verdict`` heading.
    """

    name: str
    title: str
    settings: type[Settings]
    run: Callable[..., dict[str, Any]]
    figures: Callable[..., list[Path]]
    report: Callable[..., list[str]]

    @property
    def keys(self) -> frozenset[str]:
        """Valid ``[experiment]`` keys: the settings' fields and the runner's."""
        return self.settings.keys()


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(p: Protocol) -> Protocol:
    """Add a protocol to :data:`PROTOCOLS`.

    Returns:
        ``p``.
    """
    PROTOCOLS[p.name] = p
    return p


def _protocols() -> dict[str, Protocol]:
    importlib.import_module("landscape.experiments")  # the package imports every protocol
    return PROTOCOLS


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
        """The protocol name."""
        return self.settings["protocol"]


def available() -> list[str]:
    """Names of the experiments shipped in :data:`CONFIGS_DIR`.

    Returns:
        The names.
    """
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.toml"))


def load_experiment(name: str, *, quick: bool = False,
                    overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Read the shipped config ``NAME`` (or a path to a TOML file).

    Args:
        name: Experiment name or TOML path.
        quick: Apply the ``[experiment.quick]`` overrides.
        overrides: Further TrainConfig overrides (applied last).

    Returns:
        The resolved :class:`Experiment`.

    Raises:
        UserError: For a missing file, unknown keys or a bad protocol.
    """
    path = Path(name) if name.endswith(".toml") else CONFIGS_DIR / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"no experiment {name!r} (looked for {path}); choose one of "
                        f"{available()}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None
    settings = dict(raw.pop("experiment", {}))
    protocol = settings.get("protocol")
    protocols = _protocols()
    if protocol not in protocols:
        raise UserError(f"{path}: [experiment] protocol must be one of "
                        f"{sorted(protocols)}, got {protocol!r}")
    keys = protocols[protocol].keys
    unknown = set(settings) - keys
    if unknown:
        raise UserError(f"{path}: unknown [experiment] key(s) {sorted(unknown)}; valid: "
                        f"{sorted(keys)}")
    train_kw = {k.replace("-", "_"): v for k, v in raw.items()}
    quick_kw = settings.pop("quick", {})
    if quick:
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for k, v in quick_kw.items():
            if k in fields:
                train_kw[k] = v
            elif k == "search":
                settings["search"] = {**settings.get("search", {}), **v}
            elif k in keys:
                settings[k] = v
            else:
                raise UserError(f"{path}: unknown [experiment.quick] key {k!r}")
    if overrides:
        if overrides.get("data", train_kw.get("data")) != train_kw.get("data"):
            train_kw.pop("model", None)  # the registry's model for the other dataset
        train_kw |= dict(overrides)
    cfg = from_dict(train_kw, TrainConfig)
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
        data: Train and test (or validation) tensors; the config's label noise is
            applied to their train labels.
        run: ``sgd`` or ``swa``.

    Returns:
        The :class:`Fit`.

    Raises:
        UserError: If the run diverges or averaged nothing.
    """
    from landscape import train as _train

    device = resolve_device(cfg.device)
    data, _ = training_data(cfg, data)  # the config's label noise, if any
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


@dataclasses.dataclass(frozen=True)
class SeedPair:
    """Pair ``i`` of the pair protocols (``connect``, ``align``): training seeds
    ``2i`` and ``2i + 1``, both on the data of seed ``2i``.

    Attributes:
        seeds: ``(2i, 2i + 1)``.
        data: The one data set both runs train on (``pair`` and ``data_of_seed`` in
            its meta).
    """

    seeds: tuple[int, int]
    data: TensorData

    @classmethod
    def of(cls, base: TrainConfig, i: int) -> SeedPair:
        """Pair ``i`` of ``base``'s data.

        Returns:
            The pair.
        """
        from landscape.config import load_data

        seeds = (2 * i, 2 * i + 1)
        data = load_data(base.replace(seed=seeds[0]))
        return cls(seeds, dataclasses.replace(data, meta={**data.meta, "pair": i,
                                                          "data_of_seed": seeds[0]}))

    def config(self, cfg: TrainConfig, seed: int) -> TrainConfig:
        """``cfg`` of the run of ``seed``; the odd seed's names the even seed's data
        (``data_seed``), so its run file rebuilds the data it trained on.

        Returns:
            The config.
        """
        first = self.seeds[0]
        return cfg.replace(seed=seed, data_seed=None if seed == first else first)


def fold(data: TensorData, train_idx: torch.Tensor, val_idx: torch.Tensor) -> TensorData:
    """A fold of the training split: train on ``train_idx``, validate on ``val_idx``."""
    return dataclasses.replace(
        data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx],
        x_test=data.x_train[val_idx], y_test=data.y_train[val_idx], x_predict=None,
        meta={**data.meta, "fold_of": data.name})


# =========================================================================== reports
def ci_cell(v: Sequence[float], pct: bool, digits: int | None = None) -> str:
    return format_ci(v, scale=100.0 if pct else 1.0,
                     digits=digits if digits is not None else 2 if pct else 3)


def fmt_params(p: Mapping[str, Any]) -> str:
    """``k=v, ...`` of hyperparameters (floats to 3 significant digits).

    Returns:
        The text.
    """
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in p.items())


#: Table labels of the methods of every protocol.
LABELS = {"sgd": "SGD (no SWA)", "swa": "SGD + SWA", "last": "last checkpoint",
          "small_batch": "small batch", "large_batch": "large batch",
          "relu_mlp": "ReLU MLP (reparametrization control)",
          "swa_last": "last SGD iterate of the SWA run", "swa_1.25x": "SWA, 1.25 budgets",
          "swa_1.5x": "SWA, 1.5 budgets",
          "checkpoints_mean": "checkpoints' mean", "avg": "averaged model",
          "checkpoints_best": "best checkpoint",
          "swag": "SWAG model average", "fge": "FGE ensemble from SGD",
          "fge_swa": "SWA of the FGE snapshots",
          "sgd_ensemble": "two-run SGD ensemble", "line": "line (raw)",
          "curve": "trained curve", "aligned": "line after weight matching",
          "repair": "line after weight matching + REPAIR"}


#: A protocol figure, declared once: ``FIGURES = {stem: (caption, draw)}`` (caption
#: ``None``: shown without one) with
#: ``draw(plot, *inputs) -> (fig, ax)``, ``plot`` being :mod:`landscape.plot` (imported
#: only to draw, so that importing a protocol does not import matplotlib).
FigureSpec = tuple[str | None, Callable[..., Any]]


def draw_figures(figures: Mapping[str, FigureSpec], dest: Path, *inputs: Any) -> list[Path]:
    """Draw and save every figure of ``figures`` as ``dest/<stem>.png``, in order.

    A figure's ``draw(plot, *inputs)`` returns ``(fig, ax)``, or ``None`` where the
    inputs lack what it shows (it is then left out).

    Returns:
        The paths written.
    """
    from landscape import plot

    out: list[Path] = []
    for stem, (_, draw) in figures.items():
        drawn = draw(plot, *inputs)
        if drawn is not None:  # a figure the results do not have (e.g. no history)
            out += plot.save_figure(drawn[0], dest / stem)
    return out


def captions(figures: Mapping[str, FigureSpec]) -> dict[str, str]:
    """``{stem: caption}`` of declared figures.

    Returns:
        The captions.
    """
    return {stem: caption for stem, (caption, _) in figures.items() if caption is not None}


def figure_lines(figures: Sequence[Path], out: Path,
                 captions: Mapping[str, str] | None = None) -> list[str]:
    """Markdown image lines of the PNG figures (with captions where given).

    Returns:
        The lines.
    """
    lines: list[str] = []
    for p in figures:
        if p.suffix != ".png":
            continue
        lines.append(f"![{p.stem}]({p.relative_to(out).as_posix()})")
        if captions is not None:
            lines += ["", captions.get(p.stem, ""), ""]
    return lines


def write_results(path: Path, exp: Experiment, seeds: Sequence[int], result: Mapping,
                  command: str, seconds: float) -> Path:
    """The results file: ``/metrics/<method>/<metric>`` arrays over seeds, config as attrs.

    Returns:
        ``path``.
    """
    return store.write_results(path, {
        "experiment": exp.name, "protocol": exp.protocol, "command": command,
        "config": exp.cfg.to_dict(), "settings": exp.settings, "seeds": list(seeds),
        "seconds": float(seconds), "extra": result.get("extra", {})}, result["metrics"])


#: What each file-backed data set is, for the report's data line.
REAL_DATA = {
    "mnist": ("MNIST, real handwritten digits (the canonical IDX files)", 60000, 10000),
    "kaggle-digits": ("Kaggle Digit Recognizer, real handwritten digits (train.csv, "
                      "test.csv)", None, None),
    "svhn": ("SVHN, real house-number photos (train_32x32.mat, test_32x32.mat)",
             73257, 26032),
    "cifar10": ("CIFAR-10 (the python batches)", 50000, 10000),
    "cifar100": ("CIFAR-100 (the python batches)", 50000, 10000),
}


def _real_data_line(cfg: TrainConfig) -> str:
    """``Data: ...``: the data set's name, where it was read and the sizes used."""
    what, n_train, n_test = REAL_DATA.get(cfg.data, (f"`{cfg.data}`", None, None))

    def size(n: int | None, full: int | None, kind: str) -> str:
        if n is None:
            return f"all {full:,} {kind}" if full else f"all {kind}"
        return f"{n:,} {kind} (a seeded subset{f' of {full:,}' if full else ''})"

    return (f"**Data: {what}**, read from `{cfg.data_root}`: "
            f"{size(cfg.train_samples, n_train, 'training images')}, "
            f"{size(cfg.test_samples, n_test, 'test images')}; model "
            f"`{cfg.model or default_model(cfg.data)}`.")


def write_report(out: Path, exp: Experiment, seeds: Sequence[int], result: Mapping,
                 command: str, figures: Sequence[Path], seconds: float) -> Path:
    """``OUT/REPORT.md``: command and config first, then tables, verdicts and figures.

    Returns:
        The report path.
    """
    path = out / "REPORT.md"
    path.write_text(report_text(out, exp, seeds, result, command, figures, seconds))
    return path


def report_text(out: Path, exp: Experiment, seeds: Sequence[int], result: Mapping,
                command: str, figures: Sequence[Path], seconds: float) -> str:
    """The Markdown of :func:`write_report` (a function of the results file's contents).

    Returns:
        The text.
    """
    cfg = exp.cfg
    protocol = _protocols()[exp.protocol]
    m = result["metrics"]
    embedded = cfg.data == "mnist1d"
    test_n = cfg.test_samples or round(0.2 * cfg.num_samples)
    sizes = (f"{cfg.num_samples} sequences generated: {cfg.train_samples or 'all'} "
             f"train ({'a seeded subset of ' if cfg.train_samples else ''}"
             f"{round(0.8 * cfg.num_samples)}), {test_n} test")
    lines = [f"# {exp.name}: {protocol.title}", "",
             "```", command, "```", "",
             f"Config `{exp.path.name}` resolved (TrainConfig overrides + [experiment]):", "",
             "```json", json.dumps({"train": {k: v for k, v in cfg.to_dict().items()
                                              if v is not None},
                                    "experiment": exp.settings}, indent=1), "```", "",
             f"Seeds: {list(seeds)}; wall time {seconds:.0f} s; every number is the mean "
             "over seeds ± the 95 % Student-t half-width.", ""]
    extra = result.get("extra") or {}
    if extra.get("seed_seconds"):  # the seeds' own times survive a resume; wall time not
        per = extra["seed_seconds"]
        lines += [f"The seeds' work took {sum(per):.0f} s of worker time "
                  f"({extra.get('workers', 1)} worker process(es); {min(per):.0f}–"
                  f"{max(per):.0f} s per seed, summed over every invocation that worked "
                  "on it, so a resumed run counts its earlier work; the wall time above "
                  "is the last invocation's).", ""]
    note = extra.get("data_note")
    if note:
        lines += [note, ""]
    elif embedded and exp.protocol in ("seed000", "seed004"):
        lines += [f"**Data: MNIST-1D** (generated offline, {sizes}, "
                  f"model `{cfg.model}`), not the seed's dataset "
                  f"({'Kaggle Digit Recognizer' if exp.protocol == 'seed000' else 'SVHN'}); "
                  "pass `--data` and `--data-root` for that.", ""]
    elif embedded and exp.protocol == "paper":
        lines += [f"**Data: MNIST-1D** (generated offline, {sizes}, "
                  f"model `{cfg.model}`); the SWA paper used CIFAR and ImageNet, so "
                  "magnitudes differ from its figures.", ""]
    elif embedded:
        lines += [f"**Data: MNIST-1D** (generated offline, {sizes}, "
                  f"model `{cfg.model}`).", ""]
    else:
        lines += [_real_data_line(cfg), ""]
    all_keys = list(dict.fromkeys(k for cols in m.values() for k in cols))
    lines += ["| method | " + " | ".join(all_keys) + " |",
              "|---|" + "---|" * len(all_keys)]
    for method, cols in m.items():
        cells = [ci_cell(cols[k], k.endswith(("_acc", "_err_barrier")),
                         4 if k.endswith(("_loss", "_nll", "_ece", "_loss_barrier")) else
                         1 if k == "stop_epoch" else None) if k in cols else ""
                 for k in all_keys]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracies in %" + (", stop_epoch in epochs." if "stop_epoch" in all_keys
                                       else "; losses: mean cross-entropy (nats)."), ""]
    lines += ["## Verdict", ""]
    lines += protocol.report(exp, result, figures, out)
    lines += ["", f"Per-seed values: `results.h5` (`landscape plot {out / 'results.h5'} "
              f"--out-dir {out}`)."]
    return "\n".join(lines) + "\n"


def _series(results: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every per-seed series of a results file: metrics, measures and the gap."""
    out = {f"{m} {k}": np.asarray(v, float) for m, cols in results["metrics"].items()
           for k, v in cols.items()}
    extra = results["attrs"].get("extra") or {}
    for sol, cols in (extra.get("measures") or {}).items():
        out |= {f"{sol} {k}": np.asarray(v, float) for k, v in cols.items()}
    out |= {k: np.asarray(v, float) for k, v in (extra.get("gap") or {}).items()}
    return out


#: Config keys that say where and how a run executed, not what it computed.
_WHERE_IT_RAN = frozenset({"data_root", "download", "device", "threads"})


#: Relative difference below which two runs' numbers count as equal up to float
#: rounding (float32 sums over the same data in another order differ at ~1e-7).
ROUNDING = 1e-5


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / max(|a|, |b|)`` over the finite entries (0 where both are 0).

    Returns:
        The difference (``inf`` where a NaN or an infinity is in one only).
    """
    ok = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(a[~ok], b[~ok], equal_nan=True):  # NaN or inf in one only
        return math.inf
    x, y = a[ok], b[ok]
    scale = np.maximum(np.abs(x), np.abs(y))
    nz = scale > 0
    return float((np.abs(x - y)[nz] / scale[nz]).max(initial=0.0))


def compare_results(earlier: Mapping[str, Any] | None, new: Mapping[str, Any], *,
                    what: str = "the committed results") -> str:
    """One line: are ``new``'s per-seed numbers those of ``earlier``, and if not by how much.

    The difference of each series is measured in units of ``earlier``'s 95 %
    Student-t half-width over seeds, so it says whether a rerun elsewhere moved a
    number by a fraction of its own uncertainty or by more.

    Args:
        earlier: :func:`landscape.store.read_results` of the earlier file, or None.
        new: The same of the new one.
        what: How to name the earlier file.

    Returns:
        The line.
    """
    if earlier is None:
        return f"no {what} to compare with"
    ca = (earlier.get("attrs") or {}).get("config") or {}
    cb = (new.get("attrs") or {}).get("config") or {}
    if ca and cb:  # keys added to TrainConfig since a file was written: their defaults
        ca, cb = TrainConfig.with_defaults(ca), TrainConfig.with_defaults(cb)
    keys = sorted(k for k in set(ca) | set(cb)
                  if k not in _WHERE_IT_RAN and ca.get(k) != cb.get(k))
    if ca and cb and keys:
        return (f"not compared with {what}: made with another config (differs in "
                f"{', '.join(keys)})")
    a, b = _series(earlier), _series(new)
    n = min((len(v) for v in (*a.values(), *b.values())), default=0)
    seeds = ""
    if any(len(v) != n for v in (*a.values(), *b.values())):
        # Seeds 0..N-1 are the same runs whatever the count: compare the common ones.
        a = {k: v[:n] for k, v in a.items()}
        b = {k: v[:n] for k, v in b.items()}
        seeds = f" (the first {n} seeds, which both have)"
    common = sorted(set(a) & set(b))
    if not common:
        return f"nothing in common with {what} to compare"
    if all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k], equal_nan=True)
           for k in common):
        return f"identical to {what}{seeds} ({len(common)} per-seed series)"
    if all(a[k].shape == b[k].shape for k in common):
        rel = {k: _relative_difference(a[k], b[k]) for k in common}
        key = max(rel, key=rel.__getitem__)
        if rel[key] <= ROUNDING:
            return (f"matches {what}{seeds} to float rounding (largest relative "
                    f"difference {rel[key]:.1e}, {key}; {len(common)} per-seed series)")
    worst, key = -1.0, common[0]
    for k in common:
        if a[k].shape != b[k].shape:
            worst, key = math.inf, k
            break
        fa, fb = a[k][np.isfinite(a[k])], b[k][np.isfinite(b[k])]
        if not fa.size or not fb.size:
            continue
        ma, h = mean_ci(fa)
        d = abs(float(fb.mean()) - ma)
        r = d / h if h > 0 else (0.0 if d == 0 else math.inf)
        if r > worst:
            worst, key = r, k
    fa, fb = a[key][np.isfinite(a[key])], b[key][np.isfinite(b[key])]
    return (f"differs from {what}{seeds}: the largest difference is {worst:.2g} x its 95 % "
            f"half-width over seeds ({key}: {fb.mean():.5g} now vs {fa.mean():.5g})")


# =========================================================================== entry
def reproduce(name: str, *, seeds: int | None = None, out_dir: str | Path | None = None,
              runs_dir: str | Path | None = None, quick: bool = False,
              overrides: Mapping[str, Any] | None = None,
              command: str | None = None, log: Log = print,
              main_run: str | Path | None = None, progress: bool = False) -> Path:
    """Run an experiment over seeds and write results, figures and ``REPORT.md``.

    Args:
        name: Shipped experiment name (see :func:`available`) or a TOML path.
        seeds: Number of seeds (``0..seeds-1``); default from the config.
        out_dir: Folder of the results file, figures and report (default
            ``figures/NAME``).
        runs_dir: Folder for per-seed run files (default ``runs/NAME``,
            git-ignored, so ``figures/`` holds only small files).
        quick: Use the config's ``[experiment.quick]`` overrides.
        overrides: TrainConfig overrides (e.g. ``data``, ``data_root``).
        command: The command line to record (default: reconstructed).
        log: One line per stage and seed.
        main_run: The first seed's run file, for protocols that keep one
            (``landscape demo`` uses ``runs/demo.h5``).
        progress: Progress bars on long stages (with one worker).

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
        command = shlex.join(["landscape", "reproduce", name, "--seeds", str(n)]
                             + (["--out-dir", str(out_dir)] if out_dir else [])
                             + (["--quick"] if quick else []))
    dest = Path(out_dir) if out_dir is not None else Path("figures") / exp.name
    dest.mkdir(parents=True, exist_ok=True)
    if exp.cfg.threads:
        torch.set_num_threads(exp.cfg.threads)
    log(f"[{exp.name}] protocol {exp.protocol}, {n} seed(s), data {exp.cfg.data}, "
        f"model {exp.cfg.model or '(default)'} -> {dest}")
    t0 = time.perf_counter()
    runs_dir = Path(runs_dir) if runs_dir is not None else Path("runs") / exp.name
    protocol = _protocols()[exp.protocol]
    result = protocol.run(exp, seed_list, dest, log, runs_dir=runs_dir,
                          main_run=Path(main_run) if main_run else None, progress=progress)
    # A protocol that resumes finished stages reports the sum of their times.
    seconds = float((result.get("extra") or {}).get("seconds")
                    or time.perf_counter() - t0)
    res = write_results(dest / "results.h5", exp, seed_list, result, command, seconds)
    figures = protocol.figures(exp, res, result, dest)
    report = write_report(dest, exp, seed_list, result, command, figures, seconds)
    log(f"[{exp.name}] done in {seconds:.0f} s: {report}")
    return report
