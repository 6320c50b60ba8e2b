"""The ``controls`` protocol (:mod:`landscape.experiments.controls`) end to end at the
``--quick`` size, its closed forms and rescaling, and its verdicts on known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from landscape import experiments as ex
from landscape import store
from landscape._errors import UserError
from landscape.experiments import controls
from landscape.sharpness import headlines


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``landscape reproduce controls --quick`` into a temporary folder (2 seeds)."""
    d = tmp_path_factory.mktemp("controls")
    ex.reproduce("controls", quick=True, out_dir=d / "out" / "controls", runs_dir=d / "runs",
                 log=lambda _: None)
    return d


def _extra(quick: Path) -> dict:
    return store.read_results(quick / "out" / "controls" / "results.h5")["attrs"]["extra"]


def test_known_geometry_matches_closed_forms(quick: Path) -> None:
    geo = _extra(quick)["geometry"]
    assert len(geo) == 2  # one least-squares problem per seed
    for rows in geo:
        r = {row["key"]: row for row in rows}
        assert set(r) == {k for k, *_ in controls.GEOMETRY_ROWS}
        # n = 5 parameters: eigenvalues and the per-layer blocks come from the dense
        # 5x5 Hessian of HVPs, exact to float64 rounding
        for k in ("lambda_max", "lambda_min", "block_lambda_max_weight",
                  "block_trace_weight", "block_bias"):
            assert abs(r[k]["rel_err"]) < 1e-9, k
        # SAM/ASAM: the gradient at the fit is rounding noise, so the ascent starts from
        # its seeded random direction and its 20 steps are power iterations (seen: SAM
        # 2e-14, ASAM 1e-6 to 8e-5 on any machine), within the 1e-3 the other solvers
        # stop at; width: bisection to a relative 1e-3 per direction
        for k in ("sam", "asam_all", "asam_weights", "width"):
            assert abs(r[k]["rel_err"]) < controls.SOLVER_TOL, k
        # Monte Carlo estimators: within 3 of their own standard errors
        for k in ("trace", "avg", "sigma", "sigma_mag"):
            assert abs(r[k]["z"]) <= 3, k
            assert r[k]["passed"]
        # ε-sharpness: every one of the 32 box vertices evaluated, the exact maximum
        assert (r["eps"]["exact"], r["eps"]["method"]) == (True, "L-BFGS-B + every vertex")
        assert abs(r["eps"]["rel_err"]) < 1e-9


def test_reparametrization_control(quick: Path) -> None:
    dinh = _extra(quick)["dinh"]
    assert set(dinh) == {"alpha=1", "alpha=10", "alpha=0.1"}
    base = np.asarray(dinh["alpha=1"]["loss"])
    for a in ("alpha=10", "alpha=0.1"):
        # the function is unchanged: the float64 train loss to 1e-10
        assert np.abs(np.asarray(dinh[a]["loss"]) - base).max() < 1e-10
        lam = np.asarray(dinh[a]["λ_max (Hessian)"]) / np.asarray(dinh["alpha=1"][
            "λ_max (Hessian)"])
        assert (lam > 2).all()  # the Hessian grows in the rescaled layer (×α² or ×1/α²)
    rows = {r["label"]: r for r in controls.dinh_table(dinh)}
    for label in ("ASAM sharpness, η = 0, T = |θ| on every entry",
                  "PAC-Bayes σ′ (magnitude-aware), ε = 0"):
        assert rows[label]["max_change"] < 1e-8, label  # invariant to rounding
        assert rows[label]["observed"] == "invariant"
    # ASAM's code (T = 1 on biases) is not: the rescaling multiplies a bias
    for label in (controls.ASAM_WEIGHTS_LABEL, f"{controls.ASAM_WEIGHTS_LABEL}, η = 0"):
        assert rows[label]["observed"] == "changes", label
        assert rows[label]["expected"].startswith("changes")
    for label in ("λ_max (Hessian)", "trace (Hutchinson)", "ε-sharpness (Keskar)",
                  "SAM sharpness ρ=0.05", "average sharpness", "PAC-Bayes σ"):
        assert rows[label]["observed"] == "changes", label


def test_batch_size_control_and_accuracy_table(quick: Path) -> None:
    r = store.read_results(quick / "out" / "controls" / "results.h5")
    assert set(r["metrics"]) == {"small_batch", "large_batch", "relu_mlp"}
    for m in r["metrics"].values():
        assert m["train_acc"].shape == (2,)
    batch = r["attrs"]["extra"]["batch"]
    labels = [h.label for _, h in headlines()]
    for arm in controls.ARMS:
        assert list(batch[arm]) == labels
        assert np.isfinite(np.asarray(batch[arm]["λ_max (Hessian)"])).all()
    # the stored measures of the run files are the ones reported
    with store.open_run(quick / "runs" / "large-seed1.h5") as f:
        lam = store.read_measure(f, "sgd", "hessian").scalars["lambda_max"]
    assert batch["large_batch"]["λ_max (Hessian)"][1] == lam


def test_report_and_figures(quick: Path) -> None:
    out = quick / "out" / "controls"
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# controls")
    out_dir = quick / "out" / "controls"
    assert f"landscape reproduce controls --seeds 2 --out-dir {out_dir}" in report
    for heading in ("## 1. Positive control: small vs large batches",
                    "## 2. Positive control: known geometry",
                    "## 3. Negative control: reparametrization",
                    "| measure | closed form | closed-form value | measured |"):
        assert heading in report
    for stem, (caption, _) in controls.FIGURES.items():
        assert f"![{stem}]({stem}.png)" in report
        assert caption in report
        assert (out / f"{stem}.png").stat().st_size > 1000
    assert report.count("- **") >= 3 + 9 + 2  # summary, one line per measure, Dinh


def test_rerun_recomputes_nothing(quick: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("recomputed finished work")

    before = _extra(quick)
    monkeypatch.setattr("landscape.train.train_run", boom)
    monkeypatch.setattr("landscape.jobs.measures.run_measure", boom)
    monkeypatch.setattr("landscape.jobs.measures.MeasureContext", boom)
    monkeypatch.setattr(controls.run, "run_measure", boom)
    monkeypatch.setattr(controls.run, "MeasureContext", boom)
    monkeypatch.setattr(controls.run, "adaptive_sharpness", boom)
    monkeypatch.setattr(controls.run, "pacbayes_sigma", boom)
    monkeypatch.setattr("landscape.evaluate.EmpiricalRisk", boom)
    ex.reproduce("controls", quick=True, out_dir=quick / "out" / "controls",
                 runs_dir=quick / "runs",
                 log=lambda _: None)
    assert _extra(quick) == before


def test_verdicts_on_known_numbers() -> None:
    lam, sig = "λ_max (Hessian)", "PAC-Bayes σ"
    batch = {"small_batch": {lam: [1.0, 2.0, 3.0], sig: [0.1, 0.2, 0.3]},
             "large_batch": {lam: [10.0, 22.0, 27.0], sig: [0.1, 0.3, 0.2]}}
    rows = {r[0]: r for r in controls.batch_verdicts(batch)}
    assert rows[lam][4].startswith("**passes**")
    assert "×9.97" in rows[lam][4]  # geometric mean of 10, 11, 9: 990^(1/3)
    assert rows[sig][4].startswith("**fails**: no difference beyond noise")
    assert rows["trace (Hutchinson)"][4].startswith("**fails**: no positive values")
    dinh = {"alpha=1": {"a": [1.0, 2.0], "b": [1.0, 2.0], "loss": [0.1, 0.1]},
            "alpha=10": {"a": [1.0, 2.0 + 1e-12], "b": [1.01, 2.0], "loss": [0.1, 0.1]},
            "alpha=0.1": {"a": [1.0, 2.0], "b": [3.0, 2.0], "loss": [0.1, 0.1]}}
    t = {r["label"]: r for r in controls.dinh_table(dinh)}
    assert t["a"]["observed"] == "invariant"
    assert t["b"]["observed"] == "changes"
    assert t["b"]["max_change"] == pytest.approx(2.0)
    assert math.isclose(t["b"]["ratios"]["alpha=10"][0], 1.01)


def test_bad_settings(tmp_path: Path) -> None:
    e = ex.load_experiment("controls", quick=True)
    e.settings["alphas"] = [1.0]
    with pytest.raises(UserError, match="alphas must be positive and not 1"):
        controls.run_controls(e, [0], tmp_path, print, runs_dir=tmp_path)
    e = ex.load_experiment("controls", quick=True)
    e.settings["large_batch"] = 16
    with pytest.raises(UserError, match="large_batch must exceed batch_size"):
        controls.run_controls(e, [0], tmp_path, print, runs_dir=tmp_path)


def test_report_says_whether_eps_is_exact_or_a_lower_bound() -> None:
    def row(exact: bool, measured: float) -> dict:
        return {"key": "eps", "label": "ε-sharpness (Keskar)", "closed": 1.0,
                "measured": measured, "rel_err": measured - 1.0, "z": math.nan,
                "passed": abs(measured - 1.0) <= controls.SOLVER_TOL, "exact": exact,
                "method": "L-BFGS-B + every vertex" if exact else "L-BFGS-B"}

    exact = controls._geometry_verdicts([[row(True, 1.0)], [row(True, 1.0)]])
    assert any("is **exact** on every seed" in line for line in exact)
    assert not any("lower bound" in line for line in exact)
    lower = controls._geometry_verdicts([[row(True, 1.0)], [row(False, 0.8)]])
    assert any("misses its closed form** on 1 of 2 seeds" in line and
               "lower bound" in line for line in lower)
    assert any("**lower bound** on 1 of 2 seeds (L-BFGS-B, L-BFGS-B + every vertex)"
               in line for line in lower)
    summary = controls._summary({"batch": {"small_batch": {}, "large_batch": {}},
                                 "geometry": [[row(True, 1.0)], [row(False, 0.8)]],
                                 "dinh": {"alpha=1": {"loss": [0.1]}}})
    assert "ε-sharpness is a lower bound on 1 of 2 seeds" in summary[1]
