"""The exception types for mistakes a user can fix.

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; the
Python API lets it propagate.  :class:`UserError` is a ``ValueError`` (and
:class:`UserTypeError` also a ``TypeError``), so library users can catch the
standard exception.  Messages name the problem and the fix; a check that serves both
the Python API and the CLI names the keyword argument and its flag (:func:`arg`).
"""

from typing import Any

_NO_VALUE = object()


def arg(name: str, value: Any = _NO_VALUE) -> str:
    """A keyword argument and its CLI flag, as a message names them.

    Example:
        >>> arg("top_k"), arg("bn", "keep")
        ('top_k (--top-k)', "bn='keep' (--bn keep)")

    Returns:
        ``name (--flag)``, or ``name=value (--flag value)`` given a value.
    """
    flag = "--" + name.replace("_", "-")
    return f"{name} ({flag})" if value is _NO_VALUE else f"{name}={value!r} ({flag} {value})"


class UserError(ValueError):
    """Bad input (a file, a flag, a shape) that the user can fix; the message says how."""


class UserTypeError(UserError, TypeError):
    """An argument of the wrong type (a loader yielding dicts, a loss returning a vector)."""


def check_generator(generator: Any, name: str = "generator") -> None:
    """Raise a one-line :class:`UserTypeError` unless ``generator`` is a
    ``torch.Generator`` or ``None``: functions that draw from a caller's generator take
    one, those that build their own take ``seed=``.

    Raises:
        UserTypeError: Naming the type given and the generator to pass (for an int,
            one seeded with it).
    """
    import torch

    if generator is None or isinstance(generator, torch.Generator):
        return
    seed = generator if isinstance(generator, int) and not isinstance(generator, bool) else 0
    raise UserTypeError(f"{name} must be a torch.Generator or None, got "
                        f"{type(generator).__name__}; pass "
                        f"torch.Generator().manual_seed({seed})")


def not_finite(what: str, before: str = "measuring") -> UserError:
    """The one-line error for NaN/inf weights or data (a diverged checkpoint).

    Example:
        >>> str(not_finite("the loss at the measured solution is nan"))[:60]
        'the loss at the measured solution is nan; the weights or the'

    Returns:
        ``what``, the likely cause and the fix (check them before ``before``).
    """
    return UserError(f"{what}; the weights or the data hold NaN/inf (a diverged "
                     f"checkpoint?): check them before {before}")


def check_int(value: Any, name: str, low: int, why: str = "") -> int:
    """``value`` as an int ``>= low`` (numpy integers too, not bools), else one line.

    Args:
        value: The argument.
        name: How the message names it (e.g. ``arg("samples")``).
        low: The least value allowed.
        why: What the number counts, or the fix, added in parentheses.

    Example:
        >>> check_int(3, "steps", 1)
        3

    Returns:
        ``int(value)``.

    Raises:
        UserTypeError: For a bool or a non-integer.
        UserError: Below ``low``.
    """
    import numbers

    tail = f" ({why})" if why else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserTypeError(f"{name} must be an integer >= {low}{tail}, got "
                            f"{type(value).__name__} {value!r}")
    if value < low:
        raise UserError(f"{name} must be >= {low}{tail}, got {value}")
    return int(value)
