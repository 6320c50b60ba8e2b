r"""Which axes of a network's weights share a permutation of hidden units, from the model.

For hidden layer :math:`\ell` with permutation matrix :math:`P_\ell`,
:math:`W_\ell \to P_\ell W_\ell P_{\ell-1}^\top` and :math:`b_\ell \to P_\ell b_\ell`
leave the function unchanged (Entezari et al. 2021; Ainsworth et al. 2022).
:func:`permutation_spec` derives those axes by tracing the module with
``torch.fx``:

* ``Linear`` and ``Conv1d/2d/3d`` (``groups=1``) start a new group of units on
  their output axis and carry their input's group on their input axis;
* ``BatchNorm`` (affine parameters and running statistics) and depthwise
  convolutions (one filter per channel, ``groups == in == out channels``)
  follow their input;
* elementwise activations, pooling (modules, functions, or ``mean``/``amax``
  over the spatial axes), dropout and torchvision's ``StochasticDepth`` pass
  the group through; a module without weights may be called more than once
  (torchvision's ResNet calls one ReLU twice per block);
* a flatten after a convolution with :math:`C` channels expands the channel
  permutation to blocks of :math:`H W` consecutive features of the next ``Linear``;
* a residual addition ties the groups of its two inputs into one, as does any
  elementwise product, difference or quotient of two tensors
  (squeeze-and-excitation's ``x * scale``);
* the groups that reach the network's output (or come from its input) stay fixed.

So torchvision's ResNets (BasicBlock and Bottleneck), VGGs, AlexNet,
MobileNetV2/V3 and EfficientNets trace.  Anything else (attention, grouped
convolutions such as ResNeXt's, concatenation as in DenseNet or Inception,
reshapes, a module with weights called twice, a module of unknown semantics)
raises a one-line :class:`~landscape.UserError` naming the module and what is
supported.

A group is named after the first module, in the order of the traced graph,
whose output units belong to it (``"1"`` for ``nn.Sequential(..., Linear, ...)[1]``).
A permutation ``perm`` of a group maps unit ``i`` of the permuted network to
unit ``perm[i]`` of the original: ``W_new = W.index_select(axis, perm)``.

Example:
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> spec = permutation_spec(net)
    >>> spec.sizes, spec.axes["2.weight"]
    ({'0': 4}, (None, ('0', 1)))
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from landscape._errors import UserError

#: What :func:`permutation_spec` supports, for error messages.
SUPPORTED = ("Linear, Conv1d/2d/3d (groups=1 or depthwise), BatchNorm, elementwise "
             "activations, pooling, dropout, flatten and residual additions")

_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
                nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Tanhshrink, nn.Identity,
                nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
         nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = nn.modules.batchnorm._BatchNorm
_ACT_FUNCS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu,
              F.mish, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.softplus,
              F.hardtanh, F.hardswish, F.dropout, F.dropout1d, F.dropout2d,
              torch.nn.functional.relu_}
_POOL_FUNCS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d,
               F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
               F.adaptive_max_pool1d, F.adaptive_max_pool2d}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_SCALAR_FUNCS = {operator.mul, operator.truediv, operator.imul, operator.itruediv,
                 torch.mul, operator.sub, torch.sub, operator.neg}
_ACT_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
_ADD_METHODS = {"add", "add_"}
#: Means and maxima over axes after the feature axis: pooling written by hand.
_REDUCE = {torch.mean, torch.amax, "mean", "amax"}
#: Elementwise operations of two tensors: their units are tied, as by an addition
#: (squeeze-and-excitation's ``x * scale``).
_TIE_FUNCS = _ADD_FUNCS | {operator.mul, operator.imul, torch.mul, operator.sub,
                           operator.isub, torch.sub, operator.truediv, torch.div}
_TIE_METHODS = _ADD_METHODS | {"mul", "mul_", "sub", "sub_", "div", "div_"}

#: A permuted axis: ``(group, repeat)``; unit ``u`` owns entries ``u*repeat ... +repeat-1``.
PermAxis = tuple[str, int]


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation groups of a network and the axes they act on.

    Attributes:
        sizes: ``{group: number of units}``.
        axes: ``{name: one PermAxis or None per axis}`` for every parameter and
            buffer of the model (``None``: that axis is not permuted).
    """

    sizes: dict[str, int]
    axes: dict[str, tuple[PermAxis | None, ...]]

    @property
    def groups(self) -> list[str]:
        """Group names, in graph order."""
        return list(self.sizes)

    def terms(self, group: str) -> list[tuple[str, int, int]]:
        """``(name, axis, repeat)`` of every axis permuted by ``group``.

        Returns:
            The axes.
        """
        return [(n, i, a[1]) for n, ax in self.axes.items() for i, a in enumerate(ax)
                if a is not None and a[0] == group]

    def to_json(self) -> str:
        """JSON text (stored with an alignment).

        Returns:
            The text.
        """
        return json.dumps({"sizes": self.sizes, "axes": {
            k: [None if a is None else list(a) for a in v] for k, v in self.axes.items()}})

    @classmethod
    def from_json(cls, text: str) -> PermutationSpec:
        """Inverse of :meth:`to_json`.

        Returns:
            The spec.
        """
        d = json.loads(text)
        return cls({k: int(v) for k, v in d["sizes"].items()}, {
            k: tuple(None if a is None else (str(a[0]), int(a[1])) for a in v)
            for k, v in d["axes"].items()})


# =========================================================================== tracing
@dataclass
class _Label:
    """What the feature axis (dim 1) of a traced value carries."""

    uid: int  # union-find id; 0 = fixed (input or output units)
    flat: bool = False  # produced by a flatten: the next Linear expands it to blocks
    spatial: bool | None = None  # has spatial dims after the feature axis


@dataclass
class _Site:
    """A hidden layer that starts a group: where its units are read and corrected."""

    layer: str  # module name of the Linear/Conv
    group: str
    node: str  # the fx node whose output the statistics are taken on
    fold: str  # module whose affine parameters absorb a correction (BN or the layer)
    has_bias: bool


@dataclass
class Traced:
    """A traced network: its spec, graph and where each group can be observed."""

    spec: PermutationSpec
    graph: fx.GraphModule
    observe: dict[str, list[str]] = field(default_factory=dict)  # group -> node names
    sites: list[_Site] = field(default_factory=list)


class _Unsupported(Exception):
    pass


def _has_state(m: nn.Module) -> bool:
    """Whether ``m`` holds parameters or buffers (calling it twice shares them)."""
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _stochastic_depth(m: nn.Module) -> bool:
    """torchvision's ``StochasticDepth``: drops whole samples (identity in eval mode)."""
    return type(m).__name__ == "StochasticDepth" and type(m).__module__.startswith(
        "torchvision.")


def _stochastic_depth_fn(fn: Any) -> bool:
    """torchvision's ``stochastic_depth`` function (what fx records for the module)."""
    return getattr(fn, "__name__", None) == "stochastic_depth" and str(
        getattr(fn, "__module__", "")).startswith("torchvision.")


def _depthwise(m: nn.Module) -> bool:
    """A depthwise convolution: one filter per channel, as many outputs as inputs."""
    return (m.groups > 1 and m.groups == m.in_channels  # type: ignore[operator]
            and m.out_channels == m.in_channels)


def _describe(node: fx.Node, modules: Mapping[str, nn.Module]) -> str:
    if node.op == "call_module":
        m = modules[str(node.target)]
        extra = f" with groups={m.groups}" if isinstance(m, _CONV) and m.groups != 1 else ""
        return f"module {node.target!r} ({type(m).__name__}{extra})"
    if node.op == "get_attr":
        return f"direct use of the tensor {node.target!r}"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{'method' if node.op == 'call_method' else 'function'} {name!r} at {node.name}"


def trace_permutations(model: nn.Module) -> Traced:
    """Trace ``model`` and derive its :class:`PermutationSpec` (see the module doc).

    Returns:
        The traced network.

    Raises:
        UserError: For a model ``torch.fx`` cannot trace, an unsupported module
            or operation, or a model without hidden units to permute.
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"align needs a torch.nn.Module, got {type(model).__name__}")
    name = type(model).__name__
    if isinstance(model, (nn.Linear, _BN, *_CONV, *_ELEMENTWISE, *_POOL)):
        raise UserError(f"{name} has no hidden units to permute (a single layer); "
                        "alignment needs hidden layers")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot trace {name} with torch.fx ({first}); alignment needs "
                        "a model without data-dependent control flow") from None
    modules = dict(gm.named_modules())
    parent = [0]  # union-find over group ids; 0 is the fixed group
    size = [0]
    first: list[str] = [""]
    labels: dict[fx.Node, _Label] = {}
    owner: dict[str, tuple[int, ...]] = {}  # param name -> (out uid, in uid) raw ids
    flat_in: dict[str, int] = {}  # Linear name -> its input uid when flattened
    called: set[str] = set()
    layer_out: dict[str, fx.Node] = {}
    follows: dict[str, int] = {}  # BN or depthwise conv -> its input's uid

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    def new(n: int, who: str) -> int:
        parent.append(len(parent))
        size.append(n)
        first.append(who)
        return len(parent) - 1

    def union(a: int, b: int, node: fx.Node) -> int:
        ra, rb = find(a), find(b)
        if ra == rb:
            return ra
        if 0 not in (ra, rb) and size[ra] != size[rb]:
            raise UserError(f"cannot align {name}: {_describe(node, modules)} combines "
                            f"tensors of {size[ra]} and {size[rb]} channels elementwise; "
                            "their units must correspond one to one")
        lo, hi = (ra, rb) if ra < rb else (rb, ra)  # keep the earlier (or fixed) root
        parent[hi] = lo
        return lo

    def label(arg: Any) -> _Label | None:
        return labels.get(arg) if isinstance(arg, fx.Node) else None

    try:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                labels[node] = _Label(0)
            elif node.op == "output":
                for arg in [a for a in _flatten_args(node.args) if isinstance(a, fx.Node)]:
                    lab = label(arg)
                    if lab is not None:
                        union(lab.uid, 0, node)
            elif node.op == "call_module":
                target = str(node.target)
                m = modules[target]
                # a stateless module (torchvision's ResNet calls one ReLU twice per
                # block) is a function; a module with weights called twice shares them
                if target in called and _has_state(m):
                    raise _Unsupported(f"{_describe(node, modules)} is called twice "
                                       "(shared weights)")
                called.add(target)
                src = label(node.args[0]) if node.args else None
                if src is None:
                    raise _Unsupported(_describe(node, modules))
                if isinstance(m, nn.Linear):
                    if src.uid and src.spatial and not src.flat:
                        raise _Unsupported(f"{_describe(node, modules)} applied to a "
                                           "tensor with spatial axes (flatten it first)")
                    out = new(m.out_features, target)
                    owner[target] = (out, src.uid)
                    if src.flat:
                        flat_in[target] = src.uid
                    labels[node] = _Label(out, spatial=False)
                    layer_out[target] = node
                elif isinstance(m, _CONV) and _depthwise(m):
                    # channel c of the output reads channel c of the input only: the
                    # filters (and bias) follow the input's units, like BatchNorm's
                    if src.flat:
                        raise _Unsupported(f"{_describe(node, modules)} after a flatten")
                    follows[target] = src.uid
                    labels[node] = _Label(src.uid, spatial=True)
                elif isinstance(m, _CONV):
                    if m.groups != 1:
                        raise _Unsupported(_describe(node, modules))
                    if src.flat:
                        raise _Unsupported(f"{_describe(node, modules)} after a flatten")
                    out = new(m.out_channels, target)
                    owner[target] = (out, src.uid)
                    labels[node] = _Label(out, spatial=True)
                    layer_out[target] = node
                elif isinstance(m, _BN):
                    if src.flat:
                        raise _Unsupported(f"{_describe(node, modules)} after a flatten")
                    follows[target] = src.uid
                    labels[node] = _Label(src.uid, src.flat, src.spatial)
                elif isinstance(m, _ELEMENTWISE + _POOL) or _stochastic_depth(m):
                    labels[node] = _Label(src.uid, src.flat,
                                          True if isinstance(m, _POOL) else src.spatial)
                elif isinstance(m, nn.Flatten):
                    if m.start_dim != 1 or m.end_dim != -1:
                        raise _Unsupported(f"{_describe(node, modules)} with start_dim="
                                           f"{m.start_dim}, end_dim={m.end_dim}")
                    labels[node] = _Label(src.uid, flat=src.spatial is not False,
                                          spatial=False)
                else:
                    raise _Unsupported(_describe(node, modules))
            elif node.op in ("call_function", "call_method"):
                fn = node.target
                tensors = [a for a in node.args if isinstance(a, fx.Node)]
                labs = [label(a) for a in tensors]
                if any(lab is None for lab in labs) or not labs:
                    raise _Unsupported(_describe(node, modules))
                src = labs[0]
                assert src is not None
                if fn in _ADD_FUNCS or fn in _ADD_METHODS or (
                        len(tensors) > 1 and (fn in _TIE_FUNCS or fn in _TIE_METHODS)):
                    uid = src.uid
                    for lab in labs[1:]:
                        assert lab is not None
                        if lab.flat != src.flat or (
                                lab.spatial is not None and src.spatial is not None
                                and lab.spatial != src.spatial):
                            # (N, C) against (N, C, H, W) broadcasts C against W
                            raise _Unsupported(_describe(node, modules))
                        uid = union(uid, lab.uid, node)
                    spatial = src.spatial if src.spatial is not None else (
                        labs[-1].spatial if labs[-1] is not None else None)
                    labels[node] = _Label(uid, src.flat, spatial)
                elif len(tensors) == 1 and (fn in _SCALAR_FUNCS or fn in _ACT_FUNCS
                                            or fn in _ACT_METHODS
                                            or _stochastic_depth_fn(fn)):
                    labels[node] = _Label(src.uid, src.flat, src.spatial)
                elif fn in _POOL_FUNCS and len(tensors) == 1:
                    labels[node] = _Label(src.uid, src.flat, True)
                elif fn in _REDUCE and len(tensors) == 1 and not src.flat:
                    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1
                                           else None)
                    dims = [dims] if isinstance(dims, int) else dims
                    if not (isinstance(dims, list | tuple) and dims
                            and all(isinstance(d, int) and d >= 2 for d in dims)):
                        raise _Unsupported(f"{_describe(node, modules)} other than over "
                                           "spatial axes (dim >= 2)")
                    # pooling by hand (MNASNet's x.mean([2, 3])); whether spatial axes
                    # are left is unknown without shapes
                    keep = node.kwargs.get("keepdim", len(node.args) > 2 and node.args[2])
                    labels[node] = _Label(src.uid, False, True if keep else None)
                elif fn in (torch.flatten, "flatten") and len(tensors) == 1:
                    args = list(node.args[1:]) + list(node.kwargs.values())
                    if args[:1] != [1] or (len(args) > 1 and args[1] != -1):
                        raise _Unsupported(f"{_describe(node, modules)} other than "
                                           "flatten(x, 1)")
                    labels[node] = _Label(src.uid, flat=src.spatial is not False,
                                          spatial=False)
                else:
                    raise _Unsupported(_describe(node, modules))
            else:  # get_attr
                raise _Unsupported(_describe(node, modules))
    except _Unsupported as e:
        raise UserError(f"cannot align {name}: {e} is not supported; supported: "
                        f"{SUPPORTED}") from None

    # groups: roots other than the fixed one, named after their first module
    def gname(uid: int) -> str | None:
        r = find(uid)
        return None if r == 0 else first[r]

    roots = sorted({find(u) for u in range(1, len(parent))} - {0})
    sizes = {first[r]: size[r] for r in roots}
    if not sizes:
        raise UserError(f"{name} has no hidden units to permute (every layer's units are "
                        "the input's or the output's); alignment needs hidden layers")
    axes: dict[str, tuple[PermAxis | None, ...]] = {}
    for pname, p in model.named_parameters():
        axes[pname] = (None,) * p.ndim
    for bname, b in model.named_buffers():
        axes[bname] = (None,) * b.ndim
    for layer, (out_uid, in_uid) in owner.items():
        m = modules[layer]
        g_out, g_in = gname(out_uid), gname(in_uid)
        out_ax = None if g_out is None else (g_out, 1)
        in_ax: PermAxis | None = None
        if g_in is not None:
            rep = 1
            if layer in flat_in:
                n_in = m.in_features  # type: ignore[union-attr]
                if n_in % sizes[g_in]:
                    raise UserError(f"cannot align {name}: {layer} takes {n_in} features "
                                    f"from a flatten of {sizes[g_in]} channels")
                rep = n_in // sizes[g_in]
            in_ax = (g_in, rep)
        w = m.weight  # type: ignore[union-attr]
        axes[f"{layer}.weight"] = (out_ax, in_ax) + (None,) * (w.ndim - 2)
        if getattr(m, "bias", None) is not None:
            axes[f"{layer}.bias"] = (out_ax,)
    for mod, uid in follows.items():
        g = gname(uid)
        if g is None:
            continue
        m = modules[mod]
        for key, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
            if t.ndim:  # not BN's num_batches_tracked
                axes[f"{mod}.{key}"] = ((g, 1),) + (None,) * (t.ndim - 1)
    traced = Traced(PermutationSpec(sizes, axes), gm)
    # where each group is observed: after activations and additions, else its layer
    for node, lab in labels.items():
        g = gname(lab.uid)
        if g is None or lab.flat or node.op == "placeholder":
            continue
        act = (node.op == "call_module" and isinstance(
            modules[str(node.target)], _ELEMENTWISE + _POOL) and not isinstance(
            modules[str(node.target)], nn.Identity)) or node.target in _ACT_FUNCS or (
            node.target in _ACT_METHODS) or node.target in _ADD_FUNCS or (
            node.target in _ADD_METHODS)
        if act:
            traced.observe.setdefault(g, []).append(node.name)
    for layer, node in layer_out.items():
        g = gname(owner[layer][0])
        if g is None:
            continue
        traced.observe.setdefault(g, [])
        users = list(node.users)
        fold, site = layer, node
        if len(users) == 1 and users[0].op == "call_module" and isinstance(
                modules[str(users[0].target)], _BN) and modules[
                str(users[0].target)].affine:
            fold, site = str(users[0].target), users[0]
        has_bias = fold != layer or getattr(modules[layer], "bias", None) is not None
        traced.sites.append(_Site(layer, g, site.name, fold, has_bias))
        if site.name not in traced.observe[g]:  # the preactivation too: dead units
            traced.observe[g].append(site.name)  # after a ReLU stay identifiable
    traced.observe = {g: traced.observe[g] for g in sizes if g in traced.observe}
    return traced


def _flatten_args(args: Any) -> list[Any]:
    out: list[Any] = []
    for a in args if isinstance(args, tuple | list) else [args]:
        if isinstance(a, tuple | list):
            out += _flatten_args(a)
        elif isinstance(a, dict):
            out += _flatten_args(list(a.values()))
        else:
            out.append(a)
    return out


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The permutation groups of ``model`` and the axes they act on (see the module doc).

    Returns:
        The spec.

    Raises:
        UserError: One line naming an unsupported module and what is supported.
    """
    return trace_permutations(model).spec


# =========================================================================== applying
def entry_index(perm: Tensor, repeat: int) -> Tensor:
    """The entry index of a permutation of units owning ``repeat`` entries each."""
    if repeat == 1:
        return perm
    return (perm[:, None] * repeat + torch.arange(repeat, device=perm.device)).reshape(-1)


def permute_tensor(x: Tensor, axes: tuple[PermAxis | None, ...],
                   perms: Mapping[str, Tensor], skip: int | None = None) -> Tensor:
    """``x`` with each axis permuted by its group's permutation (axis ``skip`` left).

    Returns:
        The permuted tensor (a new one).
    """
    for i, a in enumerate(axes):
        if a is None or i == skip or a[0] not in perms:
            continue
        x = x.index_select(i, entry_index(perms[a[0]].to(x.device), a[1]))
    return x


def permute_state(state: Mapping[str, Tensor], spec: PermutationSpec,
                  perms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A ``state_dict`` (parameters and BN buffers) with its hidden units permuted.

    Returns:
        The permuted state (entries the spec does not know are kept).
    """
    return {k: permute_tensor(v, spec.axes[k], perms) if k in spec.axes else v
            for k, v in state.items()}


def permute_model(model: nn.Module, spec: PermutationSpec,
                  perms: Mapping[str, Tensor]) -> nn.Module:
    """A copy of ``model`` with its hidden units permuted (the same function).

    Returns:
        The permuted copy.
    """
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        out.load_state_dict(permute_state(model.state_dict(), spec, perms))
    return out


def invert(perms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse permutations (``permute(permute(x, p), invert(p)) == x``).

    Returns:
        ``{group: inverse}``.
    """
    return {g: torch.argsort(p) for g, p in perms.items()}


def random_permutations(spec: PermutationSpec, seed: int = 0) -> dict[str, Tensor]:
    """One uniformly random permutation per group (for tests and oracles).

    Returns:
        ``{group: (n,) int64}``.
    """
    gen = torch.Generator().manual_seed(seed)
    return {g: torch.randperm(n, generator=gen) for g, n in spec.sizes.items()}


__all__ = ["SUPPORTED", "PermAxis", "PermutationSpec", "Traced", "entry_index", "invert",
           "permutation_spec", "permute_model", "permute_state", "permute_tensor",
           "random_permutations", "trace_permutations"]
