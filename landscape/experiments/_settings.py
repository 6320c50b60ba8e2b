"""Typed protocol settings: the ``[experiment]`` table of a config as a frozen dataclass.

Each protocol declares its settings once, as a frozen dataclass derived from
:class:`Settings`: the field names are the valid ``[experiment]`` keys (with
:data:`RUNNER_KEYS`), the annotations their types, and the defaults either the
protocol's own or, for a measure's parameter, the measure registry's
(:func:`measure_default`), never a copy of it.  :meth:`Settings.parse` reads a
table (the keys it does not name are the runner's) and checks each value's type
in one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from landscape._errors import UserError

#: ``[experiment]`` keys of the runner, valid in every protocol.
RUNNER_KEYS = frozenset({"protocol", "seeds", "quick"})


def measure_default(name: str) -> Any:
    """The measure registry's default of a parameter (or of a common one, such as
    ``samples``), so that protocol settings do not copy it.

    Returns:
        The default.

    Example:
        >>> measure_default("tau"), measure_default("samples")
        (0.1, 1000)
    """
    from landscape.sharpness import MeasureConfig, all_params

    fields = {f.name: f for f in dataclasses.fields(MeasureConfig)} | all_params()
    return fields[name].default


def _convert(tp: Any, v: Any, key: str) -> Any:
    """``v`` as type ``tp`` (int, float, str, tuples, dicts, ``X | None``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None:
            return None
        tps = [a for a in args if a is not type(None)]
        for t in tps:  # the first that takes it (``int | str``: 3 stays 3, "auto" a str)
            if t is str and not isinstance(v, str):
                continue
            try:
                return _convert(t, v, key)
            except UserError:
                continue
        raise UserError(f"[experiment] {key} = {v!r}: expected {tp}")
    if origin is tuple:
        if isinstance(v, str | bytes) or not isinstance(v, typing.Iterable):
            raise UserError(f"[experiment] {key} = {v!r}: expected a list")
        return tuple(_convert(args[0], x, key) for x in v)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(v, Mapping):
            raise UserError(f"[experiment] {key} = {v!r}: expected a table")
        return dict(v)
    if tp in (int, float, str):
        if isinstance(v, bool) or (tp is not str and isinstance(v, str)) or (
                tp is int and isinstance(v, float) and not v.is_integer()):
            raise UserError(f"[experiment] {key} = {v!r}: expected {tp.__name__}")
        try:
            return tp(v)
        except (TypeError, ValueError):
            raise UserError(f"[experiment] {key} = {v!r}: expected {tp.__name__}") from None
    return v


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every protocol's settings (no keys of its own)."""

    @classmethod
    def keys(cls) -> frozenset[str]:
        """The valid ``[experiment]`` keys: the fields and :data:`RUNNER_KEYS`.

        Returns:
            The keys.
        """
        return RUNNER_KEYS | {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> typing.Self:
        """The settings of an ``[experiment]`` table (other keys are the runner's).

        Returns:
            The settings, each value converted to its field's type.

        Raises:
            UserError: For a value of the wrong type.
        """
        hints = typing.get_type_hints(cls)
        kw = {f.name: _convert(hints[f.name], table[f.name], f.name)
              for f in dataclasses.fields(cls) if f.name in table}
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), in field order, for results files.

        Returns:
            The dict.
        """
        def plain(v: Any) -> Any:
            if isinstance(v, tuple | list):
                return [plain(x) for x in v]
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
