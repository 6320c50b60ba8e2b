"""Protocol ``seed004``: the run over seeds and its per-seed task."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape import store
from landscape.config import parse_range
from landscape.evaluate import BNMode, Evaluator
from landscape.experiments._common import (
    Experiment,
    Log,
)
from landscape.jobs import load_run_model
from landscape.train import train

_COLUMNS = ("epoch", "train_acc", "test_acc", "train_loss", "test_loss")


def evaluate_checkpoints(path: str | Path, run: str = "sgd",
                         epochs: tuple[int, int] | None = None, *,
                         progress: bool = False) -> dict[str, np.ndarray]:
    """Evaluate recorded checkpoints of ``run`` and store them in the run file.

    Each recorded weight vector at a whole completed epoch (within ``epochs``,
    inclusive, if given) is evaluated with its own BN buffers (``bn=keep``)
    through :class:`landscape.evaluate.Evaluator`; the results go to
    ``/measures/checkpoints/{epoch,train_acc,test_acc,train_loss,test_loss}``.

    Scores already stored for the same run and checkpoints are read back (a resumed
    protocol does not evaluate them again).

    Returns:
        The stored arrays.

    Raises:
        UserError: If the run has no trajectory or no checkpoint in range.
    """
    with store.open_run(path) as f:
        ep, _ = store.checkpoint_epochs(f, run, epochs)
        g = f.get("measures/checkpoints")
        if (g is not None and store.attrs_of(g).get("run") == run and "epoch" in g
                and np.array_equal(g["epoch"][()], ep)):
            return {k: np.asarray(g[k][()]) for k in _COLUMNS}
        _, W, B = store.checkpoints(f, run, epochs)  # (k, n_params), (k, n_buffers)
    t0 = time.perf_counter()
    model, data = load_run_model(path)
    ev = Evaluator(model, data.batches("train"), data.batches("test"), bn=BNMode.KEEP)
    cols: dict[str, list[float]] = {k: [] for k in _COLUMNS if k != "epoch"}
    from tqdm.auto import tqdm

    for w, b in tqdm(list(zip(W, B, strict=True)), desc="checkpoints", leave=False,
                     disable=not progress):
        m = ev.evaluate(torch.from_numpy(w), torch.from_numpy(b) if b.size else None)
        for s in ("train", "test"):
            cols[f"{s}_acc"].append(m[s].acc)
            cols[f"{s}_loss"].append(m[s].loss)
    out = {"epoch": ep, **{k: np.asarray(v) for k, v in cols.items()}}
    with store.edit_run(path) as f:
        store.write_checkpoints(f, out, {"run": run, "bn": "keep",
                                         "source": "recorded checkpoints",
                                         "seconds": time.perf_counter() - t0})
    return out


def seed_seconds(path: str | Path) -> float:
    """The work stored in a seed's run file: its training epochs (``/history``, summed
    over every invocation that trained them) and the scoring of its checkpoints."""
    train_s = sum(float(np.nansum(h.get("seconds", 0.0)))
                  for h in store.read_history(path)["runs"].values())
    scored = store.group_attrs(path, "measures/checkpoints") or {}
    return train_s + float(scored.get("seconds", 0.0))


def run_seed004(exp: Experiment, seeds: Sequence[int], out: Path, log: Log,
                runs_dir: Path | None = None, progress: bool = False, **_: Any
                ) -> dict[str, Any]:
    """Per seed: train (no SWA run), evaluate every checkpoint, compare with their average.

    Run files (large: every epoch's weights) go to ``runs_dir/seedS.h5``
    (default ``OUT/runs``).  A rerun keeps every finished run file and its checkpoint
    scores, so more ``--seeds`` train only the new ones; a run file of another config
    is an error naming it (as for the other protocols).

    Returns:
        ``{"metrics": {method: {metric: list}}, "extra": {...}}``.
    """
    rng = parse_range(exp.cfg.average_epochs or f"1:{exp.cfg.epochs}")
    metrics: dict[str, dict[str, list[float]]] = {
        m: {"test_acc": [], "train_acc": []} for m in ("last", "checkpoints_mean", "avg")}
    metrics["checkpoints_best"] = {"test_acc": []}
    runs: list[str] = []
    seconds: list[float] = []
    for seed in seeds:
        t0 = time.perf_counter()
        path = (runs_dir or out / "runs") / f"seed{seed}.h5"
        train(exp.cfg.replace(seed=seed), path, progress=progress, log=lambda _m: None)
        ck = evaluate_checkpoints(path, exp.cfg.average_run, rng, progress=progress)
        with store.open_run(path) as f:
            sols = store.solution_attrs(f)
        last = sols[exp.cfg.average_run if exp.cfg.average_run == "sgd" else "swa_last"]
        avg = sols["avg"]
        for m, tr, te in (("last", last["train_acc"], last["test_acc"]),
                          ("checkpoints_mean", ck["train_acc"].mean(), ck["test_acc"].mean()),
                          ("avg", avg["train_acc"], avg["test_acc"])):
            metrics[m]["train_acc"].append(float(tr))
            metrics[m]["test_acc"].append(float(te))
        metrics["checkpoints_best"]["test_acc"].append(float(ck["test_acc"].max()))
        runs.append(str(path))
        seconds.append(seed_seconds(path))
        log(f"[seed {seed}] checkpoints {rng[0]}..{rng[1]}: mean test acc "
            f"{ck['test_acc'].mean():.4f} (min {ck['test_acc'].min():.4f}, max "
            f"{ck['test_acc'].max():.4f}); averaged model {avg['test_acc']:.4f}; last "
            f"{last['test_acc']:.4f} ({time.perf_counter() - t0:.0f} s)")
    return {"metrics": metrics, "extra": {"runs": runs, "average_epochs": list(rng),
                                          "seed_seconds": seconds}}
