"""Hessian-vector products and top eigenvalues: ours against PyHessian, in wall time.

Run (PyHessian is installed for this benchmark only, never as a dependency)::

    pip install --no-deps --target /tmp/pyhessian-site pyhessian==0.1
    python benchmarks/bench_pyhessian.py --pyhessian-site /tmp/pyhessian-site

writes ``benchmarks/results/pyhessian.json`` (about 12 minutes on 2 CPU cores;
``--only``, ``--no-rss``, ``--threads 1`` make it shorter).
Without PyHessian importable it prints how to install it and exits 0.

Set-up: the seed-000 BN CNN (``seed000-cnn``) trained briefly on 2000
synthetic "digit-like" 1x28x28 images (ten smooth stroke templates, randomly
shifted, plus noise; MNIST cannot be downloaded here), BatchNorm in eval mode,
mean cross-entropy over all 2000 samples in one batch, float32 — exactly what
PyHessian's single-batch mode ``hessian(model, criterion, data=(x, y))``
differentiates.

* (a) seconds per HVP of each formulation against PyHessian's own product
  (``hessian_vector_product(gradsH, params, v)`` on its kept graph), timed
  round-robin (A, B, C, C, B, A, ...) at 1 and 2 threads; medians, with the
  interquartile range over the median as the noise;
* (b) peak RSS of each formulation (one subprocess each: load, build, 3 HVPs),
  at 2000 samples and at 8x the samples (the memory-flatness target);
* (c) wall time of the top-1 and top-5 eigenvalues: PyHessian's power
  iteration (``eigenvalues(top_n=k)``, maxIter 100, tol 1e-3, graph build
  included) vs ARPACK Lanczos (``hessian_top_eigenvalues``, tol 1e-3, graph
  build included) over the fastest formulation, the package's product
  (``landscape``: ``EmpiricalRisk.hvp``, what the measures use) and its
  memory-flat set-up ``landscape-chunked-250``; medians over seeds and the median of the
  per-seed ratios (at 2 threads a busy machine stalls OpenMP barriers now and
  then), with the relative error against a tight solve.

Plugging in another HVP: ``--hvp pkg.module:factory`` or ``--hvp file.py:factory``
(repeatable) where ``factory(model, x, y)`` returns ``hvp(v) -> Hv`` on flat
float32 vectors in ``model.parameters()`` order, for the mean cross-entropy of
``model`` (in eval mode) over ``(x, y)``.  ``--only NAME,...`` restricts (a)-(c)
to some formulations (PyHessian always runs).

Targets (DESIGN.md §4): per-HVP wall <= PyHessian's; top 5 <= 0.5x its wall;
top 1 <= 1.0x.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from landscape import _malloc
from landscape.models import build_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "pyhessian.json"
HVP = Callable[[Tensor], Tensor]
# PyHessian builds its graph with loss.backward(create_graph=True); torch warns about it.
warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated")  # torch.func.jvp
Factory = Callable[[nn.Module, Tensor, Tensor], HVP]


# =========================================================================== data, model
def digit_like(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` 1x28x28 images of ten smooth stroke templates, shifted and noisy, labels 0-9."""
    g = torch.Generator().manual_seed(seed)
    k = torch.exp(-torch.arange(-4, 5, dtype=torch.float32).pow(2) / 4)
    k = (k[:, None] * k[None, :] / k.sum() ** 2)[None, None]
    raw = torch.randn(10, 1, 28, 28, generator=g)
    smooth = F.conv2d(raw, k, padding=4)
    templates = (smooth > smooth.flatten(1).quantile(0.8, dim=1)[:, None, None, None]).float()
    y = torch.randint(0, 10, (n,), generator=g)
    shift = torch.randint(-2, 3, (n, 2), generator=g)
    x = torch.stack([templates[c].roll((int(s[0]), int(s[1])), (1, 2))
                     for c, s in zip(y.tolist(), shift, strict=True)])
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    return (x - 0.2) / 0.5, y


def trained_model(x: Tensor, y: Tensor, epochs: int = 3, seed: int = 0,
                  model: str = "seed000-cnn") -> nn.Module:
    """A registered model (the seed-000 CNN by default) after a few SGD epochs on ``x, y``
    (batches of 64, lr 0.05, momentum 0.9): a spectrum with the outliers of a trained net."""
    torch.manual_seed(seed)
    net = build_model(model, tuple(x.shape[1:]), 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


# =========================================================================== formulations
def _split(params: list[Tensor]) -> Callable[[Tensor], list[Tensor]]:
    numels = [p.numel() for p in params]

    def split(v: Tensor) -> list[Tensor]:
        return [c.view_as(p) for c, p in zip(v.split(numels), params, strict=True)]

    return split


def _flat(ts) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def landscape_core(model: nn.Module, x: Tensor, y: Tensor, *, batch: int | None = None,
                   graph_cache: int = 1, lean: bool = True,
                   dtype: torch.dtype = torch.float32) -> HVP:
    """The package's own product, what every HVP measure uses (``MeasureContext.hvp``):
    ``EmpiricalRisk(model, TensorBatches(x, y, batch), graph_cache=...).hvp`` at the
    model's weights, its gradient graphs built under ``HessianMode`` (``lean=False``:
    autograd's own double backward, the core before the mode)."""
    from landscape.data import TensorBatches
    from landscape.evaluate import EmpiricalRisk

    risk = EmpiricalRisk(model.eval(), TensorBatches(x, y, batch or len(y)), dtype=dtype,
                         graph_cache=graph_cache)
    risk._lean_graph = lean
    hvp = risk.hvp(risk.layout.read(model, dtype=dtype))
    return lambda v: hvp(v.to(dtype)).float()


def params_graph(model: nn.Module, x: Tensor, y: Tensor) -> HVP:
    """PyHessian's formulation on flat vectors: the gradient graph of the module's own
    parameters built once, one ``autograd.grad(g, params, grad_outputs=v)`` per product."""
    params = [p for p in model.parameters() if p.requires_grad]
    split = _split(params)
    with torch.enable_grad():
        g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)

    def hvp(v: Tensor) -> Tensor:
        return _flat(torch.autograd.grad(g, params, split(v), retain_graph=True))

    return hvp


def params_chunked(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> HVP:
    """Memory-flat: per product and per batch, forward + gradient graph + double backward."""
    params = [p for p in model.parameters() if p.requires_grad]
    split, n = _split(params), len(y)

    def hvp(v: Tensor) -> Tensor:
        vs = split(v)
        out = [torch.zeros_like(p) for p in params]
        for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
            with torch.enable_grad():
                loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
                g = torch.autograd.grad(loss, params, create_graph=True)
                hv = torch.autograd.grad(g, params, vs)
            for o, h in zip(out, hv, strict=True):
                o.add_(h)
        return _flat(out)

    return hvp


def params_cached(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500,
                  budget_samples: int | None = None) -> HVP:
    """Batched with a graph cache: the gradient graphs of the first batches (up to
    ``budget_samples``) are kept and reused, the others recomputed per product; all
    kept = PyHessian's speed, none kept = :func:`params_chunked`'s flat memory."""
    params = [p for p in model.parameters() if p.requires_grad]
    split, n = _split(params), len(y)
    budget = n if budget_samples is None else budget_samples
    batches = list(zip(x.split(batch), y.split(batch), strict=True))

    def grad_graph(xb: Tensor, yb: Tensor) -> tuple[Tensor, ...]:
        with torch.enable_grad():
            loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
            return torch.autograd.grad(loss, params, create_graph=True)

    kept, seen = [], 0
    for xb, yb in batches:
        if seen + len(yb) > budget:
            break
        kept.append(grad_graph(xb, yb))
        seen += len(yb)

    def hvp(v: Tensor) -> Tensor:
        vs = split(v)
        out = [torch.zeros_like(p) for p in params]
        for i, (xb, yb) in enumerate(batches):
            keep = i < len(kept)
            g = kept[i] if keep else grad_graph(xb, yb)
            with torch.enable_grad():
                hv = torch.autograd.grad(g, params, vs, retain_graph=keep)
            for o, h in zip(out, hv, strict=True):
                o.add_(h)
        return _flat(out)

    return hvp


def func_vjp(model: nn.Module, x: Tensor, y: Tensor) -> HVP:
    """``torch.func``: reverse-over-reverse, ``vjp(grad(f))`` built once, reused."""
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    split = _split(list(params.values()))

    def loss(p: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(torch.func.functional_call(model, {**p, **buffers}, (x,)), y)

    _, vjp_fn = torch.func.vjp(torch.func.grad(loss), params)

    def hvp(v: Tensor) -> Tensor:
        (hv,) = vjp_fn(dict(zip(names, split(v), strict=True)))
        return _flat(hv[k] for k in names)

    return hvp


def func_jvp(model: nn.Module, x: Tensor, y: Tensor) -> HVP:
    """``torch.func`` forward-over-reverse, ``jvp(grad(f))``: recomputed per product."""
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    split = _split(list(params.values()))
    grad = torch.func.grad(lambda p: F.cross_entropy(
        torch.func.functional_call(model, {**p, **buffers}, (x,)), y))

    def hvp(v: Tensor) -> Tensor:
        _, hv = torch.func.jvp(grad, (params,), (dict(zip(names, split(v), strict=True)),))
        return _flat(hv[k] for k in names)

    return hvp


#: The package's product in every set-up (one batch of all samples with its graph kept
#: is the default of ``MeasureContext``; ``chunked``: batches recomputed per product,
#: memory flat; ``cached``: batches whose graphs are all kept), then the baselines.
BUILTIN: dict[str, Factory] = {
    "landscape": landscape_core,
    "landscape-no-mode": lambda m, x, y: landscape_core(m, x, y, lean=False),
    "landscape-fresh-graph": lambda m, x, y: landscape_core(m, x, y, graph_cache=0),
    "landscape-float64": lambda m, x, y: landscape_core(m, x, y, dtype=torch.float64),
    "landscape-cached-250": lambda m, x, y: landscape_core(m, x, y, batch=250,
                                                           graph_cache=2**31),
    "landscape-chunked-250": lambda m, x, y: landscape_core(m, x, y, batch=250,
                                                            graph_cache=0),
    "landscape-chunked-500": lambda m, x, y: landscape_core(m, x, y, batch=500,
                                                            graph_cache=0),
    "params-graph": params_graph,
    "params-chunked-500": params_chunked,
    "params-cached-500": params_cached,
    "func-vjp": func_vjp,
    "func-jvp": func_jvp,
}


def _load_factory(spec: str) -> tuple[str, Factory]:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise SystemExit(f"--hvp {spec!r}: expected module:factory or file.py:factory")
    if target.endswith(".py"):
        s = importlib.util.spec_from_file_location(Path(target).stem, target)
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    else:
        mod = importlib.import_module(target)
    return spec, getattr(mod, attr)


# =========================================================================== PyHessian
def _import_pyhessian(site: str | None):
    if site:
        sys.path.insert(0, site)
    try:
        from pyhessian import hessian  # the package re-exports the class over its module
        module = importlib.import_module("pyhessian.hessian")
    except Exception as e:  # ImportError, or an old file failing on this torch
        return None, repr(e)
    return (hessian, module), None


def pyhessian_hvp(model: nn.Module, x: Tensor, y: Tensor, site: str | None = None):
    """PyHessian's single-batch product on its own kept graph, list in and list out."""
    (hessian, module), _ = _import_pyhessian(site)
    model.zero_grad(set_to_none=True)
    h = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    return h, lambda vs: module.hessian_vector_product(h.gradsH, h.params, vs)


# =========================================================================== (a) timing
def _round_robin(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, dict]:
    for fn in fns.values():
        fn()
    t: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[k]()
            t[k].append(time.perf_counter() - t0)
    out = {}
    for k, v in t.items():
        q1, q3 = np.percentile(v, [25, 75])
        out[k] = {"median": float(np.median(v)), "min": float(min(v)),
                  "iqr_over_median": float((q3 - q1) / np.median(v)), "reps": reps}
    return out


def bench_hvp(model, x, y, factories: dict[str, Factory], site, threads: int,
              reps: int) -> dict:
    torch.set_num_threads(threads)
    n = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    v = torch.randn(n, generator=g)
    ph, ph_hvp = pyhessian_hvp(copy.deepcopy(model), x, y, site)
    vs = _split(ph.params)(v)
    ref = _flat(ph_hvp(vs))
    hvps, setup, err = {}, {}, {}
    for name, fac in factories.items():
        t0 = time.perf_counter()
        hvps[name] = fac(copy.deepcopy(model), x, y)  # each its own module and graph
        setup[name] = time.perf_counter() - t0
        err[name] = float((hvps[name](v) - ref).norm() / ref.norm())
    fns = {"pyhessian": lambda: ph_hvp(vs)}
    fns |= {k: (lambda h=h: h(v)) for k, h in hvps.items()}
    t = _round_robin(fns, reps)
    base = t["pyhessian"]["median"]
    for k in t:
        t[k]["ratio_to_pyhessian"] = t[k]["median"] / base
        if k != "pyhessian":
            t[k] |= {"setup_seconds": setup[k], "rel_diff_to_pyhessian": err[k]}
    del ph, hvps
    model.zero_grad(set_to_none=True)
    return t


# =========================================================================== (b) memory
# Peak RSS from VmHWM: ru_maxrss would carry the parent's RSS over fork and exec.
_RSS_CHILD = """
import sys, torch
sys.path[:0] = {paths!r}
import bench_pyhessian as B
torch.set_num_threads(1)
state = torch.load({state!r}, weights_only=True)
x, y = B.digit_like({n})
model = B.build_model("seed000-cnn", (1, 28, 28), 10)
model.load_state_dict(state)
model.eval()
base = int(open("/proc/self/statm").read().split()[1]) * 4096
name = {name!r}
if name == "pyhessian":
    h, f = B.pyhessian_hvp(model, x, y, {site!r})
    vs = [torch.randn_like(p) for p in h.params]
    hvp = lambda v: f(vs)
else:
    hvp = B.factories({specs!r})[name](model, x, y)
v = torch.randn(sum(p.numel() for p in model.parameters()))
for _ in range(3):
    hvp(v)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print("RSS", base, int(hwm.split()[1]) * 1024)
"""


def bench_rss(names: list[str], specs: list[str], state: Path, n: int, site) -> dict:
    out = {}
    for name in names:
        code = _RSS_CHILD.format(paths=[str(ROOT / "benchmarks"), str(ROOT)],
                                 state=str(state), n=n, name=name, site=site, specs=specs)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RSS")]
        if r.returncode or not line:
            out[name] = {"error": r.stderr.strip()[-400:]}
            continue
        base, peak = map(int, line[0].split()[1:])
        out[name] = {"peak_rss_mb": peak / 2**20, "over_loaded_mb": (peak - base) / 2**20}
    return out


# =========================================================================== (c) eigenvalues
class _Counted:
    def __init__(self, fn: Callable) -> None:
        self.fn, self.n = fn, 0

    def __call__(self, *a):
        self.n += 1
        return self.fn(*a)


def bench_eigen(model, x, y, facs: dict[str, Factory], site, threads: int,
                seeds: int) -> dict:
    """Top-1 and top-5 wall time: PyHessian's power iteration once per seed, Lanczos
    over each of ``facs``; interleaved, graph builds included."""
    from landscape.sharpness.hessian import hessian_top_eigenvalues

    torch.set_num_threads(threads)
    (hessian, module), _ = _import_pyhessian(site)
    n = sum(p.numel() for p in model.parameters())
    model = copy.deepcopy(model)
    first = next(iter(facs.values()))
    tight = hessian_top_eigenvalues(first(copy.deepcopy(model), x, y), n, 5, tol=1e-10,
                                    ncv=30, dtype=torch.float32).eigenvalues
    orig = module.hessian_vector_product
    res: dict = {"reference_top5": tight.tolist(), "threads": threads}

    def power(k: int, s: int) -> tuple[list[float], int]:
        counted = _Counted(orig)
        module.hessian_vector_product = counted
        model.zero_grad(set_to_none=True)
        h = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        torch.manual_seed(s)
        vals, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=k)
        model.zero_grad(set_to_none=True)
        return vals, counted.n

    def lanczos(fac: Factory, k: int, s: int) -> tuple[list[float], int]:
        hvp = _Counted(fac(copy.deepcopy(model), x, y))
        r = hessian_top_eigenvalues(hvp, n, k, tol=1e-3, seed=s, dtype=torch.float32)
        return r.eigenvalues.tolist(), hvp.n

    methods = {"pyhessian": power} | {
        f"lanczos:{name}": (lambda k, s, f=fac: lanczos(f, k, s)) for name, fac in facs.items()}
    try:
        for k in (1, 5):
            rows: dict[str, list] = {m: [] for m in methods}
            for s in range(seeds):
                order = list(methods) if s % 2 == 0 else list(methods)[::-1]
                for m in order:
                    t0 = time.perf_counter()
                    vals, count = methods[m](k, s)
                    wall = time.perf_counter() - t0
                    vals = sorted(vals, reverse=True)
                    rel = max(abs(a - b) / abs(b) for a, b in zip(vals, tight, strict=False))
                    rows[m].append({"seconds": wall, "hvps": count, "max_rel_err": rel,
                                    "eigenvalues": vals})
            summ = {m: {"median_seconds": float(np.median([r["seconds"] for r in v])),
                        "min_seconds": float(min(r["seconds"] for r in v)),
                        "median_hvps": float(np.median([r["hvps"] for r in v])),
                        "max_rel_err": max(r["max_rel_err"] for r in v), "runs": v}
                    for m, v in rows.items()}
            base = summ["pyhessian"]
            for m in summ:  # same seed, same start vector: paired ratios
                summ[m]["wall_ratio_to_pyhessian"] = summ[m]["median_seconds"] / base[
                    "median_seconds"]
                summ[m]["paired_wall_ratio_median"] = float(np.median(
                    [a["seconds"] / b["seconds"] for a, b in
                     zip(rows[m], rows["pyhessian"], strict=True)]))
            res[f"top{k}"] = summ
    finally:
        module.hessian_vector_product = orig
    return res


# =========================================================================== main
#: Lanczos also runs over these (when selected): the core as it is and the memory-flat one.
EIGEN_DEFAULT = ("landscape", "landscape-chunked-250")


def factories(specs: list[str], only: list[str] | None = None) -> dict[str, Factory]:
    """Built-in formulations plus the ``--hvp`` ones, restricted to ``only``."""
    out = dict(BUILTIN)
    out.update(_load_factory(s) for s in specs)
    if only:
        missing = set(only) - set(out)
        if missing:
            raise SystemExit(f"--only: unknown {sorted(missing)}; known: {sorted(out)}")
        out = {k: v for k, v in out.items() if k in only}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pyhessian-site", default=None,
                   help="folder holding the pyhessian package (pip install --target)")
    p.add_argument("--hvp", action="append", default=[],
                   help="extra factory module:callable or file.py:callable (repeatable)")
    p.add_argument("--only", default=None, help="comma-separated formulations to run")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--eigen-hvp", default=None,
                   help="comma-separated formulations for Lanczos (default: the fastest at "
                        "the first thread count, " + ", ".join(EIGEN_DEFAULT) + ")")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    ph, why = _import_pyhessian(a.pyhessian_site)
    if ph is None:
        print("SKIPPED: PyHessian is not importable (" + why + "). It is a benchmark-only "
              "baseline, never a dependency: pip install --no-deps --target "
              "/tmp/pyhessian-site pyhessian==0.1 and pass --pyhessian-site "
              "/tmp/pyhessian-site")
        return 0
    facs = factories(a.hvp, a.only.split(",") if a.only else None)
    threads = [int(t) for t in a.threads.split(",")]
    x, y = digit_like(a.samples)
    torch.set_num_threads(max(threads))
    model = trained_model(x, y)
    n = sum(q.numel() for q in model.parameters())
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    res: dict = {
        "benchmark": "pyhessian", "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": "seed000-cnn", "n_params": n, "samples": a.samples,
        "train_acc": acc, "dtype": "float32", "loss": "mean cross-entropy, BN eval mode",
        "malloc": _malloc.STATE,
        "load_average_start": os.getloadavg(), "hvp": {}, "rss": {}, "eigen": {},
    }
    print(f"seed000-cnn, {n} params, {a.samples} digit-like samples, train acc {acc:.3f}")
    for t in threads:
        r = bench_hvp(model, x, y, facs, a.pyhessian_site, t, a.reps)
        res["hvp"][f"threads_{t}"] = r
        print(f"-- per HVP, {t} thread(s): median s (ratio to PyHessian, IQR/median)")
        for k, v in sorted(r.items(), key=lambda kv: kv[1]["median"]):
            print(f"   {k:28s} {v['median']:.4f} s  {v['ratio_to_pyhessian']:.2f}x  "
                  f"(±{v['iqr_over_median']:.0%})")
    if not a.no_rss:
        with tempfile.TemporaryDirectory() as d:
            state = Path(d) / "model.pt"
            torch.save(model.state_dict(), state)
            for mult in (1, 8):  # float64 at 8x needs ~11 GB: left out
                names8 = [k for k in facs if mult == 1 or "float64" not in k]
                r = bench_rss(["pyhessian", *names8], a.hvp, state, a.samples * mult,
                              a.pyhessian_site)
                res["rss"][f"samples_{a.samples * mult}"] = r
        print("-- peak RSS MB (over loaded model+data), samples x1 / x8")
        for k in res["rss"][f"samples_{a.samples}"]:
            r1 = res["rss"][f"samples_{a.samples}"][k]
            r8 = res["rss"][f"samples_{a.samples * 8}"].get(k, {"error": "not run at 8x"})
            if "error" in r1 or "error" in r8:
                print(f"   {k:28s} error: {r1.get('error') or r8.get('error')}")
                continue
            print(f"   {k:28s} {r1['peak_rss_mb']:.0f} ({r1['over_loaded_mb']:.0f}) / "
                  f"{r8['peak_rss_mb']:.0f} ({r8['over_loaded_mb']:.0f})")
    t1 = res["hvp"][f"threads_{threads[0]}"]
    fastest = min(facs, key=lambda k: t1[k]["median"])
    names = (a.eigen_hvp.split(",") if a.eigen_hvp else
             list(dict.fromkeys([fastest] + [k for k in EIGEN_DEFAULT if k in facs])))
    for t in threads:
        e = bench_eigen(model, x, y, {k: facs[k] for k in names}, a.pyhessian_site, t,
                        a.seeds)
        res["eigen"][f"threads_{t}"] = e
        for k in (1, 5):
            s = e[f"top{k}"]
            print(f"-- top {k}, {t} thread(s): median s (min), HVPs, max rel err, ratio "
                  "to PyHessian of medians (median of per-seed ratios)")
            for m, r in s.items():
                print(f"   {m:36s} {r['median_seconds']:6.2f} ({r['min_seconds']:6.2f}) "
                      f"{r['median_hvps']:4.0f}  {r['max_rel_err']:.1e}  "
                      f"{r['wall_ratio_to_pyhessian']:.2f}x "
                      f"({r['paired_wall_ratio_median']:.2f}x)")
    targets = {}
    for t in threads:
        h, e = res["hvp"][f"threads_{t}"], res["eigen"][f"threads_{t}"]
        targets[f"threads_{t}"] = {
            "per_hvp_le_pyhessian": {k: v["ratio_to_pyhessian"] <= 1.0 for k, v in h.items()
                                     if k != "pyhessian"},
            "top5_le_half": {m: r["wall_ratio_to_pyhessian"] <= 0.5
                             for m, r in e["top5"].items() if m != "pyhessian"},
            "top1_le_1": {m: r["wall_ratio_to_pyhessian"] <= 1.0
                          for m, r in e["top1"].items() if m != "pyhessian"},
        }
    if res["rss"]:  # 8x the samples within 1.2x the peak RSS (DESIGN.md §4)
        r1, r8 = res["rss"][f"samples_{a.samples}"], res["rss"][f"samples_{a.samples * 8}"]
        targets["memory_flat_8x_le_1.2x"] = {
            k: r8[k]["peak_rss_mb"] / r1[k]["peak_rss_mb"] <= 1.2 for k in r8
            if "peak_rss_mb" in r8[k] and "peak_rss_mb" in r1.get(k, {})}
    res["targets"] = targets
    res["load_average_end"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
