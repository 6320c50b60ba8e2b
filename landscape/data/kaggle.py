"""Kaggle Digit Recognizer: the CSV reader, the submission writer and MNIST at its scale."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError
from landscape.data._files import (
    _find,
    _first_line,
    _labels,
    _looked,
    _need_root,
    _unit,
)
from landscape.data.registry import TensorData, register

_KAGGLE_PIXELS = 784


def _read_kaggle_csv(path: Path, labelled: bool) -> np.ndarray:
    """Rows of a Kaggle Digit Recognizer CSV as int32 ``(N, 785)`` or ``(N, 784)``.

    Raises:
        UserError: For a wrong header, a malformed row or out-of-range values.
    """
    columns = [f"pixel{i}" for i in range(_KAGGLE_PIXELS)]
    shown = "pixel0,...,pixel783"
    if labelled:
        columns, shown = ["label", *columns], "label," + shown
    fix = f"expected the Kaggle Digit Recognizer header {shown}"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [c.strip().strip('"') for c in f.readline().strip().split(",")]
            if header != columns:
                head = ",".join(header[:3]) + (",..." if len(header) > 3 else "")
                raise UserError(
                    f"{path}: wrong CSV columns ({len(header)} columns starting "
                    f"{head!r}); {fix}"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "contained no data"
                rows = np.loadtxt(f, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: not a Kaggle Digit Recognizer CSV ({_first_line(e)}); "
            f"{fix} and one row of {len(columns)} integers per image"
        ) from e
    if rows.shape[0] == 0:
        raise UserError(f"{path}: has a header but no rows; {fix} and rows under it")
    if rows.shape[1] != len(columns):
        raise UserError(
            f"{path}: rows have {rows.shape[1]} values but the header has "
            f"{len(columns)}; {fix} ({_KAGGLE_PIXELS} pixels per image)"
        )
    pixels = rows[:, 1:] if labelled else rows
    if pixels.min() < 0 or pixels.max() > 255:
        raise UserError(f"{path}: pixel values must be 0-255; {fix}")
    if labelled and (rows[:, 0].min() < 0 or rows[:, 0].max() > 9):
        raise UserError(f"{path}: labels must be digits 0-9; {fix}")
    return rows


@register("kaggle-digits", (1, 28, 28), 10)
def load_kaggle_digits(
    root: Path | None, seed: int = 0, test_fraction: float = 1 / 6, **_: Any
) -> TensorData:
    """Kaggle Digit Recognizer: ``root/train.csv`` and optional ``root/test.csv``.

    ``test.csv`` has no labels, so the labelled test split is a hold-out of
    ``train.csv`` drawn with ``seed``; ``test.csv`` becomes ``x_predict``
    (``None`` if the file is absent).  Inputs are float32 ``(N, 1, 28, 28)``
    in ``[0, 1]``.  Files are also found in ``root/digit-recognizer/``.

    Args:
        root: Data folder.
        seed: Seed of the hold-out split.
        test_fraction: Fraction of ``train.csv`` held out as the test split.
    """
    root = _need_root(root, "kaggle-digits", "train.csv")
    dirs = [root, root / "digit-recognizer"]
    train = _find(dirs, ["train.csv"])
    if train is None:
        raise UserError(
            f"kaggle-digits: train.csv not found in {_looked(dirs)}; expected the "
            "Kaggle Digit Recognizer CSV (label,pixel0,...,pixel783); put train.csv "
            f"(and test.csv) in {root} or pass --data-root"
        )
    if not 0 < test_fraction < 1:
        raise UserError(
            f"test_fraction {test_fraction} is out of range; use a fraction strictly "
            "between 0 and 1 (default 1/6)"
        )
    rows = _read_kaggle_csv(train, labelled=True)
    n = len(rows)
    if n < 2:
        raise UserError(f"{train}: has {n} row; a train/test hold-out needs at least 2")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test_idx = perm[:n_test].sort().values.numpy()
    train_idx = perm[n_test:].sort().values.numpy()

    def images(a: np.ndarray) -> Tensor:
        return _unit(a.reshape(-1, 1, 28, 28))

    files = [str(train)]
    x_predict = None
    predict = train.parent / "test.csv"
    if predict.is_file():
        x_predict = images(_read_kaggle_csv(predict, labelled=False))
        files.append(str(predict))
    return TensorData(
        "kaggle-digits",
        images(rows[train_idx, 1:]), _labels(rows[train_idx, 0]),
        images(rows[test_idx, 1:]), _labels(rows[test_idx, 0]), 10,
        x_predict=x_predict,
        meta={"files": files, "format": "csv", "test_fraction": float(test_fraction),
              "holdout_seed": int(seed),
              "n_predict": 0 if x_predict is None else len(x_predict)},
    )


def write_submission(path: str | os.PathLike, predictions: Tensor | np.ndarray) -> Path:
    """Write a Kaggle Digit Recognizer submission (``ImageId,Label``, ids from 1).

    The file is written to a temporary name and then renamed, so a crash never
    leaves a half-written submission.

    Args:
        path: Output CSV.
        predictions: ``(N,)`` predicted digits, or ``(N, 10)`` scores (argmax is taken).

    Returns:
        The path written.

    Raises:
        UserError: If the predictions are not digits 0-9.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     print(write_submission(Path(d) / "s.csv", [7, 2]).read_text(), end="")
        ImageId,Label
        1,7
        2,2
    """
    if isinstance(predictions, Tensor):
        predictions = predictions.detach().cpu().numpy()
    p = np.asarray(predictions)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    if p.ndim != 1 or p.size == 0:
        raise UserError(
            f"predictions have shape {p.shape}; pass (N,) digits or (N, 10) scores"
        )
    whole = np.issubdtype(p.dtype, np.floating) and bool(np.all(p == np.round(p)))
    if not (np.issubdtype(p.dtype, np.integer) or whole):
            raise UserError(f"predictions of dtype {p.dtype} are not whole digits 0-9")
    labels = p.astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(
            f"predictions must be digits 0-9, got values {labels.min()}..{labels.max()}"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write("ImageId,Label\n")
            f.writelines(f"{i},{v}\n" for i, v in enumerate(labels.tolist(), start=1))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def kaggle_split(data: TensorData, n_train: int = 42_000) -> TensorData:
    """MNIST at the Kaggle Digit Recognizer's scale: ``train.csv`` and a held-out ``test.csv``.

    The competition's 42,000 labelled and 28,000 unlabelled digits are MNIST's
    70,000 images.  Here the images are taken in file order (the 60,000 of
    ``train-images`` then the 10,000 of ``t10k-images``): the first ``n_train``
    are the training split (``train.csv``), the rest are held out.  The held-out
    images are both the test split (their labels score the models) and
    ``x_predict`` (the images a Kaggle submission is written for), so the test
    accuracy is the submission's score.  No randomness: every seed sees the same
    split.

    Args:
        data: MNIST as :func:`load_mnist` returns it (official train/test split).
        n_train: Images in the training split.

    Returns:
        The re-split data.

    Raises:
        UserError: If ``n_train`` leaves no image on either side.

    Example:
        >>> d = TensorData("mnist", torch.zeros(6, 1), torch.arange(6), torch.ones(4, 1),
        ...                torch.arange(6, 10), 10)
        >>> k = kaggle_split(d, n_train=7)
        >>> k.y_train.tolist(), k.y_test.tolist(), k.x_predict.ravel().tolist()
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9], [1.0, 1.0, 1.0])
    """
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    if not 0 < n_train < len(y):
        raise UserError(f"kaggle_train {n_train} is out of range: {data.name} has "
                        f"{len(y)} images; keep some on both sides (Kaggle: 42000)")
    n_official = len(data.y_train)
    def spans(lo: int, hi: int) -> str:  # images lo..hi-1 of the pooled file order
        parts = []
        if lo < n_official:
            parts.append(f"train-images {lo}..{min(hi, n_official) - 1}")
        if hi > n_official:
            parts.append(f"t10k-images {max(lo - n_official, 0)}..{hi - n_official - 1}")
        return " and ".join(parts)

    n_official = len(data.y_train)
    meta = {**data.meta, "split": "kaggle", "kaggle_train": int(n_train),
            "train_images": spans(0, n_train), "held_out_images": spans(n_train, len(y)),
            "n_predict": len(y) - n_train}
    return replace(data, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                   y_test=y[n_train:], x_predict=x[n_train:], meta=meta)
