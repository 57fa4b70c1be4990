"""The metrics a classifier part can report per split, by the name a spec uses in ``metrics``.

Each takes the predicted and the true class indices (same length, maybe empty) and the number
of classes, and returns a value in [0, 1]. A new metric is one entry here; a spec shows it by
naming it in a part's ``metrics`` list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    label: str  # as a student reads it: "accuracy", "macro-F1"
    compute: Callable[[np.ndarray, np.ndarray, int], float]


def accuracy(predicted: np.ndarray, truth: np.ndarray, classes: int) -> float:
    return float((predicted == truth).mean()) if len(truth) else 0.0


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy),
}
