"""Where results stand against each other: the value they are ranked by, rank and bonus.

The leaderboard (live board and freeze) and the batch CSV rank with these; the bonus comes
from ``Assignment.award_bonus`` (the spec's ``[bonus]`` rule) and the pass line from
``PartSpec.passes``, so every surface shows the same places and points.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from grader.config import Assignment
from grader.result import GradeResult, Status

Metrics = dict[str, float]


def ranked_metrics(result: GradeResult, assignment: Assignment) -> tuple[Metrics, Metrics] | None:
    """(final, public) metrics of the ranked part; None when the result has no ranked value.

    With a private part (``Assignment.has_private_part``) the final ranking (and the bonus) uses only
    the rest of each split, which no one has seen a score of while the board ran; points
    always use the whole split.
    """
    metric = assignment.ranked_metric
    part = result.part(assignment.ranked_part)
    if result.status is not Status.GRADED or part is None or metric not in part.metrics:
        return None
    if assignment.has_private_part and metric in part.private_metrics:
        final = dict(part.private_metrics)
    else:
        final = dict(part.metrics)
    if not assignment.has_private_part:
        return final, final
    return final, dict(part.public_metrics) if part.public_metrics else dict(part.metrics)


@dataclass(frozen=True)
class Standing:
    rank: int
    value: float
    bonus: int


def final_standings(
    entries: Sequence[tuple[Hashable, GradeResult | None]], assignment: Assignment
) -> dict[Hashable, Standing]:
    """Rank ``(key, result)`` pairs (in their given order for ties) by the final ranked value,
    best first, and award the bonus; keys without a ranked value are left out."""
    metric = assignment.ranked_metric
    ranked: list[tuple[Hashable, float, bool]] = []
    for key, result in entries:
        metrics = ranked_metrics(result, assignment) if result is not None else None
        if metrics is not None:
            ranked.append((key, metrics[0][metric], result is not None and result.passed))
    ranked.sort(key=lambda item: -item[1])  # stable: ties keep the given order
    awards = assignment.award_bonus([passed for _, _, passed in ranked])
    return {key: Standing(rank, value, bonus)
            for rank, ((key, value, _), bonus) in enumerate(zip(ranked, awards, strict=True), start=1)}
