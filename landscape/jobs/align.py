"""Alignment and merging of run files' solutions, stored resumably."""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape import store
from landscape._errors import UserError
from landscape.evaluate import Evaluator, resolve_device
from landscape.jobs._run import check_same_data, load_run_model
from landscape.jobs.connect import _check_pair, _endpoint
from landscape.params import ParamLayout
from landscape.paths.align import (
    PROFILES,
    AlignedPaths,
    Alignment,
    AlignMethod,
    align,
    merge,
    repair_profile,
)
from landscape.paths.curves import Curve, curve_profile, format_barriers, profile_grid
from landscape.paths.permutation import PermutationSpec, permute_model


def _model_at(model: nn.Module, end: dict[str, Any], device: str) -> nn.Module:
    """A copy of ``model`` holding an endpoint's weights and BN buffers."""
    m = copy.deepcopy(model).to(device)
    end["params"].write(m, end["weights"])
    if end["buffers"].numel:
        with store.open_run(end["file"]) as f:
            b = store.read_solution(f, end["solution"]).buffers
        end["buffers"].write(m, b, buffers=True)
    return m.eval()


def _parse_method(method: AlignMethod | str) -> AlignMethod:
    try:
        return AlignMethod(method)
    except ValueError:
        raise UserError(f"unknown alignment method {method!r}; use weights or "
                        "activations") from None


def _curve_between(out: Path, hashes: list[str]) -> str | None:
    """The stored curve of ``out`` whose endpoints have these hashes, if any."""
    if not out.exists():
        return None
    with store.open_file(out, ("landscape-run", "landscape-analysis")) as f:
        names = store.curve_names(f)
    for n in names:
        ends = (store.curve_attrs(out, n) or {}).get("endpoints") or {}
        if [ends.get(k, {}).get("sha256") for k in ("a", "b")] == hashes:
            return n
    return None


def align_runs(
    a: str | os.PathLike, b: str | os.PathLike, out: str | os.PathLike, *,
    solution_a: str = "sgd", solution_b: str = "sgd",
    method: AlignMethod | str = AlignMethod.WEIGHTS, repair: bool = False,
    points: int = 21, seed: int = 0, samples: int = 4096, name: str | None = None,
    device: str = "cpu", force: bool = False, progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> AlignedPaths:
    """Align solution ``solution_b`` of ``b`` to ``solution_a`` of ``a``; profile the lines.

    Stores ``/alignments/<name>`` in ``out`` (an analysis file, created if
    missing): the permutations, the aligned weights, the profiles of the raw
    line, the aligned line and (``repair``) the aligned line with REPAIR, with
    BN statistics recomputed at each point, and their barriers; with a curve
    between the same endpoints stored in ``out`` (``landscape connect``), its
    barriers too.  Rerun after a kill, only the missing profiles are computed.

    Returns:
        The :class:`~landscape.paths.align.AlignedPaths`.

    Raises:
        UserError: For endpoints of different architectures or data, the same
            solution twice, an unsupported model, or a stored alignment of
            other settings without ``force``.
    """
    m = _parse_method(method)
    if name is not None:
        store.check_name(name)
    ea, eb = _endpoint(a, solution_a), _endpoint(b, solution_b)
    _check_pair(ea, eb, "align")
    name = name or f"{m.value}{'_repair' if repair else ''}"
    dev = str(resolve_device(device))
    hashes = [store.weights_sha256(ea["weights"]), store.weights_sha256(eb["weights"])]
    ends = {k: {"file": str(e["file"]), "solution": e["solution"], "sha256": h}
            for k, e, h in (("a", ea, hashes[0]), ("b", eb, hashes[1]))}
    config = {"seed": seed, "points": points, "samples": samples, "repair": repair}
    out = Path(out)
    model, data = load_run_model(a)
    layout = ParamLayout.from_module(model)
    with store.WriterLock(out):
        stored = store.alignment_attrs(out, name)
        if stored is not None:
            old = stored.get("endpoints") or {}
            if (stored.get("config"), stored.get("method"),
                    [old.get(k, {}).get("sha256") for k in ("a", "b")]) != (
                    config, m.value, hashes):
                if not force:
                    raise UserError(f"{out} holds an alignment {name!r} of other settings "
                                    "or endpoints; pass --force to replace it or --name "
                                    "to store another")
                stored = None
        ma, mb = _model_at(model, ea, dev), _model_at(model, eb, dev)
        train, test = data.splits(4096)
        if stored is None:
            al = align(ma, mb, train, method=m, seed=seed, samples=samples,
                       progress=progress)
            aligned = layout.read(al.model)
            buffers = ParamLayout.buffers_of(al.model).read(al.model, buffers=True)
            store.write_alignment(out, name, al.perms, aligned, buffers, layout, {
                "method": m.value, "config": config, "endpoints": ends,
                "spec": al.spec.to_json(), "sweeps": al.sweeps})
            if log:
                moved = sum(int((p != torch.arange(len(p))).sum())
                            for p in al.perms.values())
                log(f"{m.value} matching: {moved} of {sum(al.spec.sizes.values())} "
                    f"units moved ({al.sweeps} sweep(s))")
        else:
            perms, aligned, _ = store.read_alignment(out, name)
            spec = PermutationSpec.from_json(json.dumps(stored["spec"]))
            al = Alignment(perms, permute_model(mb, spec, perms), spec, m,
                           int(stored.get("sweeps", 0)))
        wa, wb = ea["weights"], eb["weights"]
        ev = Evaluator(copy.deepcopy(model), train, test, device=dev, l2=ea["wd"])
        grid = profile_grid(points)
        wanted = [w for w in PROFILES if w != "repair" or repair]
        profiles = {}
        for which in wanted:
            p = store.read_alignment_profile(out, name, which)
            if p is None:
                if which == "repair":
                    p = repair_profile(ev, wa, aligned, grid, samples=samples,
                                       progress=progress)
                else:
                    end = wb if which == "line" else aligned
                    p = curve_profile(ev, Curve.line(wa, end), grid, progress=progress)
                store.write_alignment_profile(out, name, which, p,
                                              complete=which == wanted[-1])
            profiles[which] = p
        curve = _curve_between(out, hashes)
        if curve is not None:
            cp = store.read_profile(out, curve, "curve")
            if cp is not None:
                store.write_alignment_attrs(out, name, {"curve": curve} | {
                    f"curve_{k}_barrier": v for k, v in cp.barriers.items()})
                profiles["curve"] = cp
    res = AlignedPaths(al, profiles)
    if log:
        for which, bars in res.barriers.items():
            log(f"{which} barrier: {format_barriers(bars)}")
        log(f"alignment {name} in {out}")
    return res


def merge_runs(
    runs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
    solution: str | Sequence[str] = "sgd",
    method: AlignMethod | str = AlignMethod.WEIGHTS, seed: int = 0,
    samples: int = 4096, name: str = "merged", device: str = "cpu", force: bool = False,
    progress: bool = False, log: Callable[[str], None] | None = None,
) -> store.Solution:
    """The aligned average of solution ``solution`` of each run (or one name per run).

    ``out`` is a run file: if it does not exist it is created as a copy of the
    first run's data, model, solutions and history, without its trajectories and
    analyses (its ``sgd``/``swa`` solutions stay, so ``compare`` can set them
    beside the merged one); if it exists it must be a run of the same model and
    data, and gains the solution ``name``.  A stored ``name`` merged from the
    same solutions with the same settings is returned as it is (a rerun costs
    nothing); one of other runs or settings is replaced only with ``force``.

    Returns:
        The stored solution (BN statistics recomputed on the train data).

    Raises:
        UserError: For fewer than two runs, runs of different architectures or
            data, an ``out`` of another model or data, a ``name`` that
            ``landscape train`` writes (``sgd``, ``swa``, ...), or a stored
            ``name`` of other runs or settings without ``force``.
    """
    from landscape.train import solution_metrics

    store.check_name(name)
    if name in store.TRAIN_SOLUTIONS:
        raise UserError(f"--name {name} is a solution `landscape train` writes; store the "
                        "merged one under another name (default: merged)")
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise UserError(f"merge needs at least two run files, got {len(runs)}; pass the "
                        "runs of several seeds")
    names = [solution] * len(runs) if isinstance(solution, str) else list(solution)
    if len(names) != len(runs):
        raise UserError(f"{len(names)} solutions for {len(runs)} runs; give one solution "
                        "for all runs or one per run")
    ends = [_endpoint(r, s) for r, s in zip(runs, names, strict=True)]
    m = _parse_method(method)
    for r, e in zip(runs[1:], ends[1:], strict=True):
        if not torch.equal(ends[0]["weights"], e["weights"]):  # copies merge to themselves
            _check_pair(ends[0], e, "merge")
        else:
            check_same_data(runs[0], r)
    sources = [{"file": str(r), "solution": e["solution"],
                "sha256": store.weights_sha256(e["weights"])}
               for r, e in zip(runs, ends, strict=True)]
    settings: dict[str, Any] = {"method": m.value, "seed": seed} | (
        {"samples": samples} if m is AlignMethod.ACTIVATIONS else {})
    out = Path(out)
    if out.exists():
        kind = store.file_kind(out)
        if kind != store.RUN_KIND:
            raise UserError(f"--out {out} is a {kind.removeprefix('landscape-')} file; merge "
                            "stores its solution in a run file: pass a new --out (it is "
                            "created) or a run file of the merged runs")
        _check_same_model(out, ends[0])
        check_same_data(runs[0], out)
        with store.open_run(out) as f:
            old = store.solution_attrs(f).get(name)
            same = old is not None and (
                [(s.get("solution"), s.get("sha256"))
                 for s in store.plain(old.get("runs")) or []]
                == [(s["solution"], s["sha256"]) for s in sources]
                and {k: store.plain(old.get(k)) for k in settings} == settings)
            stored = store.read_solution(f, name) if same else None
        if stored is not None:
            if log:
                log(f"{out} already holds solution {name!r} merged from these solutions "
                    "with these settings")
            return stored
        if old is not None and not force:
            raise UserError(f"{out} holds a solution {name!r} merged from other runs or "
                            "settings; pass --force to replace it or --name to store "
                            "another")
    model, data = load_run_model(runs[0])
    dev = str(resolve_device(device))
    nets = [_model_at(model, e, dev) for e in ends]
    with warnings.catch_warnings():
        if log:  # said in the log below instead
            warnings.filterwarnings("ignore", message="merge: permutations")
        res = merge(nets, data.batches("train"), method=m, seed=seed, samples=samples,
                    progress=progress)
    layout, buf = ParamLayout.from_module(model), ParamLayout.buffers_of(model)
    w = layout.read(res.model).cpu()
    b = buf.read(res.model, buffers=True).cpu()
    sol = store.Solution(name, w, b, {
        "source": f"aligned average of {len(runs)} runs' {'/'.join(sorted(set(names)))} "
                  f"({m.value} "
                  "matching, BN statistics recomputed)",
        "runs": sources, **settings, "rounds": res.rounds, "converged": res.converged})
    sol.attrs |= solution_metrics(model, data, w, b, torch.device(dev))
    with store.WriterLock(out):
        if not out.exists():
            with store.open_run(runs[0]) as f:
                drop = [k for k in f if k not in _MERGE_KEEPS]
            store.trimmed_copy(runs[0], out, drop=drop)
        with store.edit_run(out) as f:
            store.write_solution(f, sol)
    if log:
        if not res.converged:
            log(f"merge: permutations still changed in round {res.rounds}, the last "
                "allowed; the average is not a fixed point of the rounds")
        log(f"merged {len(runs)} runs' {'/'.join(names)} into solution {name!r} of {out}: "
            f"test_acc {sol.attrs.get('test_acc', float('nan')):.4f}")
    return sol


#: What a new merge file copies from the first run: no trajectories, no analyses.
_MERGE_KEEPS = ("data", "model", "solutions", "history")


def _check_same_model(out: Path, end: dict[str, Any]) -> None:
    """Raise unless the existing ``out`` is a run file of ``end``'s model.

    Raises:
        UserError: Naming the file and the fix.
    """
    with store.open_run(out) as f:
        params, _ = store.layouts(f)
        name, kwargs = store.model_spec(f)
    if (name, kwargs) != (end["model"], end["kwargs"]) or params.shapes != end[
            "params"].shapes:
        raise UserError(f"{out} is a run of another model ({name}); pass a new --out or "
                        "a run file of the merged runs' model")
