r"""SGD and SWA training with trajectory recording, resumable after a kill.

One call of :func:`train` trains the plain-SGD baseline and the SWA run (Izmailov
et al. 2018, arXiv:1803.05407) from the same initialisation and writes one run
file with both solutions, the last SGD iterate of the SWA run, per-epoch
metrics and the recorded weight trajectories.

Schedules (the SWA paper's reference code): with ``t = epoch / B``, the learning
rate factor is 1 for ``t <= 0.5``, falls linearly to ``r`` by ``t = 0.9`` and
stays at ``r``.  The baseline uses ``B = epochs`` and ``r = 0.01``; the SWA run
uses ``B = swa_start`` and ``r = swa_lr / lr``, so it reaches ``swa_lr`` before
averaging starts.  With ``schedule='cyclic'`` the SWA phase instead decays
linearly from ``alpha1`` to ``alpha2 = swa_lr`` within each cycle of ``cycle``
epochs.  Averaging (``torch.optim.swa_utils.AveragedModel``) happens after each
completed epoch ``E >= swa_start`` with ``(E - swa_start) % cycle == 0``, and
BatchNorm statistics of the average are recomputed with ``update_bn``.

Resumption: after every epoch the full state (model, optimizer, SWA model with
its ``n_averaged``, RNG states, history, trajectory so far) is saved atomically
to ``OUT.partial/``; the same command run again continues from there and ends
with bit-identical weights.  The run file itself is written once, atomically.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, update_bn

from landscape import store
from landscape._errors import UserError
from landscape.config import TrainConfig, parse_range, training_data
from landscape.data import LabelNoise, TensorData
from landscape.evaluate import BNMode, Evaluator, resolve_device
from landscape.models import (
    MODELS,
    build_model,
    default_model,
    has_batchnorm,
    model_entry,
)
from landscape.params import ParamLayout
from landscape.posterior.swag import SwagCollector
from landscape.schedules import swa_paper_factor

RUNS = ("sgd", "swa")


# --------------------------------------------------------------------------- schedules
def learning_rate(cfg: TrainConfig, run: str, epoch: int, step: int, steps: int) -> float:
    """Learning rate of ``run`` at minibatch ``step`` (of ``steps``) of 0-based ``epoch``."""
    if run == "sgd":
        if cfg.sgd_schedule == "const":
            return cfg.lr
        if cfg.sgd_schedule == "cosine":
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        return cfg.lr * swa_paper_factor(epoch, cfg.epochs, 0.01)
    if cfg.schedule == "cyclic" and epoch >= cfg.swa_start:
        i = (epoch - cfg.swa_start) * steps + step
        t = (i % (cfg.cycle * steps) + 1) / (cfg.cycle * steps)
        a1 = cfg.swa_lr_max if cfg.swa_lr_max is not None else cfg.lr
        return (1 - t) * a1 + t * cfg.swa_lr
    return cfg.lr * swa_paper_factor(epoch, cfg.swa_start, cfg.swa_lr / cfg.lr)


def averages_after(cfg: TrainConfig, completed_epochs: int) -> bool:
    """Whether the SWA run averages after completing ``completed_epochs`` epochs."""
    e = completed_epochs - cfg.swa_start
    return e >= 0 and e % cfg.cycle == 0


# --------------------------------------------------------------------------- set-up
def resolve_model_name(cfg: TrainConfig) -> str:
    """``cfg.model`` or the registry's default for the dataset."""
    return cfg.model or default_model(cfg.data)


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of the model (stored in ``/model`` attr ``kwargs``).

    Returns:
        ``{}`` or ``{kwarg: cfg.model_width}``.

    Raises:
        UserError: If ``model_width`` is set for a model without a width.
    """
    if cfg.model_width is None:
        return {}
    name = resolve_model_name(cfg)
    spec = model_entry(name)
    if spec is None or spec.width is None:
        wide = sorted(n for n, s in MODELS.items() if s.width is not None)
        raise UserError(f"--model-width applies to {', '.join(wide)}, not {name}; drop it "
                        "or choose one of those models")
    return {spec.width: int(cfg.model_width)}


def make_model(cfg: TrainConfig, data: TensorData) -> nn.Module:
    """The seeded initial model (the same for both runs).

    With ``init_jitter`` every weight is multiplied by ``1 + jitter * z`` with
    ``z`` standard normal from a generator seeded by the run's seed (in float64,
    then rounded back to the weight's dtype): at ``1e-7``, about one float32
    ulp, this is the rounding difference another CPU makes in the first steps,
    made on purpose, to measure how far a run's results move across machines.
    """
    torch.manual_seed(cfg.seed)
    model = build_model(resolve_model_name(cfg), data.in_shape, data.n_classes,
                        **model_kwargs(cfg))
    if cfg.init_jitter:
        g = torch.Generator().manual_seed(cfg.seed + 0x5EED)
        with torch.no_grad():
            for p in model.parameters():
                z = torch.randn(p.shape, generator=g, dtype=torch.float64)
                p.copy_(p.double() * (1 + cfg.init_jitter * z))
    return model


# --------------------------------------------------------------------------- state
@dataclass
class _RunState:
    """Everything one training run needs to continue after a kill."""

    epoch: int = 0
    step: int = 0
    done: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    traj: dict[str, list[float]] = field(default_factory=dict)  # step, epoch, lr, loss
    n_records: int = 0
    swag: dict[str, Any] | None = None  # SwagCollector.state_dict() (--swag, SWA run)
    swag_epochs: list[int] = field(default_factory=list)  # epochs SWAG collected

    def log(self, table: dict[str, list[float]], **values: float) -> None:
        for k, v in values.items():
            table.setdefault(k, []).append(float(v))


class _Checkpoint:
    """Atomic per-run checkpoint files under ``OUT.partial/``."""

    def __init__(self, folder: Path, run: str, record_size: int) -> None:
        self.state_path = folder / f"{run}.pt"
        self.traj_path = folder / f"{run}.traj.f32"
        self.record_bytes = 4 * record_size

    def save(self, obj: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        if self.traj_path.exists():
            with open(self.traj_path, "rb+") as fh:
                os.fsync(fh.fileno())
        torch.save(obj, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def load(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        obj = torch.load(self.state_path, weights_only=True)
        n = obj["state"]["n_records"]
        size = self.traj_path.stat().st_size if self.traj_path.exists() else 0
        if size < n * self.record_bytes:
            raise UserError(f"{self.traj_path} is shorter than its checkpoint says; "
                            "delete the .partial folder to restart the run")
        with open(self.traj_path, "ab") as fh:
            fh.truncate(n * self.record_bytes)  # drop records after the checkpoint
        return obj

    def append(self, record: np.ndarray) -> None:
        with open(self.traj_path, "ab") as fh:
            fh.write(record.astype(np.float32).tobytes())

    def records(self, n: int, width: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, width), np.float32)
        return np.fromfile(self.traj_path, np.float32, n * width).reshape(n, width)


def _state_to_dict(s: _RunState) -> dict[str, Any]:
    return {"epoch": s.epoch, "step": s.step, "done": s.done, "history": s.history,
            "traj": s.traj, "n_records": s.n_records, "swag": s.swag,
            "swag_epochs": s.swag_epochs}


# --------------------------------------------------------------------------- loop
def train_run(
    cfg: TrainConfig, run: str, data: TensorData, device: torch.device,
    folder: Path, progress: bool = False, *, checkpoint: bool = True,
) -> tuple[nn.Module, AveragedModel | None, _RunState, _Checkpoint]:
    """Train one run (``sgd``: the baseline; ``swa``: the SWA run) of ``cfg`` on ``data``.

    The building block of :func:`train`, public for callers that train on
    tensors of their own without a run file (k-fold CV, hyperparameter search).

    Args:
        cfg: The config.
        run: ``sgd`` or ``swa``.
        data: Train (and test/validation) tensors.
        device: Where to train.
        folder: Folder of the resume state and trajectory records.
        progress: Show a progress bar.
        checkpoint: Save the resume state after every epoch (off for throwaway
            fits: it skips the fsync'd writes).

    Returns:
        The final model, the SWA model (``None`` for ``sgd``), the run's state
        (``history``, trajectory metadata) and its checkpoint files.

    Raises:
        UserError: If the run diverges.
    """
    model = make_model(cfg, data).to(device)
    layout, buf_layout = ParamLayout.from_module(model), ParamLayout.buffers_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.wd)
    swa_model = AveragedModel(model) if run == "swa" else None
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    ck = _Checkpoint(folder, run, layout.numel + buf_layout.numel)
    budget = cfg.epochs if run == "sgd" else cfg.swa_budget
    x, y = data.x_train.to(device), data.y_train.to(device)
    n = len(y)
    steps = math.ceil(n / cfg.batch_size)

    st = _RunState()
    saved = ck.load()
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        if swa_model is not None:
            swa_model.load_state_dict(saved["swa"])
        gen.set_state(saved["gen"])
        torch.set_rng_state(saved["rng"])
        st = _RunState(**saved["state"])
    swag = None
    if swa_model is not None and cfg.swag:  # SWAG rides on the SWA run's averaging
        swag = (SwagCollector.from_state(st.swag, device) if st.swag is not None
                else SwagCollector(layout.numel, cfg.swag_rank, device))
    if st.done:
        return model, swa_model, st, ck

    splits = (data.batches("train"), data.batches("test"))
    evaluator = Evaluator(copy.deepcopy(model), *splits, device=device, bn=BNMode.KEEP)
    swa_eval = (Evaluator(copy.deepcopy(model), *splits, device=device)
                if swa_model is not None else None)

    def record(loss: float, lr: float) -> None:
        vec = torch.cat([layout.read(model), buf_layout.read(model, buffers=True)])
        ck.append(vec.numpy())
        st.log(st.traj, step=st.step, epoch=st.step / steps, lr=lr, loss=loss)
        st.n_records += 1

    def save() -> None:
        ck.save({"model": model.state_dict(), "opt": opt.state_dict(),
                 "swa": swa_model.state_dict() if swa_model is not None else None,
                 "gen": gen.get_state(), "rng": torch.get_rng_state(),
                 "state": _state_to_dict(st)})

    if st.epoch == 0 and st.n_records == 0 and (cfg.record_every or cfg.record_steps):
        record(float("nan"), learning_rate(cfg, run, 0, 0, steps))

    bar = _bar(range(st.epoch, budget), progress, f"train {run}", budget, st.epoch)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        # the loss stays on the device: one host sync per epoch (not per step) on a GPU
        total, lr = torch.zeros((), dtype=torch.float64, device=device), cfg.lr
        for b in range(steps):
            lr = learning_rate(cfg, run, epoch, b, steps)
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            st.step += 1
            last = loss.detach()
            total += last.double() * len(idx)
            if cfg.record_steps and st.step % cfg.record_steps == 0:
                record(last.item(), lr)
        loss_v, mean_loss = last.item(), total.item() / n
        if not math.isfinite(mean_loss):
            raise UserError(
                f"the {run} run diverged in epoch {epoch + 1} (mean minibatch loss "
                f"{mean_loss}); lower --lr (now {cfg.lr}); epochs before it stay in "
                f"{folder}")
        done = epoch + 1
        if swa_model is not None and averages_after(cfg, done):
            swa_model.update_parameters(model)
            if swag is not None:
                swag.collect(layout.read(model))
                st.swag_epochs.append(done)
        if cfg.record_every and done % cfg.record_every == 0 and not (
                cfg.record_steps and st.step % cfg.record_steps == 0):
            record(loss_v, lr)
        row: dict[str, float] = {"epoch": done, "lr": lr, "minibatch_loss": mean_loss,
                                 "seconds": time.perf_counter() - t0}
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == budget:
            m = evaluator.evaluate(layout.read(model), buf_layout.read(model, buffers=True))
            row |= _flat(m, "")
            if swa_eval is not None and swa_model is not None:
                if int(swa_model.n_averaged) > 0:
                    row |= _flat(swa_eval.evaluate(layout.read(swa_model.module)), "swa_")
                else:
                    row |= {f"swa_{s}_{k}": math.nan for s in ("train", "test")
                            for k in ("loss", "acc")}
            if progress:
                # shown with the next refresh, which counts this epoch as done
                bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                test_acc=f"{row['test_acc']:.3f}", refresh=False)
        else:
            row |= {k: math.nan for k in _flat_keys(swa_model is not None)}
        st.log(st.history, **row)
        st.epoch = done
        st.done = done == budget
        if swag is not None:
            st.swag = swag.state_dict()
        if checkpoint:
            save()
    return model, swa_model, st, ck


def _flat(m: dict, prefix: str) -> dict[str, float]:
    return {f"{prefix}{s}_{k}": getattr(m[s], k) for s in ("train", "test")
            for k in ("loss", "acc")}


def _flat_keys(swa: bool) -> list[str]:
    keys = [f"{s}_{k}" for s in ("train", "test") for k in ("loss", "acc")]
    return keys + ([f"swa_{k}" for k in keys] if swa else [])


def _bar(it: Any, progress: bool, desc: str, total: int, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, initial=initial, disable=not progress,
                leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------- solutions
def solution_metrics(
    model: nn.Module, data: TensorData, weights: Tensor, buffers: Tensor,
    device: torch.device,
) -> dict[str, float]:
    """Train/test loss and accuracy of a solution with its stored BN statistics."""
    ev = Evaluator(copy.deepcopy(model), data.batches("train"), data.batches("test"),
                   device=device, bn=BNMode.KEEP)
    return _flat(ev.evaluate(weights, buffers), "")


def bn_buffers(model: nn.Module, weights: Tensor, data: TensorData,
               device: torch.device, batch_size: int = 4096) -> Tensor:
    """BN statistics for ``weights`` from one pass over the train data (``update_bn``)."""
    m = copy.deepcopy(model).to(device)
    layout, buf = ParamLayout.from_module(m), ParamLayout.buffers_of(m)
    layout.write(m, weights)
    if has_batchnorm(m):
        update_bn(list(data.x_train.to(device).split(batch_size)), m)
    return buf.read(m, buffers=True)


def _mean_of_rows(weights: Tensor) -> Tensor:
    r"""Equal-weight average of ``(k, n)`` stacked weight vectors, in float64 (seed 004's
    averaging of recorded checkpoints; models and state dicts:
    :func:`landscape.averaging.average_checkpoints`).

    Example:
        >>> _mean_of_rows(torch.tensor([[1.0, 2.0], [3.0, 6.0]])).tolist()
        [2.0, 4.0]
    """
    if weights.ndim != 2 or len(weights) == 0:
        raise UserError("need at least one recorded checkpoint to average")
    return weights.double().mean(0).float()


def trajectory_average(
    f: Any, run: str, epochs: tuple[int, int],
) -> tuple[Tensor, Tensor, list[int]]:
    """Average the recorded weights of ``run`` at completed epochs ``A..B``.

    Args:
        f: The open run file.
        run: ``sgd`` or ``swa``.
        epochs: ``(A, B)``, inclusive.

    Returns:
        Averaged weights, averaged buffers and the epochs used.

    Raises:
        UserError: If some epochs were not recorded.
    """
    ep, W, B = store.checkpoints(f, run, epochs)
    want = list(range(epochs[0], epochs[1] + 1))
    if sorted(set(ep.astype(int).tolist())) != want:
        raise UserError(f"epochs {epochs[0]}:{epochs[1]} of the {run} run were not all "
                        "recorded; train with --record-every 1 or pick recorded epochs")
    last = {int(e): i for i, e in enumerate(ep)}  # the last record of each epoch
    idx = [last[e] for e in want]
    w = _mean_of_rows(torch.from_numpy(W[idx]))
    b = _mean_of_rows(torch.from_numpy(B[idx])) if B.shape[1] else torch.zeros(0)
    return w, b, want


# --------------------------------------------------------------------------- entry
def train(
    cfg: TrainConfig, out: str | os.PathLike, *, force: bool = False,
    progress: bool = True, log: Callable[[str], None] = print,
    data: TensorData | None = None,
) -> Path:
    """Train the SGD baseline and the SWA run and write the run file ``out``.

    Re-running the same command resumes a killed run; a finished run file with
    the same config is left as it is.

    Args:
        cfg: The resolved config.
        out: Run file to write.
        force: Overwrite a run file of a different config.
        progress: Show progress bars.
        log: Where one-line status messages go.
        data: Train on these tensors instead of the data ``cfg`` names (e.g. one
            fold of a k-fold split); describe them in ``data.meta``, which is
            stored in ``/data``.  ``cfg.label_noise`` applies to them too; the
            changed labels are stored in ``/data/label_noise``.

    Returns:
        The path of the run file.

    Raises:
        UserError: For bad config, data, an existing file of another config, or
            a diverged run.
    """
    cfg = cfg.validate()
    out = Path(out)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    folder = out.with_name(out.name + ".partial")
    with store.WriterLock(out):
        if out.exists() and not force:
            try:
                same = same_config(store.run_config(out), cfg)
            except store.DamagedFileError as e:
                state = (f"the training state in {folder} still resumes (pass --force to "
                         "write a new run file from it)" if folder.exists() else
                         f"there is no training state ({folder}), so it starts over")
                raise UserError(f"{e.args[0].split(';')[0]}; move it away or pass --force; "
                                f"{state}") from None
            if same:
                log(f"{out} is already complete for this config; nothing to do")
                return out
            raise UserError(f"{out} holds a run of another config; pass --force to "
                            "overwrite it or choose another --out")
        if folder.exists():
            old = json.loads((folder / "config.json").read_text()) if (
                folder / "config.json").exists() else None
            if old is None or not same_config(old, cfg):
                if not force:
                    raise UserError(f"{folder} holds a partial run of another config; "
                                    "pass --force to discard it or choose another --out")
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg.to_dict()))

        data, noise = training_data(cfg, data)
        runs = RUNS if cfg.swa else ("sgd",)
        results = {r: train_run(cfg, r, data, device, folder, progress) for r in runs}
        _write_run_file(cfg, out, data, results, device, noise)
        shutil.rmtree(folder)
    return out


def same_config(stored: Mapping[str, Any] | str, cfg: TrainConfig) -> bool:
    """Whether a stored config (a mapping or its JSON) is ``cfg``, the fields added
    since it was written taking their defaults (so a new key does not orphan old runs)."""
    return TrainConfig.with_defaults(stored) == cfg.to_dict()


def _write_run_file(cfg: TrainConfig, out: Path, data: TensorData,
                    results: dict[str, Any], device: torch.device,
                    noise: LabelNoise | None = None) -> None:
    model0 = make_model(cfg, data)
    layout, buf = ParamLayout.from_module(model0), ParamLayout.buffers_of(model0)
    sols: list[store.Solution] = []
    for run, (model, swa_model, st, _) in results.items():
        w, b = layout.read(model), buf.read(model, buffers=True)
        name = "sgd" if run == "sgd" else "swa_last"
        src = ("final iterate of the plain-SGD run" if run == "sgd"
               else "last SGD iterate of the SWA run")
        sols.append(store.Solution(name, w, b, {"source": src, "epoch": st.epoch}))
        if swa_model is not None:
            if int(swa_model.n_averaged) == 0:
                raise UserError("the SWA run averaged no model; lower --swa-start")
            ws = layout.read(swa_model.module)
            sols.append(store.Solution("swa", ws, bn_buffers(model0, ws, data, device), {
                "source": "SWA average (BN statistics recomputed)",
                "n_averaged": int(swa_model.n_averaged), "epoch": st.epoch}))
    swag_moments = None
    swag_epochs: list[int] = []
    for _, swa_model, st, _ in results.values():
        if swa_model is not None and st.swag is not None:
            swag_moments = SwagCollector.from_state(st.swag).moments()
            swag_epochs = list(st.swag_epochs)
    with store.edit_run(out, create=True) as f:
        store.init_run(
            f, config=cfg.to_dict(), seed=cfg.seed, device=str(device),
            model={"name": resolve_model_name(cfg), "kwargs": model_kwargs(cfg),
                   "in_shape": list(data.in_shape), "n_classes": data.n_classes},
            params=layout, buffers=buf, data=data.attrs())
        if noise is not None:
            store.write_label_noise(f, noise.indices, noise.original, noise.noisy,
                                    {"fraction": noise.fraction, "seed": noise.seed})
        for run, (_, _, st, ck) in results.items():
            store.write_history(f, run, st.history)
            rec = ck.records(st.n_records, layout.numel + buf.numel)
            store.write_trajectory(f, run, rec[:, :layout.numel], rec[:, layout.numel:],
                                   st.traj)
        if cfg.average_epochs is not None:
            rng = parse_range(cfg.average_epochs)
            w, b, used = trajectory_average(f, cfg.average_run, rng)
            if has_batchnorm(model0):
                b = bn_buffers(model0, w, data, device)
            sols.append(store.Solution("avg", w, b, {
                "source": f"post-hoc average of the {cfg.average_run} run's "
                          f"checkpoints at epochs {rng[0]}..{rng[1]}",
                "epochs": used}))
        for s in sols:
            s.attrs |= solution_metrics(model0, data, s.weights, s.buffers, device)
            store.write_solution(f, s)
        if swag_moments is not None:
            store.write_swag(f, swag_moments, {
                "source": "collected during the SWA run (landscape train --swag)",
                "epochs": swag_epochs})
