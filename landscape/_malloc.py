r"""Keep glibc from handing large tensor buffers back to the kernel (issue #12).

By default glibc serves every allocation above its *mmap threshold* (128 KiB,
raised dynamically up to 32 MiB) with a fresh ``mmap`` and returns it with
``munmap`` when freed, and it trims the top of the heap once more than 128 KiB
is free there.  A CNN's activations are exactly such buffers, allocated and
freed at every batch: the kernel zeroes and page-faults them back in each time.
On the seed-004 SmallCNN (32x32x3 inputs, 2 threads) that was ~45 % of the CPU
time of an evaluation and ~25 % of a training epoch (``benchmarks/bench_alloc.py``:
evaluation of 10k images 20.8 s -> 11.0 s wall, sys 7.6 s -> 0.1 s).

:func:`configure` sets, through ``mallopt``, an mmap threshold and a trim
threshold of ``SIZE_MAX`` (never), so freed buffers stay in the heap and are
reused by the next batch without a system call.  This is what the environment
variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do, but it
works after the interpreter has started.  Results are unchanged (only where
memory comes from changes); the cost is that the process keeps its peak heap
for its lifetime instead of returning it between batches, and the peak itself
is higher (heap fragmentation: +20-30 % on the SmallCNN; it levels off, it
does not grow with the number of evaluations).

``import landscape`` calls :func:`configure` once.  It does nothing:

* with ``LANDSCAPE_MALLOC=default`` in the environment (the opt-out);
* where the C library is not glibc (musl, macOS, Windows);
* when the user already tunes malloc (``MALLOC_*_`` variables or
  ``glibc.malloc.*`` in ``GLIBC_TUNABLES``), whose settings are left alone.

The settings are process-wide: they also apply to other libraries in the same
process, which is harmless for them (it only affects where large blocks live).
"""

from __future__ import annotations

import ctypes
import os
import warnings

ENV = "LANDSCAPE_MALLOC"
"""Environment variable: ``default`` keeps glibc's own settings; unset or ``tuned``
applies :func:`configure`'s."""

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
# mallopt takes an int and glibc converts it to size_t: -1 is SIZE_MAX, i.e. never.
_NEVER = -1

_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
              "MALLOC_MMAP_MAX_")

STATE: str | None = None
"""What :func:`configure` did: ``tuned``, ``tuned-no-mmap`` (old glibc that caps the
mmap threshold: mmap switched off instead), ``default`` (opted out), ``user``
(malloc already tuned by the environment), ``unsupported`` (not glibc) or
``failed`` (glibc refused); ``None`` before the first call."""


def _glibc() -> ctypes.CDLL | None:
    """The running glibc, or ``None`` where the C library is another one."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (AttributeError, OSError, ValueError):
        return None


def configure() -> str:
    """Keep freed large blocks in the heap for reuse (glibc only; once per process).

    Returns:
        The resulting :data:`STATE`.
    """
    global STATE
    if STATE is not None:
        return STATE
    choice = os.environ.get(ENV, "").strip().lower()
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if choice == "default":
        STATE = "default"
    elif choice not in ("", "tuned"):
        warnings.warn(f"{ENV}={choice!r} is not understood; use 'default' (glibc's "
                      "settings) or 'tuned'; keeping glibc's settings", stacklevel=2)
        STATE = "default"
    elif any(v in os.environ for v in _USER_VARS) or "glibc.malloc." in tunables:
        STATE = "user"
    elif (libc := _glibc()) is None:
        STATE = "unsupported"
    elif not libc.mallopt(_M_TRIM_THRESHOLD, _NEVER):
        STATE = "failed"
    elif libc.mallopt(_M_MMAP_THRESHOLD, _NEVER):
        STATE = "tuned"
    elif libc.mallopt(_M_MMAP_MAX, 0):  # older glibc caps the threshold at 32 MiB
        STATE = "tuned-no-mmap"
    else:
        STATE = "failed"
    return STATE
