"""Security behaviour: CSRF, roles, upload size, per-student rate limit, headers, the API."""

from __future__ import annotations

import io
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leaderboard import create_app
from leaderboard.settings import WebSettings
from leaderboard.views.auth import safe_next
from tests.leaderboard.factories import PLACEHOLDERS, shaped_zip, tiny_zip
from tests.leaderboard.helpers import INSTRUCTOR, Roster, csrf_of, multipart, sign_in, sign_in_staff


def _change_spec(svc: Any, **changes: Any) -> None:
    """Serve the default assignment under a changed spec (as if its TOML said so)."""
    spec = replace(svc.spec, **changes)
    svc.course = replace(svc.course, assignments={**svc.course.assignments, spec.name: spec})


def upload(client: Any, token: str | None, body: bytes = b"", name: str = "s.zip") -> Any:
    data: dict[str, Any] = {"file": (io.BytesIO(body or shaped_zip()), name)}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/upload", data=data, content_type="multipart/form-data")


def test_forms_without_csrf_token_are_refused_with_400(client: Any, roster: Roster) -> None:
    assert client.post("/login", data={"secret": roster.secrets["s001"]}).status_code == 400
    sign_in(client, roster.secrets["s001"])
    missing = upload(client, None)
    assert missing.status_code == 400
    assert "reload the page" in missing.get_data(as_text=True)
    assert upload(client, "forged-token").status_code == 400
    assert client.post("/logout").status_code == 400
    assert upload(client, csrf_of(client, "/upload")).status_code == 302


def test_wrong_role_gets_403_and_anonymous_is_sent_to_sign_in(client: Any, roster: Roster) -> None:
    staff_pages = [
        "/staff/",
        "/staff/submissions",
        "/staff/students",
        "/staff/regrades",
        "/staff/export.csv",
        "/staff/health.json",
        "/staff/submissions/1",
    ]
    for path in staff_pages:
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/staff/login" in response.headers["Location"]
    sign_in(client, roster.secrets["s001"])
    for path in staff_pages:
        assert client.get(path).status_code == 403, path
    token = csrf_of(client, "/upload")
    for path in ["/staff/freeze", "/staff/regrade-all", "/staff/submissions/1/regrade"]:
        assert client.post(path, data={"csrf_token": token}).status_code == 403, path


def test_instructors_get_403_on_student_pages_and_api(app: Any, roster: Roster) -> None:
    client = app.test_client()
    sign_in_staff(client)
    assert client.get("/staff/").status_code == 200
    assert client.get("/upload").status_code == 403
    assert client.get("/api/submissions").status_code == 403


def stored_files(settings: WebSettings) -> list[str]:
    """Everything under the upload folder, spooled parts included."""
    root = settings.upload_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_multipart_uploads_of_several_mib_are_taken(client: Any, web_settings: WebSettings,
                                                    roster: Roster) -> None:
    """Werkzeug's form-memory limit once refused every multipart body over ~64 KiB."""
    # Random bytes, as in a real checkpoint: a CR or LF near the end of a read chunk is what
    # tripped that limit.
    big = tiny_zip({**PLACEHOLDERS, "model.pt": random.Random(0).randbytes(3 << 20)})
    sign_in(client, roster.secrets["s001"])
    # Bodies as bytes: the test client's own encoding of a file leaks a temporary file.
    body, content_type = multipart({"csrf_token": csrf_of(client, "/upload").encode(), "file": big})
    page = client.post("/upload", data=body, content_type=content_type)
    assert page.status_code == 302, page.get_data(as_text=True)
    body, content_type = multipart({"file": big})
    api = client.post("/api/submissions", data=body, content_type=content_type,
                      headers={"Authorization": f"Bearer {roster.secrets['s001']}"})
    assert api.status_code == 202, api.get_json()
    assert [p for p in stored_files(web_settings) if p.startswith(".incoming")] == []


def test_body_over_the_limit_gets_413_on_the_upload_page_with_the_form(web_settings: WebSettings,
                                                                       roster: Roster) -> None:
    from leaderboard.bodies import FORM_OVERHEAD_BYTES

    limit = 100_000
    app = create_app(replace(web_settings, max_upload_bytes=limit))
    client = app.test_client()
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/upload").encode()
    before = stored_files(web_settings)
    # A zip just over the limit (the body within it), then a body just over the body limit.
    for size in (limit + 1, limit + FORM_OVERHEAD_BYTES + 1):
        body, content_type = multipart({"csrf_token": token, "file": b"x" * size})
        for accept, kind in (("text/html", "page"), ("application/json", "json")):
            response = client.post("/upload", data=body, content_type=content_type,
                                   headers={"Accept": accept})
            assert response.status_code == 413, (size, kind)
            if kind == "json":  # what the page's script reads and shows above the kept form
                error = response.get_json()["error"]
                assert error.startswith("The upload is larger than the limit of 98 KiB;")
                continue
            html = response.get_data(as_text=True)
            assert "The upload is larger than the limit of 98 KiB; zip only the required files" in html
            assert "data-upload-form" in html
            assert 'type="file"' in html
            assert "attempts left" in html
    api = client.post("/api/submissions", data=b"x" * (limit + FORM_OVERHEAD_BYTES + 1),
                      headers={"Authorization": f"Bearer {roster.secrets['s001']}"},
                      content_type="application/zip")
    assert api.status_code == 413
    assert "larger than the limit of 98 KiB" in api.get_json()["error"]
    assert stored_files(web_settings) == before
    app.extensions["leaderboard"].engine.dispose()


def test_other_bodies_and_form_fields_are_small(client: Any, roster: Roster) -> None:
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/upload")
    login = client.post("/login", data={"secret": "x" * (2 << 20), "csrf_token": token})
    assert login.status_code == 413
    assert "The request is larger than the limit of 1 MiB." in login.get_data(as_text=True)
    body, content_type = multipart({"csrf_token": token.encode(), "note": b"n" * (300 << 10),
                                    "file": shaped_zip()})
    field = client.post("/upload", data=body, content_type=content_type)
    assert field.status_code == 413
    assert "A form field is larger than the limit of 256 KiB." in field.get_data(as_text=True)
    # Signed out, an upload is refused before its body is read.
    client.post("/logout", data={"csrf_token": token})
    body, content_type = multipart({"file": b"x" * (2 << 20)})
    assert client.post("/upload", data=body, content_type=content_type).status_code == 400


def test_uploads_refused_at_the_door_leave_no_file(web_settings: WebSettings, roster: Roster) -> None:
    """Each kind of refusal, several times, through the page and the API: the folder stays as it is."""
    from datetime import UTC, datetime, timedelta

    app = create_app(replace(web_settings, max_upload_bytes=50_000, upload_rate_count=2,
                             upload_rate_window_s=600))
    svc = app.extensions["leaderboard"]
    pages = {sid: app.test_client() for sid in ("s001", "s002", "s003")}
    for sid, page in pages.items():
        sign_in(page, roster.secrets[sid])

    def attempts(sid: str, body: bytes, n: int = 4) -> set[int]:
        form, content_type = multipart({"csrf_token": csrf_of(pages[sid], "/upload").encode(), "file": body})
        codes = {pages[sid].post("/upload", data=form, content_type=content_type).status_code
                 for _ in range(n)}
        headers = {"Authorization": f"Bearer {roster.secrets[sid]}"}
        for _ in range(n):
            codes.add(pages[sid].post("/api/submissions", data=body, headers=headers,
                                      content_type="application/zip").status_code)
        return codes

    assert upload(pages["s001"], csrf_of(pages["s001"], "/upload")).status_code == 302  # one kept
    kept = stored_files(web_settings)
    assert len(kept) == 1
    assert attempts("s001", b"x" * 60_000) == {413}  # too large
    assert attempts("s001", b"") == {400}  # empty
    assert upload(pages["s001"], csrf_of(pages["s001"], "/upload")).status_code == 302
    kept = stored_files(web_settings)
    assert attempts("s001", shaped_zip()) == {429}  # rate limit
    _change_spec(svc, upload_budget=0)
    assert attempts("s002", shaped_zip()) == {403}  # no attempts left
    closed = {"final": datetime.now(UTC) - timedelta(days=1)}
    _change_spec(svc, upload_budget=100, deadlines=closed)
    assert attempts("s003", shaped_zip()) == {403}  # after the deadline
    assert stored_files(web_settings) == kept
    app.extensions["leaderboard"].engine.dispose()


def test_too_many_uploads_get_429_with_a_clear_message(web_settings: WebSettings, roster: Roster) -> None:
    app = create_app(replace(web_settings, upload_rate_count=3, upload_rate_window_s=600))
    client = app.test_client()
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/upload")
    for _ in range(3):
        assert upload(client, token).status_code == 302
    refused = upload(client, token)
    assert refused.status_code == 429
    assert "Too many uploads: at most 3 per 600 s" in refused.get_data(as_text=True)
    api = client.post(
        "/api/submissions",
        data={"file": (io.BytesIO(shaped_zip()), "s.zip")},
        headers={"Authorization": f"Bearer {roster.secrets['s001']}"},
        content_type="multipart/form-data",
    )
    assert api.status_code == 429
    assert int(api.headers["Retry-After"]) > 500
    # The limit is per student: another student still uploads.
    other = app.test_client()
    sign_in(other, roster.secrets["s002"])
    assert upload(other, csrf_of(other, "/upload")).status_code == 302
    app.extensions["leaderboard"].engine.dispose()


def test_upload_budget_is_enforced(web_settings: WebSettings, roster: Roster) -> None:
    app = create_app(web_settings)
    svc = app.extensions["leaderboard"]
    _change_spec(svc, upload_budget=2)
    client = app.test_client()
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/upload")
    assert upload(client, token).status_code == 302
    assert upload(client, token).status_code == 302
    refused = upload(client, token)
    assert refused.status_code == 403
    assert "used all 2 attempts" in refused.get_data(as_text=True)
    app.extensions["leaderboard"].engine.dispose()


def test_security_headers_on_every_page(client: Any) -> None:
    for path in ["/", "/login", "/api/leaderboard", "/static/app.js", "/nope"]:
        response = client.get(path)
        response.close()  # a static file is streamed: close it
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp, path
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    html = client.get("/").get_data(as_text=True)
    assert "<script>" not in html  # no inline script: only <script src=...>
    assert " style=" not in html


def test_api_needs_a_known_bearer_secret(client: Any, roster: Roster) -> None:
    body = {"file": (io.BytesIO(shaped_zip()), "s.zip")}
    assert client.post("/api/submissions", data=body).status_code == 401
    wrong = client.post(
        "/api/submissions",
        data={"file": (io.BytesIO(shaped_zip()), "s.zip")},
        headers={"Authorization": "Bearer not-a-secret"},
    )
    assert wrong.status_code == 401
    assert "not known" in wrong.get_json()["error"]
    # A signed-in browser session cannot POST to the API (no CSRF hole through it).
    sign_in(client, roster.secrets["s001"])
    cookie_only = client.post("/api/submissions", data={"file": (io.BytesIO(shaped_zip()), "s.zip")})
    assert cookie_only.status_code == 401
    ok = client.post(
        "/api/submissions",
        data=shaped_zip(),
        headers={"Authorization": f"Bearer {roster.secrets['s001']}", "X-Filename": "raw.zip"},
        content_type="application/zip",
    )
    assert ok.status_code == 202
    body = ok.get_json()
    assert body["status"] == "queued"
    assert body["remaining_attempts"] == 99
    assert body["filename"] == "raw.zip"
    got = client.get(
        f"/api/submissions/{body['id']}",
        headers={"Authorization": f"Bearer {roster.secrets['s001']}"},
    ).get_json()
    assert got["id"] == body["id"]
    assert got["result"] is None
    other = client.get(
        f"/api/submissions/{body['id']}",
        headers={"Authorization": f"Bearer {roster.secrets['s002']}"},
    )
    assert other.status_code == 404


OFF_SITE = [
    "//evil.example/x",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/x\\y",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    "/\t/evil.example",  # browsers drop tabs and newlines: //evil.example
    "/\n/evil.example",
    "/\r/evil.example",
    "/%09/evil.example",  # the same, percent-encoded once more
    "/%0a/evil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    " /upload",
    "/up load",
    "/\u200b/evil.example",  # invisible
    "/\u2028x",
    "/" + "a" * 3000,
    "",
    None,
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_next_off_site_falls_back_to_the_default(target: str | None) -> None:
    assert safe_next(target, "/default") == "/default"


@pytest.mark.parametrize("target", ["/upload", "/submissions/3", "/staff/submissions?q=ann&status=graded",
                                    "/staff/submissions?q=a%2Fb", "/x/./y"])
def test_next_on_site_is_kept(target: str) -> None:
    assert safe_next(target, "/default") == target


@pytest.mark.parametrize("raw", ["/%09/example.com", "/%0a/example.com", "/%0d%0a/x", "//example.com",
                                 "/%5C/example.com", "https://example.com"])
def test_sign_in_forms_do_not_redirect_off_site(app: Any, roster: Roster, raw: str) -> None:
    """The query string as a browser sends it; both sign-in forms, both roles."""
    student, staff = app.test_client(), app.test_client()
    first = student.post(f"/login?next={raw}", data={"secret": roster.secrets["s003"],
                                                     "csrf_token": csrf_of(student)})
    assert first.status_code == 302
    assert first.headers["Location"] == "/upload"
    staff_answer = staff.post(f"/staff/login?next={raw}", data={
        "username": INSTRUCTOR[0], "password": INSTRUCTOR[1], "csrf_token": csrf_of(staff, "/staff/login")})
    assert staff_answer.status_code == 302
    assert staff_answer.headers["Location"] == "/staff/"


def test_sign_in_follows_a_same_site_next(app: Any, roster: Roster) -> None:
    client = app.test_client()
    client.get("/submissions")  # sends the visitor to /login?next=/submissions
    response = client.post("/login?next=/submissions", data={"secret": roster.secrets["s003"],
                                                            "csrf_token": csrf_of(client)})
    assert response.headers["Location"] == "/submissions"


EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_submission_pages_escape_file_names_and_messages_from_student_code(
    app: Any, client: Any, roster: Roster, tmp_path: Any
) -> None:
    from tests.leaderboard.factories import add_graded, result_data

    svc = app.extensions["leaderboard"]
    sign_in(client, roster.secrets["s001"])
    uploaded = upload(client, csrf_of(client, "/"), name=f"{EVIL}.zip")
    assert uploaded.status_code in (302, 303), uploaded.status_code
    sub_id = add_graded(svc.settings, svc.spec, student_id=roster.ids["s001"], engine=svc.engine,
                        data=result_data(status="crashed", message=f"ValueError: {EVIL}",
                                         detail=EVIL), tmp=tmp_path)
    for path in ["/submissions", uploaded.headers["Location"], f"/submissions/{sub_id}"]:
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in html, path
        assert "<img src=x" not in html, path
    for path in [uploaded.headers["Location"], f"/submissions/{sub_id}"]:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(path).get_data(as_text=True), path


SQL_FROM_STRINGS = re.compile(
    r"""\btext\(\s*f?["']|execute\(\s*f["']|execute\([^)]*["']\s*%|execute\([^)]*\.format\(|"""
    r"""["'](?:SELECT|INSERT|UPDATE|DELETE)\b[^"']*["']\s*(?:%|\+|\.format)""",
    re.IGNORECASE,
)


def test_no_sql_is_built_from_strings() -> None:
    """Queries go through SQLModel with bound parameters; no raw SQL text formatted in Python."""
    root = Path(__file__).resolve().parents[2] / "leaderboard"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SQL_FROM_STRINGS.search(line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
