"""One-line errors of activation matching, align's and merge's argument checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import landscape as ls
from landscape._errors import UserError


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(300, 10, generator=g), torch.randint(0, 3, (300,), generator=g)


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_activation_matching_refuses_non_finite_weights_of_either_network() -> None:
    a, b = _mlp(0), _mlp(1)
    with torch.no_grad():
        b[2].weight[1, 4] = float("nan")
    with pytest.raises(UserError, match=r"^2\.weight of network B holds NaN or inf") as e:
        ls.align(a, b, _data(), method="activations")
    _one_line(e)
    with pytest.raises(UserError, match=r"^2\.weight of network A holds NaN or inf"):
        ls.align(b, a, _data(), method="activations")
    # weight matching keeps its message (the check they now share)
    with pytest.raises(UserError, match=r"^2\.weight of network B holds NaN or inf"):
        ls.align(a, b)


def test_activation_matching_of_inputs_the_model_cannot_take_is_one_line() -> None:
    x, y = _data()
    with pytest.raises(UserError, match=r"cannot take inputs of shape \(300, 7\)") as e:
        ls.align(_mlp(0), _mlp(1), (x[:, :7], y), method="activations")
    _one_line(e)


@pytest.mark.parametrize("samples", [0, -5])
def test_align_and_merge_refuse_fewer_than_one_sample(samples: int) -> None:
    for call in (lambda: ls.align(_mlp(0), _mlp(1), _data(), method="activations",
                                  samples=samples),
                 lambda: ls.merge([_mlp(0), _mlp(1)], _data(), method="activations",
                                  samples=samples)):
        with pytest.raises(UserError, match=r"samples \(--samples\) must be >= 1") as e:
            call()
        assert "no samples" not in _one_line(e)
    with pytest.raises(TypeError, match=r"samples \(--samples\) must be an integer"):
        ls.align(_mlp(0), _mlp(1), _data(), method="activations", samples=2.5)


@pytest.mark.parametrize(("bad", "match"), [(0, "max_rounds must be >= 1"),
                                             (-1, "max_rounds must be >= 1"),
                                             (2.5, "max_rounds must be an integer")])
def test_merge_refuses_max_rounds_below_one_or_not_an_integer(bad: object, match: str
                                                              ) -> None:
    with pytest.raises(UserError, match=match) as e:
        ls.merge([_mlp(0), _mlp(1)], max_rounds=bad)
    _one_line(e)


def test_valid_alignments_are_unchanged() -> None:
    a, b = _mlp(0), _mlp(1)
    x, y = _data()
    al = ls.align(a, b, (x, y), method="activations", samples=200)
    perm = al.perms[next(iter(al.perms))]
    assert sorted(perm.tolist()) == list(range(16))
    # the aligned B computes B's function with A's unit order
    torch.testing.assert_close(al.model(x), b(x))
    # permuting B by a known permutation is undone by activation matching
    p = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    c = _mlp(0)
    with torch.no_grad():
        c[0].weight.copy_(a[0].weight[p])
        c[0].bias.copy_(a[0].bias[p])
        c[2].weight.copy_(a[2].weight[:, p])
    got = ls.align(a, c, (x, y), method="activations", samples=None)
    assert got.perms[next(iter(got.perms))].tolist() == torch.argsort(p).tolist()
    m = ls.merge([a, c], (x, y), max_rounds=1)
    torch.testing.assert_close(m.model(x), a(x))
