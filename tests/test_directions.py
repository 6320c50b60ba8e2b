"""Directions: normalization, line, plane, PCA and named points against exact references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import landscape as ls
from landscape._errors import UserError
from landscape.directions import (
    Normalization,
    line_direction,
    normalize_direction,
    pca_directions,
    plane_basis,
    project,
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


#: Zero-mean, mutually orthogonal coefficient patterns over 8 recorded points (norm sqrt 8).
_H8 = torch.tensor([[1.0, -1, 1, -1, 1, -1, 1, -1],
                    [1.0, 1, -1, -1, 1, 1, -1, -1],
                    [1.0, 1, 1, 1, -1, -1, -1, -1]], dtype=torch.float64)


def _unit_sign(d: torch.Tensor) -> torch.Tensor:
    """``d`` with its largest-magnitude entry made positive (the documented sign)."""
    return d if d[d.abs().argmax()] > 0 else -d


def _frame(k: int, support: torch.Tensor, seed: int) -> torch.Tensor:
    """``(k, numel)`` orthonormal rows that are zero outside ``support``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(int(support.sum()), k, generator=g,
                                       dtype=torch.float64))
    out = torch.zeros(k, LAYOUT.numel, dtype=torch.float64)
    out[:, support] = q.T
    return out


def test_pca_is_mean_centred_closed_form() -> None:
    """Rank-3 trajectory w_i = c + 3 h1_i e1 + 2 h2_i e2 + h3_i e3 (h zero-mean, orthogonal).

    Centred, its singular values are (3, 2, 1) sqrt(8) along e1, e2, e3, so the
    PCs are e1, e2 with ratios 9/14, 4/14.  The uncentred differences to the
    final point (3 h1 + 3, ...) have other singular vectors.
    """
    e = _frame(3, torch.ones(LAYOUT.numel, dtype=torch.bool), seed=4)
    c = _center()
    w = c + (torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)[:, None] * _H8).T @ e
    dirs, explained = pca_directions(w)
    torch.testing.assert_close(dirs[0], _unit_sign(e[0]), atol=1e-12, rtol=0)
    torch.testing.assert_close(dirs[1], _unit_sign(e[1]), atol=1e-12, rtol=0)
    torch.testing.assert_close(explained, torch.tensor([9 / 14, 4 / 14], dtype=torch.float64),
                               atol=1e-14, rtol=0)


def test_pca_matches_centred_svd_on_curved_trajectory() -> None:
    g = torch.Generator().manual_seed(5)
    t = torch.linspace(0, 1, 30, dtype=torch.float64)[:, None]
    a, b, c3 = (torch.randn(LAYOUT.numel, generator=g, dtype=torch.float64) for _ in range(3))
    w = a * t + b * t**2 + 0.3 * c3 * torch.sin(6 * t)  # (30, n) curved, rank 3
    dirs, explained = pca_directions(w.float())
    m = w.float().double()
    m = m - m.mean(dim=0)
    _, s, vt = torch.linalg.svd(m, full_matrices=False)
    for k in range(2):
        torch.testing.assert_close(dirs[k], _unit_sign(vt[k]), atol=1e-10, rtol=0)
    torch.testing.assert_close(explained, s[:2] ** 2 / (s**2).sum(), atol=1e-12, rtol=0)


def test_pca_zeroes_bias_bn_before_the_fit() -> None:
    """The largest variance lies along bias/BN entries (f); dropping them leaves e1, e2."""
    weight = LAYOUT.mask(ParamKind.WEIGHT)
    e = _frame(2, weight, seed=6)
    f = _frame(1, ~weight, seed=7)[0]
    w = _center() + 5 * _H8[0, :, None] * f + 3 * _H8[1, :, None] * e[0] \
        + 2 * _H8[2, :, None] * e[1]
    kept, ev_kept = pca_directions(w, layout=LAYOUT)
    torch.testing.assert_close(kept[0], _unit_sign(f), atol=1e-12, rtol=0)
    torch.testing.assert_close(ev_kept, torch.tensor([25 / 38, 9 / 38], dtype=torch.float64),
                               atol=1e-14, rtol=0)
    dirs, explained = pca_directions(w, layout=LAYOUT, keep_bias_bn=False)
    assert torch.equal(dirs[:, ~weight], torch.zeros(2, int((~weight).sum()), dtype=torch.float64))
    torch.testing.assert_close(dirs[0], _unit_sign(e[0]), atol=1e-12, rtol=0)
    torch.testing.assert_close(dirs[1], _unit_sign(e[1]), atol=1e-12, rtol=0)
    torch.testing.assert_close(explained, torch.tensor([9 / 13, 4 / 13], dtype=torch.float64),
                               atol=1e-14, rtol=0)
    with pytest.raises(ValueError, match="needs the layout"):
        pca_directions(w, keep_bias_bn=False)
    with pytest.raises(UserError, match="another model"):
        pca_directions(w[:, :-1], layout=LAYOUT)
    with pytest.raises(UserError, match="coincide in their weight entries"):
        pca_directions(_center() + _H8[0, :, None] * f, layout=LAYOUT, keep_bias_bn=False)


def test_unknown_normalization_names_the_choices() -> None:
    """norm='bogus' is one line naming the keyword and the valid choices (it was the
    Enum's "'bogus' is not a valid Normalization"), from the direction and the surface."""
    msg = r"^norm \(--norm\) must be one of \['filter', 'layer', 'none'\], got 'bogus'$"
    with pytest.raises(UserError, match=msg):
        random_direction(LAYOUT, _center(), norm="bogus")
    net = nn.Linear(3, 2)
    with pytest.raises(UserError, match=msg):
        ls.random_surface(net, (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), norm="bogus")


def test_project_checks_the_lengths() -> None:
    """A direction, origin or point set of another length is one line naming both
    lengths (it was torch's "size mismatch, got input (4), mat (4x10), vec (7)")."""
    g = torch.Generator().manual_seed(0)
    pts, o = torch.randn(4, 10, generator=g), torch.randn(10, generator=g)
    u = torch.zeros(10)
    u[3] = 1.0
    with pytest.raises(UserError, match=r"^direction 1 has 7 entries but the points have 10: "
                       r"project onto vectors of the points' model$"):
        project(pts, o, u, torch.randn(7))
    with pytest.raises(UserError, match=r"^origin has 9 entries but the points have 10"):
        project(pts, torch.zeros(9), u)
    with pytest.raises(UserError, match=r"^direction 0 has shape \(1, 10\) but the points"):
        project(pts, o, u[None])
    with pytest.raises(UserError, match=r"^points must be \(n, n_params\) rows, got shape "
                       r"\(10,\); stack the points \(one point: points\[None\]\)$"):
        project(pts[0], o, u)
    assert project(pts, o, u).tolist() == [[float(p[3] - o[3])] for p in pts.double()]
