"""PAC-Bayes σ (rise and absolute forms), the bound forms of Jiang et al. 2020, the
0-1 error search and BatchNorm folding, against closed forms, hand-computed values
and the unfolded network."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cases import COMMON, FAST, relu_net
from helpers import randomize_bn
from scipy.optimize import brentq
from scipy.stats import norm
from torch import Tensor, nn

from landscape.evaluate import Evaluator
from landscape.jobs import measure_solution
from landscape.models import build_model, has_batchnorm
from landscape.sharpness import measure as ls_measure
from landscape.sharpness.bnfold import fold_batchnorm
from landscape.sharpness.jiang2020pacbayes import (
    PacBayesBound,
    pacbayes_bound,
    pacbayes_mag_bound,
    pacbayes_measures,
    pacbayes_sigma,
)
from landscape.sharpness.oracles import quadratic

F64 = torch.float64
H_DIAG = torch.tensor([4.0, 1.0, 0.25], dtype=F64)  # tr H = 5.25
W_STAR = torch.tensor([1.0, -2.0, 0.5], dtype=F64)  # sum H_ii w_i^2 = 8.0625


def shifted_quadratic(c: float) -> Callable[[Tensor], float]:
    """L(w) = c + (w - w*)^T H (w - w*) / 2: minimum value c at w*."""
    f = quadratic(torch.diag(H_DIAG), W_STAR, c)
    return lambda w: float(f(w))


# =========================================================================== rise vs absolute
def test_absolute_and_rise_closed_forms_on_a_quadratic_with_positive_minimum() -> None:
    """Δ = 0.01, c = 0.004: rise σ* = sqrt(2Δ/trH), absolute σ* = sqrt(2(Δ-c)/trH)."""
    f = shifted_quadratic(0.004)
    rise = pacbayes_sigma(f, W_STAR, 0.01, samples=3000, seed=1)
    absolute = pacbayes_sigma(f, W_STAR, 0.01, samples=3000, seed=1, bound="absolute")
    assert rise.bound == "rise"
    assert absolute.bound == "absolute"
    assert rise.base == absolute.base == pytest.approx(0.004, abs=1e-15)
    assert rise.sigma == pytest.approx(math.sqrt(2 * 0.01 / 5.25), rel=0.01)  # 0.0617213
    assert absolute.sigma == pytest.approx(math.sqrt(2 * 0.006 / 5.25), rel=0.01)  # 0.0478091
    assert abs(absolute.sigma - 0.0478091) <= 3 * absolute.sigma_sem
    assert absolute.base + absolute.rise == pytest.approx(0.01, abs=1e-4)


def test_with_common_draws_the_two_forms_differ_by_sqrt_of_the_level_ratio() -> None:
    """The estimated rise is σ² Q̂ with one Q̂ for every σ (same seed), so
    σ_abs / σ_rise = sqrt((Δ - c) / Δ) up to the bisection's rel_tol."""
    f = shifted_quadratic(0.004)
    kw = {"samples": 7, "seed": 3, "rel_tol": 1e-10, "max_steps": 200}
    for mag in (False, True):
        rise = pacbayes_sigma(f, W_STAR, 0.01, magnitude_aware=mag, eps=0.0, **kw)
        absolute = pacbayes_sigma(f, W_STAR, 0.01, magnitude_aware=mag, eps=0.0,
                                  bound=PacBayesBound.ABSOLUTE, **kw)
        assert absolute.sigma / rise.sigma == pytest.approx(math.sqrt(0.6), rel=1e-9)


def test_magnitude_aware_absolute_closed_form() -> None:
    """½ Σ H_ii (σ'² w_i² + ε²) = Δ - c  ⇒  σ'² = (2(Δ - c) - ε² trH) / Σ H_ii w_i²."""
    f = shifted_quadratic(0.004)
    r = pacbayes_sigma(f, W_STAR, 0.01, magnitude_aware=True, eps=1e-3, samples=3000,
                       seed=2, bound="absolute")
    exact = math.sqrt((2 * 0.006 - 1e-6 * 5.25) / 8.0625)  # 0.0385763
    assert r.sigma == pytest.approx(exact, rel=0.01)
    assert abs(r.sigma - exact) <= 3 * r.sigma_sem


def test_absolute_target_already_reached_gives_nan_not_a_search() -> None:
    calls = []

    def f(w: Tensor) -> float:
        calls.append(1)
        return shifted_quadratic(0.2)(w)

    r = pacbayes_sigma(f, W_STAR, 0.1, bound="absolute")
    assert math.isnan(r.sigma)
    assert math.isnan(r.flatness)
    assert r.base == pytest.approx(0.2)
    assert r.n_evals == len(calls) == 1
    assert r.trace_sigma.size == 0
    rise = pacbayes_sigma(f, W_STAR, 0.1, samples=200, bound="rise")
    assert abs(rise.sigma - math.sqrt(2 * 0.1 / 5.25)) <= 3 * rise.sigma_sem


def test_unknown_bound_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="'level' is not a valid PacBayesBound"):
        pacbayes_sigma(shifted_quadratic(0.0), W_STAR, 0.1, bound="level")


# =========================================================================== 0-1 error
def _margins_classifier(n: int = 20000, bad: float = 0.05, seed: int = 0
                        ) -> tuple[Tensor, Callable[[Tensor], float], np.ndarray, np.ndarray]:
    """A linear classifier on one-hot inputs: sample i has feature i with value a_i > 0
    and label y_i = ±1, predicted sign(a_i w_i).  At w = y m (margins m_i > 0) a
    fraction ``bad`` of the labels is flipped, so the base 0-1 error is ``bad``.

    Under u ~ N(0, s_i²) sample i is wrong with probability Φ(-m_i/s_i) if it was
    right and Φ(m_i/s_i) if it was wrong.
    """
    g = np.random.default_rng(seed)
    m = g.uniform(0.5, 1.5, n)
    a = torch.from_numpy(g.uniform(0.1, 2.0, n))
    y = torch.from_numpy(np.where(g.random(n) < 0.5, 1.0, -1.0))
    wrong = np.arange(n) < round(bad * n)
    w = y * torch.from_numpy(m)
    y_obs = torch.where(torch.from_numpy(wrong), -y, y)

    def error(theta: Tensor) -> float:
        return float(((a * theta) * y_obs <= 0).double().mean())

    return w, error, m, wrong


def _expected_error(s: float | np.ndarray, m: np.ndarray, wrong: np.ndarray) -> float:
    return float(np.mean(np.where(wrong, norm.cdf(m / s), norm.cdf(-m / s))))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small elementwise ops, thousands of times: torch's thread pool only adds waits
    (tens of seconds on a loaded 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("bound", ["rise", "absolute"])
def test_zero_one_error_sigma_of_a_linear_classifier_matches_the_normal_cdf(
        bound: str) -> None:
    w, error, m, wrong = _margins_classifier()
    assert error(w) == pytest.approx(0.05)
    level = 0.1 + 0.05 if bound == "rise" else 0.1
    exact = brentq(lambda s: _expected_error(s, m, wrong) - level, 0.01, 10, xtol=1e-14)
    r = pacbayes_sigma(error, w, 0.1, samples=400, seed=0, bound=bound)
    assert r.sigma_sem < 1e-3 * exact  # 8M Bernoulli draws per σ
    assert abs(r.sigma - exact) <= 3 * r.sigma_sem
    assert r.sigma == pytest.approx(exact, rel=3e-3)  # rise 0.766776, absolute 0.557828


@pytest.mark.usefixtures("one_thread")
def test_zero_one_error_magnitude_aware_sigma_is_free_of_the_margins() -> None:
    """ε = 0: s_i = σ' m_i, so E[error] = (1-b) Φ(-1/σ') + b Φ(1/σ') whatever the m_i:
    the rise 0.1 at b = 0.05 gives Φ(-1/σ') = 0.1/0.9."""
    w, error, _, _ = _margins_classifier(n=10000)
    exact = -1 / norm.ppf(0.1 / 0.9)  # 0.819242
    r = pacbayes_sigma(error, w, 0.1, magnitude_aware=True, eps=0.0, samples=300, seed=1)
    assert abs(r.sigma - exact) <= 3 * r.sigma_sem
    assert r.sigma == pytest.approx(exact, rel=5e-3)


# =========================================================================== bound forms
W = torch.tensor([3.0, -4.0], dtype=F64)  # ||w||² = 25
W0 = torch.tensor([1.0, -1.0], dtype=F64)  # w - w0 = (2, -3), ||w - w0||² = 13


def test_pacbayes_bound_forms_48_and_49_by_hand() -> None:
    # σ = 0.5, m = 100: ||d||² / (4 σ²) = ||d||², log(m/σ) = log 200
    assert pacbayes_bound(W, 0.5, 100, W0) == pytest.approx(13 + math.log(200) + 10,
                                                           rel=1e-15)
    assert pacbayes_bound(W, 0.5, 100) == pytest.approx(25 + math.log(200) + 10, rel=1e-15)
    assert pacbayes_bound(W, 0.25, 7, W0) == pytest.approx(13 * 4 + math.log(28) + 10,
                                                           rel=1e-15)


def test_pacbayes_mag_bound_forms_56_and_57_by_hand() -> None:
    # σ' = 0.5, ε = 0, ω = 2.  (56): numerator 1.25 * 13 / 2 = 8.125, denominators
    # 0.25 * 4 = 1 and 0.25 * 9 = 2.25.  (57): 1.25 * 25 / 2 = 15.625, 2.25 and 4.
    init = 0.25 * (math.log(8.125 / 1) + math.log(8.125 / 2.25)) + math.log(200) + 10
    orig = 0.25 * (math.log(15.625 / 2.25) + math.log(15.625 / 4)) + math.log(200) + 10
    assert pacbayes_mag_bound(W, 0.5, 100, W0, eps=0.0) == pytest.approx(init, rel=1e-15)
    assert pacbayes_mag_bound(W, 0.5, 100, eps=0.0) == pytest.approx(orig, rel=1e-15)
    # ε = 0.1 adds ε² = 0.01 to every numerator and denominator; δ = 0.05 gives log 2000
    eps_init = (0.25 * (math.log(8.135 / 1.01) + math.log(8.135 / 2.26)) + math.log(2000)
                + 10)
    assert pacbayes_mag_bound(W, 0.5, 100, W0, eps=0.1, delta=0.05) == pytest.approx(
        eps_init, rel=1e-14)


def test_pacbayes_measures_names_and_values() -> None:
    out = pacbayes_measures(W, W0, 0.5, 0.25, 100, eps=0.0)
    assert out == {
        "pac-bayes-init": pytest.approx(13 + math.log(200) + 10),
        "pac-bayes-orig": pytest.approx(25 + math.log(200) + 10),
        "pac-bayes-flatness": pytest.approx(4.0),
        # σ' = 0.25: numerator (1/16 + 1) 13/2 = 6.90625, denominators 4/16, 9/16
        "pac-bayes-mag-init": pytest.approx(
            0.25 * math.log(6.90625**2 / (0.25 * 0.5625)) + math.log(400) + 10),
        "pac-bayes-mag-orig": pytest.approx(
            0.25 * math.log((17 / 16 * 12.5) ** 2 / (0.5625 * 1.0)) + math.log(400) + 10),
        "pac-bayes-mag-flatness": pytest.approx(16.0),
    }


def test_bound_forms_of_a_failed_search_are_nan() -> None:
    assert math.isnan(pacbayes_bound(W, math.inf, 100, W0))
    assert math.isnan(pacbayes_mag_bound(W, math.nan, 100))
    assert math.isnan(pacbayes_measures(W, W0, math.nan, 0.5, 10)["pac-bayes-flatness"])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: pacbayes_bound(W, 0.0, 100), "need sigma > 0"),
    (lambda: pacbayes_bound(W, 0.5, 0), "m >= 1"),
    (lambda: pacbayes_bound(W, 0.5, 10, W0[:1]), "w0 has shape (1,) but w has (2,)"),
    (lambda: pacbayes_mag_bound(W, 0.5, 10, delta=0.0), "delta must be > 0"),
    (lambda: pacbayes_mag_bound(W, 0.5, 10, torch.tensor([3.0, 0.0], dtype=F64), eps=0.0),
     "use eps > 0"),
])
def test_bound_form_errors_are_one_line(call: Callable[[], float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        call()
    assert message in str(e.value)
    assert "\n" not in str(e.value)


# =========================================================================== BN folding
@pytest.mark.parametrize(("name", "in_shape"), [("mnist1d-cnn", (1, 40)),
                                                 ("seed000-cnn", (1, 28, 28))])
def test_folded_registry_model_computes_the_same_function(
        name: str, in_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = randomize_bn(build_model(name, in_shape, 10), dtype=F64).train()
    folded = fold_batchnorm(net)
    assert not has_batchnorm(folded)
    assert not folded.training
    assert net.training  # the original is left as it was
    assert has_batchnorm(net)
    x = torch.randn(16, *in_shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        expected = net.eval()(x)
        got = folded(x)
    plain = copy.deepcopy(net)  # the same net with default BN statistics and affine
    for m in plain.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
    with torch.no_grad():
        assert (plain(x) - expected).abs().max() > 0.1 * expected.abs().max()  # they matter
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    n_bn = sum(p.numel() for m in net.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters())
    assert sum(p.numel() for p in folded.parameters()) == (
        sum(p.numel() for p in net.parameters()) - n_bn)


def test_fold_adds_a_bias_nested_sequentials_and_bn_without_affine() -> None:
    torch.manual_seed(0)
    net = randomize_bn(nn.Sequential(
        nn.Conv1d(2, 3, 3, bias=False),
        nn.Sequential(nn.BatchNorm1d(3, affine=False), nn.ReLU()),
        nn.Flatten(),
        nn.Sequential(nn.Sequential(nn.Linear(3 * 6, 5)), nn.BatchNorm1d(5)),
    ), dtype=F64)
    folded = fold_batchnorm(net)
    assert folded[0].bias is not None
    assert isinstance(folded[1][0], nn.Identity)
    assert isinstance(folded[3][1], nn.Identity)
    # conv: bias' = -μ / sqrt(v + eps) (no affine, no bias before)
    bn = net[1][0]
    torch.testing.assert_close(folded[0].bias.detach(),
                               -bn.running_mean / torch.sqrt(bn.running_var + bn.eps))
    x = torch.randn(7, 2, 8, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net.eval()(x), rtol=0, atol=1e-10)


class _Block(nn.Module):
    """A custom module: its forward order is unknown to fold_batchnorm."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


def test_fold_reaches_sequentials_inside_custom_modules() -> None:
    net = randomize_bn(_Block(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))), dtype=F64)
    folded = fold_batchnorm(net)
    assert not has_batchnorm(folded)
    x = torch.randn(5, 4, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net.eval()(x), rtol=0, atol=1e-12)


class _BNInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.lin(x))


@pytest.mark.parametrize(("net", "message"), [
    (nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)), "BatchNorm '0' follows nothing"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3)),
     "BatchNorm '2' follows ReLU"),
    (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)),
     "BatchNorm '1' has track_running_stats=False"),
    (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(5)), "BatchNorm '1' has 5 features"),
    (_BNInForward(), "BatchNorm 'norm' is not inside an nn.Sequential"),
], ids=["first", "after-relu", "no-running-stats", "features", "custom-forward"])
def test_unfoldable_batchnorm_is_a_one_line_error(net: nn.Module, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        fold_batchnorm(net)
    assert message in str(e.value)
    assert "without BN folding" in str(e.value)
    assert "\n" not in str(e.value)


# ================================================= σ on quadratics and run files
def test_pacbayes_sigma_for_a_given_loss_rise() -> None:
    f = quadratic(torch.diag(H_DIAG), W_STAR)  # H_DIAG: the diagonal here
    loss = lambda w: float(f(w))  # noqa: E731
    r = pacbayes_sigma(loss, W_STAR, 0.01, samples=50, seed=0)
    assert abs(r.sigma - 0.0617213) <= 3 * r.sigma_sem
    assert 0 < r.sigma_sem < 0.15 * r.sigma  # about 8 % for 50 draws
    assert r.flatness == pytest.approx(1 / r.sigma**2)
    many = pacbayes_sigma(loss, W_STAR, 0.01, samples=3000, seed=1)
    assert many.sigma == pytest.approx(0.0617213, rel=0.01)
    assert abs(many.rise - 0.01) < 1e-4
    mag = pacbayes_sigma(loss, W_STAR, 0.01, magnitude_aware=True, eps=1e-3,
                         samples=3000, seed=2)
    assert abs(mag.sigma - 0.0497993) <= 3 * mag.sigma_sem
    assert mag.sigma == pytest.approx(0.0497993, rel=0.01)


def test_pacbayes_sigma_standard_error_is_honest() -> None:
    """Over independent seeds, σ spreads about as much as its reported SE."""
    f = quadratic(torch.diag(H_DIAG), W_STAR)  # H_DIAG: the diagonal here
    runs = [pacbayes_sigma(lambda w: float(f(w)), W_STAR, 0.01, samples=20, seed=s)
            for s in range(40)]
    sig = np.array([r.sigma for r in runs])
    sem = np.median([r.sigma_sem for r in runs])
    assert sig.std(ddof=1) == pytest.approx(sem, rel=0.4)
    assert abs(sig.mean() - 0.0617213) < 3 * sem / math.sqrt(40) + 0.002


def test_pacbayes_default_error_path_with_folded_bn(run_copy: Path) -> None:
    """The default: 0-1 train error, BN folded into the conv/linear layers."""
    from landscape.jobs import load_run_model
    from landscape.store import open_run, read_solution

    params = {**FAST, "pacbayes_metric": "error", "pacbayes_target": 0.1,
              "pacbayes_samples": 3}
    out = measure_solution(run_copy, "swa", ["pacbayes"], COMMON, params)["pacbayes"]
    model, data = load_run_model(run_copy)
    sub = data.subset(COMMON.samples, 1, COMMON.seed)
    with open_run(run_copy) as f:
        sol = read_solution(f, "swa")
    err = Evaluator(model, *sub.splits(), bn="keep").evaluate(
        sol.weights, sol.buffers, splits=("train",))["train"].err
    assert out["fold_bn"]
    assert out["bound"] == "rise"
    assert out["metric"] == "error"
    assert out["base"] == pytest.approx(err, abs=1e-9)  # folding keeps the function
    assert 0 < out["sigma"] < math.inf
    assert 0 < out["sigma_mag"] < math.inf
    assert out["m"] == len(data.y_train)
    for k in ("pac_bayes_orig", "pac_bayes_init", "pac_bayes_mag_orig",
              "pac_bayes_mag_init"):  # epoch 0 is recorded: the init forms exist
        assert math.isfinite(out[k]), k


def test_pacbayes_on_a_model_without_initial_weights() -> None:
    net, data = relu_net()
    r = ls_measure(net, (data.x_train, data.y_train), "pacbayes", dtype="float64",
                   pacbayes_metric="loss", pacbayes_target=0.05, pacbayes_eps=0.0,
                   pacbayes_samples=3)
    assert math.isfinite(r.pac_bayes_orig)
    assert math.isfinite(r.pac_bayes_mag_orig)
    assert math.isnan(r.pac_bayes_init)  # unknown without the weights at initialization
