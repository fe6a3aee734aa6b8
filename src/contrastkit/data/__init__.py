"""Datasets: in-memory image arrays with a fixed train/test split, and the files they come from.

- ``load_dataset("digits")`` always works (scikit-learn's bundled 8x8 digits).
- ``load_dataset("fashion-mnist")`` reads the standard IDX files (Debian: ``apt-get install
  dataset-fashion-mnist``; elsewhere ``download_fashion_mnist(DIR)`` then ``root=DIR``).
- ``load_dataset("cifar10")`` / ``"cifar100"`` read the python-version batches without executing
  pickled code (under ``root`` or ``$CONTRASTKIT_DATA_DIR``; ``download_cifar(name, DIR)``).
- Any ``.npz`` file of arrays, and any folder of class folders of images
  (:func:`load_image_folder`).
- ``load_caption_dataset("digits-captions")`` / ``"fashion-mnist-captions"``: those images paired
  with GENERATED captions (class names, templates, measured attributes; :mod:`.captions`).

Every loader returns a :class:`DataSplit` of :class:`ArrayDataset` s holding float32 images
``(N, C, H, W)`` in ``[0, 1]`` and int64 labels ``0..K-1``. Batch samplers are in
:mod:`contrastkit.data.samplers`, time series and tables in :mod:`contrastkit.data.series`, the IDX
file format in :mod:`contrastkit.data.idx`.

Example:
    >>> from contrastkit.data import load_dataset
    >>> split = load_dataset("digits", seed=0)
    >>> split.train.image_shape, split.train.num_classes
    ((1, 8, 8), 10)
"""

from contrastkit.data.arrays import DATA_DIR_ENV, ArrayDataset, DatasetNotFoundError, DataSplit
from contrastkit.data.biosignals import ECG_WAVES, PPG_WAVES, baseline_wander, gaussian_beats
from contrastkit.data.captions import caption_datasets, load_caption_dataset
from contrastkit.data.cifar import download_cifar, find_cifar, load_cifar
from contrastkit.data.datasets import find_fashion_mnist, known_datasets, load_dataset
from contrastkit.data.download import DownloadError, download_fashion_mnist
from contrastkit.data.image_folder import load_image_folder
from contrastkit.data.video import SpriteVideos, moving_sprites, sample_clip_pairs

__all__ = [
    "DATA_DIR_ENV",
    "ECG_WAVES",
    "PPG_WAVES",
    "ArrayDataset",
    "DataSplit",
    "DatasetNotFoundError",
    "DownloadError",
    "SpriteVideos",
    "baseline_wander",
    "caption_datasets",
    "download_cifar",
    "download_fashion_mnist",
    "find_cifar",
    "find_fashion_mnist",
    "gaussian_beats",
    "known_datasets",
    "load_caption_dataset",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
    "moving_sprites",
    "sample_clip_pairs",
]
