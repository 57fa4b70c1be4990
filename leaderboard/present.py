"""What students (and staff) are shown of a submission: JSON and page models.

Until the board freezes, the ranked part's numbers are shown on the *public* part of the
hidden splits only, here as on the board: showing the full-split values on the submission
page would let a student probe the private part one upload at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import url_for

from grader.config import Assignment
from grader.result import GradeResult, PartResult, TestResult
from leaderboard.charts import BarChart, bar_chart
from leaderboard.models import Submission, SubmissionStatus


def metrics_hidden(spec: Assignment, frozen: bool) -> bool:
    """True while students may only see the public part of the ranked metric."""
    return spec.public_fraction < 1.0 and not frozen


def ranked_part(spec: Assignment) -> str:
    return spec.rank_by.partition(".")[0]


def public_message(spec: Assignment, metrics: dict[str, float]) -> str:
    """The ranked part's message rebuilt from public numbers (the judge's names full values)."""
    summary = spec.public_summary(metrics)
    if not summary:
        return ""
    part = spec.part(ranked_part(spec))
    return (f"{part.title}: {summary}; the pass line is {part.threshold:.0%}. The rest of the test "
            "set decides the final ranking and is shown when the board freezes.")


def student_result(result: GradeResult, spec: Assignment, *, frozen: bool) -> dict[str, Any]:
    """The grading engine's result JSON without staff details and flags (and private numbers
    hidden)."""
    data = result.to_dict()
    data.pop("detail", None)
    data.pop("flags", None)
    hide = metrics_hidden(spec, frozen)
    for part in data["parts"]:
        part.pop("detail", None)
        if hide and part["name"] == ranked_part(spec):
            part["metrics"] = dict(part.get("public_metrics") or {})
            part.pop("private_metrics", None)
            part["metrics_scope"] = "public"
            part["tests"] = []  # their messages carry the full-split accuracies
            if part["status"] == "graded":
                part["message"] = public_message(spec, part["metrics"])
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
        "ranked_value": sub.rank_value_public if metrics_hidden(spec, frozen) else sub.rank_value,
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
    views = []
    for part_spec in spec.parts:
        part = result.part(part_spec.name)
        if part is None:
            continue
        public_only = not staff and metrics_hidden(spec, frozen) and part.name == ranked_part(spec)
        metrics = dict(part.public_metrics if public_only else part.metrics)
        chart = None
        if metrics and part_spec.threshold > 0:
            order = [*part_spec.weights, "weighted"] if part_spec.weights else list(metrics)
            values = [(k, metrics[k]) for k in order if k in metrics]
            title = f"{part_spec.title}{' (public part)' if public_only else ''}"
            chart = bar_chart(title, values, part_spec)
        message = part.message
        if public_only and str(part.status) == "graded":
            message = public_message(spec, metrics)
        tests = () if public_only else part.tests  # their messages carry full-split values
        views.append(PartView(part.name, part_spec.title, part, message, tests, metrics, public_only, chart))
    return views
