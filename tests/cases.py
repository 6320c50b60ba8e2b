"""Named small cases the tests share (in the manner of curvlinops' ``test/cases.py``).

Cases are small factories that test modules parametrize over or call by name, instead
of building the same tiny net or quadratic by copy (the model factories draw from
torch's global generator, so the caller seeds it; the others take a seed):

* Quadratics with a known Hessian: :func:`quadratic` of ``(H, w*)``, the reference
  :data:`H_DIAG` and :data:`W_STAR`, and :func:`random_spd` for more with known spectra.
* :data:`MODELS`: tiny networks, ``name -> (factory, input shape)`` (an MLP and a
  BatchNorm CNN); :func:`relu_net` is a bias-free ReLU net with random data and
  :func:`quadratic_regression` a linear model at its least-squares minimum (an
  exact quadratic with a known Hessian).
* :data:`COMMON` and :data:`FAST`: measure settings small enough for the tiny run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from landscape.data import TensorData
from landscape.sharpness import MeasureConfig
from landscape.sharpness.oracles import quadratic  # noqa: F401  (the tests' quadratic)

F64 = torch.float64

H_DIAG = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=F64))

W_STAR = torch.tensor([1.0, -2.0, 0.5], dtype=F64)


def random_spd(n: int, seed: int, *, low: float = 0.1, high: float = 10.0,
               negative: int = 0) -> tuple[Tensor, np.ndarray]:
    """Q diag(eigs) Q^T with log-uniform eigenvalues (``negative`` of them < 0)."""
    rng = np.random.default_rng(seed)
    eigs = np.exp(rng.uniform(np.log(low), np.log(high), n))
    eigs[:negative] *= -0.3
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return torch.from_numpy(Q @ np.diag(eigs) @ Q.T), np.sort(eigs)


def relu_net(d_in: int = 4, hidden: int = 6, classes: int = 3, n: int = 40,
             seed: int = 0) -> tuple[nn.Module, TensorData]:
    """A bias-free one-hidden-layer ReLU net (float64) and random data."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d_in, hidden, bias=False), nn.ReLU(),
                        nn.Linear(hidden, classes, bias=False)).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=g)
    return net, TensorData("random", x, y, x[:4], y[:4], classes)


def quadratic_regression() -> tuple[nn.Module, Tensor, Tensor, np.ndarray]:
    """A linear model (with bias) at its least-squares minimum: MSE is an exact quadratic."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(60, 3, generator=g, dtype=F64)
    y = x @ torch.tensor([[0.5], [-1.0], [2.0]], dtype=F64) + 0.3 + 0.1 * torch.randn(
        60, 1, generator=g, dtype=F64)
    X = torch.cat([x, torch.ones(60, 1, dtype=F64)], 1)
    sol = torch.linalg.lstsq(X, y).solution.ravel()
    net = nn.Linear(3, 1).double()
    with torch.no_grad():
        net.weight.copy_(sol[:3][None])
        net.bias.copy_(sol[3:])
    H = (2 * X.T @ X / 60).numpy()  # Hessian of the MSE in (weight, bias)
    return net, x, y, H


def tiny_mlp() -> nn.Module:
    """A ReLU MLP on ``(3, 2, 2)`` inputs, three classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16),
                         nn.ReLU(), nn.Linear(16, 3))


def tiny_bn_cnn() -> nn.Module:
    """Two conv-BN-ReLU-pool stages on ``(1, 8, 8)`` inputs and a linear head, three classes."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 3))


#: Tiny networks by name: ``(factory, input shape)``.
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (tiny_mlp, (3, 2, 2)), "bn_cnn": (tiny_bn_cnn, (1, 8, 8))}

#: Measure settings small enough for the tiny run file.
COMMON = MeasureConfig(samples=200, device="cpu")
FAST = {"top_k": 2, "trace_samples": 10, "slq_steps": 10, "eps_maxiter": 3,
        "ascent_steps": 3, "avg_samples": 4, "pacbayes_samples": 2,
        "pacbayes_metric": "loss", "pacbayes_target": 0.05, "directions": 4,
        "width_tol": 1e-2, "smallest": False}
