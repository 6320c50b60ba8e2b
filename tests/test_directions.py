"""Directions: normalization, line, plane, PCA and named points against exact references."""

from __future__ import annotations

import pytest
import torch

from landscape._errors import UserError
from landscape.directions import (
    Normalization,
    line_direction,
    normalize_direction,
    pca_directions,
    plane_basis,
    random_direction,
)
from landscape.params import ParamKind, ParamLayout

LAYOUT = ParamLayout(("w1", "b1", "bn", "w2"), ((3, 4), (3,), (3,), (2, 3)),
                     (ParamKind.WEIGHT, ParamKind.BIAS, ParamKind.BN, ParamKind.WEIGHT))


def _center() -> torch.Tensor:
    return torch.randn(LAYOUT.numel, generator=torch.Generator().manual_seed(1)).double()


@pytest.mark.parametrize("norm", list(Normalization), ids=lambda n: f"norm={n.value}")
def test_normalization_norms(norm: Normalization) -> None:
    c = _center()
    d = random_direction(LAYOUT, c, norm=norm, generator=torch.Generator().manual_seed(0))
    parts, ref = LAYOUT.unflatten(d), LAYOUT.unflatten(c)
    assert torch.equal(parts["b1"], torch.zeros(3))
    assert torch.equal(parts["bn"], torch.zeros(3))
    for n in ("w1", "w2"):
        if norm is Normalization.FILTER:
            torch.testing.assert_close(parts[n].norm(dim=1), ref[n].norm(dim=1))
        elif norm is Normalization.LAYER:
            torch.testing.assert_close(parts[n].norm(), ref[n].norm())
    if norm is Normalization.NONE:
        raw = torch.randn(LAYOUT.numel, generator=torch.Generator().manual_seed(0)).double()
        torch.testing.assert_close(parts["w1"].reshape(-1), raw[:12])


def test_keep_bias_bn_normalizes_whole_vectors() -> None:
    c = _center()
    d = random_direction(LAYOUT, c, keep_bias_bn=True,
                         generator=torch.Generator().manual_seed(0))
    parts, ref = LAYOUT.unflatten(d), LAYOUT.unflatten(c)
    for n in ("b1", "bn"):
        torch.testing.assert_close(parts[n].norm(), ref[n].norm())


def test_wrong_length_direction() -> None:
    with pytest.raises(UserError, match="another model"):
        normalize_direction(torch.ones(5), _center(), LAYOUT, "filter")


def test_line_direction() -> None:
    a, b = torch.randn(10).float(), torch.randn(10).float()
    d, xb = line_direction(a, b)
    assert xb == 1.0
    assert torch.equal((a.double() + xb * d).float(), b)
    u, dist = line_direction(a, b, distance=True)
    assert dist == pytest.approx(float((b.double() - a.double()).norm()))
    torch.testing.assert_close(u.norm(), torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(UserError, match="coincide"):
        line_direction(a, a, distance=True)


def test_plane_coordinates_reproduce_points() -> None:
    g = torch.Generator().manual_seed(3)
    pts = [torch.randn(50, generator=g) for _ in range(3)]
    u, v, xy = plane_basis(*pts)
    assert float(u @ v) == pytest.approx(0.0, abs=1e-12)
    assert float(u.norm()) == pytest.approx(1.0)
    assert float(v.norm()) == pytest.approx(1.0)
    for k in range(3):
        rec = pts[0].double() + xy[k, 0] * u + xy[k, 1] * v
        torch.testing.assert_close(rec, pts[k].double(), atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="collinear"):
        plane_basis(pts[0], pts[1], 2 * pts[1] - pts[0])


def test_pca_recovers_subspace() -> None:
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(30, 2, generator=g, dtype=torch.float64))
    coef = torch.randn(8, 2, generator=g, dtype=torch.float64) * torch.tensor([5.0, 1.0])
    final = torch.randn(30, generator=g, dtype=torch.float64)
    w = final + coef @ basis.T
    w[-1] = final
    dirs, explained = pca_directions(w)
    assert float(explained.sum()) == pytest.approx(1.0)
    assert explained[0] > explained[1]
    proj = basis @ (basis.T @ dirs.T)  # directions lie in the span
    torch.testing.assert_close(proj, dirs.T, atol=1e-10, rtol=0)
    with pytest.raises(UserError, match="at least 3"):
        pca_directions(w[:2])
