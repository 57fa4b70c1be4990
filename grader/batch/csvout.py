"""The batch's CSV: one row per student, from the newest of their submissions.

Columns: ``id``; ``<part>_points`` and ``<part>_passed`` (pass/fail) for every part of the
spec; ``<part>_<metric>`` for every metric a part shows (its ``columns``: e.g. the accuracy
of a one-split part, each split and the weighted sum of a weighted one, all on the whole
hidden splits, as fractions); ``total``,
``max_score``; ``rank`` and ``bonus`` (the final ranking of these rows, by the ranked value on
the private part as the frozen leaderboard ranks, ties to the older file, with the spec's
bonus rule); ``status``, ``message``; ``file``, ``sha256``, ``note`` (duplicates,
publishing) so every number can be traced back to a zip; and ``flags``, the staff flags of
the result (e.g. an accuracy above the spec's plausibility ceiling, with the reason).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from grader.batch.store import write_atomic
from grader.config import Assignment
from grader.result import GradeResult, Status
from grader.spreadsheet import safe_cell
from grader.standing import Standing, final_standings


@dataclass(frozen=True)
class Entry:
    """One submission of one student, with its result (None: refused before grading)."""

    student: str
    label: str
    mtime: float
    sha256: str = ""
    result: GradeResult | None = None
    problem: str = ""
    note: str = ""


@dataclass(frozen=True)
class Row:
    entry: Entry
    note: str


def newest_per_student(entries: Iterable[Entry]) -> tuple[list[Row], list[str]]:
    """The newest entry (by file time) of each student, sorted by id, and a warning per duplicate."""
    by_student: dict[str, list[Entry]] = {}
    for entry in entries:
        by_student.setdefault(entry.student, []).append(entry)
    rows: list[Row] = []
    warnings: list[str] = []
    for student in sorted(by_student):
        group = sorted(by_student[student], key=lambda e: (e.mtime, e.label))
        chosen = group[-1]
        notes = [chosen.note] if chosen.note else []
        if len(group) > 1:
            others = ", ".join(e.label for e in group[:-1])
            when = datetime.fromtimestamp(chosen.mtime).isoformat(sep=" ", timespec="seconds")
            text = (f"{len(group)} submissions for id {student}; used the newest, {chosen.label} "
                    f"({when}), not {others}")
            warnings.append(text)
            notes.insert(0, text)
        rows.append(Row(chosen, "; ".join(notes)))
    return rows, warnings


def metric_columns(assignment: Assignment) -> list[tuple[str, str, str]]:
    """(column, part, metric) for every metric the spec's parts show, in the spec's order."""
    return [(f"{part.name}_{key}", part.name, key) for part in assignment.parts for key in part.columns]


def columns(assignment: Assignment) -> list[str]:
    parts = [f"{p.name}_{what}" for p in assignment.parts for what in ("points", "passed")]
    return ["id", *parts, *(c for c, _, _ in metric_columns(assignment)),
            "total", "max_score", "rank", "bonus", "status", "message", "file", "sha256", "note",
            "flags"]


def standings(rows: Iterable[Row], assignment: Assignment) -> dict[str, Standing]:
    """Student -> final rank and bonus among ``rows`` (students without a ranked value: none)."""
    ordered = sorted(rows, key=lambda r: (r.entry.mtime, r.entry.student))
    found = final_standings([(r.entry.student, r.entry.result) for r in ordered], assignment)
    return {str(k): v for k, v in found.items()}


def row_values(row: Row, assignment: Assignment, standing: Standing | None = None) -> dict[str, str]:
    entry, result = row.entry, row.entry.result
    values = {name: "" for name in columns(assignment)}
    values.update(id=safe_cell(entry.student), file=safe_cell(entry.label), sha256=entry.sha256,
                  note=safe_cell(row.note), max_score=f"{assignment.max_score:g}", bonus="0")
    if standing is not None:
        values.update(rank=str(standing.rank), bonus=str(standing.bonus))
    if result is None:
        values.update(total="0", status=str(Status.INVALID), message=safe_cell(entry.problem))
        return values
    for part in result.parts:
        if f"{part.name}_points" in values:
            values[f"{part.name}_points"] = f"{part.score:g}"
            values[f"{part.name}_passed"] = "pass" if part.passed else "fail"
    for column, part_name, metric in metric_columns(assignment):
        ranked = result.part(part_name)
        if ranked is not None and metric in ranked.metrics:
            values[column] = f"{ranked.metrics[metric]:.4f}"
    values.update(total=f"{result.score:g}", max_score=f"{result.max_score:g}",
                  status=str(result.status), message=safe_cell(result.message),
                  flags=safe_cell("; ".join(f.reason for f in result.flags)))
    return values


def write_csv(path: Path, rows: Iterable[Row], assignment: Assignment) -> None:
    """Write the CSV atomically (a reader never sees half of it)."""
    rows = list(rows)
    places = standings(rows, assignment)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(assignment), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row_values(row, assignment, places.get(row.entry.student)))
    write_atomic(path, buffer.getvalue().encode("utf-8"))
