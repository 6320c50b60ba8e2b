"""Curvature under torchrun: HVP wall time on 2 gloo ranks over 1 rank.

Target (issue 12): 2 ranks >= 1.7x on the HVP.  The seed-000 CNN on 2000
MNIST-shaped samples in float32; the data are split into 2 batches of 1000, each
rank keeps the gradient graph of its own batch (graph_cache=1) and one HVP is a
backward pass per rank plus an all_reduce of the (n_params,) result.  The 1-rank
baseline keeps both batches' graphs (graph_cache=2), so both sides do the same
work per HVP; every rank runs one thread.  Median over repeats of the mean time of
20 HVPs.

    python benchmarks/bench_dist.py        # writes benchmarks/results/dist.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "dist.json"

_CHILD = """
import json, os, sys, time, torch
import torch.distributed as dist
from landscape.data import TensorBatches
from landscape.evaluate import EmpiricalRisk
from landscape.models import build_model
torch.set_num_threads(1)
world = int(os.environ.get("WORLD_SIZE", "1"))
if world > 1:
    dist.init_process_group("gloo")
g = torch.Generator().manual_seed(0)
x, y = torch.randn(2000, 1, 28, 28, generator=g), torch.randint(0, 10, (2000,), generator=g)
torch.manual_seed(0)
net = build_model("seed000-cnn", (1, 28, 28), 10).eval()
risk = EmpiricalRisk(net, TensorBatches(x, y, 1000), graph_cache=3 - world)
theta = risk.layout.read(net)
hvp = risk.hvp(theta)
v = torch.randn(theta.numel(), generator=g)
hvp(v)
t0 = time.perf_counter()
for _ in range(20):
    v = hvp(v); v = v / v.norm()
sec = (time.perf_counter() - t0) / 20
if world == 1 or dist.get_rank() == 0:
    print(json.dumps({"seconds_per_hvp": sec, "check": float(v[:5].sum())}))
if world > 1:
    dist.destroy_process_group()
"""


def _run(world: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if world == 1:
        cmd = [sys.executable, "-c", _CHILD]
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        script = RESULTS.parent / "_dist_child.py"
        script.write_text(_CHILD)
        cmd = [torchrun, "--standalone", "--nproc-per-node", str(world), str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    checks: dict[int, float] = {}
    try:
        for _ in range(args.repeats):  # interleaved
            for w in (1, 2):
                r = _run(w)
                times[w].append(r["seconds_per_hvp"])
                checks[w] = r["check"]
    finally:
        (RESULTS.parent / "_dist_child.py").unlink(missing_ok=True)
    med = {w: float(np.median(t)) for w, t in times.items()}
    speedup = med[1] / med[2]
    print(f"HVP seed-000 CNN, 2000 samples: 1 rank {med[1] * 1e3:.1f} ms, 2 ranks "
          f"{med[2] * 1e3:.1f} ms: {speedup:.2f}x (target >= 1.7)")
    RESULTS.write_text(json.dumps({
        "command": "python benchmarks/bench_dist.py", "machine": platform.machine(),
        "cpus": os.cpu_count(), "threads_per_rank": 1, "repeats": args.repeats,
        "targets": {"hvp_2_ranks_speedup": 1.7},
        "median_seconds_per_hvp": {str(k): v for k, v in med.items()},
        "all_seconds_per_hvp": {str(k): v for k, v in times.items()},
        "hvp_2_ranks_speedup": speedup,
        "same_result": abs(checks[1] - checks[2]) < 1e-4 * max(1.0, abs(checks[1])),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
