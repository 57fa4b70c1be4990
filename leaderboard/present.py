"""What students (and staff) are shown of a submission: JSON and page models.

What a student may see is ``grader.visible.visible_to_student``'s decision (until the board
freezes, the ranked part's public numbers only); this module only shapes it for pages and JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import url_for

from grader.config import Assignment, PartSpec
from grader.datasets.provenance import CAVEATS, provenance_of
from grader.result import GradeResult, PartResult, Status, TestResult, percent, points
from grader.visible import public_only, visible_to_student
from leaderboard.charts import BarChart, bar_chart
from leaderboard.models import Submission, SubmissionStatus

# The one place a status value becomes words for a page (drop-downs, lists, pills).
STATUS_LABELS: dict[str, str] = {
    SubmissionStatus.QUEUED: "Queued",
    SubmissionStatus.RUNNING: "Running",
    SubmissionStatus.GRADED: "Graded",
    SubmissionStatus.INVALID: "Invalid upload",
    SubmissionStatus.TIMED_OUT: "Timed out",
    SubmissionStatus.OUT_OF_MEMORY: "Out of memory",
    SubmissionStatus.CRASHED: "Crashed",
    SubmissionStatus.GRADER_FAULT: "Grader fault",
    "failed": "Any failure",  # the staff filter's group of the four failure statuses
}


def status_label(value: str) -> str:
    """A status value as words ("timed_out" -> "Timed out"); unknown values keep their text."""
    return STATUS_LABELS.get(str(value), str(value).replace("_", " "))


NO_VALUE = "—"  # a cell with nothing to show yet (queued, running) or ever (invalid, refunded)
REASON_CHARS = 90


def score_text(sub: Submission) -> str:
    """The list's score cell: points only for an upload that was graded and counts as an
    attempt (graded or failed in the student's code); "—" while pending, when invalid or
    refunded (no result of the student's own to show)."""
    status = SubmissionStatus(sub.status)
    if status.pending or not sub.counts_attempt or sub.score is None:
        return NO_VALUE
    return f"{sub.score:.1f} / {sub.max_score or 0:.0f}"


def ranked_text(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.1f}%"


def reason_text(sub: Submission) -> str:
    """One line on why an invalid or failed upload ended so ("" otherwise): its message, cut
    to REASON_CHARS (the page shows the whole message in the cell's title)."""
    if SubmissionStatus(sub.status).group not in ("invalid", "failed") or not sub.message:
        return ""
    line = " ".join(sub.message.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1].rstrip() + "…"


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
    sub: Submission, result: GradeResult | None, spec: Assignment, *, frozen: bool,
    progress: dict[str, Any],
) -> dict[str, Any]:
    """A submission as the API and the pages' scripts read it; ``progress`` is
    ``live.live_json`` (queue position, parts' states)."""
    status = SubmissionStatus(sub.status)
    ranked = sub.rank_value_public if public_only(spec, final=frozen) else sub.rank_value
    return {
        "id": sub.id,
        "status": str(status),
        "status_label": status_label(status),
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
        "ranked_value": ranked,
        "score_text": score_text(sub),
        "ranked_text": ranked_text(ranked),
        "message": sub.message,
        "reason": reason_text(sub),
        "url": url_for("student.submission", submission_id=sub.id),
        "result": student_result(result, spec, frozen=frozen) if result else None,
        "progress": progress,
    }


@dataclass(frozen=True)
class CheckRow:
    """A test, with the tests that did not run because it failed (folded under it)."""

    test: TestResult
    stopped: tuple[TestResult, ...] = ()


@dataclass(frozen=True)
class CheckGroup:
    """The tests of one group ("Linear 12/16"); ``name`` "" for tests without a group."""

    name: str
    passed: int
    total: int
    rows: tuple[CheckRow, ...]

    @property
    def failed(self) -> bool:
        return self.passed < self.total


def group_tests(tests: Iterable[TestResult]) -> tuple[CheckGroup, ...]:
    """Tests by their group (the judge's ``group``), groups with a failure first, failures first
    within a group, and each test "not run because" another failed folded under that one."""
    by_group: dict[str, list[TestResult]] = {}
    for test in tests:
        by_group.setdefault(test.group, []).append(test)
    groups = []
    for name, members in by_group.items():
        failing = {t.name for t in members if not t.passed}
        stopped: dict[str, list[TestResult]] = {}
        shown = []
        for test in members:
            if not test.passed and test.caused_by in failing and test.caused_by != test.name:
                stopped.setdefault(test.caused_by, []).append(test)
            else:
                shown.append(test)
        rows = [CheckRow(t, tuple(stopped.pop(t.name, ()))) for t in shown]
        rows.sort(key=lambda r: r.test.passed)  # stable: failures first, in the judge's order
        groups.append(CheckGroup(name, sum(t.passed for t in members), len(members), tuple(rows)))
    groups.sort(key=lambda g: not g.failed)
    return tuple(groups)


@dataclass(frozen=True)
class Cell:
    count: int
    level: int  # 0-4: the share of the row's images, for the cell's shade
    diagonal: bool


@dataclass(frozen=True)
class MatrixRow:
    name: str  # the true class
    cells: tuple[Cell, ...]
    total: int
    accuracy: str  # "81.3%", or "—" without public images of the class


@dataclass(frozen=True)
class Matrix:
    """One split's confusion matrix on the public part: rows true class, columns predicted."""

    split: str  # the split's label; "" for a part with one split
    count: int
    classes: tuple[str, ...]
    rows: tuple[MatrixRow, ...]

    @property
    def mistakes(self) -> tuple[tuple[str, str, int], ...]:
        """The (up to) three most frequent mistakes: (true class, predicted class, count)."""
        found = [(row.name, self.classes[j], cell.count) for row in self.rows
                 for j, cell in enumerate(row.cells) if not cell.diagonal and cell.count]
        return tuple(sorted(found, key=lambda m: -m[2])[:3])


@dataclass(frozen=True)
class Diagnostics:
    matrices: tuple[Matrix, ...]
    reading: str  # the gap between splits in one sentence ("" without weighted splits)


def diagnostics_view(data: Mapping[str, Any], part_spec: PartSpec) -> Diagnostics | None:
    """The page's form of a part's diagnostics (``grader.parts.diagnostics``); None if it has
    none or they are not in the expected shape."""
    if not data:
        return None
    try:
        classes = tuple(str(c) for c in data["classes"])
        matrices = []
        for split, body in data["splits"].items():
            rows: list[MatrixRow] = []
            for name, counts, accuracy in zip(classes, body["confusion"], body["per_class_accuracy"],
                                              strict=True):
                total = sum(int(c) for c in counts)
                cells = tuple(Cell(int(c), min(4, -(-4 * int(c) // total)) if total else 0, j == len(rows))
                              for j, c in enumerate(counts))
                rows.append(MatrixRow(name, cells, total, percent(accuracy) if accuracy is not None else "—"))
            label = part_spec.label(split) if part_spec.weights else ""
            matrices.append(Matrix(label, int(body["count"]), classes, tuple(rows)))
        reading = str(data.get("gap", {}).get("reading", ""))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return Diagnostics(tuple(matrices), reading)


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
    groups: tuple[CheckGroup, ...] = ()
    metric_texts: tuple[tuple[str, str], ...] = ()  # (label, "81.3%") where no chart shows them
    diagnostics: Diagnostics | None = None
    notes: tuple[str, ...] = ()  # what the part's numbers rest on (a synthetic or public data set)

    @property
    def points(self) -> str:
        return points(self.part.score, self.part.max_score)

    @property
    def verdict(self) -> str:
        """'passed', 'not passed', or how it ended ('crashed', 'timed out')."""
        if self.part.passed:
            return "passed"
        if self.part.status is Status.GRADED:
            return "not passed"
        return str(self.part.status).replace("_", " ")


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
        texts = () if chart else tuple((part_spec.label(k), percent(v)) for k, v in metrics.items())
        notes = () if staff or not metrics else data_notes(result, part_spec)
        views.append(PartView(part.name, part_spec.title, part, part.message, part.tests, metrics,
                              public and bool(metrics), chart, group_tests(part.tests), texts,
                              diagnostics_view(part.diagnostics, part_spec), notes))
    return views


def data_notes(result: GradeResult, part_spec: PartSpec) -> tuple[str, ...]:
    """The caveat of the data set a part's numbers come from, said of the part (the staff
    page names the data sets: ``grader.datasets.provenance.data_notes``)."""
    data = result.environment.get("data")
    if not part_spec.dataset or not isinstance(data, Mapping):
        return ()
    provenance = provenance_of(data.get(part_spec.dataset))
    if provenance is None or provenance not in CAVEATS:
        return ()
    return (f"the hidden data of this part {CAVEATS[provenance]}",)

