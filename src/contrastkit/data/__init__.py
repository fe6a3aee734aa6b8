"""Datasets: in-memory image arrays with a fixed train/test split, and the files they come from.

- ``load_dataset("digits")`` always works (scikit-learn's bundled 8x8 digits).
- ``load_dataset("fashion-mnist")`` reads the standard IDX files (Debian: ``apt-get install
  dataset-fashion-mnist``; elsewhere ``download_fashion_mnist(DIR)`` then ``root=DIR``).
- ``load_dataset("cifar10")`` / ``"cifar100"`` read the python-version batches without executing
  pickled code (under ``root`` or ``$CONTRASTKIT_DATA_DIR``; ``download_cifar(name, DIR)``).
- Any ``.npz`` file of arrays, and any folder of class folders of images
  (:func:`load_image_folder`).

Every loader returns a :class:`DataSplit` of :class:`ArrayDataset` s holding float32 images
``(N, C, H, W)`` in ``[0, 1]`` and int64 labels ``0..K-1``.
"""

from contrastkit.data.cifar import CIFAR_SPECS, download_cifar, find_cifar, load_cifar
from contrastkit.data.datasets import (
    DATA_DIR_ENV,
    SYSTEM_FASHION_MNIST_DIRS,
    ArrayDataset,
    DatasetNotFoundError,
    DataSplit,
    find_fashion_mnist,
    known_datasets,
    load_dataset,
)
from contrastkit.data.download import (
    DEFAULT_URL,
    FASHION_MNIST_FILES,
    DownloadError,
    download_fashion_mnist,
)
from contrastkit.data.idx import IdxFormatError, read_idx, write_idx
from contrastkit.data.image_folder import load_image_folder

__all__ = [
    "CIFAR_SPECS",
    "DATA_DIR_ENV",
    "DEFAULT_URL",
    "FASHION_MNIST_FILES",
    "SYSTEM_FASHION_MNIST_DIRS",
    "ArrayDataset",
    "DataSplit",
    "DatasetNotFoundError",
    "DownloadError",
    "IdxFormatError",
    "download_cifar",
    "download_fashion_mnist",
    "find_cifar",
    "find_fashion_mnist",
    "known_datasets",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
    "read_idx",
    "write_idx",
]
