"""FashionMNIST-format data: Debian's public dataset-fashion-mnist, or an instructor's own
private set in the same IDX files; and how much of a set is public images."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from grader.datasets.errors import DataBuildError
from grader.datasets.idx import IDX_DTYPES, read_idx

log = logging.getLogger(__name__)

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
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, 28, 28)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
_MAGIC_OF = {IMAGES_MAGIC: "an images file", LABELS_MAGIC: "a labels file"}


def idx_path(folder: Path, split: str, kind: str) -> Path:
    """The IDX file of ``split`` ("train"/"test") and ``kind`` ("images"/"labels"), .gz or plain."""
    stem = f"{_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataBuildError(f"FashionMNIST file {stem}[.gz] not found in {folder}; {_hint(folder)}")


def _hint(folder: Path) -> str:
    if folder == DEFAULT_FASHION_DIR:
        return INSTALL_HINT
    return ("a FashionMNIST-format set is a folder with t10k-images-idx3-ubyte[.gz] and "
            "t10k-labels-idx1-ubyte[.gz] (train-* for training)")


def load_fashion(folder: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of the "train" or "test" split."""
    folder = Path(folder)
    if split not in _PREFIX:
        raise ValueError(f"unknown FashionMNIST split {split!r} (known: train, test)")
    if not folder.is_dir():
        raise DataBuildError(f"FashionMNIST folder {folder} does not exist; {_hint(folder)}")
    images_path = idx_path(folder, split, "images")
    labels_path = idx_path(folder, split, "labels")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    _check_magic(images_path, images, IMAGES_MAGIC)
    _check_magic(labels_path, labels, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        height, width = images.shape[1:]
        raise DataBuildError(
            f"{images_path}: the images are {height}x{width} pixels; FashionMNIST's are 28x28"
        )
    if not len(images):
        raise DataBuildError(f"{images_path}: holds no images")
    if len(labels) != len(images):
        raise DataBuildError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    bad = np.flatnonzero(labels >= len(FASHION_CLASSES))
    if len(bad):
        raise DataBuildError(
            f"{labels_path}: label {int(labels[bad[0]])} of image {int(bad[0])} is not a "
            f"class; labels must be 0-9 ({len(bad)} of {len(labels)} are not)"
        )
    return images, labels.astype(np.int64)


def _check_magic(path: Path, array: np.ndarray, want: int) -> None:
    """The IDX magic number (0x0000 <type code> <dimensions>) must be ``want``."""
    code = next((c for c, d in IDX_DTYPES.items() if d.newbyteorder("=") == array.dtype), 0)
    magic = (code << 8) | array.ndim
    if magic != want:
        other = f" (that of {_MAGIC_OF[magic]})" if magic in _MAGIC_OF else ""
        raise DataBuildError(
            f"{path}: magic number 0x{magic:08X}{other} is not that of {_MAGIC_OF[want]} "
            f"(0x{want:08X})"
        )


def load_fashion_test(folder: Path | str = DEFAULT_FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images uint8 (N, 28, 28) and labels int64 (N,)."""
    return load_fashion(folder, "test")


def load_fashion_train(folder: Path | str = DEFAULT_FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 training images uint8 (N, 28, 28) and labels int64 (N,), for training."""
    return load_fashion(folder, "train")


def _image_digests(images: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def public_image_count(images: np.ndarray, public_dir: Path = DEFAULT_FASHION_DIR) -> int | None:
    """How many of ``images`` (N, 28, 28) are byte for byte images of the public FashionMNIST
    (train and t10k, whose labels anyone can have); None when the public set is not there."""
    public: set[bytes] = set()
    for split in _PREFIX:
        try:
            public.update(_image_digests(load_fashion(public_dir, split)[0]))
        except DataBuildError as exc:
            log.warning("cannot compare with the public FashionMNIST %s split: %s", split, exc)
            return None
    return sum(digest in public for digest in _image_digests(images))
