"""Flags for staff: a part whose main metric is above the spec's plausibility ceiling.

A score above ``suspicious_above`` is more likely to come from labels the submission
carries (a checkpoint can hold all of a public test set's answers) than from the model.
The student keeps the score and sees no flag; staff see the reason and look.
"""

from __future__ import annotations

from collections.abc import Sequence

from grader.config import Assignment
from grader.result import Flag, PartResult


def plausibility_flags(assignment: Assignment, parts: Sequence[PartResult]) -> tuple[Flag, ...]:
    """One flag per part whose main metric lies above its ``suspicious_above``."""
    flags = []
    for part in parts:
        try:
            spec = assignment.part(part.name)
        except KeyError:
            continue
        ceiling = spec.suspicious_above
        value = part.metrics.get(spec.main_metric)
        if ceiling is None or value is None or value <= ceiling:
            continue
        flags.append(Flag(part.name, (
            f"{spec.model_class} {spec.label(spec.main_metric)} {100 * value:.2f}% on the hidden "
            "test set is above the "
            f"plausibility ceiling of {100 * ceiling:g}%: check the submission for labels "
            "carried in its code or checkpoint before trusting the score."
        )))
    return tuple(flags)
