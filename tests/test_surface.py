"""Surfaces against closed forms, stored solutions, resumption and 2 ranks."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape._errors import UserError
from landscape.cli import main
from landscape.data import TensorData
from landscape.directions import random_direction
from landscape.evaluate import Evaluator
from landscape.jobs import SurfaceConfig, compute_surface
from landscape.params import ParamLayout
from landscape.store import read_surface
from landscape.surface import METRICS, SurfaceGrid, evaluate_grid, parse_grid


def _data(n_in: int = 5, n: int = 64, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorData("toy", x[:48], y[:48], x[48:], y[48:], 3)


def _copy(src: Path, tmp: Path, name: str = "run.h5") -> Path:
    dst = tmp / name
    shutil.copyfile(src, dst)
    return dst


# --------------------------------------------------------------------------- maths
def test_grid_points_quadratic_closed_form() -> None:
    """f(c + x d0 + y d1) of a quadratic equals its closed form on every grid point."""
    g = torch.Generator().manual_seed(0)
    n = 7
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = A @ A.T
    c, d0, d1 = (torch.randn(n, generator=g, dtype=torch.float64) for _ in range(3))
    grid = SurfaceGrid(x=parse_grid("-1:1:5"), y=parse_grid("-2:2:3"), center=c,
                       center_buffers=torch.zeros(0), d0=d0, d1=d1)

    def f(t: torch.Tensor) -> float:
        return float(0.5 * t @ A @ t)

    for k in range(grid.n_points):
        x, y = grid.coords(k)
        closed = (f(c) + x * float(c @ A @ d0) + y * float(c @ A @ d1)
                  + 0.5 * x * x * float(d0 @ A @ d0) + 0.5 * y * y * float(d1 @ A @ d1)
                  + x * y * float(d0 @ A @ d1))
        assert f(grid.weights(k).double()) == pytest.approx(closed, rel=1e-5, abs=1e-5)


def test_linear_model_surface_equals_direct_cross_entropy() -> None:
    data = _data()
    net = nn.Linear(5, 3)
    ev = Evaluator(net, *data.splits(), bn="keep")
    lay = ev.layout
    c = lay.read(net).double()
    g = torch.Generator().manual_seed(1)
    d0, d1 = (torch.randn(lay.numel, generator=g, dtype=torch.float64) for _ in range(2))
    grid = SurfaceGrid(x=parse_grid("-1:1:3"), y=parse_grid("0:2:4"), center=c,
                       center_buffers=torch.zeros(0), d0=d0, d1=d1)
    res = evaluate_grid(grid, ev).values
    assert res["train_loss"].shape == (3, 4)
    for i, x in enumerate(grid.x):
        for j, y in enumerate(grid.y):
            p = lay.unflatten((c + x * d0 + y * d1).float())
            for split, xs, ys in (("train", data.x_train, data.y_train),
                                  ("test", data.x_test, data.y_test)):
                out = (xs.double() @ p["weight"].double().T + p["bias"].double())
                loss = F.cross_entropy(out, ys)
                acc = (out.argmax(1) == ys).double().mean()
                assert res[f"{split}_loss"][i, j] == pytest.approx(float(loss), rel=1e-5)
                assert res[f"{split}_acc"][i, j] == pytest.approx(float(acc))


def test_bn_mode_without_bn_is_an_error() -> None:
    """The line names the keyword argument and the flag of the fix (it named the flag
    only, which a Python caller does not have)."""
    with pytest.raises(UserError, match=r"^bn='recompute' \(--bn recompute\) needs a model "
                       r"with BatchNorm; this model has none, use bn='keep' \(--bn keep\)$"):
        Evaluator(nn.Linear(5, 3), *_data().splits(), bn="recompute")


def test_filter_normalization_rescaling_invariance() -> None:
    """Rescaling layer 1 by α and layer 2 by 1/α (ReLU) leaves the surface unchanged."""
    torch.manual_seed(0)
    data = _data()
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    alpha = 7.0
    scaled = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        scaled[0].weight.copy_(alpha * net[0].weight)
        scaled[0].bias.copy_(alpha * net[0].bias)
        scaled[2].weight.copy_(net[2].weight / alpha)
        scaled[2].bias.copy_(net[2].bias)
    results = []
    for m in (net, scaled):
        ev = Evaluator(m, *data.splits(), bn="keep")
        c = ev.layout.read(m).double()
        gen = torch.Generator().manual_seed(5)
        d0 = random_direction(ev.layout, c, norm="filter", generator=gen)
        d1 = random_direction(ev.layout, c, norm="filter", generator=gen)
        grid = SurfaceGrid(x=parse_grid("-1:1:5"), y=parse_grid("-1:1:5"), center=c,
                           center_buffers=torch.zeros(0), d0=d0, d1=d1)
        results.append(evaluate_grid(grid, ev).values)
    for m in METRICS:
        np.testing.assert_allclose(results[0][m], results[1][m], rtol=1e-5, atol=1e-5)


def test_grid_validation() -> None:
    with pytest.raises(UserError, match="num must be at least 1"):
        parse_grid("-1:1:0")
    with pytest.raises(UserError, match="start:stop:num"):
        parse_grid("1:2")
    with pytest.raises(UserError, match="another model"):
        SurfaceGrid(x=parse_grid("0:1:2"), y=None, center=torch.zeros(4),
                    center_buffers=torch.zeros(0), d0=torch.zeros(3))


def test_grid_values_must_be_a_finite_1d_sequence() -> None:
    """A number, a 2-D array or a NaN as grid values is one line naming the keyword and
    the accepted forms (they were "len() of unsized object", numpy's "only 0-dimensional
    arrays..." and a silent all-NaN surface); a list or 1-D array gives the same
    surface as the string."""
    import landscape as ls

    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.tensor([0, 1] * 4))
    forms = r"must be a 'start:stop:num' string or a 1-D sequence of finite values, got "
    for grid, got in ((5, "5"), (np.zeros((2, 2)), r"an array of shape \(2, 2\)"),
                      ([float("nan")], r"\[nan\] \(not finite\)"),
                      (["a", "b"], r"\['a', 'b'\]")):
        with pytest.raises(UserError, match=r"^grid \(--grid\) " + forms + got + "$"):
            ls.random_surface(net, data, dim=1, grid=grid)
    inf = r"\[0.0, inf\] \(not finite\)$"
    with pytest.raises(UserError, match=r"^grid_y \(--grid-y\) " + forms + inf):
        ls.random_surface(net, data, grid="-1:1:3", grid_y=[0.0, math.inf])
    s = ls.random_surface(net, data, grid="-1:1:3", grid_y="0:1:2")
    for grid, grid_y in (([-1.0, 0.0, 1.0], np.array([0.0, 1.0])),
                         (torch.tensor([-1.0, 0.0, 1.0]), (0, 1))):
        v = ls.random_surface(net, data, grid=grid, grid_y=grid_y)
        assert np.array_equal(v.values["train_loss"], s.values["train_loss"])
    assert s.values["train_loss"].shape == (3, 2)
    assert np.isfinite(s.values["train_loss"]).all()


def test_grid_y_with_dim_1_is_an_error() -> None:
    """grid_y with dim=1 is one line naming dim=2 (random, PCA and SWAG grids ignored it;
    the run-file config already refused --grid-y with --dim 1); dim=2 uses it."""
    import landscape as ls

    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.tensor([0, 1] * 4))
    layout = ls.ParamLayout.from_module(net)
    points = [layout.read(net) + 0.1 * torch.randn(layout.numel) for _ in range(3)]
    moments = ls.swag_moments(torch.stack([*points, layout.read(net)]), rank=3)
    msg = r"^grid_y \(--grid-y\) is for 2D surfaces; drop it or use dim=2 \(--dim 2\)$"
    for make in (lambda **k: ls.random_surface(net, data, **k),
                 lambda **k: ls.pca_surface(net, points, data, **k),
                 lambda **k: ls.swag_surface(net, moments, data, **k)):
        with pytest.raises(UserError, match=msg):
            make(dim=1, grid="-1:1:3", grid_y="0:1:2")
        assert make(dim=2, grid="-1:1:3", grid_y="0:1:2").values["train_loss"].shape == (3, 2)
        assert make(dim=1, grid="-1:1:3").values["train_loss"].shape == (3,)


def test_pca_surface_of_a_short_trajectory_names_the_points_it_needs() -> None:
    """An empty or two-point trajectory is one line naming the 3 points PCA needs (an
    empty one was torch's "stack expects a non-empty TensorList"), a number a TypeError;
    three points give a surface."""
    import landscape as ls

    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.tensor([0, 1] * 4))
    layout = ls.ParamLayout.from_module(net)
    points = [layout.read(net) + 0.1 * torch.randn(layout.numel) for _ in range(3)]
    for traj in ([], points[:2], torch.stack(points[:1])):
        with pytest.raises(UserError, match=r"^PCA needs a trajectory of at least 3 points "
                           rf"\(models, state dicts or flat weight vectors\), got {len(traj)}$"):
            ls.pca_surface(net, traj, data)
    with pytest.raises(TypeError, match=r"^trajectory must be a sequence of points .*got int$"):
        ls.pca_surface(net, 5, data)
    s = ls.pca_surface(net, points, data, grid="-1:1:3", grid_y="0:1:2")
    assert s.values["train_loss"].shape == (3, 2)
    assert np.isfinite(s.values["train_loss"]).all()


def test_a_non_finite_line_or_plane_point_is_the_measures_error() -> None:
    """A NaN or inf in a line endpoint (or a plane point) is measure's one-line non-finite
    error naming the point; the line was all NaN, even at the finite endpoint
    (a + 0 * NaN).  Finite endpoints give finite values, the start's loss at t = 0."""
    import landscape as ls

    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    data = (torch.randn(8, 3), torch.tensor([0, 1] * 4))
    layout = ls.ParamLayout.from_module(net)
    a = layout.read(net)
    b = a + 0.1 * torch.randn(layout.numel)
    bad = b.clone()
    bad[2] = math.nan
    tail = (r" is not finite; the weights or the data hold NaN/inf \(a diverged "
            r"checkpoint\?\): check them before evaluating a surface$")
    with pytest.raises(UserError, match=r"^the line's endpoint 'end'" + tail):
        ls.line_surface(net, a, bad, data, grid=[0.0, 1.0])
    with pytest.raises(UserError, match=r"^the line's endpoint 'a'" + tail):
        ls.line_surface(net, -math.inf * a, b, data, grid=[0.0, 1.0], names=("a", "b"))
    with pytest.raises(UserError, match=r"^the plane's point 'p3'" + tail):
        ls.plane_surface(net, a, b, bad, data)
    s = ls.line_surface(net, a, b, data, grid=[0.0, 1.0])
    with torch.no_grad():
        assert s.values["train_loss"][0] == pytest.approx(float(F.cross_entropy(
            net(data[0]), data[1])), rel=1e-6)
    assert np.isfinite(s.values["train_loss"]).all()


# --------------------------------------------------------------------------- run files
def test_line_endpoints_equal_stored_metrics(tiny_run, tmp_path) -> None:
    run = _copy(tiny_run, tmp_path)
    cfg = SurfaceConfig(kind="line", from_point="sgd", to_point="swa", grid="0:1:2", bn="keep",
                        l2=0)
    name = compute_surface(run, cfg, log=lambda _: None)
    s = read_surface(run, name)
    assert s.attrs["complete"]
    assert s.attrs["x_label"] == "t (sgd at 0, swa at 1)"
    with h5py.File(run, "r") as f:
        for i, sol in enumerate(("sgd", "swa")):
            a = f[f"solutions/{sol}"].attrs
            for m in ("train_loss", "train_acc", "test_loss", "test_acc"):
                assert s.values[m][i] == pytest.approx(a[m], rel=1e-12, abs=0), (sol, m)
    np.testing.assert_array_equal(s.grid.points["swa"], [1.0])


def test_plane_schema_and_coordinates(tiny_run, tmp_path) -> None:
    run = _copy(tiny_run, tmp_path)
    cfg = SurfaceConfig(kind="plane", points=("sgd", "swa_last", "swa"), grid="-1:1:3",
                        grid_y="-1:1:2", bn="keep")
    name = compute_surface(run, cfg, log=lambda _: None)
    s = read_surface(run, name)
    a = s.attrs
    assert (a["kind"], a["dim"], a["center"]) == ("plane", 2, "sgd")
    assert a["x_label"] == "u: L2 distance along swa_last − sgd"
    assert a["y_label"] == "v: L2 distance, towards swa (⊥ u)"
    assert s.values["train_loss"].shape == (3, 2)
    assert not np.isnan(s.values["test_acc"]).any()
    assert s.grid.trajectory_xy.shape[1] == 2
    with h5py.File(run, "r") as f:
        for p in ("sgd", "swa_last", "swa"):
            xy = s.grid.points[p]
            rec = s.grid.center + xy[0] * s.grid.d0 + xy[1] * s.grid.d1
            np.testing.assert_allclose(rec.numpy(), f[f"solutions/{p}/weights"][()],
                                       atol=1e-5)
        g = f[f"surfaces/{name}"]
        for k in ("norm", "bn", "points", "x_label", "y_label", "train_samples",
                  "test_samples", "seed", "l2", "config"):
            assert k in g.attrs, k
        assert g["directions/d0"].dtype == np.float32
        assert g["train_loss"].dtype == np.float64


def test_resume_after_kill_equals_uninterrupted(tiny_run, tmp_path) -> None:
    full, part = _copy(tiny_run, tmp_path, "full.h5"), _copy(tiny_run, tmp_path, "part.h5")
    cfg = SurfaceConfig(kind="random", grid="-1:1:4", grid_y="-1:1:3", bn="keep",
                        test_samples=50)
    compute_surface(full, cfg, log=lambda _: None)

    class Killed(Exception):
        pass

    def kill_after(n: int) -> None:
        if n == 5:
            raise Killed

    with pytest.raises(Killed):
        compute_surface(part, cfg, commit_interval=0, callback=kill_after)
    mid = read_surface(part, "random_swa")
    assert not mid.attrs["complete"]
    assert 0 < mid.computed.sum() < 12
    counted: list[int] = []
    compute_surface(part, cfg, callback=counted.append, log=lambda _: None)
    assert len(counted) == 12 - mid.computed.sum()
    a, b = read_surface(full, "random_swa"), read_surface(part, "random_swa")
    assert b.attrs["complete"]
    for m in METRICS:
        np.testing.assert_array_equal(a.values[m], b.values[m])
    # complete with the same config: a no-op
    again: list[int] = []
    compute_surface(part, cfg, callback=again.append, log=lambda _: None)
    assert again == []
    with pytest.raises(UserError, match="another config"):
        compute_surface(part, SurfaceConfig(kind="random", grid="-1:1:3"))


def test_cli_surface_and_errors(tiny_run, tmp_path, capsys) -> None:
    run = _copy(tiny_run, tmp_path)
    assert main(["surface", str(run), "--kind", "pca", "--grid", "-1:1:2", "--grid-y",
                 "-1:1:2", "--quiet", "--bn", "keep"]) == 0
    s = read_surface(run, "pca_swa")
    assert s.attrs["x_label"].startswith("PC1 (")
    assert main(["surface", str(run), "--kind", "line", "--from", "nope"]) == 2
    assert "unknown point 'nope'" in capsys.readouterr().err
    assert main(["surface", str(run), "--grid", "-1:1:0"]) == 2
    assert main(["info", str(run)]) == 0
    assert "pca_swa" in capsys.readouterr().out


def test_two_ranks_equal_one_rank(tiny_run, tmp_path) -> None:
    one, two = _copy(tiny_run, tmp_path, "one.h5"), _copy(tiny_run, tmp_path, "two.h5")
    args = ["--grid", "-1:1:3", "--grid-y", "-1:1:3", "--bn", "keep", "--quiet"]
    assert main(["surface", str(one), *args]) == 0
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "landscape",
                        "surface", str(two), *args], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = read_surface(one, "random_swa"), read_surface(two, "random_swa")
    assert b.attrs["complete"]
    for m in METRICS:
        np.testing.assert_allclose(a.values[m], b.values[m], rtol=1e-6, atol=1e-6)


_FAILING_RANK = """
import os, sys
from landscape.jobs import SurfaceConfig, compute_surface

def fail(done):
    if os.environ["RANK"] == "1" and done == 2:
        raise ValueError("injected failure")

compute_surface(sys.argv[1], SurfaceConfig(grid="-1:1:4", grid_y="-1:1:4", bn="keep"),
                commit_interval=0, callback=fail, log=lambda _: None)
"""


def test_a_failing_rank_stops_every_rank_and_keeps_finished_points(tiny_run,
                                                                   tmp_path) -> None:
    one, two = _copy(tiny_run, tmp_path, "one.h5"), _copy(tiny_run, tmp_path, "two.h5")
    script = tmp_path / "fail.py"
    script.write_text(_FAILING_RANK)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(script),
                        str(two)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0  # and no rank hung: the timeout would have fired
    assert "ValueError: injected failure" in r.stderr
    assert "stopped: rank 1: ValueError: injected failure" in r.stderr
    with h5py.File(two, "r") as f:
        computed = f["surfaces/random_swa/computed"][()]
    assert 3 <= computed.sum() < computed.size  # rank 1's first point and rank 0's kept
    opts = ["--grid", "-1:1:4", "--grid-y", "-1:1:4", "--bn", "keep", "--quiet"]
    assert main(["surface", str(two), *opts]) == 0  # resumes the missing points
    assert main(["surface", str(one), *opts]) == 0
    a, b = read_surface(one, "random_swa"), read_surface(two, "random_swa")
    for m in METRICS:
        np.testing.assert_allclose(a.values[m], b.values[m], rtol=1e-6, atol=1e-6)


def test_layout_check_of_direction_shape() -> None:
    lay = ParamLayout.from_module(nn.Linear(2, 2))
    with pytest.raises(UserError, match="another model"):
        lay.check_vector(torch.zeros(3), "direction")


def test_sigkill_mid_surface_then_resume(tiny_run, tmp_path) -> None:
    import signal
    import time

    full, part = _copy(tiny_run, tmp_path, "full.h5"), _copy(tiny_run, tmp_path, "part.h5")
    opts = {"kind": "random", "grid": "-1:1:5", "grid_y": "-1:1:4", "bn": "keep",
            "test_samples": 50}
    compute_surface(full, SurfaceConfig(**opts), log=lambda _: None)
    child = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from landscape.jobs import SurfaceConfig, compute_surface\n"
        f"compute_surface({str(part)!r}, SurfaceConfig(**{opts!r}), commit_interval=0,\n"
        "                callback=lambda n: time.sleep(0.3))\n")])
    try:
        deadline = time.time() + 120
        while True:
            assert time.time() < deadline, "the child never committed a point"
            assert child.poll() is None, "the child finished before it was killed"
            with h5py.File(part) as f:  # the file always opens, even mid-run
                if "surfaces/random_swa" in f and f["surfaces/random_swa/computed"][()].sum() >= 3:
                    break
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
    mid = read_surface(part, "random_swa")
    assert not mid.attrs["complete"]
    assert 3 <= mid.computed.sum() < 20
    counted: list[int] = []
    compute_surface(part, SurfaceConfig(**opts), callback=counted.append,
                    log=lambda _: None)
    assert len(counted) == 20 - mid.computed.sum()
    a, b = read_surface(full, "random_swa"), read_surface(part, "random_swa")
    for m in METRICS:
        np.testing.assert_array_equal(a.values[m], b.values[m])


def test_a_finished_plane_resumes_after_its_trajectory_is_dropped(tiny_run, tmp_path) -> None:
    """A complete surface made with every option asked is kept without resolving its
    points again; asking for another grid needs the (dropped) trajectory and says so."""
    path = _copy(tiny_run, tmp_path, "plane.h5")
    cfg = SurfaceConfig(kind="plane", points=("sgd", "swa", "epoch:1"), grid="-0.5:1.5:3",
                        grid_y="-0.5:1.5:3", test_samples=50)
    compute_surface(path, cfg, name="plane", log=lambda _: None)
    before = read_surface(path, "plane").values["train_loss"].copy()
    with h5py.File(path, "a") as f:
        del f["trajectories"]
    logs: list[str] = []
    assert compute_surface(path, cfg, name="plane", log=logs.append) == "plane"
    assert logs == ["surface 'plane' is already complete for this config; nothing to do"]
    np.testing.assert_array_equal(read_surface(path, "plane").values["train_loss"], before)
    with pytest.raises(UserError, match="recorded no trajectory"):
        compute_surface(path, dataclasses.replace(cfg, grid="-0.5:1.5:4"), name="plane",
                        log=lambda _: None)


def test_surfaces_and_measure_give_the_model_back_in_its_own_mode() -> None:
    """A model in train() mode (one submodule in eval()) comes back in that mode from
    every surface kind and from measure; the surfaces left it in eval() mode."""
    import landscape as ls

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(8, 3))
    net.train()
    net[3].eval()
    modes = [m.training for m in net.modules()]
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    layout = ls.ParamLayout.from_module(net)
    points = [layout.read(net) + 0.1 * torch.randn(layout.numel) for _ in range(3)]
    with torch.no_grad():
        base = float(F.cross_entropy(net.eval()(x), y))
    net.train()
    net[3].eval()
    surfaces = {
        "random": lambda: ls.random_surface(net, (x, y), grid="-1:1:3"),
        "line": lambda: ls.line_surface(net, net, points[0], (x, y), grid="0:1:2"),
        "plane": lambda: ls.plane_surface(net, net, points[0], points[1], (x, y),
                                          grid="0:1:2"),
        "pca": lambda: ls.pca_surface(net, points, (x, y), dim=1, grid="-1:1:3"),
        "measure": lambda: ls.measure(net, (x, y), "hessian", top_k=1),
        "bad grid": lambda: ls.random_surface(net, (x, y), dim=3),
    }
    for kind, make in surfaces.items():
        try:
            out = make()
        except UserError:
            out = None
        assert [m.training for m in net.modules()] == modes, kind
        if kind == "random":  # the centre is the eval-mode loss (dropout off)
            assert out.values["train_loss"][1, 1] == pytest.approx(base, rel=1e-6)


def test_an_interrupted_surface_keeps_its_computed_points(monkeypatch) -> None:
    import landscape as ls
    import landscape.surface as surf

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).train()
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    before = [p.detach().clone() for p in net.parameters()]
    full = ls.random_surface(net, (x, y), grid="-1:1:3", seed=2)
    real, calls = surf.point_values, []

    def stops_at_the_fifth(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(surf, "point_values", stops_at_the_fifth)
    with pytest.raises(KeyboardInterrupt) as e:  # Ctrl-C still stops the caller
        ls.random_surface(net, (x, y), grid="-1:1:3", seed=2)
    assert isinstance(e.value, ls.SurfaceInterrupted)
    part = e.value.surface
    assert int(part.computed.sum()) == 4
    assert str(e.value).startswith("surface interrupted after 4 of 9 points")
    done = part.computed
    for m in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(part.values[m][done], full.values[m][done])
        assert np.isnan(part.values[m][~done]).all()
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))
    assert net.training
