"""The worker's housekeeping in-process: stuck runs re-queued, lost jobs found, loops ended."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from leaderboard.claims import claim
from leaderboard.db import session_scope
from leaderboard.models import Result, Submission, WorkerBeat, utcnow
from leaderboard.ranking import ensure_assignment
from leaderboard.settings import WebSettings
from leaderboard.tasks import GradingQueue
from leaderboard.uploads import accept_upload, store_archive
from leaderboard.worker import Grader
from tests.leaderboard.factories import tiny_zip
from tests.leaderboard.helpers import Roster, grader_settings


def _queued(grader: Grader, student_id: int) -> int:
    with session_scope(grader.engine) as session:
        assignment = ensure_assignment(session, spec=grader.spec)
        archive = store_archive(
            io.BytesIO(tiny_zip()), upload_dir=grader.settings.upload_dir, max_bytes=1 << 20
        )
        sub = accept_upload(
            session,
            settings=grader.settings,
            spec=grader.spec,
            assignment=assignment,
            student_id=student_id,
            archive=archive,
            filename="s.zip",
        )
        return sub.id or 0


def _age(grader: Grader, sub_id: int, **columns: Any) -> None:
    with session_scope(grader.engine) as session:
        session.execute(update(Submission).where(Submission.id == sub_id).values(**columns))


def test_sweep_requeues_silent_runs_finds_lost_jobs_and_stops_loops(
    web_settings: WebSettings, roster: Roster, request: pytest.FixtureRequest, grader_home: Path
) -> None:
    settings = replace(
        web_settings, grader=grader_settings(grader_home), stale_after_s=30, lost_after_s=60,
        max_grading_attempts=2,
    )
    queue = GradingQueue(settings)
    grader = Grader(settings, queue, name="test-worker")
    request.addfinalizer(grader.close)
    long_ago = utcnow() - timedelta(minutes=10)

    # 1. A submission started as often as allowed becomes a grader fault, refunded.
    looping = _queued(grader, roster.ids["s003"])
    for attempt in range(2):
        assert claim(grader.engine, submission_id=looping, worker="dead", max_attempts=2)
        _age(grader, looping, heartbeat_at=long_ago)
        if attempt == 0:
            grader.sweep()  # back to the queue for its second (last) run
    queue.flush()
    # 2. A run whose worker went silent goes back to the queue.
    silent = _queued(grader, roster.ids["s001"])
    assert claim(grader.engine, submission_id=silent, worker="dead", max_attempts=2)
    _age(grader, silent, heartbeat_at=long_ago)
    # 3. A queued submission whose job vanished (a flushed queue) is enqueued again.
    lost = _queued(grader, roster.ids["s002"])
    queue.flush()
    _age(grader, lost, enqueued_at=long_ago)
    # 4. A live run (fresh heartbeat) is left alone.
    alive = _queued(grader, roster.ids["s001"])
    queue.flush()
    assert claim(grader.engine, submission_id=alive, worker="alive", max_attempts=2)

    grader.sweep()
    grader.beat()
    with Session(grader.engine) as session:
        rows = {s.id: s for s in session.exec(select(Submission)).all()}
        results = session.exec(select(Result).where(Result.submission_id == looping)).all()
        beat = session.get(WorkerBeat, "test-worker")
    assert rows[silent].status == "queued"
    assert rows[silent].claim_token is None
    assert rows[looping].status == "grader_fault"
    assert rows[looping].counts_attempt is False
    assert len(results) == 1
    assert "did not use up an attempt" in results[0].message
    assert rows[alive].status == "running"
    assert queue.pending_ids() == {silent, lost}
    assert beat is not None


def test_a_stale_worker_cannot_record_over_the_new_run(
    web_settings: WebSettings, roster: Roster, request: pytest.FixtureRequest, grader_home: Path
) -> None:
    """The old claim's result is discarded once the submission was re-queued and re-claimed."""
    from grader.result import GradeResult
    from leaderboard.claims import record_result
    from tests.leaderboard.factories import result_data

    settings = replace(web_settings, grader=grader_settings(grader_home), stale_after_s=30)
    grader = Grader(settings, GradingQueue(settings))
    request.addfinalizer(grader.close)
    sub_id = _queued(grader, roster.ids["s001"])
    old = claim(grader.engine, submission_id=sub_id, worker="slow", max_attempts=3)
    assert old is not None
    _age(grader, sub_id, heartbeat_at=utcnow() - timedelta(minutes=5))
    grader.sweep()
    new = claim(grader.engine, submission_id=sub_id, worker="fresh", max_attempts=3)
    assert new is not None
    result = GradeResult.from_dict(result_data())
    assert not record_result(grader.engine, claim=old, result=result, spec=grader.spec, worker="slow")
    assert record_result(grader.engine, claim=new, result=result, spec=grader.spec, worker="fresh")
    with Session(grader.engine) as session:
        assert len(session.exec(select(Result)).all()) == 1
