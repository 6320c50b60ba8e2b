"""Shuffled k-fold splits of a training set."""

from __future__ import annotations

import torch
from torch import Tensor

from landscape._errors import UserError


def kfold_indices(n: int, k: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Shuffled ``k``-fold splits of ``range(n)`` as ``(train_idx, val_idx)`` pairs.

    Every index is in exactly one validation fold; fold sizes differ by at most 1.

    Example:
        >>> folds = kfold_indices(10, 5, seed=0)
        >>> sorted(torch.cat([v for _, v in folds]).tolist()) == list(range(10))
        True

    Raises:
        UserError: If ``k`` is not between 2 and ``n``.
    """
    if not 2 <= k <= n:
        raise UserError(f"--folds {k} is invalid for {n} samples; use 2 <= k <= n")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = torch.tensor_split(perm, k)
    return [
        (torch.cat([f for j, f in enumerate(folds) if j != i]).sort().values,
         folds[i].sort().values)
        for i in range(k)
    ]
