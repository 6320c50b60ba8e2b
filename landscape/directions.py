r"""Directions in weight space: random (filter-normalized), line, plane and PCA.

All directions are flat ``(n_params,)`` vectors over the model's parameters in
the order of a :class:`~landscape.params.ParamLayout`.  The maths are pure
functions of tensors (named points of a run file are read by
:func:`landscape.store.resolve_point`).

* Filter normalization (Li et al. 2018, "Visualizing the Loss Landscape of
  Neural Nets"): each filter (row along dim 0 of a weight tensor) of a Gaussian
  direction is rescaled to the norm of that filter in the centre weights,

  .. math:: d_{ij} \leftarrow d_{ij} \, \|\theta_{ij}\| / \|d_{ij}\|.

* Plane (Garipov et al. 2018): :math:`u = \theta_2 - \theta_1`,
  :math:`v = (\theta_3 - \theta_1) - \langle\cdot, \hat u\rangle \hat u`, both
  normalized; a point is :math:`\theta_1 + x \hat u + y \hat v`.

* PCA (Li et al. 2018): the top two principal directions of the recorded
  trajectory, mean-centred as in their reference code (sklearn's ``PCA``).

Example:
    >>> import torch
    >>> u, v, xy = plane_basis(torch.zeros(2), torch.tensor([2.0, 0]),
    ...                        torch.tensor([1.0, 3]))
    >>> xy.tolist()
    [[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]]
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError, arg, check_generator
from landscape.params import ParamKind, ParamLayout

_EPS = 1e-12
#: The fewest recorded points a PCA of a trajectory takes.
PCA_MIN_POINTS = 3


class Normalization(str, Enum):
    """How a random direction is scaled to the centre weights."""

    FILTER = "filter"  # per filter / output unit (Li et al. 2018)
    LAYER = "layer"  # per parameter tensor
    NONE = "none"  # raw Gaussian


def as_normalization(norm: Normalization | str, name: str = "norm") -> Normalization:
    """``norm`` as a :class:`Normalization`.

    Returns:
        The member.

    Raises:
        UserError: For another value, naming the keyword ``name`` and the choices.
    """
    try:
        return Normalization(norm)
    except ValueError:
        raise UserError(f"{arg(name)} must be one of {[n.value for n in Normalization]}, "
                        f"got {norm!r}") from None


# --------------------------------------------------------------------------- random
def normalize_direction(
    d: Tensor, center: Tensor, layout: ParamLayout, norm: Normalization | str,
    *, keep_bias_bn: bool = False,
) -> Tensor:
    r"""Scale a direction to the centre weights, tensor by tensor.

    Weight tensors are normalized per filter (``filter``: each row along dim 0)
    or as a whole (``layer``).  Bias and BN entries are zeroed unless
    ``keep_bias_bn``; kept, they are normalized as whole vectors.

    Args:
        d: ``(n_params,)`` direction.
        center: ``(n_params,)`` weights the direction is scaled to.
        layout: Names, shapes and kinds of the entries.
        norm: A :class:`Normalization`.
        keep_bias_bn: Keep bias and BN entries instead of zeroing them.

    Returns:
        The normalized ``(n_params,)`` direction (dtype of ``d``).

    Raises:
        UserError: If a vector has the wrong length or ``norm`` is not a normalization.

    Example:
        >>> lay = ParamLayout(("w",), ((2, 2),), (ParamKind.WEIGHT,))
        >>> normalize_direction(torch.tensor([1.0, 0, 0, 2]),
        ...                     torch.tensor([3.0, 4, 0, 1]), lay, "filter").tolist()
        [5.0, 0.0, 0.0, 1.0]
    """
    norm = as_normalization(norm)
    layout.check_vector(d, "direction")
    layout.check_vector(center, "centre weights")
    out = d.clone()
    for _, sl, shape, kind in layout.slices():
        part, ref = out[sl], center[sl].to(out.dtype)
        if kind is ParamKind.WEIGHT or (keep_bias_bn and kind is not ParamKind.BUFFER):
            if norm is Normalization.NONE:
                continue
            if norm is Normalization.FILTER and kind is ParamKind.WEIGHT and len(shape) > 1:
                p, r = part.view(shape[0], -1), ref.view(shape[0], -1)
                p.mul_(r.norm(dim=1, keepdim=True) / (p.norm(dim=1, keepdim=True) + _EPS))
            else:
                part.mul_(ref.norm() / (part.norm() + _EPS))
        else:
            part.zero_()
    return out


def random_direction(
    layout: ParamLayout, center: Tensor, *, norm: Normalization | str = "filter",
    keep_bias_bn: bool = False, generator: torch.Generator | None = None,
) -> Tensor:
    """A normalized Gaussian direction around ``center`` (float64).

    Args:
        layout: The parameter layout.
        center: ``(n_params,)`` centre weights.
        norm: A :class:`Normalization`.
        keep_bias_bn: Keep (and normalize) bias and BN entries.
        generator: Seeded ``torch.Generator`` (CPU) for reproducibility.

    Returns:
        ``(n_params,)`` float64 direction.

    Raises:
        UserTypeError: For a ``generator`` that is not a ``torch.Generator``.
    """
    check_generator(generator)
    g = torch.randn(layout.numel, generator=generator, dtype=torch.float32).double()
    return normalize_direction(g, center.double(), layout, norm, keep_bias_bn=keep_bias_bn)


# --------------------------------------------------------------------------- line / plane
def line_direction(a: Tensor, b: Tensor, *, distance: bool = False) -> tuple[Tensor, float]:
    r"""Direction of the line from ``a`` to ``b`` and the coordinate of ``b``.

    With ``distance=False`` the coordinate is the fraction ``t``
    (:math:`\theta(t) = a + t (b - a)`, ``b`` at 1); with ``distance=True`` the
    direction has unit norm and ``b`` sits at :math:`\|b - a\|`.

    Returns:
        ``(d, x_b)``: the float64 direction and ``b``'s coordinate.

    Raises:
        UserError: If the vectors differ in length or coincide for ``distance``.

    Example:
        >>> line_direction(torch.zeros(2), torch.tensor([3.0, 4.0]), distance=True)[1]
        5.0
    """
    if a.shape != b.shape:
        raise UserError(f"line endpoints have shapes {tuple(a.shape)} and {tuple(b.shape)}")
    d = b.double() - a.double()
    if not distance:
        return d, 1.0
    n = float(d.norm())
    if n == 0:
        raise UserError("the line's two points coincide; pick two different points")
    return d / n, n


def plane_basis(t1: Tensor, t2: Tensor, t3: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Orthonormal basis of the plane through three points and their coordinates.

    Returns:
        ``(u, v, xy)``: unit float64 directions and the ``(3, 2)`` coordinates of
        the three points (``t1`` at the origin).

    Raises:
        UserError: If the points are (nearly) collinear or of different lengths.
    """
    if not (t1.shape == t2.shape == t3.shape):
        raise UserError("the plane's three points have different lengths")
    o = t1.double()
    u = t2.double() - o
    nu = float(u.norm())
    if nu == 0:
        raise UserError("the plane's first two points coincide; pick distinct points")
    u = u / nu
    w = t3.double() - o
    v = w - (w @ u) * u
    nv = float(v.norm())
    if nv <= 1e-6 * max(nu, float(w.norm())):
        raise UserError("the plane's three points are collinear; pick another third point")
    v = v / nv
    xy = project(torch.stack([t1, t2, t3]), o, u, v)
    return u, v, xy


def project(points: Tensor, origin: Tensor, *dirs: Tensor) -> Tensor:
    """Coordinates of ``(n, n_params)`` points along orthonormal directions.

    Returns:
        ``(n, len(dirs))`` float64 coordinates.

    Raises:
        UserError: If ``points`` is not ``(n, n_params)`` or the origin or a
            direction has another length than the points.
    """
    if points.ndim != 2:
        raise UserError(f"points must be (n, n_params) rows, got shape {tuple(points.shape)}; "
                        "stack the points (one point: points[None])")
    n = points.shape[1]
    for what, v in (("origin", origin), *((f"direction {i}", d) for i, d in enumerate(dirs))):
        if v.ndim != 1 or v.numel() != n:
            has = f"{v.numel()} entries" if v.ndim == 1 else f"shape {tuple(v.shape)}"
            raise UserError(f"{what} has {has} but the points have {n}: project onto "
                            "vectors of the points' model")
    p = points.double() - origin.double()
    return torch.stack([p @ d.double() for d in dirs], dim=1)


def pca_directions(
    weights: Tensor, *, layout: ParamLayout | None = None, keep_bias_bn: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Top two principal directions of a trajectory, as Li et al. (2018) fit them.

    Li et al.'s reference code fits a PCA (which centres its rows) to the
    differences :math:`w_i - w_{\text{final}}` of the recorded points.  Centring
    cancels the final point, so with :math:`M` the recorded weights minus their
    mean, :math:`M = U S V^\top`, the directions are the first two rows of
    :math:`V^\top` and the explained-variance ratios are
    :math:`s_k^2 / \sum_j s_j^2`.  With ``keep_bias_bn=False`` the bias and BN
    entries of every row are zeroed before the fit (Li et al.'s
    ``ignore='biasbn'``), so the directions are the principal directions of the
    weight entries alone: orthonormal, zero on bias and BN entries, and the
    ratios are shares of the weight entries' variance.

    Args:
        weights: ``(n_rec, n_params)`` recorded weights; the last row is the final point.
        layout: The parameter layout; needed to find bias and BN entries.
        keep_bias_bn: Keep bias and BN entries; ``False`` zeroes them (needs ``layout``).

    Returns:
        ``(dirs, explained)``: ``(2, n_params)`` float64 unit directions (sign fixed
        so the largest-magnitude entry is positive) and the explained-variance
        ratios ``(2,)`` of the centred trajectory.

    Raises:
        UserError: If fewer than three points were recorded, the points do not
            move (in the kept entries), or ``weights`` does not fit ``layout``.
        ValueError: If ``keep_bias_bn`` is ``False`` without a ``layout``.

    Example:
        >>> w = torch.tensor([[-1.0, 0, 3], [3.0, 0, 3], [1.0, 1, 3], [1.0, -1, 3]])
        >>> dirs, ev = pca_directions(w)  # centred: (-2, 0), (2, 0), (0, 1), (0, -1)
        >>> dirs.abs().tolist(), ev.tolist()
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0.8, 0.2])
    """
    if weights.ndim != 2 or len(weights) < PCA_MIN_POINTS:
        raise UserError(f"PCA needs a trajectory of at least {PCA_MIN_POINTS} recorded "
                        "points; train with --record-every 1 (or --record-steps)")
    if not keep_bias_bn and layout is None:
        raise ValueError("keep_bias_bn=False needs the layout that marks bias/BN entries; "
                         "pass layout=ParamLayout.from_module(model)")
    m = weights.double().numpy(force=True).copy()  # (n_rec, n_params)
    if layout is not None:
        layout.check_vector(weights[0], "trajectory point")
        if not keep_bias_bn:
            m[:, ~layout.mask(ParamKind.WEIGHT).numpy()] = 0.0
    m -= m.mean(axis=0)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    var = s**2
    if not var.sum() > 0:
        raise UserError("the trajectory's recorded points coincide"
                        + ("" if keep_bias_bn else " in their weight entries")
                        + "; record a trajectory that moves (--record-every 1)")
    explained = var[:2] / var.sum()
    dirs = torch.from_numpy(vt[:2].copy())
    for i in range(len(dirs)):
        if dirs[i, dirs[i].abs().argmax()] < 0:
            dirs[i] = -dirs[i]
    return dirs, torch.from_numpy(explained)
