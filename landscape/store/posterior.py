"""SWAG posteriors and FGE ensembles in HDF5: ``/swag`` and ``/fge/<name>`` of a run file.

``/swag`` (``docs/schema.md``): attrs ``rank`` (K asked), ``n_collected`` (T),
``epochs`` (JSON: the completed epochs collected), ``source``; datasets
``mean``, ``sq_mean`` (float64, ``(n,)``) and ``deviations`` (float32, ``(k, n)``,
oldest first).  ``/swag/evaluation`` (``landscape swag``): attrs ``samples``,
``seed``, ``scale``, ``rank``, ``bins``, ``bn``, ``split`` and
``<method>_<acc|nll|ece>`` for ``swag`` (the Bayesian model average), ``swa``
and ``sgd``; datasets ``samples``, ``acc``, ``nll``, ``ece`` (the average of the
first s samples), ``sample_acc``, ``sample_nll``, and
``calibration/<method>/{confidence,accuracy,count}`` (reliability bins).

``/fge/<name>``: attrs ``config`` (JSON), ``start`` (JSON: file, solution,
sha256), ``snapshots_done``, ``complete``, ``start_<acc|nll|ece>``, and the
final ``ensemble_*``/``swa_*`` metrics; datasets ``snapshots/weights (k, n)``,
``snapshots/buffers``, the per-snapshot history (``landscape.posterior.FGE_COLUMNS``),
``calibration/{confidence,accuracy,count}`` of the final ensemble and the
resume state under ``state/``.  Each snapshot is one atomic edit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError
from landscape.posterior.ensemble import PredictiveMetrics
from landscape.posterior.fge import FGEState
from landscape.posterior.swag import SwagBMA, SwagMoments
from landscape.store._h5 import (
    attrs_of,
    member_attrs,
    member_names,
    new_group,
    plain,
    set_attrs,
    write_array,
)

#: How a run file gets SWAG moments, for messages.
SWAG_HINT = ("train with --swag (it collects the moments during the SWA run), or pass "
             "--from-trajectory to collect them from the recorded SWA iterates")


# =========================================================================== SWAG
def has_swag(f: h5py.File) -> bool:
    """Whether the file holds SWAG moments.

    Returns:
        ``True`` if ``/swag/mean`` exists.
    """
    return "swag/mean" in f


def write_swag(f: h5py.File, m: SwagMoments, attrs: Mapping[str, Any]) -> None:
    """Store the moments under ``/swag`` (replacing any, evaluation included)."""
    g = new_group(f, "swag")
    write_array(g, "mean", m.mean.double())
    write_array(g, "sq_mean", m.sq_mean.double())
    write_array(g, "deviations", m.deviations.float(), compress=True)
    set_attrs(g, {**attrs, "rank": m.rank, "n_collected": m.n_collected})


def read_swag(f: h5py.File) -> SwagMoments:
    """The stored moments.

    Returns:
        The :class:`~landscape.posterior.SwagMoments`.

    Raises:
        UserError: If the file holds none.
    """
    if not has_swag(f):
        raise UserError(f"{f.filename} holds no SWAG moments; {SWAG_HINT}")
    g = f["swag"]
    return SwagMoments(torch.from_numpy(g["mean"][()]), torch.from_numpy(g["sq_mean"][()]),
                       torch.from_numpy(g["deviations"][()]), int(g.attrs["n_collected"]),
                       int(g.attrs["rank"]))


def swag_attrs(f: h5py.File) -> dict[str, Any]:
    """The ``/swag`` attributes (JSON decoded; empty without SWAG).

    Returns:
        The attributes.
    """
    return {k: plain(v) for k, v in attrs_of(f["swag"]).items()} if has_swag(f) else {}


def write_calibration(g: h5py.Group, m: PredictiveMetrics) -> None:
    """Reliability bins of one prediction under ``g``."""
    write_array(g, "confidence", np.asarray(m.confidence, np.float64))
    write_array(g, "accuracy", np.asarray(m.accuracy, np.float64))
    write_array(g, "count", np.asarray(m.count, np.int64))


def write_swag_evaluation(f: h5py.File, bma: SwagBMA,
                          baselines: Mapping[str, PredictiveMetrics],
                          attrs: Mapping[str, Any]) -> None:
    """Store a Bayesian model average and its baselines under ``/swag/evaluation``."""
    g = new_group(f, "swag/evaluation")
    for k in ("samples", "acc", "nll", "ece", "sample_acc", "sample_nll"):
        write_array(g, k, np.asarray(getattr(bma, k)))
    rows = {"swag": bma.metrics, **baselines}
    flat: dict[str, Any] = {}
    for method, m in rows.items():
        write_calibration(g.require_group(f"calibration/{method}"), m)
        flat |= {f"{method}_acc": m.acc, f"{method}_nll": m.nll, f"{method}_ece": m.ece}
    set_attrs(g, {**bma.attrs, **attrs, **flat, "methods": list(rows)})


def read_swag_evaluation(f: h5py.File) -> dict[str, Any] | None:
    """The stored evaluation, or ``None``.

    Returns:
        ``{"attrs": {...}, "curves": {name: array}, "calibration": {method:
        {confidence, accuracy, count}}}``.
    """
    g = f.get("swag/evaluation")
    if g is None:
        return None
    cal = {m: {k: c[k][()] for k in c} for m, c in g["calibration"].items()}
    curves = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}
    return {"attrs": {k: plain(v) for k, v in attrs_of(g).items()}, "curves": curves,
            "calibration": cal}


# =========================================================================== FGE
def fge_names(f: h5py.File) -> list[str]:
    """Names of the stored FGE ensembles.

    Returns:
        The names.
    """
    return member_names(f, "fge")


def fge_attrs(f: h5py.File, name: str) -> dict[str, Any] | None:
    """The attributes of ``/fge/<name>`` (JSON decoded), or ``None``.

    Returns:
        The attributes.
    """
    return member_attrs(f, "fge", name)


def init_fge(f: h5py.File, name: str, attrs: Mapping[str, Any]) -> None:
    """Create an empty ``/fge/<name>`` (replacing one)."""
    g = new_group(f, f"fge/{name}")
    set_attrs(g, {**attrs, "snapshots_done": 0, "complete": False})


def write_fge_state(f: h5py.File, name: str, s: FGEState, *, complete: bool = False,
                    final: PredictiveMetrics | None = None) -> None:
    """Store the snapshots, history and resume state after a snapshot."""
    g = f["fge"][name]
    sn = new_group(g, "snapshots")
    if s.snapshots is not None:
        write_array(sn, "weights", s.snapshots.float(), compress=True)
        write_array(sn, "buffers", s.snapshot_buffers.float())
    h = new_group(g, "history")
    for k, v in s.history.items():
        write_array(h, k, np.asarray(v, dtype=np.float64))
    st = new_group(g, "state")
    write_array(st, "weights", s.weights.float())
    write_array(st, "buffers", s.buffers.float())
    if s.ensemble is not None:
        write_array(st, "ensemble", s.ensemble.double())
    if s.momentum is not None:
        write_array(st, "momentum", s.momentum.float())
    for key in ("epoch_generator", "rng"):
        v = getattr(s, key)
        if v is not None:
            write_array(st, key, v.numpy().astype(np.uint8))
    st.attrs["step"] = int(s.step)
    set_attrs(g, {"snapshots_done": s.num_snapshots, "complete": complete,
                  **{f"start_{k}": v for k, v in s.start.items()}})
    if s.history:
        set_attrs(g, {k: s.history[k][-1] for k in s.history if k.startswith(
            ("ensemble_", "swa_"))})
    if final is not None:
        write_calibration(g.require_group("calibration"), final)


def read_fge_state(f: h5py.File, name: str) -> FGEState | None:
    """The stored state (``None`` before the first snapshot).

    Returns:
        The :class:`~landscape.posterior.FGEState`.
    """
    g = f["fge"][name]
    if "state" not in g:
        return None
    st = g["state"]

    def t(key: str, dtype: Any = None) -> torch.Tensor | None:
        if key not in st:
            return None
        a = st[key][()]
        return torch.from_numpy(a.astype(dtype) if dtype is not None else a)

    sn = g.get("snapshots")
    start = {k.removeprefix("start_"): float(v) for k, v in g.attrs.items()
             if k.startswith("start_") and not isinstance(v, str | bytes)}
    return FGEState(
        int(st.attrs["step"]), t("weights"), t("buffers"), t("momentum"),
        t("epoch_generator", np.uint8), t("rng", np.uint8),
        torch.from_numpy(sn["weights"][()]) if sn is not None and "weights" in sn else None,
        torch.from_numpy(sn["buffers"][()]) if sn is not None and "buffers" in sn else None,
        t("ensemble"), {k: v[()].tolist() for k, v in g["history"].items()}, start)


def read_fge(path: str | os.PathLike, name: str = "fge") -> dict[str, Any]:
    """A stored FGE ensemble for plots: attrs, history and calibration bins.

    Returns:
        ``{"attrs", "history": {column: array}, "calibration": {...} or None}``.

    Raises:
        UserError: If there is none of that name.
    """
    from landscape.store._h5 import KINDS, open_file

    with open_file(path, KINDS) as f:
        if name not in fge_names(f):
            raise UserError(f"no FGE ensemble {name!r} in {path}; stored: "
                            f"{fge_names(f) or 'none (run `landscape fge`)'}")
        g = f["fge"][name]
        cal = g.get("calibration")
        return {"attrs": fge_attrs(f, name),
                "history": {k: v[()] for k, v in g["history"].items()} if "history" in g
                else {},
                "calibration": None if cal is None else {k: cal[k][()] for k in cal}}


# =========================================================================== info
def _fmt(a: Mapping[str, Any], prefix: str) -> str:
    vals = [(k, a.get(f"{prefix}_{k}")) for k in ("acc", "nll", "ece")]
    return ", ".join(f"{k} {float(v):.4f}" for k, v in vals
                     if v is not None and not math.isnan(float(v)))


def describe_posterior(f: h5py.File) -> list[str]:
    """Lines for ``landscape info``: the SWAG posterior and the FGE ensembles.

    Returns:
        The lines (none if the file holds neither).
    """
    lines = []
    ev = read_swag_evaluation(f)
    if has_swag(f):
        a = swag_attrs(f)
        k = f["swag/deviations"].shape[0]
        lines.append(f"swag: {a.get('n_collected')} iterates, {k} deviation(s) kept "
                     f"(rank {a.get('rank')}); {a.get('source', '')}")
    elif ev is not None:  # a SwagBMA saved from Python, without its moments
        lines.append("swag: an evaluation without the moments (saved from Python)")
    if ev is not None:
        e = ev["attrs"]
        lines.append(f"  evaluation ({e.get('split')}, {e.get('samples')} samples, "
                     f"scale {e.get('scale')}, {e.get('bins')} bins):")
        for m in e.get("methods", ["swag", "swa", "sgd"]):
            text = _fmt(e, m)
            if text:
                lines.append(f"    {m}: {text}")
    for name in fge_names(f):
        a = fge_attrs(f, name) or {}
        cfg = a.get("config") or {}
        start = a.get("start") or {}
        lines.append(f"fge {name}: {a.get('snapshots_done')}/{cfg.get('snapshots', '?')} "
                     f"snapshots, cycle {cfg.get('cycle', '?')} epochs, alpha "
                     f"{cfg.get('alpha1', '?')}->{cfg.get('alpha2', '?')}, from "
                     f"{start.get('solution', '?')}; "
                     f"{'complete' if a.get('complete') else 'incomplete'}")
        for m in ("start", "ensemble", "swa"):
            text = _fmt(a, m)
            if text:
                lines.append(f"    {m}: {text}")
    return lines
