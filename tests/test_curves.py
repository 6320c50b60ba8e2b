"""Mode-connecting curves: geometry, training on a toy of known shape, BN, storage, CLI."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

import landscape as ls
from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.config import ConnectConfig
from landscape.evaluate import Evaluator
from landscape.params import ParamLayout
from landscape.paths import Curve, barrier, curve_profile, train_curve
from landscape.schedules import swa_paper_factor


def _ends(n: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g), torch.randn(n, generator=g)


# =========================================================================== geometry
@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("bends", [1, 3])
def test_endpoints_are_exact(kind: str, bends: int) -> None:
    a, b = _ends()
    c = Curve.on_segment(kind, a, b, bends).with_bends(torch.randn(bends, 7))
    assert torch.equal(c.point(0.0), a)
    assert torch.equal(c.point(1.0), b)


def test_bezier_with_the_bend_at_the_midpoint_is_the_line() -> None:
    a, b = _ends()
    c = Curve.on_segment("bezier", a, b, 1)
    torch.testing.assert_close(c.bends[0], (a + b) / 2)
    for t in np.linspace(0, 1, 17):
        torch.testing.assert_close(c.point(float(t)), a + float(t) * (b - a))
    moved = c.with_bends(c.bends + 1.0)  # off the segment it is not the line
    assert not torch.allclose(moved.point(0.3), a + 0.3 * (b - a))


@pytest.mark.parametrize("bends", [1, 2, 4])
def test_polychain_passes_through_each_bend_at_its_knot(bends: int) -> None:
    a, b = _ends()
    theta = torch.randn(bends, 7)
    c = Curve.on_segment("polychain", a, b, bends).with_bends(theta)
    knots = c.knots
    np.testing.assert_allclose(knots, np.arange(bends + 2) / (bends + 1))
    for i in range(bends):
        assert torch.equal(c.point(float(knots[i + 1])), theta[i])
    # linear in between: halfway between bend 1 and the end
    mid = 0.5 * (knots[-2] + knots[-1])
    torch.testing.assert_close(c.point(float(mid)), 0.5 * (theta[-1] + b))


def test_barrier_definition() -> None:
    assert barrier([1.0, 3.0, 2.0]) == pytest.approx(1.5)
    assert barrier([0.2, 0.1, 0.2]) == pytest.approx(0.0)  # no rise: the endpoints' max


# =========================================================================== a toy of known shape
ALPHA, A_RAD, BETA = math.pi / 3, 4.0, 0.2


class _Ring(nn.Module):
    r"""Loss on 2-D weights w: :math:`a(r-1)^2 + \beta((\cos\varphi - \cos\alpha) /
    (1 - \cos\alpha))^2`.

    Two minima (loss 0) at angles :math:`\pm\alpha` on the unit circle.  A path
    between them crosses :math:`\varphi = 0` (loss ≥ β) or π (≥ 9β), so the
    lowest barrier of any path is β, reached by the unit arc through (1, 0);
    the straight line passes (cos α, 0), where the loss is a(1 - cos α)² + β.
    """

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.w.norm()
        cos = self.w[0] / r
        g = ((cos - math.cos(ALPHA)) / (1 - math.cos(ALPHA))) ** 2
        value = A_RAD * (r - 1) ** 2 + BETA * g
        return value.expand(len(x), 1)


def test_trained_curve_follows_the_known_valley() -> None:
    net = _Ring()
    data = (torch.zeros(4, 1), torch.zeros(4, 1))
    a = torch.tensor([math.cos(ALPHA), -math.sin(ALPHA)])
    b = torch.tensor([math.cos(ALPHA), math.sin(ALPHA)])
    res = ls.connect(net, a, b, data, loss=nn.L1Loss(), epochs=120, batch_size=4,
                     lr=0.05, points=31)
    line_b = res.line.barriers["train_loss"]
    curve_b = res.profile.barriers["train_loss"]
    known = BETA  # the unit arc's barrier
    assert line_b == pytest.approx(A_RAD * (1 - math.cos(ALPHA)) ** 2 + BETA, rel=1e-5)
    assert curve_b < 0.25 * line_b
    assert curve_b == pytest.approx(known, abs=0.03)
    # the trained curve runs along the unit arc, the line cuts inside it
    radius = [float(res.curve.point(t).norm()) for t in np.linspace(0, 1, 21)]
    assert max(abs(r - 1) for r in radius) < 0.1
    assert float(res.line.t[15]) == 0.5


# =========================================================================== BatchNorm
def _bn_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))


def _bn_case(n: int, seed: int) -> tuple[nn.Module, ParamLayout, torch.Tensor, torch.Tensor,
                                         torch.Tensor, torch.Tensor, torch.Generator]:
    """A hand-built BN network, ``n`` samples and two endpoints: net, layout, x, y, a, b, g."""
    net = _bn_net()
    layout = ParamLayout.from_module(net)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g)
    a = layout.read(net)
    return net, layout, x, y, a, a + torch.randn(a.shape, generator=g), g


def test_bn_along_the_curve_equals_update_bn_at_phi_t() -> None:
    net, layout, x, y, a, b, g = _bn_case(40, 2)
    c = Curve.on_segment("bezier", a, b).with_bends(((a + b) / 2 + torch.randn(
        a.shape, generator=g))[None])
    ev = Evaluator(copy.deepcopy(net), (x, y), batch_size=16)
    assert ev.bn.value == "recompute"
    ts = [0.0, 0.3, 0.5, 1.0]
    prof = curve_profile(ev, c, ts)
    for i, t in enumerate(ts):
        ref = copy.deepcopy(net)
        layout.write(ref, c.point(t))
        update_bn([x[:16], x[16:32], x[32:]], ref)
        ref.eval()
        with torch.no_grad():
            out = ref(x)
        loss = nn.functional.cross_entropy(out, y).item()
        err = (out.argmax(1) != y).double().mean().item()
        assert prof.metrics["train_loss"][i] == pytest.approx(loss, rel=1e-5)
        assert prof.metrics["train_err"][i] == pytest.approx(err)


def test_training_uses_batch_statistics_at_phi_t() -> None:
    net, layout, x, y, a, b, _ = _bn_case(16, 3)
    c = Curve.on_segment("polychain", a, b, 1)
    cfg = ConnectConfig(epochs=1, batch_size=16, lr=0.1, momentum=0.0, seed=5)
    st = train_curve(net, c, (x, y), cfg)
    # by hand: the same t (first draw after the permutation), train-mode BN
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(16, generator=gen)
    t = float(torch.rand((), generator=gen, dtype=torch.float64))
    bend = c.bends.clone().requires_grad_(True)
    w = (1 - 2 * t) * a + 2 * t * bend[0] if t <= 0.5 else (2 - 2 * t) * bend[0] + (
        2 * t - 1) * b
    ref = copy.deepcopy(net).train()
    out = torch.func.functional_call(ref, layout.unflatten(w), (x[perm],))
    nn.functional.cross_entropy(out, y[perm]).backward()
    torch.testing.assert_close(st.curve.bends, c.bends - 0.1 * bend.grad)


# =========================================================================== run files, CLI
def _connect(tiny_run: Path, out: Path, *extra: str) -> int:
    return main(["connect", str(tiny_run), str(tiny_run), "--solution-a", "sgd",
                 "--solution-b", "swa", "--epochs", "3", "--points", "7", "--quiet",
                 "--out", str(out), *extra])


def test_connect_stores_curve_profiles_and_barriers(tiny_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "curves.h5"
    toml = tmp_path / "curve.toml"
    toml.write_text('[connect]\ncurve = "polychain"\nbends = 2\n')
    assert _connect(tiny_run, out, "--config", str(toml)) == 0
    assert "line barrier: train_loss" in capsys.readouterr().out
    curve, state = store.read_curve(out, "polychain")
    assert state.epoch == 3
    assert curve.num_bends == 2
    with store.open_run(tiny_run) as f:
        a = store.read_solution(f, "sgd").weights
        b = store.read_solution(f, "swa").weights
    assert torch.equal(curve.start, a)
    assert torch.equal(curve.end, b)
    for which in ("curve", "line"):
        p = store.read_profile(out, "polychain", which)
        np.testing.assert_allclose(p.t, np.linspace(0, 1, 7))
        assert set(p.barriers) == {"train_loss", "train_err", "test_loss", "test_err"}
        assert p.l2 == pytest.approx(5e-4)  # the run's weight decay
    line = store.read_profile(out, "polychain", "line")
    curve_p = store.read_profile(out, "polychain", "curve")
    # both profiles start and end at the same endpoints, evaluated the same way
    for k in ("train_loss", "test_err"):
        assert curve_p.metrics[k][[0, -1]] == pytest.approx(line.metrics[k][[0, -1]])
    with h5py.File(out) as f:
        g = f["curves/polychain"]
        assert g.attrs["complete"]
        assert g.attrs["line_test_err_barrier"] == pytest.approx(line.barriers["test_err"])
    text = store.describe(out)
    assert "polychain: polychain with 2 bend(s), 3/3 epochs, complete" in text
    assert "curve barrier: train_loss" in text
    # a rerun finds everything done and changes nothing
    assert _connect(tiny_run, out, "--curve", "polychain", "--bends", "2") == 0
    assert torch.equal(store.read_curve(out, "polychain")[0].bends, curve.bends)
    # other settings under the same name: refused without --force
    assert _connect(tiny_run, out, "--curve", "polychain", "--bends", "3") == 2
    assert "other settings" in capsys.readouterr().err


def test_resume_after_an_interrupted_epoch_gives_the_same_bend(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from landscape.jobs import connect_runs

    cfg = ConnectConfig(epochs=4, points=3, batch_size=64)
    kw = {"solution_a": "sgd", "solution_b": "swa", "config": cfg}
    ref = connect_runs(tiny_run, tiny_run, tmp_path / "ref.h5", **kw)
    real, calls = store.write_curve_state, []

    def killed_after_two(*args: object) -> None:
        real(*args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed right after epoch 2 was stored

    monkeypatch.setattr(store, "write_curve_state", killed_after_two)
    out = tmp_path / "killed.h5"
    with pytest.raises(KeyboardInterrupt):
        connect_runs(tiny_run, tiny_run, out, **kw)
    assert store.read_curve(out, "bezier")[1].epoch == 2
    assert store.read_profile(out, "bezier", "curve") is None
    monkeypatch.setattr(store, "write_curve_state", real)
    res = connect_runs(tiny_run, tiny_run, out, **kw)
    assert torch.equal(res.curve.bends, ref.curve.bends)
    assert res.history["loss"] == ref.history["loss"]
    assert not torch.equal(res.curve.bends, Curve.on_segment(
        "bezier", res.curve.start, res.curve.end).bends)  # it did train


def test_bad_endpoints_and_bends_are_one_line_errors(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bad.h5"

    def error(*argv: str) -> str:
        assert main(["connect", *argv, "--quiet", "--out", str(out)]) == 2
        lines = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
        assert len(lines) == 1
        return lines[0]

    t = str(tiny_run)
    assert "same weights" in error(t, t, "--solution-a", "swa", "--solution-b", "swa")
    assert "bends (--bends) must be >= 1" in error(t, t, "--solution-b", "swa", "--bends", "0")
    other = tmp_path / "other.h5"
    other.write_bytes(tiny_run.read_bytes())
    with h5py.File(other, "r+") as f:
        f["model"].attrs["kwargs"] = '{"width": 3}'
    assert "different architectures" in error(t, str(other))
    assert not out.exists()
    # the API: weights of another architecture, the same solution twice
    net = _bn_net()
    with pytest.raises(UserError, match="another architecture"):
        ls.connect(net, net, nn.Linear(3, 2), (torch.randn(8, 3), torch.zeros(8).long()))
    w = ParamLayout.from_module(net).read(net)
    with pytest.raises(UserError, match="same weights"):
        ls.connect(net, w, w.clone(), (torch.randn(8, 3), torch.zeros(8).long()))


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_bend(tiny_run: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from landscape.jobs import connect_runs

    flags = ["--epochs", "30", "--points", "3", "--batch-size", "16"]
    cfg = ConnectConfig(epochs=30, points=3, batch_size=16)
    ref = connect_runs(tiny_run, tiny_run, tmp_path / "ref.h5", solution_b="swa",
                       config=cfg)
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "landscape", "connect", str(tiny_run), str(tiny_run),
           "--solution-b", "swa", "--quiet", "--out", str(out), *flags]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline, done = time.time() + 120, 0
    while done < 2 and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
        try:
            with h5py.File(out, "r") as f:
                done = int(f["curves/bezier"].attrs["epochs_done"])
        except (OSError, KeyError):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, state = store.read_curve(out, "bezier")
    assert 2 <= state.epoch < 30  # killed in training, with finished epochs stored
    res = connect_runs(tiny_run, tiny_run, out, solution_b="swa", config=cfg)
    assert torch.equal(res.curve.bends, ref.curve.bends)


def test_train_curve_continues_exactly_from_a_state_with_dropout() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(8, 2))
    layout = ParamLayout.from_module(net)
    x, y = torch.randn(24, 3), torch.randint(0, 2, (24,))
    a = layout.read(net)
    c = Curve.on_segment("polychain", a, a + torch.randn(a.shape), 2)
    cfg = ConnectConfig(epochs=3, batch_size=8, lr=0.1, curve="polychain", bends=2)
    ref = train_curve(net, c, (x, y), cfg)
    assert ref.history["lr"] == [0.1, 0.1, 0.1 * swa_paper_factor(2, 3, 0.01)]
    saved = []

    def stop(state: object) -> None:
        saved.append(state)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_curve(net, c, (x, y), cfg, on_epoch=stop)
    torch.manual_seed(123)  # the caller's RNG does not matter
    res = train_curve(net, saved[0], (x, y), cfg)
    assert torch.equal(res.curve.bends, ref.curve.bends)
    assert res.history["loss"] == ref.history["loss"]


def test_plot_all_draws_line_vs_curve_and_compare_reports_barriers(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "curves.h5"
    assert main(["connect", str(tiny_run), str(tiny_run), "--solution-b", "swa",
                 "--epochs", "1", "--points", "5", "--batch-size", "50", "--quiet",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["plot", str(out), "--all", "--out-dir", str(tmp_path / "fig")]) == 0
    names = {p.name for p in (tmp_path / "fig").iterdir()}
    assert {"curves_curve_bezier_train_loss.png", "curves_curve_bezier_test_err.png"} <= names
    fig, ax = ls.plot_curve_profiles(out, "bezier", "test_err")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("line (barrier")
    assert labels[1].startswith("bezier")
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert main(["compare", str(out)]) == 0
    text = capsys.readouterr().out
    a = store.curve_attrs(out, "bezier")
    row = next(r for r in text.splitlines() if "| test_err |" in r)
    assert f"{100 * a['line_test_err_barrier']:.2f}" in row
    assert f"{100 * a['curve_test_err_barrier']:.2f}" in row


# =========================================================================== the plane
@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_the_curve_projects_onto_its_plane_through_the_three_points(kind: str) -> None:
    a, b = _ends(9)
    theta = torch.randn(1, 9, generator=torch.Generator().manual_seed(1))
    c = Curve.on_segment(kind, a, b, 1).with_bends(theta)
    g = ls.curve_plane_grid(c, steps=4, margin=0.25)
    pa, pb, pbend = (g.points[k] for k in ("a", "b", "bend"))
    L = float((b.double() - a.double()).norm())
    np.testing.assert_array_equal(pa, [0.0, 0.0])
    np.testing.assert_allclose(pb, [L, 0.0], rtol=1e-12, atol=1e-12)
    assert pbend[1] > 0
    # a, b and the bend are grid nodes, the steps L/4 and V/4
    assert {0.0, pb[0]} <= set(g.x.tolist())
    assert {0.0, pbend[1]} <= set(g.y.tolist())
    np.testing.assert_allclose(np.diff(g.x), L / 4)
    xy = ls.curve_plane_coords(c, g, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(xy[0], [0.0, 0.0])  # phi(0) = a exactly
    np.testing.assert_allclose(xy[2], pb, rtol=1e-12, atol=1e-12)
    # Bezier: phi(1/2) = a/4 + bend/2 + b/4 (the bend is not on the curve);
    # polychain with one bend: phi(1/2) is the bend
    want = 0.25 * pa + 0.5 * pbend + 0.25 * pb if kind == "bezier" else pbend
    np.testing.assert_allclose(xy[1], want, rtol=1e-12, atol=1e-12)
    # the grid spans the whole projected curve
    dense = ls.curve_plane_coords(c, g, np.linspace(0, 1, 41))
    assert g.x[0] < dense[:, 0].min()
    assert dense[:, 0].max() < g.x[-1]
    assert g.y[0] < dense[:, 1].min()
    assert dense[:, 1].max() < g.y[-1]


def test_an_untrained_curve_or_a_missing_bend_spans_no_plane() -> None:
    a, b = _ends()
    c = Curve.on_segment("bezier", a, b, 1)
    with pytest.raises(UserError, match="train the curve first"):
        ls.curve_plane_grid(c)
    with pytest.raises(UserError, match="bend 1 does not exist"):
        ls.curve_plane_grid(c.with_bends(torch.randn(1, 7)), bend=1)


def test_connect_plane_stores_the_surface_with_the_curve_on_it(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "curves.h5"
    assert _connect(tiny_run, out, "--plane", "--plane-steps", "2") == 0
    assert "surface bezier_plane" in capsys.readouterr().out
    s = store.read_surface(out, "bezier_plane")
    assert s.complete
    assert s.attrs["curve"] == "bezier"
    prof = store.read_profile(out, "bezier", "curve")
    curve, _ = store.read_curve(out, "bezier")
    name, t, xy = store.read_curve_plane(out, "bezier_plane")
    assert name == "bezier"
    np.testing.assert_array_equal(t, prof.t)
    np.testing.assert_allclose(xy, ls.curve_plane_coords(curve, s.grid, t), rtol=1e-5,
                               atol=1e-5)  # the grid's directions are stored in float32
    # the surface at the endpoints equals the profile at t = 0 and t = 1
    j0 = int(np.flatnonzero(s.grid.y == 0.0)[0])
    for end, x in ((0, 0.0), (-1, s.grid.points["b"][0])):
        i = int(np.argmin(np.abs(s.grid.x - x)))
        assert s.grid.x[i] == pytest.approx(x, abs=1e-6)
        for m in ("train_loss", "test_loss"):
            assert s.values[m][i, j0] == pytest.approx(prof.metrics[m][end], rel=1e-5)
        for m in ("train", "test"):
            assert 1.0 - s.values[f"{m}_acc"][i, j0] == pytest.approx(
                prof.metrics[f"{m}_err"][end], abs=1e-9)
    # a rerun has nothing left to do; plot --all draws the plane with the curve
    before = s.values["train_loss"].copy()
    assert _connect(tiny_run, out, "--plane", "--plane-steps", "2") == 0
    np.testing.assert_array_equal(store.read_surface(out, "bezier_plane")
                                  .values["train_loss"], before)
    assert main(["plot", str(out), "--all", "--out-dir", str(tmp_path / "fig")]) == 0
    names = {p.name for p in (tmp_path / "fig").iterdir()}
    assert "curves_surface_bezier_plane_train_loss.png" in names
    fig, ax = ls.plot_curve_plane(out, "bezier_plane", "test_err")
    labels = [x.get_text() for x in ax.get_legend().get_texts()]
    assert {"line", "curve bezier", "a", "b", "bend"} <= set(labels)
    import matplotlib.pyplot as plt

    plt.close(fig)
