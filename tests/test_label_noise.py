"""``--label-noise`` and ``--model-width`` of ``landscape train``: corrupted train labels
(stored in the run file, test labels untouched) and models of another width."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.config import TrainConfig, load_data, training_data
from landscape.data import corrupt_labels
from landscape.jobs import load_run_model
from landscape.train import train


@pytest.mark.parametrize("p", [0.0, 0.1, 0.25, 0.4, 0.99])
def test_corrupt_labels_changes_exactly_round_p_n(p: float) -> None:
    y = torch.arange(1003) % 10
    y2, noise = corrupt_labels(y, 10, p, seed=3)
    changed = torch.nonzero(y2 != y).flatten()
    assert len(changed) == round(p * len(y))
    assert torch.equal(changed, noise.indices)  # every chosen label really changed
    assert torch.equal(noise.original, y[changed])
    assert torch.equal(noise.noisy, y2[changed])
    assert ((y2 >= 0) & (y2 < 10)).all()
    assert torch.equal(y, torch.arange(1003) % 10)  # the input is not modified


def test_corrupt_labels_is_seeded_and_spreads_over_classes() -> None:
    y = torch.zeros(5000, dtype=torch.int64)
    a, na = corrupt_labels(y, 10, 0.4, seed=7)
    b, _ = corrupt_labels(y, 10, 0.4, seed=7)
    c, _ = corrupt_labels(y, 10, 0.4, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    counts = torch.bincount(na.noisy, minlength=10)
    assert counts[0] == 0  # never the old class
    assert (counts[1:] > 150).all()  # the other nine about equally (2000 / 9 each)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_label_noise_outside_unit_interval_is_refused(p: float) -> None:
    with pytest.raises(UserError, match=r"label_noise \(--label-noise\) must lie in \[0, 1\)"):
        TrainConfig(label_noise=p).validate()
    with pytest.raises(UserError, match="label-noise"):
        corrupt_labels(torch.zeros(4, dtype=torch.int64), 10, p, 0)


def test_training_data_corrupts_train_labels_only(tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(label_noise=0.2, seed=4)
    clean = load_data(cfg)
    noisy, noise = training_data(cfg)
    assert noise is not None
    assert torch.equal(noisy.x_train, clean.x_train)
    assert torch.equal(noisy.x_test, clean.x_test)
    assert torch.equal(noisy.y_test, clean.y_test)
    diff = torch.nonzero(noisy.y_train != clean.y_train).flatten()
    assert len(diff) == round(0.2 * len(clean.y_train))
    assert torch.equal(diff, noise.indices)
    assert noisy.meta["label_noise"] == 0.2
    same, _ = training_data(cfg)
    assert torch.equal(same.y_train, noisy.y_train)  # same seed, same corruption
    assert training_data(cfg.replace(label_noise=0.0))[1] is None


def test_run_file_stores_the_changed_labels(tmp_path: Path, tiny_config: TrainConfig) -> None:
    cfg = tiny_config.replace(label_noise=0.3, epochs=2, swa_start=1, record_every=0)
    out = train(cfg, tmp_path / "noisy.h5", progress=False, log=lambda _: None)
    clean = load_data(cfg)
    noisy, _ = training_data(cfg)
    with store.open_run(out) as f:
        ln = store.read_label_noise(f)
        assert store.data_attrs(f)["label_noise"] == 0.3
    assert ln is not None
    changed = np.flatnonzero((noisy.y_train != clean.y_train).numpy())
    np.testing.assert_array_equal(ln["indices"], changed)
    np.testing.assert_array_equal(ln["original"], clean.y_train.numpy()[changed])
    np.testing.assert_array_equal(ln["noisy"], noisy.y_train.numpy()[changed])
    assert ln["attrs"]["fraction"] == 0.3
    assert ln["attrs"]["seed"] == cfg.seed
    assert ln["attrs"]["n_changed"] == round(0.3 * len(clean.y_train))
    # the noisy run trained on other labels than the clean one: other weights
    ref = train(cfg.replace(label_noise=0.0), tmp_path / "clean.h5", progress=False,
                log=lambda _: None)
    with store.open_run(out) as f, store.open_run(ref) as g:
        assert store.read_label_noise(g) is None
        assert not torch.equal(store.read_solution(f, "sgd").weights,
                               store.read_solution(g, "sgd").weights)
    # the analyses of the noisy run see the labels it trained on
    from landscape.jobs import load_run_model

    _, data = load_run_model(out)
    assert torch.equal(data.y_train, noisy.y_train)
    assert torch.equal(data.y_test, clean.y_test)  # never corrupted


def test_cli_train_with_label_noise(tmp_path: Path, tiny_config: TrainConfig) -> None:
    out = tmp_path / "cli.h5"
    code = main(["train", "--label-noise", "0.2", "--epochs", "2", "--swa-start", "1",
                 "--num-samples", "500", "--batch-size", "50", "--record-every", "0",
                 "--data-root", tiny_config.data_root, "--out", str(out), "--quiet"])
    assert code == 0
    with h5py.File(out, "r") as f:
        assert len(f["data/label_noise/indices"]) == round(0.2 * 400)


def test_cli_refuses_bad_label_noise(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--label-noise", "1.0", "--out", str(tmp_path / "x.h5")]) == 2
    assert "label_noise (--label-noise) must lie in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize(("model", "kwarg"), [("mnist1d-cnn", "width"),
                                               ("mnist1d-mlp", "hidden")])
def test_model_width_is_stored_and_rebuilt(tmp_path: Path, tiny_config: TrainConfig,
                                           model: str, kwarg: str) -> None:
    cfg = tiny_config.replace(model=model, model_width=7, epochs=2, swa_start=1,
                              record_every=0)
    out = train(cfg, tmp_path / "w.h5", progress=False, log=lambda _: None)
    with store.open_run(out) as f:
        assert store.model_spec(f) == (model, {kwarg: 7})
    net, _ = load_run_model(out)  # the layout check passes for the wider model
    shapes = [p.shape for p in net.parameters()]
    assert shapes[0][0] == 7  # first conv's channels / first layer's units


def test_model_width_validation(tmp_path: Path, tiny_config: TrainConfig) -> None:
    with pytest.raises(UserError, match=r"model_width \(--model-width\) must be >= 1"):
        TrainConfig(model_width=0).validate()
    cfg = tiny_config.replace(model="mnist1d-smallcnn", model_width=8)
    with pytest.raises(UserError, match="--model-width applies to mlp, mnist1d-cnn"):
        train(cfg, tmp_path / "x.h5", progress=False, log=lambda _: None)


def test_run_file_of_an_older_config_is_still_complete(tmp_path: Path,
                                                       tiny_run: Path) -> None:
    """A run file written before label_noise/model_width existed is not retrained."""
    import json
    import shutil

    old = tmp_path / "old.h5"
    shutil.copy(tiny_run, old)
    with h5py.File(old, "r+") as f:
        cfg = json.loads(f.attrs["config"])
        for k in ("label_noise", "model_width"):
            cfg.pop(k)
        f.attrs["config"] = json.dumps(cfg)
    said: list[str] = []
    train(TrainConfig(**cfg), old, progress=False, log=said.append)
    assert "already complete" in said[0]
