"""What the file readers share: finding files, one-line errors, pixels to tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError


def _need_root(root: Path | None, name: str, files: str) -> Path:
    """``root`` itself, or a UserError for file-based datasets without one."""
    if root is None:
        raise UserError(
            f"dataset {name!r} reads {files} from disk; pass --data-root DIR"
        )
    return root


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _find(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first ``dir/name`` that is a file, trying every name in each dir in turn."""
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def _find_dir(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first of ``dirs`` holding every one of ``names``."""
    return next((d for d in dirs if all((d / n).is_file() for n in names)), None)


def _looked(dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def _unit(x: np.ndarray) -> Tensor:
    """``(N, C, H, W)`` uint8 pixels as float32 in ``[0, 1]`` (like ToTensor)."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8)).float().div_(255)


def _signed(x: np.ndarray) -> Tensor:
    """``(N, C, H, W)`` uint8 pixels as ``(x/255 - 0.5)/0.5`` (Normalize(0.5, 0.5))."""
    return _unit(x).sub_(0.5).div_(0.5)


def _labels(y: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _torchvision_call(what: str, fallback: str, fn: Callable[[], Any]) -> Any:
    """Run a torchvision dataset constructor, turning its failures into a UserError."""
    try:
        return fn()
    except Exception as e:  # RuntimeError, URLError, pickle errors, ...
        raise UserError(f"{what} failed ({_first_line(e)}); {fallback}") from e
