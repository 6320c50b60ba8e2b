"""Alignments of two solutions in HDF5: ``/alignments/<name>`` beside ``/curves``.

Group layout (``docs/schema.md``): attrs ``method``, ``config`` (JSON: seed,
points, samples, repair), ``endpoints`` (JSON: file, solution and SHA-256 of the
weights of each end), ``spec`` (JSON permutation spec), ``params`` (JSON
layout), ``sweeps``, ``complete``, the barriers ``<line|aligned|repair|curve>_<metric>_barrier``
and ``curve`` (the stored curve between the same endpoints, if any);
datasets ``perms/<group>`` (int64: unit ``i`` of the aligned B is B's unit
``perm[i]``), ``aligned`` (the aligned B's weights) and ``aligned_buffers``;
``profiles/line|aligned|repair/`` as a curve's profiles.

The alignment and each finished profile are one atomic edit each, so a kill
loses nothing finished.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

from landscape._errors import UserError
from landscape.params import ParamLayout
from landscape.paths.curves import CurveProfile
from landscape.store._h5 import (
    ANALYSIS_KIND,
    attrs_of,
    edit_file,
    member_attrs,
    member_names,
    new_group,
    open_file,
    plain,
    set_attrs,
    stamp,
    write_array,
)
from landscape.store.curves import CURVE_KINDS, barrier_lines, profile_group, profile_of


def alignment_names(f: h5py.File) -> list[str]:
    """Names of the stored alignments.

    Returns:
        The names.
    """
    return member_names(f, "alignments")


def alignment_attrs(path: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The attributes of ``/alignments/<name>`` (JSON decoded), or ``None`` if absent.

    Returns:
        The attributes.
    """
    if not os.path.exists(path):
        return None
    with open_file(path, CURVE_KINDS) as f:
        return member_attrs(f, "alignments", name)


def write_alignment(path: str | os.PathLike, name: str, perms: Mapping[str, torch.Tensor],
                    aligned: torch.Tensor, aligned_buffers: torch.Tensor,
                    layout: ParamLayout, attrs: Mapping[str, Any]) -> None:
    """Create ``/alignments/<name>`` with the permutations (the file too, if missing)."""
    create = not os.path.exists(path)
    with edit_file(path, create=create, kinds=CURVE_KINDS) as f:
        if create:
            stamp(f, ANALYSIS_KIND)
        g = new_group(f, f"alignments/{name}")
        set_attrs(g, {**attrs, "params": layout.to_json(), "complete": False})
        p = g.require_group("perms")
        for k, v in perms.items():
            write_array(p, k, v.numpy().astype(np.int64))
        write_array(g, "aligned", aligned.float())
        write_array(g, "aligned_buffers", aligned_buffers.float())


def read_alignment(path: str | os.PathLike, name: str
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The stored permutations and the aligned weights and buffers.

    Returns:
        ``(perms, aligned, aligned_buffers)``.
    """
    with open_file(path, CURVE_KINDS) as f:
        g = f["alignments"][name]
        perms = {k: torch.from_numpy(v[()]) for k, v in g["perms"].items()}
        return perms, torch.from_numpy(g["aligned"][()]), torch.from_numpy(
            g["aligned_buffers"][()])


def write_alignment_profile(path: str | os.PathLike, name: str, which: str,
                            profile: CurveProfile, *, complete: bool = False) -> None:
    """Store one profile (``line``, ``aligned`` or ``repair``) and its barriers."""
    with edit_file(path, kinds=CURVE_KINDS) as f:
        g = f["alignments"][name]
        profile_group(g, which, profile)
        if complete:
            g.attrs["complete"] = True


def write_alignment_attrs(path: str | os.PathLike, name: str,
                          attrs: Mapping[str, Any]) -> None:
    """Add attributes (e.g. the curve's barriers) to ``/alignments/<name>``."""
    with edit_file(path, kinds=CURVE_KINDS) as f:
        set_attrs(f["alignments"][name], attrs)


def read_alignment_profile(path: str | os.PathLike, name: str,
                           which: str) -> CurveProfile | None:
    """A stored profile of an alignment, or ``None`` if not yet computed.

    Returns:
        The profile.
    """
    with open_file(path, CURVE_KINDS) as f:
        g = f.get(f"alignments/{name}")
        return None if g is None else profile_of(g, which)


def alignment_profiles(path: str | os.PathLike, name: str) -> dict[str, CurveProfile]:
    """Every stored profile of an alignment, with the linked curve's if there is one.

    Returns:
        ``{which: profile}`` (``curve`` last).

    Raises:
        UserError: If the file holds no alignment ``name`` (naming those it holds).
    """
    with open_file(path, CURVE_KINDS) as f:
        g = f.get(f"alignments/{name}") if isinstance(name, str) else None
        if not isinstance(g, h5py.Group):
            have = alignment_names(f)
            raise UserError(
                f"no alignment {name!r} in {path}; it holds "
                f"{', '.join(map(repr, have)) if have else 'no alignments'}: pass one of "
                "them, or make one with `landscape align`")
        out = {w: p for w in ("line", "aligned", "repair") if (p := profile_of(g, w))}
        curve = plain(g.attrs.get("curve", ""))
        if curve and f"curves/{curve}" in f:
            p = profile_of(f["curves"][curve], "curve")
            if p is not None:
                out["curve"] = p
        return out


def describe_alignments(f: h5py.File) -> list[str]:
    """Lines for ``landscape info``: each alignment with its barriers.

    Returns:
        The lines (none without alignments).
    """
    lines = []
    for name in alignment_names(f):
        a = {k: plain(v) for k, v in attrs_of(f["alignments"][name]).items()}
        ends = a.get("endpoints") or {}
        which = " -> ".join(f"{e.get('file', '?')}:{e.get('solution', '?')}"
                            for e in (ends.get("a", {}), ends.get("b", {})))
        groups = a.get("spec", {}).get("sizes", {}) if isinstance(a.get("spec"),
                                                                  dict) else {}
        lines.append(f"  {name}: {a.get('method')} matching of {len(groups)} group(s), "
                     f"{'complete' if a.get('complete') else 'incomplete'}; {which}")
        lines += barrier_lines(a, ("line", "aligned", "repair", "curve"))
    return lines
