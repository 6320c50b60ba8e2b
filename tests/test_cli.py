"""CLI: help, one-line errors with exit code 2, train and info end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from landscape.cli import main


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


COMMANDS = ["train", "surface", "sharpness", "gap", "compare", "plot", "reproduce", "info",
            "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_examples_and_config(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0  # no SystemExit escapes main(argv)
    out = capsys.readouterr().out
    assert "example" in out
    assert "--config" in out
    assert main(["--help"]) == 0
    assert command in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["surface"], ["train", "--epochs", "x"],
                                  ["gap", "f.h5", "--nope"], ["frobnicate"]])
def test_argparse_errors_return_2(argv: list[str], capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "Traceback" not in err


def test_flags_mean_one_thing() -> None:
    """--out is a file, --out-dir and --runs-dir folders; --eval-batch-size for
    evaluation, --batch-size only for an SGD minibatch (of training, of a curve's
    bends, or of FGE's cycles); --solutions everywhere (connect's two ends:
    --solution-a/-b; FGE's start: --from, as a line's)."""
    from landscape.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    flags = {name: {s for a in p._actions for s in a.option_strings}
             for name, p in sub.items()}
    assert {n for n, f in flags.items() if "--batch-size" in f} == {"train", "connect", "fge"}
    assert {n for n, f in flags.items() if "--out" in f} == {"train", "demo", "connect",
                                                             "align", "merge"}
    assert {"plot", "reproduce", "demo"} <= {n for n, f in flags.items() if "--out-dir" in f}
    assert not any("--solution" in f or "--runs" in f or "--report" in f
                   for f in flags.values())
    assert {"surface", "gap", "connect"} <= {n for n, f in flags.items()
                                             if "--eval-batch-size" in f}
    assert all("--config" in f for f in flags.values())


def test_config_table_sets_a_commands_flags(tiny_run, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "r.h5"
    shutil.copyfile(tiny_run, run)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[gap]\ngrid = "0:1:5"\ntrajectories = false\nquiet = true\n'
                   '[compare]\nlevel = 0.9\n')
    assert main(["gap", str(run), "--config", str(cfg)]) == 0
    import h5py

    with h5py.File(run) as f:
        assert f["measures/gap/line/t"].shape == (5,)
        assert len(f["measures/gap/trajectories"]) == 0
    assert main(["gap", str(run), "--config", str(cfg), "--grid", "0:1:3"]) == 0  # flag wins
    with h5py.File(run) as f:
        assert f["measures/gap/line/t"].shape == (3,)
    bad = tmp_path / "bad.toml"
    bad.write_text('[gap]\ngrdi = "0:1:5"\n')
    capsys.readouterr()
    assert main(["gap", str(run), "--config", str(bad)]) == 2
    assert "unknown key(s) ['grdi'] in the [gap] table" in capsys.readouterr().err
    for form in ([f"--config={bad}"], ["--conf", str(bad)]):  # as argparse spells it
        assert main(["gap", str(run), *form]) == 2
        assert "unknown key(s) ['grdi'] in the [gap] table" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "seed000-cnn"], "takes inputs of shape (1, 28, 28)"),
    (["--model", "resnet9000"], "unknown model"),
    (["--data", "svhn"], "train_32x32.mat"),
    (["--data", "kaggle-digits"], "train.csv"),
    (["--swa-start", "50"], "swa_start=50 (--swa-start 50) must lie in"),
    (["--lr", "-1"], "lr (--lr) must be > 0"),
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


@pytest.fixture(scope="module")
def seed_runs_for_cli(tmp_path_factory: pytest.TempPathFactory, tiny_run, tiny_config
                      ) -> tuple[str, str]:
    """The tiny run and one of seed 1 on its data."""
    from landscape.train import train

    b = tmp_path_factory.mktemp("cli_runs") / "b.h5"
    train(tiny_config.replace(seed=1, data_seed=0), b, progress=False, log=lambda _: None)
    return str(tiny_run), str(b)


def test_config_tables_are_typed_like_their_flags(seed_runs_for_cli, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A TOML table gives each flag what the flag itself would take: booleans only for
    on/off flags, integers for integer flags, a list for a comma-separated flag, and a
    key for a required flag such as --out."""
    a, b = seed_runs_for_cli

    def err(text: str, *argv: str) -> str:
        cfg = tmp_path / "c.toml"
        cfg.write_text(text)
        capsys.readouterr()
        assert main([*argv, "--config", str(cfg)]) == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
        assert len(lines) == 1
        return lines[0]

    out = str(tmp_path / "x.h5")
    assert "must be true or false" in err('[align]\nrepair = "false"\n', "align", a, b,
                                          "--out", out)
    assert "must be an integer" in err("[align]\npoints = 5.7\n", "align", a, b, "--out",
                                       out)
    assert not Path(out).exists()
    # out from the table satisfies the required --out; a list feeds --solutions
    cfg = tmp_path / "ok.toml"
    cfg.write_text(f'[merge]\nout = "{out}"\nsolutions = ["sgd", "sgd"]\nquiet = true\n')
    assert main(["merge", a, b, "--config", str(cfg)]) == 0
    from landscape import store

    with store.open_run(out) as f:
        runs = store.plain(store.read_solution(f, "merged").attrs["runs"])
    assert [r["solution"] for r in runs] == ["sgd", "sgd"]
