"""Upload accounting: an upload stored and hashed, the deadline, rate and budget checks,
and the queued submission it becomes (or the reason it is refused)."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from grader.config import Assignment
from grader.errors import SubmissionInvalid
from grader.intake import check_archive
from grader.result import GradeResult, Status
from leaderboard.models import AssignmentRow, Student, Submission, SubmissionStatus, utcnow
from leaderboard.settings import WebSettings

if TYPE_CHECKING:
    from leaderboard.context import Lab, Services

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


def check_upload(archive: StoredArchive, spec: Assignment) -> list[str]:
    """Refuse (422) a stored zip that intake would refuse from its structure alone, with
    intake's own sentence, so that it is never queued and uses no attempt; the worker's
    intake stays the authority for what only extraction finds."""
    try:
        return check_archive(archive.path, spec)
    except SubmissionInvalid as exc:
        raise UploadRefused(exc.message, http_status=422) from None


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


def receive_upload(
    session: Session,
    services: Services,
    lab: Lab,
    *,
    student_id: int,
    stream: IO[bytes],
    filename: str,
    max_bytes: int,
) -> Submission:
    """Store, check, record and queue one upload (web form and API alike); raises
    ``UploadRefused`` with the reason, leaving nothing behind (no file, no row, no attempt)."""
    archive = store_archive(stream, upload_dir=services.settings.upload_dir, max_bytes=max_bytes)
    try:
        check_upload(archive, lab.spec)
        assignment = session.get(AssignmentRow, lab.id)
        assert assignment is not None
        sub = accept_upload(
            session,
            settings=services.settings,
            spec=lab.spec,
            assignment=assignment,
            student_id=student_id,
            archive=archive,
            filename=filename,
        )
        session.commit()
    except BaseException:
        session.rollback()
        archive.path.unlink(missing_ok=True)
        raise
    try:
        services.queue.enqueue(sub.id or 0, priority=sub.priority)
    except Exception:  # the sweep enqueues it again later; the upload itself is safe
        log.exception("submission %s: could not enqueue; the sweep will retry", sub.id)
    return sub
