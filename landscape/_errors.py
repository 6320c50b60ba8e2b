"""The one exception type for mistakes a user can fix.

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; the
Python API lets it propagate.  Messages name the problem and the fix.
"""


class UserError(Exception):
    """Bad input (a file, a flag, a shape) that the user can fix; the message says how."""
