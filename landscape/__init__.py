"""landscape: SWA vs SGD and the shape of the loss surface around each solution."""

from landscape import _malloc

_malloc.configure()  # before torch allocates: large buffers are reused, not unmapped

__version__ = "0.1.0"
