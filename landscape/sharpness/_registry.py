r"""The measure registry: each measure declared once, next to its maths.

A measure module defines a parameter dataclass (defaults and help text in the
field metadata, :func:`~landscape.sharpness._config.param`), a
``compute(ctx, params) -> (scalars, arrays)`` function and registers a
:class:`MeasureSpec`.  Everything else reads the registry: the model-level API
:func:`~landscape.sharpness.measure`, the run-file runner
(:mod:`landscape.jobs.measures`), the ``landscape sharpness`` flags,
``landscape info``, ``landscape compare``, the ``paper`` report and the
measures table of ``docs/schema.md``.  Modules of
:mod:`landscape.sharpness` are discovered automatically, so a new measure is
one new file (and its test).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape._errors import UserError
from landscape.sharpness._config import MeasureConfig
from landscape.sharpness._context import MeasureContext

#: ``compute``'s return: plain scalars (stored as attributes) and numpy arrays.
Result = tuple[dict[str, Any], dict[str, np.ndarray]]


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

