"""The malloc settings of ``landscape._malloc`` (issue #12): before/after in subprocesses.

Run: ``python benchmarks/bench_alloc.py`` (about 4-5 minutes on 2 CPU cores);
writes ``benchmarks/results/alloc.json``.

Every case runs in a fresh subprocess twice per round, once with
``LANDSCAPE_MALLOC=default`` (glibc's own settings: "before") and once without
it (the package default: "after"); the order alternates between rounds and the
medians over rounds are reported, each with wall, user and sys seconds (sys is
where page faults show), the peak RSS, and a check that both settings gave
identical results.

* ``eval``: one train+test evaluation (``Evaluator``, batch 4096, 2 threads) of
  the seed-004 SmallCNN on 10k random SVHN-shaped float32 images (8k train, 2k
  test, generated in memory), the first one of the process and a second one;
* ``train``: one epoch of ``landscape.train`` of the SmallCNN on 1600 such images
  (400 test; batch 128, 2 threads, no SWA, evaluation at the end), final
  weights compared; ``epoch_loop_seconds`` is the minibatch loop alone;
* ``paper``: ``landscape train --config paper --epochs 10
  --swa-start 8`` (MNIST-1D, the paper's config, 1 thread), whole process,
  stored solutions compared;
* ``floor``: the denominators of the benchmark ratios — the forward floor of
  ``bench_surface.py`` (2000 samples through the bare model under
  ``inference_mode``; seed-000 CNN and MNIST-1D CNN) and the forward+backward of
  ``bench_hessian.py`` (seed-000 CNN, 1000 samples), best and median of 10, 1
  thread (at 2 threads a forward this short stalls on a busy machine): the
  ratios there divide by a floor measured under the same settings, so they do
  not show this gain by themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "alloc.json"
SETTINGS = {"before": {"LANDSCAPE_MALLOC": "default"}, "after": {}}
PAPER = ["-m", "landscape", "train", "--config", "paper", "--epochs", "10",
         "--swa-start", "8", "--quiet", "--force"]


# =========================================================================== workers
def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


class _Clock:
    """Wall, user and sys seconds of a block (all threads of this process)."""

    def __enter__(self) -> dict:
        import resource

        self.r0, self.t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        self.out: dict = {}
        return self.out

    def __exit__(self, *exc) -> None:
        import resource

        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.out |= {"wall": time.perf_counter() - self.t0,
                     "user": r1.ru_utime - self.r0.ru_utime,
                     "sys": r1.ru_stime - self.r0.ru_stime,
                     "minor_faults": r1.ru_minflt - self.r0.ru_minflt}


def _svhn_like(n: int, n_train: int):
    import torch

    from landscape.data import TensorData

    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorData("svhn-random", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10)


def worker_eval() -> dict:
    import torch

    from landscape.evaluate import Evaluator
    from landscape.models import build_model

    torch.set_num_threads(2)
    data = _svhn_like(10_000, 8_000)
    torch.manual_seed(0)
    net = build_model("seed004-cnn", (3, 32, 32), 10)
    ev = Evaluator(net, *data.splits())
    w = ev.layout.read(net)
    with _Clock() as first:
        m = ev.evaluate(w)
    with _Clock() as second:
        m2 = ev.evaluate(w)
    assert m == m2
    return {"first": first, "second": second, "peak_rss_mb": _hwm_mb(),
            "result": repr(sorted((k, v.loss, v.acc, v.loss_sem) for k, v in m.items()))}


def worker_train() -> dict:
    import torch

    from landscape.config import TrainConfig
    from landscape.store import open_run, read_solution
    from landscape.train import train

    data = _svhn_like(2_000, 1_600)
    cfg = TrainConfig(data="svhn", model="seed004-cnn", epochs=1, swa=False, eval_every=0,
                      record_every=0, threads=2, batch_size=128, sgd_schedule="const")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "run.h5"
        with _Clock() as clock:
            train(cfg, out, progress=False, log=lambda _: None, data=data)
        with open_run(out) as f:
            sol = read_solution(f, "sgd")
            epoch = [float(s) for s in f["history/sgd/seconds"][()]]
    digest = hashlib.sha256(sol.weights.to(torch.float32).numpy().tobytes()).hexdigest()
    return {"train": clock, "epoch_loop_seconds": epoch, "peak_rss_mb": _hwm_mb(),
            "result": digest}


def worker_floor() -> dict:
    import numpy as np
    import torch

    from landscape.evaluate import EmpiricalRisk
    from landscape.models import build_model

    torch.set_num_threads(1)  # 2 threads: OpenMP barriers stall ~200 ms on a busy machine

    def timed(fn, reps: int = 10) -> dict:
        fn()
        ts = []
        with _Clock() as c:
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
        return {"best": min(ts), "median": float(np.median(ts)),
                "sys_per_call": c["sys"] / reps, "user_per_call": c["user"] / reps}

    out, check = {}, []
    for name, shape in (("seed000-cnn", (1, 28, 28)), ("mnist1d-cnn", (1, 40))):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2000, *shape, generator=g)
        y = torch.randint(0, 10, (2000,), generator=g)
        torch.manual_seed(0)
        net = build_model(name, shape, 10).eval()

        @torch.inference_mode()
        def floor(net=net, x=x) -> torch.Tensor:
            return torch.cat([net(xb) for xb in x.split(4096)])

        out[f"surface_floor_{name}"] = timed(floor)
        check.append(floor().double().sum().item())
        if name == "seed000-cnn":
            risk = EmpiricalRisk(net, (x[:1000], y[:1000]))  # bench_hessian's fb
            theta = risk.layout.read(net)
            out[f"hessian_fb_{name}"] = timed(lambda r=risk, t=theta: r.value_and_grad(t))
            check.append(risk.value_and_grad(theta)[0])
    return {**out, "peak_rss_mb": _hwm_mb(), "result": repr(check)}


WORKERS = {"eval": worker_eval, "train": worker_train, "floor": worker_floor}


# =========================================================================== parent
def _solutions_digest(path: Path) -> str:
    import h5py

    h = hashlib.sha256()
    with h5py.File(path) as f:
        for name in sorted(f["solutions"]):
            for k in ("weights", "buffers"):
                h.update(f[f"solutions/{name}/{k}"][()].tobytes())
    return h.hexdigest()


def _run(case: str, setting: str, tmp: Path) -> dict:
    """One subprocess; wall, user, sys and peak RSS of the whole process from wait4."""
    env = {k: v for k, v in os.environ.items() if k != "LANDSCAPE_MALLOC"}
    env |= SETTINGS[setting]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(":")
    if case == "paper":
        out = tmp / f"paper-{setting}.h5"
        cmd = [sys.executable, *PAPER, "--out", str(out), "--data-root", str(tmp / "data")]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", case]
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=so, stderr=se, text=True)
        _, status, ru = os.wait4(p.pid, 0)  # wait4: the child's own rusage
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read(), se.read()
    if p.returncode:
        raise SystemExit(f"{case} ({setting}) failed:\n{stderr[-2000:]}")
    if case == "paper":
        res = {"result": _solutions_digest(out)}
    else:
        res = json.loads(next(ln[7:] for ln in stdout.splitlines() if ln.startswith("RESULT ")))
    res["process"] = {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime,
                      "minor_faults": ru.ru_minflt, "peak_rss_mb": ru.ru_maxrss / 1024}
    res["command"] = " ".join(
        [*(f"{k}={v}" for k, v in SETTINGS[setting].items()), "python",
         *(a if not a.startswith(str(tmp)) else "TMP" + a[len(str(tmp)):] for a in cmd[1:])])
    return res


def _median(rows: list[dict]) -> dict:
    """Median of every numeric leaf over rounds."""
    import statistics

    out: dict = {}
    for k, v in rows[0].items():
        if isinstance(v, dict):
            out[k] = _median([r[k] for r in rows])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in rows)
        elif isinstance(v, list) and v and isinstance(v[0], float):
            out[k] = statistics.median(x for r in rows for x in r[k])
    return out


def _spread(rows: list[dict], key: tuple[str, ...]) -> float:
    vals = []
    for r in rows:
        for k in key:
            r = r[k]
        vals.append(r)
    return max(vals) / min(vals) if min(vals) > 0 else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cases", default="eval,train,paper,floor")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(WORKERS[a.worker]()), flush=True)
        return 0
    cases = a.cases.split(",")
    res: dict = {"benchmark": "alloc", "python": platform.python_version(),
                 "machine": platform.machine(), "cpus": os.cpu_count(),
                 "command": "python benchmarks/bench_alloc.py " + " ".join(sys.argv[1:]),
                 "settings": {"before": "LANDSCAPE_MALLOC=default (glibc defaults)",
                              "after": "package default (landscape._malloc.configure)"},
                 "rounds": a.rounds, "load_average_start": os.getloadavg(), "cases": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "paper" in cases:  # generate the MNIST-1D cache once, outside the timings
            subprocess.run([sys.executable, "-c", "from landscape.data import load_dataset; "
                            f"load_dataset('mnist1d', root={str(tmp / 'data')!r}, "
                            "num_samples=5000)"], cwd=ROOT, check=True,
                           env=os.environ | {"PYTHONPATH": str(ROOT)})
        runs = {c: {s: [] for s in SETTINGS} for c in cases}
        for r in range(a.rounds):
            for c in cases:
                for s in (("before", "after") if r % 2 == 0 else ("after", "before")):
                    row = _run(c, s, tmp)
                    runs[c][s].append(row)
                    print(f"round {r + 1} {c:6s} {s:6s} process wall {row['process']['wall']:6.1f}"
                          f" user {row['process']['user']:6.1f} sys {row['process']['sys']:5.1f}",
                          flush=True)
    for c in cases:
        results = {row["result"] for s in SETTINGS for row in runs[c][s]}
        med = {s: _median(runs[c][s]) for s in SETTINGS}
        b, af = med["before"]["process"], med["after"]["process"]
        res["cases"][c] = {
            "identical_results": len(results) == 1,
            "commands": {s: runs[c][s][0]["command"] for s in SETTINGS},
            "median": med,
            "wall_spread_max_over_min": {s: _spread(runs[c][s], ("process", "wall"))
                                         for s in SETTINGS},
            "process_wall_after_over_before": af["wall"] / b["wall"],
            "runs": runs[c],
        }
        assert len(results) == 1, f"{c}: the malloc settings changed the results: {results}"
    res["load_average_end"] = os.getloadavg()
    print("\nmedians (before -> after), seconds:")
    for c, r in res["cases"].items():
        m = r["median"]
        for part in ("process", "first", "second", "train"):
            if part in m["before"]:
                b, af = m["before"][part], m["after"][part]
                print(f"  {c:6s} {part:8s} wall {b['wall']:6.2f} -> {af['wall']:6.2f}  user "
                      f"{b['user']:6.2f} -> {af['user']:6.2f}  sys {b['sys']:5.2f} -> "
                      f"{af['sys']:5.2f}")
        if "epoch_loop_seconds" in m["before"]:
            print(f"  {c:6s} epoch loop {m['before']['epoch_loop_seconds']:.2f} -> "
                  f"{m['after']['epoch_loop_seconds']:.2f} s")
        for k in m["before"]:
            if k.startswith(("surface_floor", "hessian_fb")):
                b, af = m["before"][k], m["after"][k]
                print(f"  {k:30s} best {b['best'] * 1e3:7.2f} -> {af['best'] * 1e3:7.2f} ms  "
                      f"sys/call {b['sys_per_call'] * 1e3:6.2f} -> {af['sys_per_call'] * 1e3:6.2f}"
                      " ms")
        print(f"  {c:6s} peak RSS {m['before']['process']['peak_rss_mb']:.0f} -> "
              f"{m['after']['process']['peak_rss_mb']:.0f} MB; identical results: "
              f"{r['identical_results']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
