"""HDF5 plumbing shared by every file kind: locks, safe opening, atomic edits, attributes.

Crash safety: a file is never modified in place.  :func:`edit_file` copies it,
lets the caller change the copy, and atomically renames the copy over the
original, so a ``SIGKILL`` (or a full disk) at any moment leaves either the old
or the new file, both complete.  A :class:`WriterLock` on ``FILE.lock`` keeps a
second writer out and is removed when the last writer leaves.  No pickles:
attributes are JSON strings or plain numbers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError

SCHEMA_VERSION = 1
RUN_KIND = "landscape-run"
RESULTS_KIND = "landscape-results"
ANALYSIS_KIND = "landscape-analysis"
KINDS = (RUN_KIND, RESULTS_KIND, ANALYSIS_KIND)
_MAKERS = {RUN_KIND: "`landscape train`", RESULTS_KIND: "`landscape reproduce`",
           ANALYSIS_KIND: "landscape.save(...)"}


def _version() -> str:
    from landscape import __version__

    return __version__


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --------------------------------------------------------------------------- lock
_HELD: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth), per process


class WriterLock:
    """Exclusive, non-blocking writer lock on ``PATH.lock`` (``flock``; freed on kill).

    Re-entrant within one process, so a command can hold it for its whole run
    while the edits it makes take it again.  The lock file is deleted when the
    outermost holder releases it.

    Raises:
        UserError: If another process holds the lock, or the folder cannot be written.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.lock_path = str(Path(path).resolve()) + ".lock"

    def __enter__(self) -> WriterLock:
        if self.lock_path in _HELD:
            fd, depth = _HELD[self.lock_path]
            _HELD[self.lock_path] = (fd, depth + 1)
            return self
        target = self.lock_path[:-5]
        while True:
            try:
                Path(self.lock_path).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UserError(f"cannot write {target}: {_first_line(e)}; choose an "
                                "output in a folder you can write") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(
                    f"another process is writing {target} (it holds {self.lock_path}); "
                    "wait for it to finish or write to another --out") from None
            try:  # the holder before us may have unlinked the file we locked: retry
                if os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        _HELD[self.lock_path] = (fd, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        fd, depth = _HELD[self.lock_path]
        if depth > 1:
            _HELD[self.lock_path] = (fd, depth - 1)
            return
        del _HELD[self.lock_path]
        with contextlib.suppress(OSError):  # unlink while holding it (see __enter__)
            os.unlink(self.lock_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- open
class DamagedFileError(UserError):
    """A file that exists but cannot be opened as HDF5 (truncated, a full disk)."""


def damaged(path: Path, e: BaseException) -> DamagedFileError:
    """The one-line error for an HDF5 file that exists but cannot be opened.

    Returns:
        The error to raise.
    """
    return DamagedFileError(
        f"{path} is damaged and cannot be opened as HDF5 ({_first_line(e)}); it was "
        "probably cut short by an interrupted copy or a full disk: restore it or delete "
        "it and rerun the command that made it")


@contextmanager
def _h5(path: Path, mode: str = "r") -> Iterator[h5py.File]:
    try:
        f = h5py.File(path, mode)
    except OSError as e:
        raise damaged(path, e) from None
    with f:
        yield f


def check_file(path: str | os.PathLike, kinds: Sequence[str] = (RUN_KIND,)) -> Path:
    """Return ``path`` as a Path if it is a readable landscape file of one of ``kinds``.

    Raises:
        UserError: If it is missing, not HDF5, damaged, of another kind or
            another schema version.
    """
    p = Path(path)
    names = [k.removeprefix("landscape-") for k in kinds]
    what = " or ".join(f"{'an' if n[0] in 'aeiou' else 'a'} {n} file" for n in names)
    if not p.is_file():
        maker = _MAKERS[kinds[0]]
        raise UserError(f"{p} does not exist; pass {what} (made by {maker})")
    try:
        is_h5 = h5py.is_hdf5(p)
    except OSError as e:
        raise UserError(f"cannot read {p}: {_first_line(e)}") from None
    if not is_h5:
        raise UserError(f"{p} is not an HDF5 file; pass {what} (.h5)")
    with _h5(p) as f:
        _check_kind(f, p, kinds)
    return p


def _check_kind(f: h5py.File, path: Path, kinds: Sequence[str]) -> None:
    kind = f.attrs.get("kind")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind not in kinds:
        what = " or ".join(repr(k) for k in kinds)
        raise UserError(
            f"{path} is an HDF5 file but not of kind {what} (it has kind={kind!r}); "
            f"pass a file written by {_MAKERS[kinds[0]]}")
    # results files written before they carried a version are version 1
    version = int(f.attrs.get("schema_version", 1 if kind == RESULTS_KIND else -1))
    if version != SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {version}, this landscape reads version "
            f"{SCHEMA_VERSION}; use the landscape release that wrote it or rerun "
            f"{_MAKERS.get(kind, _MAKERS[kinds[0]])} to write it again")


def file_kind(path: str | os.PathLike) -> str:
    """The ``kind`` of a landscape file (checked).

    Returns:
        One of :data:`KINDS`.
    """
    p = check_file(path, KINDS)
    with _h5(p) as f:
        return str(f.attrs["kind"])


@contextmanager
def open_file(path: str | os.PathLike, kinds: Sequence[str] = (RUN_KIND,)
              ) -> Iterator[h5py.File]:
    """Open a landscape file read-only after checking kind and schema version.

    Yields:
        The open file (pass it to the :mod:`landscape.store` functions only).
    """
    p = check_file(path, kinds)
    with _h5(p) as f:
        yield f


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def edit_file(path: str | os.PathLike, *, create: bool = False,
              kinds: Sequence[str] = KINDS) -> Iterator[h5py.File]:
    """Change a file atomically: edit a copy, then rename it over the original.

    With ``create=True`` the file starts empty (an existing one is replaced only
    when the block succeeds).  On an exception, a full disk included, nothing
    changes on disk.

    Yields:
        The writable copy.

    Raises:
        UserError: If the disk fills up or the folder cannot be written (the
            original file is left as it was).
    """
    p = Path(path)
    with WriterLock(p):
        tmp = p.with_name(f"{p.name}.tmp-{os.getpid()}")
        for stale in p.parent.glob(f"{p.name}.tmp-*"):
            stale.unlink(missing_ok=True)
        try:
            if create:
                p.parent.mkdir(parents=True, exist_ok=True)
            else:
                check_file(p, kinds)
                shutil.copyfile(p, tmp)
            with _h5(tmp, "w" if create else "r+") as f:
                yield f
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, p)
            _fsync_dir(p)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(
                    f"no space left on the device while writing {p}; the file is left "
                    "as it was before this step: free some space and rerun the same "
                    "command to continue") from None
            if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise UserError(f"cannot write {p}: {_first_line(e)}; choose an output "
                                "in a folder you can write") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)


def stamp(f: h5py.File, kind: str, **attrs: Any) -> None:
    """Write the root attributes every landscape file starts with."""
    set_attrs(f, {"kind": kind, "schema_version": SCHEMA_VERSION,
                  "landscape_version": _version(), "torch_version": torch.__version__,
                  "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                  **attrs})


# --------------------------------------------------------------------------- attrs
def to_attr(value: Any) -> Any:
    """Make ``value`` an HDF5 attribute: numbers and strings as they are, else JSON.

    Returns:
        The attribute value.
    """
    if isinstance(value, str):
        return str(value)  # plain str: h5py rejects str subclasses (TorchVersion)
    if isinstance(value, bool | int | float | np.integer | np.floating):
        return value
    return json.dumps(value)


def plain(v: Any) -> Any:
    """An attribute value as a plain Python value (JSON decoded where it is JSON).

    Returns:
        The value.
    """
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def attrs_of(obj: h5py.HLObject) -> dict[str, Any]:
    """Every attribute of a group or dataset as plain values (JSON not decoded).

    Returns:
        ``{name: value}``.
    """
    return {k: (v.item() if isinstance(v, np.generic) else
                v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}


def check_name(name: str, flag: str = "--name") -> str:
    """Check that ``name`` can name one HDF5 group of a file (a solution, curve, ...).

    Returns:
        ``name``.

    Raises:
        UserError: For an empty name or one with ``/`` (which would nest groups).
    """
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise UserError(f"{flag} {name!r} cannot name a group of the file: use a plain "
                        "name without '/' (e.g. merged_3seeds)")
    return name


def member_names(f: h5py.File, group: str) -> list[str]:
    """Names of the members of ``/<group>`` (``[]`` without the group).

    Returns:
        The names.
    """
    return list(f[group]) if group in f else []


def member_attrs(f: h5py.File, group: str, name: str) -> dict[str, Any] | None:
    """The attributes of ``/<group>/<name>`` (JSON decoded), or ``None`` if absent.

    Returns:
        The attributes.
    """
    if name not in member_names(f, group):
        return None
    return {k: plain(v) for k, v in attrs_of(f[group][name]).items()}


def json_attr(obj: h5py.HLObject, key: str, default: Any = None) -> Any:
    """Read an attribute written as JSON (returns ``default`` when absent).

    Returns:
        The decoded value.
    """
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
    """(Re)write a dataset; large 2D arrays get row chunks and gzip.

    Returns:
        The dataset.
    """
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    if name in group:
        del group[name]
    kw: dict[str, Any] = {}
    if compress and data.ndim == 2 and data.size > 0:
        kw = {"chunks": (1, data.shape[1]), "compression": "gzip",
              "compression_opts": 4, "shuffle": True}
    return group.create_dataset(name, data=data, **kw)


def new_group(parent: h5py.Group, path: str) -> h5py.Group:
    """An empty group at ``path`` under ``parent`` (replacing one there).

    Returns:
        The group.
    """
    if path in parent:
        del parent[path]
    return parent.require_group(path)


def weights_sha256(w: Any) -> str:
    """The SHA-256 of a weight tensor's float32 bytes: how files name the solutions
    they were computed from (a rerun with other weights is told apart).

    Returns:
        The hex digest.
    """
    return hashlib.sha256(w.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()
