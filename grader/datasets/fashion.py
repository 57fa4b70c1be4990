"""Debian's public FashionMNIST (dataset-fashion-mnist) for the kit, the demo and the tests.

The hidden sets are built from a spec's ``from = "idx"`` splits (:mod:`grader.datasets.build`);
this module only knows where the public files lie and what they hold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grader.datasets.idx import load_idx_pair

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


def _hint(folder: Path) -> str:
    if folder == DEFAULT_FASHION_DIR:
        return INSTALL_HINT
    return ("a FashionMNIST-format set is a folder with t10k-images-idx3-ubyte[.gz] and "
            "t10k-labels-idx1-ubyte[.gz] (train-* for training)")


def load_fashion(folder: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of the "train" or "test" split."""
    if split not in _PREFIX:
        raise ValueError(f"unknown FashionMNIST split {split!r} (known: train, test)")
    folder = Path(folder)
    prefix = _PREFIX[split]
    return load_idx_pair(folder, f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte",
                         num_classes=len(FASHION_CLASSES), size=(28, 28), hint=_hint(folder))


def load_fashion_test(folder: Path | str = DEFAULT_FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images uint8 (N, 28, 28) and labels int64 (N,)."""
    return load_fashion(folder, "test")


def load_fashion_train(folder: Path | str = DEFAULT_FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 training images uint8 (N, 28, 28) and labels int64 (N,), for training."""
    return load_fashion(folder, "train")
