"""Helpers shared by the test modules: BN randomisation and one allclose reporter."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def randomize_bn(net: nn.Module, seed: int = 0, *, dtype: torch.dtype | None = None
                 ) -> nn.Module:
    """Random running statistics and affine parameters in every BatchNorm of ``net``.

    Drawn from a generator seeded with ``seed``, in each layer's dtype (``net`` is
    first cast to ``dtype`` if given): means and affine parameters standard
    normal (negative scales included), variances in [0.2, 3.2).

    Returns:
        ``net`` (modified in place).
    """
    if dtype is not None:
        net = net.to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and (
                    mod.running_mean is not None):
                c, dt = mod.num_features, mod.running_mean.dtype
                mod.running_mean.copy_(torch.randn(c, generator=g, dtype=dt))
                mod.running_var.copy_(0.2 + 3 * torch.rand(c, generator=g, dtype=dt))
                if mod.affine:
                    mod.weight.copy_(torch.randn(c, generator=g, dtype=dt))
                    mod.bias.copy_(torch.randn(c, generator=g, dtype=dt))
    return net


def allclose_report(actual: object, expected: object, *, rtol: float = 0.0,
                    atol: float = 0.0, what: str = "values", most: int = 5) -> None:
    """``np.isclose`` on every entry; on failure the message names the worst entries.

    ``|actual - expected| <= atol + rtol * |expected|`` entry by entry (give
    ``atol = tol * max|expected|`` for a tolerance relative to the largest entry).

    Raises:
        AssertionError: Naming how many entries differ and the ``most`` worst.
    """
    def array(x: object) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().double().numpy()
        return np.asarray(x, dtype=np.float64)

    a, e = array(actual), array(expected)
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol)
    if not bad.any():
        return
    diff = np.where(bad, np.abs(a - e), -np.inf).ravel()
    worst = np.argsort(-diff)[:min(most, int(bad.sum()))]
    rows = [f"  [{i}] actual {a.flat[i]!r} expected {e.flat[i]!r} "
            f"(rel {abs(a.flat[i] - e.flat[i]) / max(abs(e.flat[i]), 1e-300):.2e})"
            for i in worst]
    raise AssertionError(f"{what}: {int(bad.sum())} of {a.size} entries differ "
                         f"(rtol {rtol:g}, atol {atol:g}):\n" + "\n".join(rows))
