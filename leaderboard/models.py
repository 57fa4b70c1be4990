"""The database tables (SQLModel). Times are aware UTC; the database is the source of truth."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, as an aware UTC time (SQLModel stores aware times and returns them in UTC)."""
    return datetime.now(UTC)


class SubmissionStatus(StrEnum):
    """A submission's state: the grader's result statuses plus the two before a result."""

    QUEUED = "queued"
    RUNNING = "running"
    GRADED = "graded"
    INVALID = "invalid"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    CRASHED = "crashed"
    GRADER_FAULT = "grader_fault"

    @property
    def pending(self) -> bool:
        return self in (SubmissionStatus.QUEUED, SubmissionStatus.RUNNING)

    @property
    def group(self) -> str:
        """What a student sees: queued, running, graded, invalid or failed."""
        if self in (SubmissionStatus.QUEUED, SubmissionStatus.RUNNING, SubmissionStatus.GRADED):
            return str(self)
        if self is SubmissionStatus.INVALID:
            return "invalid"
        return "failed"


class AssignmentRow(SQLModel, table=True):
    """One assignment this service runs; the spec itself stays in its TOML file."""

    __tablename__ = "assignment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    title: str = Field(default="", max_length=300)
    created_at: datetime = Field(default_factory=utcnow)
    board_version: int = 0  # bumped on every change the leaderboard shows
    frozen_at: datetime | None = None
    frozen_by: str = Field(default="", max_length=120)


class Instructor(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=120, unique=True)
    password_hash: str = Field(max_length=300)
    created_at: datetime = Field(default_factory=utcnow)


class Student(SQLModel, table=True):
    """A student from the roster; signs in with a secret derived from the roster key."""

    id: int | None = Field(default=None, primary_key=True)
    roster_id: str = Field(max_length=120, unique=True)
    name: str = Field(default="", max_length=300)
    email: str = Field(default="", max_length=300)
    display_name: str = Field(default="", max_length=60)
    secret_hash: str = Field(max_length=64, unique=True)
    secret_generation: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    last_upload_at: datetime | None = None  # also serialises a student's uploads (row lock)


class Submission(SQLModel, table=True):
    """One uploaded zip; the archive lives at ``uploads/<archive_key>.zip``."""

    __table_args__ = (
        # The board's window query and its upload counts read only these indexes.
        Index(
            "ix_submission_board_public",
            "assignment_id",
            "student_id",
            "rank_value_public",
            "created_at",
            "id",
        ),
        Index(
            "ix_submission_board_final",
            "assignment_id",
            "student_id",
            "rank_value",
            "created_at",
            "id",
        ),
        Index("ix_submission_attempts", "assignment_id", "student_id", "counts_attempt"),
        Index("ix_submission_status", "status", "heartbeat_at"),
        Index("ix_submission_student_created", "student_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    assignment_id: int = Field(foreign_key="assignment.id")
    student_id: int = Field(foreign_key="student.id")
    archive_key: str = Field(max_length=64, unique=True)
    archive_sha256: str = Field(max_length=64)
    size_bytes: int = 0
    filename: str = Field(default="", max_length=255)
    status: str = Field(default=SubmissionStatus.QUEUED, max_length=20)
    counts_attempt: bool = True  # false once invalid or a grader fault: the attempt is refunded
    created_at: datetime = Field(default_factory=utcnow)
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    grading_attempts: int = 0  # how many times a worker started it
    claim_token: str | None = Field(default=None, max_length=64)
    worker: str = Field(default="", max_length=120)
    priority: int = 0  # higher first: uploads before regrades
    # The parts' states while a worker grades it (claims.report_progress): JSON, "" otherwise.
    # Not foreign keys: result rows point back here, and a cycle would need deferred DDL.
    result_id: int | None = None
    previous_result_id: int | None = None
    score: float | None = None
    max_score: float | None = None
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # The ranked value (the spec's rank_by, part.metric) of the current result, on the whole/private
    # split and on the public part; null when the part produced no value.
    rank_value: float | None = None
    rank_value_public: float | None = None
    board_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # The parts' states while a worker grades it (claims.report_progress): JSON, "" otherwise.
    progress_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Result(SQLModel, table=True):
    """One grading of a submission; a regrade adds a row, the submission points to the newest."""

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    status: str = Field(max_length=20)
    score: float = 0.0
    max_score: float = 0.0
    passed: bool = False
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    runtime_s: float = 0.0
    regrade: bool = False
    worker: str = Field(default="", max_length=120)
    result_json: str = Field(sa_column=Column(Text, nullable=False))


class PartResultRow(SQLModel, table=True):
    __tablename__ = "part_result"
    __table_args__ = (UniqueConstraint("result_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    result_id: int = Field(foreign_key="result.id", index=True)
    name: str = Field(max_length=64)
    status: str = Field(max_length=20)
    score: float = 0.0
    max_score: float = 0.0
    passed: bool = False
    message: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    metrics_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    public_metrics_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class BoardEntry(SQLModel, table=True):
    """Each student's best submission on the public part and on the whole (private) split.

    Kept up to date in the transaction that records a result, so the live board reads one
    row per student instead of ranking every submission.
    """

    __tablename__ = "board_entry"

    assignment_id: int = Field(foreign_key="assignment.id", primary_key=True)
    student_id: int = Field(foreign_key="student.id", primary_key=True)
    public_submission_id: int | None = None
    public_value: float | None = None
    public_created_at: datetime | None = None
    final_submission_id: int | None = None
    final_value: float | None = None
    final_created_at: datetime | None = None
    # The earliest upload whose current result passed every part: a bonus place needs one
    # made before the cutoff (the spec's [bonus] requires_all_passed).
    all_passed_at: datetime | None = None


class FrozenRow(SQLModel, table=True):
    """One row of the final ranking, stored when the board froze; never changed afterwards."""

    __tablename__ = "frozen_row"
    __table_args__ = (UniqueConstraint("assignment_id", "rank"),)

    id: int | None = Field(default=None, primary_key=True)
    assignment_id: int = Field(foreign_key="assignment.id")
    rank: int
    student_id: int = Field(foreign_key="student.id")
    submission_id: int = Field(foreign_key="submission.id")
    display_name: str = Field(default="", max_length=60)
    value: float
    metrics_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    uploads: int = 0
    submitted_at: datetime
    bonus: int = 0
    # Passed every part (before the cutoff) when the board froze; null: frozen before recorded.
    all_passed: bool | None = None


class WorkerBeat(SQLModel, table=True):
    """A grading worker's last sign of life, for the health page."""

    __tablename__ = "worker_beat"

    name: str = Field(primary_key=True, max_length=120)
    started_at: datetime = Field(default_factory=utcnow)
    seen_at: datetime = Field(default_factory=utcnow)
    graded: int = 0
    current_submission_id: int | None = None


class SignInFailure(SQLModel, table=True):
    """One failed sign-in, counted against a key: an account or a client address. Kept in the
    database so every web process and machine counts the same; rows older than the window go."""

    __tablename__ = "sign_in_failure"
    __table_args__ = (
        Index("ix_sign_in_failure_key_at", "key", "at"),
        Index("ix_sign_in_failure_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200)
    at: datetime = Field(default_factory=utcnow)
