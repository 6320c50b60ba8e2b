"""The library core: streaming data against in-memory tensors, and HVP memory in N.

Targets (issue 9, DESIGN.md §4):

* ``stream_over_memory_time_ratio`` <= 1.1: one train+test evaluation through a
  ``DataLoader`` over the time through in-memory tensors, same model, data and
  batch size (the MNIST-1D CNN and the seed-000 CNN on MNIST-shaped inputs).  The
  loader yields whole batches (``BatchSampler`` over a tensor dataset), so the
  ratio is the evaluation path's streaming cost; a default per-sample
  ``DataLoader`` adds its own collation, reported alongside.
  ``stream_without_loader_over_memory_time_ratio`` subtracts the time the loader
  alone takes to yield its batches (gathering index lists), which no evaluation
  path can avoid: what is left is the cost of streaming in ``landscape`` itself.
* ``hvp_peak_memory_ratio_8k_over_1k`` <= 1.2: peak RSS of a process that computes
  Hessian-vector products of the seed-000 CNN on 8000 samples over one on 1000
  samples (batches of 1000, in-memory data, float32).  Each case runs in a fresh
  subprocess; ``ru_maxrss`` is its peak.  For reference the same with every
  batch's gradient graph kept (``graph_cache`` = all batches), which is how the
  HVP worked before it was batched.

    python benchmarks/bench_core.py            # writes benchmarks/results/core.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

RESULTS = Path(__file__).parent / "results" / "core.json"


class _Sliced(TensorDataset):
    """A tensor dataset indexed by a list of indices at once (whole batches)."""

    def __getitem__(self, idx):
        return tuple(t[idx] for t in self.tensors)


def _batch_loader(x: torch.Tensor, y: torch.Tensor, bs: int) -> DataLoader:
    ds = _Sliced(x, y)
    return DataLoader(ds, batch_size=None,
                      sampler=BatchSampler(SequentialSampler(ds), bs, drop_last=False))


def _data(model: str, n: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    g = torch.Generator().manual_seed(0)
    shape = (1, 40) if model.startswith("mnist1d") else (1, 28, 28)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g), shape


def bench_stream(model: str, n: int, bs: int, repeats: int) -> dict:
    """Evaluation time through a DataLoader over the time through in-memory tensors."""
    from landscape.evaluate import Evaluator
    from landscape.models import build_model

    x, y, shape = _data(model, n)
    xt, yt, _ = _data(model, n // 4)
    torch.manual_seed(0)
    net = build_model(model, shape, 10)
    variants = {
        "memory": ((x, y), (xt, yt)),
        "stream": (_batch_loader(x, y, bs), _batch_loader(xt, yt, bs)),
        "stream_per_sample": (DataLoader(TensorDataset(x, y), batch_size=bs),
                              DataLoader(TensorDataset(xt, yt), batch_size=bs)),
    }
    evs = {k: Evaluator(net, tr, te, bn="keep", batch_size=bs) for k, (tr, te) in
           variants.items()}
    theta = evs["memory"].layout.read(net)
    buffers = evs["memory"].read_buffers()
    ref = evs["memory"].evaluate(theta, buffers)
    times: dict[str, list[float]] = {k: [] for k in evs}
    for _ in range(repeats):  # interleaved, so load changes hit every variant alike
        for k, ev in evs.items():
            t0 = time.perf_counter()
            m = ev.evaluate(theta, buffers)
            times[k].append(time.perf_counter() - t0)
            assert abs(m["train"].loss - ref["train"].loss) < 1e-5 * max(1, ref["train"].loss)
    med = {k: float(np.median(v)) for k, v in times.items()}
    loader = []  # the DataLoader's own fetching: index lists gathered into batches
    for _ in range(repeats):
        t0 = time.perf_counter()
        for dl in variants["stream"]:
            for _b in dl:
                pass
        loader.append(time.perf_counter() - t0)
    med["stream_loader_alone"] = float(np.median(loader))
    return {"model": model, "train_samples": n, "test_samples": n // 4, "batch_size": bs,
            "repeats": repeats, "median_seconds": med,
            "stream_over_memory_time_ratio": med["stream"] / med["memory"],
            "stream_without_loader_over_memory_time_ratio":
                (med["stream"] - med["stream_loader_alone"]) / med["memory"],
            "per_sample_loader_over_memory_time_ratio":
                med["stream_per_sample"] / med["memory"]}


_CHILD = """
import json, resource, sys, time, torch
from landscape.data import TensorBatches
from landscape.evaluate import EmpiricalRisk
from landscape.models import build_model
n, bs, cache = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
torch.manual_seed(0)
net = build_model("seed000-cnn", (1, 28, 28), 10).eval()
risk = EmpiricalRisk(net, TensorBatches(x, y, bs), graph_cache=cache)
theta = risk.layout.read(net)
hvp = risk.hvp(theta)
v = torch.randn(theta.numel(), generator=g)
t0 = time.perf_counter()
for _ in range(3):
    v = hvp(v); v = v / v.norm()
sec = (time.perf_counter() - t0) / 3
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds_per_hvp": sec}))
"""


def bench_hvp_memory(small: int, large: int, bs: int) -> dict:
    """Peak RSS of HVPs on ``large`` over ``small`` samples, each in a fresh process."""
    out: dict[str, dict] = {}
    for label, cache in (("batched", 1), ("all_graphs_kept", 10**6)):
        for n in (small, large):
            r = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(bs), str(cache)],
                               capture_output=True, text=True, check=True)
            out[f"{label}_{n}"] = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "model": "seed000-cnn", "batch_size": bs, "samples": [small, large], "runs": out,
        "hvp_peak_memory_ratio_8k_over_1k":
            out[f"batched_{large}"]["peak_rss_mb"] / out[f"batched_{small}"]["peak_rss_mb"],
        "all_graphs_kept_peak_memory_ratio_8k_over_1k":
            out[f"all_graphs_kept_{large}"]["peak_rss_mb"]
            / out[f"all_graphs_kept_{small}"]["peak_rss_mb"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    stream = [bench_stream("mnist1d-cnn", 8000, 1000, args.repeats),
              bench_stream("seed000-cnn", 8000, 1000, args.repeats)]
    for r in stream:
        print(f"{r['model']:12s} evaluation {r['median_seconds']['memory'] * 1e3:.1f} ms "
              f"in memory | DataLoader of batches {r['stream_over_memory_time_ratio']:.3f}x "
              f"(target <= 1.1; without the loader's own fetching "
              f"{r['stream_without_loader_over_memory_time_ratio']:.3f}x) | per-sample DataLoader "
              f"{r['per_sample_loader_over_memory_time_ratio']:.2f}x")
    mem = bench_hvp_memory(1000, 8000, 1000)
    print(f"HVP peak RSS 8k/1k samples: {mem['hvp_peak_memory_ratio_8k_over_1k']:.3f}x "
          f"(target <= 1.2); keeping every batch's graph: "
          f"{mem['all_graphs_kept_peak_memory_ratio_8k_over_1k']:.2f}x")
    results = {
        "command": "python benchmarks/bench_core.py",
        "torch": torch.__version__, "machine": platform.machine(), "threads": 1,
        "targets": {"stream_over_memory_time_ratio": 1.1,
                    "hvp_peak_memory_ratio_8k_over_1k": 1.2},
        "stream_over_memory_time_ratio": max(r["stream_over_memory_time_ratio"]
                                             for r in stream),
        "hvp_peak_memory_ratio_8k_over_1k": mem["hvp_peak_memory_ratio_8k_over_1k"],
        "stream": stream, "hvp_memory": mem,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
