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
