"""Bad input to curves, alignment paths and the gap: one-line errors before any long work."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import landscape as ls
from landscape._errors import UserError
from landscape.evaluate import Evaluator
from landscape.params import ParamLayout
from landscape.paths import Curve, curve_profile, train_curve
from landscape.paths import curves as curves_mod
from landscape.paths.curves import curve_coefficients


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def case() -> dict:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 10, generator=g), torch.randint(0, 3, (120,), generator=g)
    xt, yt = torch.randn(40, 10, generator=g), torch.randint(0, 3, (40,), generator=g)
    a, b = _mlp(1), _mlp(2)
    layout = ParamLayout.from_module(a)
    return dict(x=x, y=y, xt=xt, yt=yt, a=a, b=b, m=_mlp(3), layout=layout,
                wa=layout.read(a), wb=layout.read(b))


def _no_training(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []

    def spy(*args: object, **kw: object) -> None:
        calls.append(args)
        raise AssertionError("trained before checking the data")

    monkeypatch.setattr(curves_mod, "train_curve", spy)
    return calls


# =========================================================================== item 1
def test_connect_checks_the_test_data_before_training(case: dict, monkeypatch) -> None:
    _no_training(monkeypatch)
    bad = (torch.randn(20, 7), case["y"][:20])
    with pytest.raises(UserError, match=r"^test data: the model cannot take inputs of "
                                        r"shape \(20, 7\)") as e:
        ls.connect(case["m"], case["a"], case["b"], (case["x"], case["y"]), bad, epochs=3)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^test data: the loss .*class targets must lie "
                                        r"in 0..2"):
        ls.connect(case["m"], case["a"], case["b"], (case["x"], case["y"]),
                   (case["xt"], case["yt"] + 5), epochs=3)


def test_connect_still_gives_the_numbers_of_training_then_profiling(case: dict) -> None:
    res = ls.connect(case["m"], case["wa"], case["wb"], (case["x"], case["y"]),
                     (case["xt"], case["yt"]), epochs=2, points=5)
    cfg = ls.ConnectConfig().replace(epochs=2, points=5)
    st = train_curve(case["m"], Curve.on_segment("bezier", case["wa"], case["wb"], 1),
                     (case["x"], case["y"]), cfg, wd=0.0)
    assert torch.equal(res.curve.bends, st.curve.bends)
    ev = Evaluator(case["m"], (case["x"], case["y"]), (case["xt"], case["yt"]))
    prof = curve_profile(ev, st.curve, 5)
    for k, v in prof.metrics.items():
        np.testing.assert_array_equal(res.profile.metrics[k], v)
    assert res.profile.metrics["test_err"].shape == (5,)


def test_align_paths_checks_the_test_data_before_aligning(case: dict,
                                                         monkeypatch) -> None:
    align_mod = importlib.import_module("landscape.paths.align")

    def spy(*a: object, **k: object) -> None:
        raise AssertionError("aligned before checking the data")

    monkeypatch.setattr(align_mod, "align", spy)
    with pytest.raises(UserError, match=r"^test data: the model cannot take inputs of "
                                        r"shape \(20, 7\)"):
        ls.align_paths(case["a"], case["b"], (case["x"], case["y"]),
                       (torch.randn(20, 7), case["y"][:20]))


# =========================================================================== item 2
def test_training_with_misfit_inputs_is_the_evaluation_paths_line(case: dict) -> None:
    bad = (torch.randn(120, 7), case["y"])
    c = Curve.on_segment("bezier", case["wa"], case["wb"])
    with pytest.raises(UserError, match=r"^the model cannot take inputs of shape "
                                        r"\(120, 7\) \(float32\): mat1"):
        train_curve(case["m"], c, bad, ls.ConnectConfig(batch_size=200))
    with pytest.raises(UserError, match=r"^train data: the model cannot take inputs"):
        ls.connect(case["m"], case["a"], case["b"], bad, epochs=1)


# =========================================================================== item 3
def test_non_finite_endpoints_and_bad_wd_are_refused_before_training(case: dict) -> None:
    wn = case["wa"].clone()
    wn[3] = math.nan
    with pytest.raises(UserError, match=r"^endpoint a has 1 NaN/inf weight\(s\) of 227;"):
        ls.connect(case["m"], wn, case["b"], (case["x"], case["y"]), epochs=1)
    c = Curve.on_segment("bezier", case["wa"], wn)
    with pytest.raises(UserError, match=r"^the curve's end \(endpoint b\) has 1 NaN"):
        train_curve(case["m"], c, (case["x"], case["y"]))
    good = Curve.on_segment("bezier", case["wa"], case["wb"])
    for wd in (-1.0, math.nan):
        with pytest.raises(UserError, match=r"wd \(--wd\) must be >= 0"):
            train_curve(case["m"], good, (case["x"], case["y"]), wd=wd)
    cfg = ls.ConnectConfig(epochs=1)
    s1 = train_curve(case["m"], good, (case["x"], case["y"]), cfg, wd=1e-2)
    s2 = train_curve(case["m"], good, (case["x"], case["y"]), cfg.replace(wd=1e-2))
    assert torch.equal(s1.curve.bends, s2.curve.bends)
    assert s1.history["loss"] == s2.history["loss"]


# =========================================================================== item 4
def test_line_gap_refuses_a_grid_that_is_not_increasing(case: dict) -> None:
    ev = Evaluator(case["m"], (case["x"], case["y"]), (case["xt"], case["yt"]))
    with pytest.raises(TypeError, match=r"^line_gap takes the line coordinates t as a "
                                        r"sequence, got the single value 21;"):
        ls.line_gap(ev, case["wa"], case["wb"], 21)
    for bad in ([0.0, 1.0, 0.5], [0.0, 0.0, 1.0], [0.5], [[0.0, 1.0]], [0.0, math.inf]):
        with pytest.raises(UserError, match=r"^line_gap needs t as a 1-D increasing "
                                            r"sequence of at least 2 distinct finite"):
            ls.line_gap(ev, case["wa"], case["wb"], bad)
    t = np.linspace(-0.5, 1.5, 5)
    g = ls.line_gap(ev, case["wa"], case["wb"], t)
    for i, ti in enumerate(t):
        w = (case["wa"].double() + ti * (case["wb"].double() - case["wa"].double()))
        m = ev.evaluate(w.float())
        assert g.metrics["test_err"][i] == m["test"].err
    assert g.shift.t_test in t or t[0] < g.shift.t_test < t[-1]


def test_line_gap_of_a_regressor_keeps_its_metrics_with_a_nan_shift(case: dict) -> None:
    g = torch.Generator().manual_seed(1)
    yr, ytr = torch.randn(120, 3, generator=g), torch.randn(40, 3, generator=g)
    ev = Evaluator(case["m"], (case["x"], yr), (case["xt"], ytr), loss=nn.MSELoss())
    t = np.linspace(0.0, 1.0, 3)
    res = ls.line_gap(ev, case["wa"], case["wb"], t)
    assert math.isnan(res.shift.t_test)
    assert math.isnan(res.shift.shift)
    assert res.shift.t_train == ls.gap.minimum_location(t, res.metrics["train_loss"])
    mid = ev.evaluate(((case["wa"].double() + case["wb"].double()) / 2).float())
    assert res.metrics["test_loss"][1] == mid["test"].loss
    assert np.isnan(res.metrics["test_err"]).all()


def test_train_test_shift_refuses_a_bad_distance() -> None:
    t = np.linspace(-0.5, 1.5, 21)
    s = ls.train_test_shift(t, (t - 0.8) ** 2, (t - 1.1) ** 2, distance=2.0)
    assert s.shift == pytest.approx(0.6)
    for d in (-2.0, math.nan, 0.0):
        with pytest.raises(UserError, match=r"^distance is the L2 length .* must be "
                                            r"finite and > 0"):
            ls.train_test_shift(t, (t - 0.8) ** 2, (t - 1.1) ** 2, distance=d)
    with pytest.raises(UserError, match=r"^train_test_shift needs t as a 1-D increasing"):
        ls.train_test_shift(t[::-1], t, t, distance=1.0)


def test_trajectory_gaps_checks_shapes_before_evaluating(case: dict) -> None:
    ev = Evaluator(case["m"], (case["x"], case["y"]), (case["xt"], case["yt"]))
    W = torch.stack([case["wa"], case["wb"]]).numpy()
    with pytest.raises(UserError, match=r"^trajectory_gaps needs one row of buffers per "
                                        r"row of weights \(2\), got buffers of shape "
                                        r"\(1, 0\)"):
        ls.trajectory_gaps(ev, W, np.zeros((1, 0), dtype=np.float32))
    with pytest.raises(UserError, match=r"^trajectory_gaps needs weights of shape "
                                        r"\(points, parameters\) with at least one point, "
                                        r"got \(0, 227\)"):
        ls.trajectory_gaps(ev, W[:0])
    out = ls.trajectory_gaps(ev, W)
    assert out["test_err"][1] == ev.evaluate(case["wb"])["test"].err


# =========================================================================== item 5
def test_curve_construction_errors_are_one_line(case: dict) -> None:
    wa, wb = case["wa"], case["wb"]
    with pytest.raises(UserError, match=r"^curve endpoints have shapes \(227,\) and "
                                        r"\(226,\); pass two flat weight vectors"):
        Curve.on_segment("bezier", wa, wb[:-1])
    for a, b, got in ((case["a"], case["b"], "Sequential"),
                      (wa.tolist(), wb.tolist(), "list")):
        with pytest.raises(TypeError, match=rf"^the curve's start must be a flat weight "
                                            rf"vector \(a 1-D tensor\), got {got}; for a "
                                            r"model pass ParamLayout.from_module"):
            Curve.on_segment("bezier", a, b)
    with pytest.raises(TypeError, match=r"^the curve's bends must be a \(K, n\) tensor"):
        Curve("bezier", wa, wb, [[0.0]])
    for bends in (2.5, True):
        with pytest.raises(TypeError, match=r"^the number of bends must be an integer >= 0"):
            Curve.on_segment("bezier", wa, wb, bends)
    c = Curve.on_segment("polychain", wa, wb, np.int64(2))
    torch.testing.assert_close(c.bends[1], wa + (2 / 3) * (wb - wa), rtol=0, atol=1e-6)
    for kind, bends in (("polychain", -1), ("bezier", -2)):
        with pytest.raises(UserError, match=rf"^the number of bends must be >= 0, got {bends}$"):
            curve_coefficients(kind, bends, 0.3)
    assert curve_coefficients("polychain", 0, 0.3) == pytest.approx([0.7, 0.3])


# =========================================================================== item 6
def test_profile_points_and_plane_steps_are_ints_and_arguments_in_order(case: dict) -> None:
    ev = Evaluator(case["m"], (case["x"], case["y"]), (case["xt"], case["yt"]))
    c = Curve.on_segment("bezier", case["wa"], case["wb"])
    ref = curve_profile(ev, c, 5)
    got = curve_profile(ev, c, np.int64(5))
    np.testing.assert_array_equal(got.t, [0.0, 0.25, 0.5, 0.75, 1.0])
    for k, v in ref.metrics.items():
        np.testing.assert_array_equal(got.metrics[k], v)
    for t in (5.0, True):
        with pytest.raises(TypeError, match=rf"^t must be a number of points \(an int\) "
                                            rf"or the values of t, got {t!r}"):
            curve_profile(ev, c, t)
    bent = c.with_bends(c.bends + 0.5)
    with pytest.raises(TypeError, match=r"^steps must be an int >= 1 .*got 2.5$"):
        ls.curve_plane_grid(bent, steps=2.5)
    np.testing.assert_array_equal(ls.curve_plane_grid(bent, steps=np.int64(2)).x,
                                  ls.curve_plane_grid(bent, steps=2).x)
    with pytest.raises(TypeError, match=r"^curve_profile's first argument must be an "
                                        r"Evaluator, got Sequential"):
        curve_profile(case["m"], c)
    with pytest.raises(TypeError, match=r"^train_curve's first argument must be the "
                                        r"model \(a torch.nn.Module\), got Curve"):
        train_curve(c, case["m"], (case["x"], case["y"]))
    with pytest.raises(TypeError, match=r"^connect's model must be the network .* got "
                                        r"str$"):
        ls.connect("net", case["a"], case["b"], (case["x"], case["y"]))


# =========================================================================== item 7
def test_curve_and_alignment_plots_name_the_problem_and_open_no_figure(
        tiny_run, tmp_path) -> None:
    import matplotlib.pyplot as plt

    from landscape import store
    from landscape.cli import main

    missing = tmp_path / "missing.h5"
    with pytest.raises(UserError, match=r"missing.h5 does not exist; pass"):
        ls.plot_curve_profiles(missing, "bezier")
    out = tmp_path / "curves.h5"
    assert main(["connect", str(tiny_run), str(tiny_run), "--solution-b", "swa",
                 "--epochs", "1", "--points", "3", "--batch-size", "50", "--quiet",
                 "--out", str(out)]) == 0
    before = plt.get_fignums()
    with pytest.raises(UserError, match=r"^unknown profile metric 'acc'; use one of "
                                        r"train_loss, train_ce, train_err, test_loss"):
        ls.plot_curve_profiles(out, "bezier", "acc")
    for levels in (0, -3, 2.5):
        with pytest.raises(UserError, match=r"^levels must be (an integer )?>= 2"):
            ls.plot_curve_plane(out, "bezier_plane", levels=levels)
    with pytest.raises(UserError, match=r"^no alignment 'nope' in .*curves.h5; it holds "
                                        r"no alignments: pass one of them, or make one "
                                        r"with `landscape align`$"):
        ls.plot_alignment(out, "nope")
    with pytest.raises(UserError, match=r"^no alignment 'nope'"):
        store.alignment_profiles(out, "nope")
    assert plt.get_fignums() == before
    fig, ax = ls.plot_curve_profiles(out, "bezier", "test_err")
    prof = store.read_profile(out, "bezier", "curve")
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(),
                                  100 * prof.metrics["test_err"])
    plt.close(fig)


# =========================================================================== item 8
def test_metric_gaps_refuses_accuracies_in_percent() -> None:
    good = {"train_loss": 0.1, "test_loss": 0.4, "train_acc": 0.95, "test_acc": 0.9}
    g = ls.metric_gaps(good)
    assert g["train_err"] == pytest.approx(0.05)
    assert g["err_gap"] == pytest.approx(0.05)
    nan = ls.metric_gaps({**good, "train_acc": math.nan, "test_acc": math.nan})
    assert math.isnan(nan["err_gap"])
    assert nan["loss_gap"] == pytest.approx(0.3)
    for k, v in (("train_acc", 95.0), ("test_acc", -0.1)):
        with pytest.raises(UserError, match=rf"^metric_gaps needs accuracies as fractions "
                                            rf"in \[0, 1\], got {k}={v!r}; divide"):
            ls.metric_gaps({**good, k: v})
