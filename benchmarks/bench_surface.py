"""Benchmark of `landscape.surface` (issue 3): cost per point, loss-landscapes, ranks, memory.

Run: ``.venv/bin/python benchmarks/bench_surface.py`` (about 2 minutes on 2 CPU cores);
writes ``benchmarks/results/surface.json`` (``--out`` elsewhere; ``--quick``: smaller
grids and fewer repetitions, a check that it runs; ``--no-loss-landscapes`` skips (b)).

* (a) seconds per grid point over the forward floor (the same samples pushed
  through the bare model under ``inference_mode`` on pre-loaded tensors), bn=keep,
  on the seed-000 CNN (random 1x28x28 inputs: MNIST files are not available
  offline) and the MNIST-1D CNN (random weights, MNIST-1D-shaped random inputs),
  2000 samples each (1000 train + 1000 test, evaluated in one fused pass).
* (b) ours vs ``loss-landscapes``' ``random_plane`` on the same model and data,
  installed at run time with ``pip install --target`` (skipped if unavailable).
* (c) ``torchrun`` 2 ranks x 1 thread vs 1 rank x 1 thread and 1 rank x 2 threads.
* (d) peak RSS (``VmHWM`` of ``/proc/self/status``) of a 21x21 and an 81x81
  surface (separate processes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "surface.json"
TMP = Path(os.environ.get("BENCH_TMP", "/tmp/bench_surface"))
PY = sys.executable
#: Grid steps of (a), reps of the timings, (c)'s grid and rounds, (d)'s two grids.
SIZES = {"steps": 5, "reps": 3, "floor_reps": 10, "rank_grid": "-1:1:41", "rank_rounds": 3,
         "mem_grids": ("-1:1:21", "-1:1:81")}
QUICK = {"steps": 3, "reps": 1, "floor_reps": 2, "rank_grid": "-1:1:9", "rank_rounds": 1,
         "mem_grids": ("-1:1:5", "-1:1:11")}


def _data(in_shape: tuple[int, ...], n: int = 2000):
    from landscape.data import TensorData

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *in_shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorData("random", x[: n // 2], y[: n // 2], x[n // 2:], y[n // 2:], 10)


def _best(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_point_cost(model_name: str, in_shape: tuple[int, ...], sizes: dict = SIZES,
                     loss_landscapes: bool = True) -> dict:
    """(a) and (b) for one model."""
    from landscape.directions import random_direction
    from landscape.evaluate import Evaluator
    from landscape.models import build_model
    from landscape.surface import SurfaceGrid, evaluate_grid, parse_grid

    torch.manual_seed(0)
    net = build_model(model_name, in_shape, 10)
    data = _data(in_shape)
    ev = Evaluator(net, *data.splits(), bn="keep")
    c = ev.layout.read(net).double()
    cb = ev.buffer_layout.read(net, buffers=True).double()
    gen = torch.Generator().manual_seed(0)
    d0 = random_direction(ev.layout, c, generator=gen)
    d1 = random_direction(ev.layout, c, generator=gen)
    steps = sizes["steps"]
    grid = SurfaceGrid(x=parse_grid(f"-1:1:{steps}"), y=parse_grid(f"-1:1:{steps}"),
                       center=c, center_buffers=cb, d0=d0, d1=d1)
    ours = _best(lambda: evaluate_grid(grid, ev), reps=sizes["reps"]) / grid.n_points
    x_all = torch.cat([data.x_train, data.x_test])
    net.eval()

    @torch.inference_mode()
    def floor() -> None:
        for xb in x_all.split(4096):
            net(xb)

    fl = _best(floor, reps=sizes["floor_reps"])
    res = {"model": model_name, "n_params": ev.layout.numel, "samples": len(x_all),
           "grid": f"{steps}x{steps}", "sec_per_point": ours, "forward_floor_sec": fl,
           "ratio_over_floor": ours / fl, "target_ratio_max": 1.2,
           "met": ours / fl <= 1.2}
    t0 = time.perf_counter()
    ev_c = Evaluator(net, *data.splits(), bn="keep", compile=True)
    evaluate_grid(grid, ev_c)  # compiles
    first = time.perf_counter() - t0
    compiled = _best(lambda: evaluate_grid(grid, ev_c), reps=sizes["reps"]) / grid.n_points
    res["compiled"] = {"sec_per_point": compiled, "ratio_over_floor": compiled / fl,
                       "speedup_over_eager": ours / compiled,
                       "first_grid_sec_incl_compile": first}
    net.eval()
    res["loss_landscapes"] = bench_loss_landscapes(net, x_all, torch.cat(
        [data.y_train, data.y_test]), steps, ours) if loss_landscapes else {
        "skipped": "--no-loss-landscapes"}
    return res


def bench_loss_landscapes(net, x, y, steps: int, ours: float) -> dict:
    """(b) loss-landscapes' random_plane on the same model and data."""
    target = Path("/tmp/ll")
    if not (target / "loss_landscapes").exists():
        r = subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "--target",
                            str(target), "loss-landscapes"], capture_output=True, text=True)
        if r.returncode:
            return {"skipped": f"pip install failed: {r.stderr.strip()[-300:]}"}
    sys.path.insert(0, str(target))
    try:
        import loss_landscapes
        import loss_landscapes.metrics as llm
    except Exception as e:
        return {"skipped": f"import failed: {e!r}"}
    metric = llm.Loss(torch.nn.CrossEntropyLoss(), x, y)

    errors = {}
    for norm in ("filter", "layer"):

        def run(norm: str = norm) -> None:
            with torch.no_grad():
                loss_landscapes.random_plane(net, metric, distance=1.0, steps=steps,
                                             normalization=norm, deepcopy_model=True)

        try:
            t = _best(run, reps=5) / (steps * steps)
            break
        except Exception as e:
            errors[norm] = repr(e)
    else:
        return {"skipped": f"random_plane failed: {errors}"}
    return {"normalization": norm, "errors": errors, "sec_per_point": t,
            "ours_sec_per_point": ours, "speedup": t / ours,
            "target_speedup_min": 3.0, "met": t / ours >= 3.0}


# Peak memory from VmHWM: ru_maxrss would carry the parent's RSS over fork and exec.
WORKER = """
import os, sys, time, torch
from landscape.jobs import SurfaceConfig, compute_surface
run, grid, threads, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
kw = dict(train_samples=200, test_samples=100) if extra == 'small' else {}
t0 = time.perf_counter()
compute_surface(run, SurfaceConfig(grid=grid, bn='keep', **kw), log=lambda _: None)
if int(os.environ.get('RANK', '0')) == 0:
    hwm = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM'))
    print('RESULT', time.perf_counter() - t0, int(hwm.split()[1]))
"""


def _worker(run: Path, grid: str, threads: int, ranks: int = 1, extra: str = "") -> tuple:
    script = TMP / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [PY, str(script)] if ranks == 1 else [
        str(Path(PY).with_name("torchrun")), "--standalone", "--nproc-per-node", str(ranks),
        str(script)]
    r = subprocess.run([*cmd, str(run), grid, str(threads), extra or "-"], env=env,
                       capture_output=True, text=True, timeout=600)
    line = [s for s in r.stdout.splitlines() if s.startswith("RESULT")]
    if not line:
        raise RuntimeError(r.stderr[-2000:])
    _, sec, rss = line[0].split()
    return float(sec), int(rss)


def bench_ranks_and_memory(sizes: dict = SIZES) -> dict:
    """(c) and (d) on a briefly trained MNIST-1D run (2000 train / 500 test samples)."""
    from landscape.config import TrainConfig
    from landscape.train import train

    TMP.mkdir(parents=True, exist_ok=True)
    base = TMP / "run.h5"
    if not base.exists():
        cfg = TrainConfig(num_samples=2500, epochs=3, swa_start=2, data_root=str(TMP / "data"))
        train(cfg, base, progress=False, log=lambda _: None)

    def fresh(name: str) -> Path:
        p = TMP / name
        p.write_bytes(base.read_bytes())
        return p

    grid = sizes["rank_grid"]  # enough points that set-up (load, process group) is small
    times: dict[str, list[float]] = {"1x1": [], "2x1": [], "1x2": []}
    for _ in range(sizes["rank_rounds"]):  # round-robin, median: the machine is shared
        times["1x1"].append(_worker(fresh("r1.h5"), grid, 1)[0])
        times["2x1"].append(_worker(fresh("r2.h5"), grid, 1, ranks=2)[0])
        times["1x2"].append(_worker(fresh("r1x2.h5"), grid, 2)[0])
    t1, t2, t1x2 = (float(np.median(times[k])) for k in ("1x1", "2x1", "1x2"))
    n = grid.rsplit(":", 1)[1]
    ranks = {"grid": f"{n}x{n}", "samples": 2500, "one_rank_1thread_sec": t1,
             "two_ranks_1thread_sec": t2, "one_rank_2threads_sec": t1x2,
             "speedup_2ranks_vs_1rank_1thread": t1 / t2,
             "speedup_2ranks_vs_1rank_2threads": t1x2 / t2,
             "target_speedup_min": 1.6, "met": t1 / t2 >= 1.6,
             "all_runs_sec": times,
             "note": "wall time of compute_surface incl. loading the run file and the "
                     "process group set-up; median of round-robin runs"}
    small, large = sizes["mem_grids"]
    _, rss21 = _worker(fresh("m21.h5"), small, 1, extra="small")
    _, rss81 = _worker(fresh("m81.h5"), large, 1, extra="small")
    mem = {"grids": [small, large], "peak_rss_kib_21x21": rss21, "peak_rss_kib_81x81": rss81,
           "ratio": rss81 / rss21, "target_ratio_max": 1.1, "met": rss81 / rss21 <= 1.1,
           "note": "peak RSS is VmHWM of the worker process; train/test subsets of 200/100 "
                   "samples to keep 6561 points quick (keys name the full-size grids)"}
    return {"ranks": ranks, "memory": mem}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small grids: a check that it runs")
    p.add_argument("--no-loss-landscapes", action="store_true",
                   help="skip (b) (it pip-installs loss-landscapes into /tmp/ll when absent)")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    sizes = QUICK if a.quick else SIZES
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out: dict = {"device": "cpu", "cpu_cores": os.cpu_count(), "torch": torch.__version__,
                 "threads": torch.get_num_threads(),
                 "data_note": "seed000-cnn on random 1x28x28 inputs (MNIST unavailable "
                              "offline); mnist1d-cnn with random weights on random "
                              "(1,40) inputs; 2000 samples each",
                 "torch_compile": "point_cost[i].compiled: the same grid through "
                                  "Evaluator(compile=True) (landscape surface --compile)"}
    out["quick"] = a.quick
    out["point_cost"] = [bench_point_cost(m, shape, sizes, not a.no_loss_landscapes)
                         for m, shape in (("seed000-cnn", (1, 28, 28)),
                                          ("mnist1d-cnn", (1, 40)))]
    for r in out["point_cost"]:
        ll = r["loss_landscapes"]
        print(f"{r['model']}: {r['sec_per_point'] * 1e3:.2f} ms/point, floor "
              f"{r['forward_floor_sec'] * 1e3:.2f} ms, ratio {r['ratio_over_floor']:.2f} "
              f"(target <= 1.2); loss-landscapes "
              + (f"{ll['sec_per_point'] * 1e3:.2f} ms/point, ours {ll['speedup']:.2f}x faster"
                 if "speedup" in ll else ll["skipped"])
              + f"; compiled {r['compiled']['sec_per_point'] * 1e3:.2f} ms/point "
              f"({r['compiled']['speedup_over_eager']:.2f}x eager, compile "
              f"{r['compiled']['first_grid_sec_incl_compile']:.0f} s)")
    out |= bench_ranks_and_memory(sizes)
    rk, mem = out["ranks"], out["memory"]
    print(f"ranks: 1x1 {rk['one_rank_1thread_sec']:.2f}s, 2x1 {rk['two_ranks_1thread_sec']:.2f}s"
          f", 1x2 {rk['one_rank_2threads_sec']:.2f}s -> 2 ranks vs 1 rank/1 thread "
          f"{rk['speedup_2ranks_vs_1rank_1thread']:.2f}x (target >= 1.6), vs 1 rank/2 "
          f"threads {rk['speedup_2ranks_vs_1rank_2threads']:.2f}x")
    print(f"memory: 21x21 {mem['peak_rss_kib_21x21']} KiB, 81x81 "
          f"{mem['peak_rss_kib_81x81']} KiB, ratio {mem['ratio']:.3f} (target <= 1.1)")
    out["total_sec"] = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        out["peak_rss_kib_bench"] = int(next(ln for ln in f if ln.startswith("VmHWM")).split()[1])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
