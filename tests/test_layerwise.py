"""The per-layer Hessian measure against the dense Hessian's diagonal blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import landscape as ls
from landscape.sharpness.layerwise import block_curvature

F64 = torch.float64


def _net_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.BatchNorm1d(12), nn.Tanh(),
                        nn.Linear(12, 3)).double().eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.3, 0.3)
        net[1].running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(40, 5, generator=g, dtype=F64), torch.randint(0, 3, (40,),
                                                                          generator=g)


def _dense_blocks(net: nn.Module, x: torch.Tensor, y: torch.Tensor
                  ) -> list[tuple[str, np.ndarray]]:
    layout = ls.ParamLayout.from_module(net)
    buffers = dict(net.named_buffers())

    def f(theta: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(net, {**layout.unflatten(theta), **buffers}, (x,))
        return F.cross_entropy(out, y)

    H = torch.func.hessian(f)(layout.read(net, dtype=F64)).numpy()
    return [(name, H[sl, sl]) for name, sl, _, _ in layout.slices()]


@pytest.mark.parametrize("dense_max", [10_000, 0], ids=["dense_blocks", "lanczos_hutch"])
def test_layer_hessian_equals_the_dense_diagonal_blocks(dense_max: int) -> None:
    net, x, y = _net_and_data()
    blocks = _dense_blocks(net, x, y)
    r = ls.measure(net, (x, y), "layer_hessian", dtype="float64", layer_dense_max=dense_max,
                   layer_eig_tol=1e-10, layer_trace_samples=60)
    assert json.loads(r.blocks) == [n for n, _ in blocks]
    top = np.array([np.linalg.eigvalsh(0.5 * (B + B.T))[-1] for _, B in blocks])
    trace = np.array([np.trace(B) for _, B in blocks])
    np.testing.assert_allclose(r.lambda_max, top, rtol=1e-8, atol=1e-12)
    if dense_max:  # every block formed exactly
        assert r.exact.all()
        np.testing.assert_allclose(r.trace, trace, rtol=1e-10, atol=1e-12)
        assert r.block_trace_sum == pytest.approx(trace.sum(), rel=1e-10)
    else:  # Hutchinson on each block: within 4 standard errors, which shrink as 1/sqrt(m)
        assert not r.exact.any()
        assert (np.abs(r.trace - trace) <= 4 * r.trace_sem + 1e-12).all()
    assert r.block_lambda_max == pytest.approx(top.max(), rel=1e-8)
    assert r.top_block == blocks[int(np.argmax(top))][0]


def test_block_curvature_of_a_known_matrix() -> None:
    g = torch.Generator().manual_seed(4)
    A = torch.randn(9, 9, generator=g, dtype=F64)
    H = A @ A.T
    blocks = [slice(0, 4), slice(4, 9)]
    r = block_curvature(lambda v: H @ v, blocks, dense_max=100)
    for i, sl in enumerate(blocks):
        B = H[sl, sl].numpy()
        assert r.lambda_max[i] == pytest.approx(np.linalg.eigvalsh(B)[-1], rel=1e-12)
        assert r.trace[i] == pytest.approx(np.trace(B), rel=1e-12)
    assert r.n_hvp == 9  # one product per entry of each block
    with pytest.raises(ValueError, match="at least one block"):
        block_curvature(lambda v: H @ v, [])
