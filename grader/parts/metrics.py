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


def macro_f1(predicted: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """The mean of the per-class F1 scores, over the classes present in truth or predictions."""
    hits = np.bincount(truth[predicted == truth], minlength=classes)
    said = np.bincount(predicted, minlength=classes)
    real = np.bincount(truth, minlength=classes)
    present = (said + real) > 0
    return float(np.mean(2 * hits[present] / (said + real)[present])) if present.any() else 0.0


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy),
    "macro_f1": Metric("macro-F1", macro_f1),
}
