r"""Fast Geometric Ensembling (Garipov et al. 2018, arXiv 1802.10026, section 5).

From a trained solution, SGD continues with a cyclic learning rate: each cycle
of :math:`c` epochs (:math:`P` minibatch steps) falls linearly from
:math:`\alpha_1` to :math:`\alpha_2` over its first half and climbs back over
its second,

.. math::
    \alpha(i) = \begin{cases}
        (1 - s)\,\alpha_1 + s\,\alpha_2, & s = \tfrac{j}{h}, \ j \le h \\
        (1 - s)\,\alpha_2 + s\,\alpha_1, & s = \tfrac{j - h}{P - h}, \ j > h
    \end{cases}
    \qquad j = (i \bmod P) + 1,\ h = \lceil P/2 \rceil ,

and a snapshot is taken after step :math:`j = h` of every cycle, where the
rate is exactly :math:`\alpha_2`.  The ensemble predicts with the mean of the
snapshots' softmax outputs.  Beside it the same snapshots are averaged in
*weight* space (SWA of the same iterates, Izmailov et al. 2018) and the
starting solution is evaluated alone, all through the one evaluation path
(BatchNorm statistics recomputed on train data at each evaluated point for BN
models).

Resumable: :class:`FGEState` after each snapshot holds everything to continue
exactly (model, momentum, the generator state at the start of the epoch and
the running ensemble), and :func:`fge` continues from it.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape._errors import UserError, UserTypeError, arg, not_finite
from landscape.config import FGEConfig
from landscape.data import TensorBatches, as_batches
from landscape.evaluate import Evaluator, Loss, _forward, model_device, resolve_device
from landscape.params import ParamLayout
from landscape.posterior.ensemble import (
    EnsembleAverage,
    PredictiveMetrics,
    predict_proba,
    predictive_metrics,
)

#: Per-snapshot columns of an FGE history.
FGE_COLUMNS = ("snapshot", "epoch", "lr", "snapshot_acc", "snapshot_nll", "ensemble_acc",
               "ensemble_nll", "ensemble_ece", "swa_acc", "swa_nll", "swa_ece", "seconds")


def fge_learning_rate(step: int, period: int, alpha1: float, alpha2: float) -> float:
    """The cyclic rate of 0-based minibatch ``step`` with ``period`` steps per cycle.

    Returns:
        The learning rate (``alpha2`` exactly at the snapshot step).

    Example:
        >>> [fge_learning_rate(i, 4, 1.0, 0.0) for i in range(5)]
        [0.5, 0.0, 0.5, 1.0, 0.5]
    """
    j = step % period + 1
    h = math.ceil(period / 2)
    if j <= h:
        s = j / h
        return (1 - s) * alpha1 + s * alpha2
    s = (j - h) / (period - h)
    return (1 - s) * alpha2 + s * alpha1


def is_snapshot_step(step: int, period: int) -> bool:
    """Whether 0-based ``step`` ends at its cycle's lowest rate (the snapshot)."""
    return step % period + 1 == math.ceil(period / 2)


@dataclass
class FGEState:
    """FGE after some snapshots: enough to continue exactly.

    Attributes:
        step: Minibatch steps done.
        weights: ``(n,)`` current weights.
        buffers: ``(n_buffers,)`` current BN buffers.
        momentum: ``(n,)`` SGD momentum (``None`` before the first step).
        epoch_generator: Generator state at the start of the current epoch.
        rng: Torch's global CPU generator state (dropout).
        snapshots: ``(k, n)`` snapshot weights.
        snapshot_buffers: ``(k, n_buffers)`` their running BN buffers.
        ensemble: ``(N, C)`` mean class probabilities of the snapshots.
        history: Per snapshot, the :data:`FGE_COLUMNS`.
        start: Metrics of the starting solution (``acc``, ``nll``, ``ece``).
    """

    step: int
    weights: Tensor
    buffers: Tensor
    momentum: Tensor | None = None
    epoch_generator: Tensor | None = None
    rng: Tensor | None = None
    snapshots: Tensor | None = None
    snapshot_buffers: Tensor | None = None
    ensemble: Tensor | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    start: dict[str, float] = field(default_factory=dict)

    @property
    def num_snapshots(self) -> int:
        """Snapshots taken."""
        return 0 if self.snapshots is None else int(self.snapshots.shape[0])


@dataclass(frozen=True, eq=False)
class FGEResult:
    """An FGE run: its snapshots and the metrics as they accumulate.

    Attributes:
        snapshots: ``(k, n)`` snapshot weights.
        history: Per snapshot, the :data:`FGE_COLUMNS` (``ensemble_*``: the
            mean softmax of snapshots 1..k; ``swa_*``: their weight average).
        start: ``acc``, ``nll``, ``ece`` of the starting solution.
        ensemble: The final ensemble's :class:`PredictiveMetrics`.
        probs: ``(N, C)`` the final ensemble's class probabilities.
    """

    snapshots: Tensor
    history: dict[str, np.ndarray]
    start: dict[str, float]
    ensemble: PredictiveMetrics
    probs: Tensor


def _check_finite_start(weights: Tensor, buffers: Tensor) -> None:
    """Raise before training unless the starting weights and BN buffers are finite.

    Raises:
        UserError: Naming how many entries are NaN/inf.
    """
    for what, t in (("starting weights", weights), ("starting BN buffers", buffers)):
        bad = int((~torch.isfinite(t.detach())).sum())
        if bad:
            raise not_finite(f"FGE's {what} hold {bad} NaN/inf entries", "running FGE")


def _row(m: PredictiveMetrics) -> dict[str, float]:
    return {"acc": m.acc, "nll": m.nll, "ece": m.ece}


def fge(
    model: nn.Module, start: Tensor | FGEState, train: Any, test: Any,
    config: FGEConfig | None = None, *, start_buffers: Tensor | None = None,
    loss: Any = None, device: str | torch.device | None = None,
    on_snapshot: Callable[[FGEState], None] | None = None, progress: bool = False,
    **overrides: Any,
) -> FGEResult:
    r"""Fast Geometric Ensembling from ``start`` (a flat weight vector or a state).

    Args:
        model: The network (copied; its weights are not used).
        start: The trained solution's ``(n,)`` weights, or an :class:`FGEState`
            to continue.
        train: Train data (tensors or a ``DataLoader``): the cyclic SGD and the
            BN statistics.
        test: Test data: the predictions that are ensembled.
        config: :class:`~landscape.config.FGEConfig` (``snapshots``, ``cycle``,
            ``alpha1``, ``alpha2``, ...); keyword ``overrides`` replace fields.
        start_buffers: BN buffers of ``start`` (the running statistics training
            starts from; default: the model's).
        loss: ``criterion(output, target)`` of training (default cross-entropy).
        device: Where to train and evaluate (default: the model's device).
        on_snapshot: Called with the state after each snapshot (a checkpoint hook).
        progress: A tqdm bar over snapshots.

    Returns:
        The :class:`FGEResult`.

    Raises:
        UserError: For bad settings, weights of another model, a non-classifier,
            or a diverging run.

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = nn.Linear(4, 3)
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> w = ParamLayout.from_module(net).read(net)
        >>> res = fge(net, w, (x, y), (x, y), snapshots=3, cycle=2, batch_size=16)
        >>> res.snapshots.shape, len(res.history["ensemble_acc"])
        (torch.Size([3, 15]), 3)
    """
    from tqdm.auto import tqdm

    cfg = (config or FGEConfig())
    cfg = cfg.replace(**overrides) if overrides else cfg.validate()
    dev = model_device(model) if device is None else resolve_device(device)
    net = copy.deepcopy(model).to(dev)
    layout, buf_layout = ParamLayout.from_module(net), ParamLayout.buffers_of(net)
    crit = loss if isinstance(loss, Loss) else Loss(loss)
    dtype = next(net.parameters()).dtype
    data = as_batches(train, cfg.batch_size)
    if not isinstance(data, TensorBatches):
        raise UserError("FGE shuffles in-memory train data to resume exactly; pass "
                        "(inputs, targets) tensors, not a DataLoader")
    src = data.to(dev, dtype)
    steps = math.ceil(src.num_samples / cfg.batch_size)
    period = cfg.cycle * steps
    total = cfg.snapshots * period  # the last snapshot ends the run (half a cycle early)
    total -= period - math.ceil(period / 2)
    if period < 2:
        raise UserError(
            f"FGE's cycle of {arg('cycle')}={cfg.cycle} epoch(s) is {period} minibatch step "
            f"({src.num_samples} train samples, {arg('batch_size')}={cfg.batch_size}): it "
            "needs at least 2 steps to fall from alpha1 to alpha2 and climb back; raise "
            "--cycle or lower --batch-size")
    if start_buffers is not None:
        if not isinstance(start_buffers, Tensor):
            raise UserTypeError(f"start_buffers must be a flat torch tensor of BN buffers, "
                                f"got {type(start_buffers).__name__}; pass "
                                "ParamLayout.buffers_of(model).read(model, buffers=True)")
        if not buf_layout.numel and start_buffers.numel():
            raise UserError(f"start_buffers has {start_buffers.numel()} entries but the "
                            "model has no BatchNorm buffers to start from; drop "
                            "start_buffers (or pass the model they belong to)")
        if buf_layout.numel and not isinstance(start, FGEState):
            buf_layout.check_vector(start_buffers, "start_buffers")
    ev = Evaluator(copy.deepcopy(model), train, test, device=dev,
                   batch_size=cfg.eval_batch_size)

    if isinstance(start, FGEState):
        state = start
    else:
        layout.check_vector(start, "the starting weights")
        b0 = start_buffers if start_buffers is not None else buf_layout.read(net,
                                                                              buffers=True)
        _check_finite_start(start, b0)
        p, yt = predict_proba(ev, start.float(), b0)
        state = FGEState(0, start.detach().float().cpu(), b0.float().cpu(),
                         start=_row(predictive_metrics(p, yt, cfg.bins)))
    layout.check_vector(state.weights, "the FGE state's weights")
    layout.write(net, state.weights.to(dev))
    if buf_layout.numel:
        buf_layout.write(net, state.buffers.to(dev), buffers=True)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.alpha1, momentum=cfg.momentum,
                          weight_decay=float(cfg.wd or 0.0))
    if state.momentum is not None:
        bufs = layout.unflatten(state.momentum.to(dev, dtype))
        for name, prm in net.named_parameters():
            opt.state[prm]["momentum_buffer"] = bufs[name].clone()
    gen = torch.Generator().manual_seed(cfg.seed)
    ensemble = EnsembleAverage(state.ensemble, state.num_snapshots)
    snaps = [] if state.snapshots is None else list(state.snapshots)
    snap_bufs = [] if state.snapshot_buffers is None else list(state.snapshot_buffers)
    history = {k: list(v) for k, v in state.history.items()}
    step = state.step
    yt: Tensor | None = None

    with torch.random.fork_rng(devices=[]), tqdm(
            total=cfg.snapshots, initial=len(snaps), desc="fge snapshots",
            disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True) as bar:
        if state.rng is not None:
            torch.set_rng_state(state.rng)
        else:
            torch.manual_seed(cfg.seed)
        if state.epoch_generator is not None:
            gen.set_state(state.epoch_generator)
        t0 = time.perf_counter()
        while step < total:
            epoch_gen = gen.get_state()
            perm = torch.randperm(src.num_samples, generator=gen).to(dev)
            net.train()
            for b in range(step % steps, steps):
                lr = fge_learning_rate(step, period, cfg.alpha1, cfg.alpha2)
                for g in opt.param_groups:
                    g["lr"] = lr
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                obj = crit.mean(_forward(net, src.x[idx]), src.y[idx])
                opt.zero_grad(set_to_none=True)
                obj.backward()
                opt.step()
                step += 1
                if not is_snapshot_step(step - 1, period):
                    continue
                if not math.isfinite(float(obj.detach())):
                    raise UserError(f"FGE diverged at step {step} (loss "
                                    f"{float(obj.detach())}); lower --alpha1 (now "
                                    f"{cfg.alpha1})")
                w = layout.read(net).float().cpu()
                bw = buf_layout.read(net, buffers=True).float().cpu()
                snaps.append(w)
                snap_bufs.append(bw)
                p, yt = predict_proba(ev, w, bw)
                one = predictive_metrics(p, yt, cfg.bins)
                ensemble.add(p, yt)
                ens = predictive_metrics(ensemble.probs, yt, cfg.bins)
                avg = torch.stack(snaps).double().mean(0).float()
                ps, ys = predict_proba(ev, avg, bw)
                ensemble.check_targets(ys)
                swa = predictive_metrics(ps, yt, cfg.bins)
                row = {"snapshot": len(snaps), "epoch": step / steps, "lr": lr,
                       "snapshot_acc": one.acc, "snapshot_nll": one.nll,
                       "ensemble_acc": ens.acc, "ensemble_nll": ens.nll,
                       "ensemble_ece": ens.ece, "swa_acc": swa.acc, "swa_nll": swa.nll,
                       "swa_ece": swa.ece, "seconds": time.perf_counter() - t0}
                for k, v in row.items():
                    history.setdefault(k, []).append(float(v))
                net.train()
                mom = [opt.state[prm].get("momentum_buffer") for _, prm in
                       net.named_parameters()]
                state = FGEState(
                    step, w, bw,
                    None if any(m is None for m in mom) else layout.flatten(
                        {n: m for (n, _), m in zip(net.named_parameters(), mom,
                                                   strict=True)}).float().cpu(),
                    # a snapshot that ends an epoch resumes at the next epoch's start
                    gen.get_state() if step % steps == 0 else epoch_gen,
                    torch.get_rng_state(), torch.stack(snaps),
                    torch.stack(snap_bufs), ensemble.probs.clone(),
                    {k: list(v) for k, v in history.items()}, dict(state.start))
                if on_snapshot is not None:
                    on_snapshot(state)
                bar.update(1)
                bar.set_postfix(ens_acc=f"{ens.acc:.4f}")
                t0 = time.perf_counter()
                if step >= total:
                    break
    if not snaps:
        raise UserError("FGE took no snapshot; raise --snapshots")
    probs = ensemble.probs
    final = predictive_metrics(probs, ev.outputs("test")[1].cpu() if yt is None else yt,
                               cfg.bins)
    return FGEResult(torch.stack(snaps), {k: np.asarray(v) for k, v in history.items()},
                     dict(state.start), final, probs)
