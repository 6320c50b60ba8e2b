"""Every committed ``figures/*/REPORT.md`` regenerates from its ``results.h5``.

The report is a function of the results file (per-seed values, the resolved
config and settings, the command, the seconds) and of the figures' names, so
rewriting the protocol code must leave it unchanged, byte for byte.  This
rebuilds each report's Markdown without training or drawing anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from landscape import store
from landscape.config import TrainConfig, from_dict
from landscape.experiments import _common

ROOT = Path(__file__).resolve().parents[1]
#: Report folders relative to the repository root, as the reports name them.
REPORTS = sorted(p.parent.relative_to(ROOT) for p in (ROOT / "figures").glob("*/REPORT.md")
                 if (p.parent / "results.h5").is_file())


def _rebuild(folder: Path) -> str:
    committed = (folder / "REPORT.md").read_text()
    r = store.read_results(folder / "results.h5")
    a = r["attrs"]
    # the name and path the report shows: ``Config `NAME.toml` resolved``
    toml = re.search(r"Config `([^`]+)` resolved", committed).group(1)
    exp = _common.Experiment(Path(toml).stem, from_dict(a["config"], TrainConfig),
                             dict(a["settings"]), Path(toml))
    # the results file keeps the methods' order but sorts each method's metrics:
    # take the column order from the report's accuracy table
    head = next(line for line in committed.splitlines() if line.startswith("| method |"))
    order = [c.strip() for c in head.split("|")[2:-1]]
    metrics = {m: {k: list(cols[k]) for k in order if k in cols}
               for m, cols in r["metrics"].items()}
    result = {"metrics": metrics, "extra": a.get("extra") or {}}
    figures = [folder / p for p in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", committed)]

    return _common.report_text(folder, exp, a["seeds"], result, a["command"], figures,
                               a["seconds"])


@pytest.mark.parametrize("folder", REPORTS, ids=[p.name for p in REPORTS])
def test_committed_report_regenerates(folder: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    monkeypatch.chdir(ROOT)
    assert _rebuild(folder) == (folder / "REPORT.md").read_text()


#: Stability reports: (report, results file A, results file B) as their header names them.
STABILITY = [(Path("figures/seed000/STABILITY.md"), Path("figures/seed000/results.h5"),
              Path("figures/seed000/jitter-results.h5")),
             (Path("figures/paper_mnist/STABILITY.md"), Path("figures/paper_mnist/results.h5"),
              Path("figures/paper_mnist/jitter-results.h5")),
             (Path("figures/stability/STABILITY.md"), Path("figures/paper/results.h5"),
              Path("figures/stability/jitter-results.h5")),
             (Path("figures/connect/STABILITY.md"), Path("figures/connect/results.h5"),
              Path("figures/connect/jitter-results.h5")),
             (Path("figures/connect_mnist/STABILITY.md"),
              Path("figures/connect_mnist/results.h5"),
              Path("figures/connect_mnist/jitter-results.h5")),
             (Path("figures/align_mnist/STABILITY.md"),
              Path("figures/align_mnist/results.h5"),
              Path("figures/align_mnist/jitter-results.h5")),
             (Path("figures/seed004_mnist/STABILITY.md"),
              Path("figures/seed004_mnist/results.h5"),
              Path("figures/seed004_mnist/jitter-results.h5"))]


@pytest.mark.parametrize(("report", "a", "b"), STABILITY,
                         ids=[r.parent.name for r, _, _ in STABILITY])
def test_committed_stability_report_regenerates(report: Path, a: Path, b: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from landscape.experiments import stability

    monkeypatch.chdir(ROOT)
    committed = report.read_text()
    # the header names B where it was when the report was written
    named_b = re.search(r"vs `([^`]+)` \(B\)", committed).group(1)
    text = "\n".join(line.replace(str(b), named_b) for line in stability.report(a, b))
    assert text == committed


#: Committed reports and how to rerun them: (folder, experiment, overrides).
FULL = [("controls", "controls", {}), ("paper", "paper", {}),
        ("paper_at_regime", "figures/regimes/paper_at_regime.toml", {}),
        ("regimes", "regimes", {}), ("seed000_mnist1d", "seed000_mnist1d", {}),
        ("seed004", "seed004", {}),
        ("seed000", "seed000", {"data": "mnist", "data_root": "../shared/data"}),
        ("paper_mnist", "paper_mnist", {"data_root": "../shared/data"}),
        ("seed004_mnist", "seed004_mnist", {"data_root": "../shared/data"})]


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "name", "overrides"), FULL, ids=[f for f, _, _ in FULL])
def test_full_reproduction_gives_the_committed_numbers(
        folder: str, name: str, overrides: dict, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The full protocol (hours on 2 cores): the same per-seed numbers as committed.

    On another CPU float rounding may move them (DESIGN §5); on the machine that
    made them they are identical.
    """
    from landscape import experiments as ex

    monkeypatch.chdir(ROOT)
    committed = store.read_results(Path("figures") / folder / "results.h5")
    if overrides.get("data_root") and not Path(overrides["data_root"]).is_dir():
        pytest.skip(f"no data in {overrides['data_root']}")
    report = ex.reproduce(name, seeds=len(committed["seeds"]), out_dir=tmp_path / folder,
                          runs_dir=tmp_path / "runs", overrides=overrides or None,
                          log=lambda _: None)
    line = ex.compare_results(committed, store.read_results(report.parent / "results.h5"))
    assert line.startswith(("identical", "matches")), line
