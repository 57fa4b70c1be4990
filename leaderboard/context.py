"""What a request reaches besides the request: the services the factory built (settings,
course, database, queue, cache), this request's assignment and its database session.

Views import these helpers from here, never the factory's module, so nothing in
``leaderboard`` imports ``leaderboard.app`` but the entry points.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import current_app, g
from sqlalchemy.engine import Engine
from sqlmodel import Session

from grader.config import Assignment
from grader.course import Course
from grader.result import GradeResult
from leaderboard.db import session_scope
from leaderboard.models import AssignmentRow, Result, Submission
from leaderboard.ranking import BoardCache, ensure_assignment
from leaderboard.settings import WebSettings
from leaderboard.tasks import GradingQueue


@dataclass(frozen=True)
class Lab:
    """One assignment of the course as the web app serves it: its spec and its row's id."""

    spec: Assignment
    id: int

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Services:
    """What a request needs besides the request: settings, course, database, queue, cache."""

    settings: WebSettings
    course: Course
    engine: Engine
    queue: GradingQueue
    board_cache: BoardCache = field(default_factory=BoardCache)
    _ids: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lab(self, name: str | None = None) -> Lab:
        """Assignment ``name`` (default: the course's default); its row is made on first use.

        SpecError for a name the course does not have.
        """
        spec = self.course.get(name)
        if spec.name not in self._ids:
            with self._lock, session_scope(self.engine) as session:
                row_id = ensure_assignment(session, spec=spec).id
                assert row_id is not None
                self._ids[spec.name] = row_id
        return Lab(spec, self._ids[spec.name])

    @property
    def spec(self) -> Assignment:
        """The default assignment's spec (pages use ``lab()``: the request's assignment)."""
        return self.course.get()

    def assignment_id(self) -> int:
        """The default assignment's row id (pages use ``lab().id``)."""
        return self.lab().id

    def labs(self) -> list[Lab]:
        """Every assignment of the course, in the course's order."""
        return [self.lab(spec.name) for spec in self.course]

    def lab_of(self, assignment_id: int) -> Lab:
        """The assignment whose row has this id (a submission's ``assignment_id``)."""
        for lab in self.labs():
            if lab.id == assignment_id:
                return lab
        raise LookupError(f"assignment row {assignment_id} is not in this course")


def services() -> Services:
    return current_app.extensions["leaderboard"]


def lab() -> Lab:
    """The assignment this request is about: ``/a/<name>/…``, else the course's default."""
    return services().lab(g.get("assignment"))


def upload_limit() -> int:
    """The largest upload this request's assignment takes (or the service's own limit)."""
    return services().settings.max_upload_bytes or lab().spec.limits.upload_bytes


def db() -> Session:
    """This request's database session (closed, and rolled back if not committed, at the end)."""
    if "db" not in g:
        g.db = Session(services().engine, expire_on_commit=False)
    return g.db


def close_db(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def is_frozen(assignment_id: int | None = None) -> bool:
    """Whether this request's assignment (or the one with ``assignment_id``) is frozen."""
    row = db().get(AssignmentRow, assignment_id or lab().id)
    assert row is not None
    return row.frozen_at is not None


def load_result(sub: Submission) -> GradeResult | None:
    """A submission's current result, or None while it has none."""
    if sub.result_id is None:
        return None
    row = db().get(Result, sub.result_id)
    return GradeResult.from_json(row.result_json) if row else None
