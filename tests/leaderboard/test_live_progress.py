"""Live progress: a queued upload shows its place in line, a running one each part's state
(waiting, running for how long, done), in the API's JSON and on the page, pushed by the
worker as the runner reports it; in a real browser, each part's change shows before the
result does."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grader.progress import PartProgress
from leaderboard.claims import claim, report_progress
from tests.leaderboard.factories import tiny_good_zip
from tests.leaderboard.helpers import (
    SCREENSHOTS,
    Stack,
    api_upload,
    browser_signed_in,
    build_stack,
    close_stack,
    sign_in,
    wait_done,
)

PARTS = ["numpy_nn", "mynet", "finetune"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def idle_stack(request: pytest.FixtureRequest, tmp_path: Path, grader_home: Path,
               pg_database: Callable[[], str]) -> Iterator[Stack]:
    """A service with no worker yet (its queue fills and nothing is taken)."""
    db_url = pg_database() if request.param == "postgres" else f"sqlite:///{tmp_path / 'lb.db'}"
    stack = build_stack(tmp_path, grader_home=grader_home, db_url=db_url, students=6, workers=0)
    yield stack
    close_stack(stack)


def _get(stack: Stack, secret: str, sub_id: int) -> dict[str, Any]:
    answer = stack.app.test_client().get(f"/api/submissions/{sub_id}",
                                         headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    return answer.get_json()


def test_the_queue_position_then_each_parts_state_in_the_json_and_the_page(idle_stack: Stack) -> None:
    stack = idle_stack
    secrets = [stack.roster.secrets[f"s00{i}"] for i in (1, 2, 3)]
    ids = [api_upload(stack, secret, tiny_good_zip(seed=i)).get_json()["id"]
           for i, secret in enumerate(secrets)]
    progress = [_get(stack, secret, sub_id)["progress"] for secret, sub_id in zip(secrets, ids, strict=True)]
    assert [p["queue_position"] for p in progress] == [1, 2, 3]
    assert progress[1]["sentence"] == "Waiting for a grader: 2nd in line."
    assert all(p["parts"] == [] for p in progress)

    # A worker takes the first: the others move up; its parts show, all waiting at first.
    taken = claim(stack.engine, submission_id=ids[0], worker="test", max_attempts=3)
    assert taken is not None
    places = [_get(stack, s, i)["progress"]["queue_position"] for s, i in zip(secrets, ids, strict=True)]
    assert places == [None, 1, 2]
    first = _get(stack, secrets[0], ids[0])["progress"]
    assert first["sentence"] == "Grading now; the points come when every part has run."
    assert [(p["name"], p["state"]) for p in first["parts"]] == [(n, "waiting") for n in PARTS]
    assert [p["title"] for p in first["parts"]] == ["NumPy layers", "MyNet on FashionMNIST",
                                                   "FinetuneNet on dogs and cats"]

    report_progress(stack.engine, claim=taken, parts=[
        PartProgress("numpy_nn", "done", 0.4), PartProgress("mynet", "running", 2.0),
        PartProgress("finetune", "waiting")])
    time.sleep(1.1)
    parts = {p["name"]: p for p in _get(stack, secrets[0], ids[0])["progress"]["parts"]}
    assert parts["numpy_nn"]["label"] == "finished in 0.4 s"
    assert parts["mynet"]["state"] == "running"
    assert parts["mynet"]["seconds"] >= 3.0  # the time since the worker's report counts too
    assert parts["mynet"]["label"].startswith("running for ")
    assert parts["finetune"]["label"] == "waiting"

    client = stack.app.test_client()
    sign_in(client, secrets[0])
    page = client.get(f"/submissions/{ids[0]}").get_data(as_text=True)
    assert "Grading now; the points come when every part has run." in page
    assert 'data-part="mynet"' in page
    assert "finished in 0.4 s" in page
    assert "MyNet on FashionMNIST: running for" in client.get("/submissions").get_data(as_text=True)
    other = stack.app.test_client()
    sign_in(other, secrets[2])
    queued_page = other.get(f"/submissions/{ids[2]}").get_data(as_text=True)
    assert "Waiting for a grader: 2nd in line." in queued_page
    # its (hidden) parts wait for the script, each with the words the JSON will bring
    assert re.findall(r'<li class="live-(\w+)" data-part="(\w+)"', queued_page) == [
        ("waiting", n) for n in PARTS]
    assert "bound method" not in queued_page
    assert "2nd in line" in other.get("/submissions").get_data(as_text=True)  # the list says it too
    listed = other.get("/api/submissions").get_json()["submissions"][0]["progress"]
    assert listed["brief"] == "2nd in line"

    # A run whose claim was taken over writes nothing.
    stale = type(taken)(taken.submission_id, "not-the-token", taken.archive_key, taken.attempt, False)
    report_progress(stack.engine, claim=stale, parts=[PartProgress(n, "done", 1.0) for n in PARTS])
    assert _get(stack, secrets[0], ids[0])["progress"]["parts"][2]["state"] == "waiting"


@pytest.mark.browser
@pytest.mark.slow
def test_a_grade_watched_in_the_browser_shows_each_part_change_before_the_result(
    tmp_path: Path, grader_home: Path, browser: Any
) -> None:
    stack = build_stack(tmp_path, grader_home=grader_home, db_url=f"sqlite:///{tmp_path / 'lb.db'}",
                        students=3, workers=0)
    try:
        sub_id = api_upload(stack, stack.roster.secrets["s001"], tiny_good_zip(slow_s=2.5)).get_json()["id"]
        context = browser_signed_in(browser, stack, "student", width=1280)
        page = context.new_page()
        page.goto(f"{stack.server.url}/submissions/{sub_id}")
        assert "Waiting for a grader: 1st in line." in page.inner_text("main")
        phone_context = browser_signed_in(browser, stack, "student", width=390)
        phone = phone_context.new_page()
        phone.goto(f"{stack.server.url}/submissions/{sub_id}")
        stack.start_worker()

        seen: list[tuple[str, str]] = []  # (part, state) each time one changes, in order
        phone_seen: list[int] = []  # the phone page's width and parts done, while finetune runs
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                states = page.evaluate(
                    """() => document.querySelector('[data-live-parts]') === null ? null :
                        [...document.querySelectorAll('[data-live-parts] li')]
                          .map(li => [li.dataset.part, li.className.replace('live-', '')])""")
            except Exception:  # the page reloads itself once graded
                states = []
            if states is None:  # the result page: no live parts any more
                break
            for part, state in states:
                if not seen or (part, state) not in seen:
                    seen.append((part, state))
            if ("finetune", "running") in seen and not phone_seen:
                SCREENSHOTS.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "live-progress-1280.png"), full_page=True)
                phone.screenshot(path=str(SCREENSHOTS / "live-progress-390.png"), full_page=True)
                phone_seen = phone.evaluate(
                    "() => [document.documentElement.scrollWidth, document.querySelectorAll("
                    "'[data-live-parts] li.live-done').length]")
            time.sleep(0.2)
        wait_done(stack, [sub_id])
        for part in PARTS:
            assert (part, "running") in seen, seen
            assert seen.index((part, "waiting")) < seen.index((part, "running")), seen
            if (part, "done") in seen:
                assert seen.index((part, "running")) < seen.index((part, "done")), seen
        assert ("numpy_nn", "done") in seen, seen
        assert ("mynet", "done") in seen, seen
        page.wait_for_selector("#part-finetune")  # the result, after every change above
        assert page.locator("[data-live-parts]").count() == 0
        assert phone_seen[0] <= 390  # the phone's page, live too, and no wider than the phone
        assert phone_seen[1] >= 1
        context.close()
        phone_context.close()
    finally:
        close_stack(stack)
