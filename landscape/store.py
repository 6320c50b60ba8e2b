r"""The HDF5 run file: one self-describing, crash-safe file per run.

Layout (``schema_version`` 1; see ``docs/schema.md`` for every dataset)::

    /                      attrs: kind, schema_version, landscape_version, created,
                                  config (JSON), seed, torch_version, device
    /model                 attrs: name, kwargs (JSON), in_shape, n_classes,
                                  params (JSON layout), buffers (JSON layout)
    /data                  attrs: name, n_train, n_test, seed, ...
    /history/<run>/...     per-epoch metrics of each training run (sgd, swa)
    /trajectories/<run>/   weights (n_rec, n_params), buffers, step, epoch, lr, loss
    /solutions/<name>/     weights, buffers; metrics as attrs
    /surfaces/<name>/      axes, directions, center, metric grids (NaN = missing)
    /measures/<solution>/<measure>/

Crash safety: a file is never modified in place.  :func:`edit_run` copies it,
lets the caller change the copy, and atomically renames the copy over the
original, so a ``SIGKILL`` at any moment leaves either the old or the new file,
both complete.  A :class:`WriterLock` on ``FILE.lock`` keeps a second writer out.
No pickles: attributes are JSON strings or plain numbers.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError
from landscape.params import ParamLayout

SCHEMA_VERSION = 1
FILE_KIND = "landscape-run"


def _version() -> str:
    from landscape import __version__

    return __version__


# --------------------------------------------------------------------------- lock
_HELD: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth), per process


class WriterLock:
    """Exclusive, non-blocking writer lock on ``PATH.lock`` (``flock``; freed on kill).

    Re-entrant within one process, so a command can hold it for its whole run
    while the edits it makes take it again.

    Raises:
        UserError: If another process holds the lock.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.lock_path = str(Path(path).resolve()) + ".lock"

    def __enter__(self) -> WriterLock:
        if self.lock_path in _HELD:
            fd, depth = _HELD[self.lock_path]
            _HELD[self.lock_path] = (fd, depth + 1)
            return self
        Path(self.lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(
                f"another process is writing {self.lock_path[:-5]} (it holds "
                f"{self.lock_path}); wait for it to finish or write to another --out"
            ) from None
        _HELD[self.lock_path] = (fd, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        fd, depth = _HELD[self.lock_path]
        if depth > 1:
            _HELD[self.lock_path] = (fd, depth - 1)
            return
        del _HELD[self.lock_path]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- open
def _check_ours(f: h5py.File, path: str | os.PathLike) -> None:
    kind = f.attrs.get("kind")
    if kind != FILE_KIND:
        raise UserError(
            f"{path} is an HDF5 file but not a landscape run file (no kind="
            f"{FILE_KIND!r} attribute); pass a file written by `landscape train`"
        )
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {version}, this landscape reads version "
            f"{SCHEMA_VERSION}; use the landscape release that wrote it or rerun"
        )


def check_run_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it is a readable run file of this schema.

    Raises:
        UserError: If it is missing, not HDF5, not ours, or of another version.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"run file {p} does not exist; create it with `landscape train`")
    if not h5py.is_hdf5(p):
        raise UserError(f"{p} is not an HDF5 file; pass a run file (.h5)")
    with h5py.File(p, "r") as f:
        _check_ours(f, p)
    return p


@contextmanager
def open_run(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a run file read-only after checking kind and schema version."""
    p = check_run_file(path)
    with h5py.File(p, "r") as f:
        yield f


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def edit_run(path: str | os.PathLike, *, create: bool = False) -> Iterator[h5py.File]:
    """Change a run file atomically: edit a copy, then rename it over the original.

    With ``create=True`` the file starts empty (an existing one is replaced only
    when the block succeeds).  On an exception nothing changes on disk.
    """
    p = Path(path)
    with WriterLock(p):
        tmp = p.with_name(f"{p.name}.tmp-{os.getpid()}")
        for stale in p.parent.glob(f"{p.name}.tmp-*"):
            stale.unlink(missing_ok=True)
        if create:
            p.parent.mkdir(parents=True, exist_ok=True)
        else:
            check_run_file(p)
            shutil.copyfile(p, tmp)
        try:
            with h5py.File(tmp, "w" if create else "r+") as f:
                yield f
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, p)
            _fsync_dir(p)
        finally:
            tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- attrs
def to_attr(value: Any) -> Any:
    """Make ``value`` an HDF5 attribute: numbers and strings as they are, else JSON."""
    if isinstance(value, str):
        return str(value)  # plain str: h5py rejects str subclasses (TorchVersion)
    if isinstance(value, bool | int | float | np.integer | np.floating):
        return value
    return json.dumps(value)


def json_attr(obj: h5py.HLObject, key: str, default: Any = None) -> Any:
    """Read an attribute written as JSON (returns ``default`` when absent)."""
    if key not in obj.attrs:
        return default
    return json.loads(obj.attrs[key])


def set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Set several attributes; ``None`` values are skipped."""
    for k, v in attrs.items():
        if v is not None:
            obj.attrs[k] = to_attr(v)


def write_array(
    group: h5py.Group, name: str, data: np.ndarray | torch.Tensor, *,
    compress: bool = False,
) -> h5py.Dataset:
    """(Re)write a dataset; large 2D arrays get row chunks and gzip."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if name in group:
        del group[name]
    kw: dict[str, Any] = {}
    if compress and data.ndim == 2 and data.size > 0:
        kw = {"chunks": (1, data.shape[1]), "compression": "gzip",
              "compression_opts": 4, "shuffle": True}
    return group.create_dataset(name, data=data, **kw)


# --------------------------------------------------------------------------- run
def init_run(
    f: h5py.File, *, config: Mapping[str, Any], seed: int, device: str,
    model: Mapping[str, Any], params: ParamLayout, buffers: ParamLayout,
    data: Mapping[str, Any],
) -> None:
    """Write the root, ``/model`` and ``/data`` metadata of a new run file."""
    set_attrs(f, {
        "kind": FILE_KIND,
        "schema_version": SCHEMA_VERSION,
        "landscape_version": _version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": dict(config),
        "seed": int(seed),
        "torch_version": torch.__version__,
        "device": device,
    })
    g = f.require_group("model")
    set_attrs(g, dict(model))
    g.attrs["params"] = params.to_json()
    g.attrs["buffers"] = buffers.to_json()
    g.attrs["n_params"] = params.numel
    set_attrs(f.require_group("data"), dict(data))


def layouts(f: h5py.File) -> tuple[ParamLayout, ParamLayout]:
    """The parameter and buffer layouts stored in ``/model``."""
    g = f["model"]
    return ParamLayout.from_json(g.attrs["params"]), ParamLayout.from_json(
        g.attrs["buffers"])


def config_of(f: h5py.File) -> dict[str, Any]:
    """The resolved config stored at the root."""
    return json.loads(f.attrs["config"])


@dataclass
class Solution:
    """A stored weight vector with its BN buffers and metrics."""

    name: str
    weights: torch.Tensor  # (n_params,)
    buffers: torch.Tensor  # (n_buffers,)
    attrs: dict[str, Any] = field(default_factory=dict)


def write_solution(f: h5py.File, sol: Solution) -> None:
    """Store a solution under ``/solutions/<name>`` (replacing one of that name)."""
    g = f.require_group("solutions")
    if sol.name in g:
        del g[sol.name]
    s = g.create_group(sol.name)
    write_array(s, "weights", sol.weights.float())
    write_array(s, "buffers", sol.buffers.float())
    set_attrs(s, sol.attrs)


def solution_names(f: h5py.File) -> list[str]:
    """Names of the stored solutions."""
    return list(f["solutions"].keys()) if "solutions" in f else []


def read_solution(f: h5py.File, name: str) -> Solution:
    """Read ``/solutions/<name>``.

    Raises:
        UserError: If there is no such solution (the message lists those there are).
    """
    if "solutions" not in f or name not in f["solutions"]:
        raise UserError(
            f"no solution {name!r} in {f.filename}; choose one of "
            f"{solution_names(f) or '(none: run `landscape train` first)'}"
        )
    g = f["solutions"][name]
    return Solution(
        name,
        torch.from_numpy(g["weights"][()]),
        torch.from_numpy(g["buffers"][()]),
        {k: _plain(v) for k, v in g.attrs.items()},
    )


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
