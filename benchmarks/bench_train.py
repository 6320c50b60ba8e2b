"""Training overheads: SWA over plain SGD per epoch, trajectory recording, and the
whole of ``landscape train`` against a plain-torch loop with and without per-epoch
evaluation.

Targets (DESIGN.md §4): SWA epoch time <= 1.03x plain SGD; recording <= 1.05x.
Each ratio compares the per-epoch ``seconds`` (minibatch loop + averaging +
recording; evaluation and checkpoint saving excluded) stored in the run files'
``/history/<run>/seconds``, median over epochs and over interleaved repeats.

The ``eval_cost`` rows time a whole ``landscape train`` call (both runs, the run
file, the final metrics of every solution) against :func:`plain_torch`, the same
work written in plain torch with ``torch.optim.swa_utils`` on the same tensors:
the SGD baseline and the SWA run with the SWA paper's schedule, BN statistics of
the average recomputed once, the train and test metrics of the three solutions at
the end.  ``landscape train`` evaluates train and test metrics after every epoch
by default (``--eval-every 1``; the SWA model with its BN statistics
recomputed); ``--eval-every 0`` evaluates at the end only.

    python benchmarks/bench_train.py            # writes benchmarks/results/train.json
    python benchmarks/bench_train.py --only eval_cost   # just those rows (merged in)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from landscape.config import TrainConfig
from landscape.data import TensorData, load_dataset
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


def _lr_factor(epoch: int, budget: int, final: float) -> float:
    """The SWA paper's schedule (reference ``train.py``), written out for the reference."""
    t = epoch / budget
    return 1.0 if t <= 0.5 else (1.0 - (1.0 - final) * (t - 0.5) / 0.4 if t <= 0.9
                                 else final)


def plain_torch(data: TensorData, cfg: TrainConfig) -> dict[str, float]:
    """The work of ``landscape train`` written in plain torch and ``swa_utils``.

    Returns:
        Test accuracy of each solution (a check that the loops are comparable).
    """
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel, update_bn

    from landscape.models import build_model

    def evaluate(net: torch.nn.Module) -> tuple[float, float, float, float]:
        net.eval()
        out = []
        with torch.no_grad():
            for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
                logits = torch.cat([net(x[i:i + 4096]) for i in range(0, len(y), 4096)])
                out += [F.cross_entropy(logits, y).item(),
                        (logits.argmax(1) == y).float().mean().item()]
        return tuple(out)  # type: ignore[return-value]

    acc: dict[str, float] = {}
    n = len(data.y_train)
    for run in ("sgd", "swa"):
        torch.manual_seed(cfg.seed)
        net = build_model(cfg.model, data.in_shape, data.n_classes)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.wd)
        avg = AveragedModel(net) if run == "swa" else None
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        for epoch in range(cfg.epochs):
            lr = cfg.lr * (_lr_factor(epoch, cfg.epochs, 0.01) if avg is None else
                           _lr_factor(epoch, cfg.swa_start, cfg.swa_lr / cfg.lr))
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                loss = F.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if avg is not None and epoch + 1 >= cfg.swa_start:
                avg.update_parameters(net)
        acc["sgd" if avg is None else "swa_last"] = evaluate(net)[3]
        if avg is not None:
            update_bn([(data.x_train[i:i + 4096],) for i in range(0, n, 4096)], avg)
            acc["swa"] = evaluate(avg)[3]
    return acc


def bench_eval_cost(model: str, num_samples: int, epochs: int, repeats: int,
                    tmp: Path) -> dict:
    """Wall and CPU time of ``landscape train`` (per-epoch evaluation on and off) and
    of :func:`plain_torch` on the same data, interleaved, median over repeats.

    Every variant runs on one thread, so its process CPU time is its wall time on an
    idle core; on shared cores the CPU time is the steadier of the two.

    Returns:
        The row.
    """
    data = load_dataset("mnist1d", root=tmp / "data", num_samples=num_samples)
    base = TrainConfig(model=model, num_samples=num_samples, data_root=str(tmp / "data"),
                       epochs=epochs, swa_start=epochs * 3 // 4, threads=1)
    variants = {"landscape_eval_every_1": base,  # the default
                "landscape_eval_every_0": base.replace(eval_every=0),
                "landscape_eval_every_0_record_0": base.replace(eval_every=0,
                                                                record_every=0)}
    names = (*variants, "plain_torch")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    acc: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall[name].append(time.perf_counter() - t0)
        cpu[name].append(time.process_time() - c0)
        return out

    for r in range(repeats):
        for name, cfg in variants.items():
            out = tmp / f"{name}-{r}.h5"
            timed(name, lambda cfg=cfg, out=out: train(cfg, out, progress=False,
                                                        log=lambda _: None, data=data))
            out.unlink()
        acc = timed("plain_torch", lambda: plain_torch(data, base))  # type: ignore[assignment]

    def summary(times: dict[str, list[float]]) -> dict[str, object]:
        med = {k: float(np.median(v)) for k, v in times.items()}
        return {"median": med, "runs": times,
                "over_plain_torch": {k: v / med["plain_torch"] for k, v in med.items()
                                     if k != "plain_torch"},
                "eval_every_1_over_0": med["landscape_eval_every_1"]
                / med["landscape_eval_every_0"]}

    return {
        "model": model, "data": "mnist1d", "train_samples": len(data.y_train),
        "test_samples": len(data.y_test), "epochs": epochs, "swa_start": base.swa_start,
        "repeats": repeats, "cpu_seconds": summary(cpu), "wall_seconds": summary(wall),
        "plain_torch_test_acc": acc,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--only", choices=("cases", "eval_cost"),
                   help="run only these rows and merge them into the stored JSON")
    args = p.parse_args()
    torch.set_num_threads(1)
    command = ("python benchmarks/bench_train.py"
               + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
               + (f" --epochs {args.epochs}" if args.epochs != 8 else "")
               + (f" --only {args.only}" if args.only else ""))
    results = {"command": command, "load_average_start": os.getloadavg(),
               "torch": torch.__version__, "machine": platform.machine(),
               "cpus": os.cpu_count(),
               "targets": {"swa_over_sgd": 1.03, "record_epoch_over_none": 1.05}, "cases": []}
    if args.only and RESULTS.exists():  # keep the other rows, say which command made each
        old = json.loads(RESULTS.read_text())
        keep = ("cases", "command", "load_average_start") if args.only == "eval_cost" else (
            "eval_cost",)
        results |= {k: old[k] for k in keep if k in old}
    with tempfile.TemporaryDirectory() as d:
        if args.only != "cases":
            r = bench_eval_cost("mnist1d-cnn", 10000, args.epochs, args.repeats, Path(d))
            r |= {"command": command, "load_average_start": os.getloadavg()}
            results["eval_cost"] = r
            for what in ("cpu_seconds", "wall_seconds"):
                m, ratio = r[what]["median"], r[what]["over_plain_torch"]
                print(f"landscape train vs plain torch ({r['train_samples']} samples, "
                      f"{r['epochs']} epochs, both runs), {what.replace('_', ' ')}: plain "
                      f"torch {m['plain_torch']:.2f} | "
                      + " | ".join(f"{k.removeprefix('landscape_')} {m[k]:.2f} "
                                   f"({v:.2f}x)" for k, v in ratio.items()))
        for model, n in (("mnist1d-cnn", 10000), ("mnist1d-smallcnn", 5000)):
            if args.only == "eval_cost":
                break
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
