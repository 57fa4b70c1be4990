"""The staff home and a student's staff page in a real browser at 1280 and 390 px: nothing runs
off the page sideways, axe-core finds nothing serious, the confirm step is a page of its own.
Screenshots go to ``screenshots/staff-<page>-<width>.png``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.leaderboard.factories import add_graded, result_data
from tests.leaderboard.helpers import INSTRUCTOR, SCREENSHOTS, Stack, build_stack, close_stack
from tests.leaderboard.test_accessibility import AXE, FAILING_IMPACTS, _axe

pytestmark = [pytest.mark.browser, pytest.mark.slow]
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, grader_home: Path) -> Iterator[Stack]:
    """A service with a week of recorded results (no worker: the crud path a worker takes)."""
    tmp = tmp_path_factory.mktemp("staff-browser")
    stack = build_stack(tmp, grader_home=grader_home, db_url=f"sqlite:///{tmp / 'lb.db'}",
                        students=6, workers=0)
    svc = stack.app.extensions["leaderboard"]
    kinds: list[dict[str, Any]] = [
        {"final": (0.9, 0.85, 0.8)}, {"final": (0.6, 0.5, 0.4), "layer_failures": 8},
        {"status": "timed_out"}, {"final": (0.95, 0.9, 0.9)}, {"status": "crashed"},
    ]
    n = 0
    for day in range(7):
        for who in range(1, 7):
            if (day + who) % 3 == 0:
                continue
            add_graded(svc.settings, svc.spec, student_id=stack.roster.ids[f"s{who:03d}"],
                       data=result_data(**kinds[n % len(kinds)]), engine=svc.engine,
                       at=T0 + timedelta(days=day, minutes=who), tmp=tmp)
            n += 1
    yield stack
    close_stack(stack)


def _staff_page(browser: Any, stack: Stack) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(stack.server.url + "/staff/login")
    page.fill("#username", INSTRUCTOR[0])
    page.fill("#password", INSTRUCTOR[1])
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/staff/?$"))
    return context, page


def test_staff_home_and_student_page_fit_and_pass_axe(site: Stack, browser: Any) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    context, page = _staff_page(browser, site)
    student = site.roster.ids["s001"]
    problems: list[str] = []
    for name, path in (("home", "/staff/"), ("student", f"/staff/students/{student}"),
                       ("roster", "/staff/roster"), ("freeze", "/staff/freeze")):
        page.goto(site.server.url + path)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 0:
                problems.append(f"{path} at {width} px runs {overflow} px off the page")
            if AXE.is_file():
                problems += [f"{path} at {width} px: {v['id']} {v['help']} {v['nodes'][:3]}"
                             for v in _axe(page) if v["impact"] in FAILING_IMPACTS]
            page.screenshot(path=str(SCREENSHOTS / f"staff-{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
    context.close()
    assert not problems, "\n".join(problems)


def test_freeze_in_the_browser_goes_through_the_confirm_page(site: Stack, browser: Any) -> None:
    context, page = _staff_page(browser, site)
    page.click("text=Freeze the board now…")
    page.wait_for_url(re.compile(r"/staff/freeze$"))
    assert "Every upload so far is graded." in page.inner_text("[data-consequence]")
    page.click("main button.danger")
    page.wait_for_url(re.compile(r"/staff/?$"))
    assert "The board is frozen" in page.inner_text("main")
    context.close()
