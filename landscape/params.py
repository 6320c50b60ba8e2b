r"""Flat weight vectors with their names kept.

A :class:`ParamLayout` records the name, shape and kind of every parameter (or
buffer) of a model so that a flat vector maps back to a ``state_dict`` by name,
never by position.  Every analysis works on flat ``(n_params,)`` vectors.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    >>> layout = ParamLayout.from_module(net)
    >>> layout.numel, [k.value for k in layout.kinds]
    (12, ['weight', 'bias', 'bn', 'bn'])
    >>> vec = layout.flatten(dict(net.named_parameters()))
    >>> torch.equal(layout.unflatten(vec)["0.weight"], net[0].weight.detach())
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from landscape._errors import UserError, UserTypeError

_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
)


class ParamKind(str, Enum):
    """What a parameter entry is: it decides normalization and zeroing of directions."""

    WEIGHT = "weight"
    BIAS = "bias"
    BN = "bn"  # affine parameters of a normalization layer
    BUFFER = "buffer"


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and kinds of a set of tensors flattened into one vector.

    Args:
        names: Tensor names as in ``module.named_parameters()`` (or buffers).
        shapes: One shape per name.
        kinds: One :class:`ParamKind` per name.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    kinds: tuple[ParamKind, ...]

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.shapes) == len(self.kinds)):
            raise ValueError("names, shapes and kinds must have the same length")

    # ----------------------------------------------------------------- building
    @classmethod
    def from_module(cls, module: nn.Module) -> ParamLayout:
        """Layout of the trainable parameters of ``module`` (in registration order)."""
        norm_params = {
            f"{m_name}.{p_name}" if m_name else p_name
            for m_name, m in module.named_modules()
            if isinstance(m, _NORM_TYPES)
            for p_name, _ in m.named_parameters(recurse=False)
        }
        names, shapes, kinds = [], [], []
        for name, p in module.named_parameters():
            names.append(name)
            shapes.append(tuple(p.shape))
            if name in norm_params:
                kinds.append(ParamKind.BN)
            elif p.ndim <= 1:
                kinds.append(ParamKind.BIAS)
            else:
                kinds.append(ParamKind.WEIGHT)
        return cls(tuple(names), tuple(shapes), tuple(kinds))

    @classmethod
    def buffers_of(cls, module: nn.Module) -> ParamLayout:
        """Layout of the floating-point-storable buffers (BN running stats and counts)."""
        names, shapes = [], []
        for name, b in module.named_buffers():
            names.append(name)
            shapes.append(tuple(b.shape))
        return cls(tuple(names), tuple(shapes), tuple(ParamKind.BUFFER for _ in names))

    # ----------------------------------------------------------------- sizes
    @property
    def numels(self) -> tuple[int, ...]:
        """Number of entries of each tensor."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def numel(self) -> int:
        """Length of the flat vector."""
        return sum(self.numels)

    def slices(self) -> Iterator[tuple[str, slice, tuple[int, ...], ParamKind]]:
        """Yield ``(name, slice into the flat vector, shape, kind)`` per tensor."""
        start = 0
        for name, shape, kind, n in zip(
            self.names, self.shapes, self.kinds, self.numels, strict=True
        ):
            yield name, slice(start, start + n), shape, kind
            start += n

    def mask(self, *kinds: ParamKind) -> Tensor:
        """Boolean ``(numel,)`` mask of the entries whose kind is one of ``kinds``."""
        out = torch.zeros(self.numel, dtype=torch.bool)
        for _, sl, _, kind in self.slices():
            if kind in kinds:
                out[sl] = True
        return out

    # ----------------------------------------------------------------- mapping
    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """Concatenate named tensors into one float vector, by name.

        Raises:
            UserError: If a name of the layout is missing or a shape differs.
        """
        parts = []
        for name, _, shape, _ in self.slices():
            if name not in tensors:
                raise UserError(
                    f"tensor {name!r} is missing: the weights belong to another "
                    "architecture; pass the model they were trained with"
                )
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise UserError(
                    f"tensor {name!r} has shape {tuple(t.shape)}, expected {shape}: "
                    "the weights belong to another architecture"
                )
            parts.append(t.detach().reshape(-1).to(torch.float32 if not
                         t.is_floating_point() else t.dtype))
        if not parts:
            return torch.zeros(0)
        dtype = torch.promote_types(parts[0].dtype, torch.float32)
        return torch.cat([p.to(dtype) for p in parts])

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """Split a flat vector into named views with the stored shapes."""
        self.check_vector(vec)
        return {name: vec[sl].view(shape) for name, sl, shape, _ in self.slices()}

    def check_vector(self, vec: Tensor, what: str = "vector") -> None:
        """Raise a :class:`UserError` unless ``vec`` is a flat vector of this layout.

        Raises:
            UserTypeError: If ``vec`` is not a tensor (a numpy array, a state dict).
            UserError: If it is not ``(numel,)``.
        """
        if not isinstance(vec, Tensor):
            hint = ("convert it with torch.as_tensor(...)" if hasattr(vec, "__array__")
                    else "load it into the model and pass "
                    "ParamLayout.from_module(model).read(model)"
                    if isinstance(vec, Mapping) else
                    "e.g. ParamLayout.from_module(model).read(model)")
            raise UserTypeError(
                f"{what} must be a flat torch tensor of the model's {self.numel} entries, "
                f"got {type(vec).__name__}; {hint}")
        if vec.ndim != 1 or vec.numel() != self.numel:
            raise UserError(
                f"{what} has shape {tuple(vec.shape)} but the model has "
                f"{self.numel} entries: it was made for another model"
            )

    # ----------------------------------------------------------------- module IO
    def read(self, module: nn.Module, *, buffers: bool = False,
             dtype: torch.dtype = torch.float32) -> Tensor:
        """Current parameters (or buffers) of ``module`` as one flat CPU vector.

        Args:
            module: The module.
            buffers: Read the buffers instead of the parameters.
            dtype: The vector's dtype (float32, as run files store them; float64
                keeps a float64 model exact).

        Returns:
            The ``(numel,)`` vector.
        """
        src = dict(module.named_buffers() if buffers else module.named_parameters())
        return self.flatten(src).to(dtype).cpu()

    @torch.no_grad()
    def write(self, module: nn.Module, vec: Tensor, *, buffers: bool = False) -> None:
        """Copy a flat vector into the parameters (or buffers) of ``module`` in place."""
        self.check_vector(vec)
        dst = dict(module.named_buffers() if buffers else module.named_parameters())
        for name, sl, shape, _ in self.slices():
            t = dst[name]
            t.copy_(vec[sl].view(shape).to(t.device, t.dtype))

    # ----------------------------------------------------------------- storage
    def to_json(self) -> str:
        """JSON list of ``[name, shape, kind]`` (what the HDF5 attributes hold)."""
        return json.dumps(
            [[n, list(s), k.value] for n, s, k in
             zip(self.names, self.shapes, self.kinds, strict=True)]
        )

    @classmethod
    def from_json(cls, text: str) -> ParamLayout:
        """Inverse of :meth:`to_json`."""
        rows = json.loads(text)
        return cls(
            tuple(r[0] for r in rows),
            tuple(tuple(r[1]) for r in rows),
            tuple(ParamKind(r[2]) for r in rows),
        )

    def check_module(self, module: nn.Module, *, buffers: bool = False,
                     fix: str = "pass the --model the run was trained with") -> None:
        """Raise a :class:`UserError` unless ``module`` has exactly this layout.

        Args:
            module: The module the stored weights are to go into.
            buffers: Compare its buffers' layout, not its parameters'.
            fix: What the message tells the user to do.
        """
        other = ParamLayout.buffers_of(module) if buffers else self.from_module(module)
        if (other.names, other.shapes) != (self.names, self.shapes):
            missing = set(self.names) ^ set(other.names)
            detail = f" (differs in {sorted(missing)[:3]})" if missing else ""
            raise UserError(
                f"the stored weights belong to another architecture{detail}; {fix}")
