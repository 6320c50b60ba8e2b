"""Paths between optima and the SWA family: what curves and SWAG cost.

Three rows on MNIST-1D (mnist1d-cnn, BatchNorm; one thread):

* ``curve_epoch``: one epoch of curve training (:func:`landscape.train_curve`,
  quadratic Bezier, one t per minibatch, the point built by ``functional_call``)
  against one epoch of the SGD baseline of ``landscape train``
  (:func:`landscape.train.train_run`) on the same data and batch size; median
  per-epoch ``seconds`` of each history.  Target (issue 18): <= 1.2x.
* ``swag_collection``: the SWA run of ``landscape train`` with ``--swag``
  (rank 20, collecting after every epoch from epoch 1: the worst case) against
  the same run without, timed as whole ``train_run`` calls with their per-epoch
  checkpoints (the SWAG state is saved in them), interleaved repeats, medians;
  also the per-epoch ``seconds``.  Target: <= 1.05x.
* ``profile``: evaluation along a curve (:func:`landscape.curve_profile`, BN
  statistics recomputed on train data at every t) per value of t, against its
  floor: one forward pass over train and test at fixed weights (``bn=keep``)
  plus one BN-recompute pass (``update_bn``) over the train data.

    python benchmarks/bench_curves.py          # writes benchmarks/results/curves.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

from landscape.config import ConnectConfig, TrainConfig
from landscape.data import load_dataset
from landscape.evaluate import Evaluator
from landscape.params import ParamLayout
from landscape.paths import Curve, curve_profile, train_curve
from landscape.train import make_model, train_run

RESULTS = Path(__file__).parent / "results" / "curves.json"


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def bench(num_samples: int, epochs: int, repeats: int, tmp: Path) -> dict:
    data = load_dataset("mnist1d", root=tmp / "data", num_samples=num_samples)
    base = TrainConfig(num_samples=num_samples, data_root=str(tmp / "data"), epochs=epochs,
                       swa_start=1, eval_every=0, record_every=0, threads=1)
    dev = torch.device("cpu")

    # ---------------------------------------------------------------- curve vs SGD epoch
    a_net, b_net = make_model(base, data), make_model(base.replace(seed=1), data)
    layout = ParamLayout.from_module(a_net)
    a, b = layout.read(a_net), layout.read(b_net)
    sgd_s, curve_s = [], []
    for r in range(repeats):
        folder = tmp / f"sgd-{r}"
        folder.mkdir()
        _, _, st, _ = train_run(base, "sgd", data, dev, folder, checkpoint=False)
        sgd_s += st.history["seconds"][1:]
        cc = ConnectConfig(epochs=epochs, batch_size=base.batch_size, lr=base.lr)
        cs = train_curve(a_net, Curve.on_segment("bezier", a, b), (data.x_train,
                         data.y_train), cc, wd=base.wd)
        curve_s += cs.history["seconds"][1:]
    curve_row = {"sgd_epoch_seconds": float(np.median(sgd_s)),
                 "curve_epoch_seconds": float(np.median(curve_s)),
                 "ratio": float(np.median(curve_s) / np.median(sgd_s)), "target": 1.2}

    # ---------------------------------------------------------------- SWAG vs SWA
    wall: dict[str, list[float]] = {"swa": [], "swa_swag": []}
    per_epoch: dict[str, list[float]] = {"swa": [], "swa_swag": []}
    for r in range(repeats):
        for name, cfg in (("swa", base), ("swa_swag", base.replace(swag=True))):
            folder = tmp / f"{name}-{r}"
            folder.mkdir()
            out: dict[str, object] = {}

            def run(cfg: TrainConfig = cfg, folder: Path = folder,
                    out: dict[str, object] = out) -> None:
                out["st"] = train_run(cfg, "swa", data, dev, folder)[2]

            wall[name].append(_timed(run))
            per_epoch[name] += out["st"].history["seconds"][1:]  # type: ignore[attr-defined]
    med = {k: float(np.median(v)) for k, v in wall.items()}
    med_ep = {k: float(np.median(v)) for k, v in per_epoch.items()}
    swag_row = {"run_seconds": med, "runs": wall, "epoch_seconds": med_ep,
                "ratio_run": med["swa_swag"] / med["swa"],
                "ratio_epoch": med_ep["swa_swag"] / med_ep["swa"], "rank": 20,
                "collections": epochs, "target": 1.05}

    # ---------------------------------------------------------------- profile along t
    points = 11
    curve = Curve.on_segment("bezier", a, b)
    ev = Evaluator(copy.deepcopy(a_net), data.batches("train"), data.batches("test"))
    keep = Evaluator(copy.deepcopy(a_net), data.batches("train"), data.batches("test"),
                     bn="keep")
    bufs = ParamLayout.buffers_of(a_net).read(a_net, buffers=True)
    bn_net = copy.deepcopy(a_net)
    x_bn = list(data.x_train.split(4096))
    prof, fwd, bnp = [], [], []
    for _ in range(repeats):
        prof.append(_timed(lambda: curve_profile(ev, curve, points)) / points)
        fwd.append(np.median([_timed(lambda: keep.evaluate(a, bufs)) for _ in range(5)]))
        bnp.append(np.median([_timed(lambda: update_bn(x_bn, bn_net)) for _ in range(5)]))
    p, f, bn = float(np.median(prof)), float(np.median(fwd)), float(np.median(bnp))
    prof_row = {"points": points, "seconds_per_t": p, "forward_seconds": f,
                "bn_pass_seconds": bn, "floor_seconds": f + bn, "ratio_to_floor": p / (f + bn)}
    return {"model": base.model or "mnist1d-cnn", "n_params": layout.numel,
            "train_samples": len(data.y_train), "test_samples": len(data.y_test),
            "epochs": epochs, "batch_size": base.batch_size, "repeats": repeats,
            "curve_epoch": curve_row, "swag_collection": swag_row, "profile": prof_row}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    load0 = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as d:
        row = bench(args.num_samples, args.epochs, args.repeats, Path(d))
    res = {"command": "python benchmarks/bench_curves.py "
           f"--num-samples {args.num_samples} --epochs {args.epochs} "
           f"--repeats {args.repeats}",
           "load_average_start": load0, "load_average_end": list(os.getloadavg()),
           "torch": torch.__version__, "machine": platform.machine(),
           "cpus": os.cpu_count(), "threads": 1,
           "targets": {"curve_epoch_over_sgd_epoch": 1.2, "swag_over_swa": 1.05},
           "cases": [row]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: row[k] for k in ("curve_epoch", "profile")}, indent=1))
    print(json.dumps({k: v for k, v in row["swag_collection"].items() if k != "runs"},
                     indent=1))


if __name__ == "__main__":
    main()
