"""``ls.save`` of curves, alignments, FGE ensembles and SWAG averages: the CLI's layout,
read back by the matching plot and by ``landscape info``."""

from __future__ import annotations

from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import landscape as ls
from landscape._errors import UserError
from landscape.cli import main


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 10, generator=g)
    y = torch.randint(0, 3, (300,), generator=g)
    return {"train": (x[:200], y[:200]), "test": (x[200:], y[200:])}


@pytest.fixture(scope="module")
def nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return _mlp(), _mlp()


def _line(ax: plt.Axes, label: str) -> np.ndarray:
    """The y-data of the line whose label starts with ``label``."""
    for line in ax.get_lines():
        if str(line.get_label()).startswith(label):
            return np.asarray(line.get_ydata(), dtype=np.float64)
    raise AssertionError(f"no line {label!r} in {[ln.get_label() for ln in ax.get_lines()]}")


def _info_ok(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


def test_save_connection(tmp_path: Path, data, nets, capsys) -> None:
    a, b = nets
    res = ls.connect(_mlp(), a, b, data["train"], data["test"], epochs=2, points=5,
                     batch_size=50)
    path = ls.save(res, tmp_path / "c.h5", "bz")
    fig, ax = ls.plot_curve_profiles(path, "bz", "train_loss")
    np.testing.assert_allclose(_line(ax, "bezier"), res.profile.metrics["train_loss"],
                               rtol=1e-6)
    np.testing.assert_allclose(_line(ax, "line"), res.line.metrics["train_loss"],
                               rtol=1e-6)
    plt.close(fig)
    curve, state = ls.store.read_curve(path, "bz")
    assert torch.equal(curve.bends, res.curve.bends.float())
    assert state.epoch == 2
    assert state.history["loss"] == pytest.approx(res.history["loss"])
    out = _info_ok(path, capsys)
    assert "bz: bezier with 1 bend(s), 2/2 epochs, complete; python:a -> python:b" in out
    assert ls.store.contents(path)["curves"] == ["bz"]
    # default name: the curve kind, as `landscape connect`
    ls.save(res, path)
    assert ls.store.curve_attrs(path, "bezier")["complete"]


def test_save_aligned_paths(tmp_path: Path, data, nets, capsys) -> None:
    a, b = nets
    res = ls.align_paths(a, b, data["train"], data["test"], repair=False, points=5)
    path = ls.save(res, tmp_path / "a.h5")
    fig, ax = ls.plot_alignment(path, "weights", "test_loss")
    np.testing.assert_allclose(_line(ax, "raw line"), res.profiles["line"].metrics[
        "test_loss"], rtol=1e-6)
    np.testing.assert_allclose(_line(ax, "aligned line"), res.profiles["aligned"].metrics[
        "test_loss"], rtol=1e-6)
    plt.close(fig)
    perms, _, _ = ls.store.read_alignment(path, "weights")
    assert set(perms) == set(res.alignment.perms)
    out = _info_ok(path, capsys)
    assert "weights: weights matching of 1 group(s), complete; python:a -> python:b" in out


def test_save_fge(tmp_path: Path, data, nets, capsys) -> None:
    res = ls.fge(_mlp(), ls.ParamLayout.from_module(nets[0]).read(nets[0]), data["train"],
                 data["test"], snapshots=2, cycle=2, batch_size=50)
    path = ls.save(res, tmp_path / "f.h5", "ens")
    fig, ax = ls.plot_fge(path, "ens", "nll")
    np.testing.assert_allclose(_line(ax, "FGE ensemble"), res.history["ensemble_nll"])
    np.testing.assert_allclose(_line(ax, "SWA of"), res.history["swa_nll"])
    plt.close(fig)
    out = _info_ok(path, capsys)
    assert "fge ens: 2/2 snapshots" in out
    assert "from start; complete" in out
    with h5py.File(path) as f:
        assert f["fge/ens/snapshots/weights"].shape == tuple(res.snapshots.shape)


def test_save_swag_bma(tmp_path: Path, data, capsys) -> None:
    torch.manual_seed(1)
    model = _mlp()
    w = ls.ParamLayout.from_module(model).read(model)
    iterates = torch.stack([w + 0.01 * i * torch.randn(w.numel()) for i in range(4)])
    ev = ls.Evaluator(model, data["train"], data["test"])
    bma = ls.swag_bma(ev, ls.swag_moments(iterates, rank=3), samples=3)
    path = ls.save(bma, tmp_path / "s.h5")
    fig, ax = ls.plot_swag_samples(path, "nll")
    np.testing.assert_allclose(_line(ax, "SWAG model average"), bma.nll)
    plt.close(fig)
    out = _info_ok(path, capsys)
    assert "evaluation (test, 3 samples" in out
    with pytest.raises(UserError, match="SwagBMA"):
        ls.save(bma, path, "mine")


def test_save_still_refuses_other_objects(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"Connection.*AlignedPaths.*FGEResult.*SwagBMA"):
        ls.save(object(), tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
