"""The course gradebook: one row per student, the points of every assignment and a total.

Each assignment's points follow its own rules, the same as its grades CSV: the points of
the student's best graded submission, plus the bonus points of their frozen final rank.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping

from sqlmodel import Session, select

from grader.spreadsheet import safe_cell
from leaderboard.models import Student
from leaderboard.reports import best_submissions, frozen_rows


def gradebook_csv(session: Session, *, assignments: Mapping[str, int]) -> str:
    """CSV of every student of the roster; ``assignments``: name -> row id, in column order.

    Columns: id, name, email, then ``<name>_points`` and ``<name>_bonus`` per assignment
    (points empty when the student has no graded submission there), then ``total``.
    """
    best = {name: best_submissions(session, assignment_id=i) for name, i in assignments.items()}
    bonus = {name: frozen_rows(session, assignment_id=i) for name, i in assignments.items()}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "name", "email"]
        + [f"{name}_{what}" for name in assignments for what in ("points", "bonus")]
        + ["total"]
    )
    for student in session.exec(select(Student).order_by(Student.roster_id)).all():
        cells: list[str] = []
        total = 0.0
        for name in assignments:
            sub = best[name].get(student.id or 0)
            points = sub.score if sub is not None and sub.score is not None else None
            frozen = bonus[name].get(student.id or 0)
            extra = frozen.bonus if frozen is not None else 0
            total += (points or 0.0) + extra
            cells += ["" if points is None else f"{points:g}", str(extra)]
        writer.writerow(
            [safe_cell(v) for v in (student.roster_id, student.name, student.email)]
            + cells
            + [f"{total:g}"]
        )
    return out.getvalue()
