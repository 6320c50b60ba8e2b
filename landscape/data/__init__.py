r"""Datasets and the one batch iterator every analysis reads.

Two layers:

* **Batches** (:mod:`~landscape.data.batches`, :func:`as_batches`): the analyses
  take data as in-memory tensors ``(inputs, targets)`` (:class:`TensorBatches`,
  the fast path: moved to the device once and split into batches) or as any
  re-iterable of ``(inputs, targets)`` batches such as a
  ``torch.utils.data.DataLoader`` (:class:`StreamBatches`: each batch is moved to
  the device as it is used, so memory does not grow with the data set).
* **Data sets** (:mod:`~landscape.data.registry`, :func:`load_dataset`): the
  registry behind ``--data``.  Every loader returns a :class:`TensorData` with
  train and test tensors in memory plus metadata for the run file.  ``mnist1d``
  is the default and is generated offline; ``mnist``, ``kaggle-digits``,
  ``svhn``, ``cifar10`` and ``cifar100`` read the official files from a data
  root (nothing is downloaded unless ``download=True``).  One reader module per
  data set (``mnist1d``, ``mnist``, ``kaggle``, ``svhn``, ``cifar``) registers
  its loader with ``@register``; the modules of this package are imported on
  import, so a new data set is one new file (and its test).  ``noise`` (label
  noise) and ``folds`` (k-fold splits) transform a loaded data set.

Example:
    >>> d = load_dataset("mnist1d", root=None, num_samples=200, seed=0)
    >>> tuple(d.x_train.shape), tuple(d.x_test.shape), d.n_classes
    ((160, 1, 40), (40, 1, 40), 10)
    >>> b = as_batches((d.x_train, d.y_train), batch_size=64)
    >>> [len(y) for _, y in b], b.num_samples
    ([64, 64, 32], 160)
"""

import importlib
import pkgutil

from landscape.data.batches import (
    Batch,
    Batches,
    StreamBatches,
    TensorBatches,
    as_batches,
    check_batch,
)
from landscape.data.cifar import load_cifar10, load_cifar100
from landscape.data.folds import kfold_indices
from landscape.data.kaggle import kaggle_split, load_kaggle_digits, write_submission
from landscape.data.mnist import load_mnist
from landscape.data.mnist1d import load_mnist1d
from landscape.data.noise import LabelNoise, corrupt_labels
from landscape.data.registry import (
    DATASET_SHAPES,
    DATASETS,
    DatasetShape,
    Loader,
    TensorData,
    load_dataset,
    register,
)
from landscape.data.svhn import load_svhn


def _discover() -> None:
    """Import every public module of this package (a reader registers its loader)."""
    for m in pkgutil.iter_modules(__path__):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


_discover()

__all__ = [
    "DATASETS",
    "DATASET_SHAPES",
    "Batch",
    "Batches",
    "DatasetShape",
    "LabelNoise",
    "Loader",
    "StreamBatches",
    "TensorBatches",
    "TensorData",
    "as_batches",
    "check_batch",
    "corrupt_labels",
    "kaggle_split",
    "kfold_indices",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_kaggle_digits",
    "load_mnist",
    "load_mnist1d",
    "load_svhn",
    "register",
    "write_submission",
]
