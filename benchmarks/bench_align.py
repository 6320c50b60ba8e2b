"""Cost of aligning two networks, against training and forward passes.

Targets (issue 21): weight matching on the seed-000 CNN and on a 784-1024-1024-10
MLP costs at most one training epoch of the same model on the same data;
activation matching at most two forward passes over the inputs it uses.

* ``weight_matching``: two networks trained one epoch each from different seeds
  (SGD, lr 0.05, momentum 0.9, batch 128) on the MNIST train images used here;
  the epoch time is the median of ``--repeats`` further epochs of the second
  network (on copies; the minibatch loop only), the matching time is
  :func:`landscape.align` with ``method="weights"`` (tracing, coordinate
  descent to convergence, permuting the copy), median of ``--repeats``;
  ``weight_matching_assignment_s`` is the part of one matching spent in
  ``linear_sum_assignment`` (``assignments`` calls), the floor of any
  coordinate descent that visits the groups this often;
* ``activation_matching``: ``align(..., method="activations")`` on ``--samples``
  train inputs against one eval-mode forward pass of one network over the same
  inputs (the same batch size, 1024), medians; ``recording_s`` is running both
  networks' recording graphs over the inputs (the two forward passes the method
  cannot do without), ``assignment_s`` the part spent in
  ``linear_sum_assignment`` (one per group, on the correlation matrices); the
  rest is the cross-moments and tracing;
* ``width``: weight matching of two untrained 784-w-w-10 MLPs (random init,
  different seeds) for several widths w, and its number of sweeps.

One thread (``torch.set_num_threads(1)``): the machine is shared.

    python benchmarks/bench_align.py           # writes benchmarks/results/align.json
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landscape import align
from landscape.data import load_dataset
from landscape.models import build_model
from landscape.paths.permutation import trace_permutations

# the module (``landscape.paths.align`` as an attribute is the function ``align``)
_align_mod = importlib.import_module("landscape.paths.align")
RESULTS = Path(__file__).parent / "results" / "align.json"
MNIST = Path("/work/shared/data/mnist")


def _data(n: int) -> tuple[Tensor, Tensor, str]:
    """``n`` MNIST train images (real if the files are there, else synthetic)."""
    try:
        d = load_dataset("mnist", root=MNIST, train_samples=n, test_samples=100)
        return d.x_train, d.y_train, f"MNIST ({MNIST}), {n} train images"
    except Exception as e:  # any missing file: fall back, and say so
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 1, 28, 28, generator=g)
        return x, torch.randint(0, 10, (n,), generator=g), f"synthetic ({e})"


def _epoch(net: nn.Module, x: Tensor, y: Tensor, seed: int) -> float:
    """Seconds of one SGD epoch (batch 128) of ``net`` on ``(x, y)``."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    net.train()
    perm = torch.randperm(len(y), generator=g)
    t0 = time.perf_counter()
    for i in range(0, len(y), 128):
        idx = perm[i:i + 128]
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - t0


def _median(fn: Callable[[], object], repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


@torch.no_grad()
def _forward(net: nn.Module, x: Tensor) -> None:
    net.eval()
    for xb in x.split(1024):
        net(xb)


def bench_model(name: str, kwargs: dict, x: Tensor, y: Tensor, samples: int,
                repeats: int) -> dict:
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_model(name, (1, 28, 28), 10, **kwargs)
        _epoch(net, x, y, seed)
        nets.append(net.eval())
    a, b = nets
    # one more epoch of B, on copies (the matched networks stay at one epoch)
    epoch = statistics.median(_epoch(copy.deepcopy(b), x, y, 2 + r) for r in range(repeats))
    res = align(a, b)
    wm = _median(lambda: align(a, b), repeats)
    wm_lsa, calls = _assignment_seconds(lambda: align(a, b))
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in res.perms.values())
    data = (x, y)
    am = _median(lambda: align(a, b, data, method="activations", samples=samples),
                 repeats)
    lsa, _ = _assignment_seconds(lambda: align(a, b, data, method="activations",
                                               samples=samples))
    rec = _median(lambda: _record_both(a, b, x[:samples]), repeats)
    fwd = _median(lambda: _forward(a, x[:samples]), repeats)
    row = {"model": name, "kwargs": kwargs,
           "params": sum(p.numel() for p in a.parameters()),
           "groups": res.spec.sizes, "units_moved": moved, "sweeps": res.sweeps,
           "epoch_s": epoch, "weight_matching_s": wm,
           "weight_matching_per_epoch": wm / epoch,
           "assignments": calls, "weight_matching_assignment_s": wm_lsa,
           "weight_matching_assignment_per_epoch": wm_lsa / epoch,
           "activation_samples": samples, "forward_s": fwd, "activation_matching_s": am,
           "activation_matching_per_forward": am / fwd, "recording_s": rec,
           "recording_per_forward": rec / fwd, "assignment_s": lsa,
           "assignment_per_forward": lsa / fwd,
           "activation_matching_without_assignment_per_forward": (am - lsa) / fwd}
    print(f"{name}: epoch {epoch:.2f} s, weight matching {wm:.3f} s "
          f"({wm / epoch:.3f} epochs, {res.sweeps} sweeps; {calls} assignments "
          f"{wm_lsa:.3f} s = {wm_lsa / epoch:.3f} epochs); activation matching "
          f"{am:.3f} s vs one forward pass {fwd:.3f} s ({am / fwd:.2f}x; recording both "
          f"{rec / fwd:.2f}x, assignment {lsa / fwd:.2f}x)", flush=True)
    return row


@torch.no_grad()
def _record_both(a: nn.Module, b: nn.Module, x: Tensor) -> None:
    """Run both networks' recording graphs (as activation matching does) over ``x``."""
    traced = trace_permutations(a)
    sites = [s for g in traced.spec.sizes for s in traced.observe.get(g, [])]
    recs = [_align_mod._recording(traced.graph, sites),
            _align_mod._recording(torch.fx.symbolic_trace(b), sites)]
    for r in recs:
        r.eval()
    for xb in x.split(1024):
        for r in recs:
            r(xb)


def _assignment_seconds(fn: Callable[[], object]) -> tuple[float, int]:
    """Seconds that one call of ``fn`` spends in ``linear_sum_assignment``, and the calls."""
    real, spent = _align_mod._assign, []

    def timed(S: Tensor) -> Tensor:
        t0 = time.perf_counter()
        out = real(S)
        spent.append(time.perf_counter() - t0)
        return out

    _align_mod._assign = timed
    try:
        fn()
    finally:
        _align_mod._assign = real
    return sum(spent), len(spent)


def bench_width(widths: list[int], repeats: int) -> list[dict]:
    rows = []
    for w in widths:
        nets = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            nets.append(build_model("mlp", (1, 28, 28), 10, hidden=w).eval())
        res = align(*nets)
        t = _median(lambda nets=nets: align(*nets), repeats)
        rows.append({"width": w, "weight_matching_s": t, "sweeps": res.sweeps})
        print(f"width {w}: weight matching {t:.3f} s ({res.sweeps} sweeps)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=10000, help="MNIST train images")
    p.add_argument("--samples", type=int, default=4096,
                   help="inputs of activation matching")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--widths", default="128,256,512,1024,2048")
    args = p.parse_args()
    torch.set_num_threads(1)
    x, y, source = _data(args.train)
    print(f"data: {source}", flush=True)
    rows = [bench_model("seed000-cnn", {}, x, y, args.samples, args.repeats),
            bench_model("mlp", {"hidden": 1024, "depth": 2}, x, y, args.samples,
                        args.repeats)]
    width = bench_width([int(w) for w in args.widths.split(",")], args.repeats)
    out = {"benchmark": "align", "data": source, "threads": 1,
           "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
           "targets": {"weight_matching_per_epoch": "<= 1",
                       "activation_matching_per_forward": "<= 2"},
           "models": rows, "width": width}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
