"""The dataset registry behind ``--data``: :func:`register` and :func:`load_dataset`.

Every loader returns a :class:`TensorData` with train and test tensors in memory
plus metadata for the run file; a reader module declares its loader once with
``@register(name, in_shape, n_classes)``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from landscape._errors import UserError, UserTypeError
from landscape.data.batches import TensorBatches


@dataclass
class TensorData:
    """Train and test tensors of one dataset.

    Attributes:
        name: Registry name.
        x_train: ``(n_train, *in_shape)`` float32 inputs.
        y_train: ``(n_train,)`` int64 labels.
        x_test: ``(n_test, *in_shape)`` float32 inputs.
        y_test: ``(n_test,)`` int64 labels.
        n_classes: Number of classes.
        x_predict: Unlabelled inputs to predict (Kaggle ``test.csv``), if any.
        meta: Plain values stored as ``/data`` attributes.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    x_predict: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])

    def attrs(self) -> dict[str, Any]:
        """Metadata for the run file's ``/data`` group."""
        return {"name": self.name, "n_train": len(self.y_train),
                "n_test": len(self.y_test), "in_shape": list(self.in_shape),
                "n_classes": self.n_classes, **self.meta}

    def batches(self, split: str = "train", batch_size: int = 4096) -> TensorBatches:
        """The ``train`` or ``test`` split as :class:`TensorBatches`.

        Returns:
            The batches.

        Raises:
            UserError: For an unknown split.
        """
        if split not in ("train", "test"):
            raise UserError(f"unknown split {split!r}; use train or test")
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test,
                                                                     self.y_test)
        return TensorBatches(x, y, batch_size)

    def splits(self, batch_size: int = 4096) -> tuple[TensorBatches, TensorBatches]:
        """The train and test splits as :class:`TensorBatches`.

        Returns:
            ``(train, test)``.
        """
        return self.batches("train", batch_size), self.batches("test", batch_size)

    def subset(self, train: int | None, test: int | None, seed: int) -> TensorData:
        """A deterministic random subset (``None`` keeps a split whole).

        Raises:
            UserError: If more samples are asked for than the split has.
        """
        g = torch.Generator().manual_seed(seed)

        def pick(
            x: Tensor, y: Tensor, n: int | None, split: str
        ) -> tuple[Tensor, Tensor]:
            if n is None or n == len(y):
                return x, y
            if not 0 < n <= len(y):
                raise UserError(
                    f"--{split}-samples {n} is out of range: the {split} split of "
                    f"{self.name} has {len(y)} samples"
                )
            idx = torch.randperm(len(y), generator=g)[:n].sort().values
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, train, "train")
        xte, yte = pick(self.x_test, self.y_test, test, "test")
        meta = {**self.meta, "subset_seed": seed}
        return replace(
            self, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, meta=meta
        )


Loader = Callable[..., TensorData]
DATASETS: dict[str, Loader] = {}


@dataclass(frozen=True)
class DatasetShape:
    """What a registered dataset's loader returns: one input's shape and the classes.

    The model registry checks a model against this before any file is read.
    """

    in_shape: tuple[int, ...]
    n_classes: int


#: :class:`DatasetShape` of every registered dataset, by name.
DATASET_SHAPES: dict[str, DatasetShape] = {}


def register(name: str, in_shape: tuple[int, ...], n_classes: int
             ) -> Callable[[Loader], Loader]:
    """Add a loader to :data:`DATASETS` under ``name``, with the shape of one input
    and the number of classes it returns (:data:`DATASET_SHAPES`)."""

    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        DATASET_SHAPES[name] = DatasetShape(tuple(in_shape), int(n_classes))
        return fn

    return deco


def dataset_options(name: str) -> tuple[str, ...]:
    """The loader-specific options of a registered dataset (``download``, ...).

    Returns:
        The keyword names its loader takes besides ``root`` and ``seed``.

    Raises:
        UserError: For an unknown name.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    params = inspect.signature(DATASETS[name]).parameters.values()
    return tuple(p.name for p in params if p.name not in ("root", "seed")
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def load_dataset(
    name: str,
    root: str | os.PathLike | None = "data",
    *,
    train_samples: int | None = None,
    test_samples: int | None = None,
    seed: int = 0,
    **options: Any,
) -> TensorData:
    """Load a registered dataset as tensors, optionally a seeded subset of it.

    Args:
        name: One of :data:`DATASETS`.
        root: Folder holding the files (``None``: no cache, generate in memory).
        train_samples: Keep this many training samples (``None``: all).
        test_samples: Keep this many test samples (``None``: all).
        seed: Seed of the subset (and of generated data).
        **options: Loader-specific options (e.g. ``download``, ``num_samples``).

    Returns:
        The dataset.

    Raises:
        UserError: For an unknown name or option, a missing or malformed file.
    """
    takes = dataset_options(name)
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise UserTypeError(f"load_dataset({name!r}) got unknown option(s) {unknown}; "
                            f"{name} takes {', '.join(takes) or 'no options'} besides "
                            "root, train_samples, test_samples and seed")
    path = None if root is None else Path(root)
    data = DATASETS[name](root=path, seed=seed, **options)
    if train_samples is not None or test_samples is not None:
        data = data.subset(train_samples, test_samples, seed)
    return data
