"""MNIST from the four official IDX files (raw or ``.gz``), parsed with numpy."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from landscape._errors import UserError
from landscape.data._files import (
    _find,
    _first_line,
    _labels,
    _looked,
    _need_root,
    _torchvision_call,
    _unit,
)
from landscape.data.registry import TensorData, register

_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES = 0x00000803
_IDX_LABELS = 0x00000801


def _mnist_names(name: str) -> list[str]:
    """Accepted spellings of an MNIST file: ``-idx`` (torchvision) or ``.idx``, raw or ``.gz``."""
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def _read_idx(path: Path, images: bool) -> np.ndarray:
    """Parse an MNIST IDX file (raw or ``.gz``) into uint8 ``(N, 28, 28)`` or ``(N,)``.

    Raises:
        UserError: If the file is unreadable, has the wrong magic number or size.
    """
    bad = f"{path}: expected an IDX file (MNIST format)"
    fix = "replace it with the original file or pass --data-root"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{bad} but could not read it ({_first_line(e)}); {fix}") from e
    magic, header = (_IDX_IMAGES, 16) if images else (_IDX_LABELS, 8)
    if len(raw) < header:
        raise UserError(f"{bad} but it has only {len(raw)} bytes; {fix}")
    got, n, *dims = struct.unpack(f">I{header // 4 - 1}i", raw[:header])
    if got != magic:
        raise UserError(
            f"{bad} with magic number 0x{magic:08X} but found 0x{got:08X}; {fix}"
        )
    if n < 0 or (images and tuple(dims) != (28, 28)):
        raise UserError(f"{bad} of 28x28 images but the header says {n}x{dims}; {fix}")
    shape = (n, *dims)
    size = header + int(np.prod(shape))
    if len(raw) != size:
        raise UserError(
            f"{bad} of {size} bytes for {n} items but it has {len(raw)} bytes; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


@register("mnist", (1, 28, 28), 10)
def load_mnist(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """MNIST from the four IDX files (raw or ``.gz``), parsed with numpy.

    The files are looked for in ``root/MNIST/raw/`` (torchvision's layout),
    ``root/`` and ``root/mnist/``, named as torchvision names them
    (``train-images-idx3-ubyte``) or with a dot before ``idx``
    (``train-images.idx3-ubyte``), raw or ``.gz``.  Inputs are float32
    ``(N, 1, 28, 28)`` in ``[0, 1]``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If files are missing, fetch them with torchvision (needs a network).
    """
    root = _need_root(root, "mnist", "the MNIST IDX files")
    dirs = [root / "MNIST" / "raw", root, root / "mnist"]

    def find() -> dict[str, Path | None]:
        return {k: _find(dirs, _mnist_names(n)) for k, n in _MNIST_FILES.items()}

    paths = find()
    if download and None in paths.values():
        import torchvision

        _torchvision_call(
            f"downloading MNIST into {root}",
            f"without a network put the IDX files in {root / 'MNIST' / 'raw'} "
            "or pass --data-root",
            lambda: torchvision.datasets.MNIST(str(root), download=True),
        )
        paths = find()
    missing = [_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        names = ", ".join(f"{n} (or {n.replace('-idx', '.idx')})" for n in missing)
        raise UserError(
            f"MNIST file(s) {names}, raw or .gz, not found in "
            f"{_looked(dirs)}; "
            f"expected the MNIST IDX files; put them in "
            f"{root / 'MNIST' / 'raw'} or pass --data-root "
            "(or --download where a network exists)"
        )
    found: dict[str, Path] = {k: p for k, p in paths.items() if p is not None}
    arrays = {k: _read_idx(p, images=k.startswith("x")) for k, p in found.items()}
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise UserError(
                f"{found[f'y_{split}']}: has {ny} labels but "
                f"{found[f'x_{split}'].name} has {nx} images; use matching MNIST files"
            )
        y = arrays[f"y_{split}"]
        if len(y) and y.max() > 9:
            raise UserError(
                f"{found[f'y_{split}']}: label {int(y.max())} is not a digit 0-9; "
                "expected an IDX file (MNIST format) of MNIST labels"
            )
    return TensorData(
        "mnist",
        _unit(arrays["x_train"][:, None]), _labels(arrays["y_train"]),
        _unit(arrays["x_test"][:, None]), _labels(arrays["y_test"]), 10,
        meta={"files": [str(p) for p in found.values()], "format": "idx"},
    )
