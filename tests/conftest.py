"""Shared fixtures: a tiny trained run file (trained once per session) and a copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from landscape.config import TrainConfig

# The tests' models are tiny: one thread is as fast, and it does not collapse when
# the machine is busy (OpenMP threads spin-waiting on 2 loaded cores cost 50x).
torch.set_num_threads(1)

#: A run small enough for every test module to share (about 1 s of training).
TINY = TrainConfig(num_samples=500, epochs=6, swa_start=3, batch_size=50, record_every=1)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    """:data:`TINY` with its own data cache folder."""
    return TINY.replace(data_root=str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: TrainConfig) -> Path:
    """Path of a finished run file (mnist1d-cnn, SGD + SWA, trajectory every epoch)."""
    from landscape.train import train

    out = tmp_path_factory.mktemp("run") / "tiny.h5"
    train(tiny_config, out, progress=False, log=lambda _: None)
    return out


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`tiny_run` that a test may write measures into."""
    p = tmp_path / "run.h5"
    shutil.copyfile(tiny_run, p)
    return p
