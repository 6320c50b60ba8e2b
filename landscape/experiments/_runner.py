"""The one way protocols run independent tasks: worker processes over seeds, and stacking.

A protocol's per-seed work is a top-level function ``task(spec, log)`` of plain
data (picklable), returning plain data.  :class:`Workers` runs such functions in
spawned worker processes, or in this process for one worker, and
:func:`map_seeds` runs one per seed with a progress line after each.
:func:`stack` turns the per-seed results into per-seed lists, the shape of a
results file.  Each task's result is a function of its spec alone, so the
numbers do not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

Log = Callable[[str], None]
#: A task: ``task(spec, log) -> result``, a module-level function of plain data.
Task = Callable[[Any, Log], Any]


def worker_count(setting: int | None, n_tasks: int) -> int:
    """Worker processes for ``n_tasks``: ``[experiment] workers`` (default one per
    CPU core), at most one per task.

    Returns:
        The count (at least 1).
    """
    return max(1, min(n_tasks, int(setting or os.cpu_count() or 1)))


def _print(message: str) -> None:
    print(message, flush=True)


def _in_worker(task: Task, spec: Any, threads: int | None) -> Any:
    """Run ``task`` in a worker process: its torch threads, logging to its stdout."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return task(spec, _print)


class Workers:
    """``n`` spawned worker processes (``n <= 1``: this process), cancelled on an error.

    Args:
        n: Number of processes.
        log: The log of tasks run in this process (workers log to their stdout).
        threads: Torch intra-op threads of each worker process (``None``: torch's
            default).

    Example:
        >>> with Workers(1) as w:
        ...     w.map(lambda x, log: x * x, [1, 2, 3])
        [1, 4, 9]
    """

    def __init__(self, n: int, log: Log = _print, threads: int | None = None) -> None:
        self.n, self.log, self.threads = n, log, threads
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.n > 1:
            self._pool = ProcessPoolExecutor(
                self.n, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def parallel(self) -> bool:
        """Whether tasks run in worker processes."""
        return self._pool is not None

    def as_completed(self, task: Task, specs: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, task(spec))`` as the tasks finish (in order in this process).

        Yields:
            The index of each spec in ``specs`` and its result.
        """
        if self._pool is None:
            for i, spec in enumerate(specs):
                yield i, task(spec, self.log)
            return
        pending: dict[Future, int] = {
            self._pool.submit(_in_worker, task, spec, self.threads): i
            for i, spec in enumerate(specs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()

    def map(self, task: Task, specs: Sequence[Any]) -> list[Any]:
        """``[task(spec) for spec in specs]``, in parallel where there are workers.

        Returns:
            The results in the order of ``specs``.
        """
        out: list[Any] = [None] * len(specs)
        for i, r in self.as_completed(task, specs):
            out[i] = r
        return out


def map_seeds(task: Task, seeds: Sequence[Any], workers: int, log: Log, *,
              name: str, threads: int | None = None) -> list[Any]:
    """Run ``task`` once per seed's spec in ``workers`` processes; a line per seed done.

    Args:
        task: ``task(spec, log)``, a module-level function (it is pickled).
        seeds: One spec per seed (plain data), in seed order.
        workers: Number of processes (``<= 1``: this process, logging to ``log``).
        log: The progress log.
        name: The protocol, prefixing the log lines.
        threads: Torch threads of each worker process.

    Returns:
        The results in seed order.
    """
    n = len(seeds)
    out: list[Any] = [None] * n
    t0 = time.perf_counter()
    with Workers(workers, log, threads) as pool:
        if pool.parallel:
            log(f"[{name}] {n} seeds in {workers} worker processes")
        for k, (i, r) in enumerate(pool.as_completed(task, seeds), start=1):
            out[i] = r
            el = time.perf_counter() - t0
            log(f"[{name}] {k}/{n} seeds done ({el:.0f} s, ETA {el / k * (n - k):.0f} s)")
    return out


def stack(per_seed: Sequence[Any]) -> Any:
    """Per-seed results, nested mappings of values, as mappings of per-seed lists.

    A key missing from a seed's mapping adds nothing for that seed; keys keep
    their first-seen order; anything not a mapping is a leaf.

    Returns:
        The stacked mapping (or the list of leaves).

    Example:
        >>> stack([{"sgd": {"acc": 0.9}, "path": "a"}, {"sgd": {"acc": 0.8}, "path": "b"}])
        {'sgd': {'acc': [0.9, 0.8]}, 'path': ['a', 'b']}
    """
    if not per_seed or not all(isinstance(d, Mapping) for d in per_seed):
        return list(per_seed)
    keys = list(dict.fromkeys(k for d in per_seed for k in d))
    return {k: stack([d[k] for d in per_seed if k in d]) for k in keys}
