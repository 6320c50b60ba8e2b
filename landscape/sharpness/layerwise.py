r"""Per-layer curvature: the top eigenvalue and the trace of each parameter block's Hessian.

For a parameter tensor :math:`b` (a layer's weight, a bias, a BN scale) the
diagonal block of the Hessian is :math:`H_{bb} = \partial^2 L / \partial\theta_b^2`.
Its products come from the full HVP with the vector zero outside the block,
:math:`H_{bb} u = (H\,[0, \dots, u, \dots, 0])_b`, so each block costs only
HVPs of the whole model and nothing is formed densely, except for blocks of at
most ``layer_dense_max`` entries, which are built exactly from that many
products.  Larger blocks get their top eigenvalue by Lanczos (ARPACK) and their
trace by Hutchinson's estimator with Rademacher probes supported on the block
(so its variance involves :math:`H_{bb}` alone).

The per-block numbers answer the question PyHessian users ask most — which
layers carry the curvature — and :math:`\sum_b \operatorname{tr} H_{bb} =
\operatorname{tr} H`.

Example:
    >>> import torch
    >>> H = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 1.0]],
    ...                  dtype=torch.float64)
    >>> r = block_curvature(lambda v: H @ v, [slice(0, 2), slice(2, 3)])
    >>> r.lambda_max.round(6).tolist(), r.trace.tolist()
    ([3.618034, 1.0], [5.0, 1.0])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from landscape.sharpness._base import HVP, generator, rademacher, sem
from landscape.sharpness._config import check_positive, param
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import Headline, MeasureSpec, Result, register
from landscape.sharpness.hessian import dense_hessian, hessian_top_eigenvalues


@dataclass(frozen=True)
class BlockCurvature:
    """Top eigenvalue and trace of each diagonal Hessian block.

    Attributes:
        lambda_max: ``(L,)`` largest eigenvalue of each block.
        trace: ``(L,)`` trace of each block (exact for dense blocks).
        trace_sem: ``(L,)`` standard error of each trace (0 where exact).
        exact: ``(L,)`` whether the block was formed densely.
        n_hvp: HVPs used.
    """

    lambda_max: np.ndarray
    trace: np.ndarray
    trace_sem: np.ndarray
    exact: np.ndarray
    n_hvp: int


def block_curvature(hvp: HVP, blocks: Sequence[slice], *, samples: int = 20,
                    tol: float = 1e-3, dense_max: int = 64, seed: int = 0,
                    dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu") -> BlockCurvature:
    """Top eigenvalue and trace of the diagonal Hessian block of each slice.

    Args:
        hvp: ``v -> H v`` on the full ``(n,)`` vector.
        blocks: Disjoint slices of the flat vector (e.g. a layout's tensors).
        samples: Hutchinson probes per block that is not formed densely.
        tol: ARPACK's relative tolerance for the top eigenvalue.
        dense_max: Blocks with at most this many entries are formed exactly.
        seed: Seed of the probes and the Lanczos start vectors.
        dtype: Torch dtype the HVP expects.
        device: Torch device the HVP expects.

    Returns:
        The per-block values.

    Raises:
        ValueError: If there is no block or ``samples`` is not positive.
    """
    if not blocks or samples < 1:
        raise ValueError(f"need at least one block and samples >= 1, got {len(blocks)} "
                         f"blocks and {samples} samples")
    n = max(sl.stop for sl in blocks)
    count = 0

    def restricted(sl: slice) -> HVP:
        def h(u: torch.Tensor) -> torch.Tensor:
            nonlocal count
            count += 1
            v = torch.zeros(n, dtype=dtype, device=device)
            v[sl] = u.to(v)
            return hvp(v)[sl]
        return h

    gen = generator(seed, device)
    lmax, tr, tr_sem, exact = [], [], [], []
    for i, sl in enumerate(blocks):
        size = sl.stop - sl.start
        h = restricted(sl)
        if size <= dense_max:
            Hb = dense_hessian(h, size, dtype, device)
            lmax.append(float(np.linalg.eigvalsh(Hb)[-1]))
            tr.append(float(np.trace(Hb)))
            tr_sem.append(0.0)
            exact.append(True)
            continue
        top = hessian_top_eigenvalues(h, size, 1, tol=tol, seed=seed + i, dtype=dtype,
                                      device=device)
        quad = np.empty(samples)
        for j in range(samples):
            u = rademacher(size, gen, dtype, device)
            quad[j] = float(u.double() @ h(u).double())
        lmax.append(float(top.eigenvalues[0]))
        tr.append(float(quad.mean()))
        tr_sem.append(sem(quad) if samples > 1 else math.nan)
        exact.append(False)
    return BlockCurvature(np.array(lmax), np.array(tr), np.array(tr_sem),
                          np.array(exact), count)


# =========================================================================== measure
@dataclass(frozen=True)
class LayerHessianParams:
    """Parameters of the ``layer_hessian`` measure."""

    layer_trace_samples: int = param(20, "Hutchinson probes per parameter block")
    layer_eig_tol: float = param(1e-3, "ARPACK tolerance of each block's top eigenvalue")
    layer_dense_max: int = param(64, "blocks of at most this many entries are formed "
                                 "exactly")

    def validate(self) -> None:
        """Raise a one-line error for a bad setting."""
        check_positive(self, "layer_trace_samples", "layer_eig_tol")
        check_positive(self, "layer_dense_max", allow_zero=True)


def layer_hessian_measure(ctx: MeasureContext, p: LayerHessianParams) -> Result:
    """Per-block top eigenvalue and trace at the context's solution.

    Returns:
        Scalars (the largest block eigenvalue and its block, the sum of block
        traces, the block names as JSON) and per-block arrays.
    """
    names = [name for name, _, _, _ in ctx.layout.slices()]
    slices = [sl for _, sl, _, _ in ctx.layout.slices()]
    r = block_curvature(ctx.hvp(), slices, samples=p.layer_trace_samples,
                        tol=p.layer_eig_tol, dense_max=p.layer_dense_max, seed=ctx.seed,
                        dtype=ctx.dtype, device=ctx.device)
    top = int(np.argmax(r.lambda_max))
    return ({"block_lambda_max": float(r.lambda_max[top]), "top_block": names[top],
             "block_trace_sum": float(r.trace.sum()), "n_blocks": len(names),
             "blocks": json.dumps(names), "n_hvp": r.n_hvp},
            {"lambda_max": r.lambda_max, "trace": r.trace, "trace_sem": r.trace_sem,
             "exact": r.exact, "sizes": np.array([s.stop - s.start for s in slices])})


register(MeasureSpec(
    name="layer_hessian", order=35, params=LayerHessianParams,
    compute=layer_hessian_measure, unit="HVP",
    summary="top eigenvalue and trace of each parameter block's Hessian (per layer)",
    headline=(Headline("block_lambda_max", "largest block λ_max", report=False),
              Headline("block_trace_sum", "sum of block traces", report=False)),
    datasets=("lambda_max", "trace", "trace_sem", "exact", "sizes"),
    line=lambda a: (f"largest block lambda_max {a['block_lambda_max']:.6g} "
                    f"({a['top_block']}), sum of block traces "
                    f"{a['block_trace_sum']:.6g} over {a['n_blocks']} blocks "
                    f"({a['n_hvp']} HVPs)"),
    reference="diagonal Hessian blocks (cf. PyHessian's per-layer spectra)"))
