"""Record results graded by ``grader batch --publish`` in the leaderboard, as the web upload does.

Declared under the ``grader.publish`` entry point, so the grader imports nothing from here.
The service's settings come from the environment as for the web app and the worker
(``LEADERBOARD_INSTANCE``, ``LEADERBOARD_DATABASE_URL``, …; see ``WebSettings.from_env``).
The archive is stored and accepted like an upload (``accept_upload``; deadlines and the
upload rate do not apply to the instructor's import, the upload budget does), then the
batch's result is recorded through the worker's path (``claim`` + ``record_result``), so the
board, the student's page and the result history see it like any other. The same zip of the
same student is not added twice: its submission gets the new result as a regrade, or is
left alone when the result is the same.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session, col, select

from grader.config import Settings, load_assignment
from grader.result import GradeResult
from leaderboard.claims import claim, record_result, request_regrade
from leaderboard.db import make_engine, session_scope
from leaderboard.models import AssignmentRow, Result, Student, Submission, SubmissionStatus
from leaderboard.ranking import ensure_assignment
from leaderboard.settings import WebSettings
from leaderboard.uploads import UploadRefused, accept_upload, keeps_archive, store_archive

log = logging.getLogger(__name__)

WORKER = "grader-batch"


class PublishError(Exception):
    """The result could not be recorded; the message says why (shown on the batch's row)."""


def _web_settings(settings: Settings) -> WebSettings:
    web = WebSettings.from_env(grader=settings)
    if web.db_url.startswith("sqlite:///"):
        path = Path(web.db_url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise PublishError(
                f"there is no leaderboard database at {path}; set LEADERBOARD_INSTANCE (or "
                "LEADERBOARD_DATABASE_URL) to the service's, or create it with "
                "`flask --app leaderboard init-db`")
    # The instructor imports graded work: no deadline, no rate limit (the budget still holds).
    return replace(web, enforce_deadlines=False, upload_rate_count=2**31 - 1).with_keys()


def _essence(result: GradeResult) -> tuple[object, ...]:
    return (result.status, result.score, result.spec_version,
            tuple((p.name, p.score, tuple(sorted(p.metrics.items()))) for p in result.parts))


def _same_as_recorded(session: Session, submission: Submission, result: GradeResult) -> bool:
    row = session.get(Result, submission.result_id) if submission.result_id else None
    if row is None:
        return False
    try:
        return _essence(GradeResult.from_json(row.result_json)) == _essence(result)
    except (ValueError, KeyError, TypeError):
        return False


def record_offline(
    settings: Settings, student_id: str, archive: Path, result: GradeResult, *, filename: str = ""
) -> str:
    """Record ``result`` of ``archive`` for the student with roster id ``student_id``; a short note.

    Raises PublishError (an unknown student, no database, a refused upload) with a message.
    """
    web = _web_settings(settings)
    spec = load_assignment(settings.assignment_path)
    engine = make_engine(web.db_url)
    stored = None
    try:
        with session_scope(engine) as session:
            student = session.exec(select(Student).where(Student.roster_id == student_id)).first()
            if student is None:
                raise PublishError(f"no student with id {student_id!r} in the leaderboard's roster; "
                                   "import the roster (flask --app leaderboard import-roster) first")
            row = ensure_assignment(session, spec=spec)
            assignment = session.get(AssignmentRow, row.id)
            assert assignment is not None
            existing = session.exec(
                select(Submission)
                .where(Submission.student_id == student.id, Submission.assignment_id == assignment.id,
                       Submission.archive_sha256 == result.submission_sha256,
                       Submission.status != SubmissionStatus.INVALID)  # its zip is gone: a new one
                .order_by(col(Submission.id).desc())
            ).first() if result.submission_sha256 else None
            if existing is not None:
                if _same_as_recorded(session, existing, result):
                    return f"already on the board as submission {existing.id}"
                if not request_regrade(session, submission_ids=[existing.id or 0]):
                    raise PublishError(f"submission {existing.id} is being graded by the service "
                                       "right now; publish again later")
                submission_id = existing.id or 0
            else:
                with archive.open("rb") as fh:
                    stored = store_archive(fh, upload_dir=web.upload_dir, max_bytes=2**40)
                submission = accept_upload(
                    session, settings=web, spec=spec, assignment=assignment, student_id=student.id or 0,
                    archive=stored, filename=filename or archive.name,
                )
                submission_id = submission.id or 0
        taken = claim(engine, submission_id=submission_id, worker=WORKER, max_attempts=2**31 - 1)
        if taken is None or not record_result(engine, claim=taken, result=result, spec=spec, worker=WORKER):
            raise PublishError(f"submission {submission_id} was taken by a grading worker meanwhile")
        if not keeps_archive(result):
            (web.upload_dir / f"{taken.archive_key}.zip").unlink(missing_ok=True)
        return f"submission {submission_id}"
    except UploadRefused as exc:
        if stored is not None:
            stored.path.unlink(missing_ok=True)
        raise PublishError(exc.message) from None
    except (OperationalError, ProgrammingError) as exc:
        if stored is not None:
            stored.path.unlink(missing_ok=True)
        raise PublishError(f"the leaderboard database cannot be used ({exc.orig}); is it created and "
                           "up to date (flask --app leaderboard init-db)?") from None
    finally:
        engine.dispose()
