"""The parameters every measure shares, and the helper that declares a parameter.

A measure's parameter dataclass declares each field with :func:`param` (its default
and the help text of its ``--flag``); :class:`MeasureConfig` holds the fields common
to every measure (sample count, seed, dtype, batch size, device).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, fields
from typing import Any

from landscape._errors import UserError, UserTypeError, arg


def param(default: Any, help: str, **meta: Any) -> Any:
    """A parameter field: its default and the help text of its ``--flag``.

    Returns:
        The dataclass field.
    """
    return field(default=default, metadata={"help": help, **meta})


def check_positive(params: Any, *names: str, allow_zero: bool = False) -> None:
    """Raise a one-line error unless each named parameter is positive.

    Raises:
        UserError: Naming the keyword argument, its flag and the value.
    """
    for k in names:
        v = getattr(params, k)
        if v is not None and not (v >= 0 if allow_zero else v > 0):
            raise UserError(f"{arg(k)} must be "
                            f"{'>= 0' if allow_zero else '> 0'}, got {v}")


def check_choices(params: Any) -> None:
    """Raise a one-line error unless each field declared with ``choices`` holds one.

    Raises:
        UserError: Naming the parameter, the choices and the value.
    """
    for f in fields(params):
        choices = f.metadata.get("choices")
        v = getattr(params, f.name)
        if choices and v not in choices:
            raise UserError(f"{f.name} must be one of {list(choices)}, got {v!r}")


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
        check_choices(self)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise UserTypeError(f"{arg('seed')} must be an int (e.g. 0), got {self.seed!r}")
        return self

