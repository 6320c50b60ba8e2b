"""The GPU path end to end: train -> surface -> sharpness -> gap on CUDA and on the CPU.

Two cases, each on random data written in the real file formats (no download):

* ``svhn``: the seed-004 SmallCNN on 32x32 colour images (``train_32x32.mat``);
* ``cifar10``: a PreResNet-20 on CIFAR-shaped tensors (the binary version's files).

Each case runs the CLI (``landscape train``, ``surface``, ``sharpness``, ``gap``;
for ``svhn`` on CUDA (on the CPU only with ``--cpu-only``) also a second seed on
the same data, ``align --method activations --repair`` and ``merge``) with
``--device cuda`` and with ``--device cpu`` and records the wall time of every
stage, the speed-up, the peak GPU memory (``torch.cuda.max_memory_allocated`` in the
CUDA processes) and whether the CUDA and CPU solutions reach the same accuracy.
Writes ``benchmarks/results/device.json``.  ``benchmarks/device_check.sh`` runs it
on a lent GPU within 5 minutes; without CUDA it runs the CPU side only (``--cpu-only``)
so the script itself is tested.

    python benchmarks/device_check.py [--cpu-only] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "device.json"


def _write_svhn(root: Path, n_train: int, n_test: int) -> None:
    import scipy.io

    g = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        x = g.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = g.integers(1, 11, (n, 1)).astype(np.uint8)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


def _write_cifar(root: Path, n_train: int, n_test: int) -> None:
    g = np.random.default_rng(1)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True, exist_ok=True)
    per = -(-n_train // 5)
    for name, n in [(f"data_batch_{i}.bin", per) for i in range(1, 6)] + [
            ("test_batch.bin", n_test)]:
        rec = np.concatenate([g.integers(0, 10, (n, 1)), g.integers(0, 256, (n, 3072))], 1)
        rec.astype(np.uint8).tofile(d / name)


_PEAK = ("import runpy, sys, torch\n"
         "sys.argv = ['landscape', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('landscape', run_name='__main__')\n"
         "finally:\n"
         "    if torch.cuda.is_available():\n"
         "        print('PEAK_GPU_BYTES', torch.cuda.max_memory_allocated(), flush=True)\n")


def _cli(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True,
                       env=env)
    sec = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"failed: landscape {' '.join(args)}\n{r.stderr[-3000:]}")
    peak = [int(ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("PEAK_")]
    return sec, max(peak, default=0)


def _case(name: str, data: str, model: str, root: Path, device: str, epochs: int,
          grid: int, sizes: tuple[int, int], env: dict[str, str], align: bool = False
          ) -> dict:
    run = root / f"{name}-{device}.h5"
    common = ["--device", device]
    train = ["train", "--data", data, "--data-root", str(root), "--model", model,
             "--epochs", str(epochs), "--swa-start", str(max(1, epochs - 1)),
             "--batch-size", "128", "--lr", "0.05", "--quiet", "--force", *common]
    stages = {
        "train": [*train, "--out", str(run)],
        "surface": ["surface", str(run), "--grid", f"-1:1:{grid}", "--grid-y",
                    f"-1:1:{grid}", "--train-samples", str(min(2000, sizes[0])),
                    "--test-samples", str(min(1000, sizes[1])),
                    "--eval-batch-size", "1000", "--quiet", "--force", *common],
        "sharpness": ["sharpness", str(run), "--solutions", "swa", "--measures",
                      "hessian,trace,sam,width", "--samples", str(min(500, sizes[0])),
                      "--eval-batch-size", "500", "--top-k", "3", "--trace-samples", "20",
                      "--directions", "5", "--no-smallest", "--quiet", "--recompute",
                      *common],
        "gap": ["gap", str(run), "--grid", "-0.5:1.5:11", "--no-trajectories",
                "--quiet", *common],
    }
    if align:  # a second seed on the same data, aligned to the first, then merged
        run_b = root / f"{name}-{device}-b.h5"
        stages["train_b"] = [*train, "--out", str(run_b), "--seed", "1", "--data-seed", "0"]
        stages["align"] = ["align", str(run), str(run_b), "--out",
                           str(root / f"{name}-{device}-align.h5"), "--method",
                           "activations", "--repair", "--points", "5", "--samples",
                           str(min(2000, sizes[0])), "--quiet", "--force", *common]
        stages["merge"] = ["merge", str(run), str(run_b), "--out",
                           str(root / f"{name}-{device}-merged.h5"), "--quiet",
                           "--force", *common]
    out: dict = {"seconds": {}, "peak_gpu_bytes": {}}
    for stage, args in stages.items():
        sec, peak = _cli(args, env)
        out["seconds"][stage] = sec
        out["peak_gpu_bytes"][stage] = peak
        print(f"{name:8s} {device:5s} {stage:9s} {sec:7.1f} s"
              + (f"  peak GPU {peak / 2**20:.0f} MiB" if peak else ""), flush=True)
    import h5py

    with h5py.File(run) as f:
        out["swa_test_acc"] = float(f["solutions/swa"].attrs["test_acc"])
        out["lambda_max"] = float(f["measures/swa/hessian"].attrs["lambda_max"])
    if align:
        with h5py.File(root / f"{name}-{device}-align.h5") as f:
            a = f["alignments"][next(iter(f["alignments"]))].attrs
            out["aligned_test_err_barrier"] = float(a["aligned_test_err_barrier"])
            out["repair_test_err_barrier"] = float(a["repair_test_err_barrier"])
        with h5py.File(root / f"{name}-{device}-merged.h5") as f:
            out["merged_test_acc"] = float(f["solutions/merged"].attrs["test_acc"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-only", action="store_true", help="no CUDA side (script test)")
    p.add_argument("--quick", action="store_true", help="tiny sizes")
    args = p.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_only
    devices = (["cuda"] if cuda else []) + ["cpu"]
    n_train, n_test, epochs, grid = (600, 300, 2, 3) if args.quick else (5000, 1000, 2, 11)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    results: dict = {"command": "bash benchmarks/device_check.sh", "machine":
                     platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                     "cuda": torch.cuda.get_device_name(0) if cuda else None,
                     "sizes": {"train": n_train, "test": n_test, "epochs": epochs,
                               "grid": f"{grid}x{grid}"}, "cases": {}}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        _write_svhn(root, n_train, n_test)
        _write_cifar(root, n_train, n_test)
        for name, data, model in (("svhn", "svhn", "seed004-cnn"),
                                  ("cifar10", "cifar10", "preresnet")):
            case = {dev: _case(name, data, model, root, dev, epochs, grid,
                               (n_train, n_test), env,
                               align=name == "svhn" and (dev == "cuda" or not cuda))
                    for dev in devices}
            if cuda:
                case["speedup"] = {s: case["cpu"]["seconds"][s] / case["cuda"]["seconds"][s]
                                   for s in case["cpu"]["seconds"]}
            results["cases"][name] = case
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
