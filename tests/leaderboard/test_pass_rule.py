"""One pass line and one bonus rule on every surface: the judge's result, the board page and
its JSON, the student's page and API, the batch CSV, the Gradescope export, the staff CSV.

The results come from the real judge (predictions written as the sandbox writes them), are
recorded through the real crud path and read back through the real pages."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.batch.csvout import Entry, Row, write_csv
from grader.config import Assignment
from grader.export import gradescope
from grader.judge import combine
from grader.parts import PartRun
from grader.parts.classifier import judge_splits
from grader.parts.common import public_mask
from grader.result import GradeResult, PartResult, Status
from tests.leaderboard.factories import add_graded, result_data
from tests.leaderboard.helpers import Roster, csrf_of, sign_in, sign_in_staff

N = 100  # images per hidden split; half of them are the public part


def _predictions(out: Path, split: str, labels: np.ndarray, mask: np.ndarray, right: tuple[int, int],
                 num_classes: int) -> None:
    """Predictions right on the first ``right[0]`` public and ``right[1]`` private images."""
    wrong = (labels + 1) % num_classes
    got = wrong.copy()
    for part, k in zip((np.flatnonzero(mask), np.flatnonzero(~mask)), right, strict=True):
        got[part[:k]] = labels[part[:k]]
    np.save(out / f"{split}.npy", got.astype(np.int64), allow_pickle=False)


def judged(
    spec: Assignment, tmp_path: Path, *, finetune: dict[str, int], mynet: tuple[int, int]
) -> GradeResult:
    """A whole result from the real judge; ``finetune``: right answers per split on each half."""
    rng = np.random.default_rng(0)
    parts = [PartResult(name="numpy_nn", status=Status.GRADED, score=40.0, max_score=40.0, passed=True,
                        message="All layer tests passed.")]
    for name, splits, classes in (("mynet", {"test": mynet}, 10),
                                  ("finetune", {s: (k, k) for s, k in finetune.items()}, 2)):
        part = spec.part(name)
        out = tmp_path / name
        out.mkdir()
        truth, public = {}, {}
        for split, right in splits.items():
            truth[split] = rng.integers(0, classes, size=N)
            public[split] = public_mask(N, spec.public_fraction, spec.seed, f"{part.dataset}/{split}")
            _predictions(out, split, truth[split], public[split], right, classes)
        run = PartRun(name, Status.GRADED, out_dir=out)
        parts.append(judge_splits(part, run, truth, public, classes, name))
    return combine(spec, parts, submission_sha256="0" * 64, environment={})


# Right answers per split on each half (of 50): ORIG 66 %, AUG 84 %, NEW 52 % make a weighted
# 0.6·0.66 + 0.3·0.84 + 0.1·0.52 = 70 % exactly, which floats compute as 0.7000000000000001.
ON_THE_LINE = {"finetune": {"ORIG": 33, "AUG": 42, "NEW": 26}, "mynet": (38, 37)}  # MyNet: 75 %
ABOVE = {"finetune": {"ORIG": 34, "AUG": 42, "NEW": 26}, "mynet": (38, 38)}  # 71.2 %, 76 %


@pytest.mark.parametrize(
    ("case", "passed"), [(ON_THE_LINE, False), (ABOVE, True)], ids=["on-the-line", "above"]
)
def test_a_result_on_the_pass_line_is_not_passed_anywhere(
    app: Any, client: Any, roster: Roster, tmp_path: Path, case: dict[str, Any], passed: bool
) -> None:
    svc = app.extensions["leaderboard"]
    spec = svc.spec
    result = judged(spec, tmp_path, finetune=case["finetune"], mynet=case["mynet"])
    finetune, mynet = result.part("finetune"), result.part("mynet")
    assert finetune is not None
    assert mynet is not None
    assert mynet.metrics["accuracy"] == (0.75 if not passed else 0.76)
    if not passed:  # the case really sits on the line, not a hair below it
        assert finetune.metrics["weighted"] > 0.7
        assert finetune.public_metrics["weighted"] > 0.7
        assert finetune.private_metrics["weighted"] > 0.7
    verdict = "passed" if passed else "not passed"

    # The judge.
    assert (finetune.passed, mynet.passed, result.passed) == (passed, passed, passed)
    assert (finetune.score, mynet.score) == ((30.0, 30.0) if passed else (0.0, 0.0))
    assert f"; {verdict} (pass above 70.0%)" in finetune.message
    assert f"; {verdict} (pass above 75.0%)" in mynet.message

    # The board page and its JSON.
    sub_id = add_graded(svc.settings, spec, student_id=roster.ids["s001"], data=result.to_dict(),
                        engine=svc.engine, tmp=tmp_path)
    row = client.get("/api/leaderboard").get_json()["rows"][0]
    assert (row["display_name"], row["passed"]) == ("s-1", passed)
    html = client.get("/").get_data(as_text=True)
    line, name = html.find('class="pass-line"'), html.find(">s-1<")
    assert name > 0
    assert (0 < line < name) is not passed  # the pass line is drawn above a row that is not passed
    first = re.search(r'<tr class="([^"]*)">\s*<td class="rank">1\b', html)
    assert first is not None
    assert ("below" in first.group(1).split()) is not passed

    # The student's page (charts) and API.
    sign_in(client, roster.secrets["s001"])
    page = client.get(f"/submissions/{sub_id}").get_data(as_text=True)
    bars = re.findall(r'class="bar (pass|fail)"', page)  # MyNet; ORIG, AUG, NEW, weighted
    assert bars == ["pass" if passed else "fail", "fail", "pass", "fail", "pass" if passed else "fail"]
    api = client.get(f"/api/submissions/{sub_id}").get_json()["result"]
    assert api["passed"] is passed
    assert {p["name"]: p["passed"] for p in api["parts"]} == {"numpy_nn": True, "mynet": passed,
                                                              "finetune": passed}

    # The batch CSV and the Gradescope export.
    path = tmp_path / "grades.csv"
    write_csv(path, [Row(Entry("s001", "s001.zip", 0.0, "0" * 64, result), "")], spec)
    batch = next(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    want = "pass" if passed else "fail"
    assert (batch["finetune_passed"], batch["mynet_passed"]) == (want, want)
    assert batch["finetune_points"] == ("30" if passed else "0")
    tests = {t["name"]: t for t in gradescope(result, spec)["tests"]}
    for title in (spec.part("finetune").title, spec.part("mynet").title):
        assert tests[title]["status"] == ("passed" if passed else "failed")

    # The staff CSV.
    staff = app.test_client()
    sign_in_staff(staff)
    text = staff.get("/staff/export.csv").get_data(as_text=True)
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(text))}
    want = "yes" if passed else "no"
    assert (rows["s001"]["finetune_passed"], rows["s001"]["mynet_passed"], rows["s001"]["passed"]) == (
        want, want, want)


def test_the_bonus_is_the_same_on_the_board_the_freeze_and_both_csvs(
    app: Any, client: Any, web_settings: Any, tmp_path: Path
) -> None:
    from tests.leaderboard.helpers import add_roster

    roster = add_roster(web_settings, 5)
    svc = app.extensions["leaderboard"]
    results = {  # one upload each, best first
        "s001": result_data(final=(0.95, 0.95, 0.95), layer_failures=1),  # fails NumPy
        "s002": result_data(final=(0.90, 0.90, 0.90)),
        "s003": result_data(final=(0.85, 0.85, 0.85), mynet=0.75),  # MyNet exactly on its line
        "s004": result_data(final=(0.80, 0.80, 0.80)),
        "s005": result_data(final=(0.65, 0.65, 0.65)),  # below the line
    }
    for who, data in results.items():
        add_graded(svc.settings, svc.spec, student_id=roster.ids[who], data=data, engine=svc.engine,
                   tmp=tmp_path)
    expected = {"s-1": 0, "s-2": 6, "s-3": 0, "s-4": 5, "s-5": 0}

    board = client.get("/api/leaderboard").get_json()
    assert {r["display_name"]: r["bonus"] for r in board["rows"]} == expected
    assert [r["rank"] for r in board["rows"]] == [1, 2, 3, 4, 5]
    assert board["bonus_requires_all_passed"] is True
    assert "all_passed" not in board["rows"][0]  # a student's grade is not public
    html = client.get("/").get_data(as_text=True)
    top = html[html.find('<td class="rank">1'):html.find(">s-1<")]
    assert "+6" not in top
    assert "no bonus: not every part passed" in top
    assert re.search(r'<td class="rank">2 <span class="badge"[^>]*>\+6</span>', html)
    assert "for students who pass every part" in " ".join(html.split())

    # The batch CSV of the same results.
    path = tmp_path / "grades.csv"
    entries = [Row(Entry(who, f"{who}.zip", float(i), f"{i:064d}", GradeResult.from_dict(data)), "")
               for i, (who, data) in enumerate(results.items())]
    write_csv(path, entries, svc.spec)
    batch = {r["id"]: r for r in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))}
    assert {f"s-{int(k[1:])}": int(r["bonus"]) for k, r in batch.items()} == expected
    assert [batch[k]["rank"] for k in sorted(batch)] == ["1", "2", "3", "4", "5"]

    # The freeze, and the staff CSV after it.
    staff = app.test_client()
    sign_in_staff(staff)
    assert staff.post("/staff/freeze", data={"csrf_token": csrf_of(staff, "/staff/"),
                                             "confirm": "freeze"}).status_code == 302
    frozen = client.get("/api/leaderboard").get_json()
    assert frozen["frozen"] is True
    assert {r["display_name"]: r["bonus"] for r in frozen["rows"]} == expected
    assert frozen["rows"][0]["bonus_withheld"] is True
    rows = csv.DictReader(io.StringIO(staff.get("/staff/export.csv").get_data(as_text=True)))
    assert {f"s-{int(r['id'][1:])}": int(r["bonus"]) for r in rows} == expected
