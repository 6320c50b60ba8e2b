"""End-to-end tests of :mod:`landscape.experiments` at tiny sizes (``--quick``, 1 seed)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape import experiments as ex
from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.data import TensorData, write_submission


def test_experiments_are_found() -> None:
    assert {"seed000", "seed004"} <= set(ex.available())
    e = ex.load_experiment("seed004")
    assert e.cfg.average_epochs == "11:20"
    assert e.cfg.lr == 0.05
    assert not e.cfg.swa
    assert e.settings["seeds"] == 5


def test_quick_and_data_overrides() -> None:
    e = ex.load_experiment("seed000", quick=True)
    assert e.cfg.num_samples == 400
    assert e.settings["trials"] == 2
    assert e.settings["search"]["epochs"] == [3, 3]
    assert e.settings["search"]["lr"] == [0.01, 1.0]  # kept from the full search
    assert e.cfg.data == "mnist1d"  # the quick test runs offline
    full = ex.load_experiment("seed000")
    assert (full.cfg.data, full.cfg.model) == ("mnist", "seed000-cnn")  # real digits
    assert full.settings["kaggle_train"] == 42_000
    m1d = ex.load_experiment("seed000_mnist1d")
    assert (m1d.cfg.data, m1d.cfg.model) == ("mnist1d", "mnist1d-cnn")
    e = ex.load_experiment("seed004", overrides={"data": "svhn", "data_root": "/x"})
    assert e.cfg.model is None  # the registry's model for SVHN (seed004-cnn)


def test_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no experiment 'nope'"):
        ex.load_experiment("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('epochs = 3\n[experiment]\nprotocol = "seed004"\ntrials = 3\n')
    with pytest.raises(UserError, match="unknown \\[experiment\\] key"):
        ex.load_experiment(str(bad))
    bad.write_text('epochz = 3\n[experiment]\nprotocol = "seed004"\n')
    with pytest.raises(UserError, match="unknown config key"):
        ex.load_experiment(str(bad))


def test_early_stop() -> None:
    assert ex.early_stop([0.5, 0.7, 0.6, 0.65, 0.9], patience=2) == (2, 0.7)
    assert ex.early_stop([0.5, 0.7, 0.6, 0.65, 0.9], patience=3) == (5, 0.9)
    assert ex.early_stop([np.nan, np.nan, 0.4, 0.3], patience=5) == (3, 0.4)
    with pytest.raises(UserError):
        ex.early_stop([np.nan], patience=1)


def test_fold_uses_train_split_only() -> None:
    d = TensorData("t", torch.arange(10.0)[:, None], torch.arange(10) % 2,
                   torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), 2)
    f = ex.fold(d, torch.tensor([0, 1, 2, 3]), torch.tensor([7, 8]))
    assert f.x_train.ravel().tolist() == [0, 1, 2, 3]
    assert f.x_test.ravel().tolist() == [7, 8]


def test_missing_optuna_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    e = ex.load_experiment("seed000", quick=True)
    with pytest.raises(UserError, match=r"pip install landscape\[tune\]"):
        ex.tune(e.cfg, None, "sgd", e.settings["search"], trials=1, frac=0.5)


def test_verdict_says_when_swa_does_not_win() -> None:
    assert "does not beat" in ex.verdict("SGD", [0.9, 0.91, 0.92], "SWA",
                                          [0.88, 0.89, 0.90], "test acc")
    assert "**SWA beats SGD**" in ex.verdict("SGD", [0.9, 0.91, 0.92], "SWA",
                                              [0.92, 0.93, 0.94], "test acc")


def _results(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with h5py.File(path, "r") as f:
        assert f.attrs["kind"] == "landscape-results"
        assert "landscape reproduce" in f.attrs["command"]
        assert "config" in f.attrs
        return {m: {k: g[k][()] for k in g} for m, g in f["metrics"].items()}


def test_seed000_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["reproduce", "seed000", "--quick", "--seeds", "1", "--out-dir",
                 str(tmp_path / "seed000"), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    printed = capsys.readouterr().out  # progress: a line per trial and per CV fold
    assert "[tune sgd] trial 1/" in printed
    assert "(best " in printed
    assert "[seed 0] SWA fold 1/" in printed
    assert "ETA" in printed
    out = tmp_path / "seed000"
    r = _results(out / "results.h5")
    assert set(r) == {"sgd", "swa"}
    for m in r.values():
        assert set(m) == {"cv_acc", "stop_epoch", "train_acc", "test_acc"}
        assert m["test_acc"].shape == (1,)
        assert 0 <= m["test_acc"][0] <= 1
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# seed000")
    cmd = (f"landscape reproduce seed000 --seeds 1 --out-dir {tmp_path}/seed000 "
           f"--runs-dir {tmp_path}/runs"
           " --quick")
    assert report.splitlines()[3] == cmd
    assert "**Data: MNIST-1D**" in report
    assert "![swa_vs_sgd](swa_vs_sgd.png)" in report
    assert (out / "swa_vs_sgd.png").stat().st_size > 1000
    lines = printed.splitlines()
    assert any(line.startswith("[tune swa]") for line in lines)
    assert any(line.startswith("[seed 0]") for line in lines)
    assert "## Search space and budget" in report
    assert "| SGD + SWA, test acc | 97.74 |" in report  # the seed's number beside ours

    # Rerun (as after a kill): every finished stage is kept, the numbers are the same.
    assert main(["reproduce", "seed000", "--quick", "--seeds", "1", "--out-dir",
                 str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
    again = capsys.readouterr().out
    assert "[tune sgd] kept from" in again
    assert "[seed 0] SWA kept from" in again
    assert "trial 1/" not in again
    r2 = _results(out / "results.h5")
    assert all(np.array_equal(r[m][k], r2[m][k]) for m in r for k in r[m])


def test_seed000_bad_kaggle_train_is_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('data = "mnist"\n[experiment]\nprotocol = "seed000"\ntrials = 1\n'
                   'folds = 2\nkaggle_train = "all"\nsearch = {}\n')
    mnist = tmp_path / "m"
    mnist.mkdir()
    from landscape.experiments.seed000 import load_seed_data

    with pytest.raises(UserError, match="kaggle_train = 'all'"):
        load_seed_data(ex.load_experiment(str(bad), overrides={"data_root": str(mnist)}), 0)
    assert main(["reproduce", str(bad), "--data-root", str(mnist), "--out-dir",
                 str(tmp_path / "o"), "--runs-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if "error:" in e] == [err[-1]]  # argparse's usage, one error line
    assert "kaggle_train = 'all'" in err[-1]


def test_stability_compares_seed000_verdicts(tmp_path: Path) -> None:
    from landscape import store
    from landscape.experiments.stability import agreement
    from landscape.experiments.stability import main as stability

    def results(path: Path, gains: list[float]) -> Path:
        sgd = [0.95, 0.96, 0.955, 0.958]
        store.write_results(path, {"experiment": "seed000", "protocol": "seed000",
                                   "seeds": [0, 1, 2, 3]}, {
            "sgd": {"test_acc": sgd, "cv_acc": sgd, "train_acc": sgd},
            "swa": {k: [a + g for a, g in zip(sgd, gains, strict=True)]
                    for k in ("test_acc", "cv_acc", "train_acc")}})
        return path

    a = results(tmp_path / "a.h5", [0.010, 0.012, 0.009, 0.011])
    b = results(tmp_path / "b.h5", [0.010, -0.020, 0.009, 0.011])
    rows = agreement(store.read_results(a), store.read_results(b))
    acc = "SGD + SWA vs SGD, test accuracy"
    assert [r["a"][acc] for r in rows] == ["no difference", "beats", "beats"]
    assert [r["b"][acc] for r in rows] == ["no difference"] * 3
    assert stability([str(a), str(b), "--out", str(tmp_path / "s.md")]) == 0
    assert "| SGD + SWA vs SGD, CV accuracy |" in (tmp_path / "s.md").read_text()


def test_stability_compares_seed004_verdicts(tmp_path: Path) -> None:
    from landscape import store
    from landscape.experiments.stability import agreement

    def results(path: Path, gains: list[float]) -> Path:
        last = [0.947, 0.949, 0.945, 0.950]
        avg = [a + g for a, g in zip(last, gains, strict=True)]
        store.write_results(path, {"experiment": "seed004_mnist", "protocol": "seed004",
                                   "seeds": [0, 1, 2, 3]}, {
            "last": {"test_acc": last}, "avg": {"test_acc": avg},
            "checkpoints_mean": {"test_acc": [a - 0.001 for a in avg]}})
        return path

    a = results(tmp_path / "a.h5", [0.002, 0.0025, 0.0018, 0.0021])
    b = results(tmp_path / "b.h5", [0.002, -0.004, 0.0018, 0.0021])
    rows = agreement(store.read_results(a), store.read_results(b))
    last = "averaged model vs the last checkpoint, test accuracy"
    mean = "averaged model vs the checkpoints' mean, test accuracy"
    assert [r["a"][last] for r in rows] == ["no difference", "beats", "beats"]
    assert [r["b"][last] for r in rows] == ["no difference"] * 3
    assert [r["differ"] for r in rows] == [[], [last], [last]]
    assert all(r["a"][mean] == r["b"][mean] == "beats" for r in rows)  # +0.1 point each


def test_seed000_serial_threads_use_the_cores_for_image_sized_inputs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from landscape.experiments.seed000 import _torch_threads, serial_threads

    monkeypatch.setattr("os.cpu_count", lambda: 6)
    exp = ex.load_experiment("seed000_mnist1d")
    assert exp.settings["serial_threads"] == "auto"
    assert ex.load_experiment("seed000").settings["serial_threads"] == 1

    def data(shape: tuple[int, ...]) -> TensorData:
        return TensorData("d", torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long),
                          torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long), 10)

    assert serial_threads(exp, data((1, 28, 28))) == 6  # Kaggle digits: every core
    assert serial_threads(exp, data((1, 40))) == exp.cfg.threads == 1  # MNIST-1D
    exp.settings["serial_threads"] = 3
    assert serial_threads(exp, data((1, 28, 28))) == 3
    for bad in (0, "all", 1.5, True):
        exp.settings["serial_threads"] = bad
        with pytest.raises(UserError, match="serial_threads"):
            serial_threads(exp, data((1, 40)))
    before = torch.get_num_threads()
    with _torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_seed004_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    logs: list[str] = []
    report = ex.reproduce("seed004", seeds=1, out_dir=tmp_path / "seed004",
                         runs_dir=tmp_path / "runs",
                          quick=True, log=logs.append)
    out = tmp_path / "seed004"
    assert report == out / "REPORT.md"
    r = _results(out / "results.h5")
    assert set(r) == {"last", "checkpoints_mean", "avg", "checkpoints_best"}
    with h5py.File(tmp_path / "runs" / "seed0.h5", "r") as f:
        ck = f["measures/checkpoints"]
        assert ck["epoch"][()].tolist() == [2.0, 3.0]
        assert r["checkpoints_mean"]["test_acc"][0] == pytest.approx(ck["test_acc"][()].mean())
        assert r["avg"]["test_acc"][0] == pytest.approx(f["solutions/avg"].attrs["test_acc"])
    for name in ("checkpoints.png", "history.png", "averaging.png"):
        assert (out / name).stat().st_size > 1000
    assert "averaged model" in report.read_text()
    assert len(logs) == 3  # start, one seed, done
    # each seed's work is kept in its run file and reported
    first = store.read_results(out / "results.h5")["attrs"]["extra"]["seed_seconds"]
    hist = store.read_history(tmp_path / "runs" / "seed0.h5")["runs"]["sgd"]["seconds"]
    scoring = store.group_attrs(tmp_path / "runs" / "seed0.h5", "measures/checkpoints")
    assert len(first) == 1
    assert first[0] == pytest.approx(float(hist.sum()) + scoring["seconds"])
    assert hist.min() > 0
    assert scoring["seconds"] > 0
    assert "The seeds' work took" in report.read_text()
    capsys.readouterr()
    assert main(["info", str(out / "results.h5")]) == 0  # info opens results files
    text = capsys.readouterr().out
    assert "(landscape-results)" in text
    assert "avg: test_acc=[" in text
    # more seeds: seed 0's run file and checkpoint scores are kept, only seed 1 is new
    import landscape.experiments.seed004.run as s4

    seed0 = tmp_path / "runs" / "seed0.h5"
    mtime = seed0.stat().st_mtime_ns
    evaluated: list[str] = []
    real = s4.load_run_model
    monkeypatch.setattr(s4, "load_run_model",
                        lambda p: (evaluated.append(Path(p).name), real(p))[1])
    read: list[str] = []  # whose checkpoint weights were read (not seed 0's, scored)
    real_read = s4.store.checkpoints
    monkeypatch.setattr(s4.store, "checkpoints", lambda f, *a: (
        read.append(Path(f.filename).name), real_read(f, *a))[1])
    ex.reproduce("seed004", seeds=2, out_dir=out, runs_dir=tmp_path / "runs", quick=True,
                 log=logs.append)
    assert evaluated == ["seed1.h5"]
    assert "seed1.h5" in read
    assert not any(n.startswith("seed0") for n in read)
    assert seed0.stat().st_mtime_ns == mtime
    again = _results(out / "results.h5")
    for m, cols in r.items():
        for k, v in cols.items():
            assert again[m][k][0] == v[0], (m, k)
    both = store.read_results(out / "results.h5")["attrs"]["extra"]["seed_seconds"]
    assert len(both) == 2
    assert both[0] == first[0]  # seed 0's work was done before; reading it adds nothing


def test_fit_on_given_tensors_and_predict(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 40, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    d = TensorData("t", x[:48], y[:48], x[48:], y[48:], 10, x_predict=x[:5])
    cfg = ex.load_experiment("seed000", quick=True).cfg.replace(
        model="mnist1d-mlp", swa=True, swa_epochs=3, swa_start=2, epochs=3, batch_size=16)
    f = ex.fit(cfg, d, "swa")
    assert f.history["swa_test_acc"].shape == (3,)
    assert np.isnan(f.history["swa_test_acc"][0])  # before averaging
    assert 0 <= f.metrics["test_acc"] <= 1
    pred = ex.seed000._predict(f, d.x_predict)
    assert pred.shape == (5,)
    sub = write_submission(tmp_path / "s.csv", pred)
    assert sub.read_text().splitlines()[0] == "ImageId,Label"


def test_parallel_cv_folds_equal_sequential_folds() -> None:
    from landscape.data import kfold_indices, load_dataset
    from landscape.experiments._runner import Workers
    from landscape.experiments.seed000 import _cross_validate

    e = ex.load_experiment("seed000", quick=True)
    d = load_dataset("mnist1d", root=None, num_samples=300, seed=0)
    cfg = e.cfg.replace(epochs=2, swa=False, eval_every=1, record_every=0, threads=1)
    folds = kfold_indices(len(d.y_train), 2, seed=0)
    with Workers(1) as pool:
        seq = _cross_validate(cfg, d, folds, "sgd", 1, pool=pool, log=lambda _: None,
                              label="x")
    with Workers(2) as pool:
        par = _cross_validate(cfg, d, folds, "sgd", 1, pool=pool, log=lambda _: None,
                              label="x")
    assert par == seq


def test_report_names_real_data_and_its_sizes() -> None:
    from landscape.config import TrainConfig
    from landscape.experiments._common import _real_data_line

    line = _real_data_line(TrainConfig(data="mnist", data_root="../shared/data",
                                       train_samples=10000, model="seed000-cnn"))
    assert line == ("**Data: MNIST, real handwritten digits (the canonical IDX files)**, "
                    "read from `../shared/data`: 10,000 training images (a seeded subset "
                    "of 60,000), all 10,000 test images; model `seed000-cnn`.")
    line = _real_data_line(TrainConfig(data="svhn", data_root="d", test_samples=500))
    assert "SVHN, real house-number photos" in line
    assert "500 test images (a seeded subset of 26,032)" in line
    assert "all 73,257 training images" in line
