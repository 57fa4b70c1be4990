"""Read IDX files (the MNIST / FashionMNIST format), gzipped or plain."""

from __future__ import annotations

import gzip
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
