r"""The model-level API :func:`measure` and the runner of one measure in a context.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 1, bias=False)
    >>> _ = net.weight.data.zero_()
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> r = measure(net, (x, torch.zeros(2, 1)), "hessian", loss=nn.MSELoss(),
    ...             dtype="float64", top_k=2)
    >>> r.eigenvalues.round(9).tolist()  # H = 2 XᵀX / 2 for MSE: diag(1, 4)
    [4.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape._errors import UserError, UserTypeError
from landscape.evaluate import resolve_device
from landscape.sharpness._config import MeasureConfig
from landscape.sharpness._context import MeasureContext
from landscape.sharpness._registry import (
    all_params,
    params_json,
    params_of,
    parse_measures,
    spec,
)


@dataclass(frozen=True)
class MeasureResult:
    """One measure of one solution: stored scalars and arrays.

    Attributes are forwarded: ``r.lambda_max`` reads ``r.scalars["lambda_max"]``
    and ``r.eigenvalues`` reads ``r.arrays["eigenvalues"]``.

    Attributes:
        measure: Registry name.
        scalars: Plain values (stored as HDF5 attributes), including ``params``.
        arrays: Numpy arrays (stored as datasets).
        solution: Name of the measured solution (the group it is stored under).
    """

    measure: str
    scalars: dict[str, Any]
    arrays: dict[str, np.ndarray]
    solution: str = "model"

    def __getattr__(self, key: str) -> Any:
        """A scalar or an array by name.

        Raises:
            AttributeError: If neither has ``key``.
        """
        if key.startswith("__"):
            raise AttributeError(key)
        for d in (self.scalars, self.arrays):
            if key in d:
                return d[key]
        raise AttributeError(f"{self.measure} has no {key!r}; scalars: "
                             f"{sorted(self.scalars)}, arrays: {sorted(self.arrays)}")

    def line(self) -> str:
        """One line with the headline numbers.

        Returns:
            The line.
        """
        return spec(self.measure).line(self.scalars)



def _bar(progress: bool, desc: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit=unit, disable=not progress, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def run_measure(ctx: MeasureContext, name: str, params: Any, *, solution: str = "model",
                progress: bool = False) -> MeasureResult:
    """Compute one measure in a context and add the bookkeeping scalars.

    Returns:
        The result (``measure``, ``solution``, ``samples``, ``seed``, ``dtype``,
        ``seconds`` and ``params`` among its scalars).
    """
    s = spec(name)
    reason = s.why_not(ctx, params)
    if reason is not None:
        raise UserError(f"{name}: {reason}")
    t0 = time.perf_counter()
    with _bar(progress, f"{solution} {name}", s.unit) as bar:
        ctx.bar = bar
        try:
            scalars, arrays = s.compute(ctx, params)
        finally:
            ctx.bar = None
    scalars = {k: _plain(v) for k, v in scalars.items()}
    scalars |= {"measure": name, "solution": solution, "samples": ctx.samples,
                "seed": ctx.common.seed, "dtype": ctx.common.dtype,
                "seconds": time.perf_counter() - t0,
                "params": params_json(name, ctx.common, params)}
    return MeasureResult(name, scalars, {k: np.asarray(v) for k, v in arrays.items()},
                         solution)


def _plain(v: Any) -> Any:
    if v is None:
        return math.nan
    if isinstance(v, np.generic):
        return v.item()
    return v


def _dtype_name(dtype: Any) -> Any:
    """``torch.float32``/``torch.float64`` as ``"float32"``/``"float64"``; other values
    as they are (the config's choices check names them)."""
    if isinstance(dtype, torch.dtype):
        names = {torch.float32: "float32", torch.float64: "float64"}
        if dtype not in names:
            raise UserError(f"dtype must be 'float32' or 'float64' (or torch.float32, "
                            f"torch.float64), got {dtype}")
        return names[dtype]
    return dtype


def measure(model: nn.Module, data: Any, measures: str | Sequence[str] = "all", *,
            loss: Any = None, theta: Tensor | None = None, buffers: Tensor | None = None,
            seed: int = 0, dtype: str | torch.dtype = "float32", device: str | None = None,
            eval_batch_size: int = 4096, progress: bool = False, **params: Any,
            ) -> MeasureResult | dict[str, MeasureResult]:
    """Flatness and curvature measures of a model on its train data.

    Args:
        model: The trained network (not modified).
        data: Train data: ``(inputs, targets)`` tensors or a ``DataLoader`` that
            yields the same batches every pass.
        measures: One name (returns one result), a list or ``"all"`` (returns
            ``{name: result}``); see :func:`specs`.  ``"all"`` runs every measure
            that applies to the model and skips the others with a one-line
            ``UserWarning`` (PAC-Bayes on the 0-1 error of a regression model:
            pass ``pacbayes_metric="loss"`` to run it on the loss rise).
        loss: ``criterion(output, target)`` (default cross-entropy).  Every measure is
            of the mean loss over samples; a criterion with ``reduction='sum'`` is
            refused (pass ``reduction='mean'``).
        theta: Weights to measure at (default: the model's).
        buffers: BN buffers (default: the model's).
        seed: Seed of probes, noise and directions.
        dtype: ``"float32"`` or ``"float64"`` (or ``torch.float32``, ``torch.float64``;
            stored as the string).
        device: Where to compute (default: the model's device).
        eval_batch_size: Batch size for in-memory tensors.
        progress: tqdm bars on stderr.
        **params: Measure parameters by name (e.g. ``top_k=5``, ``tau=0.1``).

    Returns:
        The result, or results by name.

    Raises:
        UserError: For unknown measures or parameters, a dtype other than float32 or
            float64, a device torch does not know or has not, named measures that do
            not apply to the model (all of them in one line, before any is computed),
            or a non-finite loss.
        UserTypeError: For a model that is not a module, ``theta`` or ``buffers``
            that are not flat tensors, or a seed that is not an int.
    """
    if not isinstance(model, nn.Module):
        raise UserTypeError(f"model must be a torch.nn.Module (the trained network), got "
                            f"{type(model).__name__}")
    if device is not None:
        device = str(resolve_device(device))
    names = parse_measures(measures)
    known = all_params()
    bad = sorted(set(params) - set(known))
    if bad:
        raise UserError(f"unknown measure parameter(s) {bad}; valid: {sorted(known)}")
    n = getattr(data, "num_samples", None)
    common = MeasureConfig(samples=n or 1, seed=seed, dtype=_dtype_name(dtype),
                           eval_batch_size=eval_batch_size, device=device).validate()
    from landscape.data import as_batches

    ctx = MeasureContext(model, as_batches(data, eval_batch_size), theta=theta,
                         buffers=buffers, loss=loss, common=common)
    common = dataclasses.replace(common, samples=ctx.samples)
    ctx.common = common
    chosen = {m: params_of(m, params) for m in names}
    # Which measures do not apply, before any is computed: "all" skips them (one warning
    # each), a named list raises one error naming them all, so nothing computed is lost.
    reasons = {m: r for m in names if (r := spec(m).why_not(ctx, chosen[m])) is not None}
    if measures == "all":
        for m, reason in reasons.items():
            warnings.warn(f"measure {m!r} skipped: {reason}", UserWarning, stacklevel=2)
            names.remove(m)
    elif reasons:
        raise UserError("; ".join(f"{m}: {r}" for m, r in reasons.items()))
    out = {m: run_measure(ctx, m, chosen[m], progress=progress) for m in names}
    single = isinstance(measures, str) and measures != "all" and "," not in measures
    return out[names[0]] if single else out

