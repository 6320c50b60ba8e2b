r"""The one batch iterator every analysis reads (:func:`as_batches`).

The analyses take data as in-memory tensors ``(inputs, targets)``
(:class:`TensorBatches`, the fast path: moved to the device once and split into
batches) or as any re-iterable of ``(inputs, targets)`` batches such as a
``torch.utils.data.DataLoader`` (:class:`StreamBatches`: each batch is moved to
the device as it is used, so memory does not grow with the data set).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError, UserTypeError

Batch = tuple[Tensor, Tensor]


class TensorBatches:
    """In-memory ``(inputs, targets)`` split into batches: the fast path.

    The tensors are moved to a device once (:meth:`to`, cached), so iterating
    costs only the slicing.

    Args:
        x: ``(N, ...)`` inputs.
        y: ``(N, ...)`` targets (class indices or regression targets).
        batch_size: Samples per batch (the last one may be smaller).

    Raises:
        UserError: If ``x`` and ``y`` differ in length, are empty, or the batch
            size is not positive.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int = 4096) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise UserTypeError(
                f"in-memory data must be a pair of tensors (inputs, targets), got "
                f"({type(x).__name__}, {type(y).__name__}); pass torch tensors or a "
                "DataLoader")
        if len(x) != len(y):
            raise UserError(f"inputs have {len(x)} samples but targets {len(y)}; pass "
                            "inputs and targets of the same length")
        if len(y) == 0:
            raise UserError("the data has no samples; pass at least one (inputs, "
                            "targets) pair")
        if batch_size < 1:
            raise UserError(f"batch size must be positive, got {batch_size}")
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self._moved: dict[tuple[torch.device, torch.dtype | None], TensorBatches] = {}

    @property
    def num_samples(self) -> int:
        """Number of samples."""
        return len(self.y)

    def __iter__(self) -> Iterator[Batch]:
        """Yield ``(inputs, targets)`` batches in order."""
        return zip(self.x.split(self.batch_size), self.y.split(self.batch_size),
                   strict=True)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None
           ) -> TensorBatches:
        """The same batches on ``device`` (floating inputs cast to ``dtype``), cached.

        Returns:
            A :class:`TensorBatches` whose tensors live on ``device``.
        """
        key = (torch.device(device), dtype)
        if key not in self._moved:
            x = self.x.to(key[0])
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            y = self.y.to(key[0])
            if dtype is not None and y.is_floating_point():
                y = y.to(dtype)
            moved = TensorBatches(x, y, self.batch_size)
            moved._moved[key] = moved
            self._moved[key] = moved
        return self._moved[key]


class StreamBatches:
    """Any re-iterable of ``(inputs, targets)`` batches, e.g. a ``DataLoader``.

    Each batch is checked and moved to the device as it is used, so memory
    does not grow with the number of samples.  The iterable is read once per
    pass; it must yield the same batches every pass (no ``shuffle``) for the
    curvature measures, which check this on the first batch.

    Args:
        batches: The iterable; an iterator (single pass) is refused.

    Raises:
        UserTypeError: If ``batches`` is a one-shot iterator or not iterable.
    """

    def __init__(self, batches: Iterable[Any]) -> None:
        if isinstance(batches, Iterator):
            raise UserTypeError(
                "the data is a one-shot iterator; pass something that can be iterated "
                "again on every pass, e.g. a DataLoader or a list of batches")
        if not isinstance(batches, Iterable):
            raise UserTypeError(
                f"data of type {type(batches).__name__} is not iterable; pass (inputs, "
                "targets) tensors or a DataLoader of (inputs, targets) batches")
        self.batches = batches
        self._num_samples: int | None = None

    @property
    def num_samples(self) -> int | None:
        """Samples per pass, known after the first full pass (``None`` before)."""
        return self._num_samples

    def __iter__(self) -> Iterator[Batch]:
        """Yield the checked ``(inputs, targets)`` batches (not yet moved)."""
        n = 0
        for i, batch in enumerate(self.batches):
            xb, yb = check_batch(batch, i)
            n += len(yb)
            yield xb, yb
        if n == 0:
            raise UserError("the data loader yielded no batch; pass a non-empty "
                            "DataLoader (check the dataset length and drop_last)")
        self._num_samples = n


def check_batch(batch: Any, index: int = 0) -> Batch:
    """``batch`` as an ``(inputs, targets)`` pair of equal-length tensors.

    Returns:
        The pair.

    Raises:
        UserTypeError: If the batch is not a pair of tensors.
        UserError: If inputs and targets differ in length.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        what = (f"a {type(batch).__name__} of length {len(batch)}"
                if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}")
        raise UserTypeError(
            f"batch {index} of the data is {what}, not an (inputs, targets) pair; make "
            "the loader yield (inputs, targets), e.g. DataLoader(TensorDataset(x, y)) "
            "or a collate_fn returning a pair")
    xb, yb = batch
    if not isinstance(xb, Tensor) or not isinstance(yb, Tensor):
        fix = ("convert them with torch.as_tensor" if any(
            isinstance(t, np.ndarray) for t in batch) else
            "make the loader yield (inputs, targets) tensors")
        raise UserTypeError(
            f"batch {index} holds ({type(xb).__name__}, {type(yb).__name__}), not "
            f"tensors; {fix}")
    if len(xb) != len(yb):
        raise UserError(f"batch {index} has {len(xb)} inputs but {len(yb)} targets; "
                        "make the loader yield matching inputs and targets")
    return xb, yb


Batches = TensorBatches | StreamBatches


def as_batches(data: Any, batch_size: int = 4096) -> Batches:
    """The one batch iterator behind every analysis.

    Args:
        data: ``(inputs, targets)`` tensors (in memory, the fast path), a
            :class:`TensorBatches` / :class:`StreamBatches`, or any re-iterable
            of ``(inputs, targets)`` batches such as a ``DataLoader``.
        batch_size: Batch size for in-memory tensors.

    Returns:
        The batches.

    Raises:
        UserTypeError: For data of another form (a pair of numpy arrays: convert
            them to tensors).
    """
    if isinstance(data, (TensorBatches, StreamBatches)):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, Tensor) for t in data):
        return TensorBatches(data[0], data[1], batch_size)
    if isinstance(data, Tensor):
        raise UserTypeError("data is a single tensor; pass (inputs, targets) or a "
                            "DataLoader of (inputs, targets) batches")
    if isinstance(data, (tuple, list)) and len(data) == 2 and any(
            isinstance(t, np.ndarray) for t in data) and all(
            isinstance(t, (np.ndarray, Tensor)) for t in data):
        raise UserTypeError(
            f"data is a pair of ({type(data[0]).__name__}, {type(data[1]).__name__}), "
            "not tensors; convert them: (torch.as_tensor(x), torch.as_tensor(y))")
    return StreamBatches(data)
