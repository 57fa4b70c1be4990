"""MNIST-format data without downloads: read the four IDX files, and write ``full-mnist.npz``.

    python mnist_data.py                                   # FashionMNIST from Debian's package
    python mnist_data.py --data ~/data/mnist --out full-mnist.npz

The notebook's first part loads ``full-mnist.npz`` with ``numpy_nn.load_data``. The course
hands that file out (the MNIST digits); if you do not have it, this script writes one
from any folder holding the four IDX files of MNIST or FashionMNIST
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, gzipped or not; torchvision's ``<Name>/raw`` folder works
too). Debian's ``dataset-fashion-mnist`` package puts FashionMNIST in
``/usr/share/datasets/fashion-mnist``; the original files are at
https://github.com/zalandoresearch/fashion-mnist. The npz holds ``x_train`` (N, 28, 28)
uint8, ``y_train`` (N,) uint8, ``x_test`` and ``y_test``: the layout of Keras' ``mnist.npz``.

Needs only numpy. ``train_mynet.py`` reads the IDX files with the same functions.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
from pathlib import Path

import numpy as np

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLITS = ("train", "t10k")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    return data.reshape(shape)


def find_idx(data_dir: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``data_dir`` (or in a torchvision ``*/raw`` folder below it)."""
    data_dir = Path(data_dir)
    folders = [data_dir, *sorted(data_dir.glob("*/raw"))]
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no {name}(.gz) in {data_dir}: pass --data with the folder of the four MNIST or "
        "FashionMNIST IDX files (https://github.com/zalandoresearch/fashion-mnist)"
    )


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``train`` or ``t10k`` split: uint8 images (N, 28, 28) and their labels (N,)."""
    images = read_idx(find_idx(data_dir, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find_idx(data_dir, f"{split}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels in {data_dir}")
    return images, labels


def write_npz(data_dir: Path, out: Path) -> Path:
    """Write the MNIST-like ``out`` (x_train, y_train, x_test, y_test) from the IDX files."""
    (x_train, y_train), (x_test, y_test) = (load_split(data_dir, s) for s in SPLITS)
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial.npz")
    np.savez_compressed(partial, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    partial.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write full-mnist.npz as the options say; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA),
                        help=f"folder of the four IDX files (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=Path("full-mnist.npz"))
    args = parser.parse_args(argv)
    try:
        out = write_npz(args.data, args.out)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with np.load(out) as data:
        counts = ", ".join(f"{k} {data[k].shape}" for k in data.files)
    print(f"wrote {out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
