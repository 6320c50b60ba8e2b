"""Label noise: a seeded fraction of train labels replaced by another class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError


@dataclass(frozen=True)
class LabelNoise:
    """Which train labels were replaced, and by what.

    Attributes:
        fraction: The requested fraction ``P``.
        seed: The run's seed.
        indices: ``(k,)`` sorted positions in the train split, ``k = round(P n)``.
        original: ``(k,)`` the labels there before.
        noisy: ``(k,)`` the labels trained on (each differs from ``original``).
    """

    fraction: float
    seed: int
    indices: Tensor
    original: Tensor
    noisy: Tensor


#: Mixed into the label-noise seed so its stream differs from the init and shuffling ones.
_NOISE_STREAM = 0x6E015E


def corrupt_labels(y: Tensor, n_classes: int, fraction: float, seed: int,
                   ) -> tuple[Tensor, LabelNoise]:
    r"""Replace ``round(fraction * n)`` labels by a different class, uniformly chosen.

    The positions are a seeded uniform sample without replacement; each new
    label is :math:`(y + u) \bmod C` with :math:`u` uniform on ``1..C-1``, so it
    never equals the old one.  Same ``seed``, same corruption.

    Args:
        y: ``(n,)`` int64 class labels.
        n_classes: Number of classes ``C`` (>= 2).
        fraction: ``P`` in ``[0, 1)``.
        seed: Seed (the run's ``--seed``).

    Returns:
        The new labels (a copy) and the :class:`LabelNoise` record.

    Raises:
        UserError: If ``fraction`` is outside ``[0, 1)`` or there is one class.

    Example:
        >>> y = torch.zeros(10, dtype=torch.int64)
        >>> y2, noise = corrupt_labels(y, 10, 0.3, seed=0)
        >>> int((y2 != y).sum()), noise.indices.numel(), bool((noise.noisy != 0).all())
        (3, 3, True)
    """
    if not 0 <= fraction < 1:
        raise UserError(f"--label-noise must lie in [0, 1), got {fraction}")
    if n_classes < 2 and fraction > 0:
        raise UserError("label noise needs at least two classes")
    n = len(y)
    k = round(fraction * n)
    rng = np.random.default_rng([int(seed), _NOISE_STREAM])
    idx = np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, np.int64)
    idx_t = torch.from_numpy(idx.astype(np.int64))
    shift = torch.from_numpy(rng.integers(1, max(n_classes, 2), size=k).astype(np.int64))
    original = y[idx_t].clone()
    noisy = (original + shift) % n_classes
    out = y.clone()
    out[idx_t] = noisy
    return out, LabelNoise(float(fraction), int(seed), idx_t, original, noisy)
