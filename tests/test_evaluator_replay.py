"""An evaluator keeps a ``DataLoader`` in memory after its first pass and replays it:
the same numbers as reading the loader at every point, the dataset read once."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from landscape.evaluate import Evaluator, ReplayedStream


class Counted(Dataset):
    """Tensors that count how often a sample is read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.reads = x, y, 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads += 1
        return self.x[i], self.y[i]


def _case() -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(300, 5), torch.randint(0, 3, (300,))
    w0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    points = [w0 + 0.1 * k * torch.randn_like(w0) for k in range(4)]
    return net, x, y, points


def _profile(keep_bytes: int, bn: str) -> tuple[np.ndarray, int]:
    net, x, y, points = _case()
    train, test = Counted(x[:200], y[:200]), Counted(x[200:], y[200:])
    ev = Evaluator(net, DataLoader(train, batch_size=64), DataLoader(test, batch_size=64),
                   bn=bn, keep_bytes=keep_bytes)
    rows = []
    for w in points:
        ev.set_point(w)
        m = ev.metrics()
        rows.append([m["train"].loss, m["train"].acc, m["test"].loss, m["test"].acc])
    return np.array(rows), train.reads + test.reads


def test_a_replayed_loader_gives_the_same_numbers_and_is_read_once() -> None:
    for bn in ("recompute", "batch"):
        kept, reads_kept = _profile(2**20, bn)
        streamed, reads_streamed = _profile(0, bn)
        np.testing.assert_allclose(kept, streamed, rtol=1e-12, atol=0)
        # recompute: one BN pass + one metric pass of train per point, test once a point
        passes = 4 * (2 if bn == "recompute" else 1) * 200 + 4 * 100
        assert (reads_kept, reads_streamed) == (300, passes)


def test_a_stream_above_the_limit_or_stopped_early_is_not_kept() -> None:
    x, y = torch.randn(100, 5), torch.randint(0, 3, (100,))
    data = Counted(x, y)
    small = ReplayedStream(DataLoader(data, batch_size=10), limit=5 * 4 * 50 + 8 * 50)
    assert [len(b) for b, _ in small] == [10] * 10
    assert small.kept is None  # 100 samples of 28 bytes > the limit of 50 samples
    assert sum(len(b) for b, _ in small) == 100
    assert data.reads == 200
    enough = ReplayedStream(DataLoader(data, batch_size=10), limit=10**6)
    for i, _ in enumerate(enough):
        if i == 2:
            break  # a pass stopped early (e.g. bn_samples) keeps nothing
    assert enough.kept is None
    list(enough)
    assert enough.kept is not None
    assert torch.equal(torch.cat([b for b, _ in enough]), x)
    assert data.reads == 200 + 30 + 100


def test_random_surface_reads_a_loader_once_and_refuses_unknown_options() -> None:
    import pytest

    import landscape as ls

    net, x, y, _ = _case()
    data = Counted(x[:200], y[:200])
    s = ls.random_surface(net, DataLoader(data, batch_size=50), grid="-1:1:3")
    assert s.values["train_loss"].shape == (3, 3)
    assert data.reads == 200  # 9 points x 2 passes (BN recompute, metrics) streamed: 3600
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['batch_sise'\]"):
        ls.random_surface(net, (x, y), grid="-1:1:3", batch_sise=10)
