"""SWAG evaluation and FGE ensembles of run files, stored back into them.

* :func:`swag_run` — Bayesian model averaging over SWAG samples of a run file's
  ``/swag`` posterior (collected by ``landscape train --swag``, or here from the
  recorded SWA iterates with ``from_trajectory``), beside SWA and SGD;
* :func:`fge_run` — Fast Geometric Ensembling from a stored solution, one atomic
  edit per snapshot, resumable after a kill.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from landscape import store
from landscape._errors import UserError
from landscape.config import FGEConfig
from landscape.evaluate import Evaluator, resolve_device
from landscape.jobs._run import load_run_model
from landscape.posterior import (
    ECE_BINS,
    FGEResult,
    SwagBMA,
    SwagMoments,
    fge,
    solution_metrics,
    swag_bma,
    swag_moments,
)


def _no_swa(f: Any) -> bool:
    cfg = store.config_of(f)
    return not cfg.get("swa", True) or "swa" not in store.solution_names(f)


def trajectory_swag(f: Any, rank: int) -> tuple[SwagMoments, list[int]]:
    """SWAG moments from the recorded SWA iterates at the epochs SWA averaged.

    The SWA run averages after each completed epoch ``E >= swa_start`` with
    ``(E - swa_start) % cycle == 0``; the trajectory records the same float32
    weights, so the moments equal what ``--swag`` collects during training.

    Returns:
        ``(moments, epochs)``.

    Raises:
        UserError: If the file has no SWA run or did not record those epochs.
    """
    from landscape.config import TrainConfig
    from landscape.train import averages_after

    if _no_swa(f):
        raise UserError(f"{f.filename} has no SWA run (it was trained with --no-swa), "
                        "and SWAG collects the SWA iterates; retrain without --no-swa and "
                        "with --swag")
    cfg = TrainConfig(**{k: v for k, v in store.config_of(f).items()
                         if k in TrainConfig.__dataclass_fields__})
    want = [e for e in range(1, cfg.swa_budget + 1) if averages_after(cfg, e)]
    have = store.recorded_epochs(f).get("swa", [])
    missing = sorted(set(want) - set(have))
    if missing:
        raise UserError(f"the SWA run of {f.filename} did not record the averaged epochs "
                        f"{missing[:5]}{' ...' if len(missing) > 5 else ''}; train with "
                        "--swag (or --record-every 1) to collect SWAG")
    ep, W, _ = store.checkpoints(f, "swa", (want[0], want[-1]))
    last = {int(e): i for i, e in enumerate(ep)}
    rows = torch.from_numpy(W[[last[e] for e in want]])
    return swag_moments(rows, rank), want


def swag_run(
    path: str | os.PathLike, *, samples: int = 30, seed: int = 0, scale: float = 0.5,
    rank: int | None = None, bins: int = ECE_BINS, from_trajectory: bool = False,
    swag_rank: int = 20, device: str = "cpu", batch_size: int = 4096,
    progress: bool = False, log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Bayesian model averaging over SWAG samples of a run file; stored in ``/swag``.

    Args:
        path: Run file (trained with ``--swag``, or with its SWA iterates
            recorded for ``from_trajectory``).
        samples: :math:`S`, samples averaged.
        seed: Seed of the draws.
        scale: Covariance factor (1/2: Maddox et al.'s sampler).
        rank: Deviations used (default: all stored; 0: SWAG-diagonal).
        bins: ECE bins.
        from_trajectory: Collect the moments from the recorded SWA iterates
            (when the file has none) and store them.
        swag_rank: ``K`` of moments collected ``from_trajectory``.
        device: Where to evaluate.
        batch_size: Samples per forward pass.
        progress: A tqdm bar over samples.
        log: Called with one-line summaries.

    Returns:
        ``{"bma": SwagBMA, "swa": metrics, "sgd": metrics}``.

    Raises:
        UserError: For a run without SWA or without moments, or bad settings.
    """
    path = store.check_run_file(path)
    if samples < 1:
        raise UserError(f"--samples must be >= 1, got {samples}")
    if scale < 0:
        raise UserError(f"--scale must be >= 0, got {scale}")
    if rank is not None and rank < 0:
        raise UserError(f"--rank must be >= 0, got {rank}")
    with store.open_run(path) as f:
        collected = None
        if store.has_swag(f):
            moments = store.read_swag(f)
        elif from_trajectory:
            moments, epochs = trajectory_swag(f, swag_rank)
            collected = epochs
        elif _no_swa(f):
            raise UserError(f"{path} has no SWA run (trained with --no-swa), and SWAG "
                            "rides on it; retrain without --no-swa and with --swag")
        else:
            raise UserError(f"{path} holds no SWAG moments; {store.SWAG_HINT}")
        base = {n: store.read_solution(f, n) for n in ("swa", "sgd")
                if n in store.solution_names(f)}
    model, data = load_run_model(path)
    dev = resolve_device(device)
    ev = Evaluator(copy.deepcopy(model), *data.splits(batch_size), device=dev,
                   batch_size=batch_size)
    bma: SwagBMA = swag_bma(ev, moments, samples, seed=seed, scale=scale, rank=rank,
                            bins=bins, progress=progress)
    # SWA and SGD through the same path (BN recomputed for BN models, as for samples)
    rows = {n: solution_metrics(ev, s.weights, s.buffers, bins=bins)
            for n, s in base.items()}
    with store.WriterLock(path), store.edit_run(path) as f:
        if collected is not None:
            store.write_swag(f, moments, {
                "source": "collected from the recorded SWA iterates (landscape swag "
                          "--from-trajectory)", "epochs": collected})
        store.write_swag_evaluation(f, bma, rows, {"bn": ev.bn.value})
    if log:
        for name, m in (("swag", bma.metrics), *rows.items()):
            log(f"{name:>4}: test acc {m.acc:.4f}, NLL {m.nll:.4f}, ECE {m.ece:.4f}")
        log(f"SWAG evaluation ({samples} samples) in {path}:/swag/evaluation")
    return {"bma": bma, **rows}


def fge_run(
    path: str | os.PathLike, *, solution: str = "sgd", config: FGEConfig | None = None,
    name: str = "fge", device: str = "cpu", force: bool = False, progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> FGEResult:
    """Fast Geometric Ensembling from ``solution`` of a run file, into ``/fge/<name>``.

    Each snapshot (weights, metrics, resume state) is one atomic edit of the
    run file; run again after a kill, it continues from the last snapshot and
    ends with the same ensemble.  With every snapshot done it only reads back.

    Args:
        path: Run file.
        solution: The trained solution to start from (``sgd``, ``swa``, ...).
        config: Cycles, learning rates, ... (``wd=None``: the run's weight decay).
        name: Group name.
        device: Where to train and evaluate.
        force: Replace a stored ensemble of that name made with other settings.
        progress: A tqdm bar over snapshots.
        log: Called with one-line summaries.

    Returns:
        The :class:`~landscape.posterior.FGEResult`.

    Raises:
        UserError: For an unknown solution, bad settings or a stored ensemble
            of other settings without ``force``.
    """
    cfg = (config or FGEConfig()).validate()
    store.check_name(name)
    path = Path(store.check_run_file(path))
    with store.open_run(path) as f:
        s = store.read_solution(f, solution)
        if cfg.wd is None:
            cfg = cfg.replace(wd=float(store.config_of(f).get("wd", 0.0)))
    start = {"file": str(path), "solution": solution, "sha256": store.weights_sha256(s.weights)}
    model, data = load_run_model(path)
    dev = resolve_device(device)
    with store.WriterLock(path):
        with store.open_run(path) as f:
            stored = store.fge_attrs(f, name)
            state = None
            if stored is not None and stored.get("config") == cfg.to_dict() and (
                    stored.get("start") or {}).get("sha256") == start["sha256"]:
                state = store.read_fge_state(f, name)
            elif stored is not None and not force:
                raise UserError(f"{path} holds an FGE ensemble {name!r} of other settings "
                                "or another start; pass --force to replace it or --name to "
                                "store another")
            else:
                stored = None
        if stored is None:
            with store.edit_run(path) as f:
                store.init_fge(f, name, {"config": cfg.to_dict(), "start": start})

        def keep(st: Any) -> None:
            with store.edit_run(path) as f:
                store.write_fge_state(f, name, st)

        res = fge(model, state if state is not None else s.weights,
                  data.batches("train"), data.batches("test"), cfg,
                  start_buffers=s.buffers, device=dev, on_snapshot=keep,
                  progress=progress)
        with store.edit_run(path) as f:
            st = store.read_fge_state(f, name)
            if st is not None:
                store.write_fge_state(f, name, st, complete=True, final=res.ensemble)
    if log:
        h = res.history
        log(f"start ({solution}): test acc {res.start['acc']:.4f}, NLL "
            f"{res.start['nll']:.4f}")
        for k in (0, len(h["snapshot"]) - 1) if len(h["snapshot"]) > 1 else (0,):
            log(f"after {int(h['snapshot'][k])} snapshot(s): ensemble acc "
                f"{h['ensemble_acc'][k]:.4f}, NLL {h['ensemble_nll'][k]:.4f}; SWA of them "
                f"acc {h['swa_acc'][k]:.4f}, NLL {h['swa_nll'][k]:.4f}")
        log(f"FGE ensemble {name} in {path}")
    return res


def format_paths(path: str | os.PathLike) -> str:
    """Markdown tables of a file's curve and alignment barriers, SWAG evaluation and
    FGE ensembles.

    What ``landscape compare`` prints beside the measures: for each curve the
    barrier (max over t minus the endpoints' mean) of the line and of the
    trained curve per metric; for each alignment those of the raw line, the
    aligned line, the aligned line with REPAIR and the curve between the same
    endpoints; the test accuracy, NLL and ECE of SWAG's model average, SWA and
    SGD; and of each FGE ensemble, the SWA of its snapshots and its starting
    solution.

    Returns:
        The tables ("" if the file holds none of them).
    """
    import math

    out: list[str] = []

    def num(v: Any, pct: bool = False) -> str:
        if v is None or not isinstance(v, int | float) or math.isnan(float(v)):
            return "—"
        return f"{100 * float(v):.2f}" if pct else f"{float(v):.4g}"

    with store.open_file(path, store.KINDS) as f:
        curves = store.curve_names(f)
        attrs = {n: {k: store.plain(v) for k, v in store.attrs_of(f["curves"][n]).items()}
                 for n in curves}
        swag = store.read_swag_evaluation(f)
        fges = {n: store.fge_attrs(f, n) or {} for n in store.fge_names(f)}
        aligned = store.alignment_names(f)
    aligns = {n: store.alignment_attrs(path, n) or {} for n in aligned}

    def barrier_rows(label: str, a: Mapping[str, Any], paths: Sequence[str]) -> list[str]:
        """One row per metric with a stored barrier of any of ``paths``."""
        rows = []
        for m in ("train_loss", "train_err", "test_loss", "test_err"):
            vals = [a.get(f"{p}_{m}_barrier") for p in paths]
            if any(v is not None for v in vals):
                pct = m.endswith("_err")
                rows.append(f"| {label} | {m} | "
                            + " | ".join(num(v, pct) for v in vals) + " |")
        return rows

    if curves:
        out += ["barriers (max over t minus the endpoints' mean; errors in % points)",
                "| curve | metric | line | curve |", "|---|---|---|---|"]
        for n, a in attrs.items():
            out += barrier_rows(f"{n} ({a.get('curve')}, {a.get('bends')} bend)", a,
                                ("line", "curve"))
    if swag is not None:
        a = swag["attrs"]
        out += ["", f"SWAG model average of {a.get('samples')} samples (test, "
                f"{a.get('bins')} confidence bins)",
                "| method | acc (%) | NLL | ECE |", "|---|---|---|---|"]
        for m in a.get("methods", ["swag", "swa", "sgd"]):
            out.append(f"| {m} | {num(a.get(f'{m}_acc'), True)} | {num(a.get(f'{m}_nll'))}"
                       f" | {num(a.get(f'{m}_ece'))} |")
    if aligns:
        out += ["", "barriers modulo permutation (`landscape align`; errors in % points)",
                "| alignment | metric | raw line | aligned | aligned + REPAIR | curve |",
                "|---|---|---|---|---|---|"]
        for n, a in aligns.items():
            out += barrier_rows(f"{n} ({a.get('method')})", a,
                                ("line", "aligned", "repair", "curve"))
    for n, a in fges.items():
        start = (a.get("start") or {}).get("solution", "start")
        out += ["", f"FGE {n}: {a.get('snapshots_done')} snapshots (test)",
                "| method | acc (%) | NLL | ECE |", "|---|---|---|---|"]
        for label, m in ((f"start ({start})", "start"), ("FGE ensemble", "ensemble"),
                         ("SWA of the snapshots", "swa")):
            out.append(f"| {label} | {num(a.get(f'{m}_acc'), True)} | "
                       f"{num(a.get(f'{m}_nll'))} | {num(a.get(f'{m}_ece'))} |")
    return "\n".join(out).strip("\n")


__all__ = ["fge_run", "format_paths", "swag_run", "trajectory_swag"]
