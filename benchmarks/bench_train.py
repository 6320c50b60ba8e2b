"""Training overheads: SWA over plain SGD per epoch, and trajectory recording.

Targets (DESIGN.md §4): SWA epoch time <= 1.03x plain SGD; recording <= 1.05x.
Each ratio compares the per-epoch ``seconds`` (minibatch loop + averaging +
recording; evaluation and checkpoint saving excluded) stored in the run files'
``/history/<run>/seconds``, median over epochs and over interleaved repeats.

    python benchmarks/bench_train.py            # writes benchmarks/results/train.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from landscape.config import TrainConfig
from landscape.data import load_dataset
from landscape.train import train

RESULTS = Path(__file__).parent / "results" / "train.json"


def _epoch_seconds(path: Path, run: str, first: int) -> np.ndarray:
    with h5py.File(path) as f:
        return f[f"history/{run}/seconds"][()][first:]


def bench(model: str, num_samples: int, epochs: int, repeats: int, tmp: Path) -> dict:
    data = load_dataset("mnist1d", root=tmp / "data", num_samples=num_samples)
    base = TrainConfig(model=model, num_samples=num_samples, data_root=str(tmp / "data"),
                       epochs=epochs, swa_start=1, eval_every=0, threads=1)
    variants = {
        # SWA run averages after every epoch from epoch 1; the sgd run is the baseline.
        "swa_vs_sgd": base.replace(record_every=0),
        "record_epoch": base.replace(swa=False, record_every=1),
        "record_step10": base.replace(swa=False, record_every=0, record_steps=10),
        "no_record": base.replace(swa=False, record_every=0),
    }
    times: dict[str, list[float]] = {"sgd": [], "swa": [], "record_epoch": [],
                                      "record_step10": [], "no_record": []}
    for r in range(repeats):
        for name, cfg in variants.items():
            out = tmp / f"{name}-{r}.h5"
            train(cfg, out, progress=False, log=lambda _: None, data=data)
            if name == "swa_vs_sgd":
                times["sgd"] += list(_epoch_seconds(out, "sgd", 1))
                times["swa"] += list(_epoch_seconds(out, "swa", 1))
            else:
                times[name] += list(_epoch_seconds(out, "sgd", 1))
            out.unlink()
    med = {k: float(np.median(v)) for k, v in times.items()}
    n_params = sum(p.numel() for p in __import__("landscape.models", fromlist=["x"])
                   .build_model(model, data.in_shape, 10).parameters())
    return {
        "model": model, "n_params": n_params, "train_samples": len(data.y_train),
        "epochs": epochs, "repeats": repeats, "median_epoch_seconds": med,
        "swa_over_sgd": med["swa"] / med["sgd"],
        "record_epoch_over_none": med["record_epoch"] / med["no_record"],
        "record_step10_over_none": med["record_step10"] / med["no_record"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    results = {"command": "python benchmarks/bench_train.py"
               + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
               + (f" --epochs {args.epochs}" if args.epochs != 8 else ""),
               "load_average_start": os.getloadavg(),
               "torch": torch.__version__, "machine": platform.machine(),
               "targets": {"swa_over_sgd": 1.03, "record_epoch_over_none": 1.05}, "cases": []}
    with tempfile.TemporaryDirectory() as d:
        for model, n in (("mnist1d-cnn", 10000), ("mnist1d-smallcnn", 5000)):
            r = bench(model, n, args.epochs, args.repeats, Path(d))
            results["cases"].append(r)
            print(f"{model:18s} ({r['n_params']} params, {r['train_samples']} samples): "
                  f"epoch {r['median_epoch_seconds']['sgd'] * 1e3:.1f} ms | SWA/SGD "
                  f"{r['swa_over_sgd']:.3f}x (target <= 1.03) | record every epoch "
                  f"{r['record_epoch_over_none']:.3f}x (target <= 1.05) | every 10 steps "
                  f"{r['record_step10_over_none']:.3f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
