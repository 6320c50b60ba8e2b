"""``landscape reproduce connect --quick`` end to end: the numbers are those of the files."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape import experiments as ex
from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.experiments.connect import ALIGNMENT, BARRIERS, METHODS, PATHS, verdicts
from landscape.stats import format_ci


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("connect")
    out, runs = base / "connect", base / "runs"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["reproduce", "connect", "--quick", "--out-dir", str(out),
                     "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    return out, runs, buf.getvalue()


def test_listed_and_progress(quick: tuple[Path, Path, str]) -> None:
    assert "connect" in ex.available()
    assert "connect" in ex.PROTOCOLS
    printed = quick[2]
    for stage in ("trained seeds 0 and 1", "bezier curve trained", "weight matching", "FGE ("):
        assert f"[connect] pair 0: {stage}" in printed


def test_barriers_are_those_of_the_stored_profiles(quick: tuple[Path, Path, str]) -> None:
    out, runs, _ = quick
    m = store.read_results(out / "results.h5")["metrics"]
    pair = runs / "pair0.h5"
    assert store.read_results(out / "results.h5")["attrs"]["extra"]["curve_name"] == "bezier"
    profiles = {w: store.read_profile(pair, "bezier", w) for w in ("line", "curve")}
    profiles |= {w: store.read_alignment_profile(pair, ALIGNMENT, w)
                 for w in ("aligned", "repair")}
    assert set(profiles) == set(PATHS)
    for which, p in profiles.items():
        assert p is not None
        assert p.t[0] == 0
        assert p.t[-1] == 1
        for k in BARRIERS:
            v = p.metrics[k]
            assert m[which][f"{k}_barrier"].shape == (1,)
            assert m[which][f"{k}_barrier"][0] == pytest.approx(
                v.max() - 0.5 * (v[0] + v[-1]), abs=1e-12)
    # Every path starts at the first solution: the same value at t = 0.
    for k in BARRIERS:
        assert len({float(p.metrics[k][0]) for p in profiles.values()}) == 1
    # The raw line of the alignment is the line of the curve's file.
    raw = store.read_alignment_profile(pair, ALIGNMENT, "line")
    np.testing.assert_allclose(raw.metrics["test_err"], profiles["line"].metrics["test_err"])


def test_curve_joins_the_two_trained_solutions(quick: tuple[Path, Path, str]) -> None:
    _, runs, _ = quick
    curve, state = store.read_curve(runs / "pair0.h5", "bezier")
    assert state.epoch == 1  # the quick config's curve epochs
    ends = []
    for seed in (0, 1):
        with store.open_run(runs / f"seed{seed}.h5") as f:
            ends.append(store.read_solution(f, "sgd").weights)
            assert store.has_swag(f)  # --swag: SWAG moments exist
            assert store.data_attrs(f)["data_of_seed"] == 0  # one data set per pair
    assert not torch.equal(ends[0], ends[1])
    assert torch.equal(curve.start, ends[0])
    assert torch.equal(curve.end, ends[1])
    assert torch.equal(curve.point(0.0), ends[0])
    assert torch.equal(curve.point(1.0), ends[1])
    assert not torch.allclose(curve.bends[0], 0.5 * (ends[0] + ends[1]))  # it was trained


def test_predictions_are_those_of_the_run_file(quick: tuple[Path, Path, str]) -> None:
    out, runs, _ = quick
    m = store.read_results(out / "results.h5")["metrics"]
    with store.open_run(runs / "seed0.h5") as f:
        swag = store.read_swag_evaluation(f)["attrs"]
        fge = store.fge_attrs(f, "fge")
    for method in ("swag", "swa", "sgd"):
        for k in ("acc", "nll", "ece"):
            assert m[method][f"test_{k}"][0] == pytest.approx(swag[f"{method}_{k}"])
    for k in ("acc", "nll", "ece"):
        assert m["fge"][f"test_{k}"][0] == pytest.approx(fge[f"ensemble_{k}"])
    for method in METHODS:
        assert 0 <= m[method]["test_acc"][0] <= 1
        assert m[method]["test_nll"][0] > 0


def test_report_states_the_results_files_numbers(quick: tuple[Path, Path, str]) -> None:
    out, _, _ = quick
    report = (out / "REPORT.md").read_text()
    m = store.read_results(out / "results.h5")["metrics"]
    for which, label in PATHS.items():
        cells = [format_ci(m[which][f"{k}_barrier"], 100.0 if k.endswith("_err") else 1.0,
                           2 if k.endswith("_err") else 4) for k in BARRIERS]
        assert f"| {label} | " + " | ".join(cells) + " |" in report
    for which, label in METHODS.items():
        assert (f"| {label} | {format_ci(m[which]['test_acc'], 100.0, 2)} | "
                f"{format_ci(m[which]['test_nll'], 1.0, 4)} |") in report
    assert "### Is the trained curve's barrier lower than the line's?" in report
    assert "With one pair" in report  # one pair: no interval, said so
    assert "**Data: MNIST-1D**" in report
    for stem in ("curve_train_loss", "curve_test_err", "plane_train_loss",
                 "alignment_test_err", "fge_acc", "swag_nll", "swag_calibration"):
        assert f"![{stem}]({stem}.png)" in report
        assert (out / f"{stem}.png").stat().st_size > 1000
    calls = verdicts({"metrics": m})
    assert set(calls.values()) <= {"one seed"}
    # The stability check (python -m landscape.experiments.stability) knows these calls.
    from landscape.experiments.stability import _verdicts_of, first_seeds

    r = store.read_results(out / "results.h5")
    assert _verdicts_of(r) is verdicts
    assert verdicts(first_seeds(r, 1)) == calls


def test_report_regenerates_from_the_results_file(quick: tuple[Path, Path, str]) -> None:
    """As tests/test_reports.py does for committed reports: no training, no drawing."""
    import re

    from landscape.config import TrainConfig, from_dict
    from landscape.experiments import _common

    out = quick[0]
    committed = (out / "REPORT.md").read_text()
    r = store.read_results(out / "results.h5")
    a = r["attrs"]
    exp = _common.Experiment("connect", from_dict(a["config"], TrainConfig),
                             dict(a["settings"]), Path("connect.toml"))
    head = next(line for line in committed.splitlines() if line.startswith("| method |"))
    order = [c.strip() for c in head.split("|")[2:-1]]
    metrics = {m: {k: list(cols[k]) for k in order if k in cols}
               for m, cols in r["metrics"].items()}
    figures = [out / p for p in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", committed)]
    text = _common.report_text(out, exp, a["seeds"], {"metrics": metrics,
                                                      "extra": a["extra"]},
                               a["command"], figures, a["seconds"])
    assert text == committed


def test_rerun_keeps_every_stage(quick: tuple[Path, Path, str],
                                 capsys: pytest.CaptureFixture) -> None:
    out, runs, _ = quick
    before = store.read_results(out / "results.h5")["metrics"]
    assert main(["reproduce", "connect", "--quick", "--out-dir", str(out),
                 "--runs-dir", str(runs), "--quiet"]) == 0
    after = store.read_results(out / "results.h5")["metrics"]
    for method, cols in before.items():
        for k, v in cols.items():
            np.testing.assert_array_equal(v, after[method][k])


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    from landscape.experiments.connect import ConnectSettings

    with pytest.raises(UserError, match=r"\[experiment.curve\] has unknown key") as e:
        ConnectSettings.parse({"curve": {"bend": 2}}).configs()
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"bends \(--bends\) must be >= 1"):
        ConnectSettings.parse({"curve": {"bends": 0}}).configs()
    with pytest.raises(UserError, match="plane must be >= 0"):
        ConnectSettings.parse({"plane": -1}).configs()


def test_a_config_without_swa_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"drop swa=False \(--no-swa\)"):  # it collects SWAG
        ex.load_experiment("connect", quick=True, overrides={"swa": False})
    exp = ex.load_experiment("connect", quick=True, overrides={"swa": False, "swag": False})
    with pytest.raises(UserError, match="drop swa = false") as e:
        ex.PROTOCOLS["connect"].run(exp, [0], tmp_path, print, runs_dir=tmp_path / "runs")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()
