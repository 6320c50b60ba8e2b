"""The closed forms of :mod:`landscape.sharpness.oracles`: checked against the loss
itself, and the ε-sharpness measure on the known-geometry problem against them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from landscape.params import ParamLayout
from landscape.sharpness.oracles import geometry_closed_forms, linear_regression


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_eps_measure_is_the_vertex_maximum_of_the_least_squares_problem(seed: int) -> None:
    """The ``eps`` measure on the known-geometry problem (float64) equals its closed form
    on every seed; with the vertex search off it is flagged as a lower bound (and on
    seed 0 L-BFGS-B alone stops below the best vertex, as the report once showed)."""
    from landscape.sharpness import measure

    X, y, theta = linear_regression(seed, 200)
    net = nn.Linear(4, 1).double()
    ParamLayout.from_module(net).write(net, theta)
    p = {"rho": 0.05, "asam_rho": 0.5, "eta": 0.01, "eps": 1e-3, "sigma": 0.01,
         "pacbayes_target": 0.01, "pacbayes_eps": 1e-3, "tau": 0.1}
    closed = geometry_closed_forms(X, y, theta, p, torch.eye(5, dtype=X.dtype))
    args = dict(loss=nn.MSELoss(), dtype="float64", eps=p["eps"])
    r = measure(net, (X, y), "eps", **args)
    assert r.exact
    assert r.value == pytest.approx(closed["eps"], rel=1e-9)
    lower = measure(net, (X, y), "eps", eps_vertex_starts=0, **args)
    assert (lower.exact, lower.method) == (False, "L-BFGS-B")
    assert lower.value <= closed["eps"] * (1 + 1e-9)
    if seed == 0:
        assert lower.value < 0.9 * closed["eps"]


def test_closed_forms_agree_with_the_loss() -> None:
    """The closed forms, checked by evaluating the loss itself (no measure involved)."""
    X, y, theta = linear_regression(3, 100)
    A = torch.cat([X, torch.ones(100, 1, dtype=X.dtype)], 1)

    def rise(d: torch.Tensor) -> float:
        return float(((A @ (theta + d) - y[:, 0]) ** 2).mean()
                     - ((A @ theta - y[:, 0]) ** 2).mean())

    p = {"rho": 0.05, "asam_rho": 0.5, "eta": 0.01, "eps": 1e-3, "sigma": 0.01,
         "pacbayes_target": 0.01, "pacbayes_eps": 1e-3, "tau": 0.1}
    d = torch.nn.functional.normalize(torch.randn(4, 5, dtype=X.dtype), dim=1)
    c = geometry_closed_forms(X, y, theta, p, d)
    H = 2 * A.T @ A / 100
    ev, V = torch.linalg.eigh(H)
    assert c["lambda_max"] == pytest.approx(float(ev[-1]), rel=1e-12)
    assert rise(p["rho"] * V[:, -1]) == pytest.approx(c["sam"], rel=1e-8)
    # ASAM: the rise along T times the top eigenvector of THT, at radius ρ_asam
    for key, t in (("asam_all", theta.abs() + p["eta"]),
                   ("asam_weights", torch.cat([theta[:4].abs() + p["eta"],
                                               torch.ones(1, dtype=X.dtype)]))):
        _, Vt = torch.linalg.eigh(t[:, None] * H * t)
        assert rise(p["asam_rho"] * t * Vt[:, -1]) == pytest.approx(c[key], rel=1e-8)
    assert c["asam_all"] != pytest.approx(c["asam_weights"], rel=1e-4)
    # the worst box vertex gives the ε-sharpness closed form
    best = max(rise(torch.tensor(s, dtype=X.dtype) * p["eps"] * (theta.abs() + 1))
               for s in itertools.product((-1.0, 1.0), repeat=5))
    assert 100 * best / (1 + c["loss"]) == pytest.approx(c["eps"], rel=1e-8)
    # each direction's width: the loss rises by tau there
    widths = np.sqrt(2 * p["tau"] / np.einsum("ki,ij,kj->k", d, H, d))
    assert rise(float(widths[0]) * d[0]) == pytest.approx(p["tau"], rel=1e-8)
    assert c["width"] == pytest.approx(float(np.median(widths)))
    # σ' solves ½ Σ H_ii (σ'² θ_i² + ε²) = Δ
    s2 = c["sigma_mag"] ** 2 * theta**2 + p["pacbayes_eps"] ** 2
    assert 0.5 * float(torch.diag(H) @ s2) == pytest.approx(p["pacbayes_target"])
