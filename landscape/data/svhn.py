"""SVHN (cropped digits) from the official ``.mat`` files."""

from __future__ import annotations

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
    _signed,
    _torchvision_call,
)
from landscape.data.registry import TensorData, register

_SVHN_FORMAT = "expected an SVHN .mat file with X (32x32x3xN) and y"


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as uint8 ``(N, 3, 32, 32)`` and ``y`` with 10 mapped to 0.

    Raises:
        UserError: For an unreadable file or missing/misshapen ``X``/``y``.
    """
    import scipy.io

    fix = "re-download it or pass --data-root"
    try:
        m = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # ValueError, MatReadError, OSError, ...
        raise UserError(
            f"{path}: cannot read it ({_first_line(e)}); {_SVHN_FORMAT}; {fix}"
        ) from e
    x, y = m.get("X"), m.get("y")
    if x is None or y is None:
        keys = sorted(k for k in m if not k.startswith("__"))
        raise UserError(f"{path}: has keys {keys}; {_SVHN_FORMAT}; {fix}")
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise UserError(
            f"{path}: X has shape {x.shape} and y {y.shape}; {_SVHN_FORMAT}; {fix}"
        )
    if x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
        raise UserError(f"{path}: X values must be pixels 0-255; {_SVHN_FORMAT}; {fix}")
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise UserError(f"{path}: y must hold digits 1-10 (10 is 0); {_SVHN_FORMAT}")
    return x.transpose(3, 2, 0, 1).astype(np.uint8), labels % 10


@register("svhn", (3, 32, 32), 10)
def load_svhn(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat``.

    The files are looked for in ``root/`` and ``root/svhn/``.  Label 10 is
    digit 0.  Inputs are float32 ``(N, 3, 32, 32)`` normalized as
    ``(x/255 - 0.5)/0.5``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If files are missing, fetch them with torchvision (needs a network).
    """
    root = _need_root(root, "svhn", "train_32x32.mat and test_32x32.mat")
    dirs = [root, root / "svhn"]
    found: dict[str, Path] = {}
    for split in ("train", "test"):
        name = f"{split}_32x32.mat"
        path = _find(dirs, [name])
        if path is None and download:
            import torchvision

            _torchvision_call(
                f"downloading SVHN {split} into {root}",
                f"without a network put {name} in {root} or pass --data-root",
                lambda split=split: torchvision.datasets.SVHN(
                    str(root), split=split, download=True),
            )
            path = _find(dirs, [name])
        if path is None:
            raise UserError(
                f"svhn: {name} not found in {_looked(dirs)}; expected the SVHN .mat "
                f"files (train_32x32.mat, test_32x32.mat); put {name} in {root} or "
                "pass --data-root (or --download where a network exists)"
            )
        found[split] = path
    x_train, y_train = _read_svhn_mat(found["train"])
    x_test, y_test = _read_svhn_mat(found["test"])
    return TensorData(
        "svhn", _signed(x_train), _labels(y_train), _signed(x_test), _labels(y_test),
        10, meta={"files": [str(p) for p in found.values()], "format": "mat",
                  "normalize": [0.5, 0.5]},
    )
