"""Properties every measure shares: determinism given the seed, and which measures Dinh
et al.'s rescaling moves."""

from __future__ import annotations

import pytest
import torch
from cases import (
    F64,
    quadratic,
    random_spd,
    relu_net,
)
from helpers import allclose_report
from torch import Tensor

import landscape as ls
from landscape._errors import UserError
from landscape.evaluate import Evaluator
from landscape.sharpness import (
    adaptive_sharpness,
    average_sharpness,
    epsilon_sharpness,
    hessian_top_eigenvalues,
    hutchinson_trace,
    make_hvp,
    pacbayes_sigma,
    sam_sharpness,
    slq_density,
)
from landscape.sharpness._registry import specs


def _rescale(theta: Tensor, n1: int, alpha: float) -> Tensor:
    out = theta.clone()
    out[:n1] *= alpha
    out[n1:] /= alpha
    return out


def test_dinh_rescaling_changes_lambda_max_not_asam_or_sigma_mag() -> None:
    net, data = relu_net()
    ev = Evaluator(net, *data.splits())
    theta = ev.layout.read(net).double()
    n1 = net[0].weight.numel()
    f = ev.risk()
    loss = f.value
    vals: dict[str, list[float]] = {k: [] for k in
                                    ("loss", "lmax", "asam", "sigma_mag", "sigma")}
    for alpha in (1.0, 10.0, 0.1):
        th = _rescale(theta, n1, alpha)
        vals["loss"].append(loss(th))
        vals["lmax"].append(hessian_top_eigenvalues(make_hvp(f, th), th.numel(), 1,
                                                    tol=1e-8).eigenvalues[0])
        vals["asam"].append(adaptive_sharpness(f, th, rho=0.1, eta=0.0).value)
        vals["sigma_mag"].append(pacbayes_sigma(loss, th, 0.05, magnitude_aware=True,
                                                eps=0.0, samples=10).sigma)
        vals["sigma"].append(pacbayes_sigma(loss, th, 0.05, samples=10).sigma)
    for k in ("loss", "asam", "sigma_mag"):
        allclose_report(vals[k], [vals[k][0]] * 3, rtol=1e-8)
    assert vals["lmax"][1] > 20 * vals["lmax"][0]  # rescaling inflates the curvature
    assert abs(vals["sigma"][1] / vals["sigma"][0] - 1) > 0.1


@pytest.mark.parametrize("measure", ["trace", "eps", "sam", "avg", "pacbayes", "density"])
def test_measures_are_deterministic_given_the_seed(measure: str) -> None:
    H, _ = random_spd(15, seed=14)
    w = torch.full((15,), 0.1, dtype=F64)
    f = quadratic(H, torch.zeros(15, dtype=F64))
    calls = {
        "trace": lambda s: hutchinson_trace(lambda v: H @ v, 15, 10, seed=s).trace,
        "eps": lambda s: epsilon_sharpness(f, w, 0.01, dim=4, seed=s).value,
        "sam": lambda s: sam_sharpness(f, torch.zeros(15, dtype=F64), 0.1, seed=s).value,
        "avg": lambda s: average_sharpness(lambda x: float(f(x)), w, 0.1, 5, seed=s).value,
        "pacbayes": lambda s: pacbayes_sigma(lambda x: float(f(x)), w, 0.01, samples=3,
                                             seed=s).sigma,
        "density": lambda s: slq_density(lambda v: H @ v, 15, 5, seed=s).nodes.sum(),
    }
    assert calls[measure](3) == calls[measure](3)
    assert calls[measure](3) != calls[measure](4)


@pytest.mark.parametrize("measure", sorted(specs()))
def test_nan_in_the_data_is_a_one_line_error_for_every_measure(measure: str) -> None:
    net, data = relu_net()
    x = data.x_train.clone()
    x[3, 1] = float("nan")
    with pytest.raises(UserError, match=r"not finite|is nan.*NaN/inf"):
        ls.measure(net, (x, data.y_train), measure)


def test_the_hessian_measure_makes_no_forward_pass_besides_its_hvps() -> None:
    net, data = relu_net()
    calls = {"forward": 0}
    net.register_forward_pre_hook(lambda *_: calls.__setitem__("forward",
                                                               calls["forward"] + 1))
    r = ls.measure(net, data.splits()[0], "hessian", top_k=1)
    # one gradient graph (one batch, kept for every product); the copy the measure
    # evaluates is hooked as the original is
    assert calls["forward"] == 1, (calls, r.scalars["n_hvp_top"])
