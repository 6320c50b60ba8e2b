"""Training: SWA averages, BN statistics, schedules, post-hoc averaging, resumption."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig
from landscape.jobs import load_run_model
from landscape.train import learning_rate, swa_paper_factor, train


def _traj(f: h5py.File, run: str) -> tuple[np.ndarray, np.ndarray]:
    g = f[f"trajectories/{run}"]
    return g["epoch"][()], g["weights"][()]


def test_swa_solution_is_mean_of_averaged_iterates(tiny_run: Path) -> None:
    with h5py.File(tiny_run) as f:
        epoch, w = _traj(f, "swa")
        swa = f["solutions/swa/weights"][()]
        n_avg = int(f["solutions/swa"].attrs["n_averaged"])
    # swa_start 3, cycle 1, 6 epochs: averaged after completed epochs 3, 4, 5, 6
    picked = w[np.isin(epoch, [3, 4, 5, 6])]
    assert n_avg == 4 == len(picked)
    np.testing.assert_allclose(swa, picked.astype(np.float64).mean(0), atol=1e-6, rtol=0)


def test_cyclic_schedule_averages_at_cycle_ends(tmp_path: Path, tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(epochs=7, swa_start=3, cycle=2, schedule="cyclic")
    out = train(cfg, tmp_path / "c.h5", progress=False, log=lambda _: None)
    with h5py.File(out) as f:
        epoch, w = _traj(f, "swa")
        np.testing.assert_allclose(
            f["solutions/swa/weights"][()],
            w[np.isin(epoch, [3, 5, 7])].astype(np.float64).mean(0), atol=1e-6, rtol=0)
        assert f["solutions/swa"].attrs["n_averaged"] == 3


def _manual_bn_stats(model: torch.nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Running mean/var that one full-batch train-mode pass gives, layer by layer."""
    out = []
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.BatchNorm1d):
                dims = (0, 2)
                mean, var_u = x.mean(dims), x.var(dims, unbiased=True)
                out += [mean, var_u]
                var_b = x.var(dims, unbiased=False)
                x = (x - mean[None, :, None]) / torch.sqrt(var_b[None, :, None] + m.eps)
                x = x * m.weight[None, :, None] + m.bias[None, :, None]
            else:
                x = m(x)
    return out


def test_swa_bn_statistics_equal_a_manual_pass(tiny_run: Path) -> None:
    model, data = load_run_model(tiny_run)
    with store.open_run(tiny_run) as f:
        layout, buf_layout = store.layouts(f)
        sol = store.read_solution(f, "swa")
    layout.write(model, sol.weights)
    expected = _manual_bn_stats(model, data.x_train.double().float())
    bufs = buf_layout.unflatten(sol.buffers)
    got = [bufs[n] for n in buf_layout.names if n.endswith(("running_mean", "running_var"))]
    assert len(got) == len(expected) == 6
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=2e-5, rtol=2e-5)


def test_swa_paper_schedule_values() -> None:
    assert [swa_paper_factor(e, 40, 0.01) for e in (0, 20)] == [1.0, 1.0]
    assert math.isclose(swa_paper_factor(28, 40, 0.01), 1 - 0.99 * 0.5)
    assert swa_paper_factor(36, 40, 0.01) == pytest.approx(0.01)
    assert swa_paper_factor(39, 40, 0.01) == 0.01
    cfg = TrainConfig(epochs=40, swa_start=30, lr=0.05, swa_lr=0.01)
    assert learning_rate(cfg, "sgd", 28, 0, 10) == pytest.approx(0.05 * 0.505)
    assert learning_rate(cfg, "swa", 15, 0, 10) == pytest.approx(0.05)
    assert learning_rate(cfg, "swa", 21, 0, 10) == pytest.approx(0.03)  # t = 0.7
    assert learning_rate(cfg, "swa", 27, 0, 10) == pytest.approx(0.01)
    assert learning_rate(cfg, "swa", 35, 3, 10) == pytest.approx(0.01)
    cyc = cfg.replace(schedule="cyclic", cycle=2)
    assert learning_rate(cyc, "swa", 30, 0, 10) == pytest.approx(0.95 * 0.05 + 0.05 * 0.01)
    assert learning_rate(cyc, "swa", 31, 9, 10) == pytest.approx(0.01)
    assert learning_rate(cyc, "swa", 32, 0, 10) == pytest.approx(0.048)
    cos = cfg.replace(sgd_schedule="cosine")
    assert learning_rate(cos, "sgd", 20, 0, 10) == pytest.approx(0.025)


def test_recorded_lr_is_the_schedule(tmp_path: Path, tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(epochs=4, swa_start=2, record_steps=1, record_every=0,
                              schedule="cyclic", cycle=1, eval_every=0)
    out = train(cfg, tmp_path / "lr.h5", progress=False, log=lambda _: None)
    steps = math.ceil(400 / cfg.batch_size)
    with h5py.File(out) as f:
        for run in ("sgd", "swa"):
            g = f[f"trajectories/{run}"]
            step = g["step"][()].astype(int)[1:]  # record 0 is the initial point
            want = [learning_rate(cfg, run, (s - 1) // steps, (s - 1) % steps, steps)
                    for s in step]
            np.testing.assert_allclose(g["lr"][()][1:], want, rtol=1e-12)


def test_post_hoc_average_of_checkpoints(tmp_path: Path, tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(swa=False, sgd_schedule="const", epochs=5,
                              average_epochs="3:5")
    out = train(cfg, tmp_path / "avg.h5", progress=False, log=lambda _: None)
    with h5py.File(out) as f:
        epoch, w = _traj(f, "sgd")
        np.testing.assert_allclose(f["solutions/avg/weights"][()],
                                   w[np.isin(epoch, [3, 4, 5])].astype(np.float64).mean(0),
                                   atol=1e-6, rtol=0)
        assert set(f["solutions"]) == {"sgd", "avg"}
        assert 0 <= f["solutions/avg"].attrs["test_acc"] <= 1


def test_rerun_is_noop_and_other_config_refused(tiny_run: Path, tiny_config: TrainConfig) -> None:
    before = tiny_run.stat().st_mtime_ns
    train(tiny_config, tiny_run, progress=False, log=lambda _: None)
    assert tiny_run.stat().st_mtime_ns == before
    with pytest.raises(UserError, match="another config"):
        train(tiny_config.replace(lr=0.1), tiny_run, progress=False, log=lambda _: None)


def test_divergence_is_a_user_error(tmp_path: Path, tiny_config: TrainConfig) -> None:
    with pytest.raises(UserError, match="diverged"):
        train(tiny_config.replace(lr=1e6, momentum=0.0), tmp_path / "nan.h5",
              progress=False, log=lambda _: None)
    assert not (tmp_path / "nan.h5").exists()


def _cmd(out: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "landscape", "train", "--num-samples", "1000",
            "--epochs", "6", "--swa-start", "4", "--threads", "1", "--quiet",
            "--data-root", str(root), "--out", str(out)]


def test_resume_after_sigkill_gives_identical_weights(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref.h5"
    subprocess.run(_cmd(ref, tmp_path), check=True, env=env)
    out = tmp_path / "killed.h5"
    partial = tmp_path / "killed.h5.partial"
    for marker in ("sgd.pt", "swa.pt"):  # kill once in each run
        proc = subprocess.Popen(_cmd(out, tmp_path), env=env)
        deadline = time.time() + 120
        while not (partial / marker).exists() and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.01)
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not out.exists()
    subprocess.run(_cmd(out, tmp_path), check=True, env=env)
    assert not partial.exists()
    with h5py.File(ref) as a, h5py.File(out) as b:
        for name in ("sgd", "swa", "swa_last"):
            np.testing.assert_array_equal(a[f"solutions/{name}/weights"][()],
                                          b[f"solutions/{name}/weights"][()])
            np.testing.assert_array_equal(a[f"solutions/{name}/buffers"][()],
                                          b[f"solutions/{name}/buffers"][()])
        for run in ("sgd", "swa"):
            np.testing.assert_array_equal(a[f"trajectories/{run}/weights"][()],
                                          b[f"trajectories/{run}/weights"][()])
            np.testing.assert_array_equal(a[f"history/{run}/test_acc"][()],
                                          b[f"history/{run}/test_acc"][()])


def test_init_jitter_moves_the_start_by_its_relative_size(tiny_config) -> None:
    from landscape.config import load_data
    from landscape.params import ParamLayout
    from landscape.train import make_model

    data = load_data(tiny_config)
    a = ParamLayout.from_module(m := make_model(tiny_config, data)).read(m, dtype=torch.float64)
    b_model = make_model(tiny_config.replace(init_jitter=1e-6), data)
    b = ParamLayout.from_module(b_model).read(b_model, dtype=torch.float64)
    rel = ((b - a) / a)[a != 0]
    assert 0.5e-6 < float(rel.abs().mean()) < 1.5e-6  # E|z| = 0.80
    assert torch.equal(make_model(tiny_config, data).state_dict()["0.weight"],
                       m.state_dict()["0.weight"])  # off: the same start as before


def test_progress_bar_counts_an_epoch_before_showing_its_loss(
        tmp_path: Path, tiny_config: TrainConfig, capsys, monkeypatch) -> None:
    import re

    import tqdm.auto

    # a bar that redraws on every update, as slow epochs would
    real = tqdm.auto.tqdm
    monkeypatch.setattr(tqdm.auto, "tqdm",
                        lambda *a, **k: real(*a, **{**k, "mininterval": 0, "miniters": 1}))
    train(tiny_config, tmp_path / "bar.h5", log=lambda _: None)
    frames = [f for f in re.split(r"[\r\n]", capsys.readouterr().err) if "loss=" in f]
    shown = [int(m.group(1)) for f in frames if (m := re.search(r"(\d+)/\d+ \[", f))]
    assert shown
    assert len(shown) == len(frames)
    assert min(shown) >= 1  # a frame with a loss has finished that epoch


def test_config_built_in_python_checks_its_types(tmp_path: Path) -> None:
    for bad, match in ((dict(epochs="3"), r"'epochs' must be int, got '3' \(str\)"),
                       (dict(lr="0.1"), r"'lr' must be float, got '0.1'"),
                       (dict(swa=1), r"'swa' must be bool, got 1")):
        with pytest.raises(UserError, match=match):
            train(TrainConfig(**bad), tmp_path / "t.h5", progress=False, log=lambda _: None)
    assert not (tmp_path / "t.h5").exists()
    assert TrainConfig(lr=1).validate().lr == 1  # an int for a float is fine
