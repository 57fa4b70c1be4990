"""Student pages and the public board through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from leaderboard.models import Submission
from tests.leaderboard.factories import add_graded, result_data, shaped_zip
from tests.leaderboard.helpers import Roster, csrf_of, sign_in


def _svc(app: Any) -> Any:
    return app.extensions["leaderboard"]


def _numbers(value: Any) -> list[float]:
    """Every number anywhere in a JSON value (a string holding '0.92', like a timestamp, is not one)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


def test_board_is_public_and_empty_at_first(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "No graded submissions yet." in html
    assert "public 50%" in html  # the spec's public fraction is shown
    data = client.get("/api/leaderboard").get_json()
    assert data["rows"] == []
    assert data["columns"] == ["ORIG", "AUG", "NEW", "weighted"]
    assert data["pass_line"] == 0.7
    assert data["bonus_points"] == [6, 5, 4, 3, 2, 1]


def test_sign_in_with_secret_then_choose_display_name(client: Any, roster: Roster) -> None:
    assert client.get("/upload").status_code == 302  # not signed in: to the sign-in page
    token = csrf_of(client)
    bad = client.post("/login", data={"secret": "nope", "csrf_token": token})
    assert bad.status_code == 401
    assert "not known" in bad.get_data(as_text=True)
    sign_in(client, roster.secrets["s001"])
    page = client.get("/upload").get_data(as_text=True)
    assert "100</strong> of 100 attempts left" in page
    token = csrf_of(client, "/profile")
    saved = client.post("/profile", data={"display_name": "  Deep   Learner ", "csrf_token": token})
    assert saved.status_code == 302
    assert "Deep Learner" in client.get("/profile").get_data(as_text=True)


def test_display_names_must_be_unique_and_short(client: Any, roster: Roster) -> None:
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/profile")
    taken = client.post("/profile", data={"display_name": "S-2", "csrf_token": token})
    assert taken.status_code == 400
    assert "taken" in taken.get_data(as_text=True)
    long = client.post("/profile", data={"display_name": "x" * 41, "csrf_token": token})
    assert long.status_code == 400


def test_upload_is_stored_under_a_server_id_and_queued(app: Any, client: Any, roster: Roster) -> None:
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/upload")
    body = shaped_zip()
    response = client.post(
        "/upload",
        data={"csrf_token": token, "file": (io.BytesIO(body), "../../evil name.zip")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    svc = _svc(app)
    with Session(svc.engine) as session:
        sub = session.exec(select(Submission)).one()
    assert sub.status == "queued"
    assert sub.counts_attempt is True
    stored = svc.settings.upload_dir / f"{sub.archive_key}.zip"
    assert stored.read_bytes() == body
    assert re.fullmatch(r"[0-9a-f]{32}", sub.archive_key)  # the name is ours, not the student's
    assert svc.queue.pending_ids() == {sub.id}
    listing = client.get("/submissions").get_data(as_text=True)
    assert "queued" in listing
    assert "99 of 100 attempts left" in listing
    assert 'data-poll-submissions="/api/submissions"' in listing


def test_submission_page_shows_parts_tests_and_chart(
    app: Any, client: Any, roster: Roster, tmp_path: Path
) -> None:
    svc = _svc(app)
    data = result_data(final=(0.9, 0.8, 0.5), public=(0.88, 0.79, 0.52), private=(0.92, 0.81, 0.48),
                       layer_failures=1)
    sub_id = add_graded(
        svc.settings,
        svc.spec,
        student_id=roster.ids["s001"],
        data=data,
        engine=svc.engine,
        tmp=tmp_path,
    )
    sign_in(client, roster.secrets["s001"])
    html = client.get(f"/submissions/{sub_id}").get_data(as_text=True)
    assert "<svg" in html
    assert 'class="threshold"' in html
    assert "pass 70%" in html
    assert "pass 75%" in html
    assert "Linear.forward: case 0" in html
    assert "expected shape (2, 2), got (2, 3)" in html
    assert "Grading took" in html
    assert "12.5 s" in html
    # Until the freeze, the ranked part shows its public numbers only (no probing).
    assert "public part" in html
    assert "88.0%" in html  # public ORIG
    assert "90.0%" not in html  # final ORIG stays hidden
    assert "92.0%" not in html  # and so does the private part's
    assert "staff-only" not in html
    # The API gives the engine's JSON, with the same numbers hidden and no staff detail.
    api = client.get(f"/api/submissions/{sub_id}").get_json()
    finetune = next(p for p in api["result"]["parts"] if p["name"] == "finetune")
    assert finetune["metrics"]["ORIG"] == 0.88
    assert finetune["metrics_scope"] == "public"
    assert "private_metrics" not in finetune
    assert 0.92 not in _numbers(api)  # not a timestamp's digits: any number the JSON carries
    assert "detail" not in finetune
    assert "detail" not in api["result"]
    assert api["status"] == "graded"


def test_students_cannot_see_each_others_submissions(
    app: Any, client: Any, roster: Roster, tmp_path: Path
) -> None:
    svc = _svc(app)
    sub_id = add_graded(
        svc.settings,
        svc.spec,
        student_id=roster.ids["s002"],
        data=result_data(),
        engine=svc.engine,
        tmp=tmp_path,
    )
    sign_in(client, roster.secrets["s001"])
    assert client.get(f"/submissions/{sub_id}").status_code == 404
    assert client.get(f"/api/submissions/{sub_id}").status_code == 404


def test_invalid_and_grader_fault_do_not_use_up_an_attempt(
    app: Any, client: Any, roster: Roster, tmp_path: Path
) -> None:
    svc = _svc(app)
    for status in ("invalid", "grader_fault", "crashed"):
        add_graded(
            svc.settings,
            svc.spec,
            student_id=roster.ids["s001"],
            data=result_data(status=status),
            engine=svc.engine,
            tmp=tmp_path,
        )
    sign_in(client, roster.secrets["s001"])
    api = client.get("/api/submissions").get_json()
    assert api["remaining_attempts"] == 99  # only the crash counted
    counted = {s["status"]: s["counts_attempt"] for s in api["submissions"]}
    assert counted == {"invalid": False, "grader_fault": False, "crashed": True}


def test_board_html_escapes_display_names(app: Any, client: Any, roster: Roster, tmp_path: Path) -> None:
    svc = _svc(app)
    sign_in(client, roster.secrets["s001"])
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    token = csrf_of(client, "/profile")
    assert client.post("/profile", data={"display_name": evil[:40], "csrf_token": token}).status_code == 302
    add_graded(
        svc.settings,
        svc.spec,
        student_id=roster.ids["s001"],
        data=result_data(),
        engine=svc.engine,
        tmp=tmp_path,
    )
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert client.get("/api/leaderboard").get_json()["rows"][0]["display_name"] == evil[:40]
