"""``ls.save`` of curves, alignments, FGE ensembles and SWAG averages: the CLI's layout,
read back by the matching plot, by ``landscape info`` and by ``ls.load``."""

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


@pytest.fixture(scope="module")
def connection(data, nets) -> ls.Connection:
    a, b = nets
    return ls.connect(_mlp(), a, b, data["train"], data["test"], epochs=2, points=5,
                      batch_size=50)


@pytest.fixture(scope="module")
def aligned(data, nets) -> ls.AlignedPaths:
    a, b = nets
    return ls.align_paths(a, b, data["train"], data["test"], repair=False, points=5)


@pytest.fixture(scope="module")
def fge_result(data, nets) -> ls.FGEResult:
    return ls.fge(_mlp(), ls.ParamLayout.from_module(nets[0]).read(nets[0]), data["train"],
                  data["test"], snapshots=2, cycle=2, batch_size=50)


@pytest.fixture(scope="module")
def bma(data) -> ls.SwagBMA:
    torch.manual_seed(1)
    model = _mlp()
    w = ls.ParamLayout.from_module(model).read(model)
    iterates = torch.stack([w + 0.01 * i * torch.randn(w.numel()) for i in range(4)])
    ev = ls.Evaluator(model, data["train"], data["test"])
    return ls.swag_bma(ev, ls.swag_moments(iterates, rank=3), samples=3)


def _line(ax: plt.Axes, label: str) -> np.ndarray:
    """The y-data of the line whose label starts with ``label``."""
    for line in ax.get_lines():
        if str(line.get_label()).startswith(label):
            return np.asarray(line.get_ydata(), dtype=np.float64)
    raise AssertionError(f"no line {label!r} in {[ln.get_label() for ln in ax.get_lines()]}")


def _info_ok(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


def test_save_connection(tmp_path: Path, connection, capsys) -> None:
    res = connection
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


def test_save_aligned_paths(tmp_path: Path, aligned, capsys) -> None:
    res = aligned
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


def test_save_fge(tmp_path: Path, fge_result, capsys) -> None:
    res = fge_result
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


def test_save_swag_bma(tmp_path: Path, bma, capsys) -> None:
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


# --------------------------------------------------------------------------- ls.load
def _same_profile(got: ls.CurveProfile, want: ls.CurveProfile) -> None:
    np.testing.assert_array_equal(got.t, want.t)
    assert set(got.metrics) == set(want.metrics)
    for k, v in want.metrics.items():
        np.testing.assert_array_equal(got.metrics[k], v, err_msg=k)
    assert (got.l2, got.bn) == (want.l2, want.bn)


def _same_barriers(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in want:
        assert list(got[k]) == list(want[k])
        np.testing.assert_array_equal(list(got[k].values()), list(want[k].values()))


def test_load_gives_back_a_saved_connection(tmp_path: Path, connection) -> None:
    res = connection
    path = ls.save(res, tmp_path / "c.h5", "bz")
    got = ls.load(path, "curves/bz")
    assert isinstance(got, ls.Connection)
    assert got.curve.kind == res.curve.kind
    for what in ("start", "end", "bends"):
        assert torch.equal(getattr(got.curve, what), getattr(res.curve, what).float()), what
    _same_profile(got.profile, res.profile)
    _same_profile(got.line, res.line)
    _same_barriers(got.barriers, res.barriers)
    assert set(got.history) == set(res.history)
    for k, v in res.history.items():
        np.testing.assert_array_equal(got.history[k], v, err_msg=k)


def test_load_gives_back_a_saved_alignment(tmp_path: Path, aligned) -> None:
    res = aligned
    path = ls.save(res, tmp_path / "a.h5")
    got = ls.load(path, "alignments/weights")
    assert isinstance(got, ls.AlignedPaths)
    al = got.alignment
    assert al.model is None  # no module given: the file cannot rebuild one
    assert set(al.perms) == set(res.alignment.perms)
    for g, p in res.alignment.perms.items():
        assert torch.equal(al.perms[g], p.cpu()), g
    assert (al.spec.sizes, al.spec.axes) == (res.alignment.spec.sizes,
                                             res.alignment.spec.axes)
    assert (al.method, al.sweeps) == (res.alignment.method, res.alignment.sweeps)
    assert set(got.profiles) == set(res.profiles) == {"line", "aligned"}
    for k in res.profiles:
        _same_profile(got.profiles[k], res.profiles[k])
    _same_barriers(got.barriers, res.barriers)
    # a module of the architecture gets the aligned weights and buffers, as a copy
    blank = _mlp()
    with_model = ls.load(path, "alignments/weights", model=blank)
    net = with_model.alignment.model
    assert net is not blank
    want = res.alignment.model.state_dict()
    have = net.state_dict()
    assert list(have) == list(want)
    for k, v in want.items():
        assert torch.equal(have[k], v), k
    assert not torch.equal(blank[0].weight, net[0].weight)
    # and saves again: a round trip of the round trip
    again = ls.load(ls.save(with_model, tmp_path / "b.h5"), "alignments/weights")
    for g, p in res.alignment.perms.items():
        assert torch.equal(again.alignment.perms[g], p.cpu())
    # without the module it cannot be saved again: one line naming the fix
    with pytest.raises(UserError, match=r"^cannot save alignment .*model=") as e:
        ls.save(got, tmp_path / "c.h5")
    assert "\n" not in str(e.value)
    # another architecture: one line naming the fix
    wide = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(UserError, match=r"architecture.*model=") as e:
        ls.load(path, "alignments/weights", model=wide)
    assert "\n" not in str(e.value)


def test_load_gives_back_a_saved_fge_ensemble(tmp_path: Path, fge_result) -> None:
    res = fge_result
    path = ls.save(res, tmp_path / "f.h5", "ens")
    got = ls.load(path, "fge/ens")
    assert isinstance(got, ls.FGEResult)
    assert torch.equal(got.snapshots, res.snapshots.float())
    assert set(got.history) == set(res.history)
    for k, v in res.history.items():
        np.testing.assert_array_equal(got.history[k], v, err_msg=k)
    assert got.start == res.start
    e, want = got.ensemble, res.ensemble
    assert (e.acc, e.nll, e.ece, e.n) == (want.acc, want.nll, want.ece, want.n)
    np.testing.assert_array_equal(e.confidence, want.confidence)
    np.testing.assert_array_equal(e.accuracy, want.accuracy)
    np.testing.assert_array_equal(e.count, want.count)
    assert torch.equal(got.probs, res.probs.double())


def test_load_gives_back_a_saved_swag_average(tmp_path: Path, bma) -> None:
    path = ls.save(bma, tmp_path / "s.h5")
    for name in ("swag", "swag/evaluation"):
        got = ls.load(path, name)
        assert isinstance(got, ls.SwagBMA)
        for k in ("samples", "acc", "nll", "ece", "sample_acc", "sample_nll"):
            np.testing.assert_array_equal(getattr(got, k), getattr(bma, k), err_msg=k)
        m, want = got.metrics, bma.metrics
        assert (m.acc, m.nll, m.ece, m.n) == (want.acc, want.nll, want.ece, want.n)
        np.testing.assert_array_equal(m.confidence, want.confidence)
        np.testing.assert_array_equal(m.accuracy, want.accuracy)
        np.testing.assert_array_equal(m.count, want.count)
        assert got.attrs == bma.attrs
        assert got.probs.numel() == 0  # not stored (nor by `landscape swag`)


def test_load_reads_what_landscape_connect_and_align_write(tiny_run: Path,
                                                         tmp_path: Path) -> None:
    from landscape.jobs._run import load_run_model

    out = tmp_path / "cli.h5"
    ends = [str(tiny_run), str(tiny_run), "--solution-a", "sgd", "--solution-b", "swa",
            "--points", "3", "--out", str(out), "--quiet"]
    assert main(["connect", *ends, "--epochs", "1"]) == 0
    assert main(["align", *ends]) == 0
    with ls.store.open_run(tiny_run) as f:
        sgd, swa = (ls.store.read_solution(f, n) for n in ("sgd", "swa"))
    c = ls.load(out, "curves/bezier")
    assert isinstance(c, ls.Connection)
    assert torch.equal(c.curve.start, sgd.weights.float())
    assert torch.equal(c.curve.end, swa.weights.float())
    with h5py.File(out) as f:
        np.testing.assert_array_equal(c.curve.bends.numpy(), f["curves/bezier/bends"][()])
        np.testing.assert_array_equal(c.profile.t, f["curves/bezier/profiles/curve/t"][()])
        np.testing.assert_array_equal(c.line.metrics["test_loss"],
                                      f["curves/bezier/profiles/line/test_loss"][()])
        aligned = f["alignments/weights/aligned"][()]
        perm0 = f["alignments/weights/perms"]
        perms = {k: perm0[k][()] for k in perm0}
    assert len(c.history["loss"]) == 1
    model, _ = load_run_model(tiny_run)
    a = ls.load(out, "alignments/weights", model=model)
    assert isinstance(a, ls.AlignedPaths)
    # the CLI's result also holds the linked curve's profile
    assert set(a.profiles) == {"line", "aligned", "curve"}
    _same_profile(a.profiles["curve"], c.profile)
    np.testing.assert_array_equal(
        ls.ParamLayout.from_module(a.alignment.model).read(a.alignment.model).numpy(),
        aligned)
    assert {k: v.numpy().tolist() for k, v in a.alignment.perms.items()} == {
        k: v.tolist() for k, v in perms.items()}


def test_load_prefers_a_measure_to_a_result_group_of_the_same_name(
        tmp_path: Path, connection) -> None:
    path = tmp_path / "both.h5"
    ls.save(connection, path, "width")
    m = ls.MeasureResult("width", {"width": 1.5}, {"widths": np.arange(3.0)}, "model")
    ls.save(m, path, "curves")  # a solution literally named `curves`
    got = ls.load(path, "curves/width")
    assert isinstance(got, ls.MeasureResult)
    np.testing.assert_array_equal(got.arrays["widths"], np.arange(3.0))
    # solution `curves` has no measure `bz`: the curve
    ls.save(connection, path, "bz")
    assert isinstance(ls.load(path, "curves/bz"), ls.Connection)


def test_load_errors_are_one_line(tmp_path: Path, connection, bma) -> None:
    path = ls.save(connection, tmp_path / "c.h5", "bz")
    ls.save(bma, path)
    for bad in ("nope", "curves/nope", "alignments/bz", "fge/bz", "nope/measure"):
        with pytest.raises(UserError, match=r"holds no result .*; it holds surfaces: none; "
                           r"measures: none; curves: curves/bz; alignments: none; "
                           r"fge: none; swag: swag") as e:
            ls.load(path, bad)
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^model= .*only an alignment") as e:
        ls.load(path, "curves/bz", model=_mlp())
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^name 'curves/' cannot name a stored result"):
        ls.load(path, "curves/")
