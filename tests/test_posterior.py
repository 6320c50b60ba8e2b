"""SWAG and FGE: moments, sampling, calibration, ensembles, storage, CLI, bad input."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import landscape as ls
from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.config import FGEConfig, TrainConfig
from landscape.params import ParamLayout
from landscape.posterior import (
    SwagCollector,
    expected_calibration_error,
    fge,
    fge_learning_rate,
    is_snapshot_step,
    predictive_metrics,
    swag_moments,
    swag_sample,
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference_moments(W: np.ndarray, rank: int) -> tuple[np.ndarray, ...]:
    """SWAG's moments written out in numpy: running mean, deviations from it."""
    W = W.astype(np.float64)
    mean = np.zeros(W.shape[1])
    devs = []
    for i, w in enumerate(W, start=1):
        mean = mean + (w - mean) / i
        devs.append(w - mean)
    sq = (W**2).mean(0)
    return W.mean(0), sq, np.array(devs[len(devs) - min(rank, len(devs)):])


@pytest.fixture(scope="module")
def swag_run_file(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainConfig
                  ) -> Path:
    """The tiny run trained with ``--swag`` (rank 2: fewer than the 4 iterates)."""
    from landscape.train import train

    out = tmp_path_factory.mktemp("swag") / "swag.h5"
    train(tiny_config.replace(swag=True, swag_rank=2), out, progress=False,
          log=lambda _: None)
    return out


# =========================================================================== moments
def test_swag_moments_collected_in_training_equal_the_recorded_iterates(
        swag_run_file: Path) -> None:
    from landscape.jobs.posterior import trajectory_swag

    with store.open_run(swag_run_file) as f:
        m = store.read_swag(f)
        a = store.swag_attrs(f)
        _ep, W, _ = store.checkpoints(f, "swa", (3, 6))  # swa_start 3: epochs 3..6
        swa = store.read_solution(f, "swa").weights
        post_hoc, epochs = trajectory_swag(f, 2)
    assert a["epochs"] == [3, 4, 5, 6] == epochs
    assert m.n_collected == 4
    assert m.rank == 2
    assert m.num_deviations == 2
    mean, sq, dev = _reference_moments(W, 2)
    np.testing.assert_allclose(m.mean.numpy(), mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.sq_mean.numpy(), sq, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.deviations.numpy(), dev, rtol=1e-5, atol=1e-7)
    assert np.abs(dev).max() > 1e-4  # the deviations are not trivially zero
    # the SWA solution (AveragedModel, float32) is the same mean
    torch.testing.assert_close(swa.double(), m.mean, rtol=1e-5, atol=1e-6)
    # collecting post hoc from the trajectory gives the same posterior
    torch.testing.assert_close(post_hoc.mean, m.mean, rtol=0, atol=0)
    torch.testing.assert_close(post_hoc.deviations, m.deviations, rtol=0, atol=0)


def test_collector_resumes_from_its_state_and_keeps_the_last_k() -> None:
    W = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    ref = swag_moments(W, rank=3)
    c = SwagCollector(5, rank=3)
    for w in W[:4]:
        c.collect(w)
    c = SwagCollector.from_state(c.state_dict())
    for w in W[4:]:
        c.collect(w)
    m = c.moments()
    assert torch.equal(m.mean, ref.mean)
    assert torch.equal(m.deviations, ref.deviations)
    _, _, dev = _reference_moments(W.numpy(), 3)
    np.testing.assert_allclose(m.deviations.numpy(), dev, rtol=1e-5, atol=1e-6)


def test_a_state_dict_is_a_snapshot_that_later_collects_leave_alone() -> None:
    c = SwagCollector(2, rank=2)
    for w in ([0.0, 1.0], [2.0, 1.0]):
        c.collect(torch.tensor(w))
    state = c.state_dict()
    c.collect(torch.tensor([4.0, 1.0]))
    assert c.moments().mean.tolist() == [2.0, 1.0]
    assert state["n"] == 2
    assert state["mean"].tolist() == [1.0, 1.0]
    assert state["sq_mean"].tolist() == [2.0, 1.0]
    assert state["ring"].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    m = SwagCollector.from_state(state).moments()
    assert (m.n_collected, m.mean.tolist(), m.sq_mean.tolist(), m.deviations.tolist()) \
        == (2, [1.0, 1.0], [2.0, 1.0], [[0.0, 0.0], [1.0, 0.0]])


def test_collect_checks_its_input_before_changing_the_moments() -> None:
    W = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [4.0, 1.0, 1.0]])
    c = SwagCollector(3, rank=2)
    for w in W:
        c.collect(w)
    for bad, err, match in (
            (torch.zeros(5), UserError, r"^SWAG iterate 3 has 5 entries but the posterior "
             r"has 3: it was made for another model"),
            (torch.zeros(1, 3), UserError, r"^SWAG iterate 3 has shape \(1, 3\); pass one "
             r"flat weight vector"),
            ([0.0, 1.0, 2.0], TypeError, r"^SWAG iterate 3 is a list; pass a flat weight "
             r"vector"),
            (nn.Linear(2, 2), UserError, r"^SWAG iterate 3 has 6 entries but the posterior "
             r"has 3")):
        with pytest.raises(err, match=match) as e:
            c.collect(bad)
        assert isinstance(e.value, UserError)
        assert "\n" not in str(e.value)
        assert c.n == 3
        m = c.moments()
        assert m.mean.tolist() == [2.0, 1.0, 1.0]
        assert m.sq_mean.tolist() == pytest.approx([20 / 3, 1.0, 5 / 3], rel=1e-15)
        assert m.deviations.tolist() == [[1.0, 0.0, -1.0], [2.0, 0.0, 0.0]]
    # a model is read by name, as training flattens it: the same as its flat vector
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[6.0, 1.0]]))
        net.bias.fill_(3.0)
    c.collect(net)
    assert c.n == 4
    assert c.moments().mean.tolist() == [3.0, 1.0, 1.5]


def test_swag_moments_takes_rows_or_models_and_refuses_one_flat_vector() -> None:
    W = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [4.0, 1.0, 1.0]])
    for bad, err, match in (
            (W[0], UserError, r"^SWAG iterates must be rows of a \(T, n\) tensor, got "
             r"shape \(3,\); stack the T flat weight vectors as rows"),
            (W[None], UserError, r"got shape \(1, 3, 3\)"),
            (nn.Sequential(nn.Linear(1, 2)), TypeError, r"^swag_moments got one "
             r"Sequential; pass the SWA iterates as a \(T, n\) tensor"),
            (3.0, TypeError, r"^swag_moments got one float"),
            ([W[0], W[1, :2]], UserError, r"^SWAG iterate 1 has 2 entries but the "
             r"posterior has 3"),
            (["w0"], TypeError, r"^SWAG iterate 0 is a str")):
        with pytest.raises(err, match=match) as e:
            swag_moments(bad, rank=2)
        assert isinstance(e.value, UserError)
        assert "\n" not in str(e.value)
    one = swag_moments(W[None, 0], rank=2)
    assert (one.n_collected, one.mean.tolist()) == (1, [0.0, 1.0, 2.0])
    nets = []
    for w in W:
        net = nn.Linear(2, 1)
        with torch.no_grad():
            net.weight.copy_(w[None, :2])
            net.bias.copy_(w[2:])
        nets.append(net)
    got, want = swag_moments(nets, rank=2), swag_moments(W, rank=2)
    assert got.mean.tolist() == want.mean.tolist() == [2.0, 1.0, 1.0]
    assert got.deviations.tolist() == want.deviations.tolist() == [[1.0, 0.0, -1.0],
                                                                   [2.0, 0.0, 0.0]]


def test_samples_have_the_stored_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 4, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 0.5, 2.0, 0.1], dtype=torch.float64)
    m = swag_moments(W, rank=4)
    C = m.covariance()  # (Sigma_diag + D^T D / (K-1)) / 2
    S = 40_000
    gen = torch.Generator().manual_seed(123)
    X = torch.stack([swag_sample(m, gen).double() for _ in range(S)])
    mu_hat, C_hat = X.mean(0), torch.cov(X.T)
    # standard errors of a Gaussian's sample mean and covariance
    se_mu = (torch.diag(C) / S).sqrt()
    se_C = ((torch.outer(torch.diag(C), torch.diag(C)) + C**2) / S).sqrt()
    assert torch.all((mu_hat - m.mean.double()).abs() < 5 * se_mu + 1e-6)
    assert torch.all((C_hat - C).abs() < 5 * se_C), (C_hat - C) / se_C
    # a sampler without the 1/sqrt(2) would be caught: C is far from 2C in units of se
    assert torch.any((C_hat - 2 * C).abs() > 20 * se_C)


def test_rank_zero_is_swag_diagonal() -> None:
    W = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    m = swag_moments(W, rank=3)
    d = m.with_rank(0)
    assert d.num_deviations == 0
    torch.testing.assert_close(d.covariance(), torch.diag(m.variance) / 2)
    z1 = torch.randn(6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    want = (m.mean + m.variance.sqrt() * z1 / math.sqrt(2)).float()
    got = swag_sample(m, torch.Generator().manual_seed(9), rank=0)
    torch.testing.assert_close(got, want)
    # collected with K = 0 from the start: the same
    c = SwagCollector(6, rank=0)
    for w in W:
        c.collect(w)
    torch.testing.assert_close(swag_sample(c.moments(), torch.Generator().manual_seed(9)),
                               want)
    # the full sampler's diagonal part uses the same z1: it differs by D z2 only
    full = swag_sample(m, torch.Generator().manual_seed(9))
    assert not torch.allclose(full, want)


def test_a_seed_for_a_generator_is_one_line_naming_the_generator_to_pass() -> None:
    """``swag_sample(moments, 0)`` (and ``random_direction(.., generator=0)``) raised
    torch's randn overload TypeError; functions that take a generator take a
    ``torch.Generator``, those that build one take ``seed=``."""
    W = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    m = swag_moments(W, rank=3)
    layout = ParamLayout.from_module(nn.Linear(2, 2))
    for call in (lambda g: swag_sample(m, g),
                 lambda g: ls.random_direction(layout, torch.ones(6), generator=g)):
        for bad, message in [
                (0, "generator must be a torch.Generator or None, got int; pass "
                 "torch.Generator().manual_seed(0)"),
                (7, "generator must be a torch.Generator or None, got int; pass "
                 "torch.Generator().manual_seed(7)"),
                ("x", "generator must be a torch.Generator or None, got str; pass "
                 "torch.Generator().manual_seed(0)")]:
            with pytest.raises(TypeError) as e:
                call(bad)
            assert isinstance(e.value, UserError)
            assert str(e.value) == message
    z1 = torch.randn(6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    want = (m.mean + m.variance.sqrt() * z1 / math.sqrt(2)).float()
    torch.testing.assert_close(swag_sample(m, torch.Generator().manual_seed(7), rank=0),
                               want)


# =========================================================================== calibration
def test_ece_nll_and_accuracy_against_hand_computed_values() -> None:
    p = torch.tensor([[0.95, 0.03, 0.02], [0.85, 0.10, 0.05], [0.55, 0.25, 0.20],
                      [0.45, 0.35, 0.20], [0.31, 0.31, 0.38]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 0, 0])
    m = predictive_metrics(p, y, bins=5)
    # bins of width 0.2: (0.8, 1] holds 0.95 (right) and 0.85 (wrong): |0.5 - 0.9| * 2/5;
    # (0.4, 0.6] holds 0.55 and 0.45 (both right): |1 - 0.5| * 2/5;
    # (0.2, 0.4] holds 0.38 (wrong: predicts class 2): |0 - 0.38| * 1/5
    assert m.ece == pytest.approx(0.4 * 0.4 + 0.5 * 0.4 + 0.38 * 0.2, abs=1e-12)
    assert m.acc == pytest.approx(3 / 5)
    nll = -np.mean(np.log([0.95, 0.10, 0.55, 0.45, 0.31]))
    assert m.nll == pytest.approx(nll, rel=1e-12)
    assert m.count.tolist() == [0, 1, 2, 0, 2]
    assert expected_calibration_error(p, y, bins=5) == pytest.approx(m.ece)


def test_metrics_refuse_logits_targets_out_of_range_and_no_sample() -> None:
    logits = torch.randn(100, 3, generator=torch.Generator().manual_seed(0)) * 5
    y = torch.arange(100) % 3
    for probs, target, match in (
            (logits, y, r"^predictive metrics need class probabilities \(non-negative, "
             r"rows summing to 1\), got values in \[-1.*; pass probabilities, e\.g\. "
             r"logits\.softmax\(-1\)$"),
            (logits.exp(), y, r"need class probabilities.*row sums in"),
            (logits.softmax(-1) * 1.01, y, r"row sums in \[1\.01, 1\.01\]"),
            (logits.softmax(-1), torch.where(y == 2, 7, y),
             r"^class targets must lie in 0\.\.2 for 3 class probabilities, got 0\.\.7; "
             r"relabel the targets"),
            (logits.softmax(-1), y - 1, r"got -1\.\.1"),
            (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
             r"^predictive metrics of 0 samples are undefined")):
        for call in (predictive_metrics, expected_calibration_error):
            with pytest.raises(UserError, match=match) as e:
                call(probs, target)
            assert "\n" not in str(e.value)
    # probabilities in float32 and float16 pass with their own rounding
    for dtype in (torch.float32, torch.float16):
        m = predictive_metrics(logits.to(dtype).softmax(-1), y)
        ref = predictive_metrics(logits.double().softmax(-1), y)
        assert m.acc == ref.acc
        assert m.nll == pytest.approx(ref.nll, rel=1e-2)


def test_calibration_of_a_non_classifier_is_a_one_line_error() -> None:
    with pytest.raises(UserError, match="needs a classifier") as e:
        predictive_metrics(torch.randn(4, 1), torch.randn(4))
    assert "\n" not in str(e.value)
    net = nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    ev = ls.Evaluator(net, (x, y), (x, y), loss=nn.MSELoss())
    m = swag_moments(torch.randn(4, 4), rank=2)
    with pytest.raises(UserError, match="needs a classifier"):
        ls.swag_bma(ev, m, samples=2)


# =========================================================================== FGE
def test_fge_schedule_snapshots_at_alpha2() -> None:
    for period in (4, 5, 6):
        lrs = [fge_learning_rate(i, period, 0.1, 0.001) for i in range(2 * period)]
        snaps = [i for i in range(2 * period) if is_snapshot_step(i, period)]
        assert len(snaps) == 2
        assert all(lrs[i] == pytest.approx(0.001) for i in snaps)
        assert min(lrs) == pytest.approx(0.001)
        assert lrs[period - 1] == pytest.approx(0.1)  # back at alpha1 at a cycle's end


def test_fge_ensemble_is_the_mean_of_its_snapshots_softmax() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(96, 5), torch.randint(0, 3, (96,))
    xt, yt = torch.randn(40, 5), torch.randint(0, 3, (40,))
    layout = ParamLayout.from_module(net)
    w0 = layout.read(net)
    res = fge(net, w0, (x, y), (xt, yt), snapshots=4, cycle=2, batch_size=16,
              alpha1=0.2, alpha2=0.002)
    assert res.snapshots.shape == (4, layout.numel)
    probs = []
    for w in res.snapshots:
        layout.write(net, w)
        with torch.no_grad():
            probs.append(torch.softmax(net(xt).double(), 1))
    mean = torch.stack(probs).mean(0)
    torch.testing.assert_close(res.probs, mean, rtol=1e-6, atol=1e-9)
    acc = float((mean.argmax(1) == yt).double().mean())
    assert res.history["ensemble_acc"][-1] == pytest.approx(acc)
    nll = float(-torch.log(mean[torch.arange(40), yt]).mean())
    assert res.history["ensemble_nll"][-1] == pytest.approx(nll, rel=1e-6)
    # SWA of the same snapshots: the weight average's prediction
    layout.write(net, res.snapshots.double().mean(0).float())
    with torch.no_grad():
        swa_acc = float((net(xt).argmax(1) == yt).double().mean())
    assert res.history["swa_acc"][-1] == pytest.approx(swa_acc)
    assert not torch.equal(res.snapshots[0], res.snapshots[1])
    assert res.history["lr"].tolist() == pytest.approx([0.002] * 4)
    assert res.history["epoch"].tolist() == [1, 3, 5, 7]


def test_fge_of_a_run_file_resumes_after_a_kill(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from landscape.jobs import fge_run

    cfg = FGEConfig(snapshots=3, cycle=2, batch_size=50)
    ref_file = tmp_path / "ref.h5"
    shutil.copy(tiny_run, ref_file)
    ref = fge_run(ref_file, config=cfg)
    out = tmp_path / "killed.h5"
    shutil.copy(tiny_run, out)
    real, calls = store.write_fge_state, []

    def killed_after_two(f: h5py.File, name: str, st: object, **kw: object) -> None:
        calls.append(1)
        if len(calls) == 3:  # killed while storing the third snapshot: that edit is lost
            raise KeyboardInterrupt
        real(f, name, st, **kw)

    monkeypatch.setattr(store, "write_fge_state", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        fge_run(out, config=cfg)
    with store.open_run(out) as f:
        assert store.fge_attrs(f, "fge")["snapshots_done"] == 2
        assert not store.fge_attrs(f, "fge")["complete"]
    monkeypatch.setattr(store, "write_fge_state", real)
    res = fge_run(out, config=cfg)
    assert torch.equal(res.snapshots, ref.snapshots)
    np.testing.assert_array_equal(res.history["ensemble_nll"], ref.history["ensemble_nll"])
    with store.open_run(out) as f:
        a = store.fge_attrs(f, "fge")
    assert a["complete"]
    assert a["snapshots_done"] == 3
    assert a["ensemble_acc"] == pytest.approx(ref.history["ensemble_acc"][-1])


# =========================================================================== CLI
def test_swag_from_trajectory_surface_info_and_plot(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run.h5"
    shutil.copy(tiny_run, run)
    assert main(["swag", str(run), "--from-trajectory", "--swag-rank", "3",
                 "--samples", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "swag: test acc" in out
    assert "sgd: test acc" in out
    with store.open_run(run) as f:
        m = store.read_swag(f)
        ev = store.read_swag_evaluation(f)
        _, W, _ = store.checkpoints(f, "swa", (3, 6))
    np.testing.assert_allclose(m.mean.numpy(), W.astype(np.float64).mean(0), rtol=1e-12)
    assert m.num_deviations == 3
    assert ev["curves"]["acc"].shape == (3,)
    assert set(ev["calibration"]) == {"swag", "swa", "sgd"}
    assert main(["surface", str(run), "--kind", "swag", "--grid", "-1:1:3",
                 "--grid-y", "-1:1:3", "--quiet"]) == 0
    s = store.read_surface(run, "swag_swa")
    assert s.values["train_loss"].shape == (3, 3)
    assert s.complete
    assert main(["info", str(run)]) == 0
    text = capsys.readouterr().out
    assert "swag: 4 iterates, 3 deviation(s)" in text
    assert "swag_swa" in text
    assert main(["plot", str(run), "--all", "--out-dir", str(tmp_path / "fig")]) == 0
    names = {p.name for p in (tmp_path / "fig").iterdir()}
    assert "run_swag_calibration.png" in names
    assert "run_surface_swag_swa_3d.png" in names


def test_bad_input_is_one_line_exit_2_and_keeps_the_file(
        tiny_run: Path, tiny_config: TrainConfig, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    from landscape.train import train

    def error(*argv: str) -> str:
        assert main(list(argv)) == 2
        lines = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
        assert len(lines) == 1
        return lines[0]

    assert "drop swa=False (--no-swa) or swag=True (--swag)" in error(
        "train", "--swag", "--no-swa", "--out", str(tmp_path / "x.h5"), "--quiet")
    assert not (tmp_path / "x.h5").exists()
    run = tmp_path / "run.h5"
    shutil.copy(tiny_run, run)
    before = _digest(run)
    msg = error("swag", str(run), "--quiet")
    assert "holds no SWAG moments" in msg
    assert "--swag" in msg
    assert "--from-trajectory" in msg
    assert "needs SWAG moments" in error("surface", str(run), "--kind", "swag", "--quiet")
    assert "--alpha1" in error("fge", str(run), "--alpha1", "0.001", "--alpha2", "0.01",
                               "--quiet")
    assert "--samples must be >= 1" in error("swag", str(run), "--samples", "0",
                                             "--from-trajectory", "--quiet")
    assert _digest(run) == before
    nosw = tmp_path / "noswa.h5"
    train(tiny_config.replace(swa=False), nosw, progress=False, log=lambda _: None)
    before = _digest(nosw)
    assert "no SWA run" in error("swag", str(nosw), "--from-trajectory", "--quiet")
    assert _digest(nosw) == before


def test_help_explains_the_new_commands(capsys: pytest.CaptureFixture) -> None:
    for cmd, words in (("swag", ("Bayesian model averaging", "--from-trajectory")),
                       ("fge", ("cyclic learning rate", "--alpha1", "--snapshots"))):
        assert main([cmd, "--help"]) == 0
        text = capsys.readouterr().out
        assert all(w in text for w in words)
    assert main(["train", "--help"]) == 0
    assert "--swag-rank" in capsys.readouterr().out


def test_compare_and_plot_report_swag_and_fge(
        swag_run_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run.h5"
    shutil.copy(swag_run_file, run)
    assert main(["swag", str(run), "--samples", "2", "--quiet"]) == 0
    assert main(["fge", str(run), "--snapshots", "2", "--batch-size", "50", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(run)]) == 0
    text = capsys.readouterr().out
    assert "SWAG model average of 2 samples" in text
    assert "| FGE ensemble |" in text
    assert "| SWA of the snapshots |" in text
    with store.open_run(run) as f:
        a = store.fge_attrs(f, "fge")
    assert f"{100 * a['ensemble_acc']:.2f}" in text
    assert main(["plot", str(run), "--all", "--out-dir", str(tmp_path / "fig")]) == 0
    names = {p.name for p in (tmp_path / "fig").iterdir()}
    assert {"run_fge_fge_acc.png", "run_fge_fge_nll.png", "run_swag_samples_nll.png"} <= names


def test_train_with_swag_resumes_to_the_same_moments(
        swag_run_file: Path, tiny_config: TrainConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from landscape import train as train_mod

    real, saves = train_mod._Checkpoint.save, []

    def killed(self: object, obj: dict) -> None:
        real(self, obj)  # type: ignore[arg-type]
        saves.append(1)
        if len(saves) == 6 + 4:  # the whole SGD run, then 4 epochs of the SWA run
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod._Checkpoint, "save", killed)
    out = tmp_path / "resumed.h5"
    cfg = tiny_config.replace(swag=True, swag_rank=2)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, out, progress=False, log=lambda _: None)
    monkeypatch.setattr(train_mod._Checkpoint, "save", real)
    train_mod.train(cfg, out, progress=False, log=lambda _: None)
    with store.open_run(out) as f, store.open_run(swag_run_file) as g:
        a, b = store.read_swag(f), store.read_swag(g)
        assert store.swag_attrs(f)["epochs"] == [3, 4, 5, 6]
    assert torch.equal(a.mean, b.mean)
    assert torch.equal(a.sq_mean, b.sq_mean)
    assert torch.equal(a.deviations, b.deviations)
