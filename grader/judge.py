"""Part results -> the whole result. Trusted; never imports student code.

How each part is judged belongs to its kind (``grader.parts``); this is what they add up to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grader.config import Assignment
from grader.plausibility import plausibility_flags
from grader.result import GradeResult, PartResult, Status, points


def combine(
    assignment: Assignment,
    parts: Sequence[PartResult],
    *,
    submission_sha256: str,
    environment: Mapping[str, object],
    warnings: Sequence[str] = (),
) -> GradeResult:
    """The whole result: the status of the first part that did not finish, or ``graded``."""
    score = round(sum(p.score for p in parts), 4)
    max_score = assignment.max_score
    unfinished = [p for p in parts if p.status is not Status.GRADED]
    passed = all(p.passed for p in parts)
    summary = ", ".join(
        f"{_title(assignment, p.name)} {'passed' if p.passed else 'not passed'}" for p in parts)
    if unfinished:
        first = unfinished[0]
        status = first.status
        title = _title(assignment, first.name)
        said = first.message if first.message.startswith(title) else f"{title}: {first.message}"
        message = f"{said} Score {points(score, max_score)} ({summary})."
    else:
        status = Status.GRADED
        message = f"Score {points(score, max_score)}: {summary}."
    if warnings:
        message += " Note: " + " ".join(warnings)
    return GradeResult(
        status=status, score=score, max_score=max_score, passed=passed and not unfinished,
        message=message, parts=tuple(parts), submission_sha256=submission_sha256,
        assignment=assignment.name, spec_version=assignment.version, environment=environment,
        flags=plausibility_flags(assignment, parts),
    )


def _title(assignment: Assignment, name: str) -> str:
    try:
        return assignment.part(name).title
    except KeyError:
        return name
