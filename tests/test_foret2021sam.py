"""Worst-case L2 sharpness (:mod:`landscape.sharpness.foret2021sam`) against closed
forms on quadratics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cases import (
    F64,
    H_DIAG,
    W_STAR,
    quadratic,
    random_spd,
)

from landscape._errors import UserTypeError
from landscape.sharpness import (
    adaptive_sharpness,
    epsilon_sharpness,
    make_hvp,
    sam_one_step,
    sam_sharpness,
)
from landscape.sharpness.oracles import ball_max_rise


def test_sam_at_minimum_is_rho2_lambda_max_over_2() -> None:
    r = sam_sharpness(quadratic(H_DIAG, W_STAR), W_STAR, rho=0.1)
    assert r.random_start
    assert r.value == pytest.approx(0.02, rel=1e-6)
    H, eigs = random_spd(30, seed=10)
    r = sam_sharpness(quadratic(H, torch.zeros(30, dtype=F64)), torch.zeros(30, dtype=F64),
                      rho=0.2, steps=200)
    assert r.value == pytest.approx(0.2**2 * eigs[-1] / 2, rel=1e-3)


def test_sam_one_step_and_multi_step_off_minimum() -> None:
    f = quadratic(H_DIAG, W_STAR)
    w = W_STAR + 0.05
    exact = ball_max_rise(H_DIAG.numpy(), np.full(3, 0.05), 0.1)
    assert exact == pytest.approx(0.040264, abs=1e-6)  # the reference's oracle
    one = sam_one_step(f, w, rho=0.1)
    assert one == pytest.approx(0.039706, abs=1e-6)
    multi = sam_sharpness(f, w, rho=0.1, steps=30)
    assert one <= multi.value
    assert multi.one_step == one
    assert multi.value == pytest.approx(exact, rel=1e-6)


def test_sam_value_when_the_one_step_point_overshoots() -> None:
    """L(x) = x - 4x^2 from 0, rho = 1/2: the step x = 1/2 lands on L = -1/2 < L(0).

    The ball's maximum is at x = 1/8 (inside), max L = 1/16; with no ascent
    steps the best point seen is x = 0 itself, so the value is 0, not -1/2.
    """
    f = lambda w: (w - 4 * w * w).sum()  # noqa: E731
    x0 = torch.zeros(1, dtype=F64)
    none = sam_sharpness(f, x0, rho=0.5, steps=0)
    assert (none.one_step, none.value, none.max_loss) == (-0.5, 0.0, 0.0)
    full = sam_sharpness(f, x0, rho=0.5, steps=20)
    assert full.one_step == -0.5
    assert full.value == 1 / 16  # max_{|x| <= 1/2} x - 4x^2, at x = 1/8


def test_sam_and_asam_value_at_a_local_maximum_is_zero() -> None:
    """At a strict local maximum the ball's maximum is L(θ): S = 0 exactly.

    The random start lands on L = -rho^2 and steps of 0.3 rho only approach 0,
    so every iterate lies below L(θ); the value must still be 0.
    """
    x0 = torch.zeros(1, dtype=F64)
    r = sam_sharpness(lambda w: -(w * w).sum(), x0, rho=0.5, step_size=0.3)
    assert r.random_start
    assert r.one_step == -0.25
    assert (r.value, r.max_loss) == (0.0, r.loss)
    one = torch.ones(1, dtype=F64)
    a = adaptive_sharpness(lambda w: -((w - 1) ** 2).sum(), one, rho=0.5, eta=0.0,
                           step_size=0.3)
    assert a.one_step == -0.25  # T = |1| + 0: the same ball
    assert (a.value, a.max_loss) == (0.0, a.loss)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_asam_at_a_least_squares_fit_does_not_depend_on_gradient_rounding(seed: int) -> None:
    # at an exact minimum the computed gradient is rounding noise (~1e-15), whose
    # direction differs between CPUs; the ascent used to start along it, and 20 damped
    # steps from an unlucky start stopped 24 % short (seed 1 on one machine)
    from landscape.sharpness.kwon2021asam import asam_scale
    from landscape.sharpness.oracles import linear_regression

    X, y, theta = linear_regression(seed, 200)
    A = torch.cat([X, torch.ones(len(y), 1, dtype=F64)], 1)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return ((A @ w[:, None] - y) ** 2).mean()

    noise = torch.randn(5, generator=torch.Generator().manual_seed(seed), dtype=F64)

    def other_rounding(w: torch.Tensor) -> torch.Tensor:  # the gradient moved by ~1e-15
        return loss(w) + 1e-15 * (w @ noise)

    s = asam_scale(theta, 0.01, None)
    M = s[:, None] * (2 * A.T @ A / len(y)) * s[None, :]
    closed = 0.5**2 * float(torch.linalg.eigvalsh(M)[-1]) / 2
    a = adaptive_sharpness(loss, theta, 0.5, eta=0.01)
    b = adaptive_sharpness(other_rounding, theta, 0.5, eta=0.01)
    assert a.random_start
    assert b.random_start
    assert a.value == pytest.approx(closed, rel=1e-3)
    assert b.value == pytest.approx(a.value, rel=1e-9)


def test_a_loss_that_is_not_a_scalar_tensor_of_theta_is_a_type_error() -> None:
    """f returning a Python float (.item()), a vector or a detached tensor is one line
    saying f must return a scalar tensor of theta; a float was autograd's "'float' object
    is not iterable" from deep inside.  The same f as a tensor gives the closed form."""
    f = quadratic(H_DIAG, W_STAR)
    w = W_STAR + 0.1
    for bad, got in ((lambda t: f(t).item(), " tensor of theta, got float; compute it with "
                      "torch operations on theta"),
                     (lambda t: (t - W_STAR) ** 2, r"( tensor of theta)?, got a tensor of "
                      r"shape \(3,\)"),
                     (lambda t: f(t).detach(), r" tensor of theta, got a tensor without a "
                      r"graph \(detached")):
        for measure in (lambda g: sam_sharpness(g, w, rho=0.1),
                        lambda g: epsilon_sharpness(g, w),
                        lambda g: make_hvp(g, w)):
            with pytest.raises(UserTypeError, match=r"^f must return a scalar" + got):
                measure(bad)
    assert isinstance(UserTypeError("x"), TypeError)
    r = sam_sharpness(f, W_STAR, rho=0.1)
    assert r.value == pytest.approx(0.02, rel=1e-6)
