"""The result page teaches: a real result (the real judges on the built hidden data) as a
student reads it, in the page's HTML and in a real browser at 1280 px and 390 px.

Layer tests come grouped per layer with a count, failures first, passing groups folded, the
"not run because …" tests under the failure that caused them; each classifier part shows its
confusion matrices and per-class accuracy on the public part with the dataset's class names,
and the gap between weighted splits in one sentence; part titles, never internal names; one
number format; an ungraded result shows "—"; a crashed part without numbers gets no note.
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from grader.config import Assignment, Settings
from grader.result import GradeResult, PartResult, Status, points
from grader.visible import visible_to_student
from leaderboard.present import group_tests
from tests.leaderboard.conftest import CHROMIUM
from tests.leaderboard.factories import add_graded, result_data
from tests.leaderboard.helpers import SCREENSHOTS, LiveServer, Roster, sign_in, sign_in_staff
from tests.leaderboard.taught import taught_result


def text_of(page: str) -> str:
    """The page's visible text (tags, attributes, scripts and styles left out)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", page))


def section(page: str, name: str) -> str:
    start = page.index(f'id="part-{name}"')
    end = page.find('<section class="part card"', start)
    return page[start:end if end > 0 else len(page)]


@pytest.fixture
def taught(app: Any, settings: Settings, tmp_path: Path) -> GradeResult:
    result, _manifest = taught_result(app.extensions["leaderboard"].spec, settings, tmp_path / "judged")
    return result


def test_the_result_page_teaches(app: Any, client: Any, roster: Roster, tmp_path: Path,
                                 taught: GradeResult, settings: Settings) -> None:
    svc = app.extensions["leaderboard"]
    spec: Assignment = svc.spec
    sub_id = add_graded(svc.settings, spec, student_id=roster.ids["s001"], data=taught.to_dict(),
                        engine=svc.engine, tmp=tmp_path)
    sign_in(client, roster.secrets["s001"])
    page = client.get(f"/submissions/{sub_id}").get_data(as_text=True)
    text = text_of(page)
    shown = visible_to_student(taught, spec, final=False)

    # Layer tests: one group per layer with its count; failing groups open and first.
    layers = next(p for p in spec.parts if p.kind == "layers")
    part = taught.part(layers.name)
    assert part is not None
    groups = group_tests(part.tests)
    html = section(page, layers.name)
    summaries = re.findall(r'<details class="test-group (bad|ok)"( open)?>\s*<summary>'
                           r'<span class="group-name">([^<]+)</span> '
                           r'<span class="group-count">(\d+)/(\d+)</span>', html)
    assert [(s[2], int(s[3]), int(s[4])) for s in summaries] == [(g.name, g.passed, g.total) for g in groups]
    assert [s[0] == "bad" for s in summaries] == [g.failed for g in groups]
    assert [bool(s[1]) for s in summaries] == [g.failed for g in groups]  # passing groups folded
    assert summaries[0][0] == "bad"
    assert summaries[-1][0] == "ok"
    # Each "not run" test sits under its cause, not in a row of its own.
    stopped = [t for t in part.tests if t.caused_by]
    assert stopped
    assert html.count('<tr class="bad">') + html.count('<tr class="ok">') == len(part.tests) - len(stopped)
    assert "not run because this one failed" in html

    # Diagnostics on the public part, with the dataset's class names, for every classifier part.
    for part_spec in (p for p in spec.parts if p.kind == "classifier"):
        got = shown.part(part_spec.name)
        assert got is not None
        diag = got.diagnostics
        assert diag["scope"] == "public"
        html = section(page, part_spec.name)
        assert html.count('<table class="confusion">') == len(diag["splits"])
        for name in diag["classes"]:
            assert f'<th scope="row">{html_lib.escape(name)}</th>' in html
        first = next(iter(diag["splits"].values()))
        row = re.search(r'<tr><th scope="row">[^<]+</th>\s*((?:<td class="heat-\d[^"]*">\d+</td>)+)', html)
        assert row is not None
        assert [int(c) for c in re.findall(r">(\d+)<", row.group(1))] == first["confusion"][0]
        # The data set's caveat (the test data is built from a public and a synthetic set)
        # under the part it qualifies, said of the part.
        assert "Note: the hidden data of this part " in html
        if part_spec.weights:
            assert diag["gap"]["reading"] in text
            for split in part_spec.weights:
                assert f"{split}: confusion matrix, {diag['splits'][split]['count']} public images" in text
        else:
            assert f"Confusion matrix, {first['count']} public images" in text

    # Titles, not internal names; one number format; points as "38.1 / 40".
    for part_spec in spec.parts:
        assert part_spec.title in text
        assert not part_spec.dataset or part_spec.dataset not in text
        if part_spec.name != part_spec.title:
            assert not re.search(rf"\b{re.escape(part_spec.name)}\b", text), part_spec.name
    assert not re.search(r"\d+\.\d\d%", text), re.findall(r"\d+\.\d\d%", text)
    assert f"{points(part.score, part.max_score)} points" in text
    assert re.search(r"Score\s+" + re.escape(points(taught.score, taught.max_score)), text)

    # The API carries the same public-part diagnostics; staff see them on their page too.
    api = {p["name"]: p for p in client.get(f"/api/submissions/{sub_id}").get_json()["result"]["parts"]}
    for part_spec in (p for p in spec.parts if p.kind == "classifier"):
        judged = taught.part(part_spec.name)
        assert judged is not None
        assert api[part_spec.name]["diagnostics"] == json.loads(json.dumps(dict(judged.diagnostics)))
    staff = app.test_client()
    sign_in_staff(staff)
    staff_page = staff.get(f"/staff/submissions/{sub_id}").get_data(as_text=True)
    assert staff_page.count('<table class="confusion">') == page.count('<table class="confusion">') > 0


def test_ungraded_and_crashed_show_no_numbers_they_do_not_have(app: Any, client: Any, roster: Roster,
                                                               tmp_path: Path, taught: GradeResult) -> None:
    svc = app.extensions["leaderboard"]
    spec: Assignment = svc.spec
    invalid = add_graded(svc.settings, spec, student_id=roster.ids["s001"], engine=svc.engine, tmp=tmp_path,
                         data=result_data(status="invalid", message="The zip is missing model.pt."))
    ranked = spec.ranked_part
    crashed_part = PartResult(ranked, Status.CRASHED, 0.0, spec.part(ranked).points, False,
                              "FinetuneNet() raised RuntimeError: boom.")
    crashed = dataclasses.replace(taught, parts=tuple(crashed_part if p.name == ranked else p
                                                      for p in taught.parts))
    crashed_id = add_graded(svc.settings, spec, student_id=roster.ids["s001"], engine=svc.engine,
                            tmp=tmp_path, data=crashed.to_dict())
    sign_in(client, roster.secrets["s001"])

    text = text_of(client.get(f"/submissions/{invalid}").get_data(as_text=True))
    assert re.search(r"Score\s+—", text)
    assert "0.0 / 100" not in text
    assert "0 / 100" not in text
    assert "Grading took" not in text

    page = client.get(f"/submissions/{crashed_id}").get_data(as_text=True)
    part = text_of(section(page, ranked))
    assert "crashed" in part
    assert "public part of each hidden split" not in part  # the note needs numbers to be about
    assert "onfusion matrix" not in part
    assert "Note:" not in part  # nor a data set's caveat: there are no numbers it could qualify
    assert "public part of each hidden split" not in text_of(section(page, next(
        p.name for p in spec.parts if p.kind == "classifier" and p.name != ranked)))


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_result_page_in_a_browser(app: Any, roster: Roster, tmp_path: Path, taught: GradeResult,
                                      browser: Any) -> None:
    """Screenshots at 1280 px and 390 px (``screenshots/result-*.png``); every part's card holds
    its content (wide tables scroll inside their own box); a folded group opens from the keyboard."""
    svc = app.extensions["leaderboard"]
    spec: Assignment = svc.spec
    sub_id = add_graded(svc.settings, spec, student_id=roster.ids["s001"], data=taught.to_dict(),
                        engine=svc.engine, tmp=tmp_path)
    server = LiveServer(app)
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        for width in (1280, 390):
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))  # noqa: B023
            page.goto(server.url + "/login")
            page.fill("#secret", roster.secrets["s001"])
            page.click("main button[type=submit]")
            page.wait_for_load_state()
            page.goto(f"{server.url}/submissions/{sub_id}")
            assert page.locator("details.test-group[open]").count() >= 1
            page.screenshot(path=str(SCREENSHOTS / f"result-{width}.png"), full_page=True)
            for name in (p.name for p in spec.parts):
                fits = page.evaluate(
                    "(id) => { const s = document.getElementById(id);"
                    " return s.scrollWidth <= s.clientWidth + 1; }", f"part-{name}")
                assert fits, (width, name)
            folded = page.locator("details.test-group:not([open]) > summary").first
            folded.focus()
            page.keyboard.press("Enter")
            assert page.locator("details.test-group:not([open])").count() < sum(
                not g.failed for p in taught.parts for g in group_tests(p.tests) if g.name)
            assert errors == []
            context.close()
    finally:
        server.stop()
    assert Path(CHROMIUM).exists()
