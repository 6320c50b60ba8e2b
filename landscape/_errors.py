"""The exception types for mistakes a user can fix.

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; the
Python API lets it propagate.  :class:`UserError` is a ``ValueError`` (and
:class:`UserTypeError` also a ``TypeError``), so library users can catch the
standard exception.  Messages name the problem and the fix.
"""


class UserError(ValueError):
    """Bad input (a file, a flag, a shape) that the user can fix; the message says how."""


class UserTypeError(UserError, TypeError):
    """An argument of the wrong type (a loader yielding dicts, a loss returning a vector)."""
