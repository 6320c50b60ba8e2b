"""One-line errors of SWAG, FGE and the ensemble average (and the numbers they keep)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import landscape as ls
from landscape._errors import UserError
from landscape.params import ParamLayout
from landscape.posterior import fge, fge_learning_rate, swag_moments
from landscape.posterior.ensemble import EnsembleAverage


def _setup(seed: int = 0) -> tuple[nn.Module, tuple, tuple, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    X, Y = torch.randn(200, 10), torch.randint(0, 3, (200,))
    Xt, Yt = torch.randn(120, 10), torch.randint(0, 3, (120,))
    w0 = ParamLayout.from_module(net).read(net)
    iterates = w0 + 0.05 * torch.randn(6, w0.numel())
    return net, (X, Y), (Xt, Yt), iterates


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


# =========================================================================== item 1
def test_ensemble_average_refuses_members_whose_targets_differ() -> None:
    e = EnsembleAverage()
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    e.add(p, torch.tensor([0, 1]))
    e.add(p, torch.tensor([0, 1]))
    with pytest.raises(UserError) as err:
        e.add(p.flip(0), torch.tensor([1, 0]))
    assert "shuffle=False" in _one_line(err)
    assert "keep_bytes" in str(err.value)
    assert e.members == 2  # the refused member is not averaged in
    torch.testing.assert_close(e.probs, p.double())


def test_swag_bma_of_a_shuffled_streamed_loader_is_refused() -> None:
    net, train, (Xt, Yt), it = _setup()
    mom = swag_moments(it)
    loader = DataLoader(TensorDataset(Xt, Yt), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(1))
    ev = ls.Evaluator(net, train, loader, keep_bytes=0)
    with pytest.raises(UserError) as err:
        ls.swag_bma(ev, mom, 3)
    assert "shuffle=False" in _one_line(err)
    # kept in memory (the default), the shuffled loader gives the tensors' numbers
    ref = ls.swag_bma(ls.Evaluator(net, train, (Xt, Yt)), mom, 3)
    got = ls.swag_bma(ls.Evaluator(net, train, loader), mom, 3)
    assert got.acc.tolist() == pytest.approx(ref.acc.tolist())
    assert got.nll.tolist() == pytest.approx(ref.nll.tolist(), rel=1e-9)


def test_fge_keeps_a_shuffled_test_loader_in_memory_so_its_members_agree() -> None:
    net, train, (Xt, Yt), _ = _setup()
    w0 = ParamLayout.from_module(net).read(net)
    kw = {"snapshots": 3, "cycle": 2, "batch_size": 50, "alpha1": 0.1, "alpha2": 0.01}
    ref = fge(net, w0, train, (Xt, Yt), **kw)
    loader = DataLoader(TensorDataset(Xt, Yt), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(1))
    got = fge(net, w0, train, loader, **kw)
    for k in ("ensemble_acc", "ensemble_nll", "swa_acc"):
        assert got.history[k].tolist() == pytest.approx(ref.history[k].tolist(),
                                                         rel=1e-9), k
    assert math.isfinite(got.history["ensemble_nll"][-1])


# =========================================================================== item 2
@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -0.5])
def test_swag_bma_refuses_a_non_finite_or_negative_scale_before_sampling(
        scale: float) -> None:
    net, train, test, it = _setup()
    ev = ls.Evaluator(net, train, test)
    done: list[int] = []
    with pytest.raises(UserError, match="scale must be finite and >= 0") as err:
        ls.swag_bma(ev, swag_moments(it), 3, scale=scale, on_sample=done.append)
    _one_line(err)
    assert done == []


@pytest.mark.parametrize("part", ["mean", "sq_mean", "deviations"])
def test_swag_bma_refuses_moments_holding_nan(part: str) -> None:
    net, train, test, it = _setup()
    mom = swag_moments(it)
    bad = dict(mean=mom.mean.clone(), sq_mean=mom.sq_mean.clone(),
               deviations=mom.deviations.clone())
    bad[part].view(-1)[3] = float("nan")
    nan_mom = ls.SwagMoments(bad["mean"], bad["sq_mean"], bad["deviations"],
                             mom.n_collected, mom.rank)
    done: list[int] = []
    with pytest.raises(UserError, match="NaN/inf") as err:
        ls.swag_bma(ls.Evaluator(net, train, test), nan_mom, 3, on_sample=done.append)
    _one_line(err)
    assert done == []
    with pytest.raises(UserError, match="NaN/inf"):
        ls.swag_sample(nan_mom, torch.Generator().manual_seed(0))


def test_valid_scales_give_the_same_draws_as_before() -> None:
    _, _, _, it = _setup()
    mom = swag_moments(it)
    a = ls.swag_sample(mom, torch.Generator().manual_seed(3), scale=0.25)
    b = ls.swag_sample(mom, torch.Generator().manual_seed(3), scale=np.float32(0.25))
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(mom.mean.numel(), generator=g, dtype=torch.float64)
    z2 = torch.randn(mom.num_deviations, generator=g, dtype=torch.float64)
    ref = mom.mean + 0.5 * (mom.variance.sqrt() * z1 + mom.deviations.double().T @ z2
                            / math.sqrt(mom.num_deviations - 1))
    torch.testing.assert_close(a, ref.float())
    torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_fge_refuses_non_finite_start_weights_before_training() -> None:
    net, train, test, _ = _setup()
    w = ParamLayout.from_module(net).read(net)
    w[5] = float("nan")
    seen: list[object] = []
    with pytest.raises(UserError) as err:
        fge(net, w, train, test, snapshots=2, cycle=1, batch_size=50,
            on_snapshot=seen.append)
    msg = _one_line(err)
    assert "starting weights hold 1 NaN/inf" in msg
    assert "alpha1" not in msg
    assert seen == []


# =========================================================================== item 3
def test_swag_bma_records_the_rank_it_used_not_the_one_asked() -> None:
    net, train, test, it = _setup()
    mom = swag_moments(it[:5], rank=20)  # 5 deviations kept
    ev = ls.Evaluator(net, train, test)
    big = ls.swag_bma(ev, mom, 3, rank=100)
    assert big.attrs["rank"] == 5
    assert ls.swag_bma(ev, mom, 3, rank=2).attrs["rank"] == 2
    ref = ls.swag_bma(ev, mom, 3)  # all kept: the same numbers as a rank above them
    assert ref.attrs["rank"] == 5
    assert big.nll.tolist() == ref.nll.tolist()
    assert mom.with_rank(100).rank == 20
    assert mom.with_rank(3).rank == 3
    assert mom.with_rank(3).num_deviations == 3
    with pytest.raises(UserError, match=r"rank \(--rank\) must be an integer") as err:
        ls.swag_bma(ev, mom, 3, rank=2.5)
    _one_line(err)


# =========================================================================== item 4
def test_swag_bma_argument_types_are_one_line_errors_before_sampling() -> None:
    net, train, test, it = _setup()
    mom = swag_moments(it)
    ev = ls.Evaluator(net, train, test)
    done: list[int] = []
    cases = [((ev, it, 3), {}, r"ls\.swag_moments"),
             ((net, mom, 3), {}, r"takes an Evaluator.*ls\.Evaluator\(model"),
             ((ev, mom, 3), {"seed": None}, r"seed \(--seed\) must be an integer"),
             ((ev, mom, 2.5), {}, r"samples \(--samples\) must be an integer"),
             ((ev, mom, "3"), {}, r"samples \(--samples\) must be an integer"),
             ((ev, mom, 0), {}, r"samples \(--samples\) must be >= 1")]
    for args, kw, match in cases:
        with pytest.raises(UserError, match=match) as err:
            ls.swag_bma(*args, on_sample=done.append, **kw)
        _one_line(err)
    assert done == []
    with pytest.raises(TypeError, match=r"ls\.swag_moments"):
        ls.swag_sample(it)
    # a valid numpy integer seed and sample count give the int's numbers
    a = ls.swag_bma(ev, mom, np.int64(2), seed=np.int64(4))
    b = ls.swag_bma(ev, mom, 2, seed=4)
    assert a.nll.tolist() == b.nll.tolist()
    assert a.acc.tolist() == b.acc.tolist()


def test_swag_grid_and_directions_refuse_bad_span_points_and_dim() -> None:
    _, _, _, it = _setup()
    mom = swag_moments(it)
    n = mom.mean.numel()
    for span in (0, -1, float("nan")):
        with pytest.raises(UserError, match="span") as err:
            ls.swag_grid(mom, span=span)
        _one_line(err)
    with pytest.raises(UserError, match=rf"point 'sgd' must be a flat \({n},\)") as err:
        ls.swag_grid(mom, points={"sgd": torch.zeros(n - 1)})
    _one_line(err)
    with pytest.raises(UserError, match="trajectory") as err:
        ls.swag_grid(mom, trajectory=torch.zeros(3, n + 2))
    _one_line(err)
    for dim in (0, -1):
        with pytest.raises(UserError, match=r"dim \(--dim\) must be >= 1") as err:
            ls.swag_directions(mom, dim)
        _one_line(err)
    # valid input: the same grid and the point's coordinates along the directions
    g = ls.swag_grid(mom, span=2.0, points={"sgd": it[0]})
    d, std = ls.swag_directions(mom, 2)
    assert g.x[-1] == pytest.approx(2.0 * float(std[0]))
    np.testing.assert_allclose(g.points["sgd"],
                               [float((it[0].double() - mom.mean) @ d[i]) for i in (0, 1)])


# =========================================================================== item 5
def test_fge_train_inputs_the_model_cannot_take_are_one_line() -> None:
    net, (X, Y), test, _ = _setup()
    w = ParamLayout.from_module(net).read(net)
    with pytest.raises(UserError, match=r"cannot take inputs of shape \(50, 7\)") as err:
        fge(net, w, (X[:, :7], Y), test, snapshots=2, cycle=1, batch_size=50)
    _one_line(err)


def test_fge_refuses_start_buffers_of_a_model_without_batchnorm() -> None:
    net, train, test, _ = _setup()
    w = ParamLayout.from_module(net).read(net)
    with pytest.raises(UserError, match="no BatchNorm buffers") as err:
        fge(net, w, train, test, snapshots=2, cycle=1, batch_size=50,
            start_buffers=torch.zeros(5))
    _one_line(err)
    # an empty buffer vector (what a run file stores for such a model) is accepted
    a = fge(net, w, train, test, snapshots=2, cycle=1, batch_size=50,
            start_buffers=torch.zeros(0))
    b = fge(net, w, train, test, snapshots=2, cycle=1, batch_size=50)
    assert a.history["ensemble_nll"].tolist() == b.history["ensemble_nll"].tolist()
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    wb = ParamLayout.from_module(bn).read(bn)
    with pytest.raises(UserError, match="start_buffers has shape") as err:
        fge(bn, wb, train, test, snapshots=2, cycle=1, batch_size=50,
            start_buffers=torch.zeros(5))
    _one_line(err)


def test_fge_refuses_a_cycle_of_one_step() -> None:
    net, train, test, _ = _setup()
    w = ParamLayout.from_module(net).read(net)
    with pytest.raises(UserError, match="needs at least 2 steps") as err:
        fge(net, w, train, test, snapshots=3, cycle=1, batch_size=200)
    _one_line(err)
    # two steps per cycle: alpha2 at each snapshot, alpha1 in between
    assert [fge_learning_rate(i, 2, 0.1, 0.01) for i in range(4)] == [0.01, 0.1, 0.01, 0.1]
    res = fge(net, w, train, test, snapshots=3, cycle=2, batch_size=200, alpha1=0.1,
              alpha2=0.01)
    assert res.history["lr"].tolist() == [0.01, 0.01, 0.01]
    assert res.history["epoch"].tolist() == [1.0, 3.0, 5.0]


# =========================================================================== item 6
@pytest.fixture
def plotted_run(run_copy: Path) -> Path:
    """A run file holding a SWAG evaluation and an FGE ensemble of a small MLP."""
    from landscape import store
    from landscape.posterior import solution_metrics

    net, train, test, it = _setup()
    ev = ls.Evaluator(net, train, test)
    mom = swag_moments(it)
    bma = ls.swag_bma(ev, mom, 2)
    states: list[object] = []
    fge(net, it[0], train, test, snapshots=2, cycle=1, batch_size=50,
        on_snapshot=states.append)
    with store.edit_run(run_copy) as f:
        store.write_swag_evaluation(f, bma, {"swa": solution_metrics(ev, mom.mean.float())},
                                    {})
        store.init_fge(f, "fge", {})
        store.write_fge_state(f, "fge", states[-1], complete=True)
    return run_copy


def test_plot_swag_samples_and_fge_validate_the_metric_and_label_it(
        plotted_run: Path) -> None:
    import matplotlib.pyplot as plt

    from landscape import store

    with store.open_run(plotted_run) as f:
        curves = store.read_swag_evaluation(f)["curves"]
    before = plt.get_fignums()
    fig, ax = ls.plot_swag_samples(plotted_run, "ece")
    assert ax.get_ylabel() == "test expected calibration error"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curves["ece"])
    plt.close(fig)
    fig, ax = ls.plot_swag_samples(plotted_run, "acc")
    assert ax.get_ylabel() == "test accuracy (%)"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 100 * curves["acc"])
    plt.close(fig)
    with pytest.raises(UserError, match=r"no metric 'loss'.*'acc', 'nll', 'ece'") as err:
        ls.plot_swag_samples(plotted_run, "loss")
    _one_line(err)
    h = store.read_fge(plotted_run)["history"]
    fig, ax = ls.plot_fge(plotted_run, metric="ece")
    assert ax.get_ylabel() == "test expected calibration error"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), h["ensemble_ece"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), h["swa_ece"])
    assert "snapshot alone" not in [ln.get_label() for ln in ax.lines]
    plt.close(fig)
    fig, ax = ls.plot_fge(plotted_run, metric="nll")
    np.testing.assert_allclose(ax.lines[2].get_ydata(), h["snapshot_nll"])
    assert ax.get_ylabel() == "test NLL (nats)"
    plt.close(fig)
    for metric in ("loss", None):
        with pytest.raises(UserError, match="stores no metric") as err:
            ls.plot_fge(plotted_run, metric=metric)
        _one_line(err)
    assert plt.get_fignums() == before


def test_plot_fge_and_swag_samples_close_their_figure_when_drawing_fails(
        plotted_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from landscape import plot

    def boom(path: object) -> str:
        raise UserError("unreadable title")

    monkeypatch.setattr(plot, "file_title", boom)
    before = plt.get_fignums()
    for call in (lambda: ls.plot_fge(plotted_run), lambda: ls.plot_swag_samples(plotted_run)):
        with pytest.raises(UserError, match="unreadable title"):
            call()
    assert plt.get_fignums() == before
    fig, ax = plt.subplots()  # a caller's axes are left to the caller
    with pytest.raises(UserError, match="unreadable title"):
        ls.plot_fge(plotted_run, ax=ax)
    assert plt.fignum_exists(fig.number)
    plt.close(fig)
