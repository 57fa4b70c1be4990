"""Several assignments on one service: the course page, separate boards and budgets, the
gradebook, the worker grading both, and ``--assignment NAME`` on the command lines.

The course is the shipped ``cnn`` plus ``lab2``, a test-only copy of its spec with another
name, title, deadlines and an upload budget of 2, in a temporary course folder.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grader.cli import main as grader_main
from grader.config import SandboxSettings, Settings
from grader.course import find_assignment, load_course, selected
from grader.errors import SpecError
from leaderboard.settings import WebSettings
from tests.factories import write_spec
from tests.leaderboard.factories import add_graded, late_invalid_zip, result_data, tiny_good_zip
from tests.leaderboard.helpers import (
    Roster,
    add_roster,
    build_stack,
    close_stack,
    sign_in,
    sign_in_staff,
    wait_done,
)

ROOT = Path(__file__).resolve().parents[2]
LAB2_TITLE = "Lab 2: the second challenge"


def make_course(folder: Path) -> Path:
    """``folder/cnn`` (the shipped lab) and ``folder/lab2`` (a copy whose spec has its own
    name, title, deadlines and a budget of 2 uploads)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "hidden_tests" / "cnn", folder / "cnn", dirs_exist_ok=True)
    text = (ROOT / "hidden_tests" / "cnn" / "assignment.toml").read_text()
    for old, new in (
        ('name = "cnn"', 'name = "lab2"'),
        ('title = "CNN challenge', f'title = "{LAB2_TITLE}" # was "CNN challenge'),
        ("upload_budget = 100", "upload_budget = 2"),
        ("opens = 2026-11-02T09:00:00Z", "opens = 2026-11-16T09:00:00Z"),
        ("bonus = 2026-12-14T23:59:00Z", "bonus = 2027-01-10T23:59:00Z"),
        ("final = 2026-12-21T23:59:00Z", "final = 2027-01-17T23:59:00Z"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    # The whole folder: a lab's spec may name files beside it (solution, layer cases).
    shutil.copytree(ROOT / "hidden_tests" / "cnn", folder / "lab2", dirs_exist_ok=True)
    (folder / "lab2" / "assignment.toml").write_text(text)
    return folder


def course_settings(course: Path, home: Path) -> Settings:
    return Settings(home=home, assignment_path=course / "cnn", course_dir=course,
                    sandbox=SandboxSettings(backend="bwrap", python=sys.executable))


@pytest.fixture
def course_app(tmp_path: Path, db_url: str) -> Any:
    from leaderboard import create_app

    course = make_course(tmp_path / "course")
    settings = WebSettings(
        grader=course_settings(course, tmp_path / "home"),
        instance_path=tmp_path / "instance",
        database_url=db_url,
        queue_name="course-test",
        upload_rate_count=1000,
    ).with_keys()
    app = create_app(settings)
    app.config.update(TESTING=True)
    yield app
    app.extensions["leaderboard"].engine.dispose()


@pytest.fixture
def course_roster(course_app: Any) -> Roster:
    return add_roster(course_app.extensions["leaderboard"].settings, 3)


def _upload(client: Any, url: str, body: bytes) -> Any:
    from tests.leaderboard.helpers import csrf_of

    return client.post(url, data={"file": (io.BytesIO(body), "sub.zip"), "csrf_token": csrf_of(client, url)},
                       content_type="multipart/form-data")


# --------------------------------------------------------------------------- the course rule


def test_course_lists_the_folders_and_names_the_known_ones_for_an_unknown(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course")
    loaded = load_course(course_settings(course, tmp_path / "home"))
    assert list(loaded.assignments) == ["cnn", "lab2"]  # by opening date
    assert loaded.default == "cnn"
    with pytest.raises(SpecError, match=r"no assignment named 'fmnist'.*known: cnn, lab2"):
        find_assignment("fmnist", course)
    # GRADER_ASSIGNMENT still picks the default (what commands use without --assignment).
    env = Settings.from_env({"GRADER_ASSIGNMENT": str(course / "lab2"), "GRADER_COURSE_DIR": str(course),
                             "GRADER_HOME": str(tmp_path / "home")})
    assert load_course(env).default == "lab2"
    assert selected(env).name == "lab2"
    assert selected(env, "cnn").name == "cnn"
    # A spec whose name is not its folder's is refused, naming both.
    write_spec(course / "lab3", (course / "lab2" / "assignment.toml").read_text())
    with pytest.raises(SpecError, match="name is 'lab2' but its folder is 'lab3'"):
        load_course(course_settings(course, tmp_path / "home"))


# --------------------------------------------------------------------------- pages


def test_course_page_lists_both_labs_with_their_deadlines(course_app: Any) -> None:
    client = course_app.test_client()
    for url in ("/", "/course"):
        html = client.get(url).get_data(as_text=True)
        assert "Labs" in html
        assert "CNN challenge: NumPy layers, MyNet" in html
        assert LAB2_TITLE in html
        for when in ("2026-11-02 09:00", "2026-12-14 23:59", "2026-12-21 23:59",
                     "2026-11-16 09:00", "2027-01-10 23:59", "2027-01-17 23:59"):
            assert when in html, when
        assert 'href="/a/lab2/leaderboard"' in html
        assert 'href="/leaderboard"' in html  # the default lab keeps its old URL
    lab2 = client.get("/a/lab2/leaderboard").get_data(as_text=True)
    assert LAB2_TITLE in lab2
    assert 'data-live-board="/a/lab2/api/leaderboard"' in lab2
    assert client.get("/a/nope/leaderboard").status_code == 404
    assert client.get("/a/nope/").status_code == 404
    assert client.get("/a/lab2/").headers["Location"] == "/a/lab2/leaderboard"
    assert client.get("/a/cnn/").headers["Location"] == "/leaderboard"
    assert LAB2_TITLE not in client.get("/a/cnn/leaderboard").get_data(as_text=True)


def test_one_assignment_keeps_the_board_at_the_root(app: Any, client: Any) -> None:
    """The single-assignment service looks as before: / is the board, no course links."""
    html = client.get("/").get_data(as_text=True)
    assert "data-live-board" in html
    assert ">Course<" not in html
    assert client.get("/course").status_code == 200


def test_boards_budgets_and_lists_are_per_assignment(course_app: Any, course_roster: Roster,
                                                    tmp_path: Path) -> None:
    svc = course_app.extensions["leaderboard"]
    cnn, lab2 = svc.lab("cnn"), svc.lab("lab2")
    a = add_graded(svc.settings, lab2.spec, student_id=course_roster.ids["s001"],
                   data=result_data(final=(0.9, 0.9, 0.9)), engine=svc.engine, tmp=tmp_path)
    client = course_app.test_client()
    lab2_board = client.get("/a/lab2/api/leaderboard").get_json()
    cnn_board = client.get("/api/leaderboard").get_json()
    assert a
    assert lab2_board["assignment"] == "lab2"
    assert [r["display_name"] for r in lab2_board["rows"]] == ["s-1"]
    assert cnn_board["assignment"] == "cnn"
    assert cnn_board["rows"] == []  # an upload to lab2 never shows on cnn's board

    sign_in(client, course_roster.secrets["s002"])
    page = client.get("/a/lab2/upload").get_data(as_text=True)
    assert "2</strong> of 2 attempts left" in page
    assert "http://localhost/a/lab2/api/submissions" in page  # the command-line upload, too
    for _ in range(2):
        assert _upload(client, "/a/lab2/upload", tiny_good_zip()).status_code == 302
    refused = _upload(client, "/a/lab2/upload", tiny_good_zip())
    assert refused.status_code >= 400
    assert "used all 2 attempts" in refused.get_data(as_text=True)
    # cnn's budget is untouched, and its list shows none of lab2's uploads.
    assert "100</strong> of 100 attempts left" in client.get("/upload").get_data(as_text=True)
    assert client.get("/api/submissions").get_json()["submissions"] == []
    mine = client.get("/a/lab2/api/submissions").get_json()
    assert len(mine["submissions"]) == 2
    assert mine["remaining_attempts"] == 0
    with svc.engine.connect() as conn:
        from sqlalchemy import text
        ids = {r[0] for r in conn.execute(text("select assignment_id from submission where student_id = :s"),
                                          {"s": course_roster.ids["s002"]})}
    assert ids == {lab2.id} != {cnn.id}

    staff = course_app.test_client()
    sign_in_staff(staff)
    assert "s002" in staff.get("/a/lab2/staff/submissions").get_data(as_text=True)
    assert "s002" not in staff.get("/staff/submissions").get_data(as_text=True)


def test_gradebook_has_a_row_per_student_and_the_points_of_every_lab(
    course_app: Any, course_roster: Roster, tmp_path: Path
) -> None:
    svc = course_app.extensions["leaderboard"]
    cnn, lab2 = svc.lab("cnn"), svc.lab("lab2")
    s1, s2 = course_roster.ids["s001"], course_roster.ids["s002"]
    for spec, student, data in (
        (cnn.spec, s1, result_data(final=(0.9, 0.9, 0.9))),  # 100 points
        (cnn.spec, s1, result_data(final=(0.5, 0.5, 0.5))),  # 70: the best one counts
        (lab2.spec, s1, result_data(final=(0.9, 0.9, 0.9), layer_failures=2)),  # 20 + 30 + 30
        (lab2.spec, s2, result_data(final=(0.5, 0.5, 0.5), mynet=0.5)),  # 40
    ):
        add_graded(svc.settings, spec, student_id=student, data=data, engine=svc.engine, tmp=tmp_path)
    client = course_app.test_client()
    assert client.get("/staff/gradebook.csv").status_code in (302, 401, 403)  # staff only
    sign_in_staff(client)
    response = client.get("/staff/gradebook.csv")
    assert response.mimetype == "text/csv"
    reader = csv.DictReader(io.StringIO(response.get_data(as_text=True)))
    assert reader.fieldnames == ["id", "name", "email", "cnn_points", "cnn_bonus",
                                 "lab2_points", "lab2_bonus", "total"]
    rows = {r["id"]: r for r in reader}
    assert set(rows) == {"s001", "s002", "s003"}
    points = {k: (r["cnn_points"], r["lab2_points"], r["total"]) for k, r in rows.items()}
    assert points == {"s001": ("100", "80", "180"), "s002": ("", "40", "40"), "s003": ("", "", "0")}
    # The frozen board's bonus is the lab's own rule and counts in the total.
    runner = course_app.test_cli_runner()
    frozen = runner.invoke(args=["freeze-board", "--assignment", "lab2"])
    assert "board frozen: lab2" in frozen.output, frozen.output
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(
        client.get("/staff/gradebook.csv").get_data(as_text=True)))}
    assert rows["s001"]["lab2_bonus"] == "0"  # failed a layer test: no bonus place (the rule)
    assert rows["s001"]["cnn_bonus"] == "0"  # cnn is not frozen
    # The same CSVs from the command line.
    served = client.get("/staff/gradebook.csv").get_data(as_text=True)
    assert runner.invoke(args=["gradebook"]).output.splitlines() == served.splitlines()
    lab2_rows = {r["id"]: r for r in csv.DictReader(io.StringIO(
        runner.invoke(args=["export-grades", "--assignment", "lab2"]).output))}
    assert (lab2_rows["s001"]["total"], lab2_rows["s002"]["total"]) == ("80", "40")
    for command in ("freeze-board", "export-grades"):
        unknown = runner.invoke(args=[command, "--assignment", "nope"])
        assert unknown.exit_code != 0
        assert "no assignment named 'nope'" in unknown.output
        assert "cnn, lab2" in unknown.output


# --------------------------------------------------------------------------- command lines


@pytest.mark.parametrize(
    "args",
    [
        ["grade", "x.zip", "--assignment", "nope"],
        ["batch", ".", "--csv", "out.csv", "--assignment", "nope"],
        ["export", "store", "-o", "out", "--assignment", "nope"],
        ["similarity", "store", "--assignment", "nope"],
        ["verify-tests", "--assignment", "nope"],
        ["render-kit", "--check", "--assignment", "nope"],
    ],
)
def test_assignment_option_names_the_known_ones_for_an_unknown(tmp_path: Path, args: list[str]) -> None:
    course = make_course(tmp_path / "course")
    res = CliRunner().invoke(grader_main, args, obj={"settings": course_settings(course, tmp_path)})
    assert res.exit_code != 0
    assert "no assignment named 'nope'" in res.output, res.output
    assert "known: cnn, lab2" in res.output
    assert "Traceback" not in res.output


def test_grade_takes_an_assignment_by_name(tmp_path: Path, grader_home: Path) -> None:
    """`grader grade --assignment lab2` grades under lab2's spec (and its hidden data)."""
    course = make_course(tmp_path / "course")
    home = tmp_path / "home"
    shutil.copytree(grader_home / "hidden" / "cnn", home / "hidden" / "lab2")
    archive = tmp_path / "good.zip"
    archive.write_bytes(tiny_good_zip())
    out = tmp_path / "result.json"
    res = CliRunner().invoke(grader_main, ["grade", str(archive), "--assignment", "lab2", "--json", str(out)],
                             obj={"settings": course_settings(course, home)})
    assert res.exit_code == 0, res.output
    import json

    assert json.loads(out.read_text())["status"] == "graded"


# --------------------------------------------------------------------------- the worker


def test_worker_grades_submissions_of_both_assignments(
    tmp_path: Path, grader_home: Path, db_url: str
) -> None:
    course = make_course(tmp_path / "course")
    home = tmp_path / "home"
    for name in ("cnn", "lab2"):
        shutil.copytree(grader_home / "hidden" / "cnn", home / "hidden" / name)
    stack = build_stack(tmp_path / "stack", grader_home=home, db_url=db_url,
                        grader=course_settings(course, home))
    try:
        client = stack.app.test_client()
        ids = {}
        for prefix, student in (("", "s001"), ("/a/lab2", "s002")):
            secret = stack.roster.secrets[student]
            res = client.post(f"{prefix}/api/submissions",
                              data={"file": (io.BytesIO(tiny_good_zip()), "s.zip")},
                              headers={"Authorization": f"Bearer {secret}"},
                              content_type="multipart/form-data")
            assert res.status_code == 202, res.get_data(as_text=True)
            assert res.headers["Location"] == f"{prefix}/api/submissions/{res.get_json()['id']}"
            ids[prefix or "cnn"] = res.get_json()["id"]
        bad = client.post("/a/lab2/api/submissions", data={"file": (io.BytesIO(late_invalid_zip()), "s.zip")},
                          headers={"Authorization": f"Bearer {secret}"}, content_type="multipart/form-data")
        assert bad.status_code == 202
        done = wait_done(stack, [*ids.values(), bad.get_json()["id"]], timeout_s=240)
        assert done[ids["cnn"]] == "graded"
        assert done[ids["/a/lab2"]] == "graded"
        assert done[bad.get_json()["id"]] == "invalid"
        cnn_rows = client.get("/api/leaderboard").get_json()["rows"]
        lab2_rows = client.get("/a/lab2/api/leaderboard").get_json()["rows"]
        assert [r["display_name"] for r in cnn_rows] == ["s-1"]
        assert [r["display_name"] for r in lab2_rows] == ["s-2"]
        one = client.get(f"/a/lab2/api/submissions/{ids['/a/lab2']}",
                         headers={"Authorization": f"Bearer {secret}"}).get_json()
        assert one["status"] == "graded"
    finally:
        close_stack(stack)


# --------------------------------------------------------------------------- in the browser


@pytest.mark.browser
def test_a_student_finds_lab2_on_the_course_page_and_uploads_there(
    course_app: Any, course_roster: Roster, browser: Any
) -> None:
    from tests.leaderboard.helpers import SCREENSHOTS, LiveServer

    server = LiveServer(course_app)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        assert page.locator("table.labs tbody tr").count() == 2
        assert "2027-01-17 23:59" in page.inner_text("tr[data-lab=lab2] [data-deadline=final]")
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "course.png"), full_page=True)
        page.click(f"text={LAB2_TITLE}")
        page.wait_for_url(re.compile(r"/a/lab2/leaderboard$"))
        assert LAB2_TITLE in page.inner_text("h1")

        page.goto(server.url + "/a/lab2/upload")
        page.fill("#secret", course_roster.secrets["s001"])
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/a/lab2/upload$"))
        assert "2 of 2 attempts left" in page.inner_text(".attempts")
        page.set_input_files("input[type=file]", files=[
            {"name": "lab2.zip", "mimeType": "application/zip", "buffer": tiny_good_zip()}])
        page.click("form.upload button[type=submit]")
        page.wait_for_url(re.compile(r"/a/lab2/submissions$"))
        assert "lab2.zip" in page.inner_text("table.list")
        assert "1 of 2 attempts left" in page.inner_text("main")
        page.goto(server.url + "/submissions")  # cnn's list: none of lab2's uploads
        assert "lab2.zip" not in page.inner_text("main")
        assert errors == []
    finally:
        server.stop()
