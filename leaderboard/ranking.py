"""The leaderboard: best graded submission per student, public/private split, freeze, bonus.

While the challenge runs the board ranks by the value on the *public* part of each hidden
split (the judge computes it; the spec sets the fraction). At the bonus deadline the board
freezes: the final ranking uses the rest (the result's ``metrics``), is stored row by row,
and never changes afterwards. Bonus places go by rank, through ``Assignment.award_bonus``
(the spec's rule: with ``[bonus] requires_all_passed`` only students who passed every part,
in a graded upload made before the cutoff, take one). A cache keyed on the assignment's
``board_version`` (bumped in the same transaction as every change the board shows) serves
repeated requests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from grader.config import Assignment, PartSpec
from grader.text import dump_json
from leaderboard.models import (
    AssignmentRow,
    BoardEntry,
    FrozenRow,
    Result,
    Student,
    Submission,
    SubmissionStatus,
    utcnow,
)

log = logging.getLogger(__name__)

ANONYMOUS = "(no display name)"


# --------------------------------------------------------------------------- board upkeep


def ensure_assignment(session: Session, *, spec: Assignment) -> AssignmentRow:
    """The row of this assignment, made on first use."""
    row = session.exec(select(AssignmentRow).where(AssignmentRow.name == spec.name)).first()
    if row is None:
        row = AssignmentRow(name=spec.name, title=spec.title)
        session.add(row)
        session.flush()
    return row


def bump_board(session: Session, *, assignment_id: int) -> None:
    """Tell every process that the leaderboard changed (their caches key on this number)."""
    session.execute(
        update(AssignmentRow)
        .where(col(AssignmentRow.id) == assignment_id)
        .values(board_version=AssignmentRow.board_version + 1)
    )


def refresh_board_entry(session: Session, *, assignment_id: int, student_id: int) -> None:
    """Recompute one student's best submissions (public and final), and their earliest upload
    whose current result passed every part (the bonus rule's test), into ``board_entry``.

    The student's row is locked first (PostgreSQL; SQLite writes are serial anyway), so two
    results of one student recorded at once cannot overwrite each other's best.
    """
    session.exec(select(Student.id).where(Student.id == student_id).with_for_update()).first()
    values: dict[str, object] = {}
    for scope, column in (("public", Submission.rank_value_public), ("final", Submission.rank_value)):
        ranked = col(column)
        best = session.exec(
            select(Submission.id, ranked, Submission.created_at)
            .where(
                Submission.assignment_id == assignment_id,
                Submission.student_id == student_id,
                ranked.is_not(None),
            )
            .order_by(ranked.desc(), col(Submission.created_at), col(Submission.id))
            .limit(1)
        ).first()
        values[f"{scope}_submission_id"] = best[0] if best else None
        values[f"{scope}_value"] = best[1] if best else None
        values[f"{scope}_created_at"] = best[2] if best else None
    values["all_passed_at"] = session.exec(
        select(Submission.created_at)
        .join(Result, col(Result.id) == col(Submission.result_id))
        .where(
            Submission.assignment_id == assignment_id,
            Submission.student_id == student_id,
            Result.passed == True,  # noqa: E712
        )
        .order_by(col(Submission.created_at))
        .limit(1)
    ).first()
    dialect = session.get_bind().dialect.name
    upsert = (pg_insert if dialect == "postgresql" else sqlite_insert)(BoardEntry).values(
        assignment_id=assignment_id, student_id=student_id, **values
    )
    session.execute(upsert.on_conflict_do_update(index_elements=["assignment_id", "student_id"], set_=values))


@dataclass(frozen=True)
class BoardRow:
    rank: int
    display_name: str
    metrics: Mapping[str, float]
    value: float
    uploads: int
    submitted_at: datetime
    bonus: int
    passed: bool  # the ranked value is above the pass line (PartSpec.passes)
    student_id: int = field(repr=False)
    submission_id: int = field(repr=False)
    # Passed every part in a graded upload (before the cutoff); decides a bonus place with
    # the spec's requires_all_passed. Not in the public JSON: it is the student's grade.
    all_passed: bool = field(default=True, repr=False)
    # Holds a bonus place by rank but gets no bonus for not passing every part (shown, as the
    # missing badge tells anyway).
    bonus_withheld: bool = False

    def to_dict(self, columns: Sequence[str]) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "display_name": self.display_name,
            **{c: self.metrics.get(c) for c in columns},
            "value": self.value,
            "uploads": self.uploads,
            "submitted_at": self.submitted_at.isoformat(),
            "bonus": self.bonus,
            "bonus_withheld": self.bonus_withheld,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Board:
    assignment: str
    title: str
    version: int
    scope: str  # "public" while the challenge runs, "final" once frozen
    frozen_at: datetime | None
    public_fraction: float
    rank_by: str
    columns: tuple[str, ...]
    threshold: float
    bonus_points: tuple[int, ...]
    bonus_deadline: datetime | None
    rows: tuple[BoardRow, ...]
    bonus_requires_all_passed: bool = True
    labels: tuple[str, ...] = ()  # the columns' human names, from the spec
    ranked_by: str = ""  # the ranked metric in words: "weighted accuracy (FinetuneNet on ...)"

    def label(self, column: str) -> str:
        return dict(zip(self.columns, self.labels, strict=False)).get(column, column)

    def to_dict(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment,
            "title": self.title,
            "version": self.version,
            "scope": self.scope,
            "frozen": self.frozen_at is not None,
            "frozen_at": self.frozen_at.isoformat() if self.frozen_at else None,
            "public_fraction": self.public_fraction,
            "rank_by": self.rank_by,
            "columns": list(self.columns),
            "labels": list(self.labels),
            "ranked_by": self.ranked_by,
            "pass_line": self.threshold,
            "bonus_points": list(self.bonus_points),
            "bonus_requires_all_passed": self.bonus_requires_all_passed,
            "bonus_deadline": self.bonus_deadline.isoformat() if self.bonus_deadline else None,
            "rows": [r.to_dict(self.columns) for r in self.rows],
        }


def board_columns(spec: Assignment) -> tuple[PartSpec, tuple[str, ...]]:
    """(ranked part, metric columns) of the board: the part's metrics, the ranked one last."""
    part, metric = spec.part(spec.ranked_part), spec.ranked_metric
    columns = (*(k for k in part.columns if k != metric), metric)
    return part, columns


def with_bonus(spec: Assignment, rows: Sequence[BoardRow]) -> list[BoardRow]:
    """``rows`` (best first) with the spec's bonus points."""
    awards = spec.award_bonus([r.all_passed for r in rows])
    return [replace(r, bonus=b, bonus_withheld=_withheld(spec, r.rank, r.all_passed))
            for r, b in zip(rows, awards, strict=True)]


def _withheld(spec: Assignment, rank: int, all_passed: bool) -> bool:
    return spec.bonus_requires_all_passed and not all_passed and rank <= len(spec.bonus_points)


def all_passed_students(session: Session, *, assignment_id: int, cutoff: datetime | None) -> set[int]:
    """Students with an upload (made up to ``cutoff``) whose current result passed every part."""
    query = select(BoardEntry.student_id).where(
        BoardEntry.assignment_id == assignment_id,
        col(BoardEntry.all_passed_at).is_not(None),
    )
    if cutoff is not None:
        query = query.where(col(BoardEntry.all_passed_at) <= cutoff)
    return {int(s) for s in session.exec(query).all()}


def _uploads(session: Session, assignment_id: int) -> dict[int, int]:
    rows = session.exec(
        select(Submission.student_id, func.count(col(Submission.id)))
        .where(Submission.assignment_id == assignment_id, Submission.counts_attempt == True)  # noqa: E712
        .group_by(col(Submission.student_id))
    ).all()
    return {int(a): int(b) for a, b in rows}


def _ranked(
    session: Session, *, spec: Assignment, assignment_id: int, scope: str, cutoff: datetime
) -> list[BoardRow]:
    """Best submission per student (ties: the earlier one), best first."""
    ranked = col(Submission.rank_value_public if scope == "public" else Submission.rank_value)
    part, columns = board_columns(spec)
    uploads = _uploads(session, assignment_id)
    passed = all_passed_students(session, assignment_id=assignment_id, cutoff=cutoff)
    order = (ranked.desc(), col(Submission.created_at).asc(), col(Submission.id).asc())
    best = (
        select(  # type: ignore[call-overload]  # sqlmodel's select() stubs stop at four columns; any number works
            Submission.id,
            Submission.student_id,
            ranked.label("value"),
            Submission.created_at,
            func.row_number().over(partition_by=col(Submission.student_id), order_by=order).label("rn"),
        )
        .where(
            Submission.assignment_id == assignment_id,
            ranked.is_not(None),
            Submission.created_at <= cutoff,
        )
        .subquery()
    )
    # The window reads the index only; the (large) board_json is fetched for the winners.
    query = (
        select(  # type: ignore[call-overload]  # sqlmodel's select() stubs stop at four columns; any number works
            best.c.id,
            best.c.student_id,
            best.c.value,
            best.c.created_at,
            Submission.board_json,
            Student.display_name,
        )
        .join(Submission, Submission.id == best.c.id)
        .join(Student, Student.id == best.c.student_id)
        .where(best.c.rn == 1)
        .order_by(best.c.value.desc(), best.c.created_at.asc(), best.c.id.asc())
    )
    return _rows(session.execute(query), spec=spec, scope=scope, part=part, columns=columns,
                 uploads=uploads, all_passed=passed)


def _live(session: Session, *, spec: Assignment, assignment_id: int) -> list[BoardRow]:
    """The live (public) ranking from ``board_entry``: one row per student, best first."""
    part, columns = board_columns(spec)
    uploads = _uploads(session, assignment_id)
    passed = all_passed_students(session, assignment_id=assignment_id, cutoff=None)
    query = (
        select(  # type: ignore[call-overload]  # sqlmodel's select() stubs stop at four columns; any number works
            BoardEntry.public_submission_id,
            BoardEntry.student_id,
            BoardEntry.public_value,
            BoardEntry.public_created_at,
            Submission.board_json,
            Student.display_name,
        )
        .join(Submission, Submission.id == BoardEntry.public_submission_id)
        .join(Student, Student.id == BoardEntry.student_id)
        .where(
            BoardEntry.assignment_id == assignment_id,
            col(BoardEntry.public_value).is_not(None),
        )
        .order_by(
            col(BoardEntry.public_value).desc(),
            col(BoardEntry.public_created_at).asc(),
            col(BoardEntry.public_submission_id).asc(),
        )
    )
    return _rows(session.execute(query), spec=spec, scope="public", part=part, columns=columns,
                 uploads=uploads, all_passed=passed)


def _rows(
    result: Any, *, spec: Assignment, scope: str, part: PartSpec, columns: Sequence[str],
    uploads: dict[int, int], all_passed: set[int],
) -> list[BoardRow]:
    """Board rows from ``(submission id, student id, value, created_at, board_json, display)``."""
    rows = []
    for rank, (sub_id, student_id, value, created_at, board_json, display) in enumerate(
        result, start=1
    ):
        metrics = json.loads(board_json).get(scope, {}) if board_json else {}
        rows.append(
            BoardRow(
                rank=rank,
                display_name=display or ANONYMOUS,
                metrics={c: metrics[c] for c in columns if c in metrics},
                value=float(value),
                uploads=uploads.get(int(student_id), 0),
                submitted_at=created_at,
                bonus=0,
                passed=part.passes(float(value)),
                student_id=int(student_id),
                submission_id=int(sub_id),
                all_passed=int(student_id) in all_passed,
            )
        )
    return with_bonus(spec, rows)


def compute_board(session: Session, *, spec: Assignment, assignment: AssignmentRow) -> Board:
    """The board as it stands: the stored final ranking once frozen, else the live public one."""
    part, columns = board_columns(spec)
    if assignment.frozen_at is not None:
        frozen = session.exec(
            select(FrozenRow, Student.display_name)
            .join(Student, col(Student.id) == col(FrozenRow.student_id))
            .where(FrozenRow.assignment_id == assignment.id)
            .order_by(col(FrozenRow.rank))
        ).all()
        rows: list[BoardRow] = [
            BoardRow(
                rank=f.rank,
                display_name=f.display_name or display or ANONYMOUS,
                metrics=json.loads(f.metrics_json),
                value=f.value,
                uploads=f.uploads,
                submitted_at=f.submitted_at,
                bonus=f.bonus,
                passed=part.passes(f.value),
                student_id=f.student_id,
                submission_id=f.submission_id,
                all_passed=f.all_passed is not False,  # None: frozen before it was recorded
                bonus_withheld=not f.bonus and _withheld(spec, f.rank, f.all_passed is not False),
            )
            for f, display in frozen
        ]
        scope = "final"
    else:
        scope = "public" if spec.has_private_part else "final"
        rows = _live(session, spec=spec, assignment_id=assignment.id or 0)
    return Board(
        assignment=spec.name,
        title=spec.title,
        version=assignment.board_version,
        scope=scope,
        frozen_at=assignment.frozen_at,
        public_fraction=spec.public_fraction,
        rank_by=spec.rank_by,
        columns=columns,
        labels=tuple(part.label(c) for c in columns),
        ranked_by=f"{part.label(spec.ranked_metric)} of {part.title}",
        threshold=part.threshold,
        bonus_points=spec.bonus_points,
        bonus_deadline=spec.deadlines.get("bonus"),
        rows=tuple(rows),
        bonus_requires_all_passed=spec.bonus_requires_all_passed,
    )


def pending_before(session: Session, *, assignment_id: int, cutoff: datetime) -> int:
    """Submissions made before ``cutoff`` that are not graded yet (a freeze waits for them)."""
    return session.exec(
        select(func.count(col(Submission.id))).where(
            Submission.assignment_id == assignment_id,
            Submission.created_at <= cutoff,
            col(Submission.status).in_([SubmissionStatus.QUEUED, SubmissionStatus.RUNNING]),
        )
    ).one()


def freeze_board(
    session: Session,
    *,
    spec: Assignment,
    assignment: AssignmentRow,
    by: str,
    cutoff: datetime | None = None,
) -> bool:
    """Store the final ranking (private part) with bonus points; False if already frozen.

    Only submissions made up to ``cutoff`` (default: now) count, for the ranking and for
    having passed every part.
    """
    now = utcnow()
    cutoff = cutoff or now
    won = session.execute(  # type: ignore[attr-defined]  # execute(update()) returns a CursorResult, which has rowcount
        update(AssignmentRow)
        .where(col(AssignmentRow.id) == assignment.id, col(AssignmentRow.frozen_at).is_(None))
        .values(frozen_at=now, frozen_by=by[:120])
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        return False
    rows = _ranked(session, spec=spec, assignment_id=assignment.id or 0, scope="final", cutoff=cutoff)
    for row in rows:
        session.add(
            FrozenRow(
                assignment_id=assignment.id or 0,
                rank=row.rank,
                student_id=row.student_id,
                submission_id=row.submission_id,
                display_name=row.display_name if row.display_name != ANONYMOUS else "",
                value=row.value,
                metrics_json=dump_json(dict(row.metrics), indent=None),
                uploads=row.uploads,
                submitted_at=row.submitted_at,
                bonus=row.bonus,
                all_passed=row.all_passed,
            )
        )
    bump_board(session, assignment_id=assignment.id or 0)
    session.flush()
    session.refresh(assignment)
    log.info("froze the %s board: %d rows, by %s", spec.name, len(rows), by)
    return True


def maybe_auto_freeze(session: Session, *, spec: Assignment, assignment: AssignmentRow) -> bool:
    """Freeze at the bonus deadline once everything uploaded before it has been graded."""
    deadline = spec.deadlines.get("bonus")
    if deadline is None or assignment.frozen_at is not None or utcnow() < deadline:
        return False
    if pending_before(session, assignment_id=assignment.id or 0, cutoff=deadline):
        return False
    return freeze_board(session, spec=spec, assignment=assignment, by="deadline", cutoff=deadline)


@dataclass
class _Entry:
    version: int
    board: Board
    payload: dict[str, Any] = field(default_factory=dict)


class BoardCache:
    """Per-process cache of the computed board (and things rendered from it), by version.

    When the version moves on, the first request recomputes (and ``prepare`` renders) the
    board while concurrent requests keep getting the previous one instead of queueing
    behind it: one request per new result and process pays the cost, not all of them.
    """

    def __init__(self, prepare: Callable[[Board, dict[str, Any]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._prepare = prepare

    def get(self, session: Session, *, spec: Assignment) -> tuple[Board, dict[str, Any]]:
        """The current board and a scratch dict for renderings of exactly this version."""
        assignment = session.exec(select(AssignmentRow).where(AssignmentRow.name == spec.name)).first()
        if assignment is None:
            raise LookupError(spec.name)
        entry = self._entries.get(spec.name)
        if entry is not None and entry.version == assignment.board_version:
            return entry.board, entry.payload
        if not self._lock.acquire(blocking=entry is None):
            assert entry is not None
            return entry.board, entry.payload  # another thread is computing the new one
        try:
            entry = self._entries.get(spec.name)
            if entry is None or entry.version != assignment.board_version:
                board = compute_board(session, spec=spec, assignment=assignment)
                entry = _Entry(assignment.board_version, board)
                if self._prepare is not None:
                    self._prepare(board, entry.payload)
                self._entries[spec.name] = entry
        finally:
            self._lock.release()
        return entry.board, entry.payload
