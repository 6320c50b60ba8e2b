r"""Optima modulo permutation: align two networks' hidden units, repair, merge.

Two solutions of one architecture are compared *after* permuting the hidden
units of the second into the first one's order (:mod:`landscape.paths.permutation`
finds which axes share a permutation):

* **weight matching** (Ainsworth, Hayase & Srinivasa 2022, arXiv 2209.04836)
  maximises :math:`\sum_\ell \langle W^A_\ell, P_\ell W^B_\ell P_{\ell-1}^\top\rangle_F`
  (biases and BN parameters included) by coordinate descent: with the other
  permutations fixed, :math:`P_\ell` solves a linear assignment
  (``scipy.optimize.linear_sum_assignment``) on
  :math:`S_\ell = \sum_{\text{axes of }\ell} A_{(\ell)} \tilde B_{(\ell)}^\top`, the
  unfoldings of every tensor along its axis of group :math:`\ell` with the other
  axes already permuted.  Groups are visited in a seeded random order until a
  whole sweep changes nothing; no data needed;
* **activation matching** (same paper): :math:`P_\ell` maximises the summed
  correlation of A's and B's standardised activations of group :math:`\ell`
  (after its activations and residual sums) on a few train batches, one
  assignment per group.

Along :math:`\theta(t) = (1-t)\theta_A + t P(\theta_B)` the activations' variance
collapses (Jordan et al. 2022, arXiv 2211.08403).  **RESET** recomputes BN
statistics at each :math:`t` (the evaluator's ``bn="recompute"``); **REPAIR**
(:func:`repair`) rescales each channel of each hidden layer so that its
preactivation mean and standard deviation equal :math:`(1-t)\mu_A + t\mu_B` and
:math:`(1-t)\sigma_A + t\sigma_B`; the affine correction is folded into the
BatchNorm that follows the layer, or into the layer's own weight and bias
(layers with neither a BN nor a bias are left as they are).  Layers are
corrected one after the other, each on statistics measured with the earlier
corrections in place, so every corrected channel matches its target on the
data used.

The barrier of a line is the curves' (:func:`landscape.paths.barrier`).

Example:
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> from landscape.paths.permutation import permute_model, random_permutations
    >>> spec = permutation_spec(a)
    >>> b = permute_model(a, spec, random_permutations(spec, seed=1))
    >>> res = align(a, b)
    >>> torch.equal(res.model[0].weight, a[0].weight)
    True
"""

from __future__ import annotations

import copy
import inspect
import operator
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import Tensor, fx, nn

from landscape._errors import UserError, arg, check_int, not_finite
from landscape.data import as_batches
from landscape.evaluate import Evaluator, _forward, model_device
from landscape.params import ParamLayout
from landscape.paths.curves import Curve, CurveProfile, barrier, curve_profile, profile_grid
from landscape.paths.permutation import (
    PermutationSpec,
    Traced,
    entry_index,
    permutation_spec,
    permute_model,
    permute_state,
    permute_tensor,
    trace_permutations,
)


class AlignMethod(str, Enum):
    """How the permutations are found (values feed ``--method`` and HDF5)."""

    WEIGHTS = "weights"
    ACTIVATIONS = "activations"


def _method(method: AlignMethod | str) -> AlignMethod:
    try:
        return AlignMethod(method)
    except ValueError:
        raise UserError(f"unknown alignment method {method!r}; use weights or "
                        "activations") from None


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")


def _check_finite(networks: Mapping[str, Mapping[str, Tensor]]) -> None:
    """Raise unless every tensor of every network (``{"A": {name: tensor}}``) is finite.

    Raises:
        UserError: Naming the first tensor that holds NaN or inf and its network.
    """
    for which, ts in networks.items():
        bad = next((k for k, v in ts.items() if not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise UserError(f"{bad} of network {which} holds NaN or inf: align trained, "
                            "finite weights")


def _check_samples(samples: Any) -> None:
    """Raise unless ``samples`` is ``None`` (all inputs) or an integer >= 1."""
    if samples is not None:
        check_int(samples, arg("samples"), 1, "None: all the inputs")


def _progress(progress: bool, total: int | None, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr,
                leave=False, dynamic_ncols=True)


# =========================================================================== checks
def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> Traced:
    """Trace ``model_a`` and check that ``model_b`` has its parameters and buffers.

    Returns:
        ``model_a`` traced.

    Raises:
        UserError: Naming the first tensor that differs, or an unsupported module.
    """
    sa, sb = model_a.state_dict(), model_b.state_dict()
    for k in list(sa) + [k for k in sb if k not in sa]:
        if k not in sa or k not in sb:
            where = "model_b" if k not in sa else "model_a"
            raise UserError(f"the two networks differ: {k} exists only in {where}; "
                            "align two networks of the same architecture and width")
        if sa[k].shape != sb[k].shape:
            raise UserError(f"the two networks differ: {k} has shape "
                            f"{tuple(sa[k].shape)} and {tuple(sb[k].shape)}; align two "
                            "networks of the same architecture and width")
    traced = trace_permutations(model_a)
    if type(model_a) is not type(model_b) or permutation_spec(model_b) != traced.spec:
        raise UserError(f"the two networks differ in structure ({type(model_a).__name__} "
                        f"and {type(model_b).__name__}); align two networks of the same "
                        "architecture")
    return traced


# =========================================================================== matching
def _unfold(x: Tensor, axis: int, n: int) -> Tensor:
    """``x`` with ``axis`` first, as ``(n, -1)`` (a unit's repeated entries side by side)."""
    return x.movedim(axis, 0).reshape(n, -1)


def _assign(S: Tensor) -> Tensor:
    """The permutation maximising ``sum_i S[i, perm[i]]``."""
    from scipy.optimize import linear_sum_assignment  # 0.15-0.2 s of import: not at start-up

    rows, cols = linear_sum_assignment(S.cpu().numpy(), maximize=True)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm)


def _term(a: Tensor, b: Tensor, ax: int, n: int) -> Tensor:
    """``S``'s term of one tensor: its unfoldings along ``ax`` multiplied, in float64."""
    return (_unfold(a, ax, n) @ _unfold(b, ax, n).T).double()


def weight_matching(
    spec: PermutationSpec, params_a: Mapping[str, Tensor], params_b: Mapping[str, Tensor],
    *, seed: int = 0, max_sweeps: int = 100, init: Mapping[str, Tensor] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Tensor], int]:
    r"""Permutations of B's units maximising :math:`\sum \langle A, P(B)\rangle` (see module doc).

    A group is visited only when a group its :math:`S` depends on has moved since
    its last visit (otherwise the answer would be the same).  :math:`S` is kept
    between visits: where the tensors of a group's terms have one other permuted
    axis and at most half of that axis' units moved, only the moved units'
    slices are multiplied (a low-rank update) instead of the whole product.

    Args:
        spec: The permutation spec of the architecture.
        params_a: A's tensors by name (parameters; buffers are ignored unless given).
        params_b: B's, likewise.
        seed: Seed of the random order in which groups are visited.
        max_sweeps: Stop after this many sweeps even if permutations still change.
        init: Permutations to start from (default: identities).  A group's
            permutation only changes to one of strictly higher objective, so the
            result is never worse than ``init``.
        progress: A tqdm bar over sweeps.

    A group that permutes both axes of one tensor (a layer from a residual stream
    back into it) has an objective quadratic in its permutation; the assignment
    on :math:`S` (linear around the current one) only proposes, and the proposal
    is kept only if the objective itself rises, so the descent still ends.

    Returns:
        ``(perms, sweeps)``: ``{group: (n,) int64}`` with ``perm[i]`` the unit of
        B put at position ``i``, and the number of sweeps done (the last changed
        nothing, unless ``max_sweeps`` stopped it: then a warning says so).
    """
    check_int(max_sweeps, "max_sweeps", 1, "coordinate-descent sweeps")
    names = [k for k in params_a if k in spec.axes and k in params_b]
    A = {k: params_a[k].detach().float() for k in names}
    B = {k: params_b[k].detach().to(params_a[k].device).float() for k in names}
    _check_finite({"A": A, "B": B})
    # S is built where the weights are (a GPU's products) and solved on the CPU
    dev = next(iter(A.values())).device if A else torch.device("cpu")

    def others(k: str, ax: int) -> list[tuple[int, str, int]]:
        return [(i, a[0], a[1]) for i, a in enumerate(spec.axes[k])
                if a is not None and i != ax]

    fixed: dict[str, Tensor] = {}  # the terms of tensors with no other permuted axis
    varying: dict[str, list[tuple[str, int]]] = {}
    for g, n in spec.sizes.items():
        fixed[g] = torch.zeros(n, n, dtype=torch.float64, device=dev)
        varying[g] = []
        for k, ax, _ in spec.terms(g):
            if k not in A:
                continue
            if others(k, ax):
                varying[g].append((k, ax))
            else:
                fixed[g] += _term(A[k], B[k], ax, n)
    # groups each group's S depends on
    needs = {g: sorted({h for k, ax in varying[g] for _, h, _ in others(k, ax)})
             for g in spec.sizes}
    perms = {g: torch.arange(n) if init is None else init[g].cpu().clone()
             for g, n in spec.sizes.items()}
    part: dict[str, Tensor] = {}  # the varying terms of S at the permutations in ``at``
    at: dict[str, dict[str, Tensor]] = {}

    def update(g: str) -> None:
        """Bring ``part[g]`` to the current permutations."""
        n = spec.sizes[g]
        moved = {h: (perms[h] != at[g][h]).nonzero().flatten() for h in needs[g]} \
            if g in at else {}

        def by_slices(k: str, ax: int) -> bool:
            o = others(k, ax)
            return len(o) == 1 and o[0][1] in moved and o[0][1] != g and \
                2 * len(moved[o[0][1]]) <= spec.sizes[o[0][1]]

        if moved and all(by_slices(k, ax) for k, ax in varying[g]):
            for k, ax in varying[g]:
                ((i, h, r),) = others(k, ax)
                pos = moved[h]
                if len(pos):
                    new, old = (entry_index(p[pos], r).to(dev) for p in (perms[h], at[g][h]))
                    part[g] += _term(A[k].index_select(i, entry_index(pos, r).to(dev)),
                                     B[k].index_select(i, new) - B[k].index_select(i, old),
                                     ax, n)
        else:
            part[g] = torch.zeros(n, n, dtype=torch.float64, device=dev)
            for k, ax in varying[g]:
                part[g] += _term(A[k], permute_tensor(B[k], spec.axes[k], perms, skip=ax),
                                 ax, n)
        at[g] = {h: perms[h].clone() for h in needs[g]}

    def objective(g: str, perm: Tensor) -> float:
        """The inner product of A and P(B) over the tensors with an axis of ``g``."""
        trial = {**perms, g: perm}
        return sum(float((A[k] * permute_tensor(B[k], spec.axes[k], trial)).sum(
            dtype=torch.float64)) for k in dict.fromkeys(k for k, _, _ in spec.terms(g)
                                                       if k in A))

    rng = np.random.default_rng(seed)
    groups = list(spec.sizes)
    sweeps = 0
    with _progress(progress, None, "weight matching") as bar:
        while sweeps < max_sweeps:
            sweeps += 1
            changed = False
            for gi in rng.permutation(len(groups)):
                g = groups[gi]
                if g in at and all(torch.equal(perms[h], at[g][h]) for h in needs[g]):
                    continue  # same S as at the last visit: same answer
                update(g)
                S = (fixed[g] + part[g]).cpu()
                new = _assign(S)
                tol = 1e-9 * (1.0 + float(S.abs().sum()))
                if g in needs[g]:  # S is linear in P_g only around the current P_g
                    better = objective(g, new) > objective(g, perms[g]) + tol
                else:
                    idx = torch.arange(len(new))
                    better = float(S[idx, new].sum()) > float(S[idx, perms[g]].sum()) + tol
                if better:
                    perms[g] = new
                    changed = True
            bar.update(1)
            if not changed:
                break
        else:
            warnings.warn(f"weight matching stopped after max_sweeps={max_sweeps} sweeps "
                          "with permutations still changing; raise max_sweeps",
                          stacklevel=2)
    return perms, sweeps


def _in_place(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """Whether ``node`` writes into its first argument (``ReLU(inplace=True)``,
    ``out += identity``, ``x.relu_()``, ``F.relu(x, inplace=True)``)."""
    if node.op == "call_module":
        return getattr(modules.get(str(node.target)), "inplace", False) is True
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).startswith("_")
    if node.op != "call_function":
        return False
    fn = node.target
    if fn in _IN_PLACE_OPERATORS or getattr(fn, "__name__", "").endswith("_"):
        return True
    try:
        bound = inspect.signature(fn).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # builtins without a signature take no inplace flag
        return node.kwargs.get("inplace") is True
    return bound.arguments.get("inplace") is True


_IN_PLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
#: Operations whose output may share the memory of their first argument.
_VIEWS = {torch.flatten, torch.reshape, "view", "reshape", "flatten", "contiguous",
          "view_as", "squeeze", "unsqueeze"}


def _overwritten(gm: fx.GraphModule) -> set[str]:
    """Nodes whose output a later in-place operation changes (its memory or a view's).

    torchvision's ResNet applies ``ReLU(inplace=True)`` to its BN outputs, and the
    registered VGG16 to its conv outputs: a recording of such an output (REPAIR's
    site, activation matching's preactivation) would hold the ReLU's output.

    Returns:
        Their names.
    """
    modules = dict(gm.named_modules())
    root: dict[fx.Node, fx.Node] = {}
    seen: dict[fx.Node, list[fx.Node]] = {}  # memory -> the nodes holding it so far
    out: set[str] = set()
    for node in gm.graph.nodes:
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        writes = first is not None and _in_place(node, modules)
        if first is not None and (writes or node.target in _VIEWS):
            r = root[node] = root.get(first, first)
            if writes:
                out |= {n.name for n in seen[r]}
        else:
            r = root[node] = node
        seen.setdefault(r, []).append(node)
    return out


def _recording(gm: fx.GraphModule, names: Sequence[str]) -> fx.GraphModule:
    """A module of ``gm``'s graph that returns the outputs of the named nodes, in order.

    Generated code, not an interpreter, so recording costs no more than the
    forward pass; nodes that no named output needs (e.g. the last layer) are
    dropped.  An output that a later in-place operation would change is copied
    first (:func:`_overwritten`).  It shares ``gm``'s submodules.

    Returns:
        The module; calling it gives a tuple of tensors.
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.graph_copy(gm.graph, env)
    by_name = {n.name: env[n] for n in gm.graph.nodes if n.op != "output"}
    outs, overwritten = [], _overwritten(gm)
    for s in names:
        node = by_name[s]
        if s in overwritten:
            with graph.inserting_after(node):
                node = graph.call_method("clone", (node,))
        outs.append(node)
    graph.output(tuple(outs))
    rec = fx.GraphModule(gm, graph)
    rec.graph.eliminate_dead_code()
    rec.recompile()
    return rec


def _channel_means(x: Tensor) -> Tensor:
    """Per-channel mean of ``(N, C, *spatial)`` (or ``(N, C)``) activations, shaped to
    subtract from them."""
    x = x.float()
    dims = (0, *range(2, x.ndim))
    return x.mean(dims, keepdim=True)


def _cross_moments(a: Tensor, b: Tensor, shift_a: Tensor, shift_b: Tensor) -> list[Tensor]:
    r"""Per-channel :math:`\sum a`, :math:`\sum b`, :math:`\sum a^2`, :math:`\sum b^2`
    and :math:`\sum a b^\top` of two ``(N, C, *spatial)`` (or ``(N, C)``) activations,
    each less its ``shift`` (:func:`_channel_means` of a first batch).

    The shift leaves covariances and correlations as they are, and keeps float32
    from losing them: a channel whose mean is far above its spread (a sigmoid gate
    near 0.5 that moves by 1e-5) has :math:`\sum a^2 - (\sum a)^2/m` below float32's
    rounding of :math:`\sum a^2`.  Summed over samples and positions in float32 (one
    batch), returned in float64 for the running sums.  Spatial activations stay in
    place: one batched GEMM over the ``(C, positions)`` view of each sample.

    Returns:
        ``[sa (C,), sb (C,), saa (C,), sbb (C,), sab (C, C)]`` of the shifted values.
    """
    a, b = a.float() - shift_a, b.float() - shift_b
    if a.ndim > 2:
        A, B = a.flatten(2), b.flatten(2)  # (N, C, positions)
        dims: tuple[int, ...] = (0, 2)
        sab = torch.bmm(A, B.transpose(1, 2)).sum(0)
    else:
        A, B, dims = a, b, (0,)
        sab = A.T @ B
    return [t.double() for t in (A.sum(dims), B.sum(dims), (A * A).sum(dims),
                                 (B * B).sum(dims), sab)]


def _channels(x: Tensor) -> Tensor:
    """``(N, C, *spatial)`` activations as ``(N * prod(spatial), C)``."""
    return x.movedim(1, -1).reshape(-1, x.shape[1]) if x.ndim > 2 else x


def _inputs(data: Any, samples: int | None, device: torch.device, dtype: torch.dtype,
            batch_size: int = 1024) -> list[Tensor]:
    """The first ``samples`` inputs of ``data`` as batches on ``device``."""
    out, left = [], samples
    for xb, _ in as_batches(data, batch_size):
        if left is not None:
            if left <= 0:
                break
            xb, left = xb[:left], left - len(xb)
        xb = xb.to(device)
        out.append(xb.to(dtype) if xb.is_floating_point() else xb)
    if not out:
        raise UserError("the data hold no samples; pass train batches as (inputs, "
                        "targets) tensors or a DataLoader")
    return out


@torch.no_grad()
def activation_matching(
    traced_a: Traced, model_b: nn.Module, data: Any, *, samples: int | None = 4096,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Permutations of B's units maximising the correlation with A's activations.

    Args:
        traced_a: :func:`trace_permutations` of A (its graph runs A).
        model_b: B (same architecture).
        data: Train data (tensors or batches); the first ``samples`` inputs are used.
        samples: How many inputs (``None``: all).
        progress: A tqdm bar over batches.

    Returns:
        ``{group: perm}`` as for :func:`weight_matching`.
    """
    _check_samples(samples)
    gm_a = traced_a.graph
    _check_finite({"A": {**dict(gm_a.named_parameters()), **dict(gm_a.named_buffers())},
                   "B": {**dict(model_b.named_parameters()),
                         **dict(model_b.named_buffers())}})
    gm_b = fx.symbolic_trace(model_b)
    was = gm_a.training, gm_b.training
    gm_a.eval()
    gm_b.eval()
    dev = model_device(gm_a)
    dtype = next(gm_a.parameters()).dtype
    sites = [s for g in traced_a.spec.sizes for s in traced_a.observe.get(g, [])]
    acc: dict[str, list[Tensor]] = {}
    count: dict[str, int] = {}
    shift: dict[str, tuple[Tensor, Tensor]] = {}
    try:
        batches = _inputs(data, samples, dev, dtype)
        rec_a, rec_b = _recording(gm_a, sites), _recording(gm_b, sites)
        with _progress(progress, len(batches), "activation matching") as bar:
            for xb in batches:
                # through the evaluation path's check: a misfit input is one line
                outs_a, outs_b = _forward(rec_a, xb), _forward(rec_b, xb)
                for s, va, vb in zip(sites, outs_a, outs_b, strict=True):
                    if s not in shift:  # the first batch's means, kept for every batch
                        shift[s] = _channel_means(va), _channel_means(vb)
                    st = _cross_moments(va, vb, *shift[s])
                    if s in acc:
                        for u, v in zip(acc[s], st, strict=True):
                            u += v
                    else:
                        acc[s] = st
                    count[s] = count.get(s, 0) + va.numel() // va.shape[1]
                bar.update(1)
    finally:
        gm_a.train(was[0])
        gm_b.train(was[1])
    perms = {}
    for g, n in traced_a.spec.sizes.items():
        C = torch.zeros(n, n, dtype=torch.float64)
        for s in traced_a.observe.get(g, []):
            sa, sb, saa, sbb, sab = (t.cpu() for t in acc[s])
            m = count[s]
            ma, mb = sa / m, sb / m
            va = (saa / m - ma * ma).clamp_min(0).sqrt()
            vb = (sbb / m - mb * mb).clamp_min(0).sqrt()
            C += (sab / m - ma[:, None] * mb[None, :]) / (va[:, None] * vb[None, :] + 1e-8)
        if not bool(torch.isfinite(C).all()):
            raise not_finite(f"the activations' correlations of group {g!r} are not finite",
                             "activation matching")
        perms[g] = _assign(C)
    return perms


@dataclass(frozen=True, eq=False)
class Alignment:
    """The permutations that align B to A, and B permuted.

    Attributes:
        perms: ``{group: (n,) int64}``: unit ``i`` of the aligned B is B's unit ``perm[i]``.
        model: A copy of B with its units permuted (the same function as B);
            ``None`` in an alignment that ``ls.load`` read without ``model=``.
        spec: The permutation spec.
        method: :class:`AlignMethod`.
        sweeps: Coordinate-descent sweeps of weight matching (0 for activations).
    """

    perms: dict[str, Tensor]
    model: nn.Module | None
    spec: PermutationSpec
    method: AlignMethod
    sweeps: int = 0


def align(
    model_a: nn.Module, model_b: nn.Module, data: Any = None, *,
    method: AlignMethod | str = AlignMethod.WEIGHTS, seed: int = 0,
    max_sweeps: int = 100, samples: int | None = 4096, progress: bool = False,
) -> Alignment:
    """Permute the hidden units of ``model_b`` into ``model_a``'s order.

    Args:
        model_a: The reference network (not changed).
        model_b: The network to align (not changed; :attr:`Alignment.model` is a copy).
        data: Train data (tensors or a ``DataLoader``); needed by ``activations``.
        method: ``weights`` (no data) or ``activations``.
        seed: Seed of weight matching's visiting order.
        max_sweeps: Weight matching's limit on sweeps.
        samples: Inputs used by activation matching (``None``: all).
        progress: A tqdm bar.

    Returns:
        The :class:`Alignment` (permutations and the aligned copy of B).

    Raises:
        TypeError: If a model is not an ``nn.Module`` or ``seed`` not an int.
        UserError: For networks of different architectures or widths, an
            unsupported module, nothing to permute, or ``activations`` without data.
    """
    m = _method(method)
    for which, net in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(net, nn.Module):
            raise TypeError(f"align takes two nn.Module networks, got {which} of type "
                            f"{type(net).__name__}; for state dicts, load each into a "
                            "model first (model.load_state_dict(sd))")
    _check_seed(seed)
    _check_samples(samples)
    traced = check_same_architecture(model_a, model_b)
    spec = traced.spec
    sweeps = 0
    if m is AlignMethod.WEIGHTS:
        perms, sweeps = weight_matching(spec, dict(model_a.named_parameters()),
                                        dict(model_b.named_parameters()), seed=seed,
                                        max_sweeps=max_sweeps, progress=progress)
    else:
        if data is None:
            raise UserError("activation matching needs train data (inputs of the "
                            "networks); pass data=(x, y) or use method='weights'")
        perms = activation_matching(traced, model_b, data, samples=samples,
                                    progress=progress)
    return Alignment(perms, permute_model(model_b, spec, perms), spec, m, sweeps)


# =========================================================================== REPAIR
@dataclass(frozen=True)
class SiteStats:
    """Per-channel mean and standard deviation of one hidden layer's output."""

    mean: Tensor  # (C,)
    std: Tensor  # (C,)


def _add_moments(acc: list[Any] | None, v: Tensor) -> list[Any]:
    """``[sum, sum of squares, count]`` per channel of ``acc`` plus one batch ``v``."""
    a = _channels(v).double()
    st = [a.sum(0), (a * a).sum(0), a.shape[0]]
    return st if acc is None else [u + w for u, w in zip(acc, st, strict=True)]


def _site_stats(acc: list[Any]) -> SiteStats:
    mean = acc[0] / acc[2]
    return SiteStats(mean, (acc[1] / acc[2] - mean * mean).clamp_min(0).sqrt())


@torch.no_grad()
def site_statistics(traced: Traced, inputs: Sequence[Tensor],
                    sites: Sequence[str] | None = None) -> dict[str, SiteStats]:
    """Mean and std of each REPAIR site (the output a layer's correction acts on).

    Args:
        traced: The traced network (its graph runs the network as it is now).
        inputs: Input batches.
        sites: Node names (default: every correctable site of ``traced``).

    Returns:
        ``{node name: SiteStats}`` (float64, population std).
    """
    names = [s.node for s in traced.sites if s.has_bias] if sites is None else list(sites)
    gm = traced.graph
    rec = _recording(gm, names)
    was = gm.training
    gm.eval()
    acc: dict[str, list[Any]] = {}
    try:
        for xb in inputs:
            for s, v in zip(names, rec(xb), strict=True):
                acc[s] = _add_moments(acc.get(s), v)
    finally:
        gm.train(was)
    return {s: _site_stats(acc[s]) for s in names}


#: Most bytes of activations :func:`repair` keeps to correct every layer in one pass
#: (on a GPU at most half of its free memory).  torchvision's ResNet18 on 4,096 CIFAR-sized
#: inputs needs about 3 GiB, and runs 8.1x faster in one pass (68 s vs 554 s, 1 thread,
#: ``benchmarks/results/repair.json``).
REPAIR_BYTES = 4 << 30
#: Fewest corrected layers for which :func:`repair` makes one pass.  One pass runs the
#: whole network and each corrected layer a second time; a pass per layer runs only
#: up to that layer, which for two layers is no more (784-1024-1024-10 MLP: 0.22 s
#: per layer against 0.34 s in one pass, ``benchmarks/results/repair.json``).
_ONE_PASS_LAYERS = 3


class _TooLarge(Exception):
    pass


@torch.no_grad()
def repair(traced: Traced, stats_a: Mapping[str, SiteStats],
           stats_b: Mapping[str, SiteStats], t: float, inputs: Sequence[Tensor], *,
           max_bytes: int | None = None) -> int:
    r"""REPAIR the interpolated network in place (Jordan et al. 2022).

    For each correctable layer in graph order: measure the mean :math:`\mu` and
    std :math:`\sigma` of its output (after its BN, if one follows) on
    ``inputs`` with the earlier corrections in place, then fold
    :math:`y \mapsto (y - \mu)\,s + \mu^*`, :math:`s = \sigma^*/\sigma`, with
    :math:`\mu^* = (1-t)\mu_A + t\mu_B`, :math:`\sigma^* = (1-t)\sigma_A + t\sigma_B`,
    into the BN's affine parameters or the layer's weight and bias.  A channel
    with :math:`\sigma \approx 0` is only shifted.

    One pass through the graph, all input batches node by node: a layer's
    statistics are taken as soon as its output exists, its correction folded and
    its output recomputed before any later layer reads it, so the network runs
    once, not once per layer (the same numbers as a forward pass per layer).  With
    fewer than three corrected layers, or when the activations held at once would
    pass ``max_bytes`` (the corrections are then undone), each layer gets its own
    forward passes instead.

    Args:
        traced: The interpolated network traced (its modules are changed).
        stats_a: :func:`site_statistics` of A.
        stats_b: :func:`site_statistics` of the aligned B.
        t: The interpolation weight of B.
        inputs: The batches the statistics are measured on.
        max_bytes: Most bytes of activations to hold for the one-pass correction
            (default :data:`REPAIR_BYTES`, on a GPU at most half its free memory).

    Returns:
        The number of corrected layers.
    """
    modules = dict(traced.graph.named_modules())
    sites = [s for s in traced.sites if s.has_bias]
    if max_bytes is None:
        max_bytes = REPAIR_BYTES
        dev = inputs[0].device if len(inputs) else torch.device("cpu")
        if dev.type == "cuda":
            max_bytes = min(max_bytes, torch.cuda.mem_get_info(dev)[0] // 2)
    if len(sites) >= _ONE_PASS_LAYERS:
        saved = {s.fold: [p.detach().clone() for p in _affine(modules[s.fold])]
                 for s in sites}
        try:
            return _repair_in_one_pass(traced, modules, sites, stats_a, stats_b, t,
                                       inputs, max_bytes)
        except _TooLarge:
            for fold, params in saved.items():
                for p, v in zip(_affine(modules[fold]), params, strict=True):
                    p.copy_(v)
    for site in sites:
        now = site_statistics(traced, inputs, [site.node])[site.node]
        _fold(modules[site.fold], now, stats_a[site.node], stats_b[site.node], t)
    return len(sites)


def _affine(m: nn.Module) -> tuple[Tensor, Tensor]:
    return m.weight, m.bias  # type: ignore[return-value]


def _fold(m: nn.Module, now: SiteStats, a: SiteStats, b: SiteStats, t: float) -> None:
    """Fold REPAIR's correction of one layer's output into ``m``'s weight and bias."""
    mu_t = (1 - t) * a.mean + t * b.mean
    sd_t = (1 - t) * a.std + t * b.std
    s = torch.where(now.std > 1e-6, sd_t / now.std.clamp_min(1e-6),
                    torch.ones_like(now.std))
    w, bias = _affine(m)
    shape = (-1,) + (1,) * (w.ndim - 1)
    w.copy_((w.double() * s.to(w.device).view(shape)).to(w.dtype))
    bias.copy_(((bias.double() - now.mean.to(bias.device)) * s.to(bias.device)
                + mu_t.to(bias.device)).to(bias.dtype))


def _run_batches(run: fx.Interpreter, node: fx.Node, env: Mapping[fx.Node, list[Any]],
                 batches: int) -> list[Any]:
    """``node``'s output for each batch, from its inputs' outputs in ``env``."""
    def batch(i: int) -> Any:
        def pick(a: fx.Node) -> Any:
            return env[a][i]
        return getattr(run, node.op)(node.target, fx.node.map_arg(node.args, pick),
                                     fx.node.map_arg(node.kwargs, pick))
    return [batch(i) for i in range(batches)]


def _repair_in_one_pass(traced: Traced, modules: Mapping[str, nn.Module],
                        sites: Sequence[Any], stats_a: Mapping[str, SiteStats],
                        stats_b: Mapping[str, SiteStats], t: float,
                        inputs: Sequence[Tensor], max_bytes: int) -> int:
    """:func:`repair` running the graph node by node over every batch.

    Raises:
        _TooLarge: When the activations held would pass ``max_bytes`` (or the
            graph takes more than one input).
    """
    gm = traced.graph
    by_node = {s.node: s for s in sites}
    run = fx.Interpreter(gm)
    left = {n: len(n.users) for n in gm.graph.nodes}
    env: dict[fx.Node, list[Any]] = {}
    held = 0
    was = gm.training
    gm.eval()
    try:
        for node in gm.graph.nodes:
            if node.op == "output":
                break
            if node.op == "placeholder":
                if env:  # a second input: the model's forward is not one tensor's
                    raise _TooLarge
                env[node] = list(inputs)
                held += sum(v.numel() * v.element_size() for v in inputs)
                continue

            env[node] = _run_batches(run, node, env, len(inputs))
            site = by_node.get(node.name)
            if site is not None:
                acc = None
                for v in env[node]:
                    acc = _add_moments(acc, v)
                _fold(modules[site.fold], _site_stats(acc), stats_a[site.node],
                      stats_b[site.node], t)
                env[node] = _run_batches(run, node, env, len(inputs))  # folded
            held += sum(v.numel() * v.element_size() for v in env[node]
                        if isinstance(v, Tensor))
            if held > max_bytes:
                raise _TooLarge
            for arg in node.all_input_nodes:
                left[arg] -= 1
                if left[arg] == 0:
                    held -= sum(v.numel() * v.element_size() for v in env.pop(arg)
                                if isinstance(v, Tensor))
    finally:
        gm.train(was)
    return len(sites)


# =========================================================================== paths
#: Profiles of an alignment, in the order they are computed and shown.
PROFILES = ("line", "aligned", "repair")


@dataclass(frozen=True, eq=False)
class AlignedPaths:
    """Profiles along the raw line, the aligned line and the REPAIRed aligned line.

    Attributes:
        alignment: How B was aligned.
        profiles: ``{"line", "aligned"[, "repair"]: CurveProfile}``.
    """

    alignment: Alignment
    profiles: dict[str, CurveProfile] = field(default_factory=dict)

    @property
    def barriers(self) -> dict[str, dict[str, float]]:
        """``{profile: {metric: barrier}}``."""
        return {k: p.barriers for k, p in self.profiles.items()}


def repair_profile(evaluator: Evaluator, start: Tensor, end: Tensor,
                   t: int | Sequence[float] | np.ndarray = 21, *, samples: int = 4096,
                   progress: bool = False) -> CurveProfile:
    """Metrics along the line from ``start`` to ``end`` with REPAIR at each ``t``.

    At each ``t`` the evaluator loads the point (recomputing BN statistics for
    BN models: RESET), then :func:`repair` corrects it towards the endpoints'
    statistics, measured on the first ``samples`` train inputs.  The train loss's
    ``l2`` term is that of the uncorrected point.

    Returns:
        The profile (``bn`` is the evaluator's mode plus ``+repair``).

    Raises:
        UserError: If the evaluator has no train data.
    """
    ts = profile_grid(t) if isinstance(t, int) else np.asarray(t, dtype=np.float64)
    if "train" not in evaluator.data:
        raise UserError("REPAIR needs train data in the evaluator")
    traced = trace_permutations(evaluator.model)
    inputs = _inputs(evaluator.data["train"], samples, evaluator.device, evaluator.dtype)
    ends = []
    for w in (start, end):
        evaluator.set_point(w)
        ends.append(site_statistics(traced, inputs))
    rows: dict[str, list[float]] = {}
    with _progress(progress, ts.size, "profile repair") as bar:
        for ti in ts:
            evaluator.set_point(Curve.line(start, end).point(float(ti)))
            repair(traced, ends[0], ends[1], float(ti), inputs)
            m = evaluator.metrics(tuple(evaluator.data))
            for split, v in m.items():
                rows.setdefault(f"{split}_loss", []).append(v.loss)
                rows.setdefault(f"{split}_err", []).append(v.err)
            if "train" in m:
                rows.setdefault("train_ce", []).append(m["train"].loss - evaluator.penalty())
            bar.update(1)
    return CurveProfile(ts, {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()},
                        evaluator.l2, f"{evaluator.bn.value}+repair")


def align_paths(
    model_a: nn.Module, model_b: nn.Module, train: Any, test: Any = None, *,
    method: AlignMethod | str = AlignMethod.WEIGHTS, repair: bool = True,
    points: int = 21, loss: Any = None, l2: float = 0.0, seed: int = 0,
    samples: int = 4096, batch_size: int = 4096, device: str | torch.device | None = None,
    progress: bool = False,
) -> AlignedPaths:
    """Align B to A, then profile the raw line, the aligned line and (opt.) REPAIR.

    BN statistics are recomputed on ``train`` at every point for BN models.

    Args:
        model_a: Endpoint A (its weights and buffers are used).
        model_b: Endpoint B.
        train: Train data: alignment (activations), BN statistics, REPAIR, metrics.
        test: Test data for the test metrics (optional).
        method: ``weights`` or ``activations``.
        repair: Also profile the aligned line with REPAIR.
        points: Values of ``t`` from 0 to 1.
        loss: ``criterion(output, target)`` (default cross-entropy).
        l2: Weight decay in the reported train loss.
        seed: Weight matching's seed.
        samples: Train inputs used by activation matching and REPAIR.
        batch_size: Evaluation batch size.
        device: Where to evaluate (default: A's device).
        progress: tqdm bars.

    Returns:
        The :class:`AlignedPaths` (``.barriers`` for each profile).
    """
    ev = Evaluator(copy.deepcopy(model_a), train, test, loss=loss, device=device,
                   batch_size=batch_size, l2=l2)
    ev.check_data()  # data that do not fit fail here, not after the alignment
    al = align(model_a, model_b, train, method=method, seed=seed, samples=samples,
               progress=progress)
    layout = ParamLayout.from_module(model_a)
    wa = layout.read(model_a)
    wb, wp = layout.read(model_b), layout.read(al.model)
    grid = profile_grid(points)
    profiles = {"line": curve_profile(ev, Curve.line(wa, wb), grid, progress=progress),
                "aligned": curve_profile(ev, Curve.line(wa, wp), grid, progress=progress)}
    if repair:
        profiles["repair"] = repair_profile(ev, wa, wp, grid, samples=samples,
                                            progress=progress)
    return AlignedPaths(al, profiles)


# =========================================================================== merge
@dataclass(frozen=True, eq=False)
class Merged:
    """The aligned average of several networks.

    Attributes:
        model: The average (BN statistics recomputed when it has BN).
        perms: Per input network, the permutations applied to it (identities for the first).
        rounds: Refinement rounds of weight matching against the leave-one-out average.
        converged: Whether the last round changed no permutation (``False`` when
            ``max_rounds`` stopped it first).
    """

    model: nn.Module
    perms: list[dict[str, Tensor]]
    rounds: int
    converged: bool = True


def merge(
    models: Sequence[nn.Module], data: Any = None, *,
    method: AlignMethod | str = AlignMethod.WEIGHTS, seed: int = 0, max_rounds: int = 10,
    samples: int | None = 4096, progress: bool = False,
) -> Merged:
    r"""Average ``N >= 2`` networks after aligning them to one another.

    Every network is first aligned to the first one; with weight matching,
    rounds follow in which each network is re-aligned to the average of the
    others (Ainsworth et al.'s MergeMany) until no permutation changes.  Each
    re-alignment starts from the network's current permutations and keeps a
    change only if it raises the inner product with the others' average, so the
    sum of the aligned networks' pairwise inner products never falls and the
    rounds end.  The average's BatchNorm statistics are recomputed on ``data``
    (:func:`~landscape.averaging.average_checkpoints`).

    Args:
        models: The networks (not changed).
        data: Train data; needed for BN networks and for ``activations``.
        method: ``weights`` or ``activations``.
        seed: Weight matching's seed.
        max_rounds: Limit on the refinement rounds.
        samples: Inputs used by activation matching.
        progress: tqdm bars.

    Returns:
        The :class:`Merged` network (``converged`` is ``False``, with a warning,
        if ``max_rounds`` ended the rounds while permutations still changed).

    Raises:
        TypeError: If ``models`` is not a sequence of ``nn.Module`` or ``seed`` not an int.
        UserError: For fewer than two networks, different architectures, or a
            BN network without data.
    """
    from landscape.averaging import average_checkpoints

    wrong = TypeError(f"merge takes a sequence of nn.Module networks, got {models!r:.60}; "
                      "pass [model_a, model_b, ...]")
    if not isinstance(models, Iterable) or isinstance(models, (str, bytes, nn.Module)):
        raise wrong
    models = list(models)  # once: a generator is read here
    if not all(isinstance(m, nn.Module) for m in models):
        raise wrong
    _check_seed(seed)
    _check_samples(samples)
    check_int(max_rounds, "max_rounds", 1, "the rounds of re-aligning to the average")
    if len(models) < 2:
        raise UserError(f"merge needs at least two networks, got {len(models)}; pass "
                        "the solutions of several runs")
    m = _method(method)
    spec = trace_permutations(models[0]).spec
    for other in models[1:]:
        check_same_architecture(models[0], other)
    if data is None and any(isinstance(mod, nn.modules.batchnorm._BatchNorm)
                            for mod in models[0].modules()):
        raise UserError("the networks have BatchNorm: pass data (train data, e.g. "
                        "data=(x, y)) so that the average's BN statistics are recomputed")
    perms = [{g: torch.arange(n) for g, n in spec.sizes.items()}]
    perms += [align(models[0], other, data, method=m, seed=seed, samples=samples).perms
              for other in models[1:]]
    states = [dict(mm.named_parameters()) for mm in models]

    def aligned(i: int) -> dict[str, Tensor]:
        return permute_state({k: v.detach() for k, v in states[i].items()}, spec,
                             perms[i])

    rounds, changed = 0, False
    if m is AlignMethod.WEIGHTS:
        t0 = time.perf_counter()
        while rounds < max_rounds:
            rounds += 1
            changed = False
            for i in range(len(models)):
                rest = [aligned(j) for j in range(len(models)) if j != i]
                mean = {k: sum(r[k] for r in rest) / len(rest) for k in rest[0]}
                p, _ = weight_matching(spec, mean, states[i], seed=seed, init=perms[i])
                if any(not torch.equal(p[g], perms[i][g]) for g in p):
                    perms[i], changed = p, True
            if progress:
                print(f"merge round {rounds}: {'changed' if changed else 'stable'} "
                      f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
            if not changed:
                break
        if changed:
            warnings.warn(f"merge: permutations still changed in round {rounds} "
                          f"(max_rounds={max_rounds}); the average is not yet a fixed "
                          "point of the rounds, raise max_rounds", stacklevel=2)
    nets = [permute_model(mm, spec, p) for mm, p in zip(models, perms, strict=True)]
    avg = average_checkpoints(models[0], nets, data)
    return Merged(avg.module, perms, rounds, not changed)


def interpolate(a: Tensor, b: Tensor, t: float) -> Tensor:
    """:math:`(1-t)a + tb` of two flat vectors.

    Returns:
        The point.
    """
    return Curve.line(a, b).point(float(t))


__all__ = ["PROFILES", "AlignMethod", "AlignedPaths", "Alignment", "Merged", "SiteStats",
           "activation_matching", "align", "align_paths", "barrier", "check_same_architecture",
           "interpolate", "merge", "repair", "repair_profile", "site_statistics",
           "weight_matching"]
