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

from landscape.sharpness import (
    adaptive_sharpness,
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
