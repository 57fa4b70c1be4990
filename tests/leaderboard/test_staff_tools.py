"""Staff tools: confirm steps that name their consequence, the per-student page, zip and log
downloads, roster import and secrets in the browser, the Gradescope export, class charts,
filter errors beside their field, status names; every such route staff-only and CSRF-checked."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from leaderboard.accounts import RosterEntry, import_roster, student_secret
from leaderboard.models import AssignmentRow, Student, Submission
from leaderboard.staff_charts import per_day, score_histogram
from tests.leaderboard.factories import add_graded, result_data, shaped_zip
from tests.leaderboard.helpers import Roster, csrf_of, sign_in, sign_in_staff

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NEW_ENDPOINTS = (
    "staff.regrade_all", "staff.freeze", "staff.gradescope_export",
    "staff_people.student", "staff_people.reset_secret", "staff_people.download_archive",
    "staff_people.download_log", "staff_people.roster", "staff_people.export_secrets",
)


def _svc(app: Any) -> Any:
    return app.extensions["leaderboard"]


def _graded(app: Any, roster: Roster, who: str, tmp_path: Path, minutes: int, **kw: Any) -> int:
    svc = _svc(app)
    return add_graded(svc.settings, svc.spec, student_id=roster.ids[who], data=result_data(**kw),
                      engine=svc.engine, at=T0 + timedelta(minutes=minutes), tmp=tmp_path)


def _score(app: Any, sub_id: int) -> float:
    with Session(_svc(app).engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        assert sub.score is not None
        return sub.score


def _queued(app: Any, secret: str) -> int:
    """A real upload through the API, left in the queue (no worker runs here)."""
    response = app.test_client().post(
        "/api/submissions", data=shaped_zip(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/zip"})
    assert response.status_code == 202, response.get_json()
    return int(response.get_json()["id"])


def _staff(app: Any) -> tuple[Any, str]:
    client = app.test_client()
    sign_in_staff(client)
    return client, csrf_of(client, "/staff/")


def _frozen(app: Any) -> bool:
    with Session(_svc(app).engine) as session:
        row = session.get(AssignmentRow, _svc(app).lab().id)
        assert row is not None
        return row.frozen_at is not None


def test_freeze_asks_first_and_names_what_it_leaves_out(app: Any, roster: Roster, tmp_path: Path) -> None:
    _graded(app, roster, "s001", tmp_path, 1)
    _queued(app, roster.secrets["s002"])
    _queued(app, roster.secrets["s003"])
    client, token = _staff(app)
    home = client.get("/staff/").get_data(as_text=True)
    assert 'action="/staff/freeze"' not in home  # no one-click form on the staff page
    page = client.get("/staff/freeze").get_data(as_text=True)
    assert "2 uploads still grading will be left out of the final ranking." in page
    # A POST without the confirm step's field shows the question again and freezes nothing.
    answer = client.post("/staff/freeze", data={"csrf_token": token})
    assert answer.status_code == 200
    assert "2 uploads still grading will be left out" in answer.get_data(as_text=True)
    assert client.post("/staff/freeze", data={"csrf_token": token, "confirm": "yes"}).status_code == 200
    assert not _frozen(app)
    assert client.get("/api/leaderboard").get_json()["frozen"] is False
    done = client.post("/staff/freeze", data={"csrf_token": token, "confirm": "freeze"})
    assert done.status_code == 302
    assert _frozen(app)


def test_regrade_all_asks_first_with_the_count(app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = _svc(app)
    _graded(app, roster, "s001", tmp_path, 1)
    _graded(app, roster, "s002", tmp_path, 2, status="crashed")
    _graded(app, roster, "s003", tmp_path, 3, status="invalid")  # its zip is gone: not regraded
    client, token = _staff(app)
    assert "Regrade every submission (2)" in client.get("/staff/").get_data(as_text=True)
    page = client.get("/staff/regrade-all").get_data(as_text=True)
    assert "2 submissions of" in page
    assert "will be graded again" in page
    assert ">Regrade 2 submissions</button>" in page
    assert client.post("/staff/regrade-all", data={"csrf_token": token}).status_code == 200
    assert svc.queue.pending_ids() == set()
    assert client.post("/staff/regrade-all",
                       data={"csrf_token": token, "confirm": "regrade-all"}).status_code == 302
    assert len(svc.queue.pending_ids()) == 2


def test_the_student_page_lists_their_uploads_history_and_flags(
        app: Any, roster: Roster, tmp_path: Path) -> None:
    mine = [_graded(app, roster, "s001", tmp_path, m, final=(0.5 + m / 10,) * 3) for m in (1, 2)]
    mine.append(_graded(app, roster, "s001", tmp_path, 3, status="timed_out"))
    other = _graded(app, roster, "s002", tmp_path, 4)
    client, _ = _staff(app)
    sid = roster.ids["s001"]
    url = f"/staff/students/{sid}"
    assert f'href="{url}"' in client.get("/staff/students").get_data(as_text=True)
    assert f'href="{url}"' in client.get("/staff/submissions").get_data(as_text=True)
    html = client.get(url).get_data(as_text=True)
    for sub_id in mine:
        assert f'href="/staff/submissions/{sub_id}"' in html
        assert f'href="/staff/submissions/{sub_id}/archive.zip"' in html
    assert f'href="/staff/submissions/{other}"' not in html
    assert ">Timed out</span>" in html
    assert "timed_out<" not in html
    # The score history: one column per upload, and the same numbers as text.
    scores = [f"upload #{i} {_score(app, i):g}" for i in mine[:2]]
    assert f'aria-label="Points per upload (points): {scores[0]}, {scores[1]}, upload #{mine[2]} 0"' in html
    assert html.count('<rect class="column"') == 3
    assert client.get("/staff/students/99999").status_code == 404


def test_the_student_page_shows_the_many_uploads_flag(app: Any, roster: Roster, tmp_path: Path) -> None:
    from dataclasses import replace
    svc = _svc(app)
    object.__setattr__(svc, "settings", replace(svc.settings, flag_upload_count=2))
    for m in range(4):
        _graded(app, roster, "s001", tmp_path, m)
    client, _ = _staff(app)
    html = client.get(f"/staff/students/{roster.ids['s001']}").get_data(as_text=True)
    assert "4 uploads, 4.0\u00d7 the class median of 1" not in html  # the median is of uploaders
    assert "4 uploads, 1.0\u00d7 the class median of 4" in html


def test_zip_and_log_downloads_are_staff_only_with_a_safe_name(
        app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = _svc(app)
    with Session(svc.engine) as session:
        import_roster(session, entries=[RosterEntry('../x "evil";\r\nname', "E", "e@x", "")],
                      roster_key=svc.settings.roster_key)
        session.commit()
        evil = session.exec(select(Student).where(Student.name == "E")).one()
    sub_id = add_graded(svc.settings, svc.spec, student_id=evil.id or 0,
                        data=result_data(status="crashed", message="It crashed.", detail="Traceback: boom"),
                        engine=svc.engine, at=T0, tmp=tmp_path)
    client, _ = _staff(app)
    with Session(svc.engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        stored = (svc.settings.upload_dir / f"{sub.archive_key}.zip").read_bytes()
    with client.get(f"/staff/submissions/{sub_id}/archive.zip") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/zip"
        disposition = response.headers["Content-Disposition"]
        assert disposition == f"attachment; filename=x_evil_name-submission-{sub_id}.zip"
        assert response.data == stored
    log = client.get(f"/staff/submissions/{sub_id}/log.txt")
    assert log.headers["Content-Disposition"] == (
        f'attachment; filename="x_evil_name-submission-{sub_id}-log.txt"')
    text = log.get_data(as_text=True)
    assert "It crashed." in text
    assert "Traceback: boom" in text
    assert "crashed" in text
    page = client.get(f"/staff/submissions/{sub_id}").get_data(as_text=True)
    assert f'href="/staff/submissions/{sub_id}/archive.zip"' in page
    assert f'href="/staff/submissions/{sub_id}/log.txt"' in page
    # The student themselves, and visitors, get nothing.
    student = app.test_client()
    sign_in(student, roster.secrets["s001"])
    assert student.get(f"/staff/submissions/{sub_id}/archive.zip").status_code == 403
    assert student.get(f"/staff/submissions/{sub_id}/log.txt").status_code == 403
    assert app.test_client().get(f"/staff/submissions/{sub_id}/archive.zip").status_code == 302
    assert client.get("/staff/submissions/99999/archive.zip").status_code == 404


def test_a_deleted_zip_is_gone_not_a_crash(app: Any, roster: Roster, tmp_path: Path) -> None:
    sub_id = _graded(app, roster, "s001", tmp_path, 1, status="invalid")
    svc = _svc(app)
    with Session(svc.engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        (svc.settings.upload_dir / f"{sub.archive_key}.zip").unlink(missing_ok=True)
    client, _ = _staff(app)
    response = client.get(f"/staff/submissions/{sub_id}/archive.zip")
    assert response.status_code == 410
    assert "no longer stored" in response.get_data(as_text=True)
    assert "The zip is no longer stored." in client.get(f"/staff/submissions/{sub_id}").get_data(as_text=True)


def _import(client: Any, token: str, text: str, *, with_token: bool = True) -> Any:
    data: dict[str, Any] = {"roster": (io.BytesIO(text.encode()), "roster.csv")}
    if with_token:
        data["csrf_token"] = token
    return client.post("/staff/roster", data=data, content_type="multipart/form-data")


def _students(app: Any) -> dict[str, Student]:
    with Session(_svc(app).engine) as session:
        return {s.roster_id: s for s in session.exec(select(Student)).all()}


def test_roster_import_lists_every_bad_line_and_imports_nothing(app: Any, roster: Roster) -> None:
    client, token = _staff(app)
    bad = ("id,name,email,display_name\n"
           "n001,New One,n1@x,\n"
           ",No Id,n2@x,\n"
           "n001,Twice,n3@x,\n"
           "n004,Ctrl,n4@x,bad\u200bname\n")
    response = _import(client, token, bad)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    errors = html[html.index('id="roster-errors"'):html.index("</ul>", html.index('id="roster-errors"'))]
    assert "Roster line 3: the id is empty." in errors
    assert "Roster line 4: the id &#39;n001&#39; appears twice." in errors
    assert "Roster line 5: A display name cannot hold control or invisible characters." in errors
    assert 'aria-describedby="roster-errors"' in html
    assert "n001" not in _students(app)  # nothing imported while a line is bad
    missing = _import(client, token, "id,name\nx,y\n").get_data(as_text=True)
    assert "missing: email" in missing
    latin1 = {"csrf_token": token, "roster": (io.BytesIO(b"id,name,email\n\xff,a,b\n"), "r.csv")}
    assert "not UTF-8" in client.post("/staff/roster", data=latin1,
                                      content_type="multipart/form-data").get_data(as_text=True)
    empty = client.post("/staff/roster", data={"csrf_token": token})
    assert "Choose a CSV file" in empty.get_data(as_text=True)


def test_roster_import_adds_and_updates(app: Any, roster: Roster) -> None:
    client, token = _staff(app)
    assert _import(client, token, "id,name,email\nn001,New One,n1@x\n", with_token=False).status_code == 400
    assert "n001" not in _students(app)
    response = _import(client, token, "id,name,email,display_name\nn001,New One,n1@x,Newbie\n"
                                      "s001,Renamed,s1@x,\n")
    assert response.status_code == 200
    assert "1 students added, 1 updated." in response.get_data(as_text=True)
    students = _students(app)
    assert students["n001"].display_name == "Newbie"
    assert students["s001"].name == "Renamed"
    new = app.test_client()
    sign_in(new, student_secret(_svc(app).settings.roster_key, "n001", 0))  # the new one signs in
    clash = _import(client, token, "id,name,email,display_name\nn002,Two,n2@x,NEWBIE\n")
    assert clash.status_code == 400
    assert "n002" not in _students(app)


def test_reset_secret_and_export_secrets(app: Any, roster: Roster) -> None:
    client, token = _staff(app)
    sid = roster.ids["s001"]
    old = roster.secrets["s001"]
    assert client.post(f"/staff/students/{sid}/reset-secret").status_code == 400  # no CSRF token
    page = client.post(f"/staff/students/{sid}/reset-secret", data={"csrf_token": token})
    assert page.status_code == 200
    new = re.search(r"<code data-secret>([^<]+)</code>", page.get_data(as_text=True))
    assert new is not None
    assert new.group(1) == student_secret(_svc(app).settings.roster_key, "s001", 1)
    assert _students(app)["s001"].secret_generation == 1
    refused = app.test_client()
    token_old = csrf_of(refused)
    assert refused.post("/login", data={"secret": old, "csrf_token": token_old}).status_code != 302
    sign_in(app.test_client(), new.group(1))
    assert client.get("/staff/roster/secrets.csv").status_code == 405  # a GET starts no download
    assert client.post("/staff/roster/secrets.csv").status_code == 400  # no CSRF token
    export = client.post("/staff/roster/secrets.csv", data={"csrf_token": token})
    assert export.mimetype == "text/csv"
    assert export.headers["Content-Disposition"] == 'attachment; filename="student-secrets.csv"'
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(export.get_data(as_text=True)))}
    assert rows["s001"]["secret"] == new.group(1)
    assert rows["s002"]["secret"] == roster.secrets["s002"]


def test_filter_errors_sit_beside_their_field_and_the_count_is_what_is_listed(
        app: Any, roster: Roster, tmp_path: Path) -> None:
    _graded(app, roster, "s001", tmp_path, 1)
    _graded(app, roster, "s002", tmp_path, 2, status="timed_out")
    _graded(app, roster, "s002", tmp_path, 3, status="crashed")
    client, _ = _staff(app)
    query = {"q": "s002", "min_score": "lots"}
    html = client.get("/staff/submissions", query_string=query).get_data(as_text=True)
    assert 'class="flash"' not in html
    assert re.search(r'name="min_score"[^>]*aria-invalid="true" aria-describedby="min_score-error">'
                     r'<span class="field-error" id="min_score-error">The minimum score must be a number',
                     html), html
    assert "2 match the filters that could be read" in html
    assert html.count('<tr class=""><td><a href="/staff/submissions/') == 2
    bad_date = client.get("/staff/submissions", query_string={"since": "yesterday"}).get_data(as_text=True)
    assert 'id="since-error">The date must look like 2026-12-01.' in bad_date
    assert 'id="status-error">' in client.get("/staff/submissions",
                                              query_string={"status": "bogus"}).get_data(as_text=True)
    assert "1 matches the filters" in client.get(
        "/staff/submissions", query_string={"status": "timed_out"}).get_data(as_text=True)


def test_status_names_are_words(app: Any, roster: Roster, tmp_path: Path) -> None:
    sub_id = _graded(app, roster, "s001", tmp_path, 1, status="out_of_memory")
    client, _ = _staff(app)
    html = client.get("/staff/submissions").get_data(as_text=True)
    assert '<option value="timed_out" >Timed out</option>' in html
    assert '<option value="failed" >Any failure</option>' in html
    assert ">Out of memory</span>" in html
    text = re.sub(r"<[^>]+>", " ", html)
    assert not re.search(r"\b(timed_out|out_of_memory|grader_fault)\b", text)
    assert ">Out of memory</span>" in client.get(f"/staff/submissions/{sub_id}").get_data(as_text=True)
    assert "<dt>Timed out</dt>" in client.get("/staff/").get_data(as_text=True)


def test_gradescope_export_holds_each_students_best(app: Any, roster: Roster, tmp_path: Path) -> None:
    _graded(app, roster, "s001", tmp_path, 1, layer_failures=4)
    _graded(app, roster, "s001", tmp_path, 2)
    _graded(app, roster, "s002", tmp_path, 3, status="crashed")
    client, _ = _staff(app)
    home = client.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/gradescope.zip"' in home
    assert 'href="/staff/export.csv"' in home
    response = client.get("/staff/gradescope.zip")
    assert response.headers["Content-Disposition"] == 'attachment; filename="cnn-gradescope.zip"'
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert sorted(archive.namelist()) == ["s001.json", "s002.json"]
        s1 = json.loads(archive.read("s001.json"))
        s2 = json.loads(archive.read("s002.json"))
    assert s1["score"] == 100
    assert s1["max_score"] == 100
    assert "staff-only" not in json.dumps(s1)  # what the student may see, no staff detail
    assert s2["score"] == 0


def test_staff_home_draws_the_class_charts_with_text(app: Any, roster: Roster, tmp_path: Path) -> None:
    _graded(app, roster, "s001", tmp_path, 1)
    _graded(app, roster, "s002", tmp_path, 60 * 24 * 2, layer_failures=40)  # two days later
    client, _ = _staff(app)
    html = client.get("/staff/").get_data(as_text=True)
    assert "Best score per student (students): 0 to 10 points 0," in html
    assert "90 to 100 points 1" in html
    assert "Uploads per day (UTC) (uploads): 2026-11-10 1, 2026-11-11 0, 2026-11-12 1" in html
    assert "<summary>Uploads per day (UTC) as a table</summary>" in html


def test_histogram_and_per_day_count_like_a_by_hand_tally() -> None:
    scores = [0.0, 9.99, 10.0, 55.0, 99.0, 100.0, 100.0]
    chart = score_histogram(scores, 100.0)
    by_hand = [2, 1, 0, 0, 0, 1, 0, 0, 0, 3]  # 0-10: 0, 9.99; 10-20: 10; 50-60: 55; top: 99, 100, 100
    assert [int(c.value) for c in chart.columns] == by_hand
    tallest = max(chart.columns, key=lambda c: c.height)
    assert tallest.name == "90 to 100 points"
    assert tallest.y == 28
    days = per_day([(date(2026, 11, 1) + timedelta(days=i), i % 3) for i in range(20)])
    assert [c.label for c in days.columns if c.label][:2] == ["11-01", "11-04"]  # thinned to at most 7
    assert days.columns[0].height == 0
    assert len([c for c in days.columns if c.label]) == 7
    assert not days.show_values  # 20 columns in 400 units: the numbers go to the table only


@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
def test_new_staff_routes_are_staff_only_and_csrf_checked(
        app: Any, roster: Roster, tmp_path: Path, endpoint: str) -> None:
    sub_id = _graded(app, roster, "s001", tmp_path, 1)
    rules = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
    assert rules, endpoint
    args = {"student_id": roster.ids["s001"], "submission_id": sub_id}
    for rule in rules:
        path = rule.rule.replace("<assignment>", "cnn")
        for name, value in args.items():
            path = path.replace(f"<int:{name}>", str(value))
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        visitor = app.test_client()
        student = app.test_client()
        sign_in(student, roster.secrets["s001"])
        staff, _ = _staff(app)
        if "GET" in methods:
            assert visitor.get(path).status_code == 302, path
            assert student.get(path).status_code == 403, path
        if "POST" in methods:
            token = csrf_of(student, "/upload")
            assert student.post(path, data={"csrf_token": token}).status_code == 403, path
            assert staff.post(path, data={"confirm": "freeze"}).status_code == 400, path  # no token
    assert not _frozen(app)
    assert _students(app)["s001"].secret_generation == 0


@pytest.fixture
def course_app(tmp_path: Path, db_url: str) -> Any:
    """The course of tests/leaderboard/test_course.py: cnn and lab2 on one service."""
    from leaderboard import create_app
    from leaderboard.settings import WebSettings
    from tests.leaderboard.test_course import course_settings, make_course

    course = make_course(tmp_path / "course")
    settings = WebSettings(grader=course_settings(course, tmp_path / "home"),
                           instance_path=tmp_path / "instance", database_url=db_url,
                           queue_name="staff-course", upload_rate_count=1000).with_keys()
    app = create_app(settings)
    app.config.update(TESTING=True)
    yield app
    app.extensions["leaderboard"].engine.dispose()


def test_staff_pages_act_on_the_lab_of_the_url(course_app: Any, tmp_path: Path) -> None:
    from tests.leaderboard.helpers import add_roster

    svc = _svc(course_app)
    people = add_roster(svc.settings, 2)
    cnn, lab2 = svc.lab("cnn"), svc.lab("lab2")
    in_cnn = add_graded(svc.settings, cnn.spec, student_id=people.ids["s001"], data=result_data(),
                        engine=svc.engine, tmp=tmp_path)
    in_lab2 = add_graded(svc.settings, lab2.spec, student_id=people.ids["s001"], data=result_data(),
                         engine=svc.engine, tmp=tmp_path)
    client, token = _staff(course_app)
    sid = people.ids["s001"]
    html = client.get(f"/a/lab2/staff/students/{sid}").get_data(as_text=True)
    assert f'href="/a/lab2/staff/submissions/{in_lab2}"' in html
    assert f"/staff/submissions/{in_cnn}\"" not in html
    assert f'href="/staff/students/{sid}/reset-secret"' not in html  # the form posts course-wide:
    assert f'action="/staff/students/{sid}/reset-secret"' in html
    assert "Regrade every submission (1)" in client.get("/a/lab2/staff/").get_data(as_text=True)
    assert 'href="/staff/roster"' in client.get("/a/lab2/staff/").get_data(as_text=True)
    confirmed = {"csrf_token": token, "confirm": "freeze"}
    assert client.post("/a/lab2/staff/freeze", data=confirmed).status_code == 302
    with Session(svc.engine) as session:
        rows = {r.name: r.frozen_at for r in session.exec(select(AssignmentRow)).all()}
    assert rows["lab2"] is not None
    assert rows["cnn"] is None
