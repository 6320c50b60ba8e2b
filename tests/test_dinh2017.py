"""Dinh et al.'s rescaling (:mod:`landscape.sharpness.dinh2017`) keeps the function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape._errors import UserError
from landscape.params import ParamLayout
from landscape.sharpness.dinh2017 import dinh_rescale


def test_dinh_rescaling_keeps_the_function() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(),
                        nn.Linear(4, 3)).double()
    layout = ParamLayout.from_module(net)
    th = layout.read(net, dtype=torch.float64)
    x = torch.randn(20, 6, dtype=torch.float64)
    before = net(x)
    w = dinh_rescale(net, th, 10.0)
    layout.write(net, w)
    assert torch.allclose(net(x), before, rtol=0, atol=1e-12)
    ratio = (w / th).tolist()
    assert ratio[:35] == pytest.approx([10.0] * 35)  # first layer's weight and bias
    assert ratio[35:55] == pytest.approx([0.1] * 20)  # second layer's weight
    assert ratio[55:] == pytest.approx([1.0] * (len(ratio) - 55))  # the rest
    with pytest.raises(UserError, match="two linear layers"):
        dinh_rescale(nn.Linear(2, 1), torch.zeros(3), 2.0)
