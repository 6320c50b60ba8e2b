"""Paths between optima: mode-connecting curves (Bézier, polygonal chain) and barriers.

Pure like :mod:`landscape.sharpness`: a model, a loss and data in, small
dataclasses out; :mod:`landscape.store.curves` stores them and
:func:`landscape.jobs.connect_runs` runs them on run files.
"""

from landscape.paths.curves import (
    BARRIER_METRICS,
    Connection,
    Curve,
    CurveKind,
    CurveProfile,
    CurveState,
    barrier,
    connect,
    curve_coefficients,
    curve_profile,
    profile_grid,
    train_curve,
)

__all__ = ["BARRIER_METRICS", "Connection", "Curve", "CurveKind", "CurveProfile",
           "CurveState", "barrier", "connect", "curve_coefficients", "curve_profile",
           "profile_grid", "train_curve"]
