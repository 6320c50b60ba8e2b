"""Every kind of file the toolkit writes, read by every subcommand that reads a file.

Run files from each combination of the ``landscape train`` flags that change what a
file holds (trajectory or not, per-epoch metrics or not, SWA or not, step records, a
cyclic schedule, a post-hoc average, an MLP without BatchNorm), the run and results
files of ``landscape reproduce seed004 --quick``, an analysis file of the Python API,
a run file with surfaces and measures, and a file of another schema version — each
given to ``info``, ``info --tree``, ``compare``, ``gap``, ``plot --all`` and
``surface`` (random, line, plane, pca) and ``sharpness``.  Every call either does its
job (exit 0, and what it stores or prints is checked) or exits 2 with one line that
names what is missing and the command or flag that adds it; never a traceback.

New subcommands that read a file join :data:`COMMANDS`; new kinds of file join
:data:`FILES`.  The files are built once per module (MNIST-1D, 3 epochs, 320 samples).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape.cli import main

RUN = ("sgd", "swa", "swa_last")
TRAIN = ["train", "--quiet", "--num-samples", "400", "--epochs", "3", "--swa-start", "2",
         "--batch-size", "50"]


@dataclass(frozen=True)
class FileCase:
    """A kind of file and what the reading commands should find in it.

    ``train`` holds the flags of ``landscape train`` that make it (``None``: made
    otherwise, see :func:`files`); ``plane`` is the default plane's surface name
    (``None``: too few points for a plane).
    """

    train: tuple[str, ...] | None
    kind: str = "landscape-run"
    solutions: tuple[str, ...] = RUN
    trajectories: tuple[str, ...] = ("sgd", "swa")
    plane: str | None = "plane_sgd_swa_last_swa"
    measured: bool = False
    history: bool = True  # accuracy at two or more epochs (not with --eval-every 0)
    version_error: bool = False
    surfaces: tuple[str, ...] = field(default=())

    @property
    def main(self) -> str:
        """The solution measured when none is named."""
        return "swa" if "swa" in self.solutions else "sgd"

    @property
    def pair(self) -> tuple[str, str] | None:
        """The two solutions compared when none are named."""
        others = [s for s in ("swa", "avg", "swa_last") if s in self.solutions]
        return ("sgd", others[0]) if others else None


NO_SWA = {"solutions": ("sgd",), "trajectories": ("sgd",),
          "plane": "plane_sgd_sgd-epoch1_sgd-epoch0"}
FILES: dict[str, FileCase] = {
    "default": FileCase(()),
    "no-trajectory": FileCase(("--record-every", "0"), trajectories=()),
    "no-epoch-metrics": FileCase(("--eval-every", "0"), history=False),
    "no-trajectory-no-metrics": FileCase(("--record-every", "0", "--eval-every", "0"),
                                         trajectories=(), history=False),
    "no-swa": FileCase(("--no-swa",), **NO_SWA),
    "no-swa-no-trajectory": FileCase(("--no-swa", "--record-every", "0"),
                                     solutions=("sgd",), trajectories=(), plane=None),
    "step-records": FileCase(("--record-steps", "5")),
    "cyclic": FileCase(("--schedule", "cyclic", "--swa-lr", "0.005")),
    "post-hoc-average": FileCase(("--average-epochs", "2:3"), solutions=(*RUN, "avg")),
    "mlp": FileCase(("--model", "mlp", "--model-width", "16")),
    "seed004-run": FileCase(None, solutions=("sgd", "avg"), trajectories=("sgd",),
                            plane="plane_sgd_avg_sgd-epoch1"),
    "seed004-results": FileCase(None, kind="landscape-results"),
    "analysis": FileCase(None, kind="landscape-analysis"),
    "analysed": FileCase(None, measured=True, surfaces=("line_sgd_swa",)),
    "schema-0": FileCase(None, version_error=True),
    # `landscape merge` of the default run and one of seed 1 on its data: a run file of
    # four solutions and no trajectory
    "merged": FileCase(None, solutions=(*RUN, "merged"), trajectories=()),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every file of :data:`FILES`, written once."""
    import landscape as ls

    d = tmp_path_factory.mktemp("every_file")
    data = ["--data-root", str(d / "data")]
    out: dict[str, Path] = {}

    def ok(argv: list[str]) -> None:
        assert main(argv) == 0, argv

    for name, case in FILES.items():
        if case.train is not None:
            out[name] = d / f"{name}.h5"
            ok([*TRAIN, *data, *case.train, "--out", str(out[name])])
    ok(["reproduce", "seed004", "--quick", "--quiet", *data, "--out-dir",
        str(d / "seed004"), "--runs-dir", str(d / "seed004")])
    out["seed004-run"] = d / "seed004" / "seed0.h5"
    out["seed004-results"] = d / "seed004" / "results.h5"
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    out["analysis"] = d / "analysis.h5"
    ls.save(ls.random_surface(net, (x, y), grid="-1:1:3"), out["analysis"], "random")
    ls.save(ls.measure(net, (x, y), "width", directions=4), out["analysis"], "mine")
    out["analysed"] = d / "analysed.h5"
    shutil.copyfile(out["default"], out["analysed"])
    a = str(out["analysed"])
    ok(["surface", a, "--quiet", "--kind", "line", "--grid", "0:1:3"])
    ok(["sharpness", a, "--quiet", "--solutions", "sgd,swa", "--measures", "width,hessian",
        "--directions", "4", "--samples", "100", "--top-k", "2"])
    ok(["gap", a, "--quiet", "--grid", "0:1:3"])
    seed1 = d / "seed1.h5"
    ok([*TRAIN, *data, "--seed", "1", "--data-seed", "0", "--out", str(seed1)])
    out["merged"] = d / "merged.h5"
    ok(["merge", str(out["default"]), str(seed1), "--out", str(out["merged"]), "--quiet"])
    out["schema-0"] = d / "schema-0.h5"
    shutil.copyfile(out["default"], out["schema-0"])
    with h5py.File(out["schema-0"], "a") as f:
        f.attrs["schema_version"] = 0
    return out


# --------------------------------------------------------------------------- checks
def _one_line_error(err: str, *parts: str) -> None:
    """Exit 2 printed one error line naming what is missing and how to add it."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    for p in parts:
        assert p in lines[0], lines[0]
    assert "`landscape " in lines[0] or " --" in lines[0], lines[0]  # names the fix


def _surface(path: Path, name: str) -> np.ndarray:
    with h5py.File(path) as f:
        assert name in f["surfaces"], list(f["surfaces"])
        g = f["surfaces"][name]
        assert bool(g.attrs["complete"])
        return g["train_loss"][()]


def _check_info(case: FileCase, path: Path, out: str, tree: bool) -> None:
    assert f"({case.kind})" in out.splitlines()[0]
    if case.kind == "landscape-results":
        assert "metrics (per seed):" in out
        assert "experiment: seed004" in out
    elif case.kind == "landscape-analysis":
        assert "  random (" in out
        assert "kind=random" in out
        assert "mine" in out
    else:
        for s in case.solutions:
            assert f"| {s} |" in out
        for run in ("sgd", "swa"):
            assert (f"trajectory {run}: weights" in out) == (run in case.trajectories)
        if case.measured:
            assert "    width: " in out
            assert "    hessian: " in out
    if tree:
        assert "tree:" in out
        if case.kind == "landscape-run":
            assert f"/solutions/{case.main}/weights" in out


def _expect(case: FileCase, command: str) -> str | None:
    """The error a command gives on a file of ``case``, or ``None`` if it works."""
    if case.version_error:
        return "schema version 0"
    if case.kind != "landscape-run":
        return None if command in ("info", "info-tree", "plot") else "not of kind"
    if command == "compare":
        if case.pair is None:
            return "compare needs two solutions"
        return None if case.measured else "`landscape sharpness"
    if command == "surface-line" and case.pair is None:
        return "a line needs two points"
    if command == "surface-plane" and case.plane is None:
        return "a plane needs three points"
    if command == "surface-pca" and not case.trajectories:
        return "--record-every"
    return None


def _check_ok(case: FileCase, command: str, path: Path, out: str) -> None:
    if command in ("info", "info-tree"):
        _check_info(case, path, out, command == "info-tree")
    elif command == "plot":
        pngs = sorted(p.name for p in (path.parent / "figs").glob("*.png"))
        assert pngs == sorted({Path(ln.split()[-1]).name for ln in out.splitlines()
                               if ln.startswith("wrote ")})
        want = {"landscape-results": "swa_vs_sgd", "landscape-analysis":
                "surface_random_train_loss"}.get(case.kind, "history")
        if case.history:
            assert f"{path.stem}_{want}.png" in pngs
        else:  # one evaluated epoch draws no curve
            assert f"{path.stem}_history.png" not in pngs
            assert pngs or "holds nothing to plot yet" in out
        if case.kind == "landscape-analysis":  # train data only: no test-error contours
            assert f"{path.stem}_surface_random_test_err.png" not in pngs
        for s in case.surfaces:
            assert f"{path.stem}_surface_{s}.png" in pngs
    elif command == "compare":
        assert "| quantity | sgd | swa |" in out
        assert "median width" in out
    elif command == "gap":
        with h5py.File(path) as f:
            g = f["measures/gap"]
            assert sorted(g["solutions"]) == sorted(case.solutions)
            assert sorted(g["trajectories"]) == sorted(case.trajectories)
            if case.pair is None:
                assert "from" not in g.attrs
                assert len(g["line"]) == 0
                assert "no line: the line needs two solutions" in out
            else:
                assert (g.attrs["from"], g.attrs["to"]) == case.pair
                assert g["line/t"].shape == (3,)
                assert np.isfinite(g["line/test_err"][()]).all()
    elif command == "sharpness":
        with h5py.File(path) as f:
            w = f[f"measures/{case.main}/width/widths"][()]
        assert w.shape == (4,)
        assert (w > 0).all()
    else:
        kind = command.removeprefix("surface-")
        name = {"random": f"random_{case.main}", "pca": f"pca_{case.main}",
                "line": f"line_{case.pair[0]}_{case.pair[1]}" if case.pair else "",
                "plane": case.plane}[kind]
        assert f"surface {name} in {path}" in out
        loss = _surface(path, name)
        assert loss.shape == ((3,) if kind == "line" else (3, 3))
        assert np.isfinite(loss).all()
        assert (loss > 0).all()


SURFACE = ["--quiet", "--grid", "-1:1:3"]
COMMANDS: dict[str, Callable[[str, Path], list[str]]] = {
    "info": lambda f, d: ["info", f],
    "info-tree": lambda f, d: ["info", f, "--tree"],
    "compare": lambda f, d: ["compare", f],
    "gap": lambda f, d: ["gap", f, "--quiet", "--grid", "0:1:3"],
    "plot": lambda f, d: ["plot", f, "--all", "--out-dir", str(d / "figs")],
    "surface-random": lambda f, d: ["surface", f, *SURFACE],
    "surface-line": lambda f, d: ["surface", f, "--kind", "line", "--quiet",
                                  "--grid", "0:1:3"],
    "surface-plane": lambda f, d: ["surface", f, "--kind", "plane", *SURFACE,
                                   "--grid-y", "-1:1:3"],
    "surface-pca": lambda f, d: ["surface", f, "--kind", "pca", *SURFACE,
                                 "--grid-y", "-1:1:3"],
    "sharpness": lambda f, d: ["sharpness", f, "--quiet", "--measures", "width",
                               "--directions", "4", "--samples", "100"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("file", list(FILES))
def test_every_command_on_every_file(file: str, command: str, files: dict[str, Path],
                                     tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    case = FILES[file]
    path = tmp_path / files[file].name  # a copy: commands store what they compute
    shutil.copyfile(files[file], path)
    capsys.readouterr()
    rc = main(COMMANDS[command](str(path), tmp_path))
    out, err = capsys.readouterr()
    want = _expect(case, command)
    if want is None:
        assert rc == 0, err
        assert "Traceback" not in err
        _check_ok(case, command, path, out)
    else:
        assert rc == 2, (out, err)
        _one_line_error(err, want)


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    return next(ln for ln in err.splitlines() if "error:" in ln)


def test_errors_list_only_what_the_file_holds(files: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bare, no_swa = (str(shutil.copyfile(files[n], tmp_path / f"{n}.h5"))
                    for n in ("no-swa-no-trajectory", "no-swa"))
    plane = ["--kind", "plane", "--points", "sgd,swa_last,swa", *SURFACE]
    line = _error(["surface", bare, *plane], capsys)
    assert line.endswith("unknown point 'swa_last'; choose one of ['sgd'] (swa_last is "
                         "written by `landscape train` without --no-swa)")
    line = _error(["surface", no_swa, *plane], capsys)
    assert "choose one of ['sgd', 'sgd/epoch:N', 'sgd/step:N']" in line
    line = _error(["surface", no_swa, "--kind", "line", "--to", "epoch:2", *SURFACE],
                  capsys)
    assert "the swa run recorded no trajectory; choose one of ['sgd', 'sgd/epoch:N'" in line
    line = _error(["surface", no_swa, "--kind", "pca", "--trajectory", "swa", *SURFACE],
                  capsys)
    assert line.endswith("no recorded trajectory of the swa run in " + no_swa
                         + "; recorded: ['sgd'] (choose with --trajectory)")
    line = _error(["surface", bare, "--kind", "pca", *SURFACE], capsys)
    assert "this file holds none" in line
    assert "--record-every" in line
    assert "merge" not in line
    assert "['sgd'" not in line  # names no run as recorded
    # a merged file never holds one: the error sends to the merged runs' files
    line = _error(["surface", str(files["merged"]), "--kind", "pca", *SURFACE], capsys)
    assert "`landscape merge` copies no trajectory: use one of the merged runs' files" in line
    line = _error(["surface", bare, "--kind", "line", *SURFACE], capsys)
    assert "one solution ['sgd']; pass --to POINT or train with SWA (drop --no-swa)" in line
    line = _error(["surface", no_swa, "--kind", "line", *SURFACE], capsys)
    assert "pass --to POINT (e.g. --to sgd/epoch:0)" in line
    line = _error(["sharpness", no_swa, "--solutions", "swa", "--quiet"], capsys)
    assert line.endswith("choose one of ['sgd'] (swa is written by `landscape train` "
                         "without --no-swa)")
    line = _error(["compare", bare], capsys)
    assert line.endswith("compare needs two solutions and the file holds only ['sgd']; "
                         "train with SWA (drop --no-swa) or add a post-hoc average "
                         "(--average-epochs A:B)")


def test_eval_every_0_changes_only_the_history(files: dict[str, Path]) -> None:
    """``--eval-every 0`` (the README's advice for speed) trains the same weights."""
    with h5py.File(files["default"]) as a, h5py.File(files["no-epoch-metrics"]) as b:
        for s in RUN:
            assert np.array_equal(a[f"solutions/{s}/weights"][()],
                                  b[f"solutions/{s}/weights"][()])
            assert a[f"solutions/{s}"].attrs["test_acc"] == \
                b[f"solutions/{s}"].attrs["test_acc"]
        for run in ("sgd", "swa"):
            full, last = a[f"history/{run}/test_acc"][()], b[f"history/{run}/test_acc"][()]
            assert np.isfinite(full).all()
            assert np.isnan(last[:-1]).all()
            assert last[-1] == full[-1]
