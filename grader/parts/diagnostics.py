"""What a classifier part teaches beyond its numbers, computed on the PUBLIC part only.

Per split: the confusion matrix (counts of true class -> predicted class) and each class's
accuracy on the split's public subset; for a part that weights several splits, the gap of
each split's public value to the first split's, with a one-line reading ("loses 6.0
points on AUG compared to ORIG"). Only counts over the public subset are kept, never
per-image labels or predictions, and nothing of the private part: a student may see all of
it while the board is live (``grader.visible`` still checks ``scope``).

The JSON shape (``PartResult.diagnostics``; documented in the README's result section)::

    {"scope": "public",
     "classes": ["cat", "dog"],
     "splits": {"ORIG": {"count": 24, "confusion": [[10, 2], [3, 9]],
                         "per_class_accuracy": [0.8333, 0.75]}, ...},
     "gap": {"metric": "accuracy", "reference": "ORIG",
             "points": {"AUG": -6.0, "NEW": -12.5}, "reading": "..."}}

``confusion[i][j]``: public images of class ``i`` predicted as ``j``; ``per_class_accuracy``
is null for a class with no public image; ``gap.points``: percentage points against the
reference split (negative: worse); ``gap`` is absent without weighted splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SCOPE = "public"
SAME = 0.05  # percentage points: a smaller gap reads as "the same"


def confusion(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class); both arrays hold indices in 0..num_classes-1."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def split_diagnostics(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, Any]:
    """One split's public subset (``predicted`` and ``truth`` already cut to it)."""
    matrix = confusion(predicted, truth, num_classes)
    rows = matrix.sum(axis=1)
    return {
        "count": len(truth),
        "confusion": matrix.tolist(),
        "per_class_accuracy": [round(float(matrix[i, i] / rows[i]), 6) if rows[i] else None
                               for i in range(num_classes)],
    }


def gap(public_values: Mapping[str, float], order: Sequence[str], metric: str) -> dict[str, Any]:
    """Each split's public value against the first split's, in points, with a reading."""
    if len(order) < 2 or order[0] not in public_values:
        return {}
    reference = order[0]
    diffs = {s: round(100 * (public_values[s] - public_values[reference]), 1)
             for s in order[1:] if s in public_values}
    if not diffs:
        return {}
    return {"metric": metric, "reference": reference, "points": diffs,
            "reading": reading(diffs, reference, metric)}


def reading(diffs: Mapping[str, float], reference: str, metric: str) -> str:
    """One sentence: "On the public part your model loses 6.0 points of accuracy on AUG and
    12.5 on NEW compared to ORIG." (points: percentage points)."""
    clauses = []
    said = ""  # the verb of the clause before: not repeated ("loses 6.0 on AUG and 12.5 on NEW")
    unit = f" points of {metric}"  # said once, with the first number
    for split, diff in diffs.items():
        if abs(diff) < SAME:
            clauses.append(f"does as well on {split}")
            said = ""
            continue
        verb = "loses" if diff < 0 else "gains"
        clauses.append(f"{verb + ' ' if verb != said else ''}{abs(diff):.1f}{unit} on {split}")
        said, unit = verb, ""
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    return f"On the public part your model {joined} compared to {reference}."


def diagnostics(
    predictions: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    public: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    public_values: Mapping[str, float],
    order: Sequence[str],
    metric: str,
) -> dict[str, Any]:
    """The part's diagnostics (see the module's docstring); {} when no split has predictions.

    ``predictions``: the checked class indices per split that had usable ones; ``public``:
    each split's public mask; ``public_values``: the primary metric's public value per split.
    """
    splits = {}
    for split, got in predictions.items():
        mask = public[split]
        if mask.any():
            splits[split] = split_diagnostics(got[mask], truth[split][mask], len(classes))
    if not splits:
        return {}
    out: dict[str, Any] = {"scope": SCOPE, "classes": list(classes), "splits": splits}
    found = gap(public_values, order, metric)
    if found:
        out["gap"] = found
    return out
