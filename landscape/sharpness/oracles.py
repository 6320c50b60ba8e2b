r"""Closed forms of the measures where the geometry is known: quadratics.

Around a minimum :math:`\theta^*` of :math:`L(\theta) = c + \frac12
\Delta^\top H \Delta`, :math:`\Delta = \theta - \theta^*`, every measure has a
closed form (``reference/sharpness-measures.md`` §1–§6 and the test oracles
of §9); the tests and the ``controls`` protocol's known-geometry control
compare the measures with these.

=================================  ===============================================
function                           closed form
=================================  ===============================================
:func:`box_vertex_rise`            :math:`\max_{v \in \text{box vertices}} \frac12 v^\top H v`
                                   (a convex quadratic's maximum over a box)
:func:`ball_max_rise`              :math:`\max_{\|d\|\le\rho} L(x+d) - L(x)`
                                   off the minimum (secular equation)
:func:`sam_rise`                   :math:`\rho^2 \lambda_{\max}(H)/2`
:func:`asam_rise`                  :math:`\rho^2 \lambda_{\max}(THT)/2`
:func:`average_rise`               :math:`\sigma^2 \operatorname{tr} H / 2`
:func:`pacbayes_sigma_rise`        :math:`\sqrt{2\Delta/\operatorname{tr} H}`
:func:`pacbayes_sigma_mag_rise`    :math:`\sigma'` solving
                                   :math:`\frac12 \sum_i H_{ii}(\sigma'^2\theta_i^2
                                   + \varepsilon^2) = \Delta`
:func:`ray_widths`                 :math:`\sqrt{2\tau / d^\top H d}`
=================================  ===============================================

:func:`linear_regression` draws the known-geometry problem of the ``controls``
protocol (linear least squares, :math:`H = 2A^\top A/N`, :math:`A = [X, 1]`)
and :func:`geometry_closed_forms` gives every measure's value on it.

Example:
    >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    >>> sam_rise(H.numpy(), 0.1)  # ρ²λ_max/2
    0.020000000000000004
    >>> round(average_rise(H.numpy(), 0.1), 6)  # σ² tr H / 2
    0.02625
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor


def quadratic(H: Tensor, w_star: Tensor, c: float = 0.0) -> Callable[[Tensor], Tensor]:
    r"""The quadratic :math:`L(w) = c + \frac12 (w - w^*)^\top H (w - w^*)`.

    Args:
        H: ``(n, n)`` its Hessian.
        w_star: ``(n,)`` its critical point.
        c: Its value there.

    Returns:
        ``L`` as a function of a ``(n,)`` tensor (a 0-d tensor, differentiable).

    Example:
        >>> f = quadratic(torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> float(f(torch.tensor([1.0, 1.0], dtype=torch.float64)))
        1.0
    """
    def f(w: Tensor) -> Tensor:
        d = w - w_star
        return c + 0.5 * d @ (H @ d)
    return f


def box_vertex_rise(H: np.ndarray, box: np.ndarray) -> float:
    r"""The largest :math:`\frac12 v^\top H v` over the vertices :math:`v_i = \pm b_i`.

    At a minimum of a convex quadratic this is the exact maximum rise over the box
    :math:`|\Delta_i| \le b_i` (Keskar et al.'s box with :math:`b = \varepsilon(|\theta|
    + 1)`); the :math:`2^n` vertices are enumerated.

    Args:
        H: ``(n, n)`` positive semi-definite Hessian.
        box: ``(n,)`` the half-widths :math:`b`.

    Returns:
        The maximum rise.
    """
    return max(0.5 * v @ H @ v for v in (np.array(s) * box for s in
                                         itertools.product((-1.0, 1.0), repeat=box.size)))


def ball_max_rise(H: np.ndarray, x: np.ndarray, rho: float) -> float:
    r""":math:`\max_{\|d\|_2 \le \rho} \frac12 (x+d)^\top H (x+d) - \frac12 x^\top H x`
    for SPD ``H`` off the minimum (``x`` is :math:`\theta - \theta^*`), solved
    through the secular equation :math:`\|(\mu - H)^{-1} H x\| = \rho`.

    Args:
        H: ``(n, n)`` SPD Hessian.
        x: ``(n,)`` the offset from the minimum.
        rho: The ball's radius.

    Returns:
        The exact worst-case rise (SAM's sharpness at ``x``).
    """
    from scipy.optimize import brentq

    lam, Q = np.linalg.eigh(H)
    c = Q.T @ (H @ x)  # H x in the eigenbasis

    def norm_minus_rho(mu: float) -> float:
        return float(np.linalg.norm(c / (mu - lam)) - rho)

    lo = lam[-1] * (1 + 1e-12) + 1e-15
    hi = lam[-1] + np.linalg.norm(c) / rho + 1.0
    mu = brentq(norm_minus_rho, lo, hi, xtol=1e-15, rtol=1e-15)
    d = Q @ (c / (mu - lam))
    return float(0.5 * (x + d) @ H @ (x + d) - 0.5 * x @ H @ x)


def sam_rise(H: np.ndarray, rho: float) -> float:
    r"""SAM's worst-case rise at the minimum: :math:`\rho^2 \lambda_{\max}(H)/2`.

    Returns:
        The rise.
    """
    return rho ** 2 * float(np.linalg.eigvalsh(H)[-1]) / 2


def asam_rise(H: np.ndarray, t: np.ndarray, rho: float) -> float:
    r"""ASAM's rise at the minimum: :math:`\rho^2 \lambda_{\max}(THT)/2`.

    Args:
        H: ``(n, n)`` the Hessian.
        t: ``(n,)`` the diagonal of :math:`T`.
        rho: The radius.

    Returns:
        The rise.
    """
    return rho ** 2 * float(np.linalg.eigvalsh(t[:, None] * H * t)[-1]) / 2


def average_rise(H: np.ndarray, sigma: float) -> float:
    r"""The mean rise under :math:`\mathcal N(0, \sigma^2 I)` noise:
    :math:`\sigma^2 \operatorname{tr} H/2`.

    Returns:
        The rise.
    """
    return sigma ** 2 * float(np.trace(H)) / 2


def pacbayes_sigma_rise(H: np.ndarray, target: float) -> float:
    r"""PAC-Bayes σ for a loss rise :math:`\Delta`: :math:`\sqrt{2\Delta/\operatorname{tr} H}`.

    Returns:
        σ.
    """
    return math.sqrt(2 * target / float(np.trace(H)))


def pacbayes_sigma_mag_rise(H: np.ndarray, theta: np.ndarray, target: float,
                            eps: float) -> float:
    r"""Magnitude-aware σ′ solving :math:`\frac12\sum_i H_{ii}(\sigma'^2\theta_i^2 +
    \varepsilon^2) = \Delta`.

    Returns:
        σ′.
    """
    return math.sqrt((2 * target - eps ** 2 * float(np.trace(H)))
                     / float(np.diag(H) @ theta**2))


def ray_widths(H: np.ndarray, directions: np.ndarray, tau: float) -> np.ndarray:
    r"""Widths along unit directions: the loss rises by :math:`\tau` at
    :math:`\sqrt{2\tau / d^\top H d}`.

    Args:
        H: ``(n, n)`` the Hessian.
        directions: ``(K, n)`` unit directions.
        tau: The rise.

    Returns:
        ``(K,)`` the widths.
    """
    return np.sqrt(2 * tau / np.einsum("ki,ij,kj->k", directions, H, directions))


# =========================================================================== least squares
def linear_regression(seed: int, n: int = 200) -> tuple[Tensor, Tensor, Tensor]:
    r"""The known-geometry problem: 4 inputs, a bias, squared loss, least squares.

    :math:`x_i \sim \mathcal N(0.5, \mathrm{diag}(2, 1, 0.5, 0.25)^2)`,
    :math:`y_i = x_i^\top (1, -2, 0.5, 3) + 0.3 + 0.1\,\varepsilon_i`, all in
    float64; the solution is the least-squares fit of weight and bias.

    Returns:
        ``X`` ``(n, 4)``, ``y`` ``(n, 1)`` and the solution ``θ = (w, b)`` ``(5,)``.
    """
    g = torch.Generator().manual_seed(int(seed))
    f64 = torch.float64
    X = torch.randn(n, 4, generator=g, dtype=f64) * torch.tensor([2.0, 1.0, 0.5, 0.25],
                                                                 dtype=f64) + 0.5
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=f64) + 0.3
    y = (y + 0.1 * torch.randn(n, generator=g, dtype=f64))[:, None]
    A = torch.cat([X, torch.ones(n, 1, dtype=f64)], 1)
    theta = torch.linalg.lstsq(A, y).solution[:, 0]
    return X, y, theta


def geometry_closed_forms(X: Tensor, y: Tensor, theta: Tensor, p: Mapping[str, Any],
                          directions: Tensor) -> dict[str, float]:
    r"""Every measure's closed form for :math:`L = \frac1N\|A\theta - y\|^2`.

    The loss is exactly :math:`c + \frac12 \Delta^\top H \Delta` around the
    least-squares :math:`\theta` (``reference/sharpness-measures.md`` §9).

    Args:
        X: ``(N, 4)`` inputs.
        y: ``(N, 1)`` targets.
        theta: ``(5,)`` the least-squares weights and bias.
        p: The measures' parameters (``rho``, ``asam_rho``, ``eta``, ``eps``,
            ``sigma``, ``pacbayes_target``, ``pacbayes_eps``, ``tau``).  ASAM's
            closed form is given for both ``asam_normalize`` choices:
            ``asam_all`` (T = |θ| + η on weight and bias) and ``asam_weights``
            (T = |w| + η on the weight, 1 on the bias).
        directions: ``(K, 5)`` the width measure's unit directions.

    Returns:
        Values by row key.
    """
    A = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1).numpy()
    th = theta.numpy()
    N = len(A)
    H = 2 * A.T @ A / N
    c = float(np.mean((A @ th - y.numpy()[:, 0]) ** 2))
    ev = np.linalg.eigvalsh(H)
    vertex = box_vertex_rise(H, p["eps"] * (np.abs(th) + 1))
    T = {"all": np.abs(th) + p["eta"], "weights": np.r_[np.abs(th[:-1]) + p["eta"], 1.0]}
    widths = ray_widths(H, directions.numpy(), p["tau"])
    return {
        "lambda_max": float(ev[-1]), "lambda_min": float(ev[0]),
        "trace": float(np.trace(H)),
        "block_lambda_max_weight": float(np.linalg.eigvalsh(H[:-1, :-1])[-1]),
        "block_trace_weight": float(np.trace(H[:-1, :-1])),
        "block_bias": float(H[-1, -1]),
        "eps": 100 * vertex / (1 + c),
        "sam": sam_rise(H, p["rho"]),
        **{f"asam_{k}": asam_rise(H, t, p["asam_rho"]) for k, t in T.items()},
        "avg": average_rise(H, p["sigma"]),
        "sigma": pacbayes_sigma_rise(H, p["pacbayes_target"]),
        "sigma_mag": pacbayes_sigma_mag_rise(H, th, p["pacbayes_target"],
                                             p["pacbayes_eps"]),
        "width": float(np.median(widths)),
        "loss": c,
    }


__all__ = ["asam_rise", "average_rise", "ball_max_rise", "box_vertex_rise",
           "geometry_closed_forms", "linear_regression", "pacbayes_sigma_mag_rise",
           "pacbayes_sigma_rise", "quadratic", "ray_widths", "sam_rise"]
