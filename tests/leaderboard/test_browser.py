"""A student in real headless Chromium (Debian's, driven by Playwright): sign in, pick a
display name, drop a zip on the upload page, watch it graded live, read the feedback, and
see their row appear on the open leaderboard. Screenshots go to ``screenshots/``."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from leaderboard.accounts import RosterEntry, import_roster, student_secret
from leaderboard.db import session_scope
from tests.leaderboard.helpers import SCREENSHOTS, Stack

pytestmark = [pytest.mark.browser, pytest.mark.slow]





def new_student(stack: Stack, roster_id: str) -> str:
    with session_scope(stack.engine) as session:
        import_roster(
            session,
            entries=[RosterEntry(roster_id, "Browser Student", f"{roster_id}@uni.example")],
            roster_key=stack.settings.roster_key,
        )
    return student_secret(stack.settings.roster_key, roster_id, 0)


def test_student_uploads_in_the_browser_and_sees_the_board(
    stack: Stack, browser: Any, zips: dict[str, bytes], request: pytest.FixtureRequest
) -> None:
    tag = request.node.callspec.id
    SCREENSHOTS.mkdir(exist_ok=True)
    secret = new_student(stack, f"web-{tag[:8]}")
    name = f"Ada <b>{tag[:6]}</b>"  # HTML in a display name must show as text
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # A second tab keeps the leaderboard open: the row must appear there by itself.
    board_tab = context.new_page()
    board_tab.goto(stack.server.url + "/")
    assert name not in board_tab.inner_text("table.board")

    page.goto(stack.server.url + "/upload")
    assert "/login" in page.url
    page.fill("#secret", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/profile"))
    page.fill("#display_name", name)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/upload$"))
    assert "100 of 100 attempts left" in page.inner_text(".attempts")

    # Drop the zip on the drop zone, as a person drags it from their file manager.
    payload = base64.b64encode(zips["good"]).decode()
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "my-submission.zip", {type: "application/zip"}));
            return dt;
        }""",
        payload,
    )
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": transfer})
    assert page.inner_text("[data-chosen]") == "Chosen: my-submission.zip"
    page.screenshot(path=str(SCREENSHOTS / f"upload-{tag}.png"), full_page=True)
    page.click("form.upload button[type=submit]")
    page.wait_for_url(re.compile(r"/submissions$"))
    row = page.locator("table.list tbody tr").first
    assert "my-submission.zip" in row.inner_text()

    # The status cell turns to "Graded" without a reload.
    page.wait_for_function(
        "() => document.querySelector('[data-field=status]').textContent === 'Graded'",
        timeout=120_000,
    )
    assert "99 of 100 attempts left" in page.inner_text("main")
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"/submissions/\d+$"))
    assert page.locator("figure.chart.bar-chart").count() == 2  # MyNet and FinetuneNet charts
    assert "pass 70%" in page.inner_text("#part-finetune")
    assert "pass 75%" in page.inner_text("#part-mynet")
    assert "All 42 layer tests passed" in page.inner_text("#part-numpy_nn")
    assert page.locator("#part-numpy_nn table.tests tbody tr").count() >= 10
    page.screenshot(path=str(SCREENSHOTS / f"submission-{tag}.png"), full_page=True)

    # The open leaderboard shows the new row, name as text, with no reload.
    board_tab.wait_for_function(
        "(name) => [...document.querySelectorAll('td.name')].some(td => td.textContent === name)",
        arg=name,
        timeout=30_000,
    )
    assert board_tab.locator("td.name b").count() == 0  # no element made from the name
    # Untrained nets sit below the pass line, and so (rank 1-6) hold no bonus place: the
    # script draws both from the board's JSON as the server's table does.
    row_class, rank_text = board_tab.evaluate(
        """(name) => {
            const td = [...document.querySelectorAll('td.name')].find(td => td.textContent === name);
            const tr = td.parentElement;
            return [tr.className, tr.querySelector('td.rank').textContent];
        }""",
        name,
    )
    assert "below" in row_class.split()
    assert board_tab.locator("tr.pass-line").count() == 1
    if int(rank_text.split()[0]) <= 6:
        assert "no bonus: not every part passed" in rank_text
    board_tab.screenshot(path=str(SCREENSHOTS / f"leaderboard-{tag}.png"), full_page=True)
    page.goto(stack.server.url + "/")
    assert name in page.inner_text("table.board")
    assert not errors, errors  # no CSP violations or script errors on any page
    context.close()
