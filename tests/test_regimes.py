"""The ``regimes`` experiment end to end at ``--quick`` size (results equal the run files,
a rerun recomputes nothing, a killed run resumes), its report logic on known numbers, and
the resolution helpers: a test set sized apart from the train set, the SE band of 1D
surfaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


import matplotlib.pyplot as plt

from landscape import experiments as ex
from landscape import plot, store
from landscape._errors import UserError
from landscape.data import load_dataset
from landscape.experiments import regimes

N_CELLS, N_SEEDS = 7, 2  # experiments/regimes.toml [experiment.quick]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def _reproduce(out: Path, data_root: Path, log: list[str]) -> Path:
    return ex.reproduce("regimes", quick=True, out_dir=out / "regimes", runs_dir=out / "runs",
                        overrides={"data_root": str(data_root)}, log=log.append)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Any]:
    """``landscape reproduce regimes --quick`` into a temporary folder."""
    d = tmp_path_factory.mktemp("regimes")
    log: list[str] = []
    report = _reproduce(d, data_root, log)
    res = store.read_results(report.parent / "results.h5")
    return {"dir": d, "report": report, "log": log, "results": res,
            "extra": res["attrs"]["extra"]}


def test_cell_metrics_are_the_run_files_numbers(quick: dict[str, Any]) -> None:
    m, extra = quick["results"]["metrics"], quick["extra"]
    assert len(m) == N_CELLS
    for cell, cols in m.items():
        assert set(cols) == set(regimes.METRICS)
        for i, seed in enumerate(range(N_SEEDS)):
            run = Path(extra["runs"][cell]) / f"seed{seed}.h5"
            with h5py.File(run, "r") as f:
                for sol in ("sgd", "swa"):
                    acc = f[f"solutions/{sol}"].attrs["test_acc"]
                    assert cols[f"{sol}_test_acc"][i] == acc
                    width = f[f"measures/{sol}/width"].attrs["median"]
                    assert cols[f"{sol}_width"][i] == width
                    assert f[f"measures/{sol}/width/widths"].shape == (2,)
            assert cols["diff_test_acc"][i] == cols["swa_test_acc"][i] - cols["sgd_test_acc"][i]
            assert cols["width_ratio"][i] == cols["swa_width"][i] / cols["sgd_width"][i]
        s = extra["summary"][cell]
        assert s["diff"] == pytest.approx(np.mean(cols["diff_test_acc"]), abs=1e-12)
        assert s["ratio"] == pytest.approx(np.mean(cols["width_ratio"]), abs=1e-12)
        # seeds differ: the cell is not one run repeated
        assert cols["sgd_test_acc"][0] != cols["sgd_test_acc"][1] or \
            cols["sgd_width"][0] != cols["sgd_width"][1]


def test_design_cells_are_the_configs_they_say(quick: dict[str, Any]) -> None:
    extra = quick["extra"]
    cells = extra["design"]["cells"]
    assert set(cells) == {
        "base", "label_noise=0.2", "swa_lr=0.005, swa_lr_max=0.05, schedule=cyclic",
        "model_width=4", "model=mnist1d-mlp", "label_noise=0.2, model_width=4",
        "label_noise=0.2, model=mnist1d-mlp"}
    # the base point is shared by every factor; the map's first row is the width sweep
    fac = extra["design"]["factors"]
    assert next(lv["cell"] for lv in fac["label_noise"]) == "base"
    assert fac["swa_lr"][0]["cell"] == "base"
    assert extra["design"]["map"]["cells"][0] == [lv["cell"] for lv in fac["width"]]
    assert sorted(cells["base"]["labels"]) == sorted(
        ["label noise: 0 %", "swa lr: 0.01", "width: CNN 24 ch", "0 % × CNN 24 ch"])

    def run(cell: str) -> Path:
        return Path(extra["runs"][cell]) / "seed1.h5"

    with store.open_run(run("label_noise=0.2, model_width=4")) as f:
        assert store.model_spec(f) == ("mnist1d-cnn", {"width": 4})
        ln = store.read_label_noise(f)
        assert ln is not None
        assert len(ln["indices"]) == round(0.2 * 200)
        assert store.config_of(f)["seed"] == 1
    with store.open_run(run("model=mnist1d-mlp")) as f:
        assert store.model_spec(f)[0] == "mnist1d-mlp"
        assert store.read_label_noise(f) is None
        assert store.data_attrs(f)["n_train"] == 200
        assert store.data_attrs(f)["n_test"] == 200
    cyc = store.run_config(run("swa_lr=0.005, swa_lr_max=0.05, schedule=cyclic"))
    assert (cyc["schedule"], cyc["swa_lr"], cyc["swa_lr_max"]) == ("cyclic", 0.005, 0.05)


def test_regime_is_the_largest_significant_gain(quick: dict[str, Any]) -> None:
    extra = quick["extra"]
    want = regimes.find_regime(extra["summary"])
    got = extra["regime"]
    assert (got or {}).get("cell") == want
    if got is not None:
        assert (quick["dir"] / "regimes" / got["paper_toml"]).is_file()
    assert extra["best_cell"] == max(extra["summary"], key=lambda k: extra["summary"][k]["diff"])


def test_report_progress_and_figures(quick: dict[str, Any]) -> None:
    text = quick["report"].read_text()
    assert text.startswith("# regimes")
    assert "landscape reproduce regimes" in text.split("```")[1]
    for heading in ("### Where SWA helps on this data", "### The regime for the `paper`",
                    "**label noise × width: SWA − SGD test accuracy (points)**"):
        assert heading in text
    assert "- Along label noise — 0 %:" in text
    for stem, (caption, _) in regimes.FIGURES.items():
        assert f"![{stem}]({stem}.png)" in text
        assert caption in text
        assert (quick["report"].parent / f"{stem}.png").stat().st_size > 5000
    cells = [line for line in quick["log"] if line.startswith("[regimes] cell ")]
    assert len(cells) == N_CELLS
    assert all("elapsed" in line and "ETA" in line for line in cells)
    assert cells[-1].startswith(f"[regimes] cell {N_CELLS}/{N_CELLS}")


def test_rerun_recomputes_nothing(quick: dict[str, Any], data_root: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import landscape.jobs
    import landscape.train

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a finished unit was recomputed")

    monkeypatch.setattr(landscape.train, "train", refuse)
    monkeypatch.setattr(landscape.jobs, "measure_solution", refuse)
    runs = sorted((quick["dir"] / "runs").rglob("*.h5"))
    assert len(runs) == N_CELLS * N_SEEDS
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    log: list[str] = []
    report = _reproduce(quick["dir"], data_root, log)
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps
    again = store.read_results(report.parent / "results.h5")
    assert again["metrics"].keys() == quick["results"]["metrics"].keys()
    for cell, cols in quick["results"]["metrics"].items():
        for k, v in cols.items():
            np.testing.assert_array_equal(again["metrics"][cell][k], v)
    assert sum("(kept)" in line for line in log) == N_CELLS


def test_killed_run_resumes_and_matches(quick: dict[str, Any], data_root: Path,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """SIGKILL after the second finished cell; the rerun trains only the missing units
    and ends with the uninterrupted run's numbers."""
    import landscape.train

    cmd = [sys.executable, "-m", "landscape", "reproduce", "regimes", "--quick", "--out-dir",
           str(tmp_path / "regimes"), "--runs-dir", str(tmp_path / "runs"), "--data-root",
           str(data_root)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[regimes] cell 2/"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    calls: list[int] = []
    real = landscape.train.train

    def counted(cfg: Any, *a: Any, **k: Any) -> Path:
        calls.append(cfg.seed)
        return real(cfg, *a, **k)

    monkeypatch.setattr(landscape.train, "train", counted)
    log: list[str] = []
    report = ex.reproduce("regimes", quick=True, out_dir=tmp_path / "regimes",
                          runs_dir=tmp_path / "runs",
                          overrides={"data_root": str(data_root)}, log=log.append)
    assert sum("(kept)" in line for line in log) >= 2  # the cells finished before the kill
    assert 0 < len(calls) <= N_SEEDS * (N_CELLS - 2)
    res = store.read_results(report.parent / "results.h5")
    for cell, cols in quick["results"]["metrics"].items():
        for k, v in cols.items():
            np.testing.assert_array_equal(res["metrics"][cell][k], v)


def test_worker_processes_give_the_same_numbers(quick: dict[str, Any], data_root: Path,
                                                tmp_path: Path) -> None:
    """Two spawned workers compute the base and label-noise cells bit-identically."""
    e = ex.load_experiment("regimes", quick=True, overrides={"data_root": str(data_root)})
    e.settings["factors"] = {"label_noise": e.settings["factors"]["label_noise"]}
    e.settings["map"] = []
    e.settings["workers"] = 2
    res = regimes.run_regimes(e, [0, 1], tmp_path, lambda _: None, runs_dir=tmp_path)
    assert set(res["metrics"]) == {"base", "label_noise=0.2"}
    for cell, cols in res["metrics"].items():
        for k, v in cols.items():
            np.testing.assert_array_equal(v, quick["results"]["metrics"][cell][k])


# =========================================================================== report logic
def _result(diffs: dict[str, list[float]], ratios: dict[str, list[float]]) -> dict:
    metrics = {k: {"sgd_test_acc": [0.8] * len(v),
                   "swa_test_acc": [0.8 + d for d in v], "diff_test_acc": v,
                   "width_ratio": ratios[k]} for k, v in diffs.items()}
    summary = {k: regimes.summarize(m) for k, m in metrics.items()}
    factors = {"label_noise": [{"label": "0 %", "cell": "base"},
                               {"label": "40 %", "cell": "label_noise=0.4"}],
               "width": [{"label": "narrow", "cell": "base"},
                         {"label": "MLP", "cell": "model=mlp"}]}
    cells = {k: {"labels": [k]} for k in diffs}
    return {"metrics": metrics,
            "extra": {"summary": summary, "n_test": 10000,
                      "design": {"cells": cells, "factors": factors, "map": None}}}


def test_findings_say_where_swa_helps() -> None:
    r = _result({"base": [0.0, 0.001, -0.001], "label_noise=0.4": [0.02, 0.021, 0.019],
                 "model=mlp": [-0.01, -0.011, -0.009]},
                {"base": [1.0, 1.1, 0.9], "label_noise=0.4": [1.5, 1.6, 1.4],
                 "model=mlp": [0.7, 0.72, 0.71]})
    text = "\n".join(regimes.findings(r))
    assert "**higher** than SGD's, with a 95 % CI that excludes 0, in 1 cell(s): " \
           "label_noise=0.4 (+2.00 ± 0.25 points)" in text
    assert "It is **lower** (CI below 0) in 1 cell(s): model=mlp (-1.00 ± 0.25 points)" in text
    assert "In the other 1 cell(s) the difference is within noise" in text
    assert "**wider** than SGD's (ratio CI above 1) in 1 of 3 cells" in text
    assert "**narrower** (CI below 1) in 1" in text
    assert "one test error step is 0.01 points" in text
    assert "At 40 % (the non-base level with the largest mean) it differs from the base " \
           "level's by +2.00 ± 0.00 points (paired over seeds; the CI excludes 0)" in text
    assert regimes.find_regime(r["extra"]["summary"]) == "label_noise=0.4"


def test_findings_when_swa_helps_nowhere() -> None:
    r = _result({"base": [0.01, -0.01, 0.0], "label_noise=0.4": [0.02, -0.02, 0.01],
                 "model=mlp": [0.0, 0.01, -0.01]},
                {k: [1.0, 1.1, 0.9] for k in ("base", "label_noise=0.4", "model=mlp")})
    text = "\n".join(regimes.findings(r))
    assert "**not significantly higher** than SGD's in any cell" in text
    assert "In all 3 cells the difference is within noise" in text
    assert regimes.find_regime(r["extra"]["summary"]) is None
    r["extra"] |= {"regime": None, "best_cell": "label_noise=0.4"}
    assert "no regime is recorded" in regimes.regime_lines(r, Path("out"))[0]


def test_paper_toml_of_a_regime_loads_with_its_overrides(tmp_path: Path) -> None:
    cfg = ex.load_experiment("regimes").cfg.replace(label_noise=0.4, model_width=96)
    over = regimes.paper_overrides(cfg)
    assert over == {"label_noise": 0.4, "model_width": 96}
    path = regimes.write_paper_toml(tmp_path / "paper_at_regime.toml", over, "cell")
    e = ex.load_experiment(str(path))
    assert e.protocol == "paper"
    assert (e.cfg.label_noise, e.cfg.model_width, e.cfg.num_samples) == (0.4, 96, 50000)
    assert e.cfg.record_every == 1  # paper's own settings are kept
    assert e.settings == ex.load_experiment("paper").settings
    quick = ex.load_experiment(str(path), quick=True)
    assert quick.cfg.num_samples == 400  # paper's [experiment.quick] still applies


def test_bad_designs_are_one_line_errors() -> None:
    e = ex.load_experiment("regimes", quick=True)
    e.settings["factors"] = {"noise": [{"label_nois": 0.2}]}
    with pytest.raises(UserError, match=r"noise\[0\]: unknown config key"):
        regimes.design(e)
    e.settings["factors"] = {"noise": [{"label_noise": 1.2}]}
    with pytest.raises(UserError, match=r"label_noise \(--label-noise\) must lie in \[0, 1\)"):
        regimes.design(e)
    e.settings["factors"] = {"noise": [{}]}
    e.settings["map"] = ["noise", "width"]
    with pytest.raises(UserError, match="map must name two factors"):
        regimes.design(e)
    e.settings["factors"] = {}
    with pytest.raises(UserError, match="at least one factor"):
        regimes.design(e)


def test_plot_regimes_marks_significant_cells(quick: dict[str, Any], tmp_path: Path
                                              ) -> None:
    path = quick["report"].parent / "results.h5"
    fig, axes = plot.plot_regimes(path, "diff_test_acc")
    assert len(axes) == 2
    summary = quick["extra"]["summary"]
    n_factor_cells = sum(len(v) for v in quick["extra"]["design"]["factors"].values())
    assert len(axes[0].texts) == n_factor_cells
    assert len(axes[1].texts) == 2 * 3
    bold = sum(t.get_fontweight() == "bold" for t in axes[0].texts)
    levels = [lv for lvs in quick["extra"]["design"]["factors"].values() for lv in lvs]
    sig = sum(summary[lv["cell"]]["diff_sign"] in ("higher", "lower") for lv in levels)
    assert bold == sig
    plt.close(fig)
    with pytest.raises(UserError, match="not a results file of the regimes protocol"):
        plot.plot_regimes(_other_results(tmp_path))


def _other_results(tmp_path: Path) -> Path:
    return store.write_results(tmp_path / "r.h5", {"experiment": "x"},
                               {"sgd": {"test_acc": [0.5]}})


# =========================================================================== resolution
def test_mnist1d_test_set_is_sized_apart_from_train_set(data_root: Path) -> None:
    """More samples generated, a seeded train subset: a larger test set, the same one
    for every train size of a seed."""
    a = load_dataset("mnist1d", data_root, num_samples=2000, train_samples=300, seed=5)
    b = load_dataset("mnist1d", data_root, num_samples=2000, train_samples=600, seed=5)
    assert (len(a.y_train), len(a.y_test), len(b.y_train)) == (300, 400, 600)
    assert (a.x_test == b.x_test).all()
    assert (data_root / "mnist1d" / "mnist1d-n2000-seed5.npz").is_file()  # cached
    again = load_dataset("mnist1d", data_root, num_samples=2000, train_samples=300, seed=5)
    assert (again.x_train == a.x_train).all()
    assert (again.y_train == a.y_train).all()


def _line_surface(path: Path, n_test: int) -> None:
    x = np.linspace(0.0, 1.0, 5)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "landscape-run"
        f.attrs["schema_version"] = 1
        s = f.create_group("surfaces/line")
        s.attrs.update({"kind": "line", "dim": 1, "points": json.dumps(["swa", "sgd"]),
                        "test_samples": n_test, "train_samples": 100, "complete": True})
        s["axes/x"] = x
        s["points/swa"] = np.array([0.0])
        s["points/sgd"] = np.array([1.0])
        s["train_loss"] = 0.5 + x
        s["train_loss_sem"] = np.full(5, 0.05)
        s["test_acc"] = 0.9 - 0.1 * x
        for k in ("train_acc", "test_loss", "test_loss_sem"):
            s[k] = np.full(5, 0.5)
        s["computed"] = np.ones(5, bool)


def _band(ax: Any, gid: str) -> np.ndarray:
    (band,) = [c for c in ax.collections if c.get_gid() == gid]
    return band.get_paths()[0].vertices


def test_surface_1d_draws_standard_error_bands(tmp_path: Path) -> None:
    path = tmp_path / "line.h5"
    _line_surface(path, n_test=400)
    fig, ax = plot.plot_surface_1d(path, "line")
    train = _band(ax, "train_loss_se")
    at0 = train[np.isclose(train[:, 0], 0.0), 1]
    assert sorted(at0)[0] == pytest.approx(0.45)
    assert sorted(at0)[-1] == pytest.approx(0.55)
    test = _band(ax.right_ax, "test_err_se")
    at0 = test[np.isclose(test[:, 0], 0.0), 1]
    se = 100 * np.sqrt(0.1 * 0.9 / 400)  # test error 10 % on 400 samples
    assert min(at0) == pytest.approx(10 - se)
    assert max(at0) == pytest.approx(10 + se)
    plt.close(fig)
    _line_surface(path, n_test=0)  # the sample count unknown: no test band
    fig, ax = plot.plot_surface_1d(path, "line")
    assert not [c for c in ax.right_ax.collections if c.get_gid() == "test_err_se"]
    plt.close(fig)
