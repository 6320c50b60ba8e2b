"""REPAIR at one point of a path: one pass through the graph vs a forward pass per layer.

:func:`landscape.paths.align.repair` corrects the interpolated network's layers in
graph order, each measured with the earlier corrections in place.  From three
corrected layers on it runs the graph once, all input batches node by node;
with fewer, or with ``max_bytes=0``, it makes a forward pass per corrected layer
(what it always did before).  Both give the same floats; this times both (the
one pass forced for the MLP's two layers) and says which the call picks, on

* torchvision's ResNet18 with the CIFAR stem (3x3 conv, no max pool), random
  init, 512 random 3x32x32 inputs in batches of 128 (20 corrected layers);
* a 784-1024-1024-10 MLP, random init, 4096 random inputs in batches of 1024.

One thread, medians of ``--repeats``; the network is reset before each call.
``--large`` adds the ResNet18 on 4,096 inputs (align_paths' default ``samples``)
in batches of 1,024, once each way, where the one pass holds about 3 GiB of
activations (under the 4 GiB ``REPAIR_BYTES``).

    python benchmarks/bench_repair.py [--large]   # writes benchmarks/results/repair.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from landscape.models import build_model
from landscape.paths.align import repair, site_statistics
from landscape.paths.permutation import trace_permutations

RESULTS = Path(__file__).parent / "results" / "repair.json"


def _resnet18(seed: int) -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    net = resnet18(num_classes=10)
    net.conv1, net.maxpool = nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.Identity()
    return net.eval()


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", (1, 28, 28), 10, hidden=1024, depth=2).eval()


def bench(name: str, make, shape: tuple[int, ...], n: int, batch: int,
          repeats: int) -> dict:
    a, b = make(0), make(1)
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0)).split(batch)
    sa = site_statistics(trace_permutations(a), x)
    sb = site_statistics(trace_permutations(b), x)
    mid = copy.deepcopy(a)
    with torch.no_grad():
        for p, pa, pb in zip(mid.parameters(), a.parameters(), b.parameters(), strict=True):
            p.copy_((pa + pb) / 2)
    row: dict = {"model": name, "inputs": n, "batch": batch,
                 "layers": len(sa)}
    mod = sys.modules[repair.__module__]
    default = mod._ONE_PASS_LAYERS
    for label, mb in (("one_pass_s", None), ("per_layer_s", 0)):
        mod._ONE_PASS_LAYERS = 1  # time the one pass even where the call would not
        ts = []
        try:
            for _ in range(repeats):
                net = copy.deepcopy(mid)
                traced = trace_permutations(net)
                t0 = time.perf_counter()
                repair(traced, sa, sb, 0.5, x, max_bytes=mb)
                ts.append(time.perf_counter() - t0)
        finally:
            mod._ONE_PASS_LAYERS = default
        row[label] = statistics.median(ts)
    row["speedup"] = row["per_layer_s"] / row["one_pass_s"]
    row["call_uses"] = "one pass" if len(sa) >= default else "per layer"
    print(f"{name}: {row['layers']} layers, one pass {row['one_pass_s']:.2f} s, per layer "
          f"{row['per_layer_s']:.2f} s ({row['speedup']:.2f}x); repair() uses "
          f"{row['call_uses']}", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--large", action="store_true",
                   help="also ResNet18 on 4096 inputs (about 10 minutes)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [bench("torchvision-resnet18-cifar-stem", _resnet18, (3, 32, 32), 512, 128,
                  args.repeats),
            bench("mlp-1024x2", _mlp, (1, 28, 28), 4096, 1024, args.repeats)]
    if args.large:
        rows.append(bench("torchvision-resnet18-cifar-stem", _resnet18, (3, 32, 32), 4096,
                          1024, 1))
    out = {"benchmark": "repair", "threads": 1, "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
