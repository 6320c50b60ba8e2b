"""The run-file runner (:mod:`landscape.jobs.measures`) and the ``landscape sharpness``
/ ``compare`` commands."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from cases import (
    COMMON,
    FAST,
)

from landscape.cli import main
from landscape.evaluate import Evaluator
from landscape.jobs import compare_solutions, measure_solution
from landscape.sharpness import (
    specs,
)


def test_measure_solution_stores_every_measure(run_copy: Path) -> None:
    logs: list[str] = []
    out = measure_solution(run_copy, "swa", ["all"], COMMON, FAST, log=logs.append)
    assert set(out) == set(specs())  # every registered measure
    with h5py.File(run_copy) as f:
        g = f["measures/swa"]
        h = g["hessian"]
        assert h["eigenvalues"].shape == (2,)
        assert h.attrs["lambda_max"] == h["eigenvalues"][0] >= h["eigenvalues"][1]
        assert math.isnan(h.attrs["lambda_min"])  # --no-smallest: NaN, not -1
        assert h.attrs["samples"] == 200
        assert h.attrs["seed"] == 0
        # Hutch++ in 10 HVPs: the sketch clamped to 4 columns (8 HVPs), 2 residual probes
        assert (g["trace"].attrs["method"], g["trace"].attrs["n_hvp"]) == ("hutchpp", 10)
        assert g["trace"]["samples"].shape == (2,)
        assert g["density"]["grid"].shape == g["density"]["density"].shape
        assert g["width"]["widths"].shape == (4,)
        assert g["width"].attrs["median"] == pytest.approx(
            np.median(g["width"]["widths"][()]))
        assert g["sam"].attrs["value"] >= g["sam"].attrs["one_step"]
        assert g["eps"].attrs["value"] > 0
        assert math.isnan(g["eps"].attrs["dim"])
        for m in g.values():
            assert isinstance(m.attrs["params"], str)  # JSON, no pickles
    assert len(logs) == len(specs())
    again: list[str] = []
    measure_solution(run_copy, "swa", ["width"], COMMON, FAST, log=again.append)
    assert again == ["swa width: kept (stored with the same parameters)"]


def test_compare_reports_width_ratio(run_copy: Path) -> None:
    for s in ("sgd", "swa"):
        measure_solution(run_copy, s, ["width", "avg"], COMMON, FAST)
    rows = compare_solutions(run_copy, ("sgd", "swa"))
    width = rows[1]
    with h5py.File(run_copy) as f:
        wa = f["measures/sgd/width/widths"][()]
        wb = f["measures/swa/width/widths"][()]
        assert f["measures/compare/ratio"][1] == pytest.approx(width["ratio"])
    assert width["ratio"] == pytest.approx(np.median(wb) / np.median(wa))
    assert width["paired"]
    assert width["low"] <= width["ratio"] <= width["high"]
    assert [r["quantity"] for r in rows] == ["average sharpness", "median width (tau=0.1)"]


def test_cli_sharpness_and_compare(run_copy: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    common = ["--measures", "width,hessian", "--samples", "100", "--directions", "3",
              "--top-k", "1", "--no-smallest", "--quiet"]
    assert main(["sharpness", str(run_copy), "--solutions", "sgd,swa", *common]) == 0
    assert main(["compare", str(run_copy)]) == 0
    out = capsys.readouterr().out
    assert "| median width (tau=0.1) |" in out
    assert "swa/sgd" in out
    assert "| λ_max (Hessian) |" in out
    assert main(["sharpness", str(run_copy), "--measures", "width", "--samples", "99999",
                 "--directions", "2", "--quiet"]) == 0
    assert "using all 400 train samples" in capsys.readouterr().out
    with h5py.File(run_copy) as f:
        assert f["measures/swa/width"].attrs["samples"] == 400


@pytest.mark.parametrize(("args", "message"), [
    (["sharpness", "{run}", "--solutions", "nope"], "no solution 'nope'"),
    (["sharpness", "{run}", "--measures", "hessian,foo"], "unknown measure(s) ['foo']"),
    (["sharpness", "{run}", "--tau", "-1"], "tau (--tau) must be > 0"),
    (["sharpness", "{missing}"], "does not exist"),
    (["compare", "{run}", "--solutions", "sgd"], "takes two names"),
    (["compare", "{run}"], "no measures stored"),
])
def test_cli_user_errors_are_one_line(run_copy: Path, args: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(run=run_copy, missing=run_copy.with_name("nope.h5")) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1


@pytest.mark.parametrize("command", ["sharpness", "gap", "compare"])
def test_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([command, "--help"], ["--help"]):  # the top-level help lists it
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert ("example" if argv[0] == command else command) in out


def test_measured_loss_is_the_evaluation_paths_train_loss(run_copy: Path) -> None:
    """The loss every measure works on is the Evaluator's train loss on the same subset
    (BN in eval mode with the solution's own statistics)."""
    from landscape.jobs import load_run_model
    from landscape.store import open_run, read_solution

    measure_solution(run_copy, "swa", ["sam", "avg"], COMMON, FAST)
    model, data = load_run_model(run_copy)
    sub = data.subset(COMMON.samples, 1, COMMON.seed)
    with open_run(run_copy) as f:
        sol = read_solution(f, "swa")
    ev = Evaluator(model, *sub.splits(), bn="keep")
    loss = ev.evaluate(sol.weights, sol.buffers, splits=("train",))["train"].loss
    with h5py.File(run_copy) as f:
        assert f["measures/swa/sam"].attrs["loss"] == pytest.approx(loss, rel=1e-6)
        assert f["measures/swa/avg"].attrs["loss"] == pytest.approx(loss, rel=1e-6)
