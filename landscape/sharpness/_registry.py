r"""The measure registry: each measure declared once, next to its maths.

A measure module defines a parameter dataclass (defaults and help text in the
field metadata), a ``compute(ctx, params) -> (scalars, arrays)`` function and
registers a :class:`MeasureSpec`.  Everything else reads the registry: the
model-level API :func:`measure`, the run-file runner
(:mod:`landscape.jobs.measures`), the ``landscape sharpness`` flags,
``landscape info``, ``landscape compare``, the ``paper`` report and the
measures table of ``docs/schema.md``.  Modules of
:mod:`landscape.sharpness` are discovered automatically, so a new measure is
one new file (and its test).

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

import copy
import dataclasses
import importlib
import json
import math
import pkgutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape._errors import UserError
from landscape.evaluate import BNMode, EmpiricalRisk, Evaluator, Loss, model_device
from landscape.params import ParamLayout
from landscape.sharpness._base import HVP

#: ``compute``'s return: plain scalars (stored as attributes) and numpy arrays.
Result = tuple[dict[str, Any], dict[str, np.ndarray]]


def param(default: Any, help: str, **meta: Any) -> Any:
    """A parameter field: its default and the help text of its ``--flag``.

    Returns:
        The dataclass field.
    """
    return field(default=default, metadata={"help": help, **meta})


def check_positive(params: Any, *names: str, allow_zero: bool = False) -> None:
    """Raise a one-line error unless each named parameter is positive.

    Raises:
        UserError: Naming the flag and the value.
    """
    for k in names:
        v = getattr(params, k)
        if v is not None and not (v >= 0 if allow_zero else v > 0):
            raise UserError(f"--{k.replace('_', '-')} must be "
                            f"{'>= 0' if allow_zero else '> 0'}, got {v}")


@dataclass(frozen=True)
class Headline:
    """A headline scalar of a measure, as tables and reports show it.

    Attributes:
        key: The stored attribute.
        label: Its name in tables.
        sem: The attribute holding its standard error, if any.
        flatter: ``"lower"`` if a smaller value means a flatter solution,
            ``"higher"`` if a larger one does.
        distribution: Dataset of per-direction values the key is the median of
            (compared by a bootstrap of the median ratio).
        report: Whether the ``paper`` report tabulates it.
        converged: Attribute saying whether the value converged; tables show
            "not converged (residual r)" when it did not.
        residual: Attribute holding that residual.
    """

    key: str
    label: str
    sem: str | None = None
    flatter: str = "lower"
    distribution: str | None = None
    report: bool = True
    converged: str | None = None
    residual: str | None = None

    def note(self, scalars: Mapping[str, Any]) -> str:
        """``"not converged (residual r)"`` when the value did not converge, else ``""``.

        Returns:
            The note.
        """
        if self.converged is None or bool(scalars.get(self.converged, True)):
            return ""
        r = scalars.get(self.residual, math.nan) if self.residual else math.nan
        return f"not converged (residual {float(r):.2g})"


@dataclass(frozen=True)
class MeasureSpec:
    """One measure: what it computes, from which parameters, and what it stores.

    Attributes:
        name: Registry name (``--measures`` value and group name).
        summary: One line for ``--help`` and the docs.
        params: Frozen dataclass of its parameters (fields are CLI flags).
        compute: ``compute(ctx, params) -> (scalars, arrays)``.
        unit: What its progress bar counts (``HVPs``, ``fb`` or ``f`` passes).
        headline: The headline scalars.
        datasets: Names of the arrays it stores.
        line: One line from the stored scalars (for logs and ``info``).
        reference: The paper.
        order: Position in the default run order (cheap HVP measures first,
            so they share one gradient graph).
        applies: ``applies(ctx, params)`` gives the one-line reason the measure
            cannot run on the context's model with these parameters (``None``
            if it can); ``"all"`` skips it with that line, a call naming it
            raises it.
    """

    name: str
    summary: str
    params: type
    compute: Callable[[MeasureContext, Any], Result]
    unit: str
    headline: tuple[Headline, ...]
    datasets: tuple[str, ...]
    line: Callable[[Mapping[str, Any]], str]
    reference: str
    order: int = 100
    applies: Callable[[MeasureContext, Any], str | None] | None = None

    def why_not(self, ctx: MeasureContext, params: Any) -> str | None:
        """Why the measure cannot run in ``ctx`` with ``params`` (``None``: it can).

        Returns:
            The reason, or ``None``.
        """
        return None if self.applies is None else self.applies(ctx, params)


_SPECS: dict[str, MeasureSpec] = {}


def register(spec: MeasureSpec) -> MeasureSpec:
    """Add a measure to the registry.

    Returns:
        ``spec``.

    Raises:
        ValueError: If the name is taken or a parameter name clashes with a
            common parameter or another measure's parameter of another default.
    """
    if spec.name in _SPECS and _SPECS[spec.name] is not spec:
        raise ValueError(f"measure {spec.name!r} is registered twice")
    common = {f.name for f in dataclasses.fields(MeasureConfig)}
    for f in dataclasses.fields(spec.params):
        if f.name in common:
            raise ValueError(f"measure {spec.name}: parameter {f.name!r} clashes with a "
                             "common parameter; rename it")
        for other in _SPECS.values():
            for g in dataclasses.fields(other.params):
                if g.name == f.name and (g.default != f.default or g.type != f.type):
                    raise ValueError(
                        f"measure {spec.name}: parameter {f.name!r} is also "
                        f"{other.name}'s with another default or type; rename it")
    _SPECS[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every public module of :mod:`landscape.sharpness` (they register)."""
    pkg = sys.modules["landscape.sharpness"]
    for m in pkgutil.iter_modules(pkg.__path__):
        if not m.name.startswith("_"):
            importlib.import_module(f"landscape.sharpness.{m.name}")


def specs() -> dict[str, MeasureSpec]:
    """Every registered measure, in run order.

    Returns:
        ``{name: spec}``.
    """
    importlib.import_module("landscape.sharpness")  # its __init__ discovers the modules
    return dict(sorted(_SPECS.items(), key=lambda kv: (kv[1].order, kv[0])))


def headlines() -> list[tuple[str, Headline]]:
    """``(measure, headline)`` of every headline that reports tabulate (``report=True``).

    Returns:
        The pairs, in run order.
    """
    return [(name, h) for name, sp in specs().items() for h in sp.headline if h.report]


def spec(name: str) -> MeasureSpec:
    """The spec of ``name``.

    Returns:
        The spec.

    Raises:
        UserError: For an unknown name (the message lists the known ones).
    """
    all_ = specs()
    if name not in all_:
        raise UserError(f"unknown measure {name!r}; choose from {','.join(all_)}")
    return all_[name]


def parse_measures(text: str | Iterable[str]) -> list[str]:
    """``"hessian,width"`` (or ``"all"``) as a list of known measure names.

    Returns:
        The measures in run order.

    Raises:
        UserError: For an unknown or empty list.
    """
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    names = list(specs())
    if items == ["all"]:
        return names
    bad = [s for s in items if s not in names]
    if bad or not items:
        raise UserError(f"unknown measure(s) {bad}; choose from {','.join(names)} or all")
    return [m for m in names if m in items]


# =========================================================================== config
@dataclass(frozen=True)
class MeasureConfig:
    """Parameters every measure shares (each field is a ``landscape sharpness`` flag)."""

    samples: int = param(1000, "size of the fixed, seeded train subset every measure "
                         "uses (all train samples if there are fewer)")
    seed: int = param(0, "seed of the subset, probes, noise and directions")
    dtype: str = param("float32", "compute dtype (float64 for tight eigenvalues)",
                       choices=("float32", "float64"))
    eval_batch_size: int = param(4096, "samples per forward pass of the evaluation")
    device: str | None = param(None, "cpu or cuda (default: the model's device; cpu for "
                               "run files)")

    def validate(self) -> MeasureConfig:
        """Check the ranges; return ``self``.

        Returns:
            ``self``.
        """
        check_positive(self, "samples", "eval_batch_size")
        return self


def all_params() -> dict[str, dataclasses.Field]:
    """Every measure parameter by name (shared names appear once).

    Returns:
        ``{name: field}``.
    """
    out: dict[str, dataclasses.Field] = {}
    for s in specs().values():
        for f in dataclasses.fields(s.params):
            out.setdefault(f.name, f)
    return out


def params_of(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The parameter dataclass of measure ``name`` from a flat ``{param: value}`` dict.

    Unknown keys are ignored (they belong to other measures).

    Returns:
        The parameters.

    Raises:
        UserError: If a value breaks the parameter's declared range.
    """
    from landscape.config import from_dict

    s = spec(name)
    fields = {f.name for f in dataclasses.fields(s.params)}
    return from_dict({k: v for k, v in (values or {}).items() if k in fields}, s.params)


def params_json(name: str, common: MeasureConfig, params: Any) -> str:
    """The JSON stored as a measure's ``params`` attribute (equal JSON: same result).

    Returns:
        Sorted-key JSON of the common sample/seed/dtype and the measure's parameters.
    """
    d = {"samples": common.samples, "seed": common.seed, "dtype": common.dtype,
         **dataclasses.asdict(params)}
    return json.dumps(d, sort_keys=True)


# =========================================================================== result
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


# =========================================================================== context
class Counted:
    """A loss, metric, objective or HVP that counts its calls and ticks a bar."""

    def __init__(self, fn: Any, bar: Any = None) -> None:
        self.fn, self.bar, self.calls = fn, bar, 0

    def _tick(self) -> None:
        self.calls += 1
        if self.bar is not None:
            self.bar.update(1)

    def __call__(self, *args: Any) -> Any:
        """Call the wrapped function.

        Returns:
            Its value.
        """
        self._tick()
        return self.fn(*args)


class CountedObjective(Counted):
    """:class:`Counted` for an objective: value, gradient and HVP calls count."""

    def value(self, theta: Tensor) -> float:
        """The wrapped objective's value.

        Returns:
            The value.
        """
        self._tick()
        return self.fn.value(theta)

    def value_and_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        """The wrapped objective's value and gradient.

        Returns:
            Both.
        """
        self._tick()
        return self.fn.value_and_grad(theta)

    def hvp(self, theta: Tensor) -> HVP:
        """The wrapped objective's HVP, counting products.

        Returns:
            ``v -> H v``.
        """
        return Counted(self.fn.hvp(theta), self.bar)

    __call__ = value  # type: ignore[assignment]


class MeasureContext:
    """What a measure's ``compute`` gets: the solution, its loss, HVP and helpers.

    Built by :func:`measure` (a user's model and data) or by the run-file
    runner.  The loss is the mean train loss over ``data`` with BatchNorm in
    eval mode and the solution's own statistics, accumulated over batches.

    Args:
        model: The network (copied, in the compute dtype; the caller's stays as it is).
        data: Train data (tensors or a ``DataLoader``).
        theta: ``(n,)`` solution weights (default: the model's).
        buffers: ``(n_buffers,)`` BN buffers (default: the model's).
        loss: Criterion (default cross-entropy).
        common: The shared parameters.
        init: ``(n,)`` weights at initialization (PAC-Bayes ``init`` bounds).
        n_train: Number of training samples the solution was fit on (bounds).

    Raises:
        UserError: If the loss at ``theta`` is not finite.
    """

    def __init__(self, model: nn.Module, data: Any, *, theta: Tensor | None = None,
                 buffers: Tensor | None = None, loss: Any = None,
                 common: MeasureConfig | None = None, init: Tensor | None = None,
                 n_train: int | None = None) -> None:
        self.common = common or MeasureConfig()
        self.dtype = torch.float64 if self.common.dtype == "float64" else torch.float32
        device = model_device(model) if self.common.device is None else torch.device(
            self.common.device)
        self.device = device
        self.layout = ParamLayout.from_module(model)
        self.buffer_layout = ParamLayout.buffers_of(model)
        th = self.layout.read(model, dtype=torch.float64) if theta is None else theta
        self.layout.check_vector(th, "solution weights")
        bf = (self.buffer_layout.read(model, buffers=True, dtype=torch.float64)
              if buffers is None else buffers)
        self.model = copy.deepcopy(model).to(device=device, dtype=self.dtype).eval()
        self.theta = th.detach().to(device, self.dtype)
        self.buffers = bf.detach().to(self.dtype)
        if self.buffer_layout.numel:  # the solution's BN statistics, held fixed
            self.buffer_layout.write(self.model, self.buffers, buffers=True)
        self.data = data
        self.loss_fn = loss if isinstance(loss, Loss) else Loss(loss)
        # A loader's graphs are kept when its samples fit one in-memory batch: the
        # memory the tensors path spends, and one backward pass per HVP instead of all.
        self.risk = EmpiricalRisk(self.model, data, self.loss_fn, device=device,
                                  dtype=self.dtype,
                                  graph_samples=self.common.eval_batch_size)
        self.init = init
        self.n_train = n_train
        self.bar: Any = None
        self._classifier: bool | None = None
        self._hvp: HVP | None = None
        self._recompute: Evaluator | None = None
        base = self.risk.value(self.theta)
        if not math.isfinite(base):
            raise UserError(
                f"the loss at the measured solution is {base}; the weights or the data "
                "hold NaN/inf (a diverged checkpoint?): check them before measuring")
        self.base_loss = base

    @property
    def n(self) -> int:
        """Number of parameters."""
        return self.layout.numel

    @property
    def seed(self) -> int:
        """The common seed."""
        return self.common.seed

    @property
    def samples(self) -> int:
        """Number of samples the loss averages."""
        return self.risk.num_samples

    @property
    def classifier(self) -> bool:
        """Whether the model gives class scores for integer targets (0-1 error defined)."""
        if self._classifier is None:
            self._classifier = self.risk.classifies(self.theta)
        return self._classifier

    def objective(self) -> CountedObjective:
        """The train loss, counted on the current bar.

        Returns:
            The objective.
        """
        return CountedObjective(self.risk, self.bar)

    def count(self, fn: Callable[..., Any]) -> Counted:
        """``fn`` counted on the current bar.

        Returns:
            The wrapper.
        """
        return Counted(fn, self.bar)

    def hvp(self) -> Counted:
        """The HVP at the solution (one gradient graph shared by every HVP measure).

        Returns:
            ``v -> H v``, counted on the current bar.
        """
        if self._hvp is None:
            self._hvp = self.risk.hvp(self.theta)
        return Counted(self._hvp, self.bar)

    def error(self, theta: Tensor) -> float:
        """Train 0-1 error at ``theta`` (BN statistics of the solution).

        Returns:
            The error rate.
        """
        return self.risk.error(theta)

    def recomputed_loss(self, theta: Tensor) -> float:
        """Train loss at ``theta`` with BN statistics recomputed there.

        Returns:
            The loss (the plain loss for a model without BatchNorm).
        """
        if not self.buffer_layout.numel:
            return self.risk.value(theta)
        if self._recompute is None:
            self._recompute = Evaluator(copy.deepcopy(self.model), self.data,
                                        loss=self.loss_fn, bn=BNMode.RECOMPUTE,
                                        device=self.device,
                                        batch_size=self.common.eval_batch_size)
        return self._recompute.evaluate(theta, splits=("train",))["train"].loss


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


def measure(model: nn.Module, data: Any, measures: str | Sequence[str] = "all", *,
            loss: Any = None, theta: Tensor | None = None, buffers: Tensor | None = None,
            seed: int = 0, dtype: str = "float32", device: str | None = None,
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
        loss: ``criterion(output, target)`` (default cross-entropy).
        theta: Weights to measure at (default: the model's).
        buffers: BN buffers (default: the model's).
        seed: Seed of probes, noise and directions.
        dtype: ``float32`` or ``float64``.
        device: Where to compute (default: the model's device).
        eval_batch_size: Batch size for in-memory tensors.
        progress: tqdm bars on stderr.
        **params: Measure parameters by name (e.g. ``top_k=5``, ``tau=0.1``).

    Returns:
        The result, or results by name.

    Raises:
        UserError: For unknown measures or parameters, or a non-finite loss.
    """
    names = parse_measures(measures)
    known = all_params()
    bad = sorted(set(params) - set(known))
    if bad:
        raise UserError(f"unknown measure parameter(s) {bad}; valid: {sorted(known)}")
    n = getattr(data, "num_samples", None)
    common = MeasureConfig(samples=n or 1, seed=seed, dtype=dtype,
                           eval_batch_size=eval_batch_size, device=device)
    from landscape.data import as_batches

    ctx = MeasureContext(model, as_batches(data, eval_batch_size), theta=theta,
                         buffers=buffers, loss=loss, common=common)
    common = dataclasses.replace(common, samples=ctx.samples)
    ctx.common = common
    chosen = {m: params_of(m, params) for m in names}
    if measures == "all":  # every measure that applies to this model; say which do not
        for m in list(names):
            reason = spec(m).why_not(ctx, chosen[m])
            if reason is not None:
                warnings.warn(f"measure {m!r} skipped: {reason}", UserWarning,
                              stacklevel=2)
                names.remove(m)
    out = {m: run_measure(ctx, m, chosen[m], progress=progress) for m in names}
    single = isinstance(measures, str) and measures != "all" and "," not in measures
    return out[names[0]] if single else out
