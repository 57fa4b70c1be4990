"""Grading priority: fresh uploads are graded before regrades queued earlier, on both queues."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from leaderboard.models import Result
from tests.leaderboard.factories import add_graded, result_data, tiny_good_zip
from tests.leaderboard.helpers import (
    Stack,
    api_upload,
    build_stack,
    close_stack,
    csrf_of,
    sign_in_staff,
    wait_done,
)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.postgres)])
def idle_stack(request: pytest.FixtureRequest, tmp_path: Path, grader_home: Path,
               pg_database: Callable[[], str], redis_url: str) -> Iterator[Stack]:
    """A service with no worker yet: SQLite database and queue, or PostgreSQL and Redis."""
    if request.param == "sqlite":
        db_url, queue_url = f"sqlite:///{tmp_path / 'lb.db'}", ""
    else:
        db_url, queue_url = pg_database(), redis_url
    stack = build_stack(tmp_path, grader_home=grader_home, db_url=db_url, queue_url=queue_url,
                        students=6, workers=0)
    yield stack
    close_stack(stack)


def test_fresh_uploads_are_graded_before_earlier_regrades(idle_stack: Stack, tmp_path: Path) -> None:
    stack = idle_stack
    svc = stack.app.extensions["leaderboard"]
    old = [add_graded(svc.settings, svc.spec, student_id=stack.roster.ids[f"s00{i}"],
                      data=result_data(), engine=svc.engine, tmp=tmp_path) for i in (1, 2, 3)]
    client = stack.app.test_client()
    sign_in_staff(client)
    assert client.post("/staff/regrade-all",
                       data={"csrf_token": csrf_of(client, "/staff/"),
                             "confirm": "regrade-all"}).status_code == 302
    fresh = [api_upload(stack, stack.roster.secrets[f"s00{i}"], tiny_good_zip(seed=i)).get_json()["id"]
             for i in (4, 5)]
    assert svc.queue.pending_ids() == {*old, *fresh}  # all waiting, regrades queued first

    stack.start_worker(LEADERBOARD_WORKER_THREADS="1")  # one job at a time: the order shows
    wait_done(stack, [*old, *fresh], timeout_s=240)

    with Session(stack.engine) as session:
        order = [r.submission_id for r in session.exec(select(Result).order_by(Result.id)).all()]
    regraded = order[len(old):]  # after the first results recorded by add_graded
    assert regraded[:2] == fresh, order
    assert sorted(regraded[2:]) == sorted(old), order
