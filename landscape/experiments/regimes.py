r"""Protocol ``regimes``: where does SWA beat SGD, and where not?

``landscape reproduce regimes`` (config ``experiments/regimes.toml``) trains SGD and
SWA at matched budgets (same initialisation, same epochs; the SWA paper's
schedules, :mod:`landscape.train`) in *cells* of a design over the factors the
literature ties to SWA's gains (Izmailov et al. 2018; label noise: Guo et al.
2023, "Stochastic Weight Averaging Revisited"):

* each ``[experiment.factors]`` entry is one factor, a list of levels; a level
  is a table of :class:`landscape.config.TrainConfig` overrides of the base
  config (the top-level keys) with an optional display ``label``;
* one factor at a time is varied around the base point (the cell of the base
  config is shared by every factor), plus the two-factor ``map`` (every pair
  of levels of two named factors).

Per cell and seed (one run file each, ``RUNS/<cell hash>/seedS.h5``): the test
accuracy of the SGD solution and of the SWA average, and the median train-loss
width of each along random unit directions (the ``width`` measure,
:mod:`landscape.sharpness.width`).  Per cell: the accuracy difference SWA − SGD
paired over seeds and the width ratio SWA/SGD, each a mean over seeds with a
95 % Student-t interval.  The report's paragraph is generated from these
intervals; the cell with the largest significantly positive accuracy
difference ("the regime where SWA helps") is stored in the results file
(``extra.regime``) with the overrides that put the ``paper`` experiment there,
and written as ``paper_at_regime.toml`` beside the report.

Resumable: a finished (cell, seed) keeps its summary in its run file (group
``/regimes``) and is not recomputed; a killed training run resumes from its
last epoch.  Units run in ``[experiment] workers`` processes (one torch thread
each), largest first; a progress line follows every finished cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import store
from landscape._errors import UserError
from landscape.config import CONFIGS_DIR, TrainConfig, from_dict, load_data
from landscape.experiments._common import (
    Experiment,
    FigureSpec,
    Log,
    Protocol,
    captions,
    draw_figures,
    figure_lines,
    register_protocol,
)
from landscape.experiments._runner import Workers, worker_count
from landscape.experiments._settings import Settings, measure_default
from landscape.stats import call, finite_mean_ci, format_pm

#: The per-seed metrics of every cell (``/metrics/<cell>/<metric>``).
METRICS = ("sgd_test_acc", "swa_test_acc", "diff_test_acc", "sgd_width", "swa_width",
           "width_ratio")
#: TrainConfig keys that only say how a run is recorded or executed, not what it trains.
_EXECUTION = ("record_every", "record_steps", "eval_every", "threads", "device",
              "data_root", "download", "seed")
#: The run-file group of a finished unit's summary.
SUMMARY_GROUP = "regimes"


@dataclasses.dataclass(frozen=True)
class RegimesSettings(Settings):
    """``[experiment]`` of the ``regimes`` protocol (measure defaults: the registry's).

    Attributes:
        factors: ``{factor: [level table]}``, each level a table of TrainConfig
            overrides with an optional ``label``.
        map: Two factors crossed level by level.
        directions: Directions of the width measure (fewer than its default: one
            width per unit, many units).
        tau: The width's loss rise.
        width_samples: Train samples of the width.
        width_bn: BN statistics along the rays.
        workers: Worker processes (default one per core).
    """

    factors: dict[str, Any] = dataclasses.field(default_factory=dict)
    map: tuple[str, ...] = ()
    directions: int = 8
    tau: float = measure_default("tau")
    width_samples: int = measure_default("samples")
    width_bn: str = "recompute"
    workers: int | None = None


def _settings(s: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as plain data, with at least one factor."""
    factors = s.get("factors", {})
    if not isinstance(factors, Mapping) or not factors:
        raise UserError("[experiment.factors] must name at least one factor, e.g. "
                        "label_noise = [{label = \"0 %\"}, {label_noise = 0.2}]")
    st = RegimesSettings.parse(s).to_dict()
    return st | {"factors": {str(k): list(v) for k, v in factors.items()}}


# =========================================================================== design
def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def cell_key(overrides: Mapping[str, Any]) -> str:
    """The name of a cell: its overrides of the base config (``base`` for none).

    Example:
        >>> cell_key({"label_noise": 0.2, "model_width": 6})
        'label_noise=0.2, model_width=6'
        >>> cell_key({})
        'base'
    """
    return ", ".join(f"{k}={_fmt(v)}" for k, v in overrides.items()) or "base"


def factor_title(name: str) -> str:
    """A factor's display name (``label_noise`` → ``label noise``)."""
    return name.replace("_", " ")


def design(exp: Experiment) -> dict[str, Any]:
    """The cells of the experiment: one-factor sweeps around the base plus the map.

    Cells with the same resolved config are one cell (the base point is shared
    by every factor, the map's edges by the sweeps).

    Returns:
        ``{"cells": {key: {"overrides", "labels", "config"}}, "factors":
        {factor: [{"label", "cell"}]}, "map": {"rows", "cols", "row_labels",
        "col_labels", "cells": [[key]]} or None, "base": config dict}``.

    Raises:
        UserError: For a level that is not a table of valid overrides, or a map
            naming unknown factors.
    """
    st = _settings(exp.settings)
    base = exp.cfg
    bd = base.to_dict()
    cells: dict[str, dict[str, Any]] = {}

    def cell(levels: Sequence[tuple[str, Mapping[str, Any]]], label: str) -> str:
        over: dict[str, Any] = {}
        for where, lv in levels:
            if not isinstance(lv, Mapping):
                raise UserError(f"[experiment.factors] {where} must be a table of config "
                                f"overrides, e.g. {{label_noise = 0.2}}; got {lv!r}")
            over |= {k.replace("-", "_"): v for k, v in lv.items() if k != "label"}
        try:
            cfg = base.replace(**over)
        except UserError as e:
            raise UserError(f"[experiment.factors] {' × '.join(w for w, _ in levels)}: "
                            f"{e}") from None
        diff = {k: v for k, v in cfg.to_dict().items() if v != bd[k]}
        key = cell_key(diff)
        if "/" in key:
            raise UserError(f"cell {key!r}: a cell's overrides cannot contain '/'")
        c = cells.setdefault(key, {"overrides": diff, "labels": [], "config": cfg.to_dict()})
        if label not in c["labels"]:
            c["labels"].append(label)
        return key

    def label_of(name: str, lv: Any) -> str:
        if isinstance(lv, Mapping) and "label" in lv:
            return str(lv["label"])
        over = {k: v for k, v in lv.items() if k != "label"} if isinstance(lv, Mapping) else {}
        return cell_key(over) if over else "base"

    factors: dict[str, list[dict[str, str]]] = {}
    for name, levels in st["factors"].items():
        if not levels:
            raise UserError(f"[experiment.factors] {name} has no levels")
        factors[name] = [
            {"label": label_of(name, lv),
             "cell": cell([(f"{name}[{i}]", lv)],
                          f"{factor_title(name)}: {label_of(name, lv)}")}
            for i, lv in enumerate(levels)]
    grid = None
    if st["map"]:
        if len(st["map"]) != 2 or any(m not in st["factors"] for m in st["map"]):
            raise UserError(f"[experiment] map must name two factors of "
                            f"[experiment.factors] ({sorted(st['factors'])}), got "
                            f"{st['map']}")
        a, b = st["map"]
        la, lb = st["factors"][a], st["factors"][b]
        grid = {"rows": a, "cols": b,
                "row_labels": [label_of(a, x) for x in la],
                "col_labels": [label_of(b, y) for y in lb],
                "cells": [[cell([(f"{a}[{i}]", x), (f"{b}[{j}]", y)],
                                f"{label_of(a, x)} × {label_of(b, y)}")
                           for j, y in enumerate(lb)] for i, x in enumerate(la)]}
    return {"cells": cells, "factors": factors, "map": grid, "base": bd}


def cell_folder(config: Mapping[str, Any]) -> str:
    """The folder of a cell's run files: a hash of its config (seed excluded).

    The config itself is stored in each run file, never in its name.

    Returns:
        ``cell-<12 hex digits>``.
    """
    c = {k: v for k, v in config.items() if k != "seed"}
    return "cell-" + hashlib.sha1(json.dumps(c, sort_keys=True).encode()).hexdigest()[:12]


# =========================================================================== units
def _unit_params(cfg: TrainConfig, st: Mapping[str, Any]) -> dict[str, Any]:
    return {"config": cfg.to_dict(),
            "width": {k: st[k] for k in ("directions", "tau", "width_samples", "width_bn")}}


def _stored_summary(path: Path, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """A finished unit's stored summary, if it was made with ``params``."""
    if not path.exists():
        return None
    try:
        attrs = store.group_attrs(path, SUMMARY_GROUP, params)
    except store.DamagedFileError:
        return None
    if attrs is None:
        return None
    return {k: attrs[k] for k in (*_UNIT_KEYS, "n_train", "n_test", "seconds")}


_UNIT_KEYS = ("sgd_test_acc", "swa_test_acc", "sgd_train_acc", "swa_train_acc",
              "sgd_width", "swa_width")


def run_unit(cfg: Mapping[str, Any], path: str, st: Mapping[str, Any]) -> dict[str, Any]:
    """Train, measure and summarise one (cell, seed); keep what is already done.

    Args:
        cfg: The unit's TrainConfig as a dict (seed included).
        path: Its run file.
        st: The protocol settings (width measure parameters).

    Returns:
        ``{"sgd_test_acc", "swa_test_acc", ..., "sgd_width", "swa_width", "n_train",
        "n_test", "seconds", "kept"}``.
    """
    from landscape.config import training_data
    from landscape.jobs import measure_solution
    from landscape.sharpness import MeasureConfig
    from landscape.train import make_model, train

    c = from_dict(dict(cfg), TrainConfig)
    run = Path(path)
    params = _unit_params(c, st)
    got = _stored_summary(run, params)
    if got is not None:
        return {**got, "kept": True}
    t0 = time.perf_counter()
    run.parent.mkdir(parents=True, exist_ok=True)
    train(c, run, progress=False, log=lambda _: None)
    data, _ = training_data(c)  # the labels it trained on (label noise applied)
    model = make_model(c, data)
    common = MeasureConfig(samples=st["width_samples"], device=c.device)
    wp = {"directions": st["directions"], "tau": st["tau"], "width_bn": st["width_bn"]}
    width = {sol: float(measure_solution(run, sol, ["width"], common, wp, model=model,
                                         data=data)["width"]["median"])
             for sol in ("sgd", "swa")}
    with store.open_run(run) as f:
        sols = store.solution_attrs(f)
        d = store.data_attrs(f)
    out = {f"{sol}_{k}": float(sols[sol][k]) for sol in ("sgd", "swa")
           for k in ("test_acc", "train_acc")}
    out |= {"sgd_width": width["sgd"], "swa_width": width["swa"],
            "n_train": int(d["n_train"]), "n_test": int(d["n_test"]),
            "seconds": time.perf_counter() - t0}
    store.write_group_attrs(run, SUMMARY_GROUP, {**out, **params})
    return {**out, "kept": False}


def _unit_task(task: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """:func:`run_unit` as a task of :class:`~landscape.experiments._runner.Workers`."""
    return run_unit(task["cfg"], task["path"], task["st"])


def _prepare_data(cfg: dict[str, Any], log: Log) -> int:
    """Generate (and cache) one seed's data, so units never race to write the cache."""
    return len(load_data(from_dict(cfg, TrainConfig)).y_train)


def _step_seconds(cfg: TrainConfig, in_shape: tuple[int, ...], n_classes: int) -> float:
    """Wall time of one SGD step of ``cfg``'s model (for the cost estimate / ETA)."""
    import torch
    from torch.nn import functional as F

    from landscape.models import build_model
    from landscape.train import model_kwargs, resolve_model_name

    torch.manual_seed(0)
    model = build_model(resolve_model_name(cfg), in_shape, n_classes, **model_kwargs(cfg))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(cfg.batch_size, *in_shape)
    y = torch.randint(0, n_classes, (cfg.batch_size,))
    times = []
    for i in range(6):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _cost(cfg: TrainConfig, n_train: int, n_test: int, step: float,
          st: Mapping[str, Any]) -> float:
    """Estimated seconds of a unit: training steps, plus the forward passes of the
    solutions' metrics and of the widths (about 13 per direction; a forward pass
    costs about a third of a step)."""
    steps = math.ceil(n_train / cfg.batch_size)
    evals = 3 * (n_train + n_test) + 2 * st["directions"] * 13 * min(
        st["width_samples"], n_train) * (2 if st["width_bn"] == "recompute" else 1)
    return ((cfg.epochs + cfg.swa_budget) * steps + evals / (3 * cfg.batch_size)) * step


def _duration(s: float) -> str:
    s = max(0.0, s)
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


# =========================================================================== run
def run_regimes(exp: Experiment, seeds: Sequence[int], out: Path, log: Log, *,
                runs_dir: Path, main_run: Path | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Run the ``regimes`` protocol (see the module docstring).

    Args:
        exp: The resolved experiment.
        seeds: Seeds of every cell.
        out: Report folder (``paper_at_regime.toml`` goes there).
        log: One line per finished cell (elapsed time and ETA).
        runs_dir: Folder of the run files (``<cell hash>/seedS.h5``).
        main_run: Unused.
        progress: Unused (units run without progress bars).

    Returns:
        ``{"metrics": {cell: {metric: per-seed list}}, "extra": {...}}``.

    Raises:
        UserError: For a bad design, or the first error of any unit.
    """
    st = _settings(exp.settings)
    lay = design(exp)
    cells = lay["cells"]
    runs_dir.mkdir(parents=True, exist_ok=True)
    workers = worker_count(st["workers"], len(cells) * len(seeds))
    with Workers(workers, log, threads=int(exp.cfg.threads or 1)) as pool:
        return _run(exp, st, lay, seeds, out, log, runs_dir, pool)


def _run(exp: Experiment, st: dict[str, Any], lay: dict[str, Any], seeds: Sequence[int],
         out: Path, log: Log, runs_dir: Path, pool: Workers) -> dict[str, Any]:
    cells = lay["cells"]
    # each seed's data is generated once, before any unit reads it
    pool.map(_prepare_data, [exp.cfg.replace(seed=s).to_dict() for s in seeds])
    d0 = load_data(exp.cfg.replace(seed=seeds[0]))
    steps: dict[str, float] = {}
    tasks: list[dict[str, Any]] = []
    for key, c in cells.items():
        cfg = TrainConfig(**c["config"])
        model_id = json.dumps([cfg.model, cfg.model_width, cfg.batch_size])
        if model_id not in steps:
            steps[model_id] = _step_seconds(cfg, d0.in_shape, d0.n_classes)
        n_train = cfg.train_samples or len(d0.y_train)
        cost = _cost(cfg, n_train, len(d0.y_test), steps[model_id], st)
        folder = runs_dir / cell_folder(c["config"])
        for s in seeds:
            tasks.append({"cfg": cfg.replace(seed=s).to_dict(), "seed": s, "cell": key,
                          "path": str(folder / f"seed{s}.h5"), "st": st, "cost": cost})
    tasks.sort(key=lambda t: -t["cost"])  # largest first: the pool's tail is short
    log(f"[regimes] {len(cells)} cells × {len(seeds)} seeds = {len(tasks)} units in "
        f"{pool.n} worker process(es)")

    per_cell: dict[str, dict[int, dict[str, Any]]] = {k: {} for k in cells}
    total = sum(t["cost"] for t in tasks)
    t0 = time.perf_counter()
    done_cost = kept_cost = 0.0
    n_done = 0
    for i, res in pool.as_completed(_unit_task, tasks):
        task = tasks[i]
        per_cell[task["cell"]][task["seed"]] = res
        if res["kept"]:
            kept_cost += task["cost"]
        else:
            done_cost += task["cost"]
        if len(per_cell[task["cell"]]) < len(seeds):
            continue
        n_done += 1
        elapsed = time.perf_counter() - t0
        left = total - done_cost - kept_cost
        eta = elapsed * left / done_cost if done_cost > 0 else 0.0
        s = summarize(_cell_metrics(per_cell[task["cell"]], seeds))
        kept = all(r["kept"] for r in per_cell[task["cell"]].values())
        log(f"[regimes] cell {n_done}/{len(cells)} {cells[task['cell']]['labels'][0]}"
            f"{' (kept)' if kept else ''}: SWA − SGD {_pts(s['diff'], s['diff_ci'])}, "
            f"width ratio {_ratio(s['ratio'], s['ratio_ci'])}; elapsed "
            f"{_duration(elapsed)}, ETA {_duration(eta)}")

    metrics = {k: _cell_metrics(per_cell[k], seeds) for k in cells}
    summary = {k: summarize(m) for k, m in metrics.items()}
    first = next(iter(per_cell[next(iter(cells))].values()))
    regime = find_regime(summary)
    extra: dict[str, Any] = {
        "design": lay, "summary": summary, "settings": st, "regime": None,
        "best_cell": max(summary, key=lambda k: _finite(summary[k]["diff"])),
        "n_train": first["n_train"], "n_test": first["n_test"],
        "runs": {k: str(runs_dir / cell_folder(c["config"])) for k, c in cells.items()},
        "unit_seconds": {k: [per_cell[k][s]["seconds"] for s in seeds] for k in cells}}
    if regime is not None:
        over = paper_overrides(TrainConfig(**cells[regime]["config"]))
        toml = write_paper_toml(out / "paper_at_regime.toml", over, regime)
        extra["regime"] = {"cell": regime, "labels": cells[regime]["labels"],
                           "diff": summary[regime]["diff"],
                           "diff_ci": summary[regime]["diff_ci"],
                           "overrides": cells[regime]["overrides"],
                           "paper_overrides": over, "paper_toml": toml.name}
    return {"metrics": metrics, "extra": extra}


def _cell_metrics(results: Mapping[int, Mapping[str, Any]], seeds: Sequence[int]
                  ) -> dict[str, list[float]]:
    r = [results[s] for s in seeds]
    sgd = [x["sgd_test_acc"] for x in r]
    swa = [x["swa_test_acc"] for x in r]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = [float(np.float64(x["swa_width"]) / np.float64(x["sgd_width"])) for x in r]
    return {"sgd_test_acc": sgd, "swa_test_acc": swa,
            "diff_test_acc": [b - a for a, b in zip(sgd, swa, strict=True)],
            "sgd_width": [x["sgd_width"] for x in r], "swa_width": [x["swa_width"] for x in r],
            "width_ratio": ratio}


# =========================================================================== statistics
def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def summarize(m: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Mean and 95 % CI over seeds of a cell's accuracy difference and width ratio.

    The accuracy difference is paired over seeds (SWA − SGD of the same seed);
    the width ratio is the mean over seeds of each seed's ratio of medians
    (non-finite ratios left out and counted).

    Returns:
        ``{"diff", "diff_ci", "diff_sign", "ratio", "ratio_ci", "ratio_sign",
        "sgd", "sgd_ci", "swa", "swa_ci", "n_ratio"}`` (accuracies as fractions).

    Example:
        >>> s = summarize({"sgd_test_acc": [0.80, 0.81, 0.79],
        ...                "swa_test_acc": [0.82, 0.83, 0.81],
        ...                "width_ratio": [1.0, 1.2, 1.1]})
        >>> round(s["diff"], 6), s["diff_sign"], round(s["ratio"], 6)
        (0.02, 'higher', 1.1)
    """
    sgd, swa = (np.asarray(m[k], dtype=np.float64) for k in ("sgd_test_acc",
                                                            "swa_test_acc"))
    d, dh = finite_mean_ci(swa - sgd)
    r, rh = finite_mean_ci(m["width_ratio"])
    a, ah = finite_mean_ci(sgd)
    b, bh = finite_mean_ci(swa)
    return {"diff": d, "diff_ci": dh, "diff_sign": call(d, dh),
            "ratio": r, "ratio_ci": rh, "ratio_sign": call(r, rh, null=1.0),
            "sgd": a, "sgd_ci": ah, "swa": b, "swa_ci": bh,
            "n_ratio": int(np.isfinite(np.asarray(m["width_ratio"], float)).sum())}


def find_regime(summary: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The cell with the largest accuracy gain of SWA whose 95 % CI excludes 0.

    Returns:
        Its key, or ``None`` when SWA is significantly better nowhere.

    Example:
        >>> find_regime({"a": {"diff": 0.03, "diff_sign": "no difference"},
        ...              "b": {"diff": 0.01, "diff_sign": "higher"}})
        'b'
    """
    wins = [k for k, s in summary.items() if s["diff_sign"] == "higher"]
    return max(wins, key=lambda k: summary[k]["diff"]) if wins else None


def paper_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """What the ``paper`` config must change to train ``cfg`` (execution keys aside).

    Returns:
        ``{key: value}`` of the TrainConfig fields where ``cfg`` differs from
        ``experiments/paper.toml``.
    """
    from landscape.experiments._common import load_experiment

    paper = load_experiment("paper").cfg.to_dict()
    return {k: v for k, v in cfg.to_dict().items() if k not in _EXECUTION and v != paper[k]}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v) if isinstance(v, float) else str(v)


def write_paper_toml(path: Path, overrides: Mapping[str, Any], cell: str) -> Path:
    """``experiments/paper.toml`` with ``overrides`` applied, for ``landscape reproduce PATH``.

    Returns:
        ``path``.
    """
    src = (CONFIGS_DIR / "paper.toml").read_text().splitlines()
    first_table = next(i for i, line in enumerate(src) if line.startswith("["))
    head = [line for line in src[:first_table]
            if line.split("=")[0].strip() not in overrides]
    lines = [f"# The paper experiment in the regimes cell {cell!r} (written by "
             "`landscape reproduce regimes`).", *head]
    while lines and not lines[-1].strip():
        lines.pop()
    lines += [f"{k} = {_toml_value(v)}" for k, v in overrides.items() if v is not None]
    lines += ["", *src[first_table:]]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must load
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# =========================================================================== report
def _pts(m: float, h: float) -> str:
    return format_pm(m, h, "+.2f", ".2f", scale=100.0, unit=" points")


def _ratio(m: float, h: float) -> str:
    return format_pm(m, h, ".3f")


def _acc(m: float, h: float) -> str:
    return format_pm(m, h, ".2f", scale=100.0)


def _mark(sign: str) -> str:
    """``▲`` / ``▼`` where the interval lies above / below its null, else nothing."""
    return {"higher": " ▲", "lower": " ▼"}.get(sign, "")


def _names(keys: Sequence[str], summary: Mapping[str, Any], cells: Mapping[str, Any],
           what: str) -> str:
    parts = []
    for k in keys:
        s = summary[k]
        v = _pts(s["diff"], s["diff_ci"]) if what == "diff" else _ratio(s["ratio"],
                                                                         s["ratio_ci"])
        parts.append(f"{' = '.join(cells[k]['labels'])} ({v})")
    return "; ".join(parts)


def findings(result: Mapping[str, Any]) -> list[str]:
    """The report's paragraph on where SWA helps, generated from the intervals.

    Returns:
        Markdown lines: the paragraph, then one bullet per factor.
    """
    ex = result["extra"]
    summary, cells, lay = ex["summary"], ex["design"]["cells"], ex["design"]
    n = len(summary)
    seeds = len(next(iter(result["metrics"].values()))["diff_test_acc"])
    up = sorted((k for k, s in summary.items() if s["diff_sign"] == "higher"),
                key=lambda k: -summary[k]["diff"])
    down = sorted((k for k, s in summary.items() if s["diff_sign"] == "lower"),
                  key=lambda k: summary[k]["diff"])
    rest = [k for k in summary if k not in up and k not in down]
    out = [f"Over {n} cells and {seeds} seeds per cell (test sets of {ex['n_test']:,} "
           f"samples: one test error step is {100 / ex['n_test']:.3g} points), "]
    if up:
        out[0] += (f"SWA's test accuracy is **higher** than SGD's, with a 95 % CI that "
                   f"excludes 0, in {len(up)} cell(s): {_names(up, summary, cells, 'diff')}.")
    else:
        out[0] += ("SWA's test accuracy is **not significantly higher** than SGD's in any "
                   "cell (no 95 % CI of SWA − SGD lies above 0).")
    if down:
        out.append(f"It is **lower** (CI below 0) in {len(down)} cell(s): "
                   f"{_names(down, summary, cells, 'diff')}.")
    d = [summary[k]["diff"] for k in rest if math.isfinite(summary[k]["diff"])]
    if d:
        which = f"In the other {len(rest)} cell(s)" if up or down else f"In all {n} cells"
        out.append(f"{which} the difference is within noise (means from "
                   f"{100 * min(d):+.2f} to {100 * max(d):+.2f} points).")
    per_factor: list[str] = []
    for name, levels in lay["factors"].items():
        keys = [lv["cell"] for lv in levels]
        vals = ", ".join(f"{lv['label']}: " + _pts(summary[lv["cell"]]["diff"],
                                                    summary[lv["cell"]]["diff_ci"])
                         for lv in levels)
        line = f"Along {factor_title(name)} — {vals}."
        if "base" in keys:
            best = max((k for k in keys if k != "base"),
                       key=lambda k: _finite(summary[k]["diff"]), default=None)
            if best is not None:
                m = result["metrics"]
                dd = np.asarray(m[best]["diff_test_acc"]) - np.asarray(
                    m["base"]["diff_test_acc"])
                dm, dh = finite_mean_ci(dd)
                lbl = next(lv["label"] for lv in levels if lv["cell"] == best)
                ci = ("excludes 0" if call(dm, dh) in ("higher", "lower")
                      else "includes 0")
                line += (f" At {lbl} (the non-base level with the largest mean) it differs "
                         f"from the base level's by {_pts(dm, dh)} (paired over seeds; "
                         f"the CI {ci}).")
        per_factor.append(line)
    wide = [k for k, s in summary.items() if s["ratio_sign"] == "higher"]
    narrow = [k for k, s in summary.items() if s["ratio_sign"] == "lower"]
    wline = (f"Widths: the SWA solution is **wider** than SGD's (ratio CI above 1) in "
             f"{len(wide)} of {n} cells")
    wline += f" ({_names(wide, summary, cells, 'ratio')})" if 0 < len(wide) <= 6 else ""
    wline += f", **narrower** (CI below 1) in {len(narrow)}"
    wline += f" ({_names(narrow, summary, cells, 'ratio')})" if 0 < len(narrow) <= 6 else ""
    wline += ", and not distinguishable in the rest."
    x = np.array([summary[k]["ratio"] for k in summary], float)
    y = np.array([summary[k]["diff"] for k in summary], float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 4 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        from scipy.stats import spearmanr

        rho, p = spearmanr(x[ok], y[ok])
        wline += (f" Across cells, the rank correlation between the width ratio and the "
                  f"accuracy difference is ρ = {rho:.2f} (Spearman, p = {p:.2g}, "
                  f"{int(ok.sum())} cells).")
    out.append(wline)
    out.append(f"Caveat: with {n} cells each tested at the 95 % level, about "
               f"{0.05 * n:.1f} interval(s) would exclude 0 by chance alone if SWA made no "
               "difference anywhere, and the best cell's gain is biased upwards by its "
               "selection; a regime should be confirmed with fresh seeds (the `paper` "
               "run below does that).")
    return [" ".join(out), "", *(f"- {line}" for line in per_factor)]


def _cell_row(label: str, s: Mapping[str, Any]) -> str:
    return (f"| {label} | {_acc(s['sgd'], s['sgd_ci'])} | {_acc(s['swa'], s['swa_ci'])} | "
            f"{_pts(s['diff'], s['diff_ci'])}{_mark(s['diff_sign'])} | "
            f"{_ratio(s['ratio'], s['ratio_ci'])}{_mark(s['ratio_sign'])} |")


def tables(result: Mapping[str, Any]) -> list[str]:
    """Markdown tables: each factor's levels, then the two-factor map.

    Returns:
        The lines.
    """
    ex = result["extra"]
    summary, lay = ex["summary"], ex["design"]
    head = ["| level | SGD test acc (%) | SWA test acc (%) | SWA − SGD | width ratio SWA/SGD |",
            "|---|---|---|---|---|"]
    lines: list[str] = []
    for name, levels in lay["factors"].items():
        lines += [f"**{factor_title(name)}**", "", *head]
        lines += [_cell_row(lv["label"] + (" (base)" if lv["cell"] == "base" else ""),
                            summary[lv["cell"]]) for lv in levels]
        lines.append("")
    g = lay["map"]
    if g is not None:
        for what, fmt in (("SWA − SGD test accuracy (points)", "diff"),
                          ("width ratio SWA/SGD", "ratio")):
            lines += [f"**{factor_title(g['rows'])} × {factor_title(g['cols'])}: {what}**",
                      "", f"| {factor_title(g['rows'])} | " + " | ".join(g["col_labels"])
                      + " |", "|---|" + "---|" * len(g["col_labels"])]
            for rl, row in zip(g["row_labels"], g["cells"], strict=True):
                cells = []
                for k in row:
                    s = summary[k]
                    v = (_pts(s["diff"], s["diff_ci"]).replace(" points", "")
                         if fmt == "diff" else _ratio(s["ratio"], s["ratio_ci"]))
                    cells.append(v + _mark(s[f"{fmt}_sign"]))
                lines.append(f"| {rl} | " + " | ".join(cells) + " |")
            lines.append("")
    lines.append("▲ / ▼: the 95 % CI over seeds lies above / below 0 (difference) or 1 "
                 "(ratio).")
    return lines


def regime_lines(result: Mapping[str, Any], out: Path) -> list[str]:
    """Which cell is "the regime where SWA helps", and how to run ``paper`` there.

    Returns:
        The lines.
    """
    ex = result["extra"]
    r = ex["regime"]
    if r is None:
        b = ex["best_cell"]
        s = ex["summary"][b]
        return ["No cell has a significant SWA gain, so no regime is recorded "
                f"(`extra.regime` is null). The largest mean difference is in "
                f"{' = '.join(ex['design']['cells'][b]['labels'])} "
                f"({_pts(s['diff'], s['diff_ci'])})."]
    over = ", ".join(f"`{k} = {_toml_value(v)}`" for k, v in r["paper_overrides"].items())
    return [f"The regime where SWA helps most (largest significant gain): "
            f"**{' = '.join(r['labels'])}**, SWA − SGD {_pts(r['diff'], r['diff_ci'])} "
            f"(cell `{r['cell']}`; stored as `extra.regime` in `results.h5`).", "",
            f"To run the `paper` experiment there, override in `paper.toml`: {over or '(none)'}"
            f" — written out as `{r['paper_toml']}`: "
            f"`landscape reproduce {out / r['paper_toml']}`."]


#: The report's figures, in report order: ``{stem: (caption, draw(plot, results))}``.
FIGURES: dict[str, FigureSpec] = {
    "regimes_acc_diff": (
        "Test accuracy difference SWA − SGD (points; mean over seeds, paired; ± the 95 % "
        "CI), one factor at a time around the base point (left) and the two-factor map "
        "(right). Bold cells: CI excludes 0.",
        lambda plot, results: plot.plot_regimes(results, "diff_test_acc")),
    "regimes_width_ratio": (
        "Width ratio SWA/SGD (median width along random unit directions; mean over seeds "
        "± 95 % CI). Bold cells: CI excludes 1.",
        lambda plot, results: plot.plot_regimes(results, "width_ratio")),
}


def regimes_figures(exp: Experiment, results: Path, result: Mapping[str, Any],
                    dest: Path) -> list[Path]:
    """The heat maps of the report, drawn from ``results`` alone.

    Returns:
        The PNG paths.
    """
    return draw_figures(FIGURES, dest, results)


def regimes_report(exp: Experiment, result: Mapping[str, Any], figures: Sequence[Path],
                   out: Path) -> list[str]:
    """The report after the common header: findings, tables, regime, figures, design.

    Returns:
        Markdown lines.
    """
    ex = result["extra"]
    st = ex["settings"]
    cfg = exp.cfg
    lines = ["### Where SWA helps on this data", "", *findings(result), "",
             "### The regime for the `paper` experiment", "", *regime_lines(result, out), "",
             "### Per factor", "",
             f"Base point: the top-level config ({cfg.model}"
             f"{'' if cfg.model_width is None else f', width {cfg.model_width}'}, "
             f"{ex['n_train']:,} train / {ex['n_test']:,} test samples, {cfg.epochs} epochs, "
             f"SWA from epoch {cfg.swa_start} at lr {cfg.swa_lr:g}); every other row "
             "changes one factor. SGD and SWA always train the same number of epochs "
             "from the same initialisation (budget × epochs, SWA start scaled alike). "
             "Width: median over "
             f"{st['directions']} random unit directions of the distance at which the "
             f"train loss (on the labels trained on) rises by τ = {st['tau']:g}, on "
             f"{st['width_samples']:,} train samples, BN statistics {st['width_bn']}; "
             "the ratio is taken per seed, then averaged.", "",
             *tables(result), "", "### Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    return lines


register_protocol(Protocol(
    name="regimes", title="where SWA beats SGD (label noise, SWA lr, width, budget, data)",
    settings=RegimesSettings, run=run_regimes, figures=regimes_figures, report=regimes_report))
