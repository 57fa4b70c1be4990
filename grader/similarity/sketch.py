"""A small, fixed random projection (CountSketch) of each tensor, for near-duplicate search.

Every element ``j`` of the tensor named ``key`` (with ``n`` elements) goes to one of ``DIM``
buckets with a random sign, both drawn from a generator seeded by ``(key, n)``: the same
for every submission, so sketches of two checkpoints of the same architecture line up.
The sketch is linear (``S(x - r) = S(x) - S(r)``), so the sketch of a change from a
starting checkpoint, or from the mean of a cohort, is a difference of stored sketches; and
the sketches of different tensors use independent hashes, so the sketch of the whole
flattened vector is the sum of its tensors' sketches.

Inner products survive the projection on average (``E <Sx, Sy> = <x, y>``). For near
copies the cosine of the sketches is precise where it matters: ``1 - cos`` comes out
within about ``sqrt(2 / DIM)`` (12 %) of its true value, so 0.999 and 0.99 stay apart;
for unrelated tensors the cosine is ``0 ± 1/sqrt(DIM)``.

Each tensor is centred (its mean taken out) before it is sketched: a constant offset, such
as the positive running variances of batch norm or untrained ones, says nothing about
copying.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

DIM = 128  # buckets per tensor
CHUNK = 1 << 20  # elements hashed at a time: bounds memory for an 11M-element tensor
_CACHE_ELEMENTS = 64 << 20  # hash arrays kept (2 bytes per element): 128 MiB at most
_cache: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_cached_elements = 0


def _hashes(key: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket (uint8) and sign (int8) of every element of tensor ``key`` with ``n`` elements."""
    global _cached_elements
    found = _cache.get((key, n))
    if found is not None:
        _cache.move_to_end((key, n))
        return found
    seed = int.from_bytes(hashlib.blake2b(f"{n}:{key}".encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    buckets = np.empty(n, dtype=np.uint8)
    signs = np.empty(n, dtype=np.int8)
    for start in range(0, n, CHUNK):  # in chunks, always of the same size: the same draws
        stop = min(n, start + CHUNK)
        buckets[start:stop] = rng.integers(0, DIM, stop - start, dtype=np.uint8)
        signs[start:stop] = rng.integers(0, 2, stop - start, dtype=np.int8) * 2 - 1
    _cache[(key, n)] = (buckets, signs)
    _cached_elements += n
    while _cached_elements > _CACHE_ELEMENTS and len(_cache) > 1:
        (_, old_n), _ = _cache.popitem(last=False)
        _cached_elements -= old_n
    return buckets, signs


def centred(values: np.ndarray) -> np.ndarray:
    """The flattened tensor as float64 with its mean taken out."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    return flat - flat.mean() if flat.size else flat


def project(key: str, flat: np.ndarray) -> np.ndarray:
    """The (DIM,) float64 CountSketch of ``flat``, the centred, flattened tensor ``key``."""
    buckets, signs = _hashes(key, flat.size)
    out = np.zeros(DIM, dtype=np.float64)
    for start in range(0, flat.size, CHUNK):
        stop = min(flat.size, start + CHUNK)
        out += np.bincount(buckets[start:stop], weights=signs[start:stop] * flat[start:stop], minlength=DIM)
    return out
