"""landscape: SWA vs SGD and the shape of the loss surface around each solution."""

__version__ = "0.1.0"
