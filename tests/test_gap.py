"""Train–test gap: minima along a line, the shift, per-solution and trajectory gaps."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from landscape._errors import UserError
from landscape.cli import main
from landscape.data import TensorData
from landscape.evaluate import Evaluator
from landscape.gap import line_gap, metric_gaps, minimum_location, train_test_shift
from landscape.jobs import load_run_model, measure_gap
from landscape.store import open_run, read_solution, solution_attrs

T = np.linspace(-0.5, 1.5, 21)


# =========================================================================== pure maths
@pytest.mark.parametrize("centre", [0.8, 0.83, -0.27, 1.349])
def test_parabola_refinement_is_exact_for_quadratics(centre: float) -> None:
    assert minimum_location(T, 3 * (T - centre) ** 2 + 1) == pytest.approx(centre, abs=1e-12)
    assert minimum_location(T, (T - centre) ** 2, refine=False) == pytest.approx(
        T[np.argmin(np.abs(T - centre))])


def test_minimum_location_plateau_edge_and_nan() -> None:
    err = np.where(np.abs(T - 1.0) < 0.25, 0.1, 0.3)  # plateau on t = 0.8 ... 1.2
    assert minimum_location(T, err) == pytest.approx(1.0)
    assert minimum_location(T, T) == -0.5  # minimum at the edge: not extrapolated
    v = (T - 0.3) ** 2
    v[3] = np.nan
    assert minimum_location(T, v) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no finite"):
        minimum_location(T, np.full(21, np.nan))
    v = (T - 0.33) ** 2  # refined to 0.33 by the parabola through t = 0.2, 0.3, 0.4
    assert minimum_location(T, v) == pytest.approx(0.33, abs=1e-12)
    v[7] = np.nan  # a missing neighbour: the grid point, not a parabola through NaN
    assert minimum_location(T, v) == pytest.approx(0.3, abs=1e-12)
    v[7], v[9] = 0.5, np.inf
    assert minimum_location(T, v) == pytest.approx(0.3, abs=1e-12)


def test_train_test_shift_constructed_curves() -> None:
    s = train_test_shift(T, 0.02 + (T - 0.8) ** 2, 0.1 + 0.5 * (T - 1.1) ** 2,
                         distance=3.0)
    assert s.t_train == pytest.approx(0.8, abs=1e-12)
    assert s.t_test == pytest.approx(1.1, abs=1e-12)
    assert s.shift_t == pytest.approx(0.3, abs=1e-12)
    assert s.shift == pytest.approx(0.9, abs=1e-12)
    back = train_test_shift(T, (T - 1.1) ** 2, (T - 0.8) ** 2, distance=3.0)
    assert back.shift == pytest.approx(-0.9, abs=1e-12)


# =========================================================================== constructed model
class _Bump(nn.Module):
    """Logits [-(w - x)^2, -c]: class 0 wins iff |w - x| < sqrt(c); ``u`` is unused."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.u = nn.Parameter(torch.zeros(()))
        self.c = c

    def forward(self, x: Tensor) -> Tensor:
        z0 = -((self.w - x[:, 0]) ** 2) + 0 * self.u
        return torch.stack([z0, torch.full_like(z0, -self.c)], 1)


def test_line_gap_recovers_a_known_shift_through_the_evaluator() -> None:
    """Train samples at x = 0.8 (loss minimal at w = 0.8); test samples at
    x = 1.0, 1.1, 1.2 with a window of 0.15 (error minimal only at w = 1.1).
    The line from (0, 0) to (1, 1) has w = t and length sqrt(2)."""
    x_train = torch.full((6, 1), 0.8)
    x_test = torch.tensor([[1.0], [1.1], [1.2]])
    data = TensorData("bump", x_train, torch.zeros(6, dtype=torch.long), x_test,
                      torch.zeros(3, dtype=torch.long), 2)
    ev = Evaluator(_Bump(0.15**2), *data.splits())
    a, b = torch.zeros(2), torch.ones(2)
    r = line_gap(ev, a, b, T)
    assert r.shift.t_train == pytest.approx(0.8, abs=1e-6)
    assert r.shift.t_test == pytest.approx(1.1, abs=1e-6)
    assert r.shift.distance == pytest.approx(math.sqrt(2))
    assert r.shift.shift == pytest.approx(0.3 * math.sqrt(2), abs=1e-5)
    assert r.metrics["test_err"][T.round(6) == 1.1][0] == 0.0
    assert r.metrics["test_err"][T.round(6) == 0.8][0] == 1.0
    np.testing.assert_allclose(r.metrics["loss_gap"],
                               r.metrics["test_loss"] - r.metrics["train_loss"])
    end = ev.evaluate(b)
    assert r.metrics["train_loss"][15] == pytest.approx(end["train"].loss, rel=1e-6)
    with pytest.raises(UserError, match="identical"):
        line_gap(ev, a, a, T)


# =========================================================================== run files
@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    p = tmp_path / "run.h5"
    shutil.copyfile(tiny_run, p)
    return p


def test_solution_gap_is_test_minus_train_of_stored_metrics(run_copy: Path) -> None:
    with open_run(run_copy) as f:
        stored = solution_attrs(f)
    assert set(stored) == {"sgd", "swa", "swa_last"}
    for a in stored.values():
        g = metric_gaps(a)
        assert g["loss_gap"] == a["test_loss"] - a["train_loss"]
        assert g["err_gap"] == pytest.approx(a["train_acc"] - a["test_acc"], abs=1e-15)


def test_metric_gaps_names_the_keys_it_needs() -> None:
    """``metric_gaps({"train_loss": 0.1})`` returned NaN gaps without a word."""
    need = "metric_gaps needs train_loss, test_loss, train_acc, test_acc; missing "
    fix = (": pass a solution's stored metrics (store.solution_attrs), NaN accuracies "
           "for a regression model")
    for bad, err, message in [
            ({"train_loss": 0.1}, ValueError, need + "test_loss, train_acc, test_acc" + fix),
            ({"train_loss": 0.1, "test_loss": 0.4}, ValueError,
             need + "train_acc, test_acc" + fix),
            ([0.1, 0.4], TypeError, "metric_gaps takes a mapping of train_loss, test_loss, "
             "train_acc, test_acc, got list"),
            ({"train_loss": "a", "test_loss": 0.4, "train_acc": 1.0, "test_acc": 0.9},
             TypeError, "metric_gaps needs numbers, got train_loss='a'")]:
        with pytest.raises(err) as e:
            metric_gaps(bad)
        assert isinstance(e.value, UserError)
        assert str(e.value) == message
    g = metric_gaps({"train_loss": 0.1, "test_loss": 0.4, "train_acc": 1.0,
                     "test_acc": math.nan})
    assert g["loss_gap"] == pytest.approx(0.3)
    assert g["train_err"] == 0.0
    assert math.isnan(g["err_gap"])


def test_measure_gap_stores_line_trajectories_and_solutions(run_copy: Path) -> None:
    logs: list[str] = []
    out = measure_gap(run_copy, log=logs.append)
    model, data = load_run_model(run_copy)
    with h5py.File(run_copy) as f:
        g = f["measures/gap"]
        np.testing.assert_allclose(g["line/t"][()], T)
        assert g.attrs["bn"] == "recompute"  # the mnist1d CNN has BatchNorm
        assert g.attrs["shift"] == pytest.approx(g.attrs["shift_t"] * g.attrs["distance"])
        t_train = minimum_location(T, g["line/train_loss"][()])
        assert g.attrs["t_train_min"] == pytest.approx(t_train)
        for name in f["solutions"]:
            a = f["solutions"][name].attrs
            assert g[f"solutions/{name}"].attrs["loss_gap"] == pytest.approx(
                a["test_loss"] - a["train_loss"])
        for run in ("sgd", "swa"):
            n_rec = f[f"trajectories/{run}/weights"].shape[0]
            tr = g[f"trajectories/{run}"]
            assert tr["loss_gap"].shape == (n_rec,)
            np.testing.assert_array_equal(tr["epoch"][()], f[f"trajectories/{run}/epoch"][()])
        # the last SGD trajectory point is the SGD solution (same weights and BN stats)
        assert g["trajectories/sgd/test_loss"][-1] == pytest.approx(
            f["solutions/sgd"].attrs["test_loss"], rel=1e-5)
        with open_run(run_copy) as r:
            sgd, swa = read_solution(r, "sgd"), read_solution(r, "swa")
    ev = Evaluator(model, *data.splits())  # recompute BN, as along the line
    assert out["line"].metrics["test_err"][5] == pytest.approx(  # t = 0: SGD
        ev.evaluate(sgd.weights)["test"].err)
    assert out["line"].shift.distance == pytest.approx(
        float((swa.weights.double() - sgd.weights.double()).norm()))
    assert any("shift" in line for line in logs)


def test_a_gap_stored_as_asked_is_read_back_not_recomputed(
        run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import landscape.jobs.gap as job

    first = measure_gap(run_copy, grid="-0.5:1.5:7")
    evaluated: list[str] = []
    monkeypatch.setattr(job, "line_gap", lambda *a, **k: evaluated.append("line"))
    monkeypatch.setattr(job, "trajectory_gaps", lambda *a, **k: evaluated.append("traj"))
    read = job.store.trajectory_of
    monkeypatch.setattr(job.store, "trajectory_of",
                        lambda *a: (evaluated.append("read trajectory"), read(*a))[1])
    logs: list[str] = []
    again = measure_gap(run_copy, grid="-0.5:1.5:7", log=logs.append)
    assert evaluated == []
    assert again["line"].shift == first["line"].shift  # the same refined minima
    assert again["line"].shift_ce == first["line"].shift_ce
    for k, v in first["line"].metrics.items():
        np.testing.assert_array_equal(again["line"].metrics[k], v)
    for run, arrays in first["trajectories"].items():
        for k, v in arrays.items():
            np.testing.assert_array_equal(again["trajectories"][run][k], v)
    assert any("shift" in line for line in logs)  # the CLI still prints its summary
    # another grid, l2, BN mode, set of trajectories or endpoint is computed anew
    for kw in ({"grid": "-0.5:1.5:5"}, {"grid": "-0.5:1.5:7", "l2": 0.0},
               {"grid": "-0.5:1.5:7", "bn": "keep"},
               {"grid": "-0.5:1.5:7", "trajectories": False},
               {"grid": "-0.5:1.5:7", "b": "swa_last"}):
        evaluated.clear()
        with pytest.raises(AttributeError):  # the stub returns None
            measure_gap(run_copy, **kw)
        assert evaluated, kw


def test_cli_gap(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gap", str(run_copy), "--quiet", "--no-trajectories", "--grid",
                 "-0.5:1.5:11"]) == 0
    assert "regularized train loss (l2 0.0005) minimum at t=" in capsys.readouterr().out
    with h5py.File(run_copy) as f:
        assert f["measures/gap/line/t"].shape == (11,)
        assert len(f["measures/gap/trajectories"]) == 0
    assert main(["gap", str(run_copy), "--grid", "0:1:2"]) == 2
    assert main(["gap", str(run_copy), "--to", "nope"]) == 2
    err = capsys.readouterr().err
    assert "at least 3 increasing t values" in err
    assert "no solution 'nope'" in err


def _regularized_loss(model: nn.Module, data, theta: Tensor, wd: float) -> float:
    """CE of the train split at ``theta`` with BN statistics recomputed, + wd/2 ||θ||²,
    written here with plain torch calls (the test's own reference)."""
    from torch.optim.swa_utils import update_bn

    from landscape.params import ParamLayout

    m = __import__("copy").deepcopy(model)
    ParamLayout.from_module(m).write(m, theta)
    update_bn([data.x_train], m)
    m.eval()
    with torch.no_grad():
        ce = float(nn.functional.cross_entropy(m(data.x_train), data.y_train).double())
    return ce + 0.5 * wd * float(theta.double().pow(2).sum())


def test_line_train_loss_is_l2_regularized_with_the_runs_weight_decay(run_copy: Path
                                                                      ) -> None:
    from landscape.jobs import SurfaceConfig, compute_surface
    from landscape.store import read_surface, run_config

    wd = run_config(run_copy)["wd"]
    assert wd > 0
    out = measure_gap(run_copy, grid="-0.5:1.5:5", trajectories=False)
    model, data = load_run_model(run_copy)
    with open_run(run_copy) as f:
        a, b = read_solution(f, "sgd").weights, read_solution(f, "swa").weights
    line = out["line"]
    assert line.l2 == wd
    for i, t in enumerate(line.t):
        theta = (a.double() + t * (b.double() - a.double())).float()
        assert line.metrics["train_loss"][i] == pytest.approx(
            _regularized_loss(model, data, theta, wd), rel=1e-6)
        assert line.metrics["train_ce"][i] == pytest.approx(
            _regularized_loss(model, data, theta, 0.0), rel=1e-6)
    with h5py.File(run_copy) as f:
        assert f["measures/gap"].attrs["l2"] == wd
        np.testing.assert_allclose(f["measures/gap/line/train_loss"][()],
                                   line.metrics["train_loss"])
    name = compute_surface(run_copy, SurfaceConfig(kind="line", grid="0:1:3", distance=False),
                           log=lambda _: None)
    s = read_surface(run_copy, name)
    assert s.attrs["l2"] == wd  # line surfaces default to the run's weight decay
    for i, t in enumerate(s.grid.x):
        theta = (a.double() + t * (b.double() - a.double())).float()
        assert s.values["train_loss"][i] == pytest.approx(
            _regularized_loss(model, data, theta, wd), rel=1e-6)
    assert main(["surface", str(run_copy), "--kind", "line", "--l2", "x", "--name", "z"]) == 2


def test_line_gap_names_model_endpoints_and_an_empty_grid() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    ev = Evaluator(net, (x, y), (x, y))
    a = ev.layout.read(net)
    with pytest.raises(TypeError, match=r"^line_gap's endpoint a must be a flat weight "
                                        r"vector, got Sequential; .*layout.read\(model\)"):
        line_gap(ev, net, a, [0.0, 1.0])
    for t in ([], [0.0, float("nan")], [0.0]):  # one point has no minimum to locate
        with pytest.raises(UserError, match=r"^line_gap needs t as a 1-D increasing "
                                            r"sequence of at least 2 distinct finite"):
            line_gap(ev, a, a + 1.0, t)
    two = line_gap(ev, a, a + 1.0, [0.0, 1.0])
    assert two.metrics["train_loss"].shape == (2,)
