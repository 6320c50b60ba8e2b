"""``kaggle-digits`` and the seed-000 protocol on real handwritten digits.

Needs the MNIST IDX files at ``../shared/data/mnist`` (relative to the repository
root); a clone without them skips these tests.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.cli import main
from landscape.data import kaggle_split, load_dataset

MNIST_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (MNIST_ROOT / "mnist").is_dir(),
    reason="real MNIST absent (../shared/data/mnist); the real-digit tests need it")


def _write_csv(path: Path, x: torch.Tensor, y: torch.Tensor | None) -> None:
    """A Kaggle Digit Recognizer CSV: ``[label,]pixel0..pixel783``, pixels 0-255."""
    pixels = (x.reshape(len(x), -1) * 255).round().to(torch.int64).numpy()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow((["label"] if y is not None else []) + [f"pixel{i}" for i in range(784)])
        for i, row in enumerate(pixels):
            w.writerow(([int(y[i])] if y is not None else []) + row.tolist())


def test_seed000_quick_on_kaggle_csvs_of_real_digits(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mnist = load_dataset("mnist", MNIST_ROOT)
    x_train, y_train = mnist.x_train[:2400], mnist.y_train[:2400]
    x_test, y_true = mnist.x_test[:500], mnist.y_test[:500]  # labels kept back
    digits = tmp_path / "digits"
    digits.mkdir()
    _write_csv(digits / "train.csv", x_train, y_train)
    _write_csv(digits / "test.csv", x_test, None)

    out = tmp_path / "out"
    assert main(["reproduce", "seed000", "--data", "kaggle-digits", "--data-root",
                 str(digits), "--quick", "--out-dir", str(out), "--runs-dir",
                 str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "[data] kaggle-digits: 2000 train, 400 test, 500 to predict" in printed
    report = (out / "REPORT.md").read_text()
    assert "Kaggle Digit Recognizer CSVs" in report
    assert "MNIST-1D" not in report
    for method in ("sgd", "swa"):
        rows = (out / f"submission_{method}.csv").read_text().splitlines()
        assert rows[0] == "ImageId,Label"
        ids, labels = zip(*(map(int, r.split(",")) for r in rows[1:]), strict=True)
        assert list(ids) == list(range(1, len(x_test) + 1))  # 1-based, one per image
        assert set(labels) <= set(range(10))
        acc = float(np.mean(np.asarray(labels) == y_true.numpy()))
        assert acc > 0.6, f"{method}: submission accuracy {acc:.3f} (chance 0.1)"


def test_kaggle_split_of_real_mnist_is_kaggles_scale() -> None:
    d = kaggle_split(load_dataset("mnist", MNIST_ROOT))
    assert (len(d.y_train), len(d.y_test), len(d.x_predict)) == (42_000, 28_000, 28_000)
    assert d.meta["held_out_images"] == "train-images 42000..59999 and t10k-images 0..9999"
    assert torch.equal(d.x_test, d.x_predict)
    assert np.bincount(d.y_train.numpy(), minlength=10).min() > 3500  # every digit


def test_seed004_on_real_mnist_is_labelled_mnist(tmp_path: Path) -> None:
    """``reproduce seed004_mnist --quick``: the SmallCNN on 1x28x28 real digits, named MNIST."""
    from landscape.store import read_results

    out = tmp_path / "s4"
    assert main(["reproduce", "seed004_mnist", "--quick", "--quiet", "--data-root",
                 str(MNIST_ROOT), "--out-dir", str(out), "--runs-dir", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "**Data: MNIST, real handwritten digits (the canonical IDX files)**" in report
    assert "500 training images (a seeded subset of 60,000)" in report
    assert "SVHN" not in report.split("## Verdict")[0]
    m = read_results(out / "results.h5")["metrics"]
    last = float(np.asarray(m["last"]["test_acc"])[0])
    assert last > 0.3, f"3 epochs on 500 digits: test accuracy {last:.3f} (chance 0.1)"


def test_paper_mnist_config_is_the_paper_protocol_on_real_digits() -> None:
    from landscape.experiments import load_experiment

    exp = load_experiment("paper_mnist")
    assert (exp.protocol, exp.cfg.data, exp.cfg.model) == ("paper", "mnist", "seed000-cnn")
    assert (exp.cfg.train_samples, exp.cfg.test_samples) == (5000, None)  # all 10,000 test
    assert exp.settings["budgets"] == [1.0, 1.25, 1.5]
    assert exp.cfg.swa_start < exp.cfg.epochs
