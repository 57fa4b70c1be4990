"""The demo's web part: graded samples land on the board once, with working logins."""

from __future__ import annotations

from pathlib import Path

from grader.result import GradeResult
from leaderboard import create_app
from leaderboard.demo import board_rows, prepare_demo
from tests.leaderboard.factories import result_data, tiny_zip
from tests.leaderboard.helpers import csrf_of, grader_settings, sign_in


def test_prepare_demo_puts_the_samples_on_the_board(tmp_path: Path) -> None:
    settings = grader_settings(tmp_path / "home")
    graded = {}
    for name, final in (("good", (0.9, 0.9, 0.9)), ("mediocre", (0.6, 0.6, 0.6))):
        archive = tmp_path / f"{name}.zip"
        archive.write_bytes(tiny_zip())
        graded[name] = (archive, GradeResult.from_dict(result_data(final=final)))
    graded["broken"] = (tmp_path / "broken.zip", GradeResult.from_dict(result_data(status="crashed")))
    graded["broken"][0].write_bytes(tiny_zip())

    web, first_secret, _ = prepare_demo(settings, graded)
    assert board_rows(web) == ["sample good", "sample mediocre"]
    web, secret, password = prepare_demo(settings, graded)  # a second run adds nothing twice
    assert secret == first_secret  # the student's secret stays; the password is new
    assert board_rows(web) == ["sample good", "sample mediocre"]

    app = create_app(web)
    client = app.test_client()
    sign_in(client, secret)
    staff = app.test_client()
    token = csrf_of(staff, "/staff/login")
    ok = staff.post(
        "/staff/login",
        data={"username": "instructor", "password": password, "csrf_token": token},
    )
    assert ok.status_code == 302
    app.extensions["leaderboard"].engine.dispose()
