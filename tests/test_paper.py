"""The ``paper`` experiment (:mod:`landscape.paper`) end to end at tiny sizes, and its
report logic on known numbers."""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape import experiments as ex
from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.experiments import paper

SURFACES = {"random_swa", "random_sgd", "plane", "pca", "line"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``landscape demo --quick`` into a temporary folder (one seed, tiny sizes)."""
    d = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["demo", "--quick", "--out", str(d / "demo.h5"), "--runs-dir",
                     str(d / "runs"), "--out-dir", str(d / "fig" / "paper")])
    assert code == 0
    (d / "first.log").write_text(out.getvalue())
    return d


def test_a_first_demo_says_there_is_nothing_to_compare_with(demo: Path) -> None:
    last = (demo / "first.log").read_text().strip().splitlines()[-1]
    assert last == (f"[demo] first run into {demo / 'fig' / 'paper'}: no earlier results "
                    "to compare with")


def test_demo_run_file_holds_everything(demo: Path) -> None:
    with h5py.File(demo / "demo.h5", "r") as f:
        assert set(f["surfaces"]) == SURFACES
        for name in SURFACES:
            assert f[f"surfaces/{name}"].attrs["complete"]
            assert np.isfinite(f[f"surfaces/{name}/train_loss"][()]).all()
        for sol in ("sgd", "swa"):
            assert set(paper.MEASURES) | {"rays"} <= set(f[f"measures/{sol}"])
            ev = f[f"measures/{sol}/hessian/eigenvalues"][()]
            assert ev.shape == (5,)
            assert f[f"measures/{sol}/hessian"].attrs["lambda_max"] == pytest.approx(ev.max())
            assert f[f"measures/{sol}/width/widths"].shape == (3,)
            rays = f[f"measures/{sol}/rays"]
            loss = rays["train_loss"][()]
            assert loss.shape == (2, 4)
            assert rays["distance"][0] == 0.0
            assert loss[0, 0] == loss[1, 0]  # every ray starts at the solution
            assert not np.allclose(loss[0, 1:], loss[1, 1:])  # and leaves it differently
        assert "shift" in f["measures/gap"].attrs


def test_demo_results_match_the_run_file(demo: Path) -> None:
    out = demo / "fig" / "paper"
    with h5py.File(out / "results.h5", "r") as r, h5py.File(demo / "demo.h5", "r") as f:
        assert set(r["metrics"]) == {"sgd", "swa_last", "swa", "swa_1.5x"}
        assert r.attrs["command"].startswith("landscape demo --out")
        for method in ("sgd", "swa_last", "swa"):
            for k in ("train_loss", "test_acc"):
                assert r[f"metrics/{method}/{k}"][0] == f[f"solutions/{method}"].attrs[k]
        assert 0 <= r["metrics/swa_1.5x/test_acc"][0] <= 1
    # the trimmed copy beside the report has the figures' data but no trajectory weights
    with h5py.File(out / "seed0.h5", "r") as s:
        assert "trajectories" not in s
        assert set(s["surfaces"]) == SURFACES
        assert s.attrs["kind"] == "landscape-run"


def test_demo_report_and_figures(demo: Path, capsys: pytest.CaptureFixture) -> None:
    out = demo / "fig" / "paper"
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# paper")
    assert "## Flatness of SGD and SWA" in report
    assert "| median width (L2, τ) |" in report
    assert "## Train–test gap and the shift" in report
    assert report.count("## Figures") == 1
    for stem, (caption, _) in paper.FIGURES.items():
        assert f"![{stem}]({stem}.png)" in report
        assert caption in report
        assert (out / f"{stem}.png").stat().st_size > 1000


def test_budget_runs_are_the_swa_run_of_that_length(demo: Path) -> None:
    """The 1.5-budget number is an SWA run of round(1.5 * epochs) epochs."""
    from landscape.config import load_data

    e = ex.load_experiment("paper", quick=True, overrides={"data_root": "data"})
    cfg = e.cfg.replace(seed=0)
    f = ex.fit(cfg.replace(swa_epochs=6, record_every=0, eval_every=0), load_data(cfg),
               "swa")
    with h5py.File(demo / "fig" / "paper" / "results.h5", "r") as r:
        assert r["metrics/swa_1.5x/test_acc"][0] == pytest.approx(f.metrics["test_acc"])


@pytest.mark.slow  # 20 s: the protocol twice; the same runner's invariance is checked by
# default on seed000's CV folds and on the regimes' cells (tests/test_regimes.py)
def test_workers_do_not_change_results(tmp_path: Path) -> None:
    e = ex.load_experiment("paper", quick=True)
    e.settings.update(measure_seeds=0, budgets=[1.0])
    res = {}
    for w in (1, 2):
        e.settings["workers"] = w
        res[w] = paper.run_paper(e, [0, 1], tmp_path, lambda _: None,
                                 runs_dir=tmp_path / f"w{w}")
    assert res[1]["metrics"] == res[2]["metrics"]
    assert len(res[1]["metrics"]["sgd"]["test_acc"]) == 2
    assert res[1]["metrics"]["sgd"]["test_acc"][0] != res[1]["metrics"]["sgd"]["test_acc"][1]


def test_bad_budgets() -> None:
    e = ex.load_experiment("paper", quick=True)
    e.settings["budgets"] = [1.25]
    with pytest.raises(UserError, match=r"budgets must start with 1\.0"):
        paper.run_paper(e, [0], Path("unused"), print, runs_dir=Path("unused"))


def test_flatness_verdicts_on_known_numbers() -> None:
    width = "median width (L2, τ)"
    lam = "λ_max (Hessian)"
    sigma = "PAC-Bayes σ"
    measured = {"sgd": {width: [1.0, 1.1, 0.9], lam: [10.0, 11.0, 9.0],
                        sigma: [0.1, 0.2, 0.3]},
                "swa": {width: [2.0, 2.2, 1.8], lam: [20.0, 22.0, 18.0],
                        sigma: [0.2, 0.1, 0.3]}}
    lines = paper._flatness_verdicts(measured)
    assert lines[0].startswith(f"- {lam}: SWA is **sharper**")
    assert "SWA/SGD = 2 " in lines[0]
    assert lines[1].startswith(f"- {sigma}: no difference beyond noise")
    assert lines[2].startswith(f"- {width}: SWA is **flatter**")
    rows = paper.scalar_table(measured)
    assert rows[0].startswith("| measure | SGD | SWA |")
    assert f"| {width} | 1 ± 0.25 | 2 ± 0.5 | 2 ± 0 |" in rows


def test_info_lists_surfaces_and_measures(demo: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["info", str(demo / "demo.h5")]) == 0
    out = capsys.readouterr().out
    for name in SURFACES:
        assert f"\n  {name} (" in out
    with h5py.File(demo / "demo.h5", "r") as f:
        lam = f["measures/swa/hessian"].attrs["lambda_max"]
    assert f"    hessian: lambda_max={lam:.4g}" in out
    assert "    rays: rays=2" in out


def test_train_accepts_the_experiment_config(tmp_path: Path) -> None:
    out = tmp_path / "p.h5"
    assert main(["train", "--config", str(ex.CONFIGS_DIR / "paper.toml"), "--epochs",
                 "2", "--swa-start", "1", "--num-samples", "200", "--train-samples", "100",
                 "--out", str(out), "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        assert f["solutions/swa"].attrs["n_averaged"] == 2  # after epochs 1 and 2
        assert '"swa_lr": 0.01' in f.attrs["config"]


def test_rerun_keeps_finished_work(demo: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A second ``landscape demo`` trains nothing and re-evaluates no budget run or ray."""
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("recomputed finished work")

    with h5py.File(demo / "fig" / "paper" / "results.h5", "r") as r:
        before = {m: r[f"metrics/{m}/test_loss"][()] for m in r["metrics"]}
    run = demo / "demo.h5"  # the first (and only) seed's run file
    stages = dict(store.group_attrs(run, "measures/paper_seconds"))
    # A budget run stored before TrainConfig gained a key (its default) is still reused.
    with h5py.File(run, "a") as f:
        g = next(g for g in f["measures/budgets"].values())
        cfg = json.loads(g.attrs["config"])
        assert cfg.pop("swag_rank") == 20
        g.attrs["config"] = json.dumps(cfg)
    assert set(stages) == {"train", "budgets", "measures", "surfaces"}
    monkeypatch.setattr(paper.run, "fit", boom)
    monkeypatch.setattr(paper.run, "Evaluator", boom)
    monkeypatch.setattr("landscape.train.train_run", boom)
    t0 = time.perf_counter()
    assert main(["demo", "--quick", "--out", str(demo / "demo.h5"), "--runs-dir",
                 str(demo / "runs"), "--out-dir", str(demo / "fig" / "paper")]) == 0
    rerun = time.perf_counter() - t0
    with h5py.File(demo / "fig" / "paper" / "results.h5", "r") as r:
        for m, v in before.items():
            assert r[f"metrics/{m}/test_loss"][()] == v
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("[demo] identical to the earlier")  # its own earlier results
    # The resumed seed keeps the seconds of the work done the first time, and the
    # report's worker time is their sum, not the (short) wall time of the rerun.
    after = dict(store.group_attrs(run, "measures/paper_seconds"))
    assert all(stages[k] <= after[k] <= stages[k] + rerun for k in stages)
    report = (demo / "fig" / "paper" / "REPORT.md").read_text()
    assert f"work took {sum(after.values()):.0f} s of worker time" in report


def test_compare_results_in_units_of_the_earlier_ci() -> None:
    earlier = {"metrics": {"swa": {"test_acc": np.array([0.90, 0.92, 0.94])}},
               "attrs": {"extra": {"gap": {"shift": [1.0, 2.0, 3.0]}}}}
    same = ex.compare_results(earlier, earlier)
    assert same == "identical to the committed results (2 per-seed series)"
    moved = {"metrics": {"swa": {"test_acc": np.array([0.90, 0.92, 0.94])}},
             "attrs": {"extra": {"gap": {"shift": [1.5, 2.5, 3.5]}}}}
    line = ex.compare_results(earlier, moved)
    half = 4.302652729911275 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n) of [1, 2, 3]
    assert f"{0.5 / half:.2g} x its 95 % half-width" in line  # 0.2
    assert "shift: 2.5 now vs 2" in line
    more = {"metrics": {"swa": {"test_acc": np.array([0.90, 0.92, 0.94, 0.5])}},
            "attrs": {"extra": {"gap": {"shift": [1.0, 2.0, 3.0, 9.0]}}}}
    assert ex.compare_results(earlier, more) == (
        "identical to the committed results (the first 3 seeds, which both have) "
        "(2 per-seed series)")
    other = {**earlier, "attrs": {**earlier["attrs"], "config": {"epochs": 4, "lr": 0.1}}}
    cfg = {**earlier, "attrs": {**earlier["attrs"], "config": {"epochs": 40, "lr": 0.1}}}
    assert ex.compare_results(cfg, other) == (
        "not compared with the committed results: made with another config (differs in "
        "epochs)")
    elsewhere = {**cfg, "attrs": {**cfg["attrs"], "config": {
        "epochs": 40, "lr": 0.1, "data_root": "/elsewhere", "threads": 2}}}
    assert ex.compare_results(cfg, elsewhere).startswith("identical")
    rounded = {"metrics": {"swa": {"test_acc": np.array([0.90, 0.92, 0.94 * (1 + 3e-7)])}},
               "attrs": {"extra": {"gap": {"shift": [1.0, 2.0, 3.0]}}}}
    assert ex.compare_results(earlier, rounded) == (
        "matches the committed results to float rounding (largest relative difference "
        "3.0e-07, swa test_acc; 2 per-seed series)")
    beyond = {"metrics": {"swa": {"test_acc": np.array([0.90, 0.92, 0.94 * (1 + 1e-4)])}},
              "attrs": {"extra": {"gap": {"shift": [1.0, 2.0, 3.0]}}}}
    moved_by = 0.94e-4 / 3 / (4.302652729911275 * 0.02 / np.sqrt(3))  # mean / half-width
    assert ex.compare_results(earlier, beyond).startswith(
        f"differs from the committed results: the largest difference is {moved_by:.2g} x")


def _paper_results(path, gains, ratios):
    """A paper results file: SGD test accuracy, SWA = SGD + gains, λ_max SWA/SGD = ratios."""
    from landscape import store
    from landscape.sharpness import headlines

    lam = next(h.label for m, h in headlines() if m == "hessian" and h.key == "lambda_max")
    sgd = [0.90, 0.91, 0.92, 0.93][: len(gains)]
    extra = {"measures": {"sgd": {lam: [1.0] * len(ratios)}, "swa": {lam: list(ratios)}}}
    store.write_results(path, {"experiment": "paper", "seeds": list(range(len(gains))),
                               "extra": extra},
                        {"sgd": {"test_acc": sgd},
                         "swa": {"test_acc": [a + g for a, g in zip(sgd, gains, strict=True)]}})
    return lam


def test_stability_finds_the_seed_counts_where_two_machines_disagree(tmp_path) -> None:
    from landscape import store
    from landscape.experiments.stability import agreement, main

    # A: SWA gains 1.0, 1.2, 0.9, 1.1 points -> 95 % t-interval excludes 0 from N = 3
    # (N = 2: 1.1 +- 12.7 * 0.14 / sqrt 2 = 1.1 +- 1.3 includes 0).  B: the second seed
    # lost 2 points -> no difference at every N.  λ_max doubles on both: sharper from N = 2.
    lam = _paper_results(tmp_path / "a.h5", [0.010, 0.012, 0.009, 0.011],
                         [2.0, 2.1, 1.9, 2.0])
    _paper_results(tmp_path / "b.h5", [0.010, -0.020, 0.009, 0.011], [2.0, 2.2, 1.9, 2.1])
    rows = agreement(store.read_results(tmp_path / "a.h5"),
                     store.read_results(tmp_path / "b.h5"))
    acc = "SGD + SWA vs SGD, test accuracy"
    assert [r["seeds"] for r in rows] == [2, 3, 4]
    assert [r["a"][acc] for r in rows] == ["no difference", "beats", "beats"]
    assert [r["b"][acc] for r in rows] == ["no difference"] * 3
    assert [r["differ"] for r in rows] == [[], [acc], [acc]]
    assert all(r["a"][lam] == r["b"][lam] == "sharper" for r in rows)

    assert main([str(tmp_path / "a.h5"), str(tmp_path / "b.h5"),
                 "--out", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert "| SGD + SWA vs SGD, test accuracy | no difference | **beats / no difference** |" \
        in text
    assert "Some verdict differs even with all 4 seeds." in text

    store.write_results(tmp_path / "c.h5", {"experiment": "seed004", "seeds": [0, 1]},
                        {"sgd": {"test_acc": [0.9, 0.8]}})
    assert main([str(tmp_path / "a.h5"), str(tmp_path / "c.h5")]) == 2


def test_stability_calls_measures_only_at_the_seed_counts_they_reach(tmp_path) -> None:
    """``measure_seeds`` < ``seeds``: accuracy is called at N = 2..4, λ_max at N = 2 only
    (its row shows "-" beyond), never from a repeated 2-seed sample."""
    from landscape import store
    from landscape.experiments.stability import agreement, main

    lam = _paper_results(tmp_path / "a.h5", [0.010, 0.012, 0.009, 0.011], [2.0, 2.1])
    _paper_results(tmp_path / "b.h5", [0.010, 0.012, 0.009, 0.011], [2.0, 0.5])
    rows = agreement(store.read_results(tmp_path / "a.h5"),
                     store.read_results(tmp_path / "b.h5"))
    assert [lam in r["a"] for r in rows] == [True, False, False]
    # A: log ratios 0.69, 0.74 (sharper); B: 0.69, -0.69 (no difference)
    assert (rows[0]["a"][lam], rows[0]["b"][lam]) == ("sharper", "no difference")
    assert [r["differ"] for r in rows] == [[lam], [], []]
    assert main([str(tmp_path / "a.h5"), str(tmp_path / "b.h5"),
                 "--out", str(tmp_path / "s.md")]) == 0
    text = (tmp_path / "s.md").read_text()
    assert f"| {lam} | **sharper / no difference** | - | - |" in text
    assert "Every verdict agrees from N = 3 seeds on (up to 4)." in text


def test_compare_results_fills_keys_added_to_the_config_since() -> None:
    """A file written before TrainConfig gained a key (at its default) is the same
    config; a key that really differs still stops the comparison."""
    from landscape.config import TrainConfig

    new_cfg = TrainConfig().to_dict()
    old_cfg = {k: v for k, v in new_cfg.items() if k not in ("swag", "swag_rank")}
    m = {"swa": {"test_acc": np.array([0.90, 0.92, 0.94])}}
    earlier = {"metrics": m, "attrs": {"config": old_cfg}}
    assert ex.compare_results(earlier, {"metrics": m, "attrs": {"config": new_cfg}}) == (
        "identical to the committed results (1 per-seed series)")
    other = {**new_cfg, "swag_rank": new_cfg["swag_rank"] + 1}
    assert ex.compare_results(earlier, {"metrics": m, "attrs": {"config": other}}) == (
        "not compared with the committed results: made with another config (differs in "
        "swag_rank)")
