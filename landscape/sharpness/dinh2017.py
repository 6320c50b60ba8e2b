r"""Function-preserving rescaling of a ReLU network (Dinh, Pascanu, Bengio & Bengio,
"Sharp Minima Can Generalize For Deep Nets", ICML 2017).

With a positively homogeneous activation between two linear layers,
:math:`\mathrm{relu}(\alpha z) = \alpha\,\mathrm{relu}(z)` for :math:`\alpha > 0`,
so multiplying the first layer (weight and bias) by :math:`\alpha` and the
second layer's weight by :math:`1/\alpha` leaves the function unchanged while
the Hessian, and every measure that is not reparametrization-invariant, moves
(``reference/sharpness-measures.md`` §7).  The ``controls`` protocol uses it
as its negative control.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from landscape._errors import UserError
from landscape.params import ParamLayout


def dinh_rescale(model: nn.Module, theta: Tensor, alpha: float) -> Tensor:
    r"""Dinh et al.'s layer-wise :math:`\alpha`-rescaling of a ReLU network's weights.

    The first ``nn.Linear`` layer's weight and bias are multiplied by
    :math:`\alpha` and the second linear layer's weight by :math:`1/\alpha`.
    With a positively homogeneous activation (ReLU) between them and no
    normalization layer, :math:`\mathrm{relu}(\alpha z) = \alpha\,\mathrm{relu}(z)`
    for :math:`\alpha > 0`, so the network computes the same function.

    Args:
        model: The network (for its layout; not modified).
        theta: ``(n,)`` its weights.
        alpha: :math:`\alpha > 0`.

    Returns:
        ``(n,)`` the rescaled weights (``theta``'s dtype).

    Raises:
        UserError: If ``alpha`` is not positive or the model has fewer than two
            linear layers.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> th = torch.ones(13, dtype=torch.float64)
        >>> dinh_rescale(net, th, 10.0)[[0, 6, 9, 12]].tolist()  # W1, b1, W2, b2
        [10.0, 10.0, 0.1, 1.0]
    """
    if not alpha > 0:
        raise UserError(f"the rescaling factor must be > 0, got {alpha}")
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if len(linear) < 2:
        raise UserError(f"the reparametrization control needs two linear layers with a "
                        f"ReLU between them; {type(model).__name__} has {len(linear)}")
    first, second = linear[:2]
    s = torch.ones_like(theta)
    for name, sl, _, _ in ParamLayout.from_module(model).slices():
        if name in (f"{first}.weight", f"{first}.bias"):
            s[sl] = alpha
        elif name == f"{second}.weight":
            s[sl] = 1.0 / alpha
    return theta * s


__all__ = ["dinh_rescale"]
