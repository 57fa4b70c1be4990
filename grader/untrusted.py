"""Reading what the sandboxed job left in ``/out``: every byte is hostile input.

The student's code runs in the same process as the runner, so it can write anything the
runner writes: ``.npy`` headers that claim terabytes, ``.npz`` members that inflate to
gigabytes, JSON nested ten thousand deep or holding NaN. Every reader here

- opens without following links and refuses anything but a regular file,
- refuses a file over its byte limit before reading it,
- checks an array's header against the bytes actually present (dtype on a whitelist,
  product of the shape times item size == bytes present, element count within its limit)
  BEFORE anything is allocated, so memory is bounded by the file's size,
- accepts only STORED (uncompressed) ``.npz`` members, so nothing is ever inflated,
- parses JSON within a size and nesting bound, refusing NaN, infinities and huge numbers,

and is one boundary: whatever goes wrong inside (a forged header, a zip that zipfile
chokes on, a MemoryError) comes out as ``ForgedOutput`` with one sentence for the student.
The caller turns that into "damaged or forged output" for the one part or case that file
belongs to: never a grader fault, never a refund, never a crash of the host.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats; never object, void, str
MAX_ITEMSIZE = 8
MAX_NDIM = 32
MAX_HEADER_BYTES = 10_000  # numpy's own default limit for a header it will parse
MAX_NPZ_MEMBERS = 64
MAX_JSON_DEPTH = 16
MAX_JSON_NUMBER_CHARS = 40  # digits of an integer or float literal: no 10**5000


class ForgedOutput(Exception):
    """A file the job wrote cannot be used: damaged, forged or over a limit.

    ``str(exc)`` is one sentence for the student ("predictions.npy: the header claims ...").
    """


@contextlib.contextmanager
def boundary(what: str) -> Iterator[None]:
    """Turn any failure while reading ``what`` into ``ForgedOutput`` (the one exit of this module)."""
    try:
        yield
    except ForgedOutput:
        raise
    except Exception as exc:  # MemoryError, RecursionError, zipfile's and numpy's own: all hostile
        raise ForgedOutput(f"{what} is damaged or forged ({type(exc).__name__})") from exc


# --------------------------------------------------------------------------- files


def read_bytes(path: Path, *, max_bytes: int) -> bytes | None:
    """The whole regular file at ``path`` (None when there is none); never follows a link,
    never reads more than ``max_bytes``."""
    with boundary(path.name):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ForgedOutput(f"{path.name} is a symbolic link, not a file") from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ForgedOutput(f"{path.name} is not a regular file")
            if info.st_size > max_bytes:
                raise ForgedOutput(f"{path.name} is larger than its {max_bytes:,} byte limit")
            chunks, left = [], max_bytes + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if len(data) > max_bytes:  # it grew while we read
            raise ForgedOutput(f"{path.name} is larger than its {max_bytes:,} byte limit")
        return data


# --------------------------------------------------------------------------- arrays


def parse_npy(data: bytes, *, what: str, max_elements: int, kinds: str = NUMERIC_KINDS) -> np.ndarray:
    """The array in ``.npy`` bytes, its header checked against the bytes before any allocation.

    The result is a read-only view of ``data``: no copy, nothing the header could inflate.
    """
    with boundary(what):
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=MAX_HEADER_BYTES)
        else:
            raise ForgedOutput(f"{what} has an unsupported .npy version {version}")
        if (dtype.kind not in kinds or dtype.hasobject or dtype.fields is not None
                or dtype.subdtype is not None or dtype.itemsize > MAX_ITEMSIZE):
            raise ForgedOutput(f"{what} holds {dtype.str!r} values, not a plain array of numbers")
        if len(shape) > MAX_NDIM or any(not isinstance(n, int) or n < 0 for n in shape):
            raise ForgedOutput(f"{what} has an impossible shape")
        count = math.prod(shape)  # Python ints: no overflow, however large the claim
        if count > max_elements:
            raise ForgedOutput(f"{what} claims {count:,} values, more than the {max_elements:,} "
                               "allowed")
        present = len(data) - stream.tell()
        if count * dtype.itemsize != present:
            raise ForgedOutput(f"{what}: the header claims shape {tuple(shape)} of {dtype.str}, "
                               f"but {present:,} bytes of data follow it")
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
        return flat.reshape(shape, order="F" if fortran else "C")


def read_npy(path: Path, *, max_bytes: int, max_elements: int,
             kinds: str = NUMERIC_KINDS) -> np.ndarray | None:
    """The array in the ``.npy`` file at ``path`` (None when there is none); see ``parse_npy``."""
    data = read_bytes(path, max_bytes=max_bytes)
    if data is None:
        return None
    return parse_npy(data, what=path.name, max_elements=max_elements, kinds=kinds)


def read_npz(path: Path, *, max_bytes: int, max_elements: int, max_members: int = MAX_NPZ_MEMBERS,
             kinds: str = NUMERIC_KINDS) -> dict[str, np.ndarray] | None:
    """The arrays of the ``.npz`` file at ``path`` by name (None when there is none).

    Only STORED members: a compressed one is refused unread, so a few kilobytes can never
    inflate to gigabytes on the host. Each member is then checked as one ``.npy``.
    """
    data = read_bytes(path, max_bytes=max_bytes)
    if data is None:
        return None
    with boundary(path.name), zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > max_members:
            raise ForgedOutput(f"{path.name} has {len(infos)} members, more than {max_members}")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise ForgedOutput(f"{path.name}: member {info.filename!r} is compressed; only "
                                   "stored members are read")
        if sum(i.file_size for i in infos) > len(data):  # members that overlap one another
            raise ForgedOutput(f"{path.name} claims more data than the file holds")
        arrays: dict[str, np.ndarray] = {}
        budget = max_elements
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if name == info.filename or name in arrays:
                raise ForgedOutput(f"{path.name}: unexpected member {info.filename!r}")
            raw = archive.read(info)  # exactly compress_size bytes, CRC checked
            array = parse_npy(raw, what=f"{path.name}:{info.filename}", max_elements=budget,
                              kinds=kinds)
            budget -= array.size
            arrays[name] = array
        return arrays


# --------------------------------------------------------------------------- JSON

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def _too_deep(data: bytes, max_depth: int) -> bool:
    """True when brackets nest deeper than ``max_depth`` (or do not balance), found without
    recursion: strings blanked, then innermost pairs removed once per level, in C."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # too few brackets to nest that deep (the common case: one flat object)
    skeleton = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not skeleton:
            return False
        shorter = _PAIR.sub(b"", skeleton)
        if shorter == skeleton:
            return True  # unbalanced: json would refuse it anyway
        skeleton = shorter
    return bool(skeleton)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise ValueError("number too long")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if len(text) > MAX_JSON_NUMBER_CHARS or not math.isfinite(value):
        raise ValueError("number too long or not finite")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_int, parse_float=_float)


def parse_json(data: bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Strict JSON from the job: nesting checked first, NaN, infinities and huge numbers refused.

    Its own boundary, inline: the progress reader calls it once per event line.
    """
    try:
        if _too_deep(data, max_depth):
            raise ForgedOutput(f"{what} nests deeper than {max_depth} levels")
        return _DECODER.decode(data.decode("utf-8"))
    except ForgedOutput:
        raise
    except Exception as exc:  # as in ``boundary``
        raise ForgedOutput(f"{what} is damaged or forged ({type(exc).__name__})") from exc


def read_json(path: Path, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in the file at ``path`` (None when there is none); see ``parse_json``."""
    data = read_bytes(path, max_bytes=max_bytes)
    if data is None:
        return None
    return parse_json(data, what=path.name, max_depth=max_depth)
