"""Weight similarity of two checkpoints of one architecture: per tensor, whole, and of the changes.

Every tensor is centred first (see ``sketch``). For tensors ``i`` with dot products
``d_i = <a_i, b_i>`` and squared norms ``n_i``, ``m_i``:

- per-tensor cosine ``c_i = d_i / sqrt(n_i m_i)``, unchanged when a tensor is rescaled;
- ``raw``: the mean of ``c_i`` weighted by the tensor sizes, so it is also unchanged when
  each tensor is rescaled by its own factor, and small noise moves it by little;
- ``whole``: the cosine of the whole flattened vectors, ``sum d_i / sqrt(sum n_i sum m_i)``;
- ``delta``: the whole cosine of the CHANGES from a starting point ``r`` (``a - r``, ``b - r``).
  Two models fine-tuned from one pretrained backbone share most of their weights by design,
  so their raw cosine is near 1 whoever did the work; what each trained is its change from
  the backbone, and the whole cosine of the changes is dominated by the tensors that moved
  most (the trained head). The starting point is the known starting checkpoint when given
  (tensors it lacks, such as a new head, count as changes from zero), else the mean of the
  other submissions of that architecture, leaving the pair out (a cohort's shared start
  and the average update cancel; what is left is each model's own).

The same formulas run on sketches (estimates, for every pair at once) and on the full
tensors (exact, for the few candidates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grader.similarity.sketch import DIM, centred, project

EPS = 1e-30


@dataclass(frozen=True)
class Dots:
    """Per-tensor dot products and squared norms of two (sets of) vectors: arrays (..., T)."""

    dot: np.ndarray
    na: np.ndarray
    nb: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return (self.na > EPS) & (self.nb > EPS)

    def cosines(self) -> np.ndarray:
        """Per-tensor cosines (0 where a tensor is constant in either model)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.valid, self.dot / np.sqrt(self.na * self.nb), 0.0)

    def raw(self, sizes: np.ndarray) -> np.ndarray:
        """The size-weighted mean of the per-tensor cosines (NaN when no tensor varies)."""
        weights = np.where(self.valid, sizes.astype(np.float64), 0.0)
        total = weights.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (weights * self.cosines()).sum(axis=-1) / total, np.nan)

    def whole(self) -> np.ndarray:
        """The cosine of the concatenated vectors (NaN when either is all constant)."""
        na, nb = self.na.sum(axis=-1), self.nb.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((na > EPS) & (nb > EPS), self.dot.sum(axis=-1) / np.sqrt(na * nb), np.nan)

    def shares(self) -> np.ndarray:
        """Each tensor's part of ``whole()`` (they add up to it): which tensors drive it."""
        scale = np.sqrt(self.na.sum(axis=-1) * self.nb.sum(axis=-1))[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(scale > EPS, self.dot / scale, 0.0)


def sketch_dots(a: np.ndarray, b: np.ndarray) -> Dots:
    """Dots of sketches ``a`` (..., T, k) and ``b`` (..., T, k), broadcast (float32 is precise enough:
    ``1 - cos`` down to about 1e-6)."""
    return Dots(
        np.einsum("...tk,...tk->...t", a, b).astype(np.float64),
        np.einsum("...tk,...tk->...t", a, a).astype(np.float64),
        np.einsum("...tk,...tk->...t", b, b).astype(np.float64),
    )


def exact_dots(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> Dots:
    """Dots of full centred tensors, one pair of flat float64 arrays per tensor."""
    return Dots(
        np.array([float(x @ y) for x, y in zip(a, b, strict=True)]),
        np.array([float(x @ x) for x in a]),
        np.array([float(y @ y) for y in b]),
    )


def match_reference(
    reference: Mapping[str, np.ndarray], keys: Sequence[str], sizes: Sequence[int]
) -> list[np.ndarray | None]:
    """The starting checkpoint's tensor for each key, or None where it has none of that size.

    A key matches itself, or else the longest reference key it ends with after a dot (or
    that ends with it): a student's ``backbone.layer4.0.conv1.weight`` is torchvision's
    ``layer4.0.conv1.weight`` (not its ``conv1.weight``). A new head of another shape has no
    match: all of it is change.
    """
    found: list[np.ndarray | None] = []
    for key, size in zip(keys, sizes, strict=True):
        match = reference.get(key)
        if match is None:
            near = sorted((r for r in reference if key.endswith("." + r) or r.endswith("." + key)),
                          key=len, reverse=True)
            match = reference[near[0]] if near and (len(near) == 1 or len(near[0]) > len(near[1])) else None
        found.append(match if match is not None and match.size == size else None)
    return found


def reference_sketches(matched: Sequence[np.ndarray | None], keys: Sequence[str]) -> np.ndarray:
    """Sketches (T, k) of the matched starting tensors under the model's own key names (0: no match)."""
    out = np.zeros((len(keys), DIM), dtype=np.float32)
    for t, (key, values) in enumerate(zip(keys, matched, strict=True)):
        if values is not None:
            out[t] = project(key, centred(values))
    return out


@dataclass(frozen=True)
class Cohort:
    """The other submissions of one architecture, as the sum of their sketches and their count."""

    total: np.ndarray  # (T, k) float64: sum over every member
    count: int


def one_vs_many(
    a: np.ndarray, others: np.ndarray, *, reference: np.ndarray | None = None, cohort: Cohort | None = None
) -> tuple[Dots, Dots | None]:
    """Sketch dots of ``a`` (T, k) against ``others`` (M, T, k): raw, and of the changes.

    The changes are from ``reference`` (T, k, already aligned) when given, else from the
    mean of ``cohort`` without the pair (``cohort.total`` includes ``a`` and each other).
    """
    raw = sketch_dots(a[None], others)
    if reference is not None:
        return raw, sketch_dots((a - reference)[None], others - reference[None])
    if cohort is None:
        return raw, None
    rest = cohort.count - 2
    mean = (cohort.total.astype(np.float32)[None] - a[None] - others) / np.float32(rest)  # (M, T, k)
    return raw, sketch_dots(a[None] - mean, others - mean)


def exact_pair(
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    keys: Sequence[str],
    reference: Sequence[np.ndarray | None] | None,
) -> tuple[Dots, Dots | None]:
    """Exact dots of two models' centred tensors on ``keys``, raw and of the changes from
    ``reference`` (``match_reference``'s list)."""
    xa = [centred(a[k]) for k in keys]
    xb = [centred(b[k]) for k in keys]
    raw = exact_dots(xa, xb)
    if reference is None:
        return raw, None
    base = [centred(r) if r is not None else np.zeros_like(x) for r, x in zip(reference, xa, strict=True)]
    return raw, exact_dots(
        [x - r for x, r in zip(xa, base, strict=True)], [y - r for y, r in zip(xb, base, strict=True)]
    )
