"""The claim protocol: a worker takes a queued submission, records its result or hands it
back; the sweeper re-queues what a silent worker held; regrades queue finished ones again.

The database is the source of truth for a submission's state. A worker *claims* a queued
submission with a compare-and-set that hands it a token; only the holder of the current
token can record a result, so a job that runs twice (a re-queue while a slow worker still
lives, a duplicate message) still records exactly one result.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from grader.config import Assignment
from grader.faults import fault_result
from grader.progress import PartProgress
from grader.result import GradeResult
from grader.standing import ranked_metrics
from grader.text import dump_json
from leaderboard.db import session_scope
from leaderboard.models import PartResultRow, Result, Submission, SubmissionStatus, utcnow
from leaderboard.ranking import bump_board, refresh_board_entry
from leaderboard.settings import WebSettings

log = logging.getLogger(__name__)


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
                progress_json="",
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


def report_progress(engine: Engine, *, claim: Claim, parts: Iterable[PartProgress]) -> None:
    """Store the parts' states of a running grade for the student's page (while the claim
    holds: a run that lost its claim writes nothing)."""
    state = dump_json({"at": utcnow().isoformat(), "parts": [p.to_json() for p in parts]}, indent=None)
    with session_scope(engine) as session:
        session.execute(
            update(Submission).where(*still_held(claim)).values(progress_json=state)
            .execution_options(synchronize_session=False)
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
                progress_json="",
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
            .values(status=SubmissionStatus.QUEUED, claim_token=None, heartbeat_at=None,
                    enqueued_at=utcnow(), progress_json="")
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
                    progress_json="",
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
