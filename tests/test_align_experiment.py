"""The ``align`` protocol end to end (``reproduce align --quick``), its verdicts and
the stability tool on its results."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape import store
from landscape.experiments import align as align_protocol
from landscape.experiments import reproduce, stability
from landscape.experiments.align import alignment_name, verdicts, width_method
from landscape.jobs import load_run_model
from landscape.models import build_model
from landscape.params import ParamLayout
from landscape.paths.align import align_paths, merge
from landscape.paths.permutation import (
    permutation_spec,
    permute_model,
    random_permutations,
)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _model_at(run: Path, solution: str = "sgd") -> tuple[torch.nn.Module, object, float]:
    model, data = load_run_model(run)
    with store.open_run(run) as f:
        s = store.read_solution(f, solution)
        wd = float(store.config_of(f)["wd"])
    ParamLayout.from_module(model).write(model, s.weights)
    return model.eval(), data, wd


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("align")
    out, runs = root / "out", root / "runs"
    reproduce("align", quick=True, out_dir=out, runs_dir=runs, log=lambda _m: None)
    return out, runs


def test_quick_writes_report_and_real_barriers(quick: tuple[Path, Path]) -> None:
    out, runs = quick
    r = store.read_results(out / "results.h5")
    m, ex = r["metrics"], r["attrs"]["extra"]
    assert ex["widths"] == [32, 64]
    for k in (1, 2):
        for sol in ("sgd", "swa"):
            for path in ("line", "aligned", "repair"):
                bars = m[width_method(sol, path, k)]
                assert np.isfinite(bars["test_err_barrier"]).all()
                assert np.isfinite(bars["train_loss_barrier"]).all()
    for sol in ("sgd", "swa", "merged"):
        assert 0.0 < m[sol]["test_acc"][0] <= 1.0
        assert m[sol]["hessian_lambda_max"][0] > 0.0
    # seed 0's SGD and SWA in the merged file are the run's own
    with store.open_run(runs / "mlp32" / "seed0.h5") as f:
        acc = store.solution_attrs(f)["sgd"]["test_acc"]
    assert m["sgd"]["test_acc"][0] == pytest.approx(acc)
    text = (out / "REPORT.md").read_text()
    assert "Does weight matching remove the barrier" in text
    assert "**Data: MNIST-1D**" in text
    assert (out / "barrier_width_sgd_test_err.png").is_file()


def test_aligned_barrier_equals_align_paths_of_the_run_files(quick: tuple[Path, Path]
                                                            ) -> None:
    out, runs = quick
    r = store.read_results(out / "results.h5")
    st = r["attrs"]["extra"]["settings"]
    a, data, wd = _model_at(runs / "mlp32" / "seed0.h5")
    b, _, _ = _model_at(runs / "mlp32" / "seed1.h5")
    train, test = data.splits(4096)
    ref = align_paths(a, b, train, test, points=st["points"], l2=wd,
                      samples=st["align_samples"])
    for path in ("line", "aligned", "repair"):
        got = r["metrics"][width_method("sgd", path, 1)]
        for k in ("test_err", "train_loss"):
            assert got[f"{k}_barrier"][0] == pytest.approx(ref.barriers[path][k],
                                                           rel=1e-5, abs=1e-7)
    stored = store.alignment_attrs(runs / "mlp32" / "pair0.h5", alignment_name("sgd"))
    assert stored["method"] == "weights"


def test_merge_of_a_model_with_itself_permuted_is_that_model() -> None:
    torch.manual_seed(0)
    net = build_model("mlp", (1, 40), 10, hidden=16).eval()
    spec = permutation_spec(net)
    other = permute_model(copy.deepcopy(net), spec, random_permutations(spec, seed=3))
    assert not all(torch.equal(p, q) for p, q in zip(net.parameters(),
                                                       other.parameters(), strict=True))
    merged = merge([net, other]).model
    for (name, p), q in zip(net.named_parameters(), merged.parameters(), strict=True):
        torch.testing.assert_close(q, p, msg=name)


def _metrics(aligned: list[float], line: list[float], wide: list[float],
             acc: list[float]) -> dict:
    m = {}
    for k, al in ((1, aligned), (8, wide)):
        m[width_method("sgd", "line", k)] = {"test_err_barrier": line,
                                             "train_loss_barrier": line}
        m[width_method("sgd", "aligned", k)] = {"test_err_barrier": al,
                                                "train_loss_barrier": al}
        m[width_method("sgd", "repair", k)] = {"test_err_barrier": al,
                                               "train_loss_barrier": al}
    m["sgd"] = {"test_acc": [0.90, 0.91, 0.92], "hessian_lambda_max": [10.0, 12.0, 11.0]}
    m["swa"] = {"test_acc": [0.93, 0.94, 0.95], "hessian_lambda_max": [5.0, 6.0, 5.5]}
    m["merged"] = {"test_acc": acc, "hessian_lambda_max": [5.1, 5.9, 5.6]}
    return m


def test_verdicts_on_known_numbers() -> None:
    m = _metrics(aligned=[0.02, 0.03, 0.025], line=[0.30, 0.35, 0.32],
                 wide=[0.001, 0.002, 0.0015], acc=[0.80, 0.81, 0.82])
    v = verdicts({"metrics": m})
    assert v["sgd aligned vs raw line, test_err_barrier, x1"] == "lower"
    assert v["sgd REPAIR vs aligned, test_err_barrier, x8"] == "no difference"
    assert v["sgd aligned test_err_barrier, x8 vs x1"] == "lower"
    assert v["sgd line test_err_barrier, x8 vs x1"] == "no difference"
    assert v["merged vs sgd, test_acc"] == "worse"
    assert v["merged vs swa, test_acc"] == "worse"
    assert v["merged vs sgd, hessian_lambda_max"] == "lower"
    assert v["merged vs swa, hessian_lambda_max"] == "no difference"
    one = verdicts({"metrics": {k: {q: x[:1] for q, x in c.items()} for k, c in m.items()}})
    assert set(one.values()) == {"one seed"}


def test_stability_reads_align_verdicts() -> None:
    m = _metrics(aligned=[0.02, 0.03, 0.025], line=[0.30, 0.35, 0.32],
                 wide=[0.001, 0.002, 0.0015], acc=[0.80, 0.81, 0.82])
    flipped = {**m, "merged": {**m["merged"], "test_acc": [0.95, 0.96, 0.97]}}
    a = {"seeds": [0, 1, 2], "metrics": m, "attrs": {"protocol": "align"}}
    b = {"seeds": [0, 1, 2], "metrics": flipped, "attrs": {"protocol": "align"}}
    rows = stability.agreement(a, b)
    assert [r["seeds"] for r in rows] == [2, 3]
    assert rows[-1]["differ"] == ["merged vs sgd, test_acc", "merged vs swa, test_acc"]
    assert stability._verdicts_of(a) is align_protocol.verdicts


@pytest.mark.skipif(not MNIST.is_dir(), reason="no MNIST files in ../shared/data/mnist")
def test_mnist_quick(tmp_path: Path) -> None:
    out = tmp_path / "out"
    reproduce("align_mnist", quick=True, out_dir=out, runs_dir=tmp_path / "runs",
              overrides={"data_root": str(MNIST.parent)}, log=lambda _m: None)
    r = store.read_results(out / "results.h5")
    assert r["attrs"]["extra"]["widths"] == [16, 32]
    assert np.isfinite(r["metrics"][width_method("sgd", "aligned", 2)]["test_err_barrier"])
    assert "MNIST, real handwritten digits" in (out / "REPORT.md").read_text()
