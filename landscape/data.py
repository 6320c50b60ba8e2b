r"""Datasets and the one batch iterator every analysis reads.

Two layers:

* **Batches** (:func:`as_batches`): the analyses take data as in-memory tensors
  ``(inputs, targets)`` (:class:`TensorBatches`, the fast path: moved to the
  device once and split into batches) or as any re-iterable of ``(inputs,
  targets)`` batches such as a ``torch.utils.data.DataLoader``
  (:class:`StreamBatches`: each batch is moved to the device as it is used,
  so memory does not grow with the data set).
* **Data sets** (:func:`load_dataset`): the registry behind ``--data``.  Every
  loader returns a :class:`TensorData` with train and test tensors in memory
  plus metadata for the run file.  ``mnist1d`` is the default and is
  generated offline; ``mnist``, ``kaggle-digits``, ``svhn``, ``cifar10`` and
  ``cifar100`` read the official files from a data root (nothing is
  downloaded unless ``download=True``).

Example:
    >>> d = load_dataset("mnist1d", root=None, num_samples=200, seed=0)
    >>> tuple(d.x_train.shape), tuple(d.x_test.shape), d.n_classes
    ((160, 1, 40), (40, 1, 40), 10)
    >>> b = as_batches((d.x_train, d.y_train), batch_size=64)
    >>> [len(y) for _, y in b], b.num_samples
    ([64, 64, 32], 160)
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape._errors import UserError, UserTypeError

Batch = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------- batches
class TensorBatches:
    """In-memory ``(inputs, targets)`` split into batches: the fast path.

    The tensors are moved to a device once (:meth:`to`, cached), so iterating
    costs only the slicing.

    Args:
        x: ``(N, ...)`` inputs.
        y: ``(N, ...)`` targets (class indices or regression targets).
        batch_size: Samples per batch (the last one may be smaller).

    Raises:
        UserError: If ``x`` and ``y`` differ in length, are empty, or the batch
            size is not positive.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int = 4096) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise UserTypeError(
                f"in-memory data must be a pair of tensors (inputs, targets), got "
                f"({type(x).__name__}, {type(y).__name__}); pass torch tensors or a "
                "DataLoader")
        if len(x) != len(y):
            raise UserError(f"inputs have {len(x)} samples but targets {len(y)}; pass "
                            "inputs and targets of the same length")
        if len(y) == 0:
            raise UserError("the data has no samples; pass at least one (inputs, "
                            "targets) pair")
        if batch_size < 1:
            raise UserError(f"batch size must be positive, got {batch_size}")
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self._moved: dict[tuple[torch.device, torch.dtype | None], TensorBatches] = {}

    @property
    def num_samples(self) -> int:
        """Number of samples."""
        return len(self.y)

    def __iter__(self) -> Iterator[Batch]:
        """Yield ``(inputs, targets)`` batches in order."""
        return zip(self.x.split(self.batch_size), self.y.split(self.batch_size),
                   strict=True)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None
           ) -> TensorBatches:
        """The same batches on ``device`` (floating inputs cast to ``dtype``), cached.

        Returns:
            A :class:`TensorBatches` whose tensors live on ``device``.
        """
        key = (torch.device(device), dtype)
        if key not in self._moved:
            x = self.x.to(key[0])
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            y = self.y.to(key[0])
            if dtype is not None and y.is_floating_point():
                y = y.to(dtype)
            moved = TensorBatches(x, y, self.batch_size)
            moved._moved[key] = moved
            self._moved[key] = moved
        return self._moved[key]


class StreamBatches:
    """Any re-iterable of ``(inputs, targets)`` batches, e.g. a ``DataLoader``.

    Each batch is checked and moved to the device as it is used, so memory
    does not grow with the number of samples.  The iterable is read once per
    pass; it must yield the same batches every pass (no ``shuffle``) for the
    curvature measures, which check this on the first batch.

    Args:
        batches: The iterable; an iterator (single pass) is refused.

    Raises:
        UserTypeError: If ``batches`` is a one-shot iterator or not iterable.
    """

    def __init__(self, batches: Iterable[Any]) -> None:
        if isinstance(batches, Iterator):
            raise UserTypeError(
                "the data is a one-shot iterator; pass something that can be iterated "
                "again on every pass, e.g. a DataLoader or a list of batches")
        if not isinstance(batches, Iterable):
            raise UserTypeError(
                f"data of type {type(batches).__name__} is not iterable; pass (inputs, "
                "targets) tensors or a DataLoader of (inputs, targets) batches")
        self.batches = batches
        self._num_samples: int | None = None

    @property
    def num_samples(self) -> int | None:
        """Samples per pass, known after the first full pass (``None`` before)."""
        return self._num_samples

    def __iter__(self) -> Iterator[Batch]:
        """Yield the checked ``(inputs, targets)`` batches (not yet moved)."""
        n = 0
        for i, batch in enumerate(self.batches):
            xb, yb = check_batch(batch, i)
            n += len(yb)
            yield xb, yb
        if n == 0:
            raise UserError("the data loader yielded no batch; pass a non-empty "
                            "DataLoader (check the dataset length and drop_last)")
        self._num_samples = n


def check_batch(batch: Any, index: int = 0) -> Batch:
    """``batch`` as an ``(inputs, targets)`` pair of equal-length tensors.

    Returns:
        The pair.

    Raises:
        UserTypeError: If the batch is not a pair of tensors.
        UserError: If inputs and targets differ in length.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        what = (f"a {type(batch).__name__} of length {len(batch)}"
                if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}")
        raise UserTypeError(
            f"batch {index} of the data is {what}, not an (inputs, targets) pair; make "
            "the loader yield (inputs, targets), e.g. DataLoader(TensorDataset(x, y)) "
            "or a collate_fn returning a pair")
    xb, yb = batch
    if not isinstance(xb, Tensor) or not isinstance(yb, Tensor):
        raise UserTypeError(
            f"batch {index} holds ({type(xb).__name__}, {type(yb).__name__}), not "
            "tensors; make the loader yield (inputs, targets) tensors")
    if len(xb) != len(yb):
        raise UserError(f"batch {index} has {len(xb)} inputs but {len(yb)} targets; "
                        "make the loader yield matching inputs and targets")
    return xb, yb


Batches = TensorBatches | StreamBatches


def as_batches(data: Any, batch_size: int = 4096) -> Batches:
    """The one batch iterator behind every analysis.

    Args:
        data: ``(inputs, targets)`` tensors (in memory, the fast path), a
            :class:`TensorBatches` / :class:`StreamBatches`, or any re-iterable
            of ``(inputs, targets)`` batches such as a ``DataLoader``.
        batch_size: Batch size for in-memory tensors.

    Returns:
        The batches.

    Raises:
        UserTypeError: For data of another form.
    """
    if isinstance(data, (TensorBatches, StreamBatches)):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, Tensor) for t in data):
        return TensorBatches(data[0], data[1], batch_size)
    if isinstance(data, Tensor):
        raise UserTypeError("data is a single tensor; pass (inputs, targets) or a "
                            "DataLoader of (inputs, targets) batches")
    return StreamBatches(data)


@dataclass
class TensorData:
    """Train and test tensors of one dataset.

    Attributes:
        name: Registry name.
        x_train: ``(n_train, *in_shape)`` float32 inputs.
        y_train: ``(n_train,)`` int64 labels.
        x_test: ``(n_test, *in_shape)`` float32 inputs.
        y_test: ``(n_test,)`` int64 labels.
        n_classes: Number of classes.
        x_predict: Unlabelled inputs to predict (Kaggle ``test.csv``), if any.
        meta: Plain values stored as ``/data`` attributes.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    x_predict: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(self.x_train.shape[1:])

    def attrs(self) -> dict[str, Any]:
        """Metadata for the run file's ``/data`` group."""
        return {"name": self.name, "n_train": len(self.y_train),
                "n_test": len(self.y_test), "in_shape": list(self.in_shape),
                "n_classes": self.n_classes, **self.meta}

    def batches(self, split: str = "train", batch_size: int = 4096) -> TensorBatches:
        """The ``train`` or ``test`` split as :class:`TensorBatches`.

        Returns:
            The batches.

        Raises:
            UserError: For an unknown split.
        """
        if split not in ("train", "test"):
            raise UserError(f"unknown split {split!r}; use train or test")
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test,
                                                                     self.y_test)
        return TensorBatches(x, y, batch_size)

    def splits(self, batch_size: int = 4096) -> tuple[TensorBatches, TensorBatches]:
        """The train and test splits as :class:`TensorBatches`.

        Returns:
            ``(train, test)``.
        """
        return self.batches("train", batch_size), self.batches("test", batch_size)

    def subset(self, train: int | None, test: int | None, seed: int) -> TensorData:
        """A deterministic random subset (``None`` keeps a split whole).

        Raises:
            UserError: If more samples are asked for than the split has.
        """
        g = torch.Generator().manual_seed(seed)

        def pick(
            x: Tensor, y: Tensor, n: int | None, split: str
        ) -> tuple[Tensor, Tensor]:
            if n is None or n == len(y):
                return x, y
            if not 0 < n <= len(y):
                raise UserError(
                    f"--{split}-samples {n} is out of range: the {split} split of "
                    f"{self.name} has {len(y)} samples"
                )
            idx = torch.randperm(len(y), generator=g)[:n].sort().values
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, train, "train")
        xte, yte = pick(self.x_test, self.y_test, test, "test")
        meta = {**self.meta, "subset_seed": seed}
        return replace(
            self, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, meta=meta
        )


Loader = Callable[..., TensorData]
DATASETS: dict[str, Loader] = {}


@dataclass(frozen=True)
class DatasetShape:
    """What a registered dataset's loader returns: one input's shape and the classes.

    The model registry checks a model against this before any file is read.
    """

    in_shape: tuple[int, ...]
    n_classes: int


#: :class:`DatasetShape` of every registered dataset, by name.
DATASET_SHAPES: dict[str, DatasetShape] = {}


def register(name: str, in_shape: tuple[int, ...], n_classes: int
             ) -> Callable[[Loader], Loader]:
    """Add a loader to :data:`DATASETS` under ``name``, with the shape of one input
    and the number of classes it returns (:data:`DATASET_SHAPES`)."""

    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        DATASET_SHAPES[name] = DatasetShape(tuple(in_shape), int(n_classes))
        return fn

    return deco


def load_dataset(
    name: str,
    root: str | os.PathLike | None = "data",
    *,
    train_samples: int | None = None,
    test_samples: int | None = None,
    seed: int = 0,
    **options: Any,
) -> TensorData:
    """Load a registered dataset as tensors, optionally a seeded subset of it.

    Args:
        name: One of :data:`DATASETS`.
        root: Folder holding the files (``None``: no cache, generate in memory).
        train_samples: Keep this many training samples (``None``: all).
        test_samples: Keep this many test samples (``None``: all).
        seed: Seed of the subset (and of generated data).
        **options: Loader-specific options (e.g. ``download``, ``num_samples``).

    Returns:
        The dataset.

    Raises:
        UserError: For an unknown name, a missing or malformed file.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    path = None if root is None else Path(root)
    data = DATASETS[name](root=path, seed=seed, **options)
    if train_samples is not None or test_samples is not None:
        data = data.subset(train_samples, test_samples, seed)
    return data


# --------------------------------------------------------------------------- mnist1d
@register("mnist1d", (1, 40), 10)
def load_mnist1d(
    root: Path | None, seed: int = 0, num_samples: int = 5000, **_: Any
) -> TensorData:
    """MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package.

    The ``num_samples`` sequences of length 40 are split 80/20 into train and
    test, as the package does.  With a ``root`` the arrays are cached in
    ``root/mnist1d/`` as ``.npz`` (never a pickle).
    """
    cache = None
    if root is not None:
        cache = root / "mnist1d" / f"mnist1d-n{num_samples}-seed{seed}.npz"
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        arrays = _generate_mnist1d(num_samples, seed)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")  # no race
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)

    def xs(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None, :]

    def ys(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return TensorData(
        "mnist1d", xs(arrays["x"]), ys(arrays["y"]), xs(arrays["x_test"]),
        ys(arrays["y_test"]), 10, meta={"num_samples": num_samples, "seed": seed},
    )


def _generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {k: d[k] for k in ("x", "y", "x_test", "y_test")}


# --------------------------------------------------------------------------- helpers
def _need_root(root: Path | None, name: str, files: str) -> Path:
    """``root`` itself, or a UserError for file-based datasets without one."""
    if root is None:
        raise UserError(
            f"dataset {name!r} reads {files} from disk; pass --data-root DIR"
        )
    return root


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _find(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first ``dir/name`` that is a file, trying every name in each dir in turn."""
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def _find_dir(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first of ``dirs`` holding every one of ``names``."""
    return next((d for d in dirs if all((d / n).is_file() for n in names)), None)


def _looked(dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def _unit(x: np.ndarray) -> Tensor:
    """``(N, C, H, W)`` uint8 pixels as float32 in ``[0, 1]`` (like ToTensor)."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8)).float().div_(255)


def _signed(x: np.ndarray) -> Tensor:
    """``(N, C, H, W)`` uint8 pixels as ``(x/255 - 0.5)/0.5`` (Normalize(0.5, 0.5))."""
    return _unit(x).sub_(0.5).div_(0.5)


def _labels(y: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _torchvision_call(what: str, fallback: str, fn: Callable[[], Any]) -> Any:
    """Run a torchvision dataset constructor, turning its failures into a UserError."""
    try:
        return fn()
    except Exception as e:  # RuntimeError, URLError, pickle errors, ...
        raise UserError(f"{what} failed ({_first_line(e)}); {fallback}") from e


# --------------------------------------------------------------------------- mnist
_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES = 0x00000803
_IDX_LABELS = 0x00000801


def _mnist_names(name: str) -> list[str]:
    """Accepted spellings of an MNIST file: ``-idx`` (torchvision) or ``.idx``, raw or ``.gz``."""
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def _read_idx(path: Path, images: bool) -> np.ndarray:
    """Parse an MNIST IDX file (raw or ``.gz``) into uint8 ``(N, 28, 28)`` or ``(N,)``.

    Raises:
        UserError: If the file is unreadable, has the wrong magic number or size.
    """
    bad = f"{path}: expected an IDX file (MNIST format)"
    fix = "replace it with the original file or pass --data-root"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{bad} but could not read it ({_first_line(e)}); {fix}") from e
    magic, header = (_IDX_IMAGES, 16) if images else (_IDX_LABELS, 8)
    if len(raw) < header:
        raise UserError(f"{bad} but it has only {len(raw)} bytes; {fix}")
    got, n, *dims = struct.unpack(f">I{header // 4 - 1}i", raw[:header])
    if got != magic:
        raise UserError(
            f"{bad} with magic number 0x{magic:08X} but found 0x{got:08X}; {fix}"
        )
    if n < 0 or (images and tuple(dims) != (28, 28)):
        raise UserError(f"{bad} of 28x28 images but the header says {n}x{dims}; {fix}")
    shape = (n, *dims)
    size = header + int(np.prod(shape))
    if len(raw) != size:
        raise UserError(
            f"{bad} of {size} bytes for {n} items but it has {len(raw)} bytes; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


@register("mnist", (1, 28, 28), 10)
def load_mnist(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """MNIST from the four IDX files (raw or ``.gz``), parsed with numpy.

    The files are looked for in ``root/MNIST/raw/`` (torchvision's layout),
    ``root/`` and ``root/mnist/``, named as torchvision names them
    (``train-images-idx3-ubyte``) or with a dot before ``idx``
    (``train-images.idx3-ubyte``), raw or ``.gz``.  Inputs are float32
    ``(N, 1, 28, 28)`` in ``[0, 1]``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If files are missing, fetch them with torchvision (needs a network).
    """
    root = _need_root(root, "mnist", "the MNIST IDX files")
    dirs = [root / "MNIST" / "raw", root, root / "mnist"]

    def find() -> dict[str, Path | None]:
        return {k: _find(dirs, _mnist_names(n)) for k, n in _MNIST_FILES.items()}

    paths = find()
    if download and None in paths.values():
        import torchvision

        _torchvision_call(
            f"downloading MNIST into {root}",
            f"without a network put the IDX files in {root / 'MNIST' / 'raw'} "
            "or pass --data-root",
            lambda: torchvision.datasets.MNIST(str(root), download=True),
        )
        paths = find()
    missing = [_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        names = ", ".join(f"{n} (or {n.replace('-idx', '.idx')})" for n in missing)
        raise UserError(
            f"MNIST file(s) {names}, raw or .gz, not found in "
            f"{_looked(dirs)}; "
            f"expected the MNIST IDX files; put them in "
            f"{root / 'MNIST' / 'raw'} or pass --data-root "
            "(or --download where a network exists)"
        )
    found: dict[str, Path] = {k: p for k, p in paths.items() if p is not None}
    arrays = {k: _read_idx(p, images=k.startswith("x")) for k, p in found.items()}
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise UserError(
                f"{found[f'y_{split}']}: has {ny} labels but "
                f"{found[f'x_{split}'].name} has {nx} images; use matching MNIST files"
            )
        y = arrays[f"y_{split}"]
        if len(y) and y.max() > 9:
            raise UserError(
                f"{found[f'y_{split}']}: label {int(y.max())} is not a digit 0-9; "
                "expected an IDX file (MNIST format) of MNIST labels"
            )
    return TensorData(
        "mnist",
        _unit(arrays["x_train"][:, None]), _labels(arrays["y_train"]),
        _unit(arrays["x_test"][:, None]), _labels(arrays["y_test"]), 10,
        meta={"files": [str(p) for p in found.values()], "format": "idx"},
    )


# --------------------------------------------------------------------------- kaggle
_KAGGLE_PIXELS = 784


def _read_kaggle_csv(path: Path, labelled: bool) -> np.ndarray:
    """Rows of a Kaggle Digit Recognizer CSV as int32 ``(N, 785)`` or ``(N, 784)``.

    Raises:
        UserError: For a wrong header, a malformed row or out-of-range values.
    """
    columns = [f"pixel{i}" for i in range(_KAGGLE_PIXELS)]
    shown = "pixel0,...,pixel783"
    if labelled:
        columns, shown = ["label", *columns], "label," + shown
    fix = f"expected the Kaggle Digit Recognizer header {shown}"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [c.strip().strip('"') for c in f.readline().strip().split(",")]
            if header != columns:
                head = ",".join(header[:3]) + (",..." if len(header) > 3 else "")
                raise UserError(
                    f"{path}: wrong CSV columns ({len(header)} columns starting "
                    f"{head!r}); {fix}"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "contained no data"
                rows = np.loadtxt(f, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: not a Kaggle Digit Recognizer CSV ({_first_line(e)}); "
            f"{fix} and one row of {len(columns)} integers per image"
        ) from e
    if rows.shape[0] == 0:
        raise UserError(f"{path}: has a header but no rows; {fix} and rows under it")
    if rows.shape[1] != len(columns):
        raise UserError(
            f"{path}: rows have {rows.shape[1]} values but the header has "
            f"{len(columns)}; {fix} ({_KAGGLE_PIXELS} pixels per image)"
        )
    pixels = rows[:, 1:] if labelled else rows
    if pixels.min() < 0 or pixels.max() > 255:
        raise UserError(f"{path}: pixel values must be 0-255; {fix}")
    if labelled and (rows[:, 0].min() < 0 or rows[:, 0].max() > 9):
        raise UserError(f"{path}: labels must be digits 0-9; {fix}")
    return rows


@register("kaggle-digits", (1, 28, 28), 10)
def load_kaggle_digits(
    root: Path | None, seed: int = 0, test_fraction: float = 1 / 6, **_: Any
) -> TensorData:
    """Kaggle Digit Recognizer: ``root/train.csv`` and optional ``root/test.csv``.

    ``test.csv`` has no labels, so the labelled test split is a hold-out of
    ``train.csv`` drawn with ``seed``; ``test.csv`` becomes ``x_predict``
    (``None`` if the file is absent).  Inputs are float32 ``(N, 1, 28, 28)``
    in ``[0, 1]``.  Files are also found in ``root/digit-recognizer/``.

    Args:
        root: Data folder.
        seed: Seed of the hold-out split.
        test_fraction: Fraction of ``train.csv`` held out as the test split.
    """
    root = _need_root(root, "kaggle-digits", "train.csv")
    dirs = [root, root / "digit-recognizer"]
    train = _find(dirs, ["train.csv"])
    if train is None:
        raise UserError(
            f"kaggle-digits: train.csv not found in {_looked(dirs)}; expected the "
            "Kaggle Digit Recognizer CSV (label,pixel0,...,pixel783); put train.csv "
            f"(and test.csv) in {root} or pass --data-root"
        )
    if not 0 < test_fraction < 1:
        raise UserError(
            f"test_fraction {test_fraction} is out of range; use a fraction strictly "
            "between 0 and 1 (default 1/6)"
        )
    rows = _read_kaggle_csv(train, labelled=True)
    n = len(rows)
    if n < 2:
        raise UserError(f"{train}: has {n} row; a train/test hold-out needs at least 2")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test_idx = perm[:n_test].sort().values.numpy()
    train_idx = perm[n_test:].sort().values.numpy()

    def images(a: np.ndarray) -> Tensor:
        return _unit(a.reshape(-1, 1, 28, 28))

    files = [str(train)]
    x_predict = None
    predict = train.parent / "test.csv"
    if predict.is_file():
        x_predict = images(_read_kaggle_csv(predict, labelled=False))
        files.append(str(predict))
    return TensorData(
        "kaggle-digits",
        images(rows[train_idx, 1:]), _labels(rows[train_idx, 0]),
        images(rows[test_idx, 1:]), _labels(rows[test_idx, 0]), 10,
        x_predict=x_predict,
        meta={"files": files, "format": "csv", "test_fraction": float(test_fraction),
              "holdout_seed": int(seed),
              "n_predict": 0 if x_predict is None else len(x_predict)},
    )


def write_submission(path: str | os.PathLike, predictions: Tensor | np.ndarray) -> Path:
    """Write a Kaggle Digit Recognizer submission (``ImageId,Label``, ids from 1).

    The file is written to a temporary name and then renamed, so a crash never
    leaves a half-written submission.

    Args:
        path: Output CSV.
        predictions: ``(N,)`` predicted digits, or ``(N, 10)`` scores (argmax is taken).

    Returns:
        The path written.

    Raises:
        UserError: If the predictions are not digits 0-9.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     print(write_submission(Path(d) / "s.csv", [7, 2]).read_text(), end="")
        ImageId,Label
        1,7
        2,2
    """
    if isinstance(predictions, Tensor):
        predictions = predictions.detach().cpu().numpy()
    p = np.asarray(predictions)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    if p.ndim != 1 or p.size == 0:
        raise UserError(
            f"predictions have shape {p.shape}; pass (N,) digits or (N, 10) scores"
        )
    whole = np.issubdtype(p.dtype, np.floating) and bool(np.all(p == np.round(p)))
    if not (np.issubdtype(p.dtype, np.integer) or whole):
            raise UserError(f"predictions of dtype {p.dtype} are not whole digits 0-9")
    labels = p.astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(
            f"predictions must be digits 0-9, got values {labels.min()}..{labels.max()}"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write("ImageId,Label\n")
            f.writelines(f"{i},{v}\n" for i, v in enumerate(labels.tolist(), start=1))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def kaggle_split(data: TensorData, n_train: int = 42_000) -> TensorData:
    """MNIST at the Kaggle Digit Recognizer's scale: ``train.csv`` and a held-out ``test.csv``.

    The competition's 42,000 labelled and 28,000 unlabelled digits are MNIST's
    70,000 images.  Here the images are taken in file order (the 60,000 of
    ``train-images`` then the 10,000 of ``t10k-images``): the first ``n_train``
    are the training split (``train.csv``), the rest are held out.  The held-out
    images are both the test split (their labels score the models) and
    ``x_predict`` (the images a Kaggle submission is written for), so the test
    accuracy is the submission's score.  No randomness: every seed sees the same
    split.

    Args:
        data: MNIST as :func:`load_mnist` returns it (official train/test split).
        n_train: Images in the training split.

    Returns:
        The re-split data.

    Raises:
        UserError: If ``n_train`` leaves no image on either side.

    Example:
        >>> d = TensorData("mnist", torch.zeros(6, 1), torch.arange(6), torch.ones(4, 1),
        ...                torch.arange(6, 10), 10)
        >>> k = kaggle_split(d, n_train=7)
        >>> k.y_train.tolist(), k.y_test.tolist(), k.x_predict.ravel().tolist()
        ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9], [1.0, 1.0, 1.0])
    """
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    if not 0 < n_train < len(y):
        raise UserError(f"kaggle_train {n_train} is out of range: {data.name} has "
                        f"{len(y)} images; keep some on both sides (Kaggle: 42000)")
    n_official = len(data.y_train)
    def spans(lo: int, hi: int) -> str:  # images lo..hi-1 of the pooled file order
        parts = []
        if lo < n_official:
            parts.append(f"train-images {lo}..{min(hi, n_official) - 1}")
        if hi > n_official:
            parts.append(f"t10k-images {max(lo - n_official, 0)}..{hi - n_official - 1}")
        return " and ".join(parts)

    n_official = len(data.y_train)
    meta = {**data.meta, "split": "kaggle", "kaggle_train": int(n_train),
            "train_images": spans(0, n_train), "held_out_images": spans(n_train, len(y)),
            "n_predict": len(y) - n_train}
    return replace(data, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                   y_test=y[n_train:], x_predict=x[n_train:], meta=meta)


# --------------------------------------------------------------------------- svhn
_SVHN_FORMAT = "expected an SVHN .mat file with X (32x32x3xN) and y"


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as uint8 ``(N, 3, 32, 32)`` and ``y`` with 10 mapped to 0.

    Raises:
        UserError: For an unreadable file or missing/misshapen ``X``/``y``.
    """
    import scipy.io

    fix = "re-download it or pass --data-root"
    try:
        m = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # ValueError, MatReadError, OSError, ...
        raise UserError(
            f"{path}: cannot read it ({_first_line(e)}); {_SVHN_FORMAT}; {fix}"
        ) from e
    x, y = m.get("X"), m.get("y")
    if x is None or y is None:
        keys = sorted(k for k in m if not k.startswith("__"))
        raise UserError(f"{path}: has keys {keys}; {_SVHN_FORMAT}; {fix}")
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise UserError(
            f"{path}: X has shape {x.shape} and y {y.shape}; {_SVHN_FORMAT}; {fix}"
        )
    if x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
        raise UserError(f"{path}: X values must be pixels 0-255; {_SVHN_FORMAT}; {fix}")
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 10):
        raise UserError(f"{path}: y must hold digits 1-10 (10 is 0); {_SVHN_FORMAT}")
    return x.transpose(3, 2, 0, 1).astype(np.uint8), labels % 10


@register("svhn", (3, 32, 32), 10)
def load_svhn(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat``.

    The files are looked for in ``root/`` and ``root/svhn/``.  Label 10 is
    digit 0.  Inputs are float32 ``(N, 3, 32, 32)`` normalized as
    ``(x/255 - 0.5)/0.5``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If files are missing, fetch them with torchvision (needs a network).
    """
    root = _need_root(root, "svhn", "train_32x32.mat and test_32x32.mat")
    dirs = [root, root / "svhn"]
    found: dict[str, Path] = {}
    for split in ("train", "test"):
        name = f"{split}_32x32.mat"
        path = _find(dirs, [name])
        if path is None and download:
            import torchvision

            _torchvision_call(
                f"downloading SVHN {split} into {root}",
                f"without a network put {name} in {root} or pass --data-root",
                lambda split=split: torchvision.datasets.SVHN(
                    str(root), split=split, download=True),
            )
            path = _find(dirs, [name])
        if path is None:
            raise UserError(
                f"svhn: {name} not found in {_looked(dirs)}; expected the SVHN .mat "
                f"files (train_32x32.mat, test_32x32.mat); put {name} in {root} or "
                "pass --data-root (or --download where a network exists)"
            )
        found[split] = path
    x_train, y_train = _read_svhn_mat(found["train"])
    x_test, y_test = _read_svhn_mat(found["test"])
    return TensorData(
        "svhn", _signed(x_train), _labels(y_train), _signed(x_test), _labels(y_test),
        10, meta={"files": [str(p) for p in found.values()], "format": "mat",
                  "normalize": [0.5, 0.5]},
    )


# --------------------------------------------------------------------------- cifar
@dataclass(frozen=True)
class _CifarSpec:
    name: str
    n_classes: int
    bin_dir: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int  # bytes before the pixels of a record
    label_at: int  # which of them is the label
    py_dir: str

    @property
    def record(self) -> str:
        labels = ("1 label byte" if self.label_bytes == 1
                  else "coarse and fine label bytes")
        return f"{self.name.upper()} binary records ({labels} + 3072 pixel bytes)"


_CIFAR = {
    "cifar10": _CifarSpec(
        "cifar10", 10, "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
        1, 0, "cifar-10-batches-py"),
    "cifar100": _CifarSpec(
        "cifar100", 100, "cifar-100-binary", ("train.bin",), ("test.bin",),
        2, 1, "cifar-100-python"),
}


def _read_cifar_bin(path: Path, spec: _CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(N, 3, 32, 32)`` uint8 and labels of one CIFAR binary file.

    Raises:
        UserError: If the size is not a whole number of records or a label is too big.
    """
    size = spec.label_bytes + 3072
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % size:
        raise UserError(
            f"{path}: {raw.size} bytes is not a whole number of {size}-byte records; "
            f"expected {spec.record}; re-download it or pass --data-root"
        )
    raw = raw.reshape(-1, size)
    labels = raw[:, spec.label_at].astype(np.int64)
    if labels.max() >= spec.n_classes:
        raise UserError(
            f"{path}: label {int(labels.max())} is not below {spec.n_classes}; "
            f"expected {spec.record}"
        )
    return raw[:, spec.label_bytes:].reshape(-1, 3, 32, 32), labels


def _load_cifar(spec: _CifarSpec, root: Path | None, download: bool) -> TensorData:
    root = _need_root(root, spec.name, f"the {spec.name} binary files")
    dirs = [root / spec.bin_dir, root / spec.name / spec.bin_dir, root]
    folder = _find_dir(dirs, spec.train + spec.test)
    meta: dict[str, Any] = {"normalize": [0.5, 0.5]}
    if folder is not None:
        split = {}
        for key, names in (("train", spec.train), ("test", spec.test)):
            parts = [_read_cifar_bin(folder / n, spec) for n in names]
            split[key] = (np.concatenate([p[0] for p in parts]),
                          np.concatenate([p[1] for p in parts]))
        meta |= {"files": [str(folder / n) for n in spec.train + spec.test],
                 "format": "cifar-binary"}
    elif download or (root / spec.py_dir).is_dir():
        import torchvision

        cls = (torchvision.datasets.CIFAR10 if spec.name == "cifar10"
               else torchvision.datasets.CIFAR100)
        split = {}
        for key in ("train", "test"):
            ds = _torchvision_call(
                f"loading {spec.name} from {root / spec.py_dir} with torchvision"
                + (" (download=True)" if download else ""),
                f"put the official binary version in {root / spec.bin_dir} or the "
                f"python version in {root / spec.py_dir}, or pass --data-root",
                lambda key=key: cls(str(root), train=key == "train", download=download),
            )
            split[key] = (np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2),
                          np.asarray(ds.targets, dtype=np.int64))
        meta |= {"files": [str(root / spec.py_dir)], "format": "cifar-python"}
    else:
        wanted = ", ".join(spec.train + spec.test)
        raise UserError(
            f"{spec.name}: {wanted} not found in {_looked(dirs)} (nor {spec.py_dir}/ "
            f"in {root}); expected {spec.record}; put them in {root / spec.bin_dir} "
            "or pass --data-root (or --download where a network exists)"
        )
    (x_train, y_train), (x_test, y_test) = split["train"], split["test"]
    return TensorData(
        spec.name, _signed(x_train), _labels(y_train), _signed(x_test),
        _labels(y_test), spec.n_classes, meta=meta,
    )


@register("cifar10", (3, 32, 32), 10)
def load_cifar10(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """CIFAR-10 from the binary version (``cifar-10-batches-bin/``), without pickle.

    Falls back to torchvision for the python version (``cifar-10-batches-py/``)
    when that folder exists or ``download`` is true.  Inputs are float32
    ``(N, 3, 32, 32)`` normalized as ``(x/255 - 0.5)/0.5``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If the files are missing, fetch them with torchvision.
    """
    return _load_cifar(_CIFAR["cifar10"], root, download)


@register("cifar100", (3, 32, 32), 100)
def load_cifar100(
    root: Path | None, seed: int = 0, download: bool = False, **_: Any
) -> TensorData:
    """CIFAR-100 (fine labels) from the binary version (``cifar-100-binary/``).

    Falls back to torchvision for the python version (``cifar-100-python/``)
    when that folder exists or ``download`` is true.  Inputs are float32
    ``(N, 3, 32, 32)`` normalized as ``(x/255 - 0.5)/0.5``.

    Args:
        root: Data folder.
        seed: Unused (the splits are the official ones).
        download: If the files are missing, fetch them with torchvision.
    """
    return _load_cifar(_CIFAR["cifar100"], root, download)


# --------------------------------------------------------------------------- label noise
@dataclass(frozen=True)
class LabelNoise:
    """Which train labels were replaced, and by what.

    Attributes:
        fraction: The requested fraction ``P``.
        seed: The run's seed.
        indices: ``(k,)`` sorted positions in the train split, ``k = round(P n)``.
        original: ``(k,)`` the labels there before.
        noisy: ``(k,)`` the labels trained on (each differs from ``original``).
    """

    fraction: float
    seed: int
    indices: Tensor
    original: Tensor
    noisy: Tensor


#: Mixed into the label-noise seed so its stream differs from the init and shuffling ones.
_NOISE_STREAM = 0x6E015E


def corrupt_labels(y: Tensor, n_classes: int, fraction: float, seed: int,
                   ) -> tuple[Tensor, LabelNoise]:
    r"""Replace ``round(fraction * n)`` labels by a different class, uniformly chosen.

    The positions are a seeded uniform sample without replacement; each new
    label is :math:`(y + u) \bmod C` with :math:`u` uniform on ``1..C-1``, so it
    never equals the old one.  Same ``seed``, same corruption.

    Args:
        y: ``(n,)`` int64 class labels.
        n_classes: Number of classes ``C`` (>= 2).
        fraction: ``P`` in ``[0, 1)``.
        seed: Seed (the run's ``--seed``).

    Returns:
        The new labels (a copy) and the :class:`LabelNoise` record.

    Raises:
        UserError: If ``fraction`` is outside ``[0, 1)`` or there is one class.

    Example:
        >>> y = torch.zeros(10, dtype=torch.int64)
        >>> y2, noise = corrupt_labels(y, 10, 0.3, seed=0)
        >>> int((y2 != y).sum()), noise.indices.numel(), bool((noise.noisy != 0).all())
        (3, 3, True)
    """
    if not 0 <= fraction < 1:
        raise UserError(f"--label-noise must lie in [0, 1), got {fraction}")
    if n_classes < 2 and fraction > 0:
        raise UserError("label noise needs at least two classes")
    n = len(y)
    k = round(fraction * n)
    rng = np.random.default_rng([int(seed), _NOISE_STREAM])
    idx = np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, np.int64)
    idx_t = torch.from_numpy(idx.astype(np.int64))
    shift = torch.from_numpy(rng.integers(1, max(n_classes, 2), size=k).astype(np.int64))
    original = y[idx_t].clone()
    noisy = (original + shift) % n_classes
    out = y.clone()
    out[idx_t] = noisy
    return out, LabelNoise(float(fraction), int(seed), idx_t, original, noisy)


# --------------------------------------------------------------------------- folds
def kfold_indices(n: int, k: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Shuffled ``k``-fold splits of ``range(n)`` as ``(train_idx, val_idx)`` pairs.

    Every index is in exactly one validation fold; fold sizes differ by at most 1.

    Example:
        >>> folds = kfold_indices(10, 5, seed=0)
        >>> sorted(torch.cat([v for _, v in folds]).tolist()) == list(range(10))
        True

    Raises:
        UserError: If ``k`` is not between 2 and ``n``.
    """
    if not 2 <= k <= n:
        raise UserError(f"--folds {k} is invalid for {n} samples; use 2 <= k <= n")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = torch.tensor_split(perm, k)
    return [
        (torch.cat([f for j, f in enumerate(folds) if j != i]).sort().values,
         folds[i].sort().values)
        for i in range(k)
    ]
