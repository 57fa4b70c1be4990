"""Code similarity of two source files, with copydetect (winnowing, as MOSS does).

copydetect tokenises a file with Pygments and replaces every variable, attribute and
function name, string and comment by one letter (``filter_code``), so renaming identifiers
or rewriting comments changes nothing; then it hashes every k-gram of that text, keeps a
winnowed subset as the fingerprints (``winnow``) and measures two files by the share of
each one's fingerprinted text found in the other (``compare_files``), with the shared
passages as character ranges.

One change: copydetect hashes k-grams with Python's ``hash()``, which differs in every
process, so its fingerprints cannot be stored. Here the k-grams get a fixed polynomial hash
(52 bits, so copydetect's winnowing, which keeps hashes in floats, compares them exactly);
filtering, winnowing, the comparison and the passages are copydetect's own functions.
The starter kit's code is the boilerplate: its fingerprints are taken out of both files
before they are compared, so the template two students both received does not count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

NOISE_CHARS = 25  # k: matches shorter than this are ignored (copydetect's default)
GUARANTEE_CHARS = 30  # matches this long are always found (copydetect's default is 25, no winnowing)
WINDOW = GUARANTEE_CHARS - NOISE_CHARS + 1
MAX_CODE_BYTES = 1 << 20
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, fixed: the same hashes in every process


@dataclass(frozen=True, eq=False)
class CodeFingerprint:
    """One source file: its text, copydetect's filtered form and winnowed fingerprints."""

    file: str
    text: str
    filtered: str
    hashes: np.ndarray  # (m,) int64, winnowed k-gram hashes of ``filtered``, in order
    positions: np.ndarray  # (m,) int64, where each k-gram starts in ``filtered``
    offsets: np.ndarray  # (N, 2) int64, copydetect's map from filtered back to raw positions


@dataclass(frozen=True)
class CodeMatch:
    """How much of two files' own (non-template) code is shared, and where.

    ``similarity`` is the larger of the two shares, so copying a whole file into a longer
    one still shows; ``own_chars`` is how much non-template text each file has (a short one
    gives weak evidence); ``lines_a``/``lines_b`` are the shared passages as 1-based
    inclusive line ranges.
    """

    similarity: float
    shares: tuple[float, float]
    own_chars: tuple[int, int]
    lines_a: tuple[tuple[int, int], ...] = field(default=())
    lines_b: tuple[tuple[int, int], ...] = field(default=())


def _filter(text: str, file: str) -> tuple[str, np.ndarray]:
    from copydetect.utils import filter_code

    filtered, offsets = filter_code(text, file)
    offsets = (
        np.asarray(offsets, dtype=np.int64).reshape(-1, 2) if len(offsets) else np.zeros((0, 2), np.int64)
    )
    return filtered, offsets


def kgram_hashes(text: str, k: int = NOISE_CHARS) -> np.ndarray:
    """A fixed 52-bit hash of every k-character window of ``text`` (int64, len - k + 1 of them)."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(points) < k:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(points, k)
    powers = np.ones(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(k - 2, -1, -1):
            powers[i] = powers[i + 1] * _BASE
        mixed = (windows * powers).sum(axis=1, dtype=np.uint64)
        mixed ^= mixed >> np.uint64(29)
        mixed *= _BASE
    return (mixed >> np.uint64(12)).astype(np.int64)


def fingerprint(file: str, text: str) -> CodeFingerprint:
    """Filter, hash and winnow one file as copydetect does (the language from the file name)."""
    from copydetect.utils import winnow

    filtered, offsets = _filter(text, file)
    hashes = kgram_hashes(filtered)
    if len(hashes):
        hashes, positions = winnow(hashes, WINDOW, remove_duplicates=False)
    else:
        positions = np.zeros(0, dtype=np.int64)
    return CodeFingerprint(
        file=file,
        text=text,
        filtered=filtered,
        hashes=np.asarray(hashes, dtype=np.int64),
        positions=np.asarray(positions, dtype=np.int64),
        offsets=offsets,
    )


def boilerplate(fingerprints: Iterable[CodeFingerprint]) -> np.ndarray:
    """The sorted hashes of the template files: never counted as shared."""
    found = [fp.hashes for fp in fingerprints]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def own_hashes(fp: CodeFingerprint, template: np.ndarray) -> np.ndarray:
    """The file's distinct fingerprints that are not the template's (sorted)."""
    return np.unique(fp.hashes[~np.isin(fp.hashes, template)])


def _copydetect_view(fp: CodeFingerprint, template: np.ndarray) -> SimpleNamespace:
    """The attributes ``copydetect.compare_files`` reads of its CodeFingerprint."""
    from copydetect.utils import get_token_coverage

    keep = ~np.isin(fp.hashes, template)
    index: dict[int, list[int]] = {}
    for value, position in zip(fp.hashes[keep].tolist(), fp.positions[keep].tolist(), strict=True):
        index.setdefault(value, []).append(position)
    return SimpleNamespace(
        k=NOISE_CHARS,
        hashes=set(index),
        hash_idx=index,
        filtered_code=fp.filtered,
        offsets=fp.offsets,
        token_coverage=get_token_coverage(index, NOISE_CHARS, len(fp.filtered)),
    )


def _lines(text: str, slices: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Character ranges [start, end) -> merged 1-based inclusive line ranges."""
    if slices.size == 0:
        return ()
    newlines = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == ord("\n"))
    ranges: list[tuple[int, int]] = []
    for start, end in zip(slices[0].tolist(), slices[1].tolist(), strict=True):
        first = int(np.searchsorted(newlines, start, side="right")) + 1
        last = int(np.searchsorted(newlines, max(start, end - 1), side="right")) + 1
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
        else:
            ranges.append((first, last))
    return tuple(ranges)


def compare(a: CodeFingerprint, b: CodeFingerprint, template: np.ndarray) -> CodeMatch:
    """copydetect's comparison of two files, the template's fingerprints left out."""
    from copydetect import compare_files

    view_a, view_b = _copydetect_view(a, template), _copydetect_view(b, template)
    own = (int(view_a.token_coverage), int(view_b.token_coverage))
    _overlap, (share_a, share_b), (slices_a, slices_b) = compare_files(view_a, view_b)
    shares = (float(share_a), float(share_b))
    return CodeMatch(
        similarity=max(shares),
        shares=shares,
        own_chars=own,
        lines_a=_lines(a.text, np.asarray(slices_a).reshape(2, -1)),
        lines_b=_lines(b.text, np.asarray(slices_b).reshape(2, -1)),
    )
