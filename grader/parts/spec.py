"""One graded part as the spec declares it, and the checks every kind shares.

A part's *kind* (``kind = "layers"`` or ``"classifier"`` in its ``[parts.<name>]`` table)
decides what runs in the sandbox and how it is judged; its *name* is only a label. The
fields below are the union of what the kinds take; each kind checks its own keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grader.errors import SpecError

# A measured value this close to a pass line counts as on it: a weighted sum of exact
# accuracies (0.6 * 0.7 + 0.3 * 0.7 + 0.1 * 0.7) can come out a rounding error above 0.7.
PASS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PartSpec:
    """One graded part: what to run, against which data, how it scores."""

    name: str
    title: str
    points: float
    module: str
    time_limit_s: float
    kind: str = "classifier"
    threshold: float = 0.0
    scoring: str = "threshold"
    # Plausibility ceiling of the part's main metric: a result above it is flagged for staff
    # (not hidden from the student, no score change). None: no ceiling.
    suspicious_above: float | None = None
    # classifier kind
    model_class: str = ""
    checkpoint: str = ""
    dataset: str = ""
    batch_size: int = 100
    weights: Mapping[str, float] = field(default_factory=dict)  # split -> weight, in order
    metrics: tuple[str, ...] = ("accuracy",)  # per split; the first decides pass/fail
    # layers kind: files in the assignment's folder
    tests: str = ""  # host only: ``build_cases(seed)``, the cases and their expected values
    probes: str = ""  # run in the sandbox: ``OPS``, how each case drives the student's layers
    # What the part measures, filled by its kind: the metric keys shown (board, CSV,
    # exports, result page), in order, with their labels, and the one that decides.
    columns: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    main_metric: str = ""

    def passes(self, value: float) -> bool:
        """The course's pass rule: "better than" the threshold, strictly (70 % exactly fails).

        The one comparison the judge, the board, the CSVs and the exports use.
        """
        return value - self.threshold > PASS_TOLERANCE

    def label(self, key: str) -> str:
        """The human name of a metric key ("TEST", "weighted accuracy", "TEST macro-F1")."""
        return self.labels.get(key, key)


# --------------------------------------------------------------------------- TOML tables


def take(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``table[key]`` checked to be a ``kind``; SpecError naming the table and key."""
    if key not in table:
        raise SpecError(f"{where}: missing key '{key}'")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SpecError(f"{where}: key '{key}' must be {name}, got {value!r}")
    return value


def no_extra(table: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise SpecError(f"{where}: unknown key '{extra[0]}' (allowed: {', '.join(sorted(allowed))})")


def positive(value: float, key: str, where: str) -> None:
    if value <= 0:
        raise SpecError(f"{where}: key '{key}' must be positive, got {value!r}")


# Keys every kind takes.
COMMON_KEYS = frozenset({"kind", "title", "points", "module", "time_limit_s", "threshold"})


def common_fields(name: str, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fields every kind has, checked."""
    points = take(table, "points", float, where)
    positive(points, "points", where)
    time_limit = take(table, "time_limit_s", float, where)
    positive(time_limit, "time_limit_s", where)
    threshold = take(table, "threshold", float, where) if "threshold" in table else 0.0
    if not 0.0 <= threshold <= 1.0:
        raise SpecError(f"{where}: key 'threshold' must lie in [0, 1], got {threshold!r}")
    return {
        "name": name,
        "kind": take(table, "kind", str, where),
        "title": str(table.get("title", name)),
        "points": points,
        "module": take(table, "module", str, where),
        "time_limit_s": time_limit,
        "threshold": threshold,
    }
