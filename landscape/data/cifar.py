"""CIFAR-10 and CIFAR-100 from the official binary files (torchvision's python version
as a fallback)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape._errors import UserError
from landscape.data._files import (
    _find_dir,
    _labels,
    _looked,
    _need_root,
    _signed,
    _torchvision_call,
)
from landscape.data.registry import TensorData, register


@dataclass(frozen=True)
class _CifarSpec:
    name: str
    n_classes: int
    bin_dir: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # bytes before the pixels of a record
    label_at: int  # which of them is the label
    py_dir: str

    @property
    def record(self) -> str:
        labels = ("1 label byte" if self.label_bytes == 1
                  else "coarse and fine label bytes")
        return f"{self.name.upper()} binary records ({labels} + 3072 pixel bytes)"


_CIFAR = {
    "cifar10": _CifarSpec(
        "cifar10", 10, "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
        1, 0, "cifar-10-batches-py"),
    "cifar100": _CifarSpec(
        "cifar100", 100, "cifar-100-binary", ("train.bin",), ("test.bin",),
        2, 1, "cifar-100-python"),
}


def _read_cifar_bin(path: Path, spec: _CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(N, 3, 32, 32)`` uint8 and labels of one CIFAR binary file.

    Raises:
        UserError: If the size is not a whole number of records or a label is too big.
    """
    size = spec.label_bytes + 3072
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % size:
        raise UserError(
            f"{path}: {raw.size} bytes is not a whole number of {size}-byte records; "
            f"expected {spec.record}; re-download it or pass --data-root"
        )
    raw = raw.reshape(-1, size)
    labels = raw[:, spec.label_at].astype(np.int64)
    if labels.max() >= spec.n_classes:
        raise UserError(
            f"{path}: label {int(labels.max())} is not below {spec.n_classes}; "
            f"expected {spec.record}"
        )
    return raw[:, spec.label_bytes:].reshape(-1, 3, 32, 32), labels


def _load_cifar(spec: _CifarSpec, root: Path | None, download: bool) -> TensorData:
    root = _need_root(root, spec.name, f"the {spec.name} binary files")
    dirs = [root / spec.bin_dir, root / spec.name / spec.bin_dir, root]
    folder = _find_dir(dirs, spec.train + spec.test)
    meta: dict[str, Any] = {"normalize": [0.5, 0.5]}
    if folder is not None:
        split = {}
        for key, names in (("train", spec.train), ("test", spec.test)):
            parts = [_read_cifar_bin(folder / n, spec) for n in names]
            split[key] = (np.concatenate([p[0] for p in parts]),
                          np.concatenate([p[1] for p in parts]))
        meta |= {"files": [str(folder / n) for n in spec.train + spec.test],
                 "format": "cifar-binary"}
    elif download or (root / spec.py_dir).is_dir():
        import torchvision

        cls = (torchvision.datasets.CIFAR10 if spec.name == "cifar10"
               else torchvision.datasets.CIFAR100)
        split = {}
        for key in ("train", "test"):
            ds = _torchvision_call(
                f"loading {spec.name} from {root / spec.py_dir} with torchvision"
                + (" (download=True)" if download else ""),
                f"put the official binary version in {root / spec.bin_dir} or the "
                f"python version in {root / spec.py_dir}, or pass --data-root",
                lambda key=key: cls(str(root), train=key == "train", download=download),
            )
            split[key] = (np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2),
                          np.asarray(ds.targets, dtype=np.int64))
        meta |= {"files": [str(root / spec.py_dir)], "format": "cifar-python"}
    else:
        wanted = ", ".join(spec.train + spec.test)
        raise UserError(
            f"{spec.name}: {wanted} not found in {_looked(dirs)} (nor {spec.py_dir}/ "
            f"in {root}); expected {spec.record}; put them in {root / spec.bin_dir} "
            "or pass --data-root (or --download where a network exists)"
        )
    (x_train, y_train), (x_test, y_test) = split["train"], split["test"]
    return TensorData(
        spec.name, _signed(x_train), _labels(y_train), _signed(x_test),
        _labels(y_test), spec.n_classes, meta=meta,
    )


@register("cifar10", (3, 32, 32), 10)
def load_cifar10(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """CIFAR-10 from the binary version (``cifar-10-batches-bin/``), without pickle.

    Falls back to torchvision for the python version (``cifar-10-batches-py/``)
    when that folder exists or ``download`` is true.  Inputs are float32
    ``(N, 3, 32, 32)`` normalized as ``(x/255 - 0.5)/0.5``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If the files are missing, fetch them with torchvision.
    """
    return _load_cifar(_CIFAR["cifar10"], root, download)


@register("cifar100", (3, 32, 32), 100)
def load_cifar100(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """CIFAR-100 (fine labels) from the binary version (``cifar-100-binary/``).

    Falls back to torchvision for the python version (``cifar-100-python/``)
    when that folder exists or ``download`` is true.  Inputs are float32
    ``(N, 3, 32, 32)`` normalized as ``(x/255 - 0.5)/0.5``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If the files are missing, fetch them with torchvision.
    """
    return _load_cifar(_CIFAR["cifar100"], root, download)
