"""The real FashionMNIST data, read from the IDX files of Debian's dataset-fashion-mnist."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grader.datasets.errors import DataBuildError
from grader.datasets.idx import read_idx

DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}
INSTALL_HINT = "install Debian's package with `apt-get install dataset-fashion-mnist`"


def idx_path(folder: Path, split: str, kind: str) -> Path:
    """The IDX file of ``split`` ("train"/"test") and ``kind`` ("images"/"labels"), .gz or plain."""
    stem = f"{_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataBuildError(f"FashionMNIST file {stem}[.gz] not found in {folder}; {INSTALL_HINT}")


def load_fashion(folder: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of the "train" or "test" split."""
    folder = Path(folder)
    if split not in _PREFIX:
        raise ValueError(f"unknown FashionMNIST split {split!r} (known: train, test)")
    if not folder.is_dir():
        raise DataBuildError(f"FashionMNIST folder {folder} does not exist; {INSTALL_HINT}")
    images_path = idx_path(folder, split, "images")
    labels_path = idx_path(folder, split, "labels")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataBuildError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataBuildError(f"{labels_path}: expected uint8 labels of shape (N,)")
    if len(labels) != len(images):
        raise DataBuildError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    if len(labels) and int(labels.max()) >= len(FASHION_CLASSES):
        raise DataBuildError(f"{labels_path}: label {int(labels.max())} is not a class (0-9)")
    return images, labels.astype(np.int64)


def load_fashion_test(folder: Path | str = DEFAULT_FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images uint8 (N, 28, 28) and labels int64 (N,)."""
    return load_fashion(folder, "test")


def load_fashion_train(folder: Path | str = DEFAULT_FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 training images uint8 (N, 28, 28) and labels int64 (N,), for training."""
    return load_fashion(folder, "train")
