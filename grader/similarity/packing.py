"""A JSON head and named NumPy arrays in one byte string, read back without pickle.

    b"SIMPACK1" | head length (8 bytes, little-endian) | JSON head | arrays, each 8-byte aligned

The head lists each array's dtype, shape and byte range; only plain little-endian numbers are
allowed. Unpacking a thousand of these is what opening an index costs, so it is one JSON
parse and a ``frombuffer`` per array (an ``.npz`` parses a header per array: ten times slower).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

MAGIC = b"SIMPACK1"
DTYPES = frozenset({"<i1", "<i2", "<i4", "<i8", "|i1", "|u1", "<f4", "<f8"})


def pack(head: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """``head`` (JSON-able) and ``arrays`` as bytes."""
    layout: dict[str, list[Any]] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        if data.dtype.str not in DTYPES:
            raise ValueError(f"{name}: cannot pack dtype {data.dtype}")
        raw = data.tobytes()
        layout[name] = [data.dtype.str, list(data.shape), offset, len(raw)]
        padded = raw + b"\0" * (-len(raw) % 8)
        chunks.append(padded)
        offset += len(padded)
    text = json.dumps({"head": head, "arrays": layout}).encode()
    text += b" " * (-len(text) % 8)
    return MAGIC + len(text).to_bytes(8, "little") + text + b"".join(chunks)


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The head and the arrays of ``pack``'s bytes; ValueError when they are not such bytes."""
    if data[:8] != MAGIC or len(data) < 16:
        raise ValueError("not packed evidence")
    size = int.from_bytes(data[8:16], "little")
    try:
        described = json.loads(data[16:16 + size])
        start = 16 + size
        arrays = {}
        for name, (dtype, shape, offset, nbytes) in described["arrays"].items():
            if dtype not in DTYPES or offset < 0 or start + offset + nbytes > len(data):
                raise ValueError(f"{name}: damaged")
            kind = np.dtype(dtype)
            count = nbytes // kind.itemsize
            arrays[name] = np.frombuffer(data, dtype=kind, count=count, offset=start + offset).reshape(shape)
        return described["head"], arrays
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"damaged packed evidence ({type(exc).__name__})") from None
