"""Prediction agreement of two models on the same labelled items, measured against chance.

On one split with true labels ``y_1 … y_n`` and ``K`` classes, model ``m``'s confusion
``C_m[y, k]`` is the share of the items of class ``y`` that ``m`` labels ``k`` (from its own
predictions on that split). Were two models wrong independently of each other given the
true class, then on item ``i`` they would give the same WRONG label with probability

    p_i = sum over k != y_i of C_a[y_i, k] * C_b[y_i, k]

so the number ``S`` of identical wrong answers would have mean ``E = sum_i p_i`` and variance
``V = sum_i p_i (1 - p_i)`` (a sum of independent Bernoulli variables): ``z = (S - E) / sqrt(V)``
and ``ratio = S / E`` say how far above chance a pair is.

Honest models are not independent given the class: trained on the same data, they stumble
over the same hard items. Two MyNets trained apart on FashionMNIST share about six times
the chance count of wrong answers (z ≈ 60); a copy with 1 % weight noise shares nine
times. So ``z`` and ``ratio`` show that a pair is above chance, but the flagged value is the
chance-corrected share (a kappa of the errors):

    kappa = (S - E) / (M - E),  M = min(wrong_a, wrong_b), the most two models can share

0 at chance, 1 when every wrong answer of the more accurate model is repeated by the other:
about 0.55 for those independent MyNets, 0.99 for the noisy copy.

Splits are grouped by the part of their key before ``/``
(``"<part>/<split>"``): ``S``, ``E``, ``V``, ``M`` and the counts add up over a group's splits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


def group_of(key: str) -> str:
    """The group of a predictions key: ``"<part>/<split>"`` -> ``"<part>"``."""
    return key.split("/", 1)[0]


def confusion(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """``C[y, k]``: the share of items of class ``y`` predicted as ``k`` (float32; 0 for absent classes)."""
    counts = np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    totals = counts.sum(axis=1, keepdims=True)
    return (counts / np.maximum(totals, 1)).astype(np.float32)


@dataclass(frozen=True)
class Agreement:
    """Counts of a pair on some items (arrays of one value per pair, or scalars); they add up."""

    items: np.ndarray
    identical: np.ndarray
    same_wrong: np.ndarray  # S
    expected: np.ndarray  # E
    variance: np.ndarray  # V
    most: np.ndarray  # M = min(wrong_a, wrong_b)

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(
            self.items + other.items,
            self.identical + other.identical,
            self.same_wrong + other.same_wrong,
            self.expected + other.expected,
            self.variance + other.variance,
            self.most + other.most,
        )

    @property
    def share_identical(self) -> np.ndarray:
        return self.identical / np.maximum(self.items, 1)

    @property
    def kappa(self) -> np.ndarray:
        """Chance-corrected share of identical wrong answers (0 where no wrong answer could be shared)."""
        room = self.most - self.expected
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(room > 1e-9, (self.same_wrong - self.expected) / room, 0.0)

    @property
    def z(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.variance > 0, (self.same_wrong - self.expected) / np.sqrt(self.variance), 0.0
            )

    @property
    def ratio(self) -> np.ndarray:
        """S / E, with half an answer added to both so that tiny counts stay finite."""
        return (self.same_wrong + 0.5) / (self.expected + 0.5)

    def at(self, index: int) -> Agreement:
        """The counts of one pair out of arrays."""
        return Agreement(
            *(
                np.asarray(getattr(self, f))[index]
                for f in ("items", "identical", "same_wrong", "expected", "variance", "most")
            )
        )


def one_vs_many(
    predicted: np.ndarray,
    conf: np.ndarray,
    others: np.ndarray,
    others_conf: np.ndarray,
    others_wrong: np.ndarray,
    labels: np.ndarray,
) -> Agreement:
    """The agreement of one model (n,) with each of M others (M, n), vectorised over the others."""
    classes = conf.shape[0]
    wrong = predicted != labels
    items = np.full(len(others), len(labels), dtype=np.int64)
    identical = (others == predicted[None]).sum(axis=1)
    same_wrong = (others[:, wrong] == predicted[None, wrong]).sum(axis=1)
    off = conf * (1.0 - np.eye(classes, dtype=np.float32))  # C_a without the right answers
    per_class = np.einsum("yk,myk->my", off, others_conf)  # p for an item of class y, per other
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    expected = per_class @ counts
    variance = (per_class * (1.0 - per_class)) @ counts
    most = np.minimum(int(wrong.sum()), others_wrong)
    return Agreement(
        items,
        identical.astype(np.int64),
        same_wrong.astype(np.int64),
        expected.astype(np.float64),
        variance.astype(np.float64),
        most.astype(np.int64),
    )


def total(parts: Iterable[Agreement]) -> Agreement | None:
    """The sum of several splits' counts (None when there are none)."""
    result: Agreement | None = None
    for part in parts:
        result = part if result is None else result + part
    return result
