"""A zip that grading would refuse for its structure is refused at upload, never queued: the
server runs intake's own checks on the stored file (422 with intake's sentence, nothing kept,
no attempt used), and the upload page's script reads the chosen file's central directory and
says the same before a byte is sent. The list of one's submissions says why each invalid or
failed upload ended so, and shows "—" where there is no result."""

from __future__ import annotations

import json
import random
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from leaderboard.models import Submission
from tests.leaderboard.factories import PLACEHOLDERS, add_graded, folder_zip, result_data, shaped_zip
from tests.leaderboard.helpers import Roster, Stack, browser_signed_in, csrf_of, multipart, sign_in

REAL_SIZE = 40 << 20
NOT_A_ZIP = "The upload is not a readable zip file"
IN_A_FOLDER = ("The zip holds your files inside the folder 'submission/'; zip the files themselves, "
               "not the folder, so that they sit at the top level of the zip.")


@pytest.fixture(scope="module")
def real_size(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real-size uploads (40+ MiB, a checkpoint's random bytes): the files zipped with their
    folder around them, the same at the zip's top level with the safetensors alternative for
    finetuned.pt, and a text file chosen by mistake."""
    folder = tmp_path_factory.mktemp("upload-check")
    checkpoint = random.Random(0).randbytes(REAL_SIZE + (2 << 20))
    files = {**PLACEHOLDERS, "finetuned.pt": checkpoint}
    paths = {"nested": folder / "nested.zip", "flat": folder / "flat.zip", "notes": folder / "notes.txt"}
    with zipfile.ZipFile(paths["nested"], "w") as zf:
        for name, data in files.items():
            zf.writestr(f"submission/{name}", data)
    with zipfile.ZipFile(paths["flat"], "w") as zf:
        for name, data in {**PLACEHOLDERS, "finetuned.safetensors": checkpoint}.items():
            if name != "finetuned.pt":
                zf.writestr(name, data)
    paths["notes"].write_text("My notes on the assignment.\n" * 2000)
    assert paths["nested"].stat().st_size >= REAL_SIZE
    return paths


def _rows(app: Any) -> list[Submission]:
    with Session(app.extensions["leaderboard"].engine) as session:
        return list(session.exec(select(Submission)).all())


def _stored(app: Any) -> list[str]:
    folder = app.extensions["leaderboard"].settings.upload_dir
    return sorted(p.name for p in folder.glob("*.zip"))  # not .incoming/, the bodies' spool


# --------------------------------------------------------------------------- the server


def test_the_api_refuses_a_non_zip_and_a_zip_in_a_folder_with_422(
    app: Any, client: Any, roster: Roster, real_size: dict[str, Path]
) -> None:
    from jsonschema import validate as validate_json

    doc = client.get("/api/openapi.json").get_json()
    assert "422" in doc["paths"]["/api/submissions"]["post"]["responses"]
    bearer = {"Authorization": f"Bearer {roster.secrets['s001']}"}
    before = client.get("/api/submissions", headers=bearer).get_json()["remaining_attempts"]
    cases = [(real_size["notes"].read_bytes(), "notes.txt", NOT_A_ZIP),
             (real_size["nested"].read_bytes(), "nested.zip", IN_A_FOLDER),
             (folder_zip(), "small.zip", IN_A_FOLDER)]
    for body, name, reason in cases:
        form, content_type = multipart({"file": body}, filename=name)
        as_form = client.post("/api/submissions", data=form, headers=bearer, content_type=content_type)
        raw = client.post("/api/submissions", data=body, content_type="application/zip",
                          headers={**bearer, "X-Filename": name})
        for answer in (as_form, raw):
            assert answer.status_code == 422, (name, answer.get_json())
            assert answer.get_json()["error"].startswith(reason), answer.get_json()
            assert answer.get_json()["status"] == 422
            validate_json(answer.get_json(), doc["components"]["schemas"]["Error"])
    assert _rows(app) == []
    assert _stored(app) == []
    after = client.get("/api/submissions", headers=bearer).get_json()
    assert after == {"remaining_attempts": before, "submissions": []}
    # The same structure check lets a zip of the right shape through (queued).
    ok = client.post("/api/submissions", data=shaped_zip(), content_type="application/zip", headers=bearer)
    assert ok.status_code == 202, ok.get_json()
    assert len(_stored(app)) == 1


def test_the_upload_form_refuses_them_with_the_reason_and_the_form_kept(
    app: Any, client: Any, roster: Roster
) -> None:
    sign_in(client, roster.secrets["s002"])
    token = csrf_of(client, "/upload")
    for body, name, reason in ((b"just some text\n", "notes.txt", NOT_A_ZIP),
                               (folder_zip(), "nested.zip", IN_A_FOLDER)):
        form, content_type = multipart({"csrf_token": token.encode(), "file": body}, filename=name)
        page = client.post("/upload", data=form, content_type=content_type)
        assert page.status_code == 422
        html = page.get_data(as_text=True)
        assert reason.replace("'", "&#39;") in html
        assert "data-upload-form" in html
        assert 'type="file"' in html
        # As the page's script sends it: the reason as JSON.
        script = client.post("/upload", data=form, content_type=content_type,
                             headers={"Accept": "application/json"})
        assert script.status_code == 422
        assert script.get_json()["error"].startswith(reason)
    assert _rows(app) == []
    assert _stored(app) == []


def test_the_page_carries_the_required_files_for_its_script(client: Any, roster: Roster) -> None:
    sign_in(client, roster.secrets["s001"])
    html = client.get("/upload").get_data(as_text=True)
    match = re.search(r"data-zip-rules='([^']*)'", html)
    assert match, "no data-zip-rules on the upload form"
    rules = json.loads(match.group(1).replace("&#34;", '"'))
    assert rules["required"] == ["numpy_nn.py", "pytorch_cnn.py", "model.pt", "finetuned.pt"]
    assert rules["alternatives"]["finetuned.pt"] == ["finetuned.safetensors"]


# --------------------------------------------------------------------------- the list


def test_the_list_shows_labels_reasons_and_dashes(app: Any, client: Any, roster: Roster,
                                                  tmp_path: Path) -> None:
    svc = app.extensions["leaderboard"]
    long_reason = ("The zip is missing model.pt; add it at the top level of the zip and upload again "
                   "(model.safetensors may stand in for model.pt), and this sentence goes on for a while.")
    ids = {}
    for status, message in (("invalid", long_reason), ("timed_out", "Grading took longer than 600 s."),
                            ("grader_fault", "The grader failed; your attempt is refunded."), ("graded", "")):
        ids[status] = add_graded(svc.settings, svc.spec, student_id=roster.ids["s001"], engine=svc.engine,
                                 tmp=tmp_path, data=result_data(status=status, message=message))
    bearer = {"Authorization": f"Bearer {roster.secrets['s001']}"}
    queued = client.post("/api/submissions", data=shaped_zip(), content_type="application/zip",
                         headers=bearer).get_json()["id"]
    sign_in(client, roster.secrets["s001"])
    html = client.get("/submissions").get_data(as_text=True)

    def row(sub_id: int) -> str:
        match = re.search(rf'<tr data-id="{sub_id}".*?</tr>', html, re.S)
        assert match, sub_id
        return match.group(0)

    def cell(sub_id: int, field: str) -> str:
        match = re.search(rf'data-field="{field}"[^>]*>([^<]*)<', row(sub_id))
        assert match, (sub_id, field)
        return match.group(1).strip()

    assert cell(ids["invalid"], "status") == "Invalid upload"
    assert cell(ids["timed_out"], "status") == "Timed out"
    assert cell(ids["grader_fault"], "status") == "Grader fault"
    assert cell(queued, "status") == "Queued"
    assert "timed_out" not in re.sub(r'class="[^"]*"', "", html)
    shown = cell(ids["invalid"], "reason")
    assert shown.endswith("…")
    assert len(shown) <= 90
    assert long_reason.startswith(shown[:-1])
    assert f'title="{long_reason}"' in row(ids["invalid"])
    assert cell(ids["timed_out"], "reason") == "Grading took longer than 600 s."
    assert cell(ids["grader_fault"], "reason") == "The grader failed; your attempt is refunded."
    assert cell(ids["graded"], "reason") == ""
    for sub_id in (queued, ids["invalid"], ids["grader_fault"]):
        assert (cell(sub_id, "score"), cell(sub_id, "ranked")) == ("—", "—"), sub_id
    assert cell(ids["timed_out"], "score") == "0.0 / 100"  # it counts: its points are 0
    assert re.fullmatch(r"\d+\.\d / 100", cell(ids["graded"], "score"))
    # The poll's JSON carries the same words, so the list stays the same as it updates.
    listed = {s["id"]: s for s in client.get("/api/submissions").get_json()["submissions"]}
    for sub_id in (*ids.values(), queued):
        s = listed[sub_id]
        shown_reason = s["reason"] or (s["progress"]["brief"] if s["pending"] else "")  # as app.js
        assert (s["status_label"], s["score_text"], s["ranked_text"], shown_reason) == (
            cell(sub_id, "status"), cell(sub_id, "score"), cell(sub_id, "ranked"), cell(sub_id, "reason"))
    assert cell(queued, "reason") == "1st in line"  # a pending row says where it is
    assert listed[ids["invalid"]]["message"] == long_reason
    page = client.get(f"/submissions/{queued}").get_data(as_text=True)
    assert re.search(r"<dt>Score</dt><dd[^>]*>—</dd>", page)
    assert "Grading took" not in page


# --------------------------------------------------------------------------- the browser


def _posts(page: Any) -> list[str]:
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    return sent


@pytest.mark.browser
def test_the_upload_page_refuses_them_before_sending(stack: Stack, browser: Any,
                                                    real_size: dict[str, Path]) -> None:
    from playwright.sync_api import expect

    context = browser_signed_in(browser, stack, "student", width=1280)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(stack.server.url + "/submissions")
    listed = page.locator("table.list tbody tr").count()
    page.goto(stack.server.url + "/upload")
    sent = _posts(page)
    alert = page.locator("[data-upload-error]")
    for key, words in (("notes", ["notes.txt is not a zip file"]),
                       ("nested", ["inside the folder 'submission/'", "model.pt and finetuned.pt",
                                   "zip the files themselves so that each sits at the top level"])):
        page.set_input_files("#file", str(real_size[key]))
        for word in words:  # said on choosing (the alert may still show the previous file's)
            expect(alert).to_contain_text(word)
        said = alert.inner_text()
        page.click("form.upload button[type=submit]")  # and again on sending, with nothing sent
        page.wait_for_function("() => !document.querySelector('form.upload button[type=submit]').disabled")
        assert alert.is_visible()
        assert alert.inner_text() == said
        assert page.locator("#file").evaluate("input => input.files[0].name") == real_size[key].name
        assert sent == []
    page.screenshot(path=str(Path(__file__).parent / "screenshots" / "upload-refused-folder-1280.png"),
                    full_page=True)
    page.goto(stack.server.url + "/submissions")
    assert page.locator("table.list tbody tr").count() == listed
    # A zip of the right shape (the safetensors file standing in for finetuned.pt) is sent.
    page.goto(stack.server.url + "/upload")
    sent = _posts(page)
    page.set_input_files("#file", str(real_size["flat"]))
    page.click("form.upload button[type=submit]")
    page.wait_for_url(re.compile(r"/submissions$"), timeout=120_000)
    assert len(sent) == 1
    assert page.locator("table.list tbody tr").count() == listed + 1
    assert not errors, errors
    context.close()


@pytest.mark.browser
def test_without_the_script_the_server_refuses_the_same(stack: Stack, browser: Any,
                                                       real_size: dict[str, Path]) -> None:
    """The page's check bypassed twice: the browser with script off, and curl -F on the API."""
    before = len(stack.statuses())
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    page.goto(stack.server.url + "/login?next=/upload")
    page.fill("#secret", stack.roster.secrets["s002"])
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/upload$"))
    page.set_input_files("#file", str(real_size["nested"]))
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("form.upload button[type=submit]")
    assert answer.value.status == 422
    assert page.inner_text("[data-upload-error]") == IN_A_FOLDER
    assert page.locator("form.upload #file").count() == 1
    context.close()
    for key, reason in (("nested", IN_A_FOLDER), ("notes", NOT_A_ZIP)):
        done = subprocess.run(
            ["curl", "--silent", "--show-error", "--write-out", "\n%{http_code}",
             "-H", f"Authorization: Bearer {stack.roster.secrets['s003']}",
             "-F", f"file=@{real_size[key]}", f"{stack.server.url}/api/submissions"],
            capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        body, _, code = done.stdout.rpartition("\n")
        assert code == "422", body
        assert json.loads(body)["error"].startswith(reason)
    assert len(stack.statuses()) == before
