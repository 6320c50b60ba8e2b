"""The lean HVP graph (:mod:`landscape._hessian_mode`) against dense float64 Hessians.

Every model's HVP from :meth:`EmpiricalRisk.hvp` (mode on, cached and recomputed
graphs, several batches) equals ``torch.func.hessian`` of the test's own
single-graph loss to ~1e-10 and autograd's own double backward (mode off); the
substitutions happen where they should (a spy counts them) and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from helpers import allclose_report, randomize_bn
from torch import Tensor, nn
from torch.nn import functional as F

from landscape import _hessian_mode as hm
from landscape.data import TensorBatches
from landscape.evaluate import EmpiricalRisk, Evaluator
from landscape.models import build_model

F64 = torch.float64
N, BATCH = 12, 5  # three batches, the last one short


class _KwConv(nn.Module):
    """``F.conv1d`` called with keyword arguments, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.head = nn.Linear(2 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = F.conv1d(x, self.conv.weight, bias=self.conv.bias, stride=2, padding=(1,))
        return self.head(torch.tanh(h).flatten(1))


def _seq(*layers: nn.Module) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(*layers)


# name: (factory, input shape, classes, rewritten convs per batch, rewritten BNs per batch)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int, int, int]] = {
    "mnist1d_cnn_w3": (lambda: build_model("mnist1d-cnn", (1, 40), 10, width=3),
                       (1, 40), 10, 1, 3),
    "seed000_like_cnn": (_seq(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 10)), (1, 8, 8), 10, 1, 2),
    "conv2d_grouped_strided_dilated": (_seq(
        nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2), nn.BatchNorm2d(4),
        nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 3, 3)), (2, 7, 5), 3, 1, 1),
    "conv2d_no_bias_bn_no_affine": (_seq(
        nn.Conv2d(1, 3, (3, 2), stride=(1, 2), padding=(1, 0), bias=False),
        nn.BatchNorm2d(3, affine=False), nn.Softplus(), nn.Flatten(),
        nn.Linear(3 * 5 * 2, 3)), (1, 5, 4), 3, 1, 1),
    "conv1d_circular_valid": (_seq(
        nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular"), nn.BatchNorm1d(3),
        nn.Tanh(), nn.Conv1d(3, 2, 2, padding="valid"), nn.Flatten(),
        nn.Linear(2 * 5, 3)), (2, 6), 3, 1, 1),
    "conv1d_padding_same_falls_back": (_seq(
        nn.Conv1d(1, 2, 3, padding="same"), nn.BatchNorm1d(2), nn.Tanh(), nn.Flatten(),
        nn.Linear(2 * 6, 3)), (1, 6), 3, 0, 1),
    "conv1d_valid_dilated": (_seq(
        nn.Conv1d(1, 2, 3, padding="valid", dilation=2), nn.Tanh(), nn.Flatten(),
        nn.Linear(2 * 4, 3)), (1, 8), 3, 1, 0),
    "conv3d": (_seq(
        nn.Conv3d(1, 2, 2, stride=(1, 2, 1), padding=(1, 0, 1)), nn.BatchNorm3d(2),
        nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 2 * 4, 3)), (1, 3, 4, 3), 3, 1, 1),
    "conv_keyword_args_no_bn": (_KwConv, (1, 7), 3, 1, 0),
    "mlp_with_bn1d": (_seq(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)),
                      (4,), 3, 0, 1),
}


def _case(name: str) -> tuple[nn.Module, Tensor, Tensor]:
    factory, shape, classes, _, _ = CASES[name]
    torch.manual_seed(0)
    net = randomize_bn(factory().to(F64)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, *shape, generator=g, dtype=F64)
    y = torch.randint(0, classes, (N,), generator=g)
    return net, x, y


def _dense_hessian(net: nn.Module, x: Tensor, y: Tensor, *, func: bool = True) -> Tensor:
    """The Hessian of the mean cross-entropy over all of ``(x, y)`` at once.

    ``torch.func.hessian`` by default; ``func=False``: ``torch.autograd.functional``'s,
    for train-mode batch norm, whose second derivative ``torch.func`` gets wrong on
    torch 2.14 (off by ~0.1 against central differences here; cf. pytorch#196699).
    """
    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    buffers = {k: b.detach().clone() for k, b in net.named_buffers()}
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def loss(t: Tensor) -> Tensor:
        chunks = t.split([s.numel() for s in shapes])
        params = {k: c.view(s) for k, c, s in zip(names, chunks, shapes, strict=True)}
        out = torch.func.functional_call(net, {**params, **buffers}, (x,))
        return F.cross_entropy(out, y)

    if func:
        return torch.func.hessian(loss)(theta)
    return torch.autograd.functional.hessian(loss, theta)


def _assert_close(actual: Tensor, expected: Tensor, rtol: float, what: str) -> None:
    """Entries of ``actual`` within ``rtol * max|expected|``."""
    allclose_report(actual, expected, atol=rtol * float(expected.abs().max()), what=what)


class _Spy:
    """Counts the substitutions the mode makes (``None`` returns: fell back)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.conv = self.bn = 0
        conv, bn = hm._const_input_conv, hm._affine_batch_norm

        def spy_conv(*a: object) -> Tensor | None:
            out = conv(*a)
            self.conv += out is not None
            return out

        def spy_bn(*a: object) -> Tensor | None:
            out = bn(*a)
            self.bn += out is not None
            return out

        monkeypatch.setattr(hm, "_const_input_conv", spy_conv)
        monkeypatch.setattr(hm, "_affine_batch_norm", spy_bn)


def _hvp_matrix(risk: EmpiricalRisk, theta: Tensor, V: Tensor) -> Tensor:
    hv = risk.hvp(theta)
    return torch.stack([hv(v) for v in V.T], 1)


@pytest.mark.parametrize("graph_cache", [pytest.param(10, id="cached"),
                                         pytest.param(1, id="recomputed")])
@pytest.mark.parametrize("name", list(CASES))
def test_hvp_equals_dense_hessian(name: str, graph_cache: int,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, y = _case(name)
    H = _dense_hessian(net, x, y)
    n = H.shape[0]
    V = torch.randn(n, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    risk = EmpiricalRisk(net, TensorBatches(x, y, BATCH), graph_cache=graph_cache)
    theta = risk.layout.read(net, dtype=F64)
    spy = _Spy(monkeypatch)
    lean = _hvp_matrix(risk, theta, V)
    _, _, _, convs, bns = CASES[name]
    batches = -(-N // BATCH)
    graphs = batches if graph_cache >= batches else batches * V.shape[1]
    assert (spy.conv, spy.bn) == (convs * graphs, bns * graphs)
    _assert_close(lean, H @ V, 1e-10, f"{name}: HVP with the mode vs dense Hessian")
    risk._lean_graph = False
    plain = _hvp_matrix(risk, theta, V)
    assert (spy.conv, spy.bn) == (convs * graphs, bns * graphs)  # no more substitutions
    _assert_close(lean, plain, 1e-11, f"{name}: HVP with the mode vs without")


def test_full_hessian_matrix_mnist1d_cnn() -> None:
    """Every column (not just random probes) on the smallest BN CNN."""
    net, x, y = _case("mnist1d_cnn_w3")
    H = _dense_hessian(net, x, y)
    risk = EmpiricalRisk(net, TensorBatches(x, y, BATCH), graph_cache=10)
    theta = risk.layout.read(net, dtype=F64)
    got = _hvp_matrix(risk, theta, torch.eye(H.shape[0], dtype=F64))
    _assert_close(got, H, 1e-10, "full Hessian with the mode")


def test_seed000_cnn_float32_matches_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's seed-000 CNN at its real size, float32: equal up to rounding."""
    torch.manual_seed(0)
    net = randomize_bn(build_model("seed000-cnn", (1, 28, 28), 10)).eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    risk = EmpiricalRisk(net, (x, y))
    theta, v = risk.layout.read(net), torch.randn(risk.num_params, generator=g)
    spy = _Spy(monkeypatch)
    lean = risk.hvp(theta)(v)
    assert (spy.conv, spy.bn) == (1, 2)
    risk._lean_graph = False
    _assert_close(lean, risk.hvp(theta)(v), 1e-5, "seed000-cnn float32")


def test_train_mode_batchnorm_is_not_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch statistics (train mode) stay autograd's; the HVP is the dense one."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 3, 3, stride=2), nn.BatchNorm1d(3), nn.Tanh(),
                        nn.Flatten(), nn.Linear(3 * 4, 3)).to(F64).train()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N, 1, 9, generator=g, dtype=F64), torch.randint(0, 3, (N,), generator=g)
    nostats = nn.Sequential(*[nn.BatchNorm1d(3, track_running_stats=False).to(F64)
                              if isinstance(m, nn.BatchNorm1d) else m for m in net])
    H = _dense_hessian(nostats, x, y, func=False)  # the same function, no buffers
    V = torch.randn(H.shape[0], 4, generator=g, dtype=F64)
    spy = _Spy(monkeypatch)
    for model in (net, nostats):
        risk = EmpiricalRisk(model, (x, y))
        got = _hvp_matrix(risk, risk.layout.read(model, dtype=F64), V)
        _assert_close(got, H @ V, 1e-10, "train-mode BN")
    assert (spy.conv, spy.bn) == (2, 0)


def test_mode_inactive_outside_graph_building(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, y = _case("seed000_like_cnn")
    spy = _Spy(monkeypatch)
    risk = EmpiricalRisk(net, TensorBatches(x, y, BATCH), graph_cache=1)
    theta = risk.layout.read(net, dtype=F64)
    risk.value(theta)
    risk.value_and_grad(theta)
    risk.error(theta)
    Evaluator(net, (x, y), bn="keep").metrics(["train"])
    with torch.enable_grad():
        F.cross_entropy(net(x), y).backward()
    assert (spy.conv, spy.bn) == (0, 0)
    hv = risk.hvp(theta)  # recomputed path: nothing built yet
    assert (spy.conv, spy.bn) == (0, 0)
    assert torch.overrides._get_current_function_mode_stack() == []
    hv(torch.ones_like(theta))
    assert (spy.conv, spy.bn) == (3, 6)  # one graph per batch, built inside hv only
    assert torch.overrides._get_current_function_mode_stack() == []


def test_mode_passes_through_without_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, _ = _case("seed000_like_cnn")
    spy = _Spy(monkeypatch)
    with hm.HessianMode(), torch.no_grad():
        out = net(x)
    assert (spy.conv, spy.bn) == (0, 0)
    torch.testing.assert_close(out, net(x), rtol=0, atol=0)
