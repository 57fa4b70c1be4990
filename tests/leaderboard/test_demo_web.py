"""The demo's web part: graded samples land on the board once, with working logins."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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

    web, first_secret, _ = prepare_demo(settings, {"cnn": graded})
    assert board_rows(web) == ["sample good", "sample mediocre"]
    web, secret, password = prepare_demo(settings, {"cnn": graded})  # a second run adds nothing twice
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


def _seed_demo_home(home: Path, grader_home: Path, checkpoints: dict[str, Path]) -> None:
    """A home with the session's hidden data and the demo's checkpoint cache filled (no training)."""
    shutil.copytree(grader_home / "hidden", home / "hidden")
    cache = home / "demo" / "checkpoints"
    cache.mkdir(parents=True)
    classes = len(json.loads((home / "hidden" / "cnn" / "manifest.json").read_text())
                  ["datasets"]["dogs_cats"]["classes"])
    for name in ("mynet-good.pt", "mynet-weak-1000.pt"):
        shutil.copy(checkpoints["model.pt"], cache / name)
    for name in (f"finetune-good-{classes}.pt", f"finetune-weak-400-{classes}.pt"):
        shutil.copy(checkpoints["finetuned.pt"], cache / name)


@pytest.mark.slow
def test_grader_demo_serves_the_graded_samples(tmp_path: Path, grader_home: Path,
                                               checkpoints: dict[str, Path]) -> None:
    """The README's demo command: grades the samples, then the board and a worker run on 127.0.0.1."""
    home = tmp_path / "home"
    _seed_demo_home(home, grader_home, checkpoints)
    env = dict(os.environ, GRADER_HOME=str(home))
    grader = Path(sys.executable).parent / "grader"
    proc = subprocess.Popen([str(grader), "demo", "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        url = None
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"leaderboard is at (http://127\.0\.0\.1:\d+)/", line)
            url = found.group(1) if found else None
        assert url is not None, "".join(lines)
        for _ in range(3):  # the two sign-in lines follow the address
            lines.append(proc.stdout.readline())
        secret = re.search(r"secret: (\S+)", "".join(lines))
        password = re.search(r"password: (\S+)", "".join(lines))
        assert secret is not None
        assert password is not None
        with urllib.request.urlopen(f"{url}/api/leaderboard", timeout=10) as response:
            board = json.load(response)
        names = [row["display_name"] for row in board["rows"]]
        assert names[0] == "sample good", board
        assert "sample broken" not in names
        assert "[1/3] grading good" in "".join(lines)
        # The second lab's samples are on its own board: the reference first; the upright-only
        # model is graded but not passed; the unfinished kit crashed and is not on the board.
        with urllib.request.urlopen(f"{url}/a/fmnist/api/leaderboard", timeout=10) as response:
            fmnist = json.load(response)
        assert [r["display_name"] for r in fmnist["rows"]] == [
            "sample fmnist good", "sample fmnist upright_only"], fmnist
        assert [r["passed"] for r in fmnist["rows"]] == [True, False]
        assert "== fmnist:" in "".join(lines)
        with urllib.request.urlopen(f"{url}/login", timeout=10) as response:
            assert response.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    worker_log = (home / "demo-web" / "worker.log").read_text()
    assert "Traceback" not in worker_log, worker_log
