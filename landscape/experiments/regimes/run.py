"""Protocol ``regimes``: the run over seeds and its per-seed task."""

from __future__ import annotations

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
    Log,
)
from landscape.experiments._runner import Workers, worker_count
from landscape.experiments.regimes.settings import (
    _EXECUTION,
    SUMMARY_GROUP,
    _settings,
)
from landscape.stats import call, finite_mean_ci, format_pm


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


def _pts(m: float, h: float) -> str:
    return format_pm(m, h, "+.2f", ".2f", scale=100.0, unit=" points")


def _ratio(m: float, h: float) -> str:
    return format_pm(m, h, ".3f")
