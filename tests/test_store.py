"""Run file: schema checks, atomic edits, the writer lock, layouts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape import store
from landscape._errors import UserError
from landscape.params import ParamKind, ParamLayout


def test_solutions_round_trip_to_state_dict(tiny_run: Path) -> None:
    from landscape.jobs import load_run_model

    model, _ = load_run_model(tiny_run)
    with store.open_run(tiny_run) as f:
        layout, buf = store.layouts(f)
        sol = store.read_solution(f, "sgd")
    named = layout.unflatten(sol.weights)
    model.load_state_dict({**named, **buf.unflatten(sol.buffers)}, strict=True)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), named[name], rtol=0, atol=0)


def test_group_attrs_are_reused_only_when_stored_with_the_same_parameters(
        tmp_path: Path, tiny_run: Path) -> None:
    import shutil

    run = Path(shutil.copy(tiny_run, tmp_path / "run.h5"))
    params = {"alpha": 0.5, "params": {"top_k": 5, "tol": 1e-3}}
    store.write_group_attrs(run, "measures/x", params | {"value": 2.0})
    attrs = store.group_attrs(run, "measures/x", params)
    assert attrs is not None
    assert attrs["value"] == 2.0
    assert store.group_attrs(run, "measures/x") == attrs  # no parameters asked for
    assert store.group_attrs(run, "measures/x", {"alpha": 0.25}) is None  # differs
    assert store.group_attrs(run, "measures/x", {"params": {"top_k": 6, "tol": 1e-3}}) is None
    assert store.group_attrs(run, "measures/x", {"beta": 1}) is None  # never stored
    assert store.group_attrs(run, "measures/y", {}) is None  # no such group


def test_unknown_solution_lists_the_stored_ones(tiny_run: Path) -> None:
    with store.open_run(tiny_run) as f, pytest.raises(UserError, match="swa_last"):
        store.read_solution(f, "nope")


def test_foreign_and_other_version_files_are_refused(tmp_path: Path, tiny_run: Path) -> None:
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(UserError, match="not of kind"):
        store.check_run_file(other)
    text = tmp_path / "a.h5"
    text.write_text("hello")
    with pytest.raises(UserError, match="not an HDF5 file"):
        store.check_run_file(text)
    old = tmp_path / "old.h5"
    old.write_bytes(tiny_run.read_bytes())
    with h5py.File(old, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(UserError, match="schema version 99"):
        store.check_run_file(old)


def test_failed_edit_leaves_the_file_unchanged(tmp_path: Path, tiny_run: Path) -> None:
    p = tmp_path / "r.h5"
    p.write_bytes(tiny_run.read_bytes())
    before = p.read_bytes()

    def fail() -> None:
        with store.edit_run(p) as f:
            del f["solutions"]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert p.read_bytes() == before
    assert not list(tmp_path.glob("r.h5.tmp-*"))
    with store.edit_run(p) as f:
        f.attrs["note"] = "kept"
    with store.open_run(p) as f:
        assert f.attrs["note"] == "kept"
        assert "solutions" in f


def test_second_writer_is_refused(tmp_path: Path, tiny_run: Path) -> None:
    p = tmp_path / "r.h5"
    p.write_bytes(tiny_run.read_bytes())
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from landscape.store import WriterLock\n"
         f"with WriterLock({str(p)!r}):\n    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="another process is writing"), store.edit_run(p):
            pass
    finally:
        holder.kill()
        holder.wait()
    with store.WriterLock(p), store.WriterLock(p):  # re-entrant in one process
        pass


def test_param_layout_kinds_and_json_round_trip() -> None:
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 3, 3), torch.nn.BatchNorm1d(3),
                              torch.nn.Flatten(), torch.nn.Linear(3, 2))
    layout = ParamLayout.from_module(net)
    assert layout.kinds == (ParamKind.WEIGHT, ParamKind.BIAS, ParamKind.BN, ParamKind.BN,
                            ParamKind.WEIGHT, ParamKind.BIAS)
    assert int(layout.mask(ParamKind.WEIGHT).sum()) == 9 + 6
    assert ParamLayout.from_json(layout.to_json()) == layout
    vec = torch.arange(layout.numel, dtype=torch.float32)
    layout.write(net, vec)
    assert torch.equal(layout.read(net), vec)
    with pytest.raises(UserError, match="another model"):
        layout.unflatten(torch.zeros(layout.numel + 1))
    with pytest.raises(UserError, match="another architecture"):
        layout.check_module(torch.nn.Linear(3, 2))


def test_attrs_are_json_not_pickles(tiny_run: Path) -> None:
    with h5py.File(tiny_run) as f:
        def check(_: str, obj: h5py.HLObject) -> None:
            for v in obj.attrs.values():
                assert isinstance(v, str | bytes | int | float | np.number | np.bool_), v
            if isinstance(obj, h5py.Dataset):
                assert obj.dtype.kind in "fiub", obj.name
        check("/", f)
        f.visititems(check)


def test_resolve_point(tiny_run) -> None:
    with h5py.File(tiny_run, "r") as f:
        w, _ = store.resolve_point(f, "swa")
        assert torch.equal(w, torch.from_numpy(f["solutions/swa/weights"][()]))
        w1, _ = store.resolve_point(f, "epoch:2")
        assert torch.equal(w1, torch.from_numpy(f["trajectories/swa/weights"][2]))
        w2, _ = store.resolve_point(f, "sgd/epoch:1")
        assert torch.equal(w2, torch.from_numpy(f["trajectories/sgd/weights"][1]))
        with pytest.raises(UserError, match=r"unknown point 'nope'.*swa_last"):
            store.resolve_point(f, "nope")
        with pytest.raises(UserError, match="not recorded"):
            store.resolve_point(f, "epoch:999")


# =========================================================================== damage
@pytest.fixture
def truncated(tiny_run: Path, tmp_path: Path) -> Path:
    """A run file cut in half, as an interrupted copy or a full disk leaves it."""
    p = tmp_path / "cut.h5"
    data = tiny_run.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.mark.parametrize("argv", [
    ["info", "{f}"], ["surface", "{f}", "--quiet"], ["sharpness", "{f}", "--quiet"],
    ["gap", "{f}", "--quiet"], ["compare", "{f}"], ["plot", "{f}", "--all", "--out-dir", "{d}"],
])
def test_a_damaged_file_is_one_line(truncated: Path, argv: list[str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from landscape.cli import main

    args = [a.format(f=truncated, d=truncated.parent / "figs") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{truncated} is damaged" in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1


def test_a_damaged_train_out_names_the_fix_and_the_resume_state(
        truncated: Path, tiny_config, capsys: pytest.CaptureFixture[str]) -> None:
    from landscape.cli import main

    argv = ["train", "--out", str(truncated), "--data-root", tiny_config.data_root,
            "--num-samples", "500", "--epochs", "6", "--swa-start", "3", "--batch-size",
            "50", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and "move it away or pass --force" in err  # noqa: PT018
    assert "there is no training state" in err
    partial = truncated.with_name(truncated.name + ".partial")
    partial.mkdir()
    assert main(argv) == 2
    assert "still resumes" in capsys.readouterr().err
    partial.rmdir()
    assert main([*argv, "--force"]) == 0  # a new run file replaces the damaged one
    assert store.check_run_file(truncated) == truncated
    assert not truncated.with_name(truncated.name + ".lock").exists()


def test_an_unwritable_out_folder_is_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from landscape.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["train", "--out", str(blocker / "run.h5"), "--epochs", "1",
                 "--swa-start", "0", "--no-swa", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {blocker / 'run.h5'}" in err
    assert "Traceback" not in err


def test_a_full_disk_during_a_surface_write_keeps_the_file_and_resumes(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC on the fourth commit: one-line error, the file opens with the points of
    the earlier commits, and the rerun completes it as an uninterrupted run would."""
    import errno
    import time

    from landscape.jobs import SurfaceConfig, compute_surface
    from landscape.store import _h5

    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    full.write_bytes(tiny_run.read_bytes())
    part.write_bytes(tiny_run.read_bytes())
    cfg = SurfaceConfig(grid="-1:1:3", grid_y="-1:1:3", bn="keep", test_samples=50)
    compute_surface(full, cfg, log=lambda _: None)
    calls = {"n": 0}
    real = _h5.os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] >= 7:  # each commit fsyncs the file and its folder: the 4th fails
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(_h5.os, "fsync", fsync)
    with pytest.raises(UserError, match="no space left on the device while writing") as e:
        compute_surface(part, cfg, commit_interval=0, log=lambda _: None,
                        callback=lambda _: time.sleep(0.3))  # rounds of 1, 3, 3, 2 points
    assert "\n" not in str(e.value)
    monkeypatch.setattr(_h5.os, "fsync", real)
    mid = store.read_surface(part, "random_swa")  # the file still opens
    assert 0 < mid.computed.sum() < 9
    assert not list(tmp_path.glob("part.h5.tmp-*"))
    compute_surface(part, cfg, log=lambda _: None)
    a, b = store.read_surface(full, "random_swa"), store.read_surface(part, "random_swa")
    assert b.complete
    for m in a.values:
        np.testing.assert_array_equal(a.values[m], b.values[m])


def test_stage_attrs_keep_finished_work_made_with_the_same_parameters(tmp_path) -> None:
    from landscape import store

    p = tmp_path / "progress.h5"
    assert store.stage_attrs(p, "seed0/sgd") is None  # nothing finished yet
    store.write_stage_attrs(p, "seed0/sgd", {"test_acc": 0.97, "stops": [[3, 0.96]],
                                             "config": {"lr": 0.1}})
    store.write_stage_attrs(p, "tune/swa", {"best": {"lr": 0.2}})
    got = store.stage_attrs(p, "seed0/sgd", {"config": {"lr": 0.1}})
    assert got == {"test_acc": 0.97, "stops": [[3, 0.96]], "config": {"lr": 0.1}}
    assert store.stage_attrs(p, "seed0/sgd", {"config": {"lr": 0.3}}) is None
    assert store.stage_attrs(p, "seed1/sgd") is None
    assert store.stage_attrs(p, "tune/swa") == {"best": {"lr": 0.2}}


def test_contents_has_a_history_only_with_two_evaluated_epochs(
        tiny_run: Path, tiny_config, tmp_path: Path) -> None:
    from landscape.train import train

    assert store.contents(tiny_run)["history"]  # evaluated every epoch
    end_only = tmp_path / "end.h5"
    train(tiny_config.replace(eval_every=0, swa=False, record_every=0), end_only,
          progress=False, log=lambda _: None)
    acc = store.read_history(end_only)["runs"]["sgd"]["test_acc"]
    assert np.isfinite(acc).tolist() == [False] * (len(acc) - 1) + [True]
    assert not store.contents(end_only)["history"]  # one point draws no curve


def test_trimmed_copy_leaves_out_nested_members_by_pattern(tmp_path) -> None:
    """The copy keeps every other group, dataset and attribute byte for byte and is
    smaller by the dropped datasets (not a deletion that leaves the space behind)."""
    import h5py
    import numpy as np

    from landscape.store import trimmed_copy

    src = tmp_path / "a.h5"
    big = np.arange(200_000, dtype=np.float32)
    with h5py.File(src, "w") as f:
        f.attrs["kind"] = "landscape-analysis"
        f.attrs["schema_version"] = 1
        for n in ("one", "two"):
            g = f.create_group(f"alignments/{n}")
            g.attrs["method"] = n
            g["aligned"] = big
            g["profiles/line/t"] = np.linspace(0, 1, 5)
        f["trajectories/sgd/weights"] = big
    out = trimmed_copy(src, tmp_path / "b.h5",
                       drop=("trajectories", "alignments/*/aligned"))
    with h5py.File(out) as g:
        assert sorted(g) == ["alignments"]
        assert g.attrs["kind"] == "landscape-analysis"
        for n in ("one", "two"):
            assert "aligned" not in g[f"alignments/{n}"]
            assert g[f"alignments/{n}"].attrs["method"] == n
            np.testing.assert_array_equal(g[f"alignments/{n}/profiles/line/t"][()],
                                          np.linspace(0, 1, 5))
    assert out.stat().st_size < 100_000 < src.stat().st_size


def test_save_and_load_refuse_names_that_are_not_one_group(tmp_path: Path) -> None:
    """``save(.., "x/y")`` nested groups and ``name=""`` fell back to the default name;
    both are one line now, before the file is created; ``load`` says which names it takes."""
    from torch import nn

    import landscape as ls

    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    surface = ls.random_surface(net, (x, y), grid="-1:1:3")
    path = tmp_path / "a.h5"
    for bad in ("x/y", "", ".."):
        with pytest.raises(UserError, match=r"^name '.*' cannot name a group of the file: "
                           r"use a plain name without '/'"):
            ls.save(surface, path, bad)
        assert not path.exists()
    ls.save(surface, path, "ok")
    np.testing.assert_array_equal(ls.load(path, "ok").values["train_loss"],
                                  surface.values["train_loss"])
    for bad in ("", "ok/", "a/b/c"):
        with pytest.raises(UserError, match=r"^name '.*' cannot name a stored result: use "
                           r"a surface name or solution/measure"):
            ls.load(path, bad)
