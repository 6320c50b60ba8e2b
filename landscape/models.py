r"""Model registry: small ``nn.Module`` factories by name.

Each entry knows the input shape it accepts, so a model/data mismatch is
refused before training with a message naming a model that fits.

Example:
    >>> net = build_model("seed000-cnn", in_shape=(1, 28, 28), n_classes=10)
    >>> sum(p.numel() for p in net.parameters())
    2174
    >>> sum(p.numel() for p in build_model("mlp", (1, 28, 28), 10, hidden=256).parameters())
    269322
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from landscape._errors import UserError, UserTypeError


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Attributes:
        factory: ``factory(in_shape, n_classes, **kwargs) -> nn.Module``.
        in_shape: Accepted input shape (``None`` entries accept any size; ``None``
            for the whole shape accepts any shape).
        summary: One line for ``--help``.
    """

    factory: Callable[..., nn.Module]
    in_shape: tuple[int | None, ...] | None
    summary: str
    width: str | None = None  # the keyword argument --model-width sets


MODELS: dict[str, ModelSpec] = {}

#: Former names still accepted (configs and run files that use them keep working).
ALIASES = {"mnist1d-mlp": "mlp"}

#: The model the CLI picks for each dataset when ``--model`` is not given.
DEFAULT_MODEL = {
    "mnist1d": "mnist1d-cnn",
    "mnist": "seed000-cnn",
    "kaggle-digits": "seed000-cnn",
    "svhn": "seed004-cnn",
    "cifar10": "vgg16",
    "cifar100": "vgg16",
}


def register(name: str, in_shape: tuple[int | None, ...] | None, summary: str,
             width: str | None = None) -> Callable:
    """Add a factory to :data:`MODELS` (``width``: its width keyword argument, if any)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = ModelSpec(fn, in_shape, summary, width)
        return fn

    return deco


def _fits(want: tuple[int | None, ...] | None, got: tuple[int, ...]) -> bool:
    return want is None or (len(want) == len(got) and all(
        w is None or w == g for w, g in zip(want, got, strict=True)))


def model_entry(name: str) -> ModelSpec | None:
    """The registry entry of ``name`` (or of the model a former name stands for).

    Returns:
        The entry, or ``None`` for an unknown name.
    """
    return MODELS.get(ALIASES.get(name, name))


def models_for(in_shape: tuple[int, ...]) -> list[str]:
    """The registered models that take inputs of ``in_shape``.

    Returns:
        Their names.
    """
    return [n for n, s in MODELS.items() if _fits(s.in_shape, tuple(in_shape))]


def build_model(
    name: str, in_shape: tuple[int, ...], n_classes: int, **kwargs: Any
) -> nn.Module:
    """Build a registered model for inputs of ``in_shape``.

    Raises:
        UserError: For an unknown name or an input shape the model cannot take.
    """
    spec = model_entry(name)
    if spec is None:
        raise UserError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if isinstance(in_shape, int):
        in_shape = (in_shape,)  # a flat input of that many features
    try:
        in_shape = tuple(int(s) for s in in_shape)
    except (TypeError, ValueError):
        raise UserTypeError(f"in_shape must be the shape of one input (a tuple of ints "
                            f"such as (1, 28, 28)), got {in_shape!r}") from None
    if not _fits(spec.in_shape, in_shape):
        fits = models_for(in_shape)
        raise UserError(
            f"model {name} takes inputs of shape {_fmt(spec.in_shape)} but the data "
            f"has shape {in_shape}; choose --model from {fits or 'none registered'}"
        )
    try:
        return spec.factory(in_shape, n_classes, **kwargs)
    except TypeError as e:
        raise UserError(f"bad options for model {name}: {e}") from None


def default_model(dataset: str) -> str:
    """The registry name used for ``dataset`` when no model is given."""
    return DEFAULT_MODEL.get(dataset, "mlp")


def _fmt(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "of any shape"
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


# --------------------------------------------------------------------------- seeds
@register("seed000-cnn", (1, 28, 28), "seed 000's tiny BN CNN for 28x28 digits (2k params)")
def seed000_cnn(in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Conv 1→4, BN, ReLU, MaxPool, Conv 4→4, BN, ReLU, MaxPool, Linear 196→10."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 7 * 7, n_classes),
    )


@register("seed004-cnn", (None, None, None),
          "seed 004's SmallCNN for CxHxW images (4.2M params at 3x32x32, 3.2M at 1x28x28)")
def seed004_cnn(in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Conv C→32, ReLU, Conv 32→64, ReLU, MaxPool, Linear 64·(H/2)·(W/2)→256→10.

    The seed's SVHN model (3×32×32, Linear 16384→256); on other image sizes
    the same layers with the first convolution taking the input's channels
    and the hidden linear layer the pooled feature map (MNIST: 1×28×28, 12544).
    """
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (h // 2) * (w // 2), 256), nn.ReLU(),
        nn.Linear(256, n_classes),
    )


# --------------------------------------------------------------------------- mnist1d
@register("mnist1d-cnn", (1, 40), "1D CNN with BatchNorm for MNIST-1D (5k params)",
          width="width")
def mnist1d_cnn(in_shape: tuple[int, ...], n_classes: int, width: int = 24) -> nn.Module:
    """Three strided Conv1d+BN+ReLU blocks and a linear head (the 1D seed-000 model)."""
    w = width
    return nn.Sequential(
        nn.Conv1d(1, w, 5, stride=2, padding=1), nn.BatchNorm1d(w), nn.ReLU(),
        nn.Conv1d(w, w, 3, stride=2, padding=1), nn.BatchNorm1d(w), nn.ReLU(),
        nn.Conv1d(w, w, 3, stride=2, padding=1), nn.BatchNorm1d(w), nn.ReLU(),
        nn.Flatten(), nn.Linear(w * 5, n_classes),
    )


@register("mnist1d-smallcnn", (1, 40), "seed 004's SmallCNN in 1D for MNIST-1D (no BN)")
def mnist1d_smallcnn(in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Conv1d 1→32, ReLU, Conv1d 32→64, ReLU, MaxPool, Linear 1280→256→10."""
    return nn.Sequential(
        nn.Conv1d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv1d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(64 * 20, 256), nn.ReLU(), nn.Linear(256, n_classes),
    )


@register("mlp", None, "MLP on the flattened input, any shape (also: mnist1d-mlp)",
          width="hidden")
def mlp(in_shape: tuple[int, ...], n_classes: int, hidden: int = 100,
        depth: int = 2) -> nn.Module:
    """``depth`` hidden ReLU layers of ``hidden`` units on the flattened input."""
    n_in = 1
    for s in in_shape:
        n_in *= s
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(n_in, hidden), nn.ReLU()]
        n_in = hidden
    layers.append(nn.Linear(n_in, n_classes))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- cifar
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
          512, 512, 512, "M", 512, 512, 512, "M"]


@register("vgg16", (3, 32, 32), "VGG16 for CIFAR as in the SWA paper (15M; GPU)")
def vgg16(in_shape: tuple[int, ...], n_classes: int, batch_norm: bool = False) -> nn.Module:
    """VGG16 features, then 512→512→512→classes with dropout (SWA paper's VGG16)."""
    layers: list[nn.Module] = []
    c = in_shape[0]
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(c, int(v), 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        c = int(v)
    return nn.Sequential(
        *layers, nn.Flatten(),
        nn.Dropout(), nn.Linear(512, 512), nn.ReLU(True),
        nn.Dropout(), nn.Linear(512, 512), nn.ReLU(True),
        nn.Linear(512, n_classes),
    )


class _PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        out = nn.functional.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(nn.functional.relu(self.bn2(out)))
        return out + skip


@register("preresnet", (3, None, None), "pre-activation ResNet (depth 6n+2) for CIFAR")
def preresnet(in_shape: tuple[int, ...], n_classes: int, depth: int = 20) -> nn.Module:
    """Pre-activation ResNet with basic blocks, 16/32/64 channels (He et al. 2016)."""
    if (depth - 2) % 6:
        raise TypeError(f"depth must be 6n+2 (20, 56, 110), got {depth}")
    n = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(in_shape[0], 16, 3, padding=1, bias=False)]
    c = 16
    for stage, width in enumerate((16, 32, 64)):
        for i in range(n):
            layers.append(_PreActBlock(c, width, 2 if stage and i == 0 else 1))
            c = width
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(c, n_classes)]
    return nn.Sequential(*layers)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (then BN statistics must be handled)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
