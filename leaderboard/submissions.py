"""Submissions from upload to result: budget and rate checks, claims, results, re-queues.

The database is the source of truth for a submission's state. A worker *claims* a queued
submission with a compare-and-set that hands it a token; only the holder of the current
token can record a result, so a job that runs twice (a re-queue while a slow worker still
lives, a duplicate message) still records exactly one result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from grader.config import Assignment
from grader.faults import fault_result
from grader.result import GradeResult, Status
from grader.standing import ranked_metrics
from grader.text import dump_json
from leaderboard.db import session_scope
from leaderboard.models import (
    AssignmentRow,
    BoardEntry,
    PartResultRow,
    Result,
    Student,
    Submission,
    SubmissionStatus,
    utcnow,
)
from leaderboard.settings import WebSettings

log = logging.getLogger(__name__)

CHUNK = 1 << 16


def human_bytes(n: int) -> str:
    """200 MiB, 48 KiB: the size a person reads."""
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    return f"{max(1, round(n / 2**10))} KiB"


def upload_too_large_message(limit: int) -> str:
    """The one sentence for a zip over the upload limit, wherever it is found out."""
    return (
        f"The upload is larger than the limit of {human_bytes(limit)}; "
        "zip only the required files and try again."
    )


class UploadRefused(Exception):
    """An upload that is not taken; ``message`` is for the student, ``http_status`` for the API."""

    def __init__(self, message: str, *, http_status: int = 400, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s


# --------------------------------------------------------------------------- assignment row


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


# --------------------------------------------------------------------------- upload


@dataclass(frozen=True)
class StoredArchive:
    key: str
    path: Path
    sha256: str
    size_bytes: int


def store_archive(stream: IO[bytes], *, upload_dir: Path, max_bytes: int) -> StoredArchive:
    """Copy an upload to ``<upload_dir>/<random key>.zip`` and hash it on the way."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(16)
    path = upload_dir / f"{key}.zip"
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadRefused(upload_too_large_message(max_bytes), http_status=413)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise UploadRefused("The file is empty; choose your submission zip.")
    return StoredArchive(key, path, digest.hexdigest(), size)


def keeps_archive(result: GradeResult) -> bool:
    """Whether the zip stays on disk once this result is recorded. An upload refused as invalid
    uses no attempt, so its zip is deleted (else a student could fill the disk at no cost) and
    it is not regraded; every other zip stays for regrades."""
    return result.status is not Status.INVALID


def attempts_used(session: Session, *, student_id: int, assignment_id: int) -> int:
    """Uploads that use up an attempt: all except invalid ones and grader faults."""
    return session.exec(
        select(func.count(col(Submission.id))).where(
            Submission.student_id == student_id,
            Submission.assignment_id == assignment_id,
            Submission.counts_attempt == True,  # noqa: E712
        )
    ).one()


def student_submissions(
    session: Session, *, student_id: int | None, assignment_id: int | None = None
) -> list[Submission]:
    """One student's submissions (to one assignment, when given), newest first."""
    query = select(Submission).where(Submission.student_id == student_id)
    if assignment_id is not None:
        query = query.where(Submission.assignment_id == assignment_id)
    return list(session.exec(
        query
        .order_by(col(Submission.created_at).desc(), col(Submission.id).desc())
    ).all())


def remaining_attempts(session: Session, *, student_id: int, assignment_id: int, budget: int) -> int:
    return max(0, budget - attempts_used(session, student_id=student_id, assignment_id=assignment_id))


def accept_upload(
    session: Session,
    *,
    settings: WebSettings,
    spec: Assignment,
    assignment: AssignmentRow,
    student_id: int,
    archive: StoredArchive,
    filename: str,
    now: datetime | None = None,
) -> Submission:
    """Record a stored archive as a queued submission, or refuse it (deadline, rate, budget).

    The first statement updates the student's row: that serialises one student's uploads
    (a row lock on PostgreSQL, the write lock on SQLite), so the counts below are exact
    even when many uploads of the same student arrive at once.
    """
    now = now or utcnow()
    session.execute(
        update(Student).where(col(Student.id) == student_id).values(last_upload_at=now)
    )
    if settings.enforce_deadlines:
        opens, final = spec.deadlines.get("opens"), spec.deadlines.get("final")
        if opens is not None and now < opens:
            raise UploadRefused(f"Uploads open on {opens:%Y-%m-%d %H:%M} UTC.", http_status=403)
        if final is not None and now > final:
            raise UploadRefused(
                f"The deadline ({final:%Y-%m-%d %H:%M} UTC) has passed; uploads are closed.",
                http_status=403,
            )
    window_start = now - timedelta(seconds=settings.upload_rate_window_s)
    recent = session.exec(
        select(func.count(col(Submission.id)), func.min(Submission.created_at)).where(
            Submission.student_id == student_id, Submission.created_at > window_start
        )
    ).one()
    if recent[0] >= settings.upload_rate_count:
        wait = settings.upload_rate_window_s - (now - recent[1]).total_seconds()
        wait_s = max(1, int(wait + 0.999))
        raise UploadRefused(
            f"Too many uploads: at most {settings.upload_rate_count} per "
            f"{settings.upload_rate_window_s:.0f} s. Try again in {wait_s} s.",
            http_status=429,
            retry_after_s=wait_s,
        )
    used = attempts_used(session, student_id=student_id, assignment_id=assignment.id or 0)
    if used >= spec.upload_budget:
        raise UploadRefused(
            f"You have used all {spec.upload_budget} attempts for this assignment.",
            http_status=403,
        )
    submission = Submission(
        assignment_id=assignment.id or 0,
        student_id=student_id,
        archive_key=archive.key,
        archive_sha256=archive.sha256,
        size_bytes=archive.size_bytes,
        filename=filename[:255],
        status=SubmissionStatus.QUEUED,
        created_at=now,
        enqueued_at=now,
        priority=10,
    )
    session.add(submission)
    session.flush()
    return submission


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class Claim:
    submission_id: int
    token: str
    archive_key: str
    attempt: int
    regrade: bool
    archive_sha256: str = ""
    assignment_id: int = 0  # which assignment's spec grades it


def claim(engine: Engine, *, submission_id: int, worker: str, max_attempts: int) -> Claim | None:
    """Take a queued submission for grading; None when it is not queued (done, or taken)."""
    token = secrets.token_hex(16)
    now = utcnow()
    with session_scope(engine) as session:
        taken = session.execute(  # type: ignore[attr-defined]  # execute(update()) returns a CursorResult, which has rowcount
            update(Submission)
            .where(
                col(Submission.id) == submission_id,
                col(Submission.status) == SubmissionStatus.QUEUED,
                col(Submission.grading_attempts) < max_attempts,
            )
            .values(
                status=SubmissionStatus.RUNNING,
                claim_token=token,
                started_at=now,
                heartbeat_at=now,
                worker=worker,
                grading_attempts=Submission.grading_attempts + 1,
            )
        ).rowcount
        if not taken:
            return None
        sub = session.get(Submission, submission_id)
        assert sub is not None
        return Claim(
            submission_id, token, sub.archive_key, sub.grading_attempts, sub.result_id is not None,
            sub.archive_sha256, sub.assignment_id,
        )


def still_held(claim: Claim) -> tuple[Any, ...]:
    """The conditions under which a run may still write its submission: running, under its claim."""
    return (
        Submission.id == claim.submission_id,
        Submission.claim_token == claim.token,
        Submission.status == SubmissionStatus.RUNNING,
    )


def heartbeat(engine: Engine, *, claims: Iterable[Claim]) -> None:
    """Tell the database the worker still grades these submissions."""
    claims = list(claims)
    if not claims:
        return
    now = utcnow()
    with session_scope(engine) as session:
        for c in claims:
            session.execute(
                update(Submission)
                .where(col(Submission.id) == c.submission_id, col(Submission.claim_token) == c.token)
                .values(heartbeat_at=now)
            )


def rank_values(result: GradeResult, spec: Assignment) -> tuple[float | None, float | None, str]:
    """The ranked value (private part; the whole split when all of it is public), the value on
    the public part, and the board's metrics."""
    metrics = ranked_metrics(result, spec)
    if metrics is None:
        return None, None, ""
    final, public = metrics
    metric = spec.ranked_metric
    value = final[metric]
    return value, public.get(metric, value), dump_json({"final": final, "public": public}, indent=None)


def record_result(
    engine: Engine,
    *,
    claim: Claim,
    result: GradeResult,
    spec: Assignment,
    worker: str,
) -> bool:
    """Store a result if the claim still holds; False when another run took over meanwhile.

    The first statement is the compare-and-set on the claim token: it takes the row's write
    lock, so the check and the insert of the result are one atomic step on both databases.
    """
    now = utcnow()
    value, value_public, board_json = rank_values(result, spec)
    with session_scope(engine) as session:
        won = session.execute(  # type: ignore[attr-defined]  # execute(update()) returns a CursorResult, which has rowcount
            update(Submission)
            .where(*still_held(claim))
            .values(
                status=str(result.status),
                counts_attempt=result.counts_as_attempt,
                score=result.score,
                max_score=result.max_score,
                message=result.message,
                rank_value=value,
                rank_value_public=value_public,
                board_json=board_json,
                finished_at=now,
                claim_token=None,
                heartbeat_at=None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not won:
            log.warning("submission %s: claim lost, result discarded", claim.submission_id)
            return False
        sub = session.get(Submission, claim.submission_id, populate_existing=True)
        assert sub is not None
        row = Result(
            submission_id=claim.submission_id,
            status=str(result.status),
            score=result.score,
            max_score=result.max_score,
            passed=result.passed,
            message=result.message,
            runtime_s=result.runtime_s,
            regrade=sub.result_id is not None,
            worker=worker,
            result_json=result.to_json(indent=None),
        )
        session.add(row)
        session.flush()
        for part in result.parts:
            session.add(
                PartResultRow(
                    result_id=row.id or 0,
                    name=part.name,
                    status=str(part.status),
                    score=part.score,
                    max_score=part.max_score,
                    passed=part.passed,
                    message=part.message,
                    metrics_json=dump_json(dict(part.metrics), indent=None),
                    public_metrics_json=dump_json(dict(part.public_metrics), indent=None),
                )
            )
        if sub.result_id is not None:
            sub.previous_result_id = sub.result_id
        sub.result_id = row.id
        session.add(sub)
        session.flush()
        refresh_board_entry(session, assignment_id=sub.assignment_id, student_id=sub.student_id)
        bump_board(session, assignment_id=sub.assignment_id)
    return True


def release_for_retry(engine: Engine, *, claim: Claim) -> int | None:
    """Put a submission whose run ended in a grader fault back in the queue (the run stays
    counted in ``grading_attempts``). Its queue priority; None when the claim no longer holds."""
    with session_scope(engine) as session:
        released = session.execute(
            update(Submission)
            .where(*still_held(claim))
            .values(status=SubmissionStatus.QUEUED, claim_token=None, heartbeat_at=None, enqueued_at=utcnow())
            .returning(col(Submission.priority))
            .execution_options(synchronize_session=False)
        ).first()
    return None if released is None else int(released[0])


def give_up(engine: Engine, *, submission_id: int, spec: Assignment, message: str, detail: str) -> None:
    """Record a grader fault for a submission that could not be graded (attempt refunded)."""
    result = fault_result(spec, message, detail=detail)
    token = secrets.token_hex(16)
    with session_scope(engine) as session:
        session.execute(
            update(Submission)
            .where(col(Submission.id) == submission_id)
            .values(status=SubmissionStatus.RUNNING, claim_token=token)
        )
    record_result(
        engine,
        claim=Claim(submission_id, token, "", 0, False),
        result=result,
        spec=spec,
        worker="sweeper",
    )


@dataclass(frozen=True)
class SweepReport:
    requeued: tuple[int, ...] = ()
    given_up: tuple[int, ...] = ()
    lost: tuple[int, ...] = ()


def sweep_stuck(
    engine: Engine,
    *,
    settings: WebSettings,
    spec: Assignment,
    now: datetime | None = None,
    assignment_id: int | None = None,
) -> SweepReport:
    """Put running submissions whose worker went silent (or overran) back in the queue.

    A submission that has already been started ``max_grading_attempts`` times becomes a
    grader fault (the attempt is refunded) instead of looping for ever. With
    ``assignment_id``, only that assignment's submissions (``spec`` is its spec).
    """
    now = now or utcnow()
    silent = now - timedelta(seconds=settings.stale_after_s)
    overran = now - timedelta(seconds=spec.sandbox_wall_s + settings.grading_margin_s)
    stuck: tuple[Any, ...] = (
        col(Submission.status) == SubmissionStatus.RUNNING,
        or_(col(Submission.heartbeat_at) < silent, col(Submission.started_at) < overran),
    )
    if assignment_id is not None:
        stuck += (col(Submission.assignment_id) == assignment_id,)
    with session_scope(engine) as session:
        requeued = [
            row[0]
            for row in session.execute(
                update(Submission)
                .where(*stuck, col(Submission.grading_attempts) < settings.max_grading_attempts)
                .values(
                    status=SubmissionStatus.QUEUED,
                    claim_token=None,
                    heartbeat_at=None,
                    enqueued_at=now,
                )
                .returning(col(Submission.id))
                .execution_options(synchronize_session=False)
            )
        ]
        exhausted = [i for i in session.exec(select(Submission.id).where(*stuck)).all() if i is not None]
    if requeued:
        log.warning("re-queued submissions stuck in running: %s", requeued)
    for sub_id in exhausted:
        log.error(
            "submission %s: started %s times without a result; grader fault",
            sub_id,
            settings.max_grading_attempts,
        )
        give_up(
            engine,
            submission_id=sub_id,
            spec=spec,
            message="The grader could not finish your submission.",
            detail=f"started {settings.max_grading_attempts} times without a result "
            "(worker died or hung each time)",
        )
    return SweepReport(tuple(requeued), tuple(exhausted))


def queued_since(engine: Engine, *, before: datetime) -> list[tuple[int, int]]:
    """(id, priority) of submissions queued before ``before`` (candidates for a lost job)."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Submission.id, Submission.priority).where(
                Submission.status == SubmissionStatus.QUEUED,
                col(Submission.enqueued_at) < before,
            )
        ).all()
    return [(int(a), int(b)) for a, b in rows if a is not None]


def mark_enqueued(engine: Engine, *, submission_ids: Iterable[int]) -> None:
    ids = list(submission_ids)
    if not ids:
        return
    with session_scope(engine) as session:
        session.execute(
            update(Submission)
            .where(col(Submission.id).in_(ids))
            .values(enqueued_at=utcnow())
        )


def request_regrade(session: Session, *, submission_ids: Iterable[int]) -> list[int]:
    """Queue finished submissions again (regrades run after fresh uploads); returns their ids.
    Invalid uploads are not taken: their zips were deleted (``keeps_archive``)."""
    ids = list(submission_ids)
    done = [s for s in SubmissionStatus if not s.pending and s is not SubmissionStatus.INVALID]
    taken: list[int] = []
    for sub_id in ids:
        n = session.execute(  # type: ignore[attr-defined]  # execute(update()) returns a CursorResult, which has rowcount
            update(Submission)
            .where(col(Submission.id) == sub_id, col(Submission.status).in_(done))
            .values(
                status=SubmissionStatus.QUEUED,
                enqueued_at=utcnow(),
                grading_attempts=0,
                priority=0,
            )
        ).rowcount
        if n:
            taken.append(sub_id)
    return taken
