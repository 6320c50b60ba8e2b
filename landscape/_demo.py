"""The main job behind ``landscape demo`` / ``make demo``: stages on one run file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from landscape.config import TrainConfig

#: The demo's training config (MNIST-1D, 40-epoch SGD budget, SWA from epoch 30).
DEMO = TrainConfig(data="mnist1d", epochs=40, swa_start=30, swa_lr=0.01, lr=0.05)


def _stage(name: str, fn: Callable[[], object]) -> None:
    t0 = time.perf_counter()
    print(f"[demo] {name} ...", flush=True)
    fn()
    print(f"[demo] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)


def run_demo(out: str | Path, *, data_root: str = "data", progress: bool = True) -> Path:
    """Train SGD and SWA on MNIST-1D into ``out`` and print the solutions table."""
    from landscape._commands.info import solutions_table
    from landscape.store import open_run
    from landscape.train import train

    out = Path(out)
    cfg = DEMO.replace(data_root=data_root)
    _stage("train SGD and SWA", lambda: train(cfg, out, progress=progress))
    with open_run(out) as f:
        print(solutions_table(f))
    print(f"[demo] results: {out}  (inspect with `landscape info {out}`)")
    return out
