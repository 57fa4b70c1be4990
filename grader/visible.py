"""What a student may see of a result: the one rule the pages, the API and the exports apply.

A student never sees staff details (``detail``: tracebacks, sandbox notes) or plausibility
flags. While part of each hidden split stays private (``Assignment.has_private_part``) and the
ranking is not final, the ranked part shows only its numbers on the public part: its metrics
are the public ones, its private numbers are dropped, its per-split tests (whose messages
carry whole-split accuracies) are left out and its message is rebuilt from public numbers.
Showing whole-split values anywhere would let a student probe the private part one upload at
a time. A part's diagnostics (confusion matrices, per-class accuracy, the gap between splits)
are kept only when they say they were computed on the public part (``scope``), so no
diagnostic can carry the private part while it is held back.
"""

from __future__ import annotations

from dataclasses import replace

from grader.config import Assignment
from grader.parts.diagnostics import SCOPE as PUBLIC_SCOPE
from grader.result import GradeResult, PartResult, Status, percent, points


def public_only(spec: Assignment, *, final: bool) -> bool:
    """True while students may see only the public part of the ranked part's numbers."""
    return spec.has_private_part and not final


def visible_to_student(result: GradeResult, spec: Assignment, *, final: bool) -> GradeResult:
    """``result`` as a student may see it now; ``final``: the ranking is final (board frozen)."""
    hide = public_only(spec, final=final)
    parts = []
    for part in result.parts:
        part = replace(part, detail="")
        if hide and part.diagnostics and part.diagnostics.get("scope") != PUBLIC_SCOPE:
            part = replace(part, diagnostics={})
        if hide and part.name == spec.ranked_part:
            part = _public_part(part, spec)
        parts.append(part)
    return replace(result, parts=tuple(parts), detail="", flags=())


def _public_part(part: PartResult, spec: Assignment) -> PartResult:
    metrics = dict(part.public_metrics)
    message = public_message(spec, part, metrics) if part.status is Status.GRADED else part.message
    return replace(part, metrics=metrics, private_metrics={}, tests=(), message=message)


def public_message(spec: Assignment, part: PartResult, metrics: dict[str, float]) -> str:
    """The ranked part's message from public numbers (the judge's names whole-split values)."""
    title = spec.part(spec.ranked_part).title
    scored = f"{title}: {points(part.score, part.max_score)} points"
    summary = spec.public_summary(metrics)
    if not summary:
        return scored + "."
    return (f"{scored}; {summary}; the pass line is {percent(spec.part(spec.ranked_part).threshold)}. "
            "The rest of the test set decides the final ranking and is shown when the board freezes.")
