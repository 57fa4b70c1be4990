"""Every page at 390 px in Debian's chromium, as a visitor, a student and an instructor: the
document never scrolls sideways (tables scroll inside their card or stack, long names are cut
with the full name in a title), and chart text renders at 12 px or more. Also the student's own
row on the board and its "jump to me" link.

Widths per page go to ``screenshots/phones-<role>.json``; screenshots at 1280 and 390 px to
``screenshots/phones-<role>-<page>-<width>.png``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from leaderboard.accounts import set_display_name
from leaderboard.models import Student
from tests.leaderboard.helpers import (
    SCREENSHOTS,
    Stack,
    api_upload,
    browser_signed_in,
    build_stack,
    close_stack,
    page_paths,
    wait_done,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = 390
DESK = 1280
MIN_CHART_PX = 12.0
# At the 40-character limit and with no space to break at: the widest name a student can pick.
LONG_NAME = "Maximiliana_Featherstonehaugh_Wolfeschl"
LONG_FILE = "my_final_submission_for_the_cnn_challenge_really_final_v7_after_fixing_everything.zip"
SHOT_PAGES = ("/leaderboard", "/upload", "/submissions", "/submissions/{sub}", "/staff/",
              "/staff/submissions")

# The chart's text as rendered: the computed font size times the SVG's scale on screen (a
# viewBox scales its text with the width of the page).
CHART_TEXT_PX = """() => Array.from(document.querySelectorAll('.chart *')).filter(el =>
    Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim()) &&
    el.getClientRects().length && !el.closest('title')).map(el => {
      const size = parseFloat(getComputedStyle(el).fontSize);
      const scale = el.getScreenCTM ? el.getScreenCTM().a : 1;
      return [el.textContent.trim().slice(0, 30), Math.round(size * scale * 10) / 10];
    })"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, grader_home: Path,
         zips: dict[str, bytes]) -> Iterator[Stack]:
    """Graded, crashed and invalid uploads; s001 has the longest name and the longest file."""
    stack = build_stack(tmp_path_factory.mktemp("phones"), grader_home=grader_home,
                        db_url=f"sqlite:///{tmp_path_factory.mktemp('phones-db') / 'lb.db'}", students=4)
    with Session(stack.engine) as session:
        student = session.get(Student, stack.roster.ids["s001"])
        set_display_name(session, student=student, raw=LONG_NAME)
        session.commit()
    ids = []
    for roster_id, kind, name in (("s001", "good", LONG_FILE), ("s002", "good", "good.zip"),
                                  ("s001", "good", "second_" + LONG_FILE), ("s003", "crash", "crash.zip"),
                                  ("s004", "invalid", "invalid.zip")):
        response = api_upload(stack, stack.roster.secrets[roster_id], zips[kind], name)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    wait_done(stack, ids, timeout_s=300)
    stack.graded_id = ids[0]  # type: ignore[attr-defined]
    yield stack
    close_stack(stack)


def signed_in(browser: Any, stack: Stack, role: str, width: int = DESK) -> Any:
    return browser_signed_in(browser, stack, role, width=width)


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"


@pytest.mark.parametrize("role", ["visitor", "student", "instructor"])
def test_no_page_is_wider_than_a_phone_and_chart_text_is_readable(site: Stack, browser: Any,
                                                                   role: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    context = signed_in(browser, site, role, PHONE)
    page = context.new_page()
    sub = site.graded_id  # type: ignore[attr-defined]
    shots = {p.format(sub=sub) for p in SHOT_PAGES}
    widths: dict[str, int] = {}
    small: list[str] = []
    for path in page_paths(site):
        kind = context.request.get(site.server.url + path).headers.get("content-type", "")
        if "text/html" not in kind:
            continue
        page.set_viewport_size({"width": PHONE, "height": 900})
        page.goto(site.server.url + path)
        widths[path] = page.evaluate("document.documentElement.scrollWidth")
        small += [f"{path}: {text!r} at {px} px"
                  for text, px in page.evaluate(CHART_TEXT_PX) if px < MIN_CHART_PX]
        if path in shots:
            for width in (PHONE, DESK):
                page.set_viewport_size({"width": width, "height": 900})
                shot = SCREENSHOTS / f"phones-{role}-{_slug(path)}-{width}.png"
                page.screenshot(path=str(shot), full_page=True)
    context.close()
    (SCREENSHOTS / f"phones-{role}.json").write_text(json.dumps(widths, indent=1))
    assert len(widths) >= 5, widths
    wide = {path: w for path, w in widths.items() if w > PHONE}
    assert not wide, f"pages wider than {PHONE} px: {wide}"
    assert not small, "chart text under 12 px:\n" + "\n".join(small)


def test_the_students_row_is_marked_and_the_jump_link_reaches_it(site: Stack, browser: Any) -> None:
    context = signed_in(browser, site, "student", PHONE)
    page = context.new_page()
    page.goto(site.server.url + "/leaderboard")
    mine = page.locator("table.board tr.me")
    assert mine.count() == 1
    assert mine.get_attribute("id") == "me"
    assert mine.get_attribute("aria-current") == "true"  # screen readers hear it as the current row
    assert LONG_NAME in mine.inner_text()
    assert "(you)" in mine.inner_text()
    link = page.locator("a[data-jump-me]")
    assert link.get_attribute("href") == "#me"
    page.evaluate("window.scrollTo(0, 0)")
    link.click()
    assert page.evaluate("location.hash") == "#me"
    assert page.evaluate("document.querySelector(':target') === document.querySelector('tr.me')")
    background = "(sel) => getComputedStyle(document.querySelector(sel)).backgroundColor"
    other = "tr:not(.me):not(.pass-line) td"
    assert page.evaluate(background, "tr.me td") != page.evaluate(background, other)
    # The long name is cut on the phone, whole in its title.
    cut = mine.locator(".cut")
    assert cut.get_attribute("title") == LONG_NAME
    assert page.evaluate("(el) => el.scrollWidth > el.clientWidth", cut.element_handle())
    context.close()
    # Nobody else's page marks a row: a visitor's (cached) board and another student's.
    visitor = browser.new_context(viewport={"width": PHONE, "height": 900})
    page = visitor.new_page()
    page.goto(site.server.url + "/leaderboard")
    assert page.locator("tr.me").count() == 0
    assert page.locator("a[data-jump-me]").count() == 0
    visitor.close()


def test_my_submissions_shows_the_score_over_time_and_cuts_long_file_names(site: Stack, browser: Any) -> None:
    context = signed_in(browser, site, "student", PHONE)
    page = context.new_page()
    page.goto(site.server.url + "/submissions")
    chart = page.locator("[data-score-chart]")
    assert chart.count() == 1
    assert chart.locator("circle.point").count() == 2  # s001's two graded uploads
    assert chart.locator("line.threshold").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE
    cut = page.locator("td.file .cut").first
    assert cut.get_attribute("title") == "second_" + LONG_FILE
    box = chart.bounding_box()
    card = page.locator("main .card").first.bounding_box()
    assert box is not None
    assert card is not None
    assert box["width"] > card["width"] - 40  # the chart spans its card
    context.close()
