"""End to end with the real worker process and the real grader, on both backend pairs:
SQLite database + Huey on SQLite, and PostgreSQL + Huey on Redis."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from sqlmodel import Session, select

from leaderboard.claims import request_regrade
from leaderboard.db import session_scope
from leaderboard.models import Submission
from tests.leaderboard.helpers import Stack, api_upload, csrf_of, results_of, sign_in, wait_done

pytestmark = pytest.mark.slow

def test_uploads_are_graded_by_the_worker(stack: Stack, zips: dict[str, bytes]) -> None:
    secret = stack.roster.secrets["s001"]
    client = stack.app.test_client()
    sign_in(client, secret)
    before = client.get("/api/submissions").get_json()["remaining_attempts"]
    good = api_upload(stack, secret, zips["good"], "good.zip")
    assert good.status_code == 202, good.get_json()
    assert good.get_json()["status"] == "queued"
    # A zip whose files sit in a folder is refused at once: no row, nothing for the worker.
    count = len(stack.statuses())
    refused = api_upload(stack, secret, zips["refused"], "folder.zip")
    assert refused.status_code == 422
    assert "inside the folder 'submission/'" in refused.get_json()["error"]
    assert len(stack.statuses()) == count
    # One whose directory is in order but whose data intake refuses is graded invalid.
    invalid = api_upload(stack, secret, zips["invalid"], "notes.zip")
    crash = api_upload(stack, secret, zips["crash"], "crash.zip")
    ids = [r.get_json()["id"] for r in (good, invalid, crash)]
    statuses = wait_done(stack, ids)
    assert statuses == {ids[0]: "graded", ids[1]: "invalid", ids[2]: "crashed"}

    # The engine's result JSON comes back through the API, without staff details.
    api = client.get(f"/api/submissions/{ids[0]}").get_json()
    result = api["result"]
    assert result["status"] == "graded"
    assert [p["name"] for p in result["parts"]] == ["numpy_nn", "mynet", "finetune"]
    numpy_part = result["parts"][0]
    assert numpy_part["passed"] is True
    assert numpy_part["tests"]
    assert "detail" not in numpy_part
    invalid_api = client.get(f"/api/submissions/{ids[1]}").get_json()
    assert invalid_api["counts_attempt"] is False
    assert "is itself an archive" in invalid_api["result"]["message"]
    # Two attempts used: the graded one and the crash; the invalid upload is refunded.
    assert client.get("/api/submissions").get_json()["remaining_attempts"] == before - 2

    # The submission page shows the chart and the board has the student's row.
    page = client.get(f"/submissions/{ids[0]}").get_data(as_text=True)
    assert 'class="threshold"' in page
    board = client.get("/api/leaderboard").get_json()
    row = next(r for r in board["rows"] if r["display_name"] == "s-1")
    finetune = result["parts"][2]["metrics"]  # public numbers until the freeze
    assert row["weighted"] == pytest.approx(finetune["weighted"])
    assert row["uploads"] >= 2


def test_killed_worker_mid_grading_is_graded_later_exactly_once(stack: Stack, zips: dict[str, bytes]) -> None:
    secret = stack.roster.secrets["s002"]
    client = stack.app.test_client()
    sign_in(client, secret)
    before = client.get("/api/submissions").get_json()["remaining_attempts"]
    sub_id = api_upload(stack, secret, zips["crash"], "slow.zip").get_json()["id"]
    stack.wait_for(
        lambda: stack.statuses().get(sub_id) == "running",
        timeout_s=60,
        what="the worker to start grading",
    )
    for worker in stack.workers:
        if worker.proc.poll() is None:
            worker.kill()
    assert stack.statuses()[sub_id] == "running"  # the database still says so: nobody graded it
    stack.start_worker()
    assert wait_done(stack, [sub_id]) == {sub_id: "crashed"}
    with Session(stack.engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        assert sub.grading_attempts == 2  # started twice, recorded once
    assert results_of(stack, sub_id) == 1
    assert client.get("/api/submissions").get_json()["remaining_attempts"] == before - 1


def test_fifty_uploads_at_once_are_stored_queued_and_graded(stack: Stack, zips: dict[str, bytes]) -> None:
    """50 uploads over real HTTP at the same moment, from 10 students: none is lost."""
    secrets = [stack.roster.secrets[f"s{i:03d}"] for i in range(1, 11)]
    bodies = [zips["crash"] if i in (7, 31) else zips["invalid"] for i in range(50)]
    start = threading.Barrier(50)
    answers: list[tuple[int, dict[str, Any]]] = [(0, {})] * 50

    def send(i: int) -> None:
        boundary = "----lbtest"
        payload = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="u{i}.zip"\r\nContent-Type: application/zip\r\n\r\n'
            ).encode()
            + bodies[i]
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            stack.server.url + "/api/submissions",
            data=payload,
            method="POST",
            headers={
                "Authorization": f"Bearer {secrets[i % 10]}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answers[i] = (response.status, json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            answers[i] = (exc.code, json.loads(exc.read() or b"{}"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [code for code, _ in answers] == [202] * 50, answers
    ids = [body["id"] for _, body in answers]
    assert len(set(ids)) == 50
    with Session(stack.engine) as session:
        rows = session.exec(select(Submission).where(Submission.id.in_(ids))).all()  # type: ignore[union-attr]
    assert len(rows) == 50
    assert sum(row.size_bytes for row in rows) == sum(len(b) for b in bodies)
    statuses = wait_done(stack, ids, timeout_s=240)
    assert sorted(statuses.values()).count("crashed") == 2
    assert sorted(statuses.values()).count("invalid") == 48
    assert all(results_of(stack, i) == 1 for i in ids)
    for row in rows:  # the graded archives are on disk byte for byte; the invalid ones are gone
        stored = stack.settings.upload_dir / f"{row.archive_key}.zip"
        if statuses[row.id or 0] == "invalid":
            assert not stored.exists()
        else:
            assert stored.stat().st_size == row.size_bytes


def test_uploads_refused_as_invalid_leave_no_file(stack: Stack, zips: dict[str, bytes]) -> None:
    """A refused upload uses no attempt, so its zip must not stay: else the disk fills for free."""
    secret = stack.roster.secrets["s004"]
    client = stack.app.test_client()
    sign_in(client, secret)
    folder = stack.settings.upload_dir

    def archives() -> dict[int, str]:
        with Session(stack.engine) as session:
            return {s.id or 0: s.archive_key for s in session.exec(select(Submission).where(
                Submission.student_id == stack.roster.ids["s004"])).all()}

    earlier = archives()  # the session's other tests upload as this student too
    before = client.get("/api/submissions").get_json()["remaining_attempts"]
    ids = [api_upload(stack, secret, zips["invalid"], f"bad-{i}.zip").get_json()["id"] for i in range(4)]
    for i in range(2):  # the page, as the browser posts it
        response = client.post("/upload", data={"csrf_token": csrf_of(client, "/upload"),
                                                "file": (io.BytesIO(zips["invalid"]), f"page-{i}.zip")},
                               content_type="multipart/form-data")
        assert response.status_code == 302
    keys = {i: k for i, k in archives().items() if i not in earlier}
    assert len(keys) == 6
    assert set(wait_done(stack, list(keys)).values()) == {"invalid"}
    assert [k for k in keys.values() if (folder / f"{k}.zip").exists()] == []
    assert client.get("/api/submissions").get_json()["remaining_attempts"] == before
    # A regrade would find no zip: it does not take them.
    assert request_regrade_ids(stack, list(keys)) == []
    assert set(ids) <= set(keys)


def request_regrade_ids(stack: Stack, ids: list[int]) -> list[int]:
    with session_scope(stack.engine) as session:
        return request_regrade(session, submission_ids=ids)
