r"""Registered measures of a run file's stored solutions, and two solutions compared.

:func:`measure_solution` rebuilds the model and data of a run file, fixes a
seeded train subset (``samples``), builds the measure context (BatchNorm in
eval mode with the solution's own statistics, the loss accumulated over
batches) and writes each measure, as soon as it is done, to
``/measures/<solution>/<measure>`` with its parameters, seed, sample count and
run time (one atomic :func:`landscape.store.edit_run` per measure, so an
interrupted run keeps what it finished).  A measure whose stored parameters
equal the requested ones is skipped unless ``recompute``.

:func:`compare_solutions` reads two solutions' stored measures back and
reports every headline scalar of the registry side by side: medians of
per-direction distributions with bootstrap intervals and a bootstrap interval
of their ratio, scalars with a standard error with a delta-method interval.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from landscape import _dist, store
from landscape._errors import UserError
from landscape.data import TensorData
from landscape.jobs._run import load_run_model
from landscape.sharpness import (
    MeasureConfig,
    MeasureContext,
    params_json,
    params_of,
    parse_measures,
    run_measure,
    spec,
    specs,
)
from landscape.sharpness.width import median_ci, width_ratio


def measure_solution(
    path: str | os.PathLike, solution: str | None = None,
    measures: Sequence[str] | str = "all",
    common: MeasureConfig | None = None, params: Mapping[str, Any] | None = None, *,
    model: nn.Module | None = None, data: TensorData | None = None,
    recompute: bool = False, progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Compute ``measures`` of a stored solution and write each to the run file.

    Under ``torchrun`` every rank calls this with the same arguments: the batches of
    the loss (and so every HVP, gradient and value) are split over the ranks and
    summed with ``all_reduce``; rank 0 alone writes and logs.

    Args:
        path: Run file.
        solution: Name under ``/solutions`` (``None``: ``swa``, else ``sgd``, else the
            one stored).
        measures: Registry names (or ``"all"``).
        common: Shared parameters (samples, seed, dtype, ...).
        params: Measure parameters by name (defaults for the rest).
        model: The run's model (``None``: rebuilt from the run file).
        data: The run's data (with ``model``).
        recompute: Recompute measures already stored with the same parameters.
        progress: tqdm progress bars on stderr.
        log: Called with one line per measure.

    Returns:
        ``{measure: scalars}`` of every measure now stored (computed or kept).

    Raises:
        UserError: For an unknown solution or measure, or bad parameters.
    """
    common = common or MeasureConfig(device="cpu")
    rank, _, own_pg, device = _dist.setup(common.device or "cpu")
    try:
        return _measure(path, solution, measures,
                        dataclasses.replace(common, device=device), params, model=model,
                        data=data, recompute=recompute, progress=progress and rank == 0,
                        log=log if rank == 0 else None, write=rank == 0)
    finally:
        _dist.teardown(own_pg)


def _measure(path: str | os.PathLike, solution: str | None, measures: Sequence[str] | str,
             common: MeasureConfig, params: Mapping[str, Any] | None, *,
             model: nn.Module | None, data: TensorData | None, recompute: bool,
             progress: bool, log: Callable[[str], None] | None, write: bool,
             ) -> dict[str, dict[str, Any]]:
    names = parse_measures(measures)
    chosen = {m: params_of(m, params) for m in names}
    with store.open_run(path) as f:
        solution = solution or store.main_solution(store.solution_names(f))
        sol = store.read_solution(f, solution)
        stored = store.stored_params(f, solution, names)
        n_train = int(store.data_attrs(f).get("n_train", 0))
        init = store.initial_weights(f)
    if model is None or data is None:
        model, data = load_run_model(path)
    samples = min(common.samples, len(data.y_train))  # all, if there are fewer
    todo = [m for m in names if recompute or stored.get(m) != params_json(
        m, dataclasses.replace(common, samples=samples), chosen[m])]
    out: dict[str, dict[str, Any]] = {}
    ctx: MeasureContext | None = None
    if todo:
        if log and samples < common.samples:
            log(f"{solution}: using all {samples} train samples (fewer than "
                f"--samples {common.samples})")
        sub = data.subset(samples, 1, common.seed)
        ctx = MeasureContext(model, sub.batches("train", common.eval_batch_size),
                             theta=sol.weights, buffers=sol.buffers,
                             common=dataclasses.replace(common, samples=samples),
                             init=init, n_train=n_train or None)
    for m in names:
        if m not in todo:
            with store.open_run(path) as f:
                out[m] = store.read_measure(f, solution, m).scalars
            if log:
                log(f"{solution} {m}: kept (stored with the same parameters)")
            continue
        assert ctx is not None
        r = run_measure(ctx, m, chosen[m], solution=solution, progress=progress)
        if write:
            with store.edit_run(path) as f:
                store.write_measure(f, r)
        out[m] = r.scalars
        if log:
            log(f"{solution} {m}: {r.line()}")
    return out


# =========================================================================== compare
def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def compare_solutions(
    path: str | os.PathLike, solutions: Sequence[str] | None = None, *,
    level: float = 0.95, n_boot: int = 2000, seed: int = 0, write: bool = True,
) -> list[dict[str, Any]]:
    """Stored measures of two solutions side by side, with ratios ``b / a``.

    Every headline scalar of every registered measure that both (or either)
    have: a median over per-direction values gets percentile-bootstrap
    intervals and a bootstrap interval of the ratio of medians (paired when
    both used the same directions); a scalar with a standard error gets a
    delta-method interval for the ratio.  Missing values are NaN.  The table is
    stored under ``/measures/compare``.

    Args:
        path: Run file.
        solutions: ``(a, b)``; ratios are ``b / a`` (``None``: ``sgd`` and ``swa``,
            else the two solutions the file holds).
        level: Confidence level.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.
        write: Store the table in the run file.

    Returns:
        Rows ``{quantity, a, b, a_low, a_high, b_low, b_high, ratio, low, high,
        same_params}`` (and ``paired`` for distributions).

    Raises:
        UserError: If not exactly two solutions are given or one is missing.
    """
    if solutions is None:
        with store.open_run(path) as f:
            solutions = store.solution_pair(store.solution_names(f), "compare")
    if len(solutions) != 2:
        raise UserError(f"--solutions takes two names, e.g. sgd,swa; got {list(solutions)}")
    a, b = solutions
    nan = math.nan
    z = _normal_quantile(0.5 + level / 2)
    with store.open_run(path) as f:
        for s in solutions:
            store.read_solution(f, s)  # raises a UserError naming the solutions there are
        meas = {s: store.measures_of(f, s) for s in solutions}
    if not any(meas.values()):
        raise UserError(f"no measures stored for {a} or {b} in {path}; run "
                        f"`landscape sharpness {path} --solutions {a},{b}` first")
    rows: list[dict[str, Any]] = []
    for name, sp in specs().items():
        ra, rb = meas[a].get(name), meas[b].get(name)
        if ra is None and rb is None:
            continue
        same = (ra is None or rb is None  # one side unmeasured: shown as "—"
                or ra.scalars.get("params") == rb.scalars.get("params"))
        for h in sp.headline:
            va, vb = (_num(r.scalars.get(h.key)) if r is not None else nan
                      for r in (ra, rb))
            if math.isnan(va) and math.isnan(vb):
                continue
            row = {"quantity": h.label, "a": va, "b": vb, "a_low": nan, "a_high": nan,
                   "b_low": nan, "b_high": nan, "ratio": nan, "low": nan, "high": nan,
                   "same_params": same,
                   "a_note": h.note(ra.scalars) if ra is not None else "",
                   "b_note": h.note(rb.scalars) if rb is not None else ""}
            da = ra.arrays.get(h.distribution) if (ra is not None and h.distribution) \
                else None
            db = rb.arrays.get(h.distribution) if (rb is not None and h.distribution) \
                else None
            if da is not None and db is not None:
                da, db = np.asarray(da, float), np.asarray(db, float)
                paired = same and da.size == db.size
                row["a"], row["a_low"], row["a_high"] = median_ci(da, level, n_boot=n_boot,
                                                                  seed=seed)
                row["b"], row["b_low"], row["b_high"] = median_ci(db, level, n_boot=n_boot,
                                                                  seed=seed)
                row["ratio"], row["low"], row["high"] = width_ratio(
                    da, db, level, paired=paired, n_boot=n_boot, seed=seed)
                row["paired"] = bool(paired)
                tau = ra.scalars.get("tau")
                if tau is not None:
                    row["quantity"] = f"{h.label.split(' (')[0]} (tau={_num(tau):g})"
            else:
                sa, sb = ((_num(r.scalars.get(h.sem)) if (r is not None and h.sem) else nan)
                          for r in (ra, rb))
                row |= {"a_low": va - z * sa, "a_high": va + z * sa,
                        "b_low": vb - z * sb, "b_high": vb + z * sb}
                row["ratio"] = vb / va if va != 0 else nan
                if h.sem and not math.isnan(row["ratio"]) and va and vb:
                    rel = math.hypot(sa / va, sb / vb)
                    if not math.isnan(rel):
                        row["low"] = row["ratio"] * (1 - z * rel)
                        row["high"] = row["ratio"] * (1 + z * rel)
            rows.append(row)
    if not rows:
        raise UserError(f"{a} and {b} share no stored measure in {path}; run "
                        "`landscape sharpness` on both with the same --measures")
    if write:
        with store.edit_run(path) as f:
            store.write_compare(f, rows, {
                "solutions": list(solutions), "level": level, "n_boot": n_boot,
                "seed": seed, "ratio": f"{b}/{a}",
                "width_paired": any(r.get("paired") for r in rows)})
    return rows


def format_comparison(rows: Sequence[Mapping[str, Any]],
                      solutions: Sequence[str] = ("sgd", "swa"), level: float = 0.95
                      ) -> str:
    """Markdown table of :func:`compare_solutions` rows.

    Returns:
        The table.
    """
    a, b = solutions
    pct = f"{100 * level:g} %"

    def cell(v: float, lo: float, hi: float, note: str = "") -> str:
        if note:
            return f"{v:.5g}, {note}"
        if math.isnan(v):
            return "—"
        if math.isnan(lo) or math.isnan(hi):
            return f"{v:.5g}"
        return f"{v:.5g} [{lo:.4g}, {hi:.4g}]"

    lines = [f"| quantity | {a} | {b} | {b}/{a} [{pct} CI] |", "|---|---|---|---|"]
    for r in rows:
        mark = "" if r.get("same_params", True) else " *"
        lines.append(f"| {r['quantity']}{mark} | "
                     f"{cell(r['a'], r['a_low'], r['a_high'], r.get('a_note', ''))}"
                     f" | {cell(r['b'], r['b_low'], r['b_high'], r.get('b_note', ''))} | "
                     f"{cell(r['ratio'], r['low'], r['high'])} |")
    if any(not r.get("same_params", True) for r in rows):
        lines.append(f"* measured with different parameters for {a} and {b}; rerun "
                     "`landscape sharpness` with the same flags for both")
    return "\n".join(lines)


__all__ = ["compare_solutions", "format_comparison", "measure_solution", "spec"]
