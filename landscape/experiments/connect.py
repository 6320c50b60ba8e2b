r"""Protocol ``connect``: paths between optima, FGE and SWAG over pairs of seeds.

``landscape reproduce connect`` (config ``experiments/connect.toml``).  Each
"seed" ``i`` of the runner is a **pair**: runs of training seeds ``2i`` and
``2i + 1``, both trained (``landscape train --swag``: the SGD baseline and the
SWA run with SWAG moments) on the same data (that of seed ``2i``), so that the
two SGD solutions differ by their initialisation and minibatch order only.
Per pair:

1. **Curve vs line** (Garipov et al. 2018): a curve between the two SGD
   solutions (:func:`landscape.jobs.connect_runs`), its profile and the
   straight line's at ``points`` values of ``t``, and their barriers
   (max over ``t`` minus the endpoints' mean) of train loss (L2-regularized),
   train and test error and test loss; for the first pair also the plane
   through both endpoints and the bend (``plane`` steps; 0: none).
2. **Alignment** (Ainsworth et al. 2022; Jordan et al. 2022): weight matching
   of the second solution to the first and the barriers of the aligned line
   and of the aligned line with REPAIR (:func:`landscape.jobs.align_runs`).
3. **FGE** from the first run's SGD solution (:func:`landscape.jobs.fge_run`)
   against that SGD solution, its run's SWA, and the ensemble of the two
   independently trained SGD solutions of the pair.
4. **SWAG** of the first run (:func:`landscape.jobs.swag_run`): the Bayesian
   model average's test accuracy, NLL and expected calibration error against
   SWA and SGD, all through the same evaluation path.

Every number in the report is a mean over pairs with a 95 % Student-t interval;
comparisons are paired over pairs, with the calls of :mod:`landscape.stats`.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape import store
from landscape._errors import UserError
from landscape.config import ConnectConfig, FGEConfig, TrainConfig, from_dict
from landscape.experiments._common import (
    Experiment,
    FigureSpec,
    Log,
    Protocol,
    captions,
    draw_figures,
    figure_lines,
    register_protocol,
)
from landscape.experiments._runner import map_seeds, stack, worker_count
from landscape.experiments._settings import Settings
from landscape.stats import call, comparison, format_ci, format_pm, paired_call, verdict

#: Name of the alignment in each pair's file (the curve's is its family, e.g. ``bezier``).
ALIGNMENT = "weights_repair"

#: Barrier metrics, in table order.
BARRIERS = ("train_loss", "train_err", "test_loss", "test_err")

#: The line profiles whose barriers are compared, with their table labels.
PATHS = {"line": "line (raw)", "curve": "trained curve",
         "aligned": "line after weight matching",
         "repair": "line after weight matching + REPAIR"}

#: The predictive methods, with their table labels.
METHODS = {"sgd": "SGD (first run of the pair)", "swa": "SWA (same run)",
           "swag": "SWAG model average", "fge": "FGE ensemble from SGD",
           "fge_swa": "SWA of the FGE snapshots",
           "sgd_ensemble": "two-run SGD ensemble"}


@dataclasses.dataclass(frozen=True)
class ConnectSettings(Settings):
    """``[experiment]`` of the ``connect`` protocol.

    The curve's and FGE's settings are tables of
    :class:`~landscape.config.ConnectConfig` and
    :class:`~landscape.config.FGEConfig` fields; what they leave out takes
    those classes' defaults (the weight decay: the runs').

    Attributes:
        curve: ``[experiment.curve]``: curve family, bends, epochs, lr, points, ...
        plane: Grid steps from ``a`` to ``b`` of the first pair's curve plane
            (0: no plane).
        fge: ``[experiment.fge]``: snapshots, cycle, alpha1, alpha2, ...
        swag_samples: SWAG samples averaged (default: ``swag_run``'s).
        align_samples: Train inputs of REPAIR's statistics (default: ``align_runs``').
        workers: Worker processes (default one per core, at most one per pair).
    """

    curve: dict[str, Any] = dataclasses.field(default_factory=dict)
    plane: int = 0
    fge: dict[str, Any] = dataclasses.field(default_factory=dict)
    swag_samples: int | None = None
    align_samples: int | None = None
    workers: int | None = None

    def configs(self) -> tuple[ConnectConfig, FGEConfig]:
        """The curve's and FGE's configs (checked).

        Returns:
            ``(curve config, FGE config)``.

        Raises:
            UserError: For an unknown key or a bad value, in one line.
        """
        out = []
        for key, cls in (("curve", ConnectConfig), ("fge", FGEConfig)):
            table = getattr(self, key)
            unknown = sorted(set(table) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise UserError(f"[experiment.{key}] has unknown key(s) {unknown}; valid: "
                                f"{sorted(f.name for f in dataclasses.fields(cls))}")
            out.append(cls().replace(**table).validate())
        if self.plane < 0:
            raise UserError(f"[experiment] plane must be >= 0 (0: no plane), got "
                            f"{self.plane}")
        if self.swag_samples is not None and self.swag_samples < 1:
            raise UserError(f"[experiment] swag_samples must be >= 1, got "
                            f"{self.swag_samples}")
        return out[0], out[1]


def run_connect(exp: Experiment, seeds: Sequence[int], out: Path, log: Log, *,
                runs_dir: Path, main_run: Path | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Run the ``connect`` protocol (see the module docstring); one task per pair.

    Returns:
        ``{"metrics": {method: {metric: per-pair list}}, "extra": {...}}``.

    Raises:
        UserError: For bad settings, or the first error of any pair.
    """
    settings = ConnectSettings.parse(exp.settings)
    curve_cfg, fge_cfg = settings.configs()
    cfg: TrainConfig = exp.cfg
    if not cfg.swa:
        raise UserError("the connect protocol compares SWA and SWAG, which ride on the "
                        "SWA run; drop swa = false from the config")
    runs_dir.mkdir(parents=True, exist_ok=True)
    workers = worker_count(settings.workers, len(seeds))
    st = settings.to_dict()
    tasks = [dict(cfg=cfg.to_dict(), pair=int(i), runs_dir=str(runs_dir), st=st,
                  curve=curve_cfg.to_dict(), fge=fge_cfg.to_dict(), main=k == 0,
                  progress=progress and workers <= 1) for k, i in enumerate(seeds)]
    done = map_seeds(_pair_task, tasks, workers, log, name="connect", threads=cfg.threads)
    per_pair = stack(done)
    return {"metrics": per_pair["metrics"],
            "extra": {"pairs": per_pair["pair"], "runs": per_pair["runs"],
                      "main_pair": done[0]["pair"], "main_run": done[0]["runs"][0],
                      "seeds_of_pairs": [[2 * i, 2 * i + 1] for i in seeds],
                      "settings": st, "curve": curve_cfg.to_dict(),
                      "curve_name": curve_cfg.curve,
                      "fge": fge_cfg.to_dict(), "plane": bool(settings.plane),
                      "fge_epochs": fge_cfg.snapshots * fge_cfg.cycle,
                      "sgd_epochs": cfg.epochs, "swa_epochs": cfg.swa_budget}}


def _predictive(m: Any) -> dict[str, float]:
    """``test_acc``, ``test_nll``, ``test_ece`` of :class:`PredictiveMetrics`."""
    return {"test_acc": float(m.acc), "test_nll": float(m.nll), "test_ece": float(m.ece)}


def _pair_task(task: Mapping[str, Any], log: Log) -> dict[str, Any]:
    """Everything of one pair: two trainings, curve, alignment, FGE, SWAG, ensemble.

    Plain data in and out; every stage resumes from what its files hold.
    """
    from landscape.config import load_data
    from landscape.evaluate import Evaluator
    from landscape.jobs import align_runs, connect_runs, fge_run, load_run_model, swag_run
    from landscape.posterior import EnsembleAverage, predict_proba, predictive_metrics
    from landscape.train import train

    base = from_dict(task["cfg"], TrainConfig).replace(swag=True)
    i, st, progress = task["pair"], task["st"], task["progress"]
    runs_dir = Path(task["runs_dir"])
    seeds = (2 * i, 2 * i + 1)
    runs = [runs_dir / f"seed{s}.h5" for s in seeds]
    quiet = lambda _m: None  # noqa: E731
    t0 = time.perf_counter()
    data = load_data(base.replace(seed=seeds[0]))  # one data set for both runs of the pair
    data = dataclasses.replace(data, meta={**data.meta, "pair": i,
                                           "data_of_seed": seeds[0]})
    for s, path in zip(seeds, runs, strict=True):
        train(base.replace(seed=s), path, progress=progress, log=quiet, data=data)
    log(f"[connect] pair {i}: trained seeds {seeds[0]} and {seeds[1]} (SGD, SWA with "
        f"SWAG; {base.epochs} epochs each) ({time.perf_counter() - t0:.0f} s)")

    pair = runs_dir / f"pair{i}.h5"
    t0 = time.perf_counter()
    plane = (st["plane"] or None) if task["main"] else None
    con = connect_runs(runs[0], runs[1], pair, config=ConnectConfig(**task["curve"]),
                       name=task["curve"]["curve"], plane=plane, progress=progress)
    log(f"[connect] pair {i}: {task['curve']['curve']} curve trained; test error barrier line "
        f"{100 * con.barriers['line']['test_err']:.2f} vs curve "
        f"{100 * con.barriers['curve']['test_err']:.2f} points "
        f"({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    kw = {} if st["align_samples"] is None else {"samples": st["align_samples"]}
    al = align_runs(runs[0], runs[1], pair, method="weights", repair=True,
                    points=task["curve"]["points"], name=ALIGNMENT, progress=progress,
                    **kw)
    log(f"[connect] pair {i}: weight matching; test error barrier aligned "
        f"{100 * al.barriers['aligned']['test_err']:.2f}, with REPAIR "
        f"{100 * al.barriers['repair']['test_err']:.2f} points "
        f"({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    fg = fge_run(runs[0], solution="sgd", config=FGEConfig(**task["fge"]),
                 progress=progress)
    kw = {} if st["swag_samples"] is None else {"samples": st["swag_samples"]}
    sw = swag_run(runs[0], progress=progress, bins=int(task["fge"]["bins"]), **kw)
    model, pdata = load_run_model(runs[0])
    ev = Evaluator(copy.deepcopy(model), *pdata.splits(4096), batch_size=4096)
    ens = EnsembleAverage()
    for path in runs:
        with store.open_run(path) as f:
            s = store.read_solution(f, "sgd")
        probs, y = predict_proba(ev, s.weights, s.buffers)
        ens.add(probs)
    pair_ens = predictive_metrics(ens.probs, y, int(task["fge"]["bins"]))
    h = fg.history
    metrics: dict[str, dict[str, float]] = {
        "sgd": _predictive(sw["sgd"]), "swa": _predictive(sw["swa"]),
        "swag": _predictive(sw["bma"].metrics), "fge": _predictive(fg.ensemble),
        "fge_swa": {"test_acc": float(h["swa_acc"][-1]), "test_nll": float(h["swa_nll"][-1]),
                    "test_ece": float(h["swa_ece"][-1])},
        "sgd_ensemble": _predictive(pair_ens)}
    log(f"[connect] pair {i}: FGE ({len(h['snapshot'])} snapshots) test acc "
        f"{fg.ensemble.acc:.4f}, SWAG acc {sw['bma'].metrics.acc:.4f}, SWA "
        f"{sw['swa'].acc:.4f}, SGD {sw['sgd'].acc:.4f}, two-SGD ensemble "
        f"{pair_ens.acc:.4f} ({time.perf_counter() - t0:.0f} s)")
    bars = {**con.barriers, **{k: v for k, v in al.barriers.items() if k != "curve"}}
    for which in PATHS:
        metrics[which] = {f"{k}_barrier": float(bars[which][k]) for k in BARRIERS}
    return {"pair": str(pair), "runs": [str(r) for r in runs], "metrics": metrics}


# =========================================================================== report
#: The figures, ``{stem: (caption, draw(plot, pair_file, run_file, curve))}``:
#: ``pair_file`` the first pair's curve/alignment file, ``run_file`` its first run
#: (trimmed), ``curve`` the curve's name there.
FIGURES: dict[str, FigureSpec] = {
    "curve_train_loss": (
        "L2-regularized train loss (CE + wd/2·‖θ‖²) along the straight line and the "
        "trained curve between the first pair's two SGD solutions (t = 0: seed 0, t = 1: "
        "seed 1); the legend gives each barrier.",
        lambda plot, pair, run, curve: plot.plot_curve_profiles(pair, curve, "train_loss")),
    "curve_test_err": (
        "Test error (%) along the same line and curve.",
        lambda plot, pair, run, curve: plot.plot_curve_profiles(pair, curve, "test_err")),
    "plane_train_loss": (
        "Train loss on the plane through both SGD solutions and the curve's bend "
        "(Garipov et al.'s Figure 1), with the line and the curve drawn.",
        lambda plot, pair, run, curve: plot.plot_curve_plane(
            pair, store.plane_surface_name(curve), "train_loss")),
    "alignment_test_err": (
        "Test error (%) along the raw line, the line to the weight-matched second "
        "solution, the same with REPAIR, and the trained curve (first pair).",
        lambda plot, pair, run, curve: plot.plot_alignment(pair, ALIGNMENT, "test_err")),
    "fge_acc": (
        "Test accuracy of the FGE ensemble from the first run's SGD solution as snapshots "
        "accumulate, against the SWA of the same snapshots, each snapshot alone and the "
        "starting SGD solution.",
        lambda plot, pair, run, curve: plot.plot_fge(run, "fge", "acc")),
    "fge_nll": (
        "Test NLL of the same ensembles.",
        lambda plot, pair, run, curve: plot.plot_fge(run, "fge", "nll")),
    "swag_nll": (
        "Test NLL of SWAG's Bayesian model average as samples accumulate, against SWA and "
        "SGD (first run).",
        lambda plot, pair, run, curve: plot.plot_swag_samples(run, "nll")),
    "swag_calibration": (
        "Reliability diagram (accuracy − confidence per confidence bin) of SWAG, SWA and "
        "SGD (first run); the legend gives each ECE.",
        lambda plot, pair, run, curve: plot.plot_swag_calibration(run)),
}


def _figures(exp: Experiment, res: Path, result: Mapping, dest: Path) -> list[Path]:
    """The figures, from copies of the first pair's file and first run in ``dest``.

    Returns:
        The PNG paths.
    """
    ex = result["extra"]
    pair = store.trimmed_copy(Path(ex["main_pair"]), dest / "pair0.h5")
    run = store.trimmed_copy(Path(ex["main_run"]), dest / "seed0.h5")
    figs = {k: v for k, v in FIGURES.items() if ex.get("plane") or k != "plane_train_loss"}
    return draw_figures(figs, dest, pair, run, ex["curve_name"])


def _lower_sentence(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float],
                    what: str, *, scale: float = 1.0, unit: str = "",
                    spec: str = "+.3g") -> str:
    """One sentence: is ``b`` lower than ``a`` (a barrier, an NLL, an ECE), paired?"""
    d, h = comparison(a, b)
    c = call(d, h)
    diff = format_pm(d, h, spec, scale=scale, unit=unit)
    if c == "one seed":
        return (f"With one pair, {name_b}'s {what} is {diff} against {name_a}'s; no "
                "interval can be given.")
    if c == "lower":
        return (f"**{name_b} is lower than {name_a}** on {what}: {diff} (paired over "
                "pairs, 95 % CI excludes 0).")
    if c == "higher":
        return (f"**{name_b} is not lower than {name_a}** on {what}: it is higher, {diff} "
                "(95 % CI excludes 0).")
    return (f"**{name_b} is not lower than {name_a}** on {what} beyond noise: {diff} "
            "(95 % CI includes 0).")


#: Lower-is-better claims ``(a, b, metric)``: is ``b`` lower than ``a``?
_LOWER = (("line", "curve", "test_err_barrier"), ("line", "curve", "train_loss_barrier"),
          ("line", "aligned", "test_err_barrier"), ("line", "aligned", "train_loss_barrier"),
          ("line", "repair", "test_err_barrier"), ("aligned", "repair", "test_err_barrier"),
          ("swa", "swag", "test_nll"), ("sgd", "swag", "test_nll"),
          ("swa", "swag", "test_ece"), ("sgd", "swag", "test_ece"),
          ("sgd", "fge", "test_nll"), ("swa", "fge", "test_nll"),
          ("sgd_ensemble", "fge", "test_nll"))

#: Higher-is-better claims ``(a, b)`` on test accuracy: does ``b`` beat ``a``?
_BEATS = (("sgd", "fge"), ("swa", "fge"), ("sgd_ensemble", "fge"), ("sgd", "swa"),
          ("swa", "swag"), ("sgd", "swag"))


#: How the report names a barrier metric.
_WHAT = {f"{k}_barrier": k.replace("_err", " error").replace("_", " ") + " barrier"
         for k in BARRIERS}


def _label(m: str) -> str:
    return PATHS.get(m) or METHODS.get(m, m)


def verdicts(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's verdicts as data: claim -> call, paired over pairs.

    Lower-is-better claims (``"<b> vs <a>, <metric>"`` on barriers, NLL, ECE) are
    ``"lower"``, ``"higher"`` or ``"no difference"``; accuracy claims
    ``"beats"``, ``"worse"`` or ``"no difference"``; ``"one seed"`` with one pair.

    Returns:
        The calls, in report order.
    """
    m = result["metrics"]
    out = {f"{b} vs {a}, {k}": call(*comparison(m[a][k], m[b][k])) for a, b, k in _LOWER}
    out |= {f"{b} vs {a}, test_acc": paired_call(m[a]["test_acc"], m[b]["test_acc"])
            for a, b in _BEATS}
    return out


def _barrier_table(m: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    rows = ["| path | train loss barrier | train error barrier (points) | test loss barrier"
            " | test error barrier (points) |", "|---|---|---|---|---|"]
    for which, label in PATHS.items():
        cells = [format_ci(m[which][f"{k}_barrier"], 100.0 if k.endswith("_err") else 1.0,
                           2 if k.endswith("_err") else 4) for k in BARRIERS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def _predictive_table(m: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    rows = ["| method | test acc (%) | test NLL | test ECE |", "|---|---|---|---|"]
    for which, label in METHODS.items():
        r = m[which]
        rows.append(f"| {label} | {format_ci(r['test_acc'], 100.0, 2)} | "
                    f"{format_ci(r['test_nll'], 1.0, 4)} | {format_ci(r['test_ece'], 1.0, 4)}"
                    " |")
    return rows


def _report(exp: Experiment, result: Mapping, figures: Sequence[Path], out: Path
            ) -> list[str]:
    m, ex = result["metrics"], result["extra"]
    n = len(ex["pairs"])
    cc, fc = ex["curve"], ex["fge"]
    lines = [f"Each of the {n} \"seeds\" above is a **pair** of runs: training seeds "
             f"{ex['seeds_of_pairs']}, both runs of a pair trained on the same data, so "
             "that their SGD solutions differ by initialisation and minibatch order only; "
             "intervals and paired differences are over pairs.", "",
             "### Is the trained curve's barrier lower than the line's?", ""]
    lines += ["- " + _lower_sentence(_label(a), m[a][k], _label(b), m[b][k],
                                     _WHAT[k],
                                     **({"scale": 100.0, "unit": " points", "spec": "+.2f"}
                                        if "_err" in k else {}))
              for a, b, k in _LOWER[:2]]
    lines += ["", "### Is the barrier lower after alignment (weight matching, REPAIR)?", ""]
    lines += ["- " + _lower_sentence(_label(a), m[a][k], _label(b), m[b][k],
                                     _WHAT[k],
                                     **({"scale": 100.0, "unit": " points", "spec": "+.2f"}
                                        if "_err" in k else {}))
              for a, b, k in _LOWER[2:6]]
    if all(np.allclose(m["repair"][k], m["aligned"][k], rtol=1e-4, atol=1e-6)
           for k in m["aligned"]):
        lines += ["- REPAIR changed no barrier beyond 1e-4: with BatchNorm statistics "
                  "recomputed at every point (RESET), each normalised channel's mean and "
                  "scale already are the interpolated BN shift and scale, which equal "
                  "REPAIR's targets (the interpolated endpoints' statistics); REPAIR "
                  "matters for networks without BN."]
    lines += ["", "### Do FGE and SWAG predict better than SWA and SGD?", ""]
    lines += ["- " + verdict(_label(a), m[a]["test_acc"], _label(b), m[b]["test_acc"],
                             "test accuracy") for a, b in _BEATS]
    lines += ["- " + _lower_sentence(_label(a), m[a][k], _label(b), m[b][k],
                                     "test " + k.removeprefix("test_").upper())
              for a, b, k in _LOWER[6:]]
    lines += ["", "## Barriers over pairs", "",
              "Barrier: the maximum over t of a metric along the path minus the mean of "
              "its values at the two endpoints (t = 0, 1); errors in percentage points, "
              "losses in nats (the train loss with the runs' L2 term wd/2·‖θ‖²).  BN "
              "statistics recomputed on train data at every point.", ""]
    lines += _barrier_table(m)
    lines += ["", f"Curve: {cc['curve']} with {cc['bends']} bend(s), {cc['epochs']} epochs "
              f"of SGD (lr {cc['lr']:g}, {cc['schedule']} schedule, one t ~ U[0, 1] per "
              f"minibatch), profiles at {cc['points']} values of t.  Alignment: weight "
              "matching of the second SGD solution to the first; REPAIR rescales each "
              "channel of the interpolated network to the interpolated endpoints' "
              "statistics.", "",
              "## Predictions over pairs (test set)", ""]
    lines += _predictive_table(m)
    lines += ["", f"Budgets in epochs: SGD {ex['sgd_epochs']} per run; the SWA run "
              f"{ex['swa_epochs']}; FGE {ex['fge_epochs']} more from the SGD solution "
              f"({fc['snapshots']} cycles of {fc['cycle']}, lr {fc['alpha1']:g} → "
              f"{fc['alpha2']:g}), so FGE's total is "
              f"{ex['sgd_epochs'] + ex['fge_epochs']} against "
              f"{2 * ex['sgd_epochs']} for the two-run SGD ensemble.  SWAG: "
              f"{ex['settings'].get('swag_samples') or 'the default number of'} samples of "
              "the SWA run's Gaussian (diagonal plus low rank), BN statistics recomputed "
              "per sample; SWA and SGD go through the same path.  ECE: "
              f"{fc['bins']} equal-width confidence bins.", "",
              "## Figures", ""]
    lines += figure_lines(figures, out, captions(FIGURES))
    lines += [f"Redraw: `landscape plot {out / 'pair0.h5'} --all --out-dir DIR` and "
              f"`landscape plot {out / 'seed0.h5'} --all --out-dir DIR` (first pair; the "
              "full run files stay in the runs folder).", ""]
    return lines


register_protocol(Protocol(
    name="connect", title="paths between optima, FGE and SWAG over pairs of seeds",
    settings=ConnectSettings, run=run_connect, figures=_figures, report=_report))


__all__ = ["ALIGNMENT", "ConnectSettings", "run_connect", "verdicts"]

