"""The signals of one pair, their flag lines, which are strong and which weak, and the ranking.

Nothing here changes a score: a flag is evidence for a person to judge. Each signal has a
value, a flag line (the value at or above which it is flagged) and a strength:

- strong: hard to reach by honest, independent work (an identical tensor digest, the same
  changes to a starting checkpoint, the same wrong answers far beyond what the two models'
  own confusions explain, the same non-template code);
- weak: reached by honest work too (weights of models fine-tuned from one backbone, the
  same correct answers, a short piece of code), shown but never flagging a pair alone.

Each value maps to an evidence level in [0, 1] that is 0.5 exactly at its flag line and
grows towards 1 (``evidence``); a weak signal counts at most ``WEAK`` of that. A pair's
score is its strongest evidence, and it is flagged when a strong signal is at or above its
line: so a pair's score is 0.5 or more exactly when it is flagged. Pairs are ranked by
that score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

WEAK = 0.45  # a weak signal's share of its evidence: below the pair flag line even at its maximum
PAIR_LINE = 0.5


class Kind(StrEnum):
    WEIGHTS_IDENTICAL = "weights_identical"
    WEIGHTS_DELTA = "weights_delta"
    WEIGHTS_RAW = "weights_raw"
    PREDICTIONS_WRONG = "predictions_wrong"
    PREDICTIONS_AGREE = "predictions_agree"
    CODE = "code"


@dataclass(frozen=True)
class FlagLines:
    """Where each signal is flagged, and what makes a strong signal weak."""

    weights_delta: float = 0.9  # cosine of the changes from the starting point
    weights_raw: float = 0.95  # size-weighted mean cosine of the (centred) tensors
    predictions_wrong: float = 0.8  # chance-corrected share of shared wrong answers (kappa)
    predictions_agree: float = 0.99  # share of identical answers
    code: float = 0.6  # copydetect's share of non-template code found in the other file
    min_shared_errors: int = 20  # fewer wrong answers in common: too few to tell
    min_code_chars: int = 300  # less non-template code (filtered characters): too short to tell
    floor: float = 0.2  # pairs below this score are neither returned nor stored


LINE_TEXT: Mapping[Kind, str] = MappingProxyType({
    Kind.WEIGHTS_IDENTICAL: (
        "the same tensors (SHA-256 of names, dtypes, shapes and values), whatever the file bytes: "
        "strong, unless both are the unchanged starting checkpoint"
    ),
    Kind.WEIGHTS_DELTA: (
        "cosine of the changes from the starting checkpoint (or, when none is given, from the mean "
        "of the other submissions) at or above {line}: strong, independent training does not make "
        "the same changes"
    ),
    Kind.WEIGHTS_RAW: (
        "size-weighted mean cosine of the centred tensors at or above {line}: strong for models "
        "trained from their own random start, weak where models share a start (fine-tuning one "
        "pretrained backbone; the same seed and architecture)"
    ),
    Kind.PREDICTIONS_WRONG: (
        "identical wrong answers, chance-corrected (0: what two independent models of these "
        "confusions share, 1: every one possible) at or above {line}: strong with at least "
        "{min_shared_errors} shared wrong answers, else weak"
    ),
    Kind.PREDICTIONS_AGREE: (
        "share of identical answers at or above {line}: weak, two accurate models agree on most items anyway"
    ),
    Kind.CODE: (
        "copydetect's share of one file's own code found in the other (identifiers, strings and "
        "comments ignored; the starter kit and passages most of the course shares left out) at or "
        "above {line}: strong, weak when a file has less than {min_code_chars} characters of its own"
    ),
})


def line_of(kind: Kind, lines: FlagLines) -> float:
    """The flag line of ``kind`` (1.0 for an identical digest: flagged when equal)."""
    return {
        Kind.WEIGHTS_IDENTICAL: 1.0,
        Kind.WEIGHTS_DELTA: lines.weights_delta,
        Kind.WEIGHTS_RAW: lines.weights_raw,
        Kind.PREDICTIONS_WRONG: lines.predictions_wrong,
        Kind.PREDICTIONS_AGREE: lines.predictions_agree,
        Kind.CODE: lines.code,
    }[kind]


def flag_line_text(kind: Kind, lines: FlagLines) -> str:
    """The sentence that says when ``kind`` is flagged and how strong it is."""
    return LINE_TEXT[kind].format(
        line=f"{line_of(kind, lines):g}",
        min_shared_errors=lines.min_shared_errors,
        min_code_chars=lines.min_code_chars,
    )


def evidence(value: float | np.ndarray, line: float) -> np.ndarray:
    """Values in (-inf, 1] -> evidence in [0, 1]: 0.5 at ``line``, towards 1 as ``1 - value`` shrinks.

    On the scale of ``-log10(1 - value)``, so 0.99 is as far above a line of 0.9 as 0.9 is
    above 0: the scale on which near copies differ. NaN (nothing measured) gives 0. Works on
    arrays (one value per pair) and on single values.
    """
    values = np.asarray(value, dtype=np.float64)
    if line >= 1.0:
        return np.where(values >= 1.0, 1.0, 0.0)
    with np.errstate(invalid="ignore"):
        positive = values > 0.0
        closeness = -np.log10(np.clip(1.0 - np.where(positive, values, 0.0), 1e-6, None))
    return np.where(positive, 1.0 - 0.5 ** (closeness / -math.log10(1.0 - line)), 0.0)


@dataclass(frozen=True)
class Signal:
    """One piece of evidence about a pair: e.g. the code of ``layers.py``."""

    kind: Kind
    subject: str  # the checkpoint, prediction group or file it is about
    value: float
    line: float
    strong: bool
    detail: str  # one sentence for a person
    data: Mapping[str, Any] = field(default_factory=dict)  # JSON-able: drivers, line ranges, counts

    @property
    def flagged(self) -> bool:
        return self.value >= self.line

    @cached_property
    def evidence(self) -> float:
        return float(evidence(self.value, self.line)) * (1.0 if self.strong else WEAK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "subject": self.subject,
            "value": self.value,
            "line": self.line,
            "strong": self.strong,
            "flagged": self.flagged,
            "evidence": round(self.evidence, 4),
            "detail": self.detail,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signal:
        return cls(
            Kind(data["kind"]),
            str(data["subject"]),
            float(data["value"]),
            float(data["line"]),
            bool(data["strong"]),
            str(data["detail"]),
            dict(data.get("data", {})),
        )


@dataclass(frozen=True)
class Pair:
    """Two submissions and every signal about them; ``a`` < ``b``."""

    a: str
    b: str
    signals: tuple[Signal, ...]

    @property
    def score(self) -> float:
        return max((s.evidence for s in self.signals), default=0.0)

    @property
    def flagged(self) -> bool:
        return any(s.strong and s.flagged for s in self.signals)

    def rank_key(self) -> tuple[float, int, str, str]:
        return (-self.score, -sum(s.strong and s.flagged for s in self.signals), self.a, self.b)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "score": round(self.score, 4),
            "flagged": self.flagged,
            "signals": [s.to_dict() for s in self.signals],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pair:
        return cls(str(data["a"]), str(data["b"]), tuple(Signal.from_dict(s) for s in data["signals"]))


def make_pair(a: str, b: str, signals: Sequence[Signal]) -> Pair:
    """A pair with its signals strongest first; ``a`` < ``b`` (what ``data`` calls a and b)."""
    if not a < b:
        raise ValueError(f"pair ids out of order: {a!r}, {b!r}")
    ordered = sorted(signals, key=lambda s: (-s.evidence, str(s.kind), s.subject))
    return Pair(a, b, tuple(ordered))


def ranked(pairs: Sequence[Pair]) -> list[Pair]:
    """Highest score first; ties by the number of strong flags, then by the ids."""
    return sorted(pairs, key=Pair.rank_key)
