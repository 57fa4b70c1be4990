"""What students (and staff) are shown of a submission: JSON and page models.

What a student may see is ``grader.visible.visible_to_student``'s decision (until the board
freezes, the ranked part's public numbers only); this module only shapes it for pages and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import url_for

from grader.config import Assignment
from grader.result import GradeResult, PartResult, TestResult
from grader.visible import public_only, visible_to_student
from leaderboard.charts import BarChart, bar_chart
from leaderboard.models import Submission, SubmissionStatus


def student_result(result: GradeResult, spec: Assignment, *, frozen: bool) -> dict[str, Any]:
    """The result JSON of ``visible_to_student``, without the keys it empties."""
    hide = public_only(spec, final=frozen)
    data = visible_to_student(result, spec, final=frozen).to_dict()
    data.pop("detail", None)
    data.pop("flags", None)
    for part in data["parts"]:
        part.pop("detail", None)
        if hide and part["name"] == spec.ranked_part:
            part.pop("private_metrics", None)
            part["metrics_scope"] = "public"
    return data


def submission_json(
    sub: Submission, result: GradeResult | None, spec: Assignment, *, frozen: bool
) -> dict[str, Any]:
    status = SubmissionStatus(sub.status)
    return {
        "id": sub.id,
        "status": str(status),
        "state": status.group,
        "pending": status.pending,
        "filename": sub.filename,
        "sha256": sub.archive_sha256,
        "created_at": sub.created_at.isoformat(),
        "started_at": sub.started_at.isoformat() if sub.started_at else None,
        "finished_at": sub.finished_at.isoformat() if sub.finished_at else None,
        "counts_attempt": sub.counts_attempt,
        "score": sub.score,
        "max_score": sub.max_score,
        "ranked_value": sub.rank_value_public if public_only(spec, final=frozen) else sub.rank_value,
        "message": sub.message,
        "url": url_for("student.submission", submission_id=sub.id),
        "result": student_result(result, spec, frozen=frozen) if result else None,
    }


@dataclass(frozen=True)
class PartView:
    name: str
    title: str
    part: PartResult
    message: str
    tests: tuple[TestResult, ...]
    metrics: dict[str, float]
    public_only: bool
    chart: BarChart | None


def part_views(result: GradeResult, spec: Assignment, *, frozen: bool, staff: bool = False) -> list[PartView]:
    """One view per part of the spec, in the spec's order, with a chart where it has a line."""
    shown = result if staff else visible_to_student(result, spec, final=frozen)
    hide = not staff and public_only(spec, final=frozen)
    views = []
    for part_spec in spec.parts:
        part = shown.part(part_spec.name)
        if part is None:
            continue
        public = hide and part.name == spec.ranked_part
        metrics = dict(part.metrics)
        chart = None
        if metrics and part_spec.threshold > 0:
            values = [(k, metrics[k]) for k in part_spec.columns if k in metrics]
            title = f"{part_spec.title}{' (public part)' if public else ''}"
            chart = bar_chart(title, values, part_spec)
        views.append(PartView(part.name, part_spec.title, part, part.message, part.tests, metrics, public,
                              chart))
    return views
