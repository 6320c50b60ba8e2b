"""The library core on a user's own model, DataLoader and loss.

Batched curvature against full-batch and dense float64 references, streaming data
against in-memory tensors, a regression model through every surface and measure,
the public API and the README example, and the one-line errors of bad input.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import landscape as ls
from landscape._errors import UserError
from landscape.evaluate import EmpiricalRisk, Evaluator
from landscape.sharpness import specs

F64 = torch.float64
README = Path(__file__).resolve().parents[1] / "README.md"


def _bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 3, 5, stride=2), nn.BatchNorm1d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 8, 4)).double()
    with torch.no_grad():  # non-trivial statistics, held fixed (eval mode)
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _cls_data(n: int = 45, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 20, generator=g, dtype=F64), torch.randint(0, 4, (n,),
                                                                         generator=g)


def _reference_loss(net: nn.Module, x: Tensor, y: Tensor):
    """The mean cross-entropy of all samples as one graph (the test's own reference)."""
    layout = ls.ParamLayout.from_module(net)
    buffers = {k: v.clone() for k, v in net.named_buffers()}

    def f(theta: Tensor) -> Tensor:
        out = torch.func.functional_call(net, {**layout.unflatten(theta), **buffers}, (x,))
        return F.cross_entropy(out, y)

    return f, layout.read(net).double()


# =========================================================================== curvature
def test_batched_hvp_equals_full_batch_to_1e10() -> None:
    net = _bn_cnn()
    x, y = _cls_data(45)
    f, theta = _reference_loss(net, x, y)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(theta.numel(), generator=g, dtype=F64)
    full = torch.autograd.functional.hvp(f, theta, v)[1]
    for batch in (45, 16, 7):  # one batch, ragged batches
        risk = EmpiricalRisk(net, DataLoader(TensorDataset(x, y), batch_size=batch))
        np.testing.assert_allclose(risk.hvp(theta)(v).numpy(), full.numpy(), rtol=0,
                                   atol=1e-10)
        # the graphs of a small stream kept between products: the same products, and
        # the loader is not read again
        kept = EmpiricalRisk(net, DataLoader(TensorDataset(x, y), batch_size=batch),
                             graph_samples=45)
        hvp = kept.hvp(theta)
        kept.data = None  # any further pass over the data would fail
        for w in (v, 2 * v - 1):
            np.testing.assert_allclose(hvp(w).numpy(),
                                       torch.autograd.functional.hvp(f, theta, w)[1],
                                       rtol=0, atol=1e-10)
        val, grad = risk.value_and_grad(theta)
        assert val == pytest.approx(float(f(theta)), rel=1e-12)
        np.testing.assert_allclose(grad.numpy(), torch.func.grad(f)(theta).numpy(),
                                   rtol=0, atol=1e-12)


def test_top_eigenvalue_of_bn_cnn_through_a_ragged_dataloader() -> None:
    net = _bn_cnn()
    x, y = _cls_data(45)
    f, theta = _reference_loss(net, x, y)
    dense = torch.func.hessian(f)(theta).numpy()
    exact = np.linalg.eigvalsh(0.5 * (dense + dense.T))[::-1]
    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # 16 + 16 + 13
    r = ls.measure(net, loader, "hessian", dtype="float64", top_k=3, eig_tol=1e-10,
                   smallest=True)
    np.testing.assert_allclose(r.eigenvalues, exact[:3], rtol=1e-8)
    assert r.samples == 45
    assert r.lambda_min == pytest.approx(exact[-1], rel=1e-2)


def test_hessian_computes_the_top_k_only_unless_asked_and_refuses_k_above_n() -> None:
    """The measure's name is its work: λ_min (tens to thousands of HVPs) is opt-in, and
    top_k above the parameter count is a one-line error, not a silent clamp."""
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))  # 43 parameters
    x, y = torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), \
        torch.arange(30) % 3
    r = ls.measure(net, (x, y), "hessian", dtype="float64", top_k=1)
    assert r.n_hvp_min == 0
    assert math.isnan(r.lambda_min)
    assert r.eigenvalues.shape == (1,)
    assert "lambda_min" not in r.line()
    full = ls.measure(net, (x, y), "hessian", dtype="float64", top_k=1, smallest=True)
    assert full.n_hvp_min > 0
    assert full.lambda_min < full.lambda_max
    assert full.lambda_max == pytest.approx(r.lambda_max, rel=1e-6)
    with pytest.raises(ValueError, match=r"top_k = 44 exceeds the model's 43 parameters"):
        ls.measure(net, (x, y), "hessian", top_k=44)
    assert ls.measure(net, (x, y), "hessian", dtype="float64",
                      top_k=43).eigenvalues.shape == (43,)


def test_streaming_metrics_equal_in_memory_metrics() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(70, 6), torch.randint(0, 3, (70,))
    xt, yt = torch.randn(30, 6), torch.randint(0, 3, (30,))
    mem = Evaluator(net, (x, y), (xt, yt), batch_size=16)
    stream = Evaluator(net, DataLoader(TensorDataset(x, y), batch_size=16),
                       DataLoader(TensorDataset(xt, yt), batch_size=16))
    theta = mem.layout.read(net)
    a, b = mem.evaluate(theta), stream.evaluate(theta)
    for s in ("train", "test"):
        assert a[s].n == b[s].n
        assert a[s].loss == pytest.approx(b[s].loss, rel=1e-6)
        assert a[s].acc == b[s].acc
        assert a[s].loss_sem == pytest.approx(b[s].loss_sem, rel=1e-5)


# =========================================================================== regression
class _Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def test_linear_regression_mse_has_the_closed_form_hessian() -> None:
    """MSE of a linear model: H = 2 XᵀX / (N d) per output, exact through a loader."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=g, dtype=F64)
    y = torch.randn(50, 1, generator=g, dtype=F64)
    net = nn.Linear(4, 1, bias=False).double()
    r = ls.measure(net, DataLoader(TensorDataset(x, y), batch_size=12), "hessian",
                   loss=nn.MSELoss(), dtype="float64", top_k=2, eig_tol=1e-12)
    H = (2 * x.T @ x / 50).numpy()
    np.testing.assert_allclose(r.eigenvalues, np.linalg.eigvalsh(H)[::-1][:2], rtol=1e-10)
    tr = ls.measure(net, (x, y), "trace", loss=nn.MSELoss(), dtype="float64",
                    trace_samples=200)
    assert tr.trace == pytest.approx(np.trace(H), abs=4 * tr.trace_sem + 1e-9)


def test_regression_goes_through_every_surface_and_measure(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Regressor()
    x, y = torch.randn(40, 3), torch.randn(40, 2)
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    test = (torch.randn(20, 3), torch.randn(20, 2))
    mse = nn.MSELoss()
    params = {"top_k": 2, "smallest": True, "trace_samples": 5, "slq_steps": 6, "eps_maxiter": 2,
              "ascent_steps": 2, "avg_samples": 3, "pacbayes_samples": 2,
              "pacbayes_metric": "loss", "pacbayes_target": 0.05, "directions": 3}
    out = ls.measure(model, train, "all", loss=mse, **params)
    assert set(out) == set(specs())
    base = float(mse(model(x), y).detach())
    for name, r in out.items():
        assert r.samples == 40, name
        for h in specs()[name].headline:
            assert math.isfinite(r.scalars[h.key]), (name, h.key)
    assert out["sam"].loss == pytest.approx(base, rel=1e-5)  # the loss it measured
    surfaces = {
        "random": ls.random_surface(model, train, test, grid="-1:1:3", loss=mse),
        "line": ls.line_surface(model, model, _Regressor(), train, test, grid="0:1:3",
                                loss=mse),
        "plane": ls.plane_surface(model, model, _Regressor(), _Regressor(), train, test,
                                  grid="-1:1:3", grid_y="-1:1:2", loss=mse),
        "pca": ls.pca_surface(model, [_Regressor() for _ in range(4)] + [model], train,
                              test, grid="-1:1:3", grid_y="-1:1:3", loss=mse),
    }
    for kind, s in surfaces.items():
        assert s.complete, kind
        assert np.isfinite(s.values["train_loss"]).all(), kind
        assert np.isnan(s.values["train_acc"]).all(), kind  # no accuracy for regression
        ls.save(s, tmp_path / "reg.h5", kind)
    centre = surfaces["random"].values["train_loss"][1, 1]  # (0, 0): the model itself
    assert centre == pytest.approx(base, rel=1e-5)
    line = surfaces["line"].values["test_loss"][0]  # t = 0: the model
    assert line == pytest.approx(float(mse(model(test[0]), test[1]).detach()), rel=1e-5)
    assert ls.load(tmp_path / "reg.h5", "plane").grid.shape == (3, 2)


def test_all_on_a_regressor_runs_what_applies_and_says_what_it_skips() -> None:
    """Default parameters: PAC-Bayes bounds the 0-1 error, which a regressor lacks; "all"
    skips it in one warning line and runs every other measure; naming it raises that
    line; with the loss as its metric it runs."""
    torch.manual_seed(0)
    model = _Regressor()
    x, y = torch.randn(40, 3), torch.randn(40, 2)
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    fast = {"top_k": 1, "trace_samples": 3, "slq_steps": 4, "eps_maxiter": 1,
            "ascent_steps": 1, "avg_samples": 2, "pacbayes_samples": 2, "directions": 2}
    with pytest.warns(UserWarning, match=r"^measure 'pacbayes' skipped: the 0-1 error "
                      r"needs a classifier .* pacbayes_metric='loss'") as rec:
        out = ls.measure(model, train, "all", loss=nn.MSELoss(), **fast)
    assert len([w for w in rec if "skipped" in str(w.message)]) == 1
    assert set(out) == set(specs()) - {"pacbayes"}
    base = float(nn.MSELoss()(model(x), y).detach())
    assert out["sam"].loss == pytest.approx(base, rel=1e-5)
    with pytest.raises(ValueError, match=r"^pacbayes: the 0-1 error needs a classifier"):
        ls.measure(model, train, "pacbayes", loss=nn.MSELoss(), **fast)
    r = ls.measure(model, train, "pacbayes", loss=nn.MSELoss(), pacbayes_metric="loss",
                   **fast)
    assert r.metric == "loss"
    assert r.sigma > 0


def test_named_measures_that_do_not_apply_are_refused_before_any_is_computed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A list naming PAC-Bayes (0-1 error) on a regressor raised only after computing the
    measures before it, losing them; now no measure runs and the line names it and the
    fix."""
    from landscape.sharpness import _runner

    ran: list[str] = []
    real = _runner.run_measure

    def spy(ctx, name, *args, **kwargs):
        ran.append(name)
        return real(ctx, name, *args, **kwargs)

    monkeypatch.setattr(_runner, "run_measure", spy)
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randn(40, 2)
    with pytest.raises(UserError, match=r"^pacbayes: the 0-1 error needs a classifier .*"
                       r"pass pacbayes_metric='loss' \(--pacbayes-metric loss\)") as e:
        ls.measure(_Regressor(), (x, y), ["hessian", "trace", "pacbayes"],
                   loss=nn.MSELoss(), top_k=1, trace_samples=3)
    assert "\n" not in str(e.value)
    assert ran == []
    out = ls.measure(_Regressor(), (x, y), ["hessian", "pacbayes"], loss=nn.MSELoss(),
                     top_k=1, pacbayes_metric="loss", pacbayes_samples=2)
    assert ran == ["hessian", "pacbayes"]
    assert out["pacbayes"].metric == "loss"


@pytest.mark.parametrize("case", ["targets out of range", "wrong input shape",
                                  "targets of another shape"])
def test_a_model_and_data_that_do_not_fit_give_one_line(case: str) -> None:
    """Torch's own IndexError/RuntimeError from deep inside becomes one line naming the
    shapes (and the classes) and the fix, from every public call."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(10, 12), torch.arange(10) % 3
    want = {"targets out of range": (x, y + 2, r"class targets must lie in 0\.\.2 for a "
                                     r"model with 3 outputs"),
            "wrong input shape": (torch.randn(10, 1, 28, 28), y,
                                  r"the model cannot take inputs of shape \(10, 1, 28, 28\)"),
            "targets of another shape": (x, torch.rand(10, 5),
                                         r"the loss cannot take outputs of shape \(10, 3\) "
                                         r"and targets of shape \(10, 5\) \(float32\)")}
    xs, ys, match = want[case]
    for call in (lambda: ls.measure(net, (xs, ys), "hessian", top_k=1),
                 lambda: ls.random_surface(net, (xs, ys), grid="-1:1:3"),
                 lambda: ls.Evaluator(net, (xs, ys)).metrics(["train"])):
        with pytest.raises(ValueError, match=match) as e:
            call()
        assert isinstance(e.value, UserError)
        assert "\n" not in str(e.value)


def test_average_checkpoints_names_the_keys_of_a_foreign_state_dict() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5))
    with pytest.raises(ValueError, match=r"^checkpoint 1 is not a state of this model: "
                       r"missing 0\.weight, 0\.bias, 2\.weight \(\+1 more\); unexpected "
                       r"module\.0\.weight"):
        ls.average_checkpoints(net, [net.state_dict(), {f"module.{k}": v for k, v in
                                                        net.state_dict().items()}])
    with pytest.raises(ValueError, match=r"^checkpoint 0 does not fit this model: 2\.weight "
                       r"has shape \(5, 4\), the model's \(2, 4\)"):
        ls.average_checkpoints(net, [other])
    avg = ls.average_checkpoints(net, [net.state_dict(), net])
    torch.testing.assert_close(avg.module[2].weight, net[2].weight)


# =========================================================================== API
def test_public_api_lists_the_stages() -> None:
    names = set(ls.__all__)
    for stage in ({"Evaluator", "as_batches", "EmpiricalRisk"},
                  {"random_direction", "normalize_direction", "line_direction",
                   "plane_basis", "pca_directions"},
                  {"random_surface", "line_surface", "plane_surface", "pca_surface"},
                  {"measure", "measures", "hessian_top_eigenvalues", "width_ratio"},
                  {"line_gap", "trajectory_gaps"}, {"connect", "curve_profile", "Curve"},
                  {"average_checkpoints"},
                  {"save", "load", "plot_surface_2d", "plot_width_distribution"}):
        assert stage <= names, stage - names
    for n in ls.__all__:
        assert getattr(ls, n) is not None, n


def test_readme_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    text = README.read_text()
    section = text[text.index("## Your own model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert (tmp_path / "mine.h5").is_file()
    from matplotlib.figure import Figure

    assert isinstance(ns["fig"], Figure)
    assert ls.load(tmp_path / "mine.h5", "random").complete


def test_readme_run_file_example_runs_with_smaller_sizes(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """The README's run-file example, as written but for the sizes (so it runs in seconds)."""
    text = README.read_text()
    section = text[text.index("## Run files from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shrink = {'data="mnist1d", epochs=40, swa_start=30':
              'data="mnist1d", num_samples=300, epochs=3, swa_start=2',
              '"epoch:15"': '"epoch:1"',
              '["hessian", "trace", "width"])':
              '["hessian", "trace", "width"], params={"trace_samples": 3, "directions": 3})'}
    for old, small in shrink.items():
        assert old in code, old
        code = code.replace(old, small)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    with h5py.File(tmp_path / "runs" / "mine.h5", "r") as f:
        (surface,) = f["surfaces"].values()
        assert surface.attrs["kind"] == "plane"
        for sol in ("sgd", "swa"):
            assert {"hessian", "trace", "width"} <= set(f[f"measures/{sol}"])
        assert "compare" in f["measures"]
        assert "gap" in f["measures"]
    assert ns["gap"]["line"]


def test_average_checkpoints_is_the_mean_with_recomputed_bn() -> None:
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(3)]
    x = torch.randn(64, 3)
    avg = ls.average_checkpoints(nets[0], [nets[0], nets[1].state_dict(), nets[2]],
                                 bn_data=(x, torch.zeros(64)))
    w = torch.stack([n[0].weight.detach() for n in nets]).mean(0)
    torch.testing.assert_close(avg.module[0].weight.detach(), w, rtol=0, atol=1e-7)
    h = avg.module[0](x).detach()
    torch.testing.assert_close(avg.module[1].running_mean, h.mean(0), rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="pass bn_data"):
        ls.average_checkpoints(nets[0], nets)


def test_average_checkpoints_of_misfit_data_or_a_state_dict_model_is_one_line() -> None:
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    y = torch.zeros(8)
    for model, data, err, match in (
            (nets[0], (torch.randn(8, 5), y), UserError,
             r"^the model cannot take inputs of shape \(8, 5\) \(float32\): mat1 and mat2 "
             r"shapes cannot be multiplied \(8x5 and 3x4\); give data whose inputs fit"),
            (nets[0].state_dict(), (torch.randn(8, 3), y), TypeError,
             r"^model must be a torch\.nn\.Module of the checkpoints' architecture, got "
             r"OrderedDict; pass a network")):
        with pytest.raises(err, match=match) as e:
            ls.average_checkpoints(model, nets, bn_data=data)
        assert isinstance(e.value, UserError)
        assert "\n" not in str(e.value)
    # with data that fits, update_bn runs through the check as before
    x = torch.randn(16, 3)
    avg = ls.average_checkpoints(nets[0], nets, bn_data=(x, torch.zeros(16)))
    h = avg.module[0](x).detach()
    torch.testing.assert_close(avg.module[1].running_mean, h.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(avg.module[1].running_var, h.var(0), rtol=0, atol=1e-6)


# =========================================================================== bad input
def _net() -> nn.Module:
    return nn.Linear(4, 3)


class _Stray(nn.Module):
    """A model with a plain tensor attribute, which .to(device) leaves behind."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.shift = torch.ones(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x) + self.shift


def _xy(n: int = 8) -> tuple[Tensor, Tensor]:
    return torch.randn(n, 4), torch.randint(0, 3, (n,))


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ls.measure(_net(), [{"x": torch.zeros(2, 4)}], "trace"),
     "not an (inputs, targets) pair"),
    (lambda: ls.measure(_net(), [_xy()], "trace", loss=lambda o, y: (o - 0).sum(1)),
     "not a scalar"),
    (lambda: ls.measure(nn.ReLU(), [_xy()], "trace"), "no trainable parameters"),
    (lambda: Evaluator(_net(), DataLoader(TensorDataset(*_xy(0)), batch_size=4)
                       ).metrics(["train"]), "yielded no batch"),
    (lambda: ls.measure(_net(), iter([_xy()]), "trace"), "one-shot iterator"),
    (lambda: ls.measure(_net(), (torch.full((8, 4), math.nan), _xy()[1]), "trace"),
     "Hessian-vector product at the measured solution is not finite"),
    (lambda: ls.measure(_net(), (torch.full((8, 4), math.nan), _xy()[1]), "sam"),
     "loss at the measured solution is nan"),
    (lambda: Evaluator(_Stray().to("meta"), _xy()).metrics(["train"]), "different devices"),
])
def test_bad_input_is_one_line(make, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        make()
    assert "\n" not in str(e.value)


def test_a_shuffling_loader_is_refused_by_curvature() -> None:
    loader = DataLoader(TensorDataset(*_xy(64)), batch_size=8, shuffle=True)
    with pytest.raises(UserError, match="shuffle=False"):
        ls.measure(_net(), loader, "hessian", top_k=2)


def test_two_ranks_give_the_eigenvalues_of_one_rank(tiny_run: Path, tmp_path: Path) -> None:
    """Under torchrun the HVP's batches are split over 2 gloo ranks and summed."""
    import os
    import shutil
    import subprocess
    import sys

    import h5py

    from landscape.cli import main

    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    shutil.copyfile(tiny_run, one)
    shutil.copyfile(tiny_run, two)
    flags = ["--measures", "hessian,trace", "--dtype", "float64", "--samples", "200",
             "--eval-batch-size", "50", "--top-k", "3", "--eig-tol", "1e-10",
             "--trace-samples", "5", "--no-smallest", "--quiet"]
    assert main(["sharpness", str(one), *flags]) == 0
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "landscape",
                        "sharpness", str(two), *flags], capture_output=True, text=True,
                       timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(one) as a, h5py.File(two) as b:
        key = "measures/swa/hessian/eigenvalues"
        np.testing.assert_allclose(b[key][()], a[key][()], rtol=1e-8)
        assert b["measures/swa/trace"].attrs["trace"] == pytest.approx(
            a["measures/swa/trace"].attrs["trace"], rel=1e-12)


def test_measure_takes_a_torch_dtype_and_refuses_any_other_dtype() -> None:
    """``torch.float64`` computes in float64 and stores ``"float64"`` (it crashed after
    computing in float32); a dtype other than float32/float64 is a one-line error before
    any pass over the data (``"float16"`` ran float32 and stored the string)."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = _xy(16)
    by_torch = ls.measure(net, (x, y), "hessian", top_k=1, dtype=torch.float64,
                          eig_tol=1e-12)
    by_name = ls.measure(net, (x, y), "hessian", top_k=1, dtype="float64",
                         eig_tol=1e-12)
    assert by_torch.dtype == "float64"
    assert '"dtype": "float64"' in by_torch.params
    assert by_torch.lambda_max == by_name.lambda_max
    f, theta = _reference_loss(net.double(), x.double(), y)
    dense = torch.autograd.functional.hessian(f, theta)
    assert by_torch.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]),
                                                rel=1e-12)
    for bad, shown in [("float16", "'float16'"), ("double", "'double'"),
                       (torch.float16, "torch.float16")]:
        with pytest.raises(UserError, match=r"^dtype must be .*float32.*float64.*, got "
                           + re.escape(shown) + "$"):
            ls.measure(_net(), (x, y), "hessian", top_k=1, dtype=bad)


@pytest.mark.parametrize("criterion", [None, F.cross_entropy,
                                       partial(F.cross_entropy, label_smoothing=0.1)])
def test_cross_entropy_takes_soft_labels_but_not_regression_targets(criterion) -> None:
    """Float targets shaped like the output are class probabilities to cross-entropy;
    anything else (regression targets) gave a meaningless loss without a word."""
    x, _ = _xy(8)
    net = _net()
    out = net(x).detach()
    torch.manual_seed(0)
    soft = torch.softmax(torch.randn_like(out), 1)
    ce = criterion or F.cross_entropy
    ev = Evaluator(net, (x, soft), loss=criterion)
    assert ev.metrics(["train"])["train"].loss == pytest.approx(float(ce(out, soft)),
                                                                rel=1e-6)
    for bad in (torch.randn_like(out), 2 * soft, soft - 0.01):
        with pytest.raises(UserError, match=r"^cross-entropy got float targets shaped like "
                           r"the output \(8, 3\) that are not class probabilities.*"
                           r"loss=nn.MSELoss\(\)"):
            Evaluator(net, (x, bad), loss=criterion).metrics(["train"])
    mse = Evaluator(net, (x, 2 * soft), loss=nn.MSELoss())  # regression: fine
    assert mse.metrics(["train"])["train"].loss == pytest.approx(
        float(F.mse_loss(out, 2 * soft)), rel=1e-6)


@pytest.mark.parametrize("criterion", [nn.CrossEntropyLoss(reduction="sum"),
                                       partial(F.cross_entropy, reduction="sum")])
def test_a_summing_loss_is_refused_in_one_line(criterion) -> None:
    """The measures and surfaces are of the mean loss over samples; a criterion with
    reduction='sum' was silently measured as a mean."""
    x, y = _xy(8)
    for call in (lambda: ls.measure(_net(), (x, y), "hessian", top_k=1, loss=criterion),
                 lambda: ls.random_surface(_net(), (x, y), grid="-1:1:3", loss=criterion),
                 lambda: Evaluator(_net(), (x, y), loss=criterion).metrics(["train"])):
        with pytest.raises(UserError, match=r"^the loss has reduction='sum'.*; pass a "
                           r"criterion with reduction='mean'") as e:
            call()
        assert "\n" not in str(e.value)
    net = _net()
    mean = Evaluator(net, (x, y), loss=nn.CrossEntropyLoss(reduction="mean"))
    assert mean.metrics(["train"])["train"].loss == pytest.approx(
        float(F.cross_entropy(net(x), y).detach()), rel=1e-6)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ls.measure(_net(), _xy(), "hessian", top_k=0), "top_k (--top-k) must be > 0, got 0"),
    (lambda: ls.measure(_net(), _xy(), "trace", trace_samples=2),
     "trace_method='hutchpp' (--trace-method hutchpp) needs trace_samples (--trace-samples) "
     ">= 3"),
    (lambda: ls.measure(_net(), _xy(), "hessian", eval_batch_size=0),
     "eval_batch_size (--eval-batch-size) must be > 0, got 0"),
    (lambda: ls.random_surface(_net(), _xy(), dim=3), "dim (--dim) must be 1 or 2, got 3"),
])
def test_parameter_errors_name_the_keyword_and_the_flag(make, message: str) -> None:
    """A check that serves the Python API and the CLI names both (it named the flag only)."""
    with pytest.raises(UserError) as e:
        make()
    assert str(e.value) == message


def test_an_evaluator_evaluates_the_splits_it_has_by_default() -> None:
    """A train-only evaluator's ``evaluate``/``metrics`` gave "no 'test' data" by default."""
    torch.manual_seed(0)
    net = _net()
    x, y = _xy(16)
    ev = ls.Evaluator(net, (x, y))
    m = ev.evaluate(ev.layout.read(net))
    assert list(m) == ["train"]
    with torch.no_grad():
        assert m["train"].loss == pytest.approx(float(F.cross_entropy(net(x), y)), rel=1e-6)
    assert list(ev.metrics()) == ["train"]
    both = ls.Evaluator(net, (x, y), _xy(8))
    assert list(both.evaluate(both.layout.read(net))) == ["train", "test"]
    with pytest.raises(UserError, match=r"^no 'test' data in this evaluator \(it has "
                       r"train\); pass test=\.\.\. when building it$"):
        ev.metrics(["train", "test"])
    with pytest.raises(UserError, match=r"^no 'test' data in this evaluator"):
        ls.trajectory_gaps(ev, ev.layout.read(net)[None])


def test_recomputing_bn_on_misfit_bn_data_is_one_line() -> None:
    """``bn=recompute`` runs ``update_bn`` through the checked forward (torch's
    "mat1 and mat2 shapes cannot be multiplied" came out raw); numbers unchanged."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    x, y = _xy(16)
    ev = Evaluator(net, (x, y), bn="recompute", bn_data=(torch.randn(10, 7), torch.zeros(10)))
    with pytest.raises(UserError, match=r"^the model cannot take inputs of shape \(10, 7\) "
                       r"\(float32\): mat1 and mat2 shapes cannot be multiplied \(10x7 and "
                       r"4x5\); give data whose inputs fit") as e:
        ev.set_point(ev.layout.read(net))
    assert "\n" not in str(e.value)
    ev = Evaluator(net, (x, y), bn="recompute")
    m = ev.evaluate(ev.layout.read(net))["train"]
    h = net[0](x).detach()
    torch.testing.assert_close(net[1].running_mean, h.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(net[1].running_var, h.var(0), rtol=0, atol=1e-6)
    with torch.no_grad():
        assert m.loss == pytest.approx(float(F.cross_entropy(net(x), y)), rel=1e-6)
    assert not net.training



def test_evaluator_checks_l2_and_bn_samples_and_uses_them_in_range() -> None:
    """``l2='a'`` raised float()'s error; ``bn_samples`` 0 or -5 were accepted silently."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    x, y = _xy(16)
    for kwargs, err, message in [
            ({"l2": "a"}, TypeError,
             "l2 (--l2) must be a number >= 0 (the weight decay coefficient), got 'a'"),
            ({"l2": -0.1}, ValueError, "l2 (--l2) must be a finite number >= 0 (the weight "
             "decay coefficient), got -0.1"),
            ({"bn_samples": 0}, ValueError, "bn_samples must be >= 1 (None: all of "
             "bn_data), got 0; recomputing BN statistics needs samples"),
            ({"bn_samples": -5}, ValueError, "bn_samples must be >= 1 (None: all of "
             "bn_data), got -5; recomputing BN statistics needs samples"),
            ({"bn_samples": 2.5}, TypeError,
             "bn_samples must be an int >= 1 or None (all of bn_data), got 2.5")]:
        with pytest.raises(err) as e:
            Evaluator(net, (x, y), **kwargs)
        assert isinstance(e.value, UserError)
        assert str(e.value) == message
    ev = Evaluator(net, (x, y), l2=np.float32(0.5), bn_samples=np.int64(6))
    m = ev.evaluate(ev.layout.read(net))["train"]
    h = net[0](x[:6]).detach()
    torch.testing.assert_close(net[1].running_mean, h.mean(0), rtol=0, atol=1e-6)
    sq = float(ev.layout.read(net).double().pow(2).sum())
    with torch.no_grad():
        ce = float(F.cross_entropy(net(x), y))
    assert m.loss == pytest.approx(ce + 0.25 * sq, rel=1e-6)


def test_measure_checks_model_device_theta_and_seed_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-module model (AttributeError from model_device), an unknown device string
    (torch's "Invalid device string"), CUDA without a GPU ("Found no NVIDIA driver"), a
    numpy or state-dict theta (AttributeError) and seed=None (int()'s TypeError) are
    one-line errors naming the fix; a tensor theta measures as before."""
    torch.manual_seed(0)
    net = _net()
    x, y = _xy(16)
    theta = ls.ParamLayout.from_module(net).read(net)
    cases = [
        ({"model": "not a model"}, TypeError,
         "model must be a torch.nn.Module (the trained network), got str"),
        ({"device": "gpu0"}, ValueError,
         "device (--device) 'gpu0' is not a device torch knows; use cpu, cuda or cuda:N"),
        ({"theta": theta.numpy()}, TypeError,
         "theta must be a flat torch tensor of the model's 15 entries, got ndarray; "
         "convert it with torch.as_tensor(...)"),
        ({"theta": net.state_dict()}, TypeError,
         "theta must be a flat torch tensor of the model's 15 entries, got OrderedDict; "
         "load it into the model and pass ParamLayout.from_module(model).read(model)"),
        ({"seed": None}, TypeError, "seed (--seed) must be an int (e.g. 0), got None"),
        ({"device": "cuda"}, ValueError, "device='cuda' (--device cuda) was given but no "
         "CUDA GPU is available; use device='cpu' (--device cpu)"),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for kwargs, err, message in cases:
        model = kwargs.pop("model", net)
        with pytest.raises(err) as e:
            ls.measure(model, (x, y), "hessian", top_k=1, **kwargs)
        assert isinstance(e.value, UserError)
        assert str(e.value) == message
    r = ls.measure(net, (x, y), "hessian", top_k=1, theta=theta.double(), dtype="float64",
                   device=torch.device("cpu"), eig_tol=1e-12)
    f, th = _reference_loss(net.double(), x.double(), y)
    dense = torch.autograd.functional.hessian(f, th)
    assert r.lambda_max == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-10)


def test_empirical_risk_hvp_names_both_lengths_of_a_misfit_vector() -> None:
    """A ``v`` of another length raised autograd's "Mismatch in shape" from the double
    backward; a ``v`` of theta's length gives the dense Hessian's product."""
    torch.manual_seed(0)
    net = _net().double()
    x, y = _xy(16)
    f, theta = _reference_loss(net, x.double(), y)
    hv = EmpiricalRisk(net, (x.double(), y)).hvp(theta)
    for v, err, message in [
            (torch.ones(10, dtype=F64), ValueError, "the Hessian-vector product got v of "
             "shape (10,) (10 entries) but theta has 15; pass a flat vector of theta's "
             "length"),
            (torch.ones(15, 1, dtype=F64), ValueError, "the Hessian-vector product got v "
             "of shape (15, 1) (15 entries) but theta has 15; pass a flat vector of "
             "theta's length"),
            (np.ones(15), TypeError, "the Hessian-vector product takes a torch tensor of "
             "15 entries (theta's length), got ndarray")]:
        with pytest.raises(err) as e:
            hv(v)
        assert isinstance(e.value, UserError)
        assert str(e.value) == message
    v = torch.randn(15, dtype=F64)
    dense = torch.autograd.functional.hessian(f, theta)
    torch.testing.assert_close(hv(v), dense @ v, rtol=0, atol=1e-12)


def test_numpy_data_is_told_to_become_tensors() -> None:
    """``(x.numpy(), y.numpy())`` was read as a stream of two batches and reported as
    "batch 0 ... is a ndarray, not an (inputs, targets) pair; make the loader yield..."."""
    torch.manual_seed(0)
    net = _net()
    x, y = _xy(16)
    for data, message in [
            ((x.numpy(), y.numpy()), "data is a pair of (ndarray, ndarray), not tensors; "
             "convert them: (torch.as_tensor(x), torch.as_tensor(y))"),
            ([x.numpy(), y], "data is a pair of (ndarray, Tensor), not tensors; convert "
             "them: (torch.as_tensor(x), torch.as_tensor(y))"),
            ([(x.numpy(), y.numpy())], "batch 0 holds (ndarray, ndarray), not tensors; "
             "convert them with torch.as_tensor")]:
        for call in (lambda d: ls.measure(net, d, "hessian", top_k=1),
                     lambda d: Evaluator(net, d).metrics()):
            with pytest.raises(TypeError) as e:
                call(data)
            assert isinstance(e.value, UserError)
            assert str(e.value) == message
    converted = (torch.as_tensor(x.numpy()), torch.as_tensor(y.numpy()))
    with torch.no_grad():
        assert Evaluator(net, converted).metrics()["train"].loss == pytest.approx(
            float(F.cross_entropy(net(x), y)), rel=1e-6)
