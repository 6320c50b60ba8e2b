"""Tests of :mod:`landscape.plot` on tiny HDF5 files written here in the run-file schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from landscape import plot
from landscape._errors import UserError
from landscape.cli import main

NX, NY = 7, 5


def _history(g: h5py.Group, n: int, swa: bool) -> None:
    ep = np.arange(1, n + 1, dtype=float)
    for k in ("train_acc", "test_acc"):
        g[k] = np.linspace(0.3, 0.9, n)
    for k in ("train_loss", "test_loss", "minibatch_loss", "lr"):
        g[k] = np.linspace(2, 0.3, n)
    g["epoch"] = ep
    if swa:
        for k in ("swa_train_acc", "swa_test_acc"):
            g[k] = np.where(ep > n // 2, 0.92, np.nan)


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "tiny.h5"
    x, y = np.linspace(-1, 1, NX), np.linspace(-1, 1, NY)
    X, Y = np.meshgrid(x, y, indexing="ij")  # value[i, j] at (x[i], y[j])
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "landscape-run"
        f.attrs["schema_version"] = 1
        f.create_group("model").attrs["name"] = "mnist1d-cnn"
        f.create_group("data").attrs["name"] = "mnist1d"
        _history(f.create_group("history/sgd"), 6, False)
        _history(f.create_group("history/swa"), 6, True)
        avg = f.create_group("solutions/avg")
        avg.attrs["test_acc"] = 0.8
        ck = f.create_group("measures/checkpoints")
        ck["epoch"] = np.arange(3.0, 7.0)
        ck["test_acc"] = np.array([0.7, 0.75, 0.72, 0.78])
        s1 = f.create_group("surfaces/line")
        s1.attrs.update({"kind": "line", "dim": 1, "norm": "none", "bn": "keep",
                         "center": "swa", "points": json.dumps(["swa", "sgd"]),
                         "x_label": "distance from SWA (L2)", "complete": True})
        s1["axes/x"] = x
        s1["train_loss"] = x**2 + 0.1
        s1["test_acc"] = 0.9 - 0.1 * (x - 0.2) ** 2
        s1["points/swa"] = np.array([0.0])
        s1["points/sgd"] = np.array([0.8])
        s2 = f.create_group("surfaces/plane")
        s2.attrs.update({"kind": "pca", "dim": 2, "norm": "filter", "bn": "keep",
                         "center": "swa", "points": json.dumps(["swa", "sgd"]),
                         "x_label": "PC1", "y_label": "PC2", "complete": False})
        s2["axes/x"], s2["axes/y"] = x, y
        loss = X**2 + 2 * Y**2 + 0.05
        loss[0, 0] = np.nan  # a missing point
        s2["train_loss"] = loss
        s2["test_loss"] = loss + 0.1
        s2["train_acc"] = 1 - loss / 4
        s2["test_acc"] = 1 - loss / 3
        s2["points/swa"] = np.array([0.0, 0.0])
        s2["points/sgd"] = np.array([0.5, -0.3])
        s2["trajectory/xy"] = np.stack([np.linspace(-0.9, 0.5, 6),
                                        np.linspace(0.8, -0.3, 6)], 1)
        s2["trajectory/epoch"] = np.arange(6.0)
        for sol, scale in (("sgd", 1.0), ("swa", 2.0)):
            w = f.create_group(f"measures/{sol}/width")
            w["widths"] = scale * np.abs(np.random.default_rng(0).normal(1, 0.2, 10))
            d = f.create_group(f"measures/{sol}/density")
            grid = np.linspace(-1, 10 * scale, 50)
            d["grid"], d["density"] = grid, np.exp(-np.abs(grid))
            f[f"measures/{sol}/hessian/eigenvalues"] = np.array([9.0, 4.0, 1.0]) / scale
        f["measures/sgd/width/widths"][0] = np.inf  # a direction that never reached tau
        for sol, k in (("sgd", 4.0), ("swa", 1.0)):  # 3 rays of 5 radii each
            r = f.create_group(f"measures/{sol}/rays")
            r["distance"] = np.linspace(0, 2, 5)
            r["train_loss"] = 0.1 + k * np.outer([1.0, 2.0, 3.0], r["distance"][()] ** 2)
            r["test_err"] = 0.2 + 0.01 * k * np.outer([1.0, 1.0, 4.0], r["distance"][()])
    return path


@pytest.fixture(scope="module")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "results.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "landscape-results"
        f.attrs["experiment"] = "seed000"
        for m, base in (("sgd", 0.9), ("swa", 0.92)):
            f[f"metrics/{m}/test_acc"] = base + np.array([0.0, 0.01, -0.01])
            f[f"metrics/{m}/train_acc"] = base + 0.05 + np.array([0.0, 0.01, -0.01])
    return path


def _check(fig_ax: tuple, tmp_path: Path, name: str, *, lines: int | None = None,
           xlabel: str | None = None, ylabel: str | None = None) -> None:
    fig, ax = fig_ax
    assert isinstance(fig, Figure)
    if lines is not None:
        assert len(ax.get_lines()) == lines
    if xlabel is not None:
        assert xlabel in ax.get_xlabel()
    if ylabel is not None:
        assert ylabel in ax.get_ylabel()
    assert ax.get_title()
    (png,) = plot.save_figure(fig, tmp_path / name)
    assert png.is_file()
    assert png.stat().st_size > 1000
    plt.close(fig)


def test_surface_1d(run_file: Path, tmp_path: Path) -> None:
    fig, ax = plot.plot_surface_1d(run_file, "line")
    assert ax.right_ax.get_ylabel() == "test error (%)"
    # train loss + 2 point markers on the left axis; test error on the right
    _check((fig, ax), tmp_path, "line", lines=3, xlabel="distance from SWA",
           ylabel="train loss")


def test_surface_2d(run_file: Path, tmp_path: Path) -> None:
    fig, ax = plot.plot_surface_2d(run_file, "plane", "train_loss")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["trajectory", "swa", "sgd"]
    assert len(fig.axes) == 2  # the plot and its colour bar
    _check((fig, ax), tmp_path, "plane", lines=3, xlabel="PC1", ylabel="PC2")


def test_surface_2d_test_error(run_file: Path, tmp_path: Path) -> None:
    _check(plot.plot_surface_2d(run_file, "plane", "test_err"), tmp_path, "plane_err")


def test_surface_3d(run_file: Path, tmp_path: Path) -> None:
    fig, ax = plot.plot_surface_3d(run_file, "plane")
    assert ax.name == "3d"
    assert "train loss" in ax.get_zlabel()
    _check((fig, ax), tmp_path, "plane3d")


def test_surface_errors(run_file: Path) -> None:
    with pytest.raises(UserError, match="no surface 'nope'"):
        plot.plot_surface_2d(run_file, "nope")
    with pytest.raises(UserError, match="1D"):
        plot.plot_surface_2d(run_file, "line")


def test_history(run_file: Path, tmp_path: Path) -> None:
    # sgd iterate, swa-run iterate, swa model: train and test each
    _check(plot.plot_history(run_file), tmp_path, "history", lines=6, xlabel="epoch",
           ylabel="accuracy (%)")


def test_checkpoints(run_file: Path, tmp_path: Path) -> None:
    fig, ax = plot.plot_checkpoints(run_file)
    styles = [ln.get_linestyle() for ln in ax.get_lines()]
    assert styles == ["-", "--", "-."]  # checkpoints, averaged model, their mean
    assert ax.get_lines()[2].get_ydata()[0] == pytest.approx(73.75)
    _check((fig, ax), tmp_path, "ck", lines=3, ylabel="test accuracy (%)")


def test_width_and_density(run_file: Path, tmp_path: Path) -> None:
    widths = plot.read_widths(run_file)
    assert set(widths) == {"sgd", "swa"}
    fig, ax = plot.plot_width_distribution(widths)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SGD\n(1 beyond r_max)", "SWA"]
    _check((fig, ax), tmp_path, "width", ylabel="width")
    fig, ax = plot.plot_eigenvalue_density(plot.read_density(run_file))
    assert ax.get_yscale() == "log"
    _check((fig, ax), tmp_path, "density", lines=2, ylabel="density")
    fig, ax = plot.plot_top_eigenvalues(plot.read_measure_arrays(run_file, "hessian",
                                                                 "eigenvalues"))
    assert ax.get_yscale() == "log"
    _check((fig, ax), tmp_path, "hessian", lines=2, xlabel="rank")


def test_rays(run_file: Path, tmp_path: Path) -> None:
    rays = plot.read_rays(run_file)
    assert rays["sgd"]["train_loss"].shape == (3, 5)
    fig, axes = plot.plot_rays(run_file)
    assert len(axes) == 2
    for ax in axes:
        assert len(ax.get_lines()) == 2 * (3 + 1)  # each ray and their mean, per solution
        assert "L2 distance" in ax.get_xlabel()
    assert axes[0].get_yscale() == "log"
    assert axes[1].get_ylabel() == "test error (%)"
    mean_sgd_err = axes[1].get_lines()[3].get_ydata()
    np.testing.assert_allclose(mean_sgd_err, 100 * (0.2 + 0.04 * 2 * np.linspace(0, 2, 5)))
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == [
        "SGD (mean of 3 rays)", "SWA (mean of 3 rays)"]
    _check((fig, axes[0]), tmp_path, "rays", ylabel="train loss")


def test_swa_vs_sgd(results_file: Path, tmp_path: Path) -> None:
    fig, ax = plot.plot_swa_vs_sgd(results_file)
    assert len(ax.patches) == 4  # 2 methods x 2 metrics
    assert ax.patches[0].get_height() == pytest.approx(90.0)
    _check((fig, ax), tmp_path, "bars", ylabel="accuracy (%)")


def test_given_axes_are_used(run_file: Path) -> None:
    fig, axs = plt.subplots(1, 2)
    f2, a2 = plot.plot_checkpoints(run_file, ax=axs[1])
    assert f2 is fig
    assert a2 is axs[1]
    plt.close(fig)


def test_cli_plot_all(run_file: Path, results_file: Path, tmp_path: Path) -> None:
    assert main(["plot", str(run_file), "--all", "--out-dir", str(tmp_path), "--pdf"]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "tiny_history.png" in pngs
    assert "tiny_checkpoints.png" in pngs
    assert "tiny_surface_plane_train_loss.png" in pngs
    assert "tiny_surface_line.png" in pngs
    assert "tiny_measure_width.png" in pngs
    assert "tiny_measure_density.png" in pngs
    assert "tiny_measure_hessian.png" in pngs
    assert "tiny_measure_rays.png" in pngs
    assert len(list(tmp_path.glob("*.pdf"))) == len(pngs)
    assert main(["plot", str(results_file), "--out-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "results_swa_vs_sgd.png").is_file()


def test_cli_one_surface_and_bad_name(run_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["plot", str(run_file), "--surface", "line", "--out-dir", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.glob("*.png")] == ["tiny_surface_line.png"]
    assert main(["plot", str(run_file), "--surface", "nope", "--out-dir", str(tmp_path)]) == 2
    assert "no surface 'nope'" in capsys.readouterr().err
    # an --out-dir that is a file, or lies under one: one line, exit 2, the file intact
    note = tmp_path / "notes.txt"
    note.write_text("keep")
    for out in (note, note / "sub"):
        assert main(["plot", str(run_file), "--all", "--out-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if "error:" in ln]
        assert len(lines) == 1
        assert f"cannot write figures to {out}" in lines[0]
    assert note.read_text() == "keep"


def test_import_landscape_does_not_import_matplotlib() -> None:
    # nor scipy.optimize at start-up (0.15-0.2 s of every CLI call): the
    # alignment and epsilon-sharpness import it when they run
    code = ("import sys, landscape, landscape.cli; opt = 'scipy.optimize' in sys.modules; "
            "import landscape.experiments, landscape.stats; "
            "print('matplotlib' in sys.modules, opt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False False"
