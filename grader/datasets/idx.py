"""Read IDX files (the MNIST / FashionMNIST format), gzipped or plain, and image/label pairs."""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from grader.datasets.errors import DataBuildError

# IDX type codes -> big-endian numpy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIMS = 8
MAX_BYTES = 2**31  # refuse headers that claim more than 2 GiB of data

_GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
_MAGIC_OF = {IMAGES_MAGIC: "an images file", LABELS_MAGIC: "a labels file"}

log = logging.getLogger(__name__)


def read_idx(path: Path | str) -> np.ndarray:
    """Read one IDX file into a native-endian array; DataBuildError names the file if it is bad."""
    path = Path(path)
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if gzipped:
                with gzip.GzipFile(fileobj=raw) as stream:
                    return _parse(stream, path)
            return _parse(raw, path)
    except DataBuildError:
        raise
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataBuildError(f"{path}: not a valid gzip file ({exc})") from exc
    except OSError as exc:
        raise DataBuildError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _parse(stream: IO[bytes] | gzip.GzipFile, path: Path) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4:
        raise DataBuildError(f"{path}: not an IDX file (shorter than its 4-byte header)")
    if head[0] != 0 or head[1] != 0:
        raise DataBuildError(f"{path}: not an IDX file (bad magic number {head.hex()})")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise DataBuildError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataBuildError(f"{path}: IDX header claims {ndim} dimensions (1 to {MAX_DIMS})")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataBuildError(f"{path}: IDX header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > MAX_BYTES:
        raise DataBuildError(f"{path}: IDX header claims {expected} bytes of data, too many")
    data = stream.read(expected + 1)
    if len(data) < expected:
        raise DataBuildError(
            f"{path}: truncated IDX file ({dims} needs {expected} bytes, found {len(data)})"
        )
    if len(data) > expected:
        raise DataBuildError(f"{path}: IDX file has bytes after the data its header describes")
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def idx_file(folder: Path, name: str, hint: str = "") -> Path:
    """``folder/name.gz`` or ``folder/name``; DataBuildError (with ``hint``) if neither exists."""
    stem = name.removesuffix(".gz")
    for candidate in (f"{stem}.gz", stem):
        if (folder / candidate).is_file():
            return folder / candidate
    raise DataBuildError(f"IDX file {stem}[.gz] not found in {folder}" + (f"; {hint}" if hint else ""))


def check_magic(path: Path, array: np.ndarray, want: int) -> None:
    """The IDX magic number (0x0000 <type code> <dimensions>) must be ``want``."""
    code = next((c for c, d in IDX_DTYPES.items() if d.newbyteorder("=") == array.dtype), 0)
    magic = (code << 8) | array.ndim
    if magic != want:
        other = f" (that of {_MAGIC_OF[magic]})" if magic in _MAGIC_OF else ""
        raise DataBuildError(
            f"{path}: magic number 0x{magic:08X}{other} is not that of {_MAGIC_OF[want]} "
            f"(0x{want:08X})"
        )


def load_idx_pair(
    folder: Path, images_name: str, labels_name: str, *, num_classes: int,
    size: tuple[int, int] | None = None, hint: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, H, W) and labels int64 (N,) from two IDX files in ``folder``, checked:
    the magic numbers, ``size`` (H, W) if given, one label per image, labels < num_classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataBuildError(f"IDX folder {folder} does not exist" + (f"; {hint}" if hint else ""))
    images_path = idx_file(folder, images_name, hint)
    labels_path = idx_file(folder, labels_name, hint)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    check_magic(images_path, images, IMAGES_MAGIC)
    check_magic(labels_path, labels, LABELS_MAGIC)
    if size is not None and images.shape[1:] != size:
        height, width = images.shape[1:]
        raise DataBuildError(
            f"{images_path}: the images are {height}x{width} pixels; the spec's size is "
            f"{size[0]}x{size[1]}"
        )
    if not len(images):
        raise DataBuildError(f"{images_path}: holds no images")
    if len(labels) != len(images):
        raise DataBuildError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    bad = np.flatnonzero(labels >= num_classes)
    if len(bad):
        raise DataBuildError(
            f"{labels_path}: label {int(labels[bad[0]])} of image {int(bad[0])} is not a "
            f"class; labels must be 0-{num_classes - 1} ({len(bad)} of {len(labels)} are not)"
        )
    return images, labels.astype(np.int64)


def _image_digests(images: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def public_image_count(images: np.ndarray, public_dir: Path) -> int | None:
    """How many of ``images`` (N, H, W) are byte for byte images of the public IDX set in
    ``public_dir`` (every ``*-images-idx3-ubyte[.gz]`` there: anyone has their labels);
    None when that set is not there."""
    files = sorted(Path(public_dir).glob("*-images-idx3-ubyte*")) if Path(public_dir).is_dir() else []
    if not files:
        log.warning("cannot compare with the public set: no IDX images files in %s", public_dir)
        return None
    public: set[bytes] = set()
    for path in files:
        try:
            public.update(_image_digests(read_idx(path)))
        except DataBuildError as exc:
            log.warning("cannot compare with the public set %s: %s", path, exc)
            return None
    return sum(digest in public for digest in _image_digests(images))
