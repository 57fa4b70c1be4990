"""The second lab (hidden_tests/fmnist) end to end: its hidden sets built from its spec, its
reference solution passing and its typical wrong solution failing for the lab's reason, through
the command line, batch grading, a web upload, its board and the course gradebook."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grader.cli import main as grader_main
from grader.config import HIDDEN_TESTS_DIR, SandboxSettings, Settings
from grader.course import load_course
from grader.demo import make_samples
from tests.leaderboard.helpers import build_stack, close_stack, sign_in_staff, wait_done

pytestmark = pytest.mark.slow


def course_settings(home: Path) -> Settings:
    """The shipped course: cnn (the default) and fmnist."""
    return Settings(home=home, course_dir=HIDDEN_TESTS_DIR, assignment_path=HIDDEN_TESTS_DIR / "cnn",
                    sandbox=SandboxSettings(backend="bwrap", python=sys.executable))


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory, grader_home: Path) -> tuple[Settings, dict[str, Path]]:
    """The lab's hidden sets, built by `grader build-tests fmnist` as its spec declares, and
    its demo samples (good, upright_only, unfinished) as zips. The course's default lab
    (cnn) has its data too, as a worker wants at start."""
    home = tmp_path_factory.mktemp("fmnist-home")
    shutil.copytree(grader_home / "hidden" / "cnn", home / "hidden" / "cnn")
    settings = course_settings(home)
    res = CliRunner().invoke(grader_main, ["build-tests", "fmnist"], obj={"settings": settings})
    assert res.exit_code == 0, res.output
    assert "TEST 10000, ROTATED 10000" in res.output, res.output
    spec = load_course(settings).get("fmnist")
    return settings, make_samples(settings, spec, echo=lambda _line: None)


def test_the_course_has_both_labs_and_fmnist_declares_its_own_splits() -> None:
    course = load_course(course_settings(Path("/nonexistent")))
    assert [a.name for a in course] == ["cnn", "fmnist"]
    net = course.get("fmnist").part("net")
    assert (net.kind, dict(net.weights), net.threshold) == ("classifier", {"TEST": 0.5, "ROTATED": 0.5}, 0.85)
    rotated = course.get("fmnist").datasets["fashion_mnist"].splits["ROTATED"]
    assert (rotated.source.transform, rotated.source.of) == ("rotate", "TEST")


def test_the_reference_passes_and_upright_training_fails_on_rotated_images(fmnist, tmp_path) -> None:
    settings, samples = fmnist
    out = tmp_path / "results.json"
    res = CliRunner().invoke(grader_main, [
        "grade", str(samples["good"]), str(samples["upright_only"]), "--assignment", "fmnist",
        "--json", str(out)], obj={"settings": settings})
    assert res.exit_code == 0, res.output
    good, upright = (json.loads(out.read_text()))
    [net] = good["parts"]
    assert good["passed"] is True
    assert good["score"] == 100
    assert net["metrics"]["weighted"] > 0.85
    assert net["metrics"]["TEST"] > 0.88
    assert net["metrics"]["ROTATED"] > 0.8
    assert 0.8 < net["metrics"]["weighted_macro_f1"] < 1
    [wrong] = upright["parts"]
    assert upright["passed"] is False
    assert upright["score"] == 0
    # The lab's reason: fine on upright images, lost on rotated ones.
    assert wrong["metrics"]["TEST"] > 0.88
    assert wrong["metrics"]["ROTATED"] < wrong["metrics"]["TEST"] - 0.1
    assert wrong["metrics"]["weighted"] < 0.85
    assert "ROTATED" in wrong["message"]
    assert "not passed (pass above 85.0%)" in wrong["message"]
    assert "ROTATED" in wrong["diagnostics"]["gap"]["reading"]


def test_batch_grades_the_lab_into_its_own_columns(fmnist, tmp_path) -> None:
    settings, samples = fmnist
    folder = tmp_path / "zips"
    folder.mkdir()
    for name in ("good", "unfinished"):
        shutil.copy(samples[name], folder / f"{name}.zip")
    out = tmp_path / "grades.csv"
    res = CliRunner().invoke(grader_main, [
        "batch", str(folder), "--csv", str(out), "--assignment", "fmnist", "--jobs", "1"],
        obj={"settings": settings})
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert {"net_TEST", "net_ROTATED", "net_weighted", "net_points", "net_passed",
            "net_ROTATED_macro_f1"} <= set(
        next(iter(rows.values())))
    assert (rows["good"]["net_passed"], rows["good"]["total"]) == ("pass", "100")
    assert float(rows["good"]["net_weighted"]) > 0.85
    assert (rows["unfinished"]["net_passed"], rows["unfinished"]["total"]) == ("fail", "0")
    assert "NotImplementedError" in rows["unfinished"]["message"]


def test_a_web_upload_is_graded_onto_the_labs_board_and_the_gradebook(fmnist, tmp_path) -> None:
    settings, samples = fmnist
    stack = build_stack(tmp_path / "stack", grader_home=settings.home,
                        db_url=f"sqlite:///{tmp_path / 'lb.db'}", grader=settings,
                        enforce_deadlines=False)  # the lab opens on 2026-12-07
    try:
        client: Any = stack.app.test_client()
        secret = stack.roster.secrets["s001"]
        res = client.post("/a/fmnist/api/submissions",
                          data={"file": (io.BytesIO(samples["good"].read_bytes()), "submission.zip")},
                          headers={"Authorization": f"Bearer {secret}"},
                          content_type="multipart/form-data")
        assert res.status_code == 202, res.get_data(as_text=True)
        sub_id = res.get_json()["id"]
        assert wait_done(stack, [sub_id], timeout_s=240)[sub_id] == "graded"
        board = client.get("/a/fmnist/api/leaderboard").get_json()
        assert [r["display_name"] for r in board["rows"]] == ["s-1"]
        # The spec's metrics (accuracy and macro-F1 per split), the ranked one last.
        assert board["columns"] == ["TEST", "ROTATED", "TEST_macro_f1", "ROTATED_macro_f1",
                                    "weighted_macro_f1", "weighted"]
        assert "ROTATED macro-F1" in board["labels"]
        assert client.get("/api/leaderboard").get_json()["rows"] == []  # cnn's board: nobody
        sign_in_staff(client)
        gradebook = list(csv.DictReader(io.StringIO(
            client.get("/staff/gradebook.csv").get_data(as_text=True))))
        s1 = next(r for r in gradebook if r["id"] == "s001")
        assert (s1["fmnist_points"], s1["cnn_points"], s1["total"]) == ("100", "", "100")
    finally:
        close_stack(stack)
