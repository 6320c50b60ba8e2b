"""Tests of :mod:`landscape.data` on tiny files written in the real formats."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from landscape import data as data_mod
from landscape._errors import UserError
from landscape.data import kfold_indices, load_dataset, write_submission

PIXELS = [f"pixel{i}" for i in range(784)]


# --------------------------------------------------------------------------- writers
def write_idx(path: Path, arr: np.ndarray, *, magic: int | None = None) -> Path:
    """Write ``arr`` (uint8) as an IDX file, gzipped if ``path`` ends in ``.gz``."""
    arr = np.asarray(arr, dtype=np.uint8)
    if magic is None:
        magic = 0x00000803 if arr.ndim == 3 else 0x00000801
    raw = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}i", *arr.shape)
    raw += arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def mnist_arrays() -> dict[str, np.ndarray]:
    x_train = np.zeros((3, 28, 28), np.uint8)
    x_train[0, 0, 0] = 255
    x_train[1, 5, 7] = 51
    x_train[2, 27, 27] = 128
    x_test = np.zeros((2, 28, 28), np.uint8)
    x_test[1, 3, 4] = 255
    return {"train-images-idx3-ubyte": x_train,
            "train-labels-idx1-ubyte": np.array([5, 0, 9], np.uint8),
            "t10k-images-idx3-ubyte": x_test,
            "t10k-labels-idx1-ubyte": np.array([7, 2], np.uint8)}


def write_mnist(folder: Path, gz: bool = False) -> None:
    for name, arr in mnist_arrays().items():
        write_idx(folder / (name + (".gz" if gz else "")), arr)


def kaggle_rows(n: int) -> np.ndarray:
    """Row ``i`` has label ``i % 10``, pixel0 = ``i`` and pixel783 = 255."""
    rows = np.zeros((n, 785), np.int64)
    rows[:, 0] = np.arange(n) % 10
    rows[:, 1] = np.arange(n)
    rows[:, 784] = 255
    return rows


def write_csv(path: Path, header: list[str], rows: np.ndarray) -> Path:
    lines = [",".join(header)] + [",".join(map(str, r)) for r in rows.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


def svhn_arrays(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((32, 32, 3, n), np.uint8)
    x[1, 2, 0, 0] = 255  # row 1, col 2, red, sample 0
    x[4, 3, 2, n - 1] = 51  # row 4, col 3, blue, last sample
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10
    return x, y


def write_svhn(folder: Path, n_train: int = 11, n_test: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = svhn_arrays(n)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})


def cifar_records(labels: list[tuple[int, ...]]) -> bytes:
    """Records whose pixel ``c*1024 + h*32 + w`` = ``(c + h + w + i) % 256``."""
    c, h, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    out = b""
    for i, lab in enumerate(labels):
        out += bytes(lab) + ((c + h + w + i) % 256).astype(np.uint8).tobytes()
    return out


def expected_cifar(i: int) -> torch.Tensor:
    c, h, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    px = torch.from_numpy(((c + h + w + i) % 256).astype(np.uint8))
    return (px.float() / 255 - 0.5) / 0.5


def write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        (folder / f"data_batch_{b}.bin").write_bytes(
            cifar_records([(b,), (b + 4,)]))
    (folder / "test_batch.bin").write_bytes(cifar_records([(3,), (0,), (9,)]))
    return folder


def signed(v: int) -> float:
    """What ToTensor + Normalize(0.5, 0.5) make of pixel ``v``, in float32."""
    return ((torch.tensor(float(v)) / 255 - 0.5) / 0.5).item()


# --------------------------------------------------------------------------- mnist
@pytest.mark.parametrize(("sub", "gz"), [
    ("MNIST/raw", False), ("MNIST/raw", True), ("", True), ("mnist", False)])
def test_mnist_reads_idx_layouts(tmp_path: Path, sub: str, gz: bool) -> None:
    write_mnist(tmp_path / sub, gz=gz)
    d = load_dataset("mnist", tmp_path)
    assert d.x_train.shape == (3, 1, 28, 28)
    assert d.x_test.shape == (2, 1, 28, 28)
    assert d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64
    assert d.y_train.tolist() == [5, 0, 9]
    assert d.y_test.tolist() == [7, 2]
    assert d.x_train[0, 0, 0, 0].item() == 1.0
    assert d.x_train[1, 0, 5, 7].item() == pytest.approx(0.2, abs=1e-7)
    assert d.x_train[2, 0, 27, 27].item() == pytest.approx(128 / 255, abs=1e-7)
    assert d.x_test[1, 0, 3, 4].item() == 1.0
    assert d.x_train.sum().item() == pytest.approx(1 + 51 / 255 + 128 / 255, abs=1e-5)
    assert d.n_classes == 10
    assert len(d.meta["files"]) == 4
    assert all(isinstance(f, str) for f in d.meta["files"])


def test_mnist_wrong_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    arr = mnist_arrays()["train-labels-idx1-ubyte"]
    write_idx(tmp_path / "train-labels-idx1-ubyte", arr, magic=0x00000803)
    with pytest.raises(UserError, match="train-labels-idx1-ubyte") as e:
        load_dataset("mnist", tmp_path)
    assert "expected an IDX file (MNIST format)" in str(e.value)
    assert "\n" not in str(e.value)


def test_mnist_truncated_and_bad_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.*expected an IDX"):
        load_dataset("mnist", tmp_path)
    f.unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte\.gz.*IDX"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_reads_dotted_file_names(tmp_path: Path, gz: bool) -> None:
    """``train-images.idx3-ubyte``: the spelling with a dot before ``idx``."""
    for name, arr in mnist_arrays().items():
        write_idx(tmp_path / (name.replace("-idx", ".idx") + (".gz" if gz else "")), arr)
    d = load_dataset("mnist", tmp_path)
    assert d.y_train.tolist() == [5, 0, 9]
    assert d.y_test.tolist() == [7, 2]
    assert d.x_train[2, 0, 27, 27].item() == pytest.approx(128 / 255, abs=1e-7)
    assert d.x_test[1, 0, 3, 4].item() == 1.0
    assert sorted(Path(f).name for f in d.meta["files"]) == sorted(
        n.replace("-idx", ".idx") + (".gz" if gz else "") for n in mnist_arrays())


def test_mnist_missing_names_files_and_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train-images-idx3-ubyte") as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte (or train-images.idx3-ubyte)" in msg
    assert "raw or .gz" in msg
    assert "--data-root" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "\n" not in msg
    with pytest.raises(UserError, match="--data-root"):
        load_dataset("mnist", None)


def test_mnist_download_only_when_asked(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    calls: list[str] = []

    def fake_mnist(root: str, download: bool = False, **_: object) -> None:
        calls.append(root)
        assert download
        write_mnist(Path(root) / "MNIST" / "raw", gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    with pytest.raises(UserError):
        load_dataset("mnist", tmp_path)
    assert calls == []
    d = load_dataset("mnist", tmp_path, download=True)
    assert calls == [str(tmp_path)]
    assert d.y_train.tolist() == [5, 0, 9]
    load_dataset("mnist", tmp_path, download=True)  # files exist: no second call
    assert len(calls) == 1


def test_mnist_download_failure_is_user_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*_: object, **__: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(UserError, match=r"downloading MNIST.*--data-root"):
        load_dataset("mnist", tmp_path, download=True)


# --------------------------------------------------------------------------- kaggle
def test_kaggle_digits_holdout_and_predict(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", ["label", *PIXELS], kaggle_rows(30))
    pred = np.zeros((4, 784), np.int64)
    pred[:, 0] = [10, 20, 30, 255]
    write_csv(tmp_path / "test.csv", PIXELS, pred)
    d = load_dataset("kaggle-digits", tmp_path, seed=3)
    assert d.x_train.shape == (25, 1, 28, 28)
    assert d.x_test.shape == (5, 1, 28, 28)
    assert d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64
    ids_train = (d.x_train[:, 0, 0, 0] * 255).round().long()
    ids_test = (d.x_test[:, 0, 0, 0] * 255).round().long()
    assert set(ids_train.tolist()).isdisjoint(ids_test.tolist())
    assert sorted(ids_train.tolist() + ids_test.tolist()) == list(range(30))
    assert torch.equal(d.y_train, ids_train % 10)
    assert torch.equal(d.y_test, ids_test % 10)
    assert (d.x_train[:, 0, 27, 27] == 1.0).all()
    assert d.x_predict is not None
    assert d.x_predict.shape == (4, 1, 28, 28)
    assert d.x_predict[3, 0, 0, 0].item() == 1.0
    assert d.x_predict[1, 0, 0, 0].item() == pytest.approx(20 / 255, abs=1e-7)
    assert d.meta["test_fraction"] == pytest.approx(1 / 6)
    assert d.meta["n_predict"] == 4

    again = load_dataset("kaggle-digits", tmp_path, seed=3)
    assert torch.equal(again.x_test, d.x_test)
    assert torch.equal(again.y_train, d.y_train)
    other = load_dataset("kaggle-digits", tmp_path, seed=4)
    assert not torch.equal(other.x_test, d.x_test)

    half = load_dataset("kaggle-digits", tmp_path, seed=3, test_fraction=0.5)
    assert len(half.y_test) == 15
    assert half.meta["test_fraction"] == 0.5


def test_kaggle_digits_without_test_csv(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", ["label", *PIXELS], kaggle_rows(12))
    d = load_dataset("kaggle-digits", tmp_path)
    assert d.x_predict is None
    assert len(d.y_train) + len(d.y_test) == 12
    assert d.meta["n_predict"] == 0


def test_kaggle_digits_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"train\.csv.*--data-root"):
        load_dataset("kaggle-digits", tmp_path)
    train = write_csv(tmp_path / "train.csv", ["id", *PIXELS], kaggle_rows(6))
    with pytest.raises(UserError, match=r"train\.csv") as e:
        load_dataset("kaggle-digits", tmp_path)
    assert "label,pixel0,...,pixel783" in str(e.value)
    assert "\n" not in str(e.value)
    rows = kaggle_rows(6)
    rows[2, 0] = 11
    write_csv(train, ["label", *PIXELS], rows)
    with pytest.raises(UserError, match=r"train\.csv.*0-9"):
        load_dataset("kaggle-digits", tmp_path)
    write_csv(train, ["label", *PIXELS], kaggle_rows(6)[:, :-1])
    with pytest.raises(UserError, match=r"train\.csv"):
        load_dataset("kaggle-digits", tmp_path)
    write_csv(train, ["label", *PIXELS], kaggle_rows(6))
    with pytest.raises(UserError, match="test_fraction"):
        load_dataset("kaggle-digits", tmp_path, test_fraction=1.0)
    write_csv(tmp_path / "test.csv", ["label", *PIXELS], kaggle_rows(2))
    with pytest.raises(UserError, match=r"test\.csv.*pixel0,...,pixel783"):
        load_dataset("kaggle-digits", tmp_path)


def test_write_submission_exact(tmp_path: Path) -> None:
    out = write_submission(tmp_path / "sub" / "submission.csv",
                           torch.tensor([3, 0, 9]))
    assert out == tmp_path / "sub" / "submission.csv"
    assert out.read_text() == "ImageId,Label\n1,3\n2,0\n3,9\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["submission.csv"]
    scores = np.zeros((2, 10), np.float32)
    scores[0, 4] = scores[1, 8] = 1.0
    write_submission(out, scores)  # overwrites atomically
    assert out.read_text() == "ImageId,Label\n1,4\n2,8\n"
    with pytest.raises(UserError, match="0-9"):
        write_submission(out, np.array([1, 10]))
    assert out.read_text() == "ImageId,Label\n1,4\n2,8\n"


# --------------------------------------------------------------------------- svhn
@pytest.mark.parametrize("sub", ["", "svhn"])
def test_svhn_reads_mat(tmp_path: Path, sub: str) -> None:
    write_svhn(tmp_path / sub)
    d = load_dataset("svhn", tmp_path)
    assert d.x_train.shape == (11, 3, 32, 32)
    assert d.x_test.shape == (3, 3, 32, 32)
    assert d.x_train.dtype == torch.float32
    assert d.y_train.dtype == torch.int64
    assert d.y_train.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # 10 -> 0
    assert d.y_test.tolist() == [1, 2, 3]
    assert d.x_train[0, 0, 1, 2].item() == 1.0
    assert d.x_train[0, 1, 1, 2].item() == -1.0
    assert d.x_train[10, 2, 4, 3].item() == signed(51)
    assert d.x_train[10, 2, 4, 3].item() == pytest.approx(-0.6, abs=1e-6)
    assert d.x_train.min().item() == -1.0
    assert d.n_classes == 10


def test_svhn_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"train_32x32\.mat.*--data-root"):
        load_dataset("svhn", tmp_path)
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"\x00garbage" * 40)
    with pytest.raises(UserError, match=r"test_32x32\.mat") as e:
        load_dataset("svhn", tmp_path)
    assert "expected an SVHN .mat file with X (32x32x3xN) and y" in str(e.value)
    assert "\n" not in str(e.value)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(UserError, match=r"test_32x32\.mat.*expected an SVHN"):
        load_dataset("svhn", tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat",
                     {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(UserError, match=r"test_32x32\.mat.*expected an SVHN"):
        load_dataset("svhn", tmp_path)


# --------------------------------------------------------------------------- cifar
def test_cifar10_binary(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    d = load_dataset("cifar10", tmp_path)
    assert d.x_train.shape == (10, 3, 32, 32)
    assert d.x_test.shape == (3, 3, 32, 32)
    assert d.x_train.dtype == torch.float32
    assert d.y_train.tolist() == [1, 5, 2, 6, 3, 7, 4, 8, 5, 9]
    assert d.y_test.tolist() == [3, 0, 9]
    assert torch.equal(d.x_test[2], expected_cifar(2))
    assert torch.equal(d.x_train[1], expected_cifar(1))
    # pixel c*1024 + h*32 + w of record 0 is c + h + w
    assert d.x_test[0, 2, 31, 30].item() == signed(2 + 31 + 30)
    assert d.x_test[0, 0, 0, 0].item() == -1.0
    assert d.n_classes == 10
    assert d.meta["format"] == "cifar-binary"
    assert len(d.meta["files"]) == 6


def test_cifar100_binary_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(cifar_records([(3, 42), (19, 99), (0, 7)]))
    (folder / "test.bin").write_bytes(cifar_records([(5, 55)]))
    d = load_dataset("cifar100", tmp_path)
    assert d.y_train.tolist() == [42, 99, 7]
    assert d.y_test.tolist() == [55]
    assert d.n_classes == 100
    assert torch.equal(d.x_train[2], expected_cifar(2))
    assert d.x_test.shape == (1, 3, 32, 32)


def test_cifar_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data_batch_1\.bin") as e:
        load_dataset("cifar10", tmp_path)
    assert "cifar-10-batches-bin" in str(e.value)
    assert "--data-root" in str(e.value)
    with pytest.raises(UserError, match=r"cifar-100-binary.*--data-root"):
        load_dataset("cifar100", tmp_path)
    folder = write_cifar10(tmp_path)
    (folder / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(UserError, match=r"test_batch\.bin.*CIFAR10 binary records"):
        load_dataset("cifar10", tmp_path)
    (folder / "test_batch.bin").write_bytes(cifar_records([(12,)]))
    with pytest.raises(UserError, match=r"test_batch\.bin.*label 12"):
        load_dataset("cifar10", tmp_path)


def test_cifar_python_version_via_torchvision(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"junk")
    # the real torchvision rejects the folder (checksums) without downloading
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)

    import torchvision

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            assert root == str(tmp_path)
            assert not download
            n = 4 if train else 2
            self.data = np.zeros((n, 32, 32, 3), np.uint8)  # NHWC like torchvision
            self.data[0, 1, 2, 0] = 255
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    d = load_dataset("cifar10", tmp_path)
    assert d.x_train.shape == (4, 3, 32, 32)
    assert d.x_test.shape == (2, 3, 32, 32)
    assert d.x_train[0, 0, 1, 2].item() == 1.0
    assert d.y_train.tolist() == [0, 1, 2, 3]
    assert d.meta["format"] == "cifar-python"


# --------------------------------------------------------------------------- generic
def test_unknown_dataset() -> None:
    with pytest.raises(UserError, match="imagenet") as e:
        load_dataset("imagenet", None)
    assert "mnist1d" in str(e.value)
    assert "kaggle-digits" in str(e.value)


def test_registry_names() -> None:
    assert {"mnist1d", "mnist", "kaggle-digits", "svhn", "cifar10", "cifar100"} <= set(
        data_mod.DATASETS)


def test_subset_is_deterministic_and_from_the_data(tmp_path: Path) -> None:
    write_csv(tmp_path / "train.csv", ["label", *PIXELS], kaggle_rows(60))
    full = load_dataset("kaggle-digits", tmp_path, seed=1)
    a = load_dataset("kaggle-digits", tmp_path, seed=1, train_samples=20,
                     test_samples=4)
    b = load_dataset("kaggle-digits", tmp_path, seed=1, train_samples=20,
                     test_samples=4)
    assert a.x_train.shape == (20, 1, 28, 28)
    assert len(a.y_test) == 4
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_test, b.y_test)
    ids_full = (full.x_train[:, 0, 0, 0] * 255).round().long().tolist()
    ids_a = (a.x_train[:, 0, 0, 0] * 255).round().long().tolist()
    assert set(ids_a) <= set(ids_full)
    assert len(set(ids_a)) == 20
    assert a.meta["subset_seed"] == 1
    with pytest.raises(UserError, match="--train-samples"):
        load_dataset("kaggle-digits", tmp_path, seed=1, train_samples=10_000)


def test_mnist1d_determinism_and_cache(tmp_path: Path) -> None:
    a = load_dataset("mnist1d", None, num_samples=200, seed=0)
    b = load_dataset("mnist1d", None, num_samples=200, seed=0)
    c = load_dataset("mnist1d", None, num_samples=200, seed=1)
    assert a.x_train.shape == (160, 1, 40)
    assert a.x_test.shape == (40, 1, 40)
    assert a.x_train.dtype == torch.float32
    assert torch.equal(a.x_train, b.x_train)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    written = load_dataset("mnist1d", tmp_path, num_samples=200, seed=0)
    cache = tmp_path / "mnist1d" / "mnist1d-n200-seed0.npz"
    assert cache.is_file()
    cached = load_dataset("mnist1d", tmp_path, num_samples=200, seed=0)
    for x in (written, cached):
        assert torch.equal(x.x_train, a.x_train)
        assert torch.equal(x.y_train, a.y_train)
        assert torch.equal(x.x_test, a.x_test)
        assert torch.equal(x.y_test, a.y_test)


def test_kfold_indices() -> None:
    n, k = 23, 5
    folds = kfold_indices(n, k, seed=7)
    assert len(folds) == k
    vals = torch.cat([v for _, v in folds]).tolist()
    assert sorted(vals) == list(range(n))
    sizes = [len(v) for _, v in folds]
    assert max(sizes) - min(sizes) <= 1
    for tr, va in folds:
        assert set(tr.tolist()).isdisjoint(va.tolist())
        assert sorted(tr.tolist() + va.tolist()) == list(range(n))
    again = kfold_indices(n, k, seed=7)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(folds, again, strict=True))
    other = kfold_indices(n, k, seed=8)
    pairs = zip(folds, other, strict=True)
    assert any(not torch.equal(a, b) for (_, a), (_, b) in pairs)
    for bad in (1, 24):
        with pytest.raises(UserError, match="--folds"):
            kfold_indices(n, bad)


def test_kaggle_split_pools_mnist_in_file_order() -> None:
    from landscape.data import kaggle_split

    d = data_mod.TensorData("mnist", torch.arange(6.0)[:, None], torch.arange(6) % 10,
                            torch.arange(6.0, 10.0)[:, None], torch.arange(6, 10), 10)
    k = kaggle_split(d, n_train=4)
    assert k.x_train.ravel().tolist() == [0, 1, 2, 3]
    assert k.y_test.tolist() == [4, 5, 6, 7, 8, 9]
    assert torch.equal(k.x_predict, k.x_test)
    assert k.meta["train_images"] == "train-images 0..3"
    assert k.meta["held_out_images"] == "train-images 4..5 and t10k-images 0..3"
    for bad in (0, 10, 11):
        with pytest.raises(UserError, match="kaggle_train"):
            kaggle_split(d, n_train=bad)


def test_an_unknown_dataset_option_is_one_line_naming_the_ones_taken() -> None:
    """``num_sample=200`` (a typo) was silently ignored: 5000 samples were generated."""
    with pytest.raises(TypeError, match=r"^load_dataset\('mnist1d'\) got unknown option\(s\) "
                       r"\['num_sample'\]; mnist1d takes num_samples besides root, "
                       r"train_samples, test_samples and seed$"):
        load_dataset("mnist1d", root=None, num_sample=200)
    with pytest.raises(UserError, match=r"\['downlaod'\]; mnist takes download"):
        load_dataset("mnist", root=None, downlaod=True)
    d = load_dataset("mnist1d", root=None, num_samples=200)
    assert (len(d.y_train), len(d.y_test)) == (160, 40)
