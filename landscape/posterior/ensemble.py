r"""Predictive metrics of a model or an ensemble: accuracy, NLL, calibration.

An ensemble predicts with the mean of its members' softmax outputs,
:math:`\bar p(y \mid x) = \frac1M \sum_m p_m(y \mid x)` (FGE's ensemble, SWAG's
Bayesian model average); its negative log-likelihood is
:math:`-\frac1N \sum_i \log \bar p(y_i \mid x_i)`.  The **expected calibration
error** (Guo et al. 2017; Maddox et al. 2019 use 20 bins) splits the samples
into equal-width bins of confidence :math:`c_i = \max_y \bar p(y \mid x_i)`,
bin :math:`b = (\tfrac{b-1}{B}, \tfrac bB]`, and weighs each bin's gap between
accuracy and mean confidence by its share of samples:

.. math::
    \mathrm{ECE} = \sum_b \frac{n_b}{N}\,\bigl|\mathrm{acc}_b - \mathrm{conf}_b\bigr| .

Pure: tensors in, numbers out.

Example:
    >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> y = torch.tensor([0, 1, 1])
    >>> m = predictive_metrics(p, y, bins=2)
    >>> round(m.acc, 4), round(m.ece, 4)
    (0.6667, 0.0667)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError
from landscape.evaluate import Evaluator

#: Confidence bins of the ECE (Maddox et al.'s code uses 20).
ECE_BINS = 20


def check_classifier(out: Tensor, y: Tensor, what: str = "calibration") -> None:
    """Raise unless ``out`` are ``(N, C)`` class scores and ``y`` ``(N,)`` class indices.

    Raises:
        UserError: Naming what was given and the fix.
    """
    if (y.is_floating_point() or y.is_complex() or y.ndim != 1 or out.ndim != 2
            or out.shape[1] < 2 or out.shape[0] != y.shape[0]):
        raise UserError(
            f"{what} needs a classifier: (N, C) class scores with C >= 2 and (N,) integer "
            f"class targets, got outputs {tuple(out.shape)} and "
            f"{str(y.dtype).removeprefix('torch.')} targets {tuple(y.shape)}; use a "
            "classification model and labels (a regression model has no accuracy, NLL "
            "of classes or calibration)")


@dataclass(frozen=True)
class PredictiveMetrics:
    """Accuracy, negative log-likelihood and expected calibration error of predictions.

    Attributes:
        acc: Accuracy of the argmax class.
        nll: Mean negative log-likelihood of the true class.
        ece: Expected calibration error (``bins`` equal-width confidence bins).
        n: Number of samples.
        confidence: ``(bins,)`` mean confidence per bin (NaN where empty).
        accuracy: ``(bins,)`` accuracy per bin (NaN where empty).
        count: ``(bins,)`` samples per bin.
    """

    acc: float
    nll: float
    ece: float
    n: int
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def expected_calibration_error(probs: Tensor, y: Tensor, bins: int = ECE_BINS) -> float:
    """The ECE of class probabilities ``probs`` ``(N, C)`` for targets ``y`` ``(N,)``.

    Returns:
        The ECE in ``[0, 1]``.

    Example:
        >>> p = torch.tensor([[0.8, 0.2], [0.8, 0.2]], dtype=torch.float64)
        >>> round(expected_calibration_error(p, torch.tensor([0, 1]), bins=10), 12)
        0.3
    """
    return predictive_metrics(probs, y, bins).ece


def predictive_metrics(probs: Tensor, y: Tensor, bins: int = ECE_BINS) -> PredictiveMetrics:
    """Accuracy, NLL and ECE of class probabilities (rows summing to 1).

    Args:
        probs: ``(N, C)`` predicted class probabilities (e.g. the mean softmax
            of an ensemble).
        y: ``(N,)`` integer class targets.
        bins: Number of equal-width confidence bins of the ECE.

    Returns:
        The :class:`PredictiveMetrics` (bin tables included, for reliability diagrams).

    Raises:
        UserError: For a non-classifier, no sample, targets outside ``0..C-1``,
            ``probs`` that are not probabilities (logits) or ``bins < 1``.
    """
    check_classifier(probs, y)
    if bins < 1:
        raise UserError(f"the calibration error needs bins >= 1, got {bins}")
    n, c = probs.shape
    if n == 0:
        raise UserError("predictive metrics of 0 samples are undefined; pass the "
                        "predictions and targets of at least one sample")
    p = probs.detach().double().cpu()
    y = y.detach().cpu().long()
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= c:
        raise UserError(f"class targets must lie in 0..{c - 1} for {c} class "
                        f"probabilities, got {lo}..{hi}; relabel the targets or pass one "
                        "probability per class")
    _check_probabilities(p, probs.dtype)
    conf, pred = p.max(1)
    correct = (pred == y).double()
    nll = float(-torch.log(p.gather(1, y[:, None]).squeeze(1).clamp_min(1e-300)).mean())
    # bin b holds confidences in ((b - 1)/B, b/B]; confidence 0 falls into the first
    idx = (torch.ceil(conf * bins).long() - 1).clamp(0, bins - 1)
    count = torch.bincount(idx, minlength=bins).double()
    csum = torch.bincount(idx, weights=conf, minlength=bins)
    asum = torch.bincount(idx, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_conf = (csum / count).numpy()
        bin_acc = (asum / count).numpy()
    ece = float((asum - csum).abs().sum() / n)
    return PredictiveMetrics(float(correct.mean()), nll, ece, n, bin_conf, bin_acc,
                             count.numpy().astype(np.int64))


def _check_probabilities(p: Tensor, dtype: torch.dtype) -> None:
    """Raise unless the rows of ``p`` (float64) are non-negative and sum to 1.

    The tolerance is a few rounding errors of ``dtype``, the probabilities'
    own precision.  A NaN row passes: it is a diverged model's prediction
    (its metrics are NaN), not logits.

    Raises:
        UserError: Naming the range of the values and row sums, and the fix.
    """
    tol = max(1e-5, 4 * torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0
    sums = p.sum(1)
    if bool((p < 0).any()) or bool(((sums - 1).abs() > tol).any()):
        raise UserError(
            f"predictive metrics need class probabilities (non-negative, rows summing to "
            f"1), got values in [{float(p.min()):.3g}, {float(p.max()):.3g}] and row sums "
            f"in [{float(sums.min()):.3g}, {float(sums.max()):.3g}]; pass probabilities, "
            "e.g. logits.softmax(-1)")


def predict_proba(evaluator: Evaluator, weights: Tensor, buffers: Tensor | None = None,
                  split: str = "test") -> tuple[Tensor, Tensor]:
    """Softmax class probabilities of ``split`` at ``weights`` through the evaluation path.

    BatchNorm follows the evaluator's mode (``recompute``: statistics
    recomputed on train data at these weights, as for any point that is not a
    trained solution: a SWAG sample, an FGE snapshot, an average).

    Returns:
        ``(probs (N, C) float64 on the CPU, targets (N,))``.

    Raises:
        UserError: For a non-classifier.
    """
    evaluator.set_point(weights, buffers)
    out, y = evaluator.outputs(split)
    check_classifier(out, y, "an ensemble of class probabilities")
    return torch.softmax(out.double(), dim=1).cpu(), y.cpu()


class EnsembleAverage:
    """The running mean of members' class probabilities (the ensemble's prediction).

    Example:
        >>> e = EnsembleAverage()
        >>> e.add(torch.tensor([[1.0, 0.0]])); e.add(torch.tensor([[0.0, 1.0]]))
        >>> e.probs.tolist(), e.members
        ([[0.5, 0.5]], 2)
    """

    def __init__(self, probs: Tensor | None = None, members: int = 0) -> None:
        self._sum = None if probs is None else probs.double() * members
        self.members = members
        self._targets: Tensor | None = None

    def check_targets(self, targets: Tensor) -> None:
        """Raise unless ``targets`` are the first member's (the same samples, in order).

        The first targets seen are kept; a later member whose targets differ was
        evaluated on the samples in another order (a shuffled, streamed loader),
        and averaging its rows with the others' would mix predictions of
        different samples.

        Raises:
            UserError: Saying to pass the data in a fixed order or kept in memory.
        """
        y = targets.detach().cpu()
        if self._targets is None:
            self._targets = y.clone()
        elif self._targets.shape != y.shape or not torch.equal(self._targets, y):
            raise UserError(
                f"ensemble member {self.members + 1} saw the test samples in another "
                "order than the first (its targets differ), so their predictions cannot "
                "be averaged; pass the test data in a fixed order (a DataLoader with "
                "shuffle=False) or keep it in memory (the Evaluator's default keep_bytes)")

    def add(self, probs: Tensor, targets: Tensor | None = None) -> None:
        """Add one member's ``(N, C)`` probabilities (of samples with ``targets``).

        Raises:
            UserError: If the member predicts on other samples or classes, or
                (``targets`` given) on the samples in another order than the first.
        """
        p = probs.detach().double().cpu()
        if self._sum is not None and self._sum.shape != p.shape:
            raise UserError(f"an ensemble member predicted {tuple(p.shape)} probabilities, "
                            f"the others {tuple(self._sum.shape)}; evaluate every member "
                            "on the same data")
        if targets is not None:
            self.check_targets(targets)
        if self._sum is None:
            self._sum = p.clone()
        else:
            self._sum += p
        self.members += 1

    @property
    def probs(self) -> Tensor:
        """``(N, C)`` mean probabilities of the members so far."""
        if self._sum is None:
            raise UserError("the ensemble has no member yet; add one first")
        return self._sum / self.members


def nan_metrics(bins: int = ECE_BINS) -> PredictiveMetrics:
    """Metrics of nothing (all NaN), a placeholder for a missing row.

    Returns:
        The metrics.
    """
    nan = np.full(bins, math.nan)
    return PredictiveMetrics(math.nan, math.nan, math.nan, 0, nan, nan.copy(),
                             np.zeros(bins, np.int64))
