"""Adaptive sharpness (:mod:`landscape.sharpness.kwon2021asam`): closed forms,
normalization and scale invariance."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from cases import (
    F64,
    H_DIAG,
    W_STAR,
    quadratic,
    quadratic_regression,
    random_spd,
)
from torch import Tensor, nn

from landscape.sharpness import (
    adaptive_sharpness,
)
from landscape.sharpness import measure as ls_measure


def test_asam_closed_forms() -> None:
    r = adaptive_sharpness(quadratic(H_DIAG, W_STAR), W_STAR, rho=0.5, eta=0.0)
    assert r.value == pytest.approx(0.5, rel=1e-6)
    H, _ = random_spd(20, seed=11)
    w = torch.from_numpy(np.random.default_rng(1).normal(size=20))
    T = np.diag(np.abs(w.numpy()) + 0.01)
    lam = np.linalg.eigvalsh(T @ H.numpy() @ T)[-1]
    r = adaptive_sharpness(quadratic(H, w), w, rho=0.3, eta=0.01, steps=300)
    assert r.value == pytest.approx(0.3**2 * lam / 2, rel=1e-3)


@pytest.mark.parametrize("normalize", ["all", "weights"])
def test_asam_normalize_closed_form_from_a_dense_hessian(normalize: str) -> None:
    """At the minimum of a quadratic the value is ρ² λ_max(T H T) / 2, with H the dense
    float64 Hessian of the loss (torch.autograd) and T = |θ| + η on every entry (all)
    or on the weight only, 1 on the bias (weights, ASAM's code)."""
    net, x, y, _ = quadratic_regression()
    theta = torch.cat([net.weight.detach().ravel(), net.bias.detach()])

    def loss(t: Tensor) -> Tensor:
        return ((x @ t[:3] + t[3] - y[:, 0]) ** 2).mean()

    H = torch.autograd.functional.hessian(loss, theta).numpy()
    eta, rho = 0.01, 0.5
    T = {"all": np.abs(theta.numpy()) + eta,
         "weights": np.r_[np.abs(theta.numpy()[:3]) + eta, 1.0]}
    exact = {k: rho**2 * np.linalg.eigvalsh(t[:, None] * H * t)[-1] / 2
             for k, t in T.items()}
    assert abs(exact["all"] / exact["weights"] - 1) > 1e-3  # 10x the tolerance below
    r = ls_measure(net, (x, y), "asam", loss=nn.MSELoss(), dtype="float64", asam_rho=rho,
                   eta=eta, ascent_steps=60, asam_normalize=normalize)
    assert r.normalize == normalize
    assert r.value == pytest.approx(exact[normalize], rel=1e-4)


def test_asam_normalizes_every_entry_by_default() -> None:
    net, x, y, _ = quadratic_regression()
    args = dict(loss=nn.MSELoss(), dtype="float64", ascent_steps=5)
    default = ls_measure(net, (x, y), "asam", **args)
    assert default.normalize == "all"
    every = ls_measure(net, (x, y), "asam", asam_normalize="all", **args)
    assert default.value == pytest.approx(every.value, rel=1e-12)
    with pytest.raises(ValueError, match="asam_normalize must be one of"):
        ls_measure(net, (x, y), "asam", asam_normalize="bias", **args)


@pytest.mark.parametrize("alpha", [10.0, 0.1])
def test_asam_scaling_every_entry_is_invariant_on_a_biased_relu_net(alpha: float) -> None:
    """Rescaling layer 1's weight and bias by α and layer 2's weight by 1/α keeps the
    function; ASAM with T on every entry (η = 0) is unchanged, T on weights only is not."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(40, 4, generator=g, dtype=F64), torch.randint(0, 3, (40,), generator=g))
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[0].weight.mul_(alpha)
        twin[0].bias.mul_(alpha)
        twin[2].weight.div_(alpha)
    assert torch.allclose(twin(data[0]), net(data[0]), rtol=1e-12, atol=1e-12)
    vals = {s: [ls_measure(m, data, "asam", dtype="float64", eta=0.0, asam_rho=0.1,
                           asam_normalize=s).value for m in (net, twin)]
            for s in ("all", "weights")}
    assert vals["all"][1] == pytest.approx(vals["all"][0], rel=1e-6)
    assert abs(vals["weights"][1] / vals["weights"][0] - 1) > 0.01  # 4.6 % at α = 10
