"""Paths between optima: mode-connecting curves, alignment modulo permutation, barriers.

Pure like :mod:`landscape.sharpness`: a model, a loss and data in, small
dataclasses out; :mod:`landscape.store.curves` stores them and
:func:`landscape.jobs.connect_runs` runs them on run files.
"""

from landscape.paths.align import (
    AlignedPaths,
    Alignment,
    AlignMethod,
    Merged,
    align,
    align_paths,
    merge,
)
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
    curve_plane_coords,
    curve_plane_grid,
    curve_profile,
    profile_grid,
    train_curve,
)
from landscape.paths.permutation import PermutationSpec, permutation_spec

__all__ = [
    "BARRIER_METRICS",
    "AlignMethod",
    "AlignedPaths",
    "Alignment",
    "Connection",
    "Curve",
    "CurveKind",
    "CurveProfile",
    "CurveState",
    "Merged",
    "PermutationSpec",
    "align",
    "align_paths",
    "barrier",
    "connect",
    "curve_coefficients",
    "curve_plane_coords",
    "curve_plane_grid",
    "curve_profile",
    "merge",
    "permutation_spec",
    "profile_grid",
    "train_curve",
]
