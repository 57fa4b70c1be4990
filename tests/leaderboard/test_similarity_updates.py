"""The worker's similarity step on its own: it runs after the result is stored, in the background,
and whatever goes wrong there is recorded for the staff while the student's result stays as it was."""

from __future__ import annotations

import re
from contextlib import closing as _closing
from pathlib import Path
from typing import Any

from sqlmodel import Session, func, select

from grader.similarity.storage import SqliteStorage
from leaderboard.models import Result, Submission
from leaderboard.similarity import SimilarityUpdater, UpdateLog, index_path
from tests.leaderboard.factories import add_graded, result_data
from tests.leaderboard.helpers import Roster, sign_in_staff


def _graded(app: Any, roster: Roster, who: str, tmp_path: Path) -> int:
    svc = app.extensions["leaderboard"]
    return add_graded(svc.settings, svc.spec, student_id=roster.ids[who], data=result_data(),
                      engine=svc.engine, tmp=tmp_path)


def _row(app: Any, sub_id: int) -> tuple[Any, ...]:
    with Session(app.extensions["leaderboard"].engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        results = session.exec(select(func.count(Result.id)).where(Result.submission_id == sub_id)).one()
        return sub.status, sub.score, sub.rank_value, sub.result_id, results


def test_an_update_is_done_in_the_background_and_a_failed_one_is_recorded_not_raised(
        app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = app.extensions["leaderboard"]
    path = index_path(svc.settings, svc.spec.name)
    updater = SimilarityUpdater(svc.settings, svc.spec, svc.engine)
    try:
        first = _graded(app, roster, "s001", tmp_path)
        updater.after_result(first, {})
        updater.wait(timeout_s=60)
        with _closing(UpdateLog(path)) as log:
            done = log.of(first)
        assert done is not None
        assert done.state == "done", done
        assert "the zip is refused" in done.message  # no evidence in it: a note, not a failure
        with SqliteStorage(path) as stored:
            assert str(first) in stored.tags()

        # The index cannot be locked (its lock file is a folder): the update fails, and only that.
        path.with_suffix(".lock").unlink()
        path.with_suffix(".lock").mkdir()
        second = _graded(app, roster, "s002", tmp_path)
        before = _row(app, second)
        updater.after_result(second, {})  # returns at once; never raises
        updater.wait(timeout_s=60)
        with _closing(UpdateLog(path)) as log:
            failed = log.of(second)
        assert failed is not None
        assert failed.state == "failed", failed
        assert "IsADirectoryError" in failed.message
        assert _row(app, second) == before  # the student's result is untouched

        client = app.test_client()
        sign_in_staff(client)
        html = client.get("/staff/similarity/").get_data(as_text=True)
        assert "data-failed>1 " in html
        assert f"submission {second}" in html
        assert "IsADirectoryError" in html
    finally:
        updater.close()


def test_only_the_newest_and_best_upload_of_a_student_is_kept(
        app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = app.extensions["leaderboard"]
    updater = SimilarityUpdater(svc.settings, svc.spec, svc.engine)
    try:
        ids = []
        for final in (0.9, 0.5, 0.6):  # the first is the best, the last the newest
            data = result_data(final=(final, final, final))
            ids.append(add_graded(svc.settings, svc.spec, student_id=roster.ids["s001"], data=data,
                                  engine=svc.engine, tmp=tmp_path))
            updater.after_result(ids[-1], {})
            updater.wait(timeout_s=60)
        with SqliteStorage(index_path(svc.settings, svc.spec.name)) as stored:
            assert set(stored.tags()) == {str(ids[0]), str(ids[2])}
    finally:
        updater.close()


def test_the_page_reads_a_large_index_quickly(app: Any, roster: Roster) -> None:
    """A course of 1,000 students with 50,000 stored pairs: the page reads one page of them (a
    SQL slice), so it renders in well under a second; nothing is compared per request."""
    import random
    import time

    from grader.similarity.signals import Kind, Signal, make_pair

    svc = app.extensions["leaderboard"]
    rng = random.Random(3)
    pairs, seen = [], set()
    while len(pairs) < 50_000:
        a, b = sorted(str(i) for i in rng.sample(range(1, 1001), 2))
        if (a, b) in seen:
            continue
        seen.add((a, b))
        value = rng.random()
        signals = [Signal(Kind.CODE, "numpy_nn.py", value, 0.6, True, f"{value:.0%} shared"),
                   Signal(Kind.PREDICTIONS_AGREE, "mynet", value, 0.99, False, "agree")]
        pairs.append(make_pair(a, b, signals))
    path = index_path(svc.settings, svc.spec.name)
    path.parent.mkdir(parents=True)
    with SqliteStorage(path) as stored:
        stored.replace_pairs(pairs)
        total = stored.count_pairs()
    client = app.test_client()
    sign_in_staff(client)
    started = time.monotonic()
    page = client.get("/staff/similarity/")
    took_s = time.monotonic() - started
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("data-pair=") == 100
    assert f"{total} worth a look" in html
    best = max(pairs, key=lambda p: p.score)
    assert re.findall(r'data-pair="(\d+-\d+)"', html)[0] == f"{best.a}-{best.b}"  # the highest first
    assert took_s < 1.0, f"{took_s:.2f} s"
