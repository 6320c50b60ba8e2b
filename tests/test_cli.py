"""CLI: help, one-line errors with exit code 2, train and info end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from landscape.cli import main


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "info"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "seed000-cnn"], "takes inputs of shape (1, 28, 28)"),
    (["--model", "resnet9000"], "unknown model"),
    (["--data", "svhn"], "train_32x32.mat"),
    (["--data", "kaggle-digits"], "train.csv"),
    (["--swa-start", "50"], "--swa-start 50 must lie in"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--device", "cuda"] , "cuda"),
])
def test_bad_train_input_is_one_line_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main(["train", "--quiet", "--data-root", str(tmp_path), "--num-samples", "200",
               "--epochs", "3", "--swa-start", "2", "--out", str(tmp_path / "x.h5"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1
    assert not (tmp_path / "x.h5").exists()


def test_toml_config_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 3\nlearning_rate = 0.1\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "x.h5")]) == 2
    assert "unknown config key(s) ['learning_rate']" in capsys.readouterr().err
    cfg.write_text("epochs = 'three'\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "x.h5")]) == 2
    assert "must be int" in capsys.readouterr().err


def test_train_then_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("num-samples = 300\nepochs = 4\nswa_start = 2\n")
    out = tmp_path / "r.h5"
    assert main(["train", "--config", str(cfg), "--quiet", "--data-root", str(tmp_path),
                 "--batch-size", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| swa |" in printed
    assert "| sgd |" in printed
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "trajectory swa: weights (5, 5002)" in info
    assert "epochs=4" in info
    assert "batch_size=64" in info
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
