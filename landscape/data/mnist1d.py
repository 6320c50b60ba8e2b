"""MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package (the default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape.data.registry import TensorData, register


@register("mnist1d", (1, 40), 10)
def load_mnist1d(
    root: Path | None, seed: int = 0, num_samples: int = 5000, **_: Any
) -> TensorData:
    """MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package.

    The ``num_samples`` sequences of length 40 are split 80/20 into train and
    test, as the package does.  With a ``root`` the arrays are cached in
    ``root/mnist1d/`` as ``.npz`` (never a pickle).
    """
    cache = None
    if root is not None:
        cache = root / "mnist1d" / f"mnist1d-n{num_samples}-seed{seed}.npz"
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        arrays = _generate_mnist1d(num_samples, seed)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")  # no race
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)

    def xs(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None, :]

    def ys(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return TensorData(
        "mnist1d", xs(arrays["x"]), ys(arrays["y"]), xs(arrays["x_test"]),
        ys(arrays["y_test"]), 10, meta={"num_samples": num_samples, "seed": seed},
    )


def _generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {k: d[k] for k in ("x", "y", "x_test", "y_test")}
