"""Alignment of hidden units: traced specs, matching oracles, REPAIR, merging, CLI."""

from __future__ import annotations

import copy
import sys
import warnings

import numpy as np
import pytest
import torch
from cases import MODELS as TINY_MODELS
from cases import tiny_mlp
from torch import nn
from torch.optim.swa_utils import update_bn

from landscape._errors import UserError
from landscape.models import MODELS, build_model, has_batchnorm
from landscape.paths.align import (
    align,
    merge,
    repair,
    site_statistics,
    weight_matching,
)
from landscape.paths.permutation import (
    PermutationSpec,
    invert,
    permutation_spec,
    permute_model,
    permute_state,
    permute_tensor,
    random_permutations,
    trace_permutations,
)


# =========================================================================== nets
class _ResBlockNet(nn.Module):
    """Stem conv + BN, one residual block (conv-BN-ReLU-conv, added), pool, head."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(c)
        self.c1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(c * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        h = h + self.c2(torch.relu(self.bn1(self.c1(h))))
        h = nn.functional.max_pool2d(torch.relu(h), 2)
        return self.head(torch.flatten(h, 1))


class _MobileBlockNet(nn.Module):
    """MobileNet/EfficientNet parts: an inverted residual block with a depthwise conv
    and squeeze-and-excitation (``u * scale``), one activation module called three
    times, and pooling by ``mean([2, 3])``."""

    def __init__(self, c: int = 6, e: int = 12, s: int = 16) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.expand, self.bn1 = nn.Conv2d(c, e, 3, padding=1, bias=False), nn.BatchNorm2d(e)
        self.dw = nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False)
        self.bn2 = nn.BatchNorm2d(e)
        self.se1, self.se2 = nn.Conv2d(e, s, 1), nn.Conv2d(s, e, 1)
        self.project, self.bn3 = nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c)
        self.act = nn.Hardswish()
        self.head = nn.Linear(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn0(self.stem(x)))
        u = self.act(self.bn1(self.expand(h)))
        u = self.act(self.bn2(self.dw(u)))
        pooled = nn.functional.adaptive_avg_pool2d(u, 1)
        u = u * torch.sigmoid(self.se2(torch.relu(self.se1(pooled))))
        h = h + self.bn3(self.project(u))
        return self.head(h.mean([2, 3]))


def _torchvision_resnet() -> nn.Module:
    """torchvision's ResNet with one BasicBlock per stage (its in-place ReLU module is
    called twice per block; downsampling shortcuts from stage 2), with the CIFAR stem
    (3x3 conv, no max pool) so that small inputs keep spatial positions to the end."""
    from torchvision.models.resnet import BasicBlock, ResNet

    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5)
    net.conv1, net.maxpool = nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.Identity()
    return net


NETS = {**TINY_MODELS, "residual": (_ResBlockNet, (3, 8, 8)),
        "mobile": (_MobileBlockNet, (3, 8, 8)),
        "torchvision_resnet": (_torchvision_resnet, (3, 12, 12))}


def _randomized(factory, seed: int) -> nn.Module:
    """A net with random weights and random BN statistics and affine parameters."""
    torch.manual_seed(seed)
    net = factory()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return net.eval()


# =========================================================================== specs
def _lin(name: str, out: str | None, inp: str | None, rep: int = 1, nd: int = 0,
         bias: bool = True) -> dict:
    o = None if out is None else (out, 1)
    i = None if inp is None else (inp, rep)
    d = {f"{name}.weight": (o, i) + (None,) * nd}
    if bias:
        d[f"{name}.bias"] = (o,)
    return d


def _bn(name: str, g: str) -> dict:
    return {f"{name}.{k}": ((g, 1),) for k in ("weight", "bias", "running_mean",
                                                "running_var")}


def _spec(model: nn.Module, sizes: dict, *parts: dict) -> PermutationSpec:
    axes = {k: (None,) * v.ndim for k, v in model.state_dict().items()}
    for p in parts:
        assert set(p) <= set(axes), set(p) - set(axes)
        axes.update(p)
    return PermutationSpec(sizes, axes)


def _vgg16_expected(net: nn.Module) -> PermutationSpec:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]
    parts, sizes, i, prev = [], {}, 0, None
    for v in cfg:
        if v == "M":
            i += 1
            continue
        parts.append(_lin(str(i), str(i), prev, nd=2))
        sizes[str(i)] = v
        prev, i = str(i), i + 2  # conv, relu
    # i: flatten; then dropout, linear, relu, dropout, linear, relu, linear
    l1, l2, l3 = str(i + 2), str(i + 5), str(i + 7)
    parts += [_lin(l1, l1, prev), _lin(l2, l2, l1), _lin(l3, None, l2)]
    sizes |= {l1: 512, l2: 512}
    return _spec(net, sizes, *parts)


def _preresnet20_expected(net: nn.Module) -> PermutationSpec:
    parts, sizes = [_lin("0", "0", None, nd=2, bias=False)], {"0": 16}
    stream = "0"
    for i in range(1, 10):
        width = 16 if i <= 3 else 32 if i <= 6 else 64
        new = f"{i}.shortcut" if i in (4, 7) else stream
        if i in (4, 7):
            parts.append(_lin(new, new, stream, nd=2, bias=False))
            sizes[new] = width
        c1 = f"{i}.conv1"
        sizes[c1] = width
        parts += [_bn(f"{i}.bn1", stream), _lin(c1, c1, stream, nd=2, bias=False),
                  _bn(f"{i}.bn2", c1), _lin(f"{i}.conv2", new, c1, nd=2, bias=False)]
        stream = new
    parts += [_bn("10", stream), _lin("14", None, stream)]
    return _spec(net, sizes, *parts)


EXPECTED = {
    "seed000-cnn": ((1, 28, 28), {}, lambda n: _spec(
        n, {"0": 4, "4": 4}, _lin("0", "0", None, nd=2), _bn("1", "0"),
        _lin("4", "4", "0", nd=2), _bn("5", "4"), _lin("9", None, "4", rep=49))),
    "seed004-cnn": ((3, 32, 32), {}, lambda n: _spec(
        n, {"0": 32, "2": 64, "6": 256}, _lin("0", "0", None, nd=2),
        _lin("2", "2", "0", nd=2), _lin("6", "6", "2", rep=256), _lin("8", None, "6"))),
    "mnist1d-cnn": ((1, 40), {"width": 7}, lambda n: _spec(
        n, {"0": 7, "3": 7, "6": 7}, _lin("0", "0", None, nd=1), _bn("1", "0"),
        _lin("3", "3", "0", nd=1), _bn("4", "3"), _lin("6", "6", "3", nd=1),
        _bn("7", "6"), _lin("10", None, "6", rep=5))),
    "mnist1d-smallcnn": ((1, 40), {}, lambda n: _spec(
        n, {"0": 32, "2": 64, "6": 256}, _lin("0", "0", None, nd=1),
        _lin("2", "2", "0", nd=1), _lin("6", "6", "2", rep=20), _lin("8", None, "6"))),
    "mlp": ((1, 28, 28), {"hidden": 9, "depth": 3}, lambda n: _spec(
        n, {"1": 9, "3": 9, "5": 9}, _lin("1", "1", None), _lin("3", "3", "1"),
        _lin("5", "5", "3"), _lin("7", None, "5"))),
    "vgg16": ((3, 32, 32), {}, _vgg16_expected),
    "preresnet": ((3, 32, 32), {"depth": 20}, _preresnet20_expected),
}


def _torchvision_resnet_expected(net: nn.Module, blocks: tuple[int, ...]) -> PermutationSpec:
    """torchvision's BasicBlock ResNet: a block's output joins its stream (named after
    its first conv2 when a downsampling shortcut starts a new one)."""
    parts = [_lin("conv1", "conv1", None, nd=2, bias=False), _bn("bn1", "conv1")]
    sizes, stream = {"conv1": 64}, "conv1"
    for li, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), 1):
        for bi in range(n):
            pre = f"layer{li}.{bi}"
            c1, new = f"{pre}.conv1", stream
            if li > 1 and bi == 0:
                new = f"{pre}.conv2"
                parts += [_lin(f"{pre}.downsample.0", new, stream, nd=2, bias=False),
                          _bn(f"{pre}.downsample.1", new)]
                sizes[new] = width
            sizes[c1] = width
            parts += [_lin(c1, c1, stream, nd=2, bias=False), _bn(f"{pre}.bn1", c1),
                      _lin(f"{pre}.conv2", new, c1, nd=2, bias=False),
                      _bn(f"{pre}.bn2", new)]
            stream = new
    return _spec(net, sizes, *parts, _lin("fc", None, stream))


def test_torchvision_resnet18_spec_equals_the_hand_written_one() -> None:
    from torchvision.models import resnet18

    net = resnet18(num_classes=10)
    assert permutation_spec(net) == _torchvision_resnet_expected(net, (2, 2, 2, 2))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small",
                                  "efficientnet_b0"])
def test_torchvision_models_keep_their_function_when_permuted(name: str) -> None:
    import torchvision

    net = _randomized(lambda: getattr(torchvision.models, name)(num_classes=10), 0)
    spec = permutation_spec(net)
    perm = permute_model(net, spec, random_permutations(spec, 1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = net(x)
        assert float(want.std()) > 1e-3  # an output that can tell permutations apart
        torch.testing.assert_close(perm(x), want, rtol=1e-4, atol=1e-4 * float(want.std()))
    moved = [k for k, v in perm.state_dict().items() if not torch.equal(v, net.state_dict()[k])]
    assert len(moved) > len(spec.sizes)


def test_depthwise_conv_and_squeeze_excitation_spec() -> None:
    net = _MobileBlockNet()
    assert permutation_spec(net) == _spec(
        net, {"stem": 6, "expand": 12, "se1": 16},
        _lin("stem", "stem", None, nd=2, bias=False), _bn("bn0", "stem"),
        _lin("expand", "expand", "stem", nd=2, bias=False), _bn("bn1", "expand"),
        {"dw.weight": (("expand", 1), None, None, None)}, _bn("bn2", "expand"),
        _lin("se1", "se1", "expand", nd=2), _lin("se2", "expand", "se1", nd=2),
        _lin("project", "stem", "expand", nd=2, bias=False), _bn("bn3", "stem"),
        _lin("head", None, "stem"))


def test_every_registered_model_has_a_hand_written_spec() -> None:
    assert set(EXPECTED) == set(MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_traced_spec_equals_the_hand_written_one(name: str) -> None:
    shape, kwargs, expected = EXPECTED[name]
    net = build_model(name, shape, 10, **kwargs)
    assert permutation_spec(net) == expected(net)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_permuting_a_registered_model_keeps_its_function(name: str) -> None:
    shape, kwargs, _ = EXPECTED[name]
    torch.manual_seed(0)
    net = build_model(name, shape, 10, **kwargs)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    spec = permutation_spec(net)
    perm = permute_model(net, spec, random_permutations(spec, 1))
    x = torch.randn(3, *shape)
    assert not torch.equal(perm.state_dict()[next(iter(spec.axes))],
                           net.state_dict()[next(iter(spec.axes))])
    torch.testing.assert_close(perm(x), net(x), rtol=1e-4, atol=1e-5)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.attn(h, h, h)[0]


class _Mean(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(self.dim, keepdim=True)


class _Cat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.cat([self.a(x), self.b(x)], 1))


class _SharedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(torch.relu(self.b(self.a(x)))))


class _Broadcast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(2, 4, 1), nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 4, H, W) times (N, 4): broadcasts the 4 units against W
        return (self.conv(x) * self.fc(x.mean([2, 3]))).sum()


@pytest.mark.parametrize(("net", "named"), [
    pytest.param(lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2)),
                 "'1' (Conv2d with groups=2)", id="grouped_conv"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 8, 3, groups=4)),
                 "'1' (Conv2d with groups=4)", id="depthwise_with_multiplier"),
    pytest.param(_SharedLayer, "'b' (Linear) is called twice (shared weights)",
                 id="shared_weights"),
    pytest.param(_Broadcast, "'mul'", id="broadcast_product"),
    pytest.param(lambda: nn.Sequential(nn.Linear(4, 8), _Mean(1), nn.Linear(1, 2)),
                 "other than over spatial axes", id="mean_over_units"),
    pytest.param(lambda: nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)),
                 "'1' (LayerNorm)", id="unknown_layer"),
    pytest.param(_Attention, "attn", id="attention"),
    pytest.param(_Cat, "'cat'", id="concatenation"),
])
def test_unsupported_modules_raise_one_line_naming_them(net, named: str) -> None:
    with pytest.raises(UserError) as e:
        permutation_spec(net())
    msg = str(e.value)
    assert "\n" not in msg
    assert named in msg
    assert "supported: Linear" in msg


class _SpatialGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.gate, self.fc = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 1, 1), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc((h * torch.sigmoid(self.gate(h))).mean([2, 3]))


def test_an_elementwise_product_of_unequal_channels_is_one_line() -> None:
    with pytest.raises(UserError) as e:
        permutation_spec(_SpatialGate())
    assert str(e.value) == (
        "cannot align _SpatialGate: function 'mul' at mul combines tensors of 4 and 1 "
        "channels elementwise; their units must correspond one to one")


def test_a_model_without_hidden_units_has_nothing_to_permute() -> None:
    for net in (nn.Linear(3, 2), nn.Sequential(nn.Flatten(), nn.Linear(3, 2))):
        with pytest.raises(UserError, match="no hidden units to permute"):
            align(net, net)


# =========================================================================== oracles
@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_matching_recovers_a_known_permutation_exactly(net: str, method: str) -> None:
    factory, shape = NETS[net]
    a = _randomized(factory, 0)
    spec = permutation_spec(a)
    p = random_permutations(spec, seed=3)
    assert all(not torch.equal(v, torch.arange(len(v))) for v in p.values())
    b = permute_model(a, spec, p)
    x = torch.randn(512, *shape)
    res = align(a, b, (x, torch.zeros(512, dtype=torch.long)), method=method)
    inv = invert(p)
    assert {g: v.tolist() for g, v in res.perms.items()} == {
        g: v.tolist() for g, v in inv.items()}
    for k, v in a.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), k


@pytest.mark.parametrize("net", sorted(NETS))
def test_the_aligned_model_computes_the_same_function(net: str) -> None:
    factory, shape = NETS[net]
    a, b = _randomized(factory, 0), _randomized(factory, 1)
    res = align(a, b)
    assert res.sweeps >= 1
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in res.perms.values())
    assert moved > 0  # two unrelated nets: some units move
    x = torch.randn(64, *shape)
    torch.testing.assert_close(res.model.eval()(x), b(x), rtol=1e-5, atol=1e-5)
    # the running statistics moved with their channels
    for k, v in res.model.state_dict().items():
        if k.endswith("running_var"):
            assert sorted(v.tolist()) == sorted(b.state_dict()[k].tolist())


def test_weight_matching_increases_the_inner_product_and_is_seeded() -> None:
    a, b = _randomized(tiny_mlp, 0), _randomized(tiny_mlp, 1)
    spec = permutation_spec(a)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())

    def dot(model: nn.Module) -> float:
        return sum(float((pa[k].detach() * v).sum()) for k, v in model.state_dict().items()
                   if k in pa)

    p1, _ = weight_matching(spec, pa, pb, seed=5)
    p2, _ = weight_matching(spec, pa, pb, seed=5)
    assert all(torch.equal(p1[g], p2[g]) for g in p1)
    assert dot(permute_model(b, spec, p1)) > dot(b)


def test_weight_matching_never_solves_the_same_assignment_twice(monkeypatch) -> None:
    # a group whose neighbours have not moved since its last visit has the same S,
    # hence the same answer: that visit must be skipped, also right after the group moved
    mod = sys.modules[weight_matching.__module__]
    real, seen = mod._assign, []

    def recording(S: torch.Tensor) -> torch.Tensor:
        seen.append(S.clone())
        return real(S)

    monkeypatch.setattr(mod, "_assign", recording)
    torch.manual_seed(3)
    a, b = (nn.Sequential(nn.Flatten(), nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24),
                          nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))
            for _ in range(2))
    spec = permutation_spec(a)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for seed in range(6):
        seen.clear()
        perms, sweeps = weight_matching(spec, pa, pb, seed=seed)
        assert sweeps > 2  # enough visits for a group to come twice in a row
        for i in range(len(seen)):
            for j in range(i):
                assert not torch.equal(seen[i], seen[j]), (seed, i, j)
        # skipping changes nothing: every group is at a fixed point of its own assignment
        again, sweeps = weight_matching(spec, pa, pb, seed=seed + 100, init=perms)
        assert sweeps == 1
        assert all(torch.equal(again[g], p) for g, p in perms.items())


def _reference_matching(spec: PermutationSpec, pa: dict, pb: dict, seed: int
                        ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Plain coordinate descent: every S from scratch in float64, the same visiting
    order and acceptance rule; a visit whose S equals the group's last one is skipped
    (its answer could not change).  Returns the permutations and the S solved."""
    from scipy.optimize import linear_sum_assignment

    perms = {g: torch.arange(n) for g, n in spec.sizes.items()}
    rng, groups, last, solved = np.random.default_rng(seed), list(spec.sizes), {}, []
    while True:
        changed = False
        for gi in rng.permutation(len(groups)):
            g, n = groups[gi], spec.sizes[groups[gi]]
            S = torch.zeros(n, n, dtype=torch.float64)
            for k, ax, _ in spec.terms(g):
                if k not in pa:
                    continue
                b = permute_tensor(pb[k].double(), spec.axes[k], perms, skip=ax)
                S += pa[k].double().movedim(ax, 0).reshape(n, -1) @ \
                    b.movedim(ax, 0).reshape(n, -1).T
            if g in last and torch.equal(last[g], S):
                continue
            last[g] = S
            solved.append(S)
            _, cols = linear_sum_assignment(S.numpy(), maximize=True)
            new, idx = torch.from_numpy(cols), torch.arange(n)
            if float(S[idx, new].sum()) > float(S[idx, perms[g]].sum()) + 1e-9 * (
                    1.0 + float(S.abs().sum())):
                perms[g], changed = new, True
        if not changed:
            return perms, solved


_WIDE = {
    "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48),
                                 nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 3)),
    "bn_cnn": lambda: nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 3)),
    "residual": lambda: _ResBlockNet(32),
}


@pytest.mark.parametrize("net", list(_WIDE))
def test_weight_matching_updates_s_exactly(net: str, monkeypatch) -> None:
    # S is kept between visits and only the moved units' slices are multiplied again:
    # every S solved must equal the one computed from scratch
    mod = sys.modules[weight_matching.__module__]
    real_assign, real_index, solved, low_rank = mod._assign, mod.entry_index, [], []

    def recording(S: torch.Tensor) -> torch.Tensor:
        solved.append(S.clone())
        return real_assign(S)

    def counting(perm: torch.Tensor, repeat: int) -> torch.Tensor:
        low_rank.append(len(perm))
        return real_index(perm, repeat)

    monkeypatch.setattr(mod, "_assign", recording)
    monkeypatch.setattr(mod, "entry_index", counting)
    a, b = _randomized(_WIDE[net], 0), _randomized(_WIDE[net], 1)
    spec = permutation_spec(a)
    pa = {k: v.detach() for k, v in a.named_parameters()}
    pb = {k: v.detach() for k, v in b.named_parameters()}
    for seed in range(3):
        solved.clear()
        perms, _ = weight_matching(spec, pa, pb, seed=seed)
        want, want_solved = _reference_matching(spec, pa, pb, seed)
        assert len(solved) == len(want_solved)
        for S, R in zip(solved, want_solved, strict=True):
            torch.testing.assert_close(S, R, rtol=0, atol=1e-5 * float(R.abs().max()))
        assert all(torch.equal(perms[g], want[g]) for g in want)
    assert low_rank  # the update by slices was taken


class _Stream(nn.Module):
    """A residual stream: ``l2`` maps the stream back into it (both axes one group)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.out = nn.Linear(10, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.l1(z))
        return self.out(h + torch.relu(self.l2(h)))


def test_weight_matching_ends_when_a_group_permutes_both_axes_of_a_tensor() -> None:
    torch.manual_seed(0)
    a = _Stream()
    torch.manual_seed(1)
    b = _Stream()
    spec = permutation_spec(a)
    assert spec.axes["l2.weight"][0] == spec.axes["l2.weight"][1]
    pa = {k: v.detach() for k, v in a.named_parameters()}
    pb = {k: v.detach() for k, v in b.named_parameters()}

    def objective(perms: dict[str, torch.Tensor]) -> float:
        q = permute_state(pb, spec, perms)
        return sum(float((pa[k].double() * q[k].double()).sum()) for k in pa)

    ident = {g: torch.arange(n) for g, n in spec.sizes.items()}
    for seed in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # it must end before max_sweeps
            odd, sweeps = weight_matching(spec, pa, pb, seed=seed, max_sweeps=99)
            even, _ = weight_matching(spec, pa, pb, seed=seed, max_sweeps=100)
        assert sweeps < 99
        assert all(torch.equal(odd[g], even[g]) for g in odd)
        assert objective(odd) > objective(ident)
    # and it still undoes a known permutation exactly
    q = random_permutations(spec, 3)
    shuffled = permute_state(pa, spec, q)
    got, _ = weight_matching(spec, pa, shuffled)
    assert all(torch.equal(got[g], invert(q)[g]) for g in q)


def test_weight_matching_warns_at_max_sweeps_and_checks_its_input() -> None:
    a, b = _randomized(_WIDE["mlp"], 0), _randomized(_WIDE["mlp"], 1)
    spec = permutation_spec(a)
    pa = {k: v.detach() for k, v in a.named_parameters()}
    pb = {k: v.detach() for k, v in b.named_parameters()}
    _, sweeps = weight_matching(spec, pa, pb)
    assert sweeps > 2
    with pytest.warns(UserWarning, match="max_sweeps=2"):
        weight_matching(spec, pa, pb, max_sweeps=2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserError, match=r"^max_sweeps must be (an integer )?>= 1"):
            weight_matching(spec, pa, pb, max_sweeps=bad)
    nan = {**pb, "3.weight": pb["3.weight"].clone().fill_(float("nan"))}
    with pytest.raises(UserError, match=r"^3.weight of network B holds NaN or inf"):
        weight_matching(spec, pa, nan)


# =========================================================================== REPAIR
def _interpolated(a: nn.Module, b: nn.Module, t: float, x: torch.Tensor) -> nn.Module:
    net = permute_model(a, permutation_spec(a), {})
    with torch.no_grad():
        for (_, p), pa, pb in zip(net.named_parameters(), a.parameters(), b.parameters(),
                                  strict=True):
            p.copy_((1 - t) * pa + t * pb)
    if has_batchnorm(net):
        update_bn([x], net)  # RESET
    return net.eval()


@pytest.mark.parametrize("net", ["mlp", "bn_cnn"])
def test_repair_matches_the_interpolated_statistics_at_one_half(net: str) -> None:
    factory, shape = NETS[net]
    a, b0 = _randomized(factory, 0), _randomized(factory, 1)
    b = align(a, b0).model.eval()
    n = 4000
    gen = torch.Generator().manual_seed(0)
    x, held = torch.randn(n, *shape, generator=gen), torch.randn(n, *shape, generator=gen)
    sa = site_statistics(trace_permutations(a), [x])
    sb = site_statistics(trace_permutations(b), [x])
    mid = _interpolated(a, b, 0.5, x)
    traced = trace_permutations(mid)
    before = site_statistics(traced, [x])
    assert repair(traced, sa, sb, 0.5, [x]) == len(sa)
    target = {s: ((sa[s].mean + sb[s].mean) / 2, (sa[s].std + sb[s].std) / 2) for s in sa}
    off = [float((before[s].std / target[s][1] - 1).abs().max()) for s in sa]
    assert max(off) > 0.05  # before REPAIR the statistics are not the targets
    after = site_statistics(traced, [x])
    for s, (mu, sd) in target.items():
        torch.testing.assert_close(after[s].mean, mu, rtol=0, atol=1e-4 * float(sd.max()))
        torch.testing.assert_close(after[s].std, sd, rtol=1e-4, atol=1e-6)
    # on new data of the same size: both estimates carry a standard error sd/sqrt(n)
    # (conservative for conv channels, whose n images give more correlated positions)
    fresh = site_statistics(traced, [held])
    for s, (mu, sd) in target.items():
        se = sd * (2 / n) ** 0.5
        assert bool(((fresh[s].mean - mu).abs() <= 5 * se).all()), s
        assert bool(((fresh[s].std / sd - 1).abs() < 0.1).all()), s


@pytest.mark.parametrize("net", sorted(NETS))
def test_repair_in_one_pass_equals_a_forward_pass_per_layer(net: str, monkeypatch) -> None:
    factory, shape = NETS[net]
    a, b = _randomized(factory, 0), align(_randomized(factory, 0), _randomized(factory, 1)
                                          ).model.eval()
    x = torch.randn(3, 40, *shape)  # three batches
    traced_a, traced_b = trace_permutations(a), trace_permutations(b)
    sa, sb = site_statistics(traced_a, list(x)), site_statistics(traced_b, list(x))
    mid = _interpolated(a, b, 0.3, x.flatten(0, 1))
    nets = [copy.deepcopy(mid) for _ in range(2)]
    mod = sys.modules[repair.__module__]
    per_layer = []
    real = mod.site_statistics

    def counted(*args, **kwargs):
        per_layer.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "site_statistics", counted)
    monkeypatch.setattr(mod, "_ONE_PASS_LAYERS", 1)  # one pass even for two layers
    n = [repair(trace_permutations(m), sa, sb, 0.3, list(x), max_bytes=mb)
         for m, mb in zip(nets, (None, 0), strict=True)]
    assert n[0] == n[1] == len(sa) > 0
    assert len(per_layer) == len(sa)  # only the fallback measures layer by layer
    for (k, v), w in zip(nets[0].state_dict().items(), nets[1].state_dict().values(),
                         strict=True):
        assert torch.equal(v, w), k
    changed = [k for k, v in nets[0].state_dict().items() if not torch.equal(
        v, mid.state_dict()[k])]
    assert changed  # REPAIR moved something


def test_activation_matching_keeps_correlations_of_activations_far_from_zero() -> None:
    # sigmoid units at 0.95 that move by 1e-4: in float32, sum(a^2) - sum(a)^2 / m
    # is rounding; the moments must be taken about a shift near the mean
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Sigmoid(),
                      nn.Linear(16, 2))
    with torch.no_grad():
        a[0].bias.fill_(3.0)
        a[2].bias.fill_(3.0)
        a[0].weight.mul_(1e-3)
    spec = permutation_spec(a)
    p = random_permutations(spec, 3)
    x = torch.randn(4096, 8)
    res = align(a, permute_model(a, spec, p), (x, torch.zeros(4096, dtype=torch.long)),
                method="activations")
    assert {g: v.tolist() for g, v in res.perms.items()} == {
        g: v.tolist() for g, v in invert(p).items()}


def test_site_statistics_are_taken_before_in_place_activations() -> None:
    # the REPAIR site of a conv without BN is its output, which ReLU(inplace=True)
    # overwrites: the statistics must be the preactivation's, as without inplace
    def net(inplace: bool) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(inplace), nn.Conv2d(6, 6, 3),
                             nn.ReLU(inplace), nn.Flatten(), nn.Linear(6 * 4 * 4, 2)).eval()

    x = torch.randn(64, 3, 8, 8)
    got = site_statistics(trace_permutations(net(True)), [x])
    want = site_statistics(trace_permutations(net(False)), [x])
    assert set(got) == set(want) == {"_0", "_2"}  # the fx nodes of layers 0 and 2
    for s in want:
        assert float(want[s].mean.min()) < 0  # a preactivation, not a ReLU's output
        torch.testing.assert_close(got[s].mean, want[s].mean)
        torch.testing.assert_close(got[s].std, want[s].std)


# =========================================================================== merge
@pytest.mark.parametrize("net", sorted(NETS))
def test_merging_permuted_copies_returns_the_network(net: str) -> None:
    factory, shape = NETS[net]
    a = _randomized(factory, 0)
    spec = permutation_spec(a)
    copies = [a] + [permute_model(a, spec, random_permutations(spec, s)) for s in (1, 2, 3)]
    x = torch.randn(256, *shape)
    res = merge(copies, (x, torch.zeros(256, dtype=torch.long)))
    got = res.model.eval()
    for k, v in a.named_parameters():
        torch.testing.assert_close(dict(got.named_parameters())[k], v, rtol=1e-6,
                                   atol=1e-6)
    if net == "mlp":  # no BN: the function is the network's
        torch.testing.assert_close(got(x), a(x), rtol=1e-5, atol=1e-5)
    for i, p in enumerate(res.perms[1:], 1):
        inv = invert(random_permutations(spec, i))
        assert all(torch.equal(p[g], inv[g]) for g in p)


def test_merge_needs_two_networks_of_one_architecture() -> None:
    with pytest.raises(UserError, match="at least two"):
        merge([tiny_mlp()])
    wide = nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16),
                         nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(UserError, match="same architecture and width") as e:
        merge([tiny_mlp(), wide])
    assert "\n" not in str(e.value)


def test_align_refuses_different_widths_and_activations_without_data() -> None:
    wide = nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16),
                         nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(UserError, match=r"1\.weight has shape"):
        align(tiny_mlp(), wide)
    with pytest.raises(UserError, match="needs train data"):
        align(tiny_mlp(), tiny_mlp(), method="activations")
    with pytest.raises(UserError, match="unknown alignment method"):
        align(tiny_mlp(), tiny_mlp(), method="cosine")


# =========================================================================== run files
@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory: pytest.TempPathFactory, tiny_run, tiny_config):
    """The tiny run (seed 0), one of seed 1 on its data, one of another width, one of
    other data (another size) and one of seed 1's own data (mnist1d generated by seed 1)."""
    from landscape.train import train

    d = tmp_path_factory.mktemp("align_runs")
    runs = {"a": tiny_run}
    for key, cfg in (("b", tiny_config.replace(seed=1, data_seed=0)),
                     ("wide", tiny_config.replace(seed=1, data_seed=0, model_width=12)),
                     ("data", tiny_config.replace(seed=1, data_seed=0, num_samples=400)),
                     ("own_data", tiny_config.replace(seed=1))):
        train(cfg, d / f"{key}.h5", progress=False, log=lambda _: None)
        runs[key] = d / f"{key}.h5"
    return runs


def test_cli_align_stores_permutations_profiles_and_barriers(seed_runs, tmp_path,
                                                             capsys) -> None:
    from landscape import store
    from landscape.cli import main

    out = tmp_path / "align.h5"
    argv = ["align", str(seed_runs["a"]), str(seed_runs["b"]), "--repair", "--points", "5",
            "--samples", "300", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "aligned barrier" in printed
    assert "repair barrier" in printed
    attrs = store.alignment_attrs(out, "weights_repair")
    assert attrs["complete"] is True or attrs["complete"] == 1
    for which in ("line", "aligned", "repair"):
        assert f"{which}_test_err_barrier" in attrs
    perms, aligned, _ = store.read_alignment(out, "weights_repair")
    assert set(perms) == {"0", "3", "6"}
    assert aligned.ndim == 1
    profiles = store.alignment_profiles(out, "weights_repair")
    # the endpoints are the same points on both lines: t = 0 exactly, t = 1 the same function
    for which in ("aligned", "repair"):
        assert profiles[which].metrics["train_err"][0] == profiles["line"].metrics[
            "train_err"][0]
        assert abs(profiles[which].metrics["train_loss"][-1]
                   - profiles["line"].metrics["train_loss"][-1]) < 1e-4
    # rerun: everything is read back, nothing recomputed
    mtime = out.stat().st_mtime_ns
    assert main(argv) == 0
    assert out.stat().st_mtime_ns == mtime
    # info and plot --all read the group
    assert main(["info", str(out)]) == 0
    assert "alignments:" in capsys.readouterr().out
    assert main(["plot", str(out), "--all", "--out-dir", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "align_alignment_weights_repair_test_err.png").exists()


def test_cli_align_reports_a_curve_between_the_same_endpoints(seed_runs, tmp_path,
                                                              capsys) -> None:
    from landscape import store
    from landscape.cli import main

    out = tmp_path / "both.h5"
    assert main(["connect", str(seed_runs["a"]), str(seed_runs["b"]), "--epochs", "1",
                 "--points", "3", "--out", str(out), "--quiet"]) == 0
    assert main(["align", str(seed_runs["a"]), str(seed_runs["b"]), "--points", "3",
                 "--out", str(out), "--quiet", "--method", "activations",
                 "--samples", "200"]) == 0
    attrs = store.alignment_attrs(out, "activations")
    assert attrs["curve"] == "bezier"
    assert "curve_test_err_barrier" in attrs
    assert "curve" in store.alignment_profiles(out, "activations")
    # compare prints the four barriers of the alignment, as stored (errors in points)
    assert main(["compare", str(out)]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines()
               if r.startswith("| activations (activations) | test_err |"))
    want = [100 * attrs[f"{w}_test_err_barrier"] for w in ("line", "aligned", "curve")]
    got = [float(c) for c in row.strip("|").split("|")[2:] if c.strip() != "—"]
    assert got == pytest.approx(want, abs=0.006)


def test_cli_merge_writes_a_solution_compare_and_measures_accept(seed_runs, tmp_path,
                                                                capsys) -> None:
    from landscape import store
    from landscape.cli import main

    out = tmp_path / "merged.h5"
    assert main(["merge", str(seed_runs["a"]), str(seed_runs["b"]), "--out", str(out),
                 "--quiet"]) == 0
    with store.open_run(out) as f:
        names = store.solution_names(f)
        sol = store.read_solution(f, "merged")
    assert {"merged", "sgd", "swa"} <= set(names)
    assert 0.0 <= float(sol.attrs["test_acc"]) <= 1.0
    assert main(["sharpness", str(out), "--solutions", "sgd,merged", "--measures",
                 "trace", "--quiet"]) in (0,)
    capsys.readouterr()
    assert main(["compare", str(out), "--solutions", "sgd,merged", "--n-boot", "50"]) == 0
    assert "merged" in capsys.readouterr().out


def test_bad_alignment_inputs_are_one_line_errors_and_lose_nothing(seed_runs, tmp_path,
                                                                   capsys) -> None:
    from landscape.cli import main

    out = tmp_path / "keep.h5"
    assert main(["merge", str(seed_runs["a"]), str(seed_runs["b"]), "--out", str(out),
                 "--quiet"]) == 0
    before = out.read_bytes()
    capsys.readouterr()

    def error(*argv: str) -> str:
        assert main([*argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("landscape ")
        return err

    a, b = str(seed_runs["a"]), str(seed_runs["b"])
    assert "different architectures" in error("align", a, str(seed_runs["wide"]),
                                              "--out", str(out), "--quiet")
    assert "different data" in error("align", a, str(seed_runs["data"]), "--out",
                                     str(out), "--quiet")
    assert "same weights" in error("align", a, a, "--out", str(out), "--quiet")
    assert "at least two run files" in error("merge", a, "--out", str(out))
    assert "different architectures" in error("merge", a, str(seed_runs["wide"]),
                                              "--out", str(out))
    assert "different data" in error("merge", a, str(seed_runs["data"]), "--out",
                                     str(out))
    # the same sizes, generated by another seed: other data, and the fix is --data-seed
    for cmd in ("align", "merge", "connect"):
        msg = error(cmd, a, str(seed_runs["own_data"]), "--out", str(out))
        assert "different data (seed 0 vs 1)" in msg, msg
        assert "--data-seed" in msg
    assert "train` writes" in error("merge", a, b, "--out", str(out), "--name", "sgd")
    assert "plain name" in error("merge", a, b, "--out", str(out), "--name", "a/b")
    assert "plain name" in error("connect", a, b, "--out", str(out), "--name", "a/b")
    assert "--plane-steps must be >= 1" in error("connect", a, b, "--out", str(out),
                                                 "--plane", "--plane-steps", "0")
    # another merge under the stored name: refused unless --force
    assert "--force" in error("merge", a, b, "--out", str(out), "--seed", "3")
    assert "invalid choice" in error("align", a, b, "--method", "cosine", "--out",
                                     str(out))
    assert out.read_bytes() == before


def test_merge_into_a_run_of_other_data_is_a_one_line_error(seed_runs, tmp_path,
                                                            capsys) -> None:
    import shutil

    from landscape.cli import main

    out = tmp_path / "other_data.h5"  # the same model, trained on 400 samples
    shutil.copy(seed_runs["data"], out)
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["merge", str(seed_runs["a"]), str(seed_runs["b"]), "--out", str(out),
                 "--quiet"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    assert len(err) == 1
    assert "different data" in err[0]
    assert str(out) in err[0]
    assert out.read_bytes() == before


def _pairwise_inner(states: list[dict[str, torch.Tensor]]) -> float:
    return sum(float((states[i][k] * states[j][k]).sum()) for i in range(len(states))
               for j in range(i + 1, len(states)) for k in states[i])


def test_merge_rounds_never_lower_the_objective_and_end() -> None:
    # three unrelated networks: the leave-one-out re-alignments used to restart from
    # identities with a new visiting order each round and could cycle until max_rounds
    nets = []
    for s in range(3):
        torch.manual_seed(100 + s)
        nets.append(nn.Sequential(nn.Flatten(), nn.Linear(12, 48), nn.ReLU(),
                                  nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 3)))
    spec = permutation_spec(nets[0])
    first = [{g: torch.arange(n) for g, n in spec.sizes.items()}]
    first += [align(nets[0], b).perms for b in nets[1:]]

    def aligned(perms: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        return [permute_state({k: v.detach() for k, v in n.named_parameters()}, spec, p)
                for n, p in zip(nets, perms, strict=True)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = merge(nets, max_rounds=20)
    assert res.converged
    assert 1 <= res.rounds < 20
    assert _pairwise_inner(aligned(res.perms)) >= _pairwise_inner(aligned(first)) - 1e-6
    # the average is that of the networks under the returned permutations
    avg = {k: sum(s[k] for s in aligned(res.perms)) / 3 for k in aligned(res.perms)[0]}
    for k, v in res.model.named_parameters():
        torch.testing.assert_close(v, avg[k], rtol=1e-6, atol=1e-6)
    # one round allowed here: still changing, so it warns and says so
    with pytest.warns(UserWarning, match="max_rounds"):
        short = merge(nets, max_rounds=1)
    assert not short.converged
    assert short.rounds == 1


def test_weight_matching_from_init_is_never_worse_than_init() -> None:
    torch.manual_seed(7)
    a, b = (nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32),
                          nn.ReLU(), nn.Linear(32, 3)) for _ in range(2))
    spec = permutation_spec(a)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())

    def objective(perms: dict[str, torch.Tensor]) -> float:
        q = permute_state({k: v.detach() for k, v in pb.items()}, spec, perms)
        return sum(float((pa[k].detach() * q[k]).sum()) for k in pa)

    best, _ = weight_matching(spec, pa, pb)
    for s in range(4):
        init = random_permutations(spec, s)
        got, _ = weight_matching(spec, pa, pb, init=init, seed=s)
        assert objective(got) >= objective(init) - 1e-6
    again, sweeps = weight_matching(spec, pa, pb, init=best, seed=3)
    assert sweeps == 1
    assert all(torch.equal(again[g], best[g]) for g in best)


def test_align_and_merge_name_wrong_argument_types() -> None:
    a = tiny_mlp()
    with pytest.raises(TypeError, match=r"nn\.Module") as e:
        align(a.state_dict(), a.state_dict())
    assert "\n" not in str(e.value)
    for bad in ("ab", 3, [a, "b"]):
        with pytest.raises(TypeError, match=r"merge takes a sequence of nn\.Module"):
            merge(bad)
    res = merge(m for m in (a, tiny_mlp()))  # a generator is read once
    assert len(res.perms) == 2
    with pytest.raises(TypeError, match="seed must be an int"):
        merge([a, tiny_mlp()], seed="x")
    bn = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16, 2)) for _ in range(2)]
    with pytest.raises(UserError, match=r"BatchNorm: pass data \(train data"):
        merge(bn)


def test_merge_rerun_reads_back_force_replaces_and_copies_no_analyses(seed_runs, tmp_path
                                                                      ) -> None:
    import h5py

    from landscape import store
    from landscape.jobs import merge_runs

    a, b, out = seed_runs["a"], seed_runs["b"], tmp_path / "m.h5"
    first = merge_runs([a, b], out)
    before = out.read_bytes()
    again = merge_runs([a, b], out)  # same runs and settings: read back, file untouched
    assert torch.equal(again.weights, first.weights)
    assert out.read_bytes() == before
    with h5py.File(out, "r") as f:
        assert set(f) <= {"data", "model", "solutions", "history"}
    assert first.attrs["converged"] in (True, 1)
    assert first.attrs["seed"] == 0
    other = merge_runs([a, b], out, seed=3, force=True)
    with store.open_run(out) as f:
        assert store.plain(store.read_solution(f, "merged").attrs["seed"]) == 3
    assert other.attrs["rounds"] >= 1
