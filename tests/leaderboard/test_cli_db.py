"""The ``flask`` commands and the Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from leaderboard.db import downgrade, make_engine, upgrade
from leaderboard.settings import WebSettings
from tests.leaderboard.helpers import ROOT, csrf_of, sign_in

ROSTER = """id,name,email,display_name
u1,Ada Lovelace,ada@uni.example,
u2,Alan Turing,alan@uni.example,Enigma
"""


def test_migrations_match_the_models_and_go_down_and_up(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], diff  # the migration makes exactly the tables the models describe
    downgrade(db_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(db_url)
    assert {"submission", "result", "part_result", "frozen_row"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_roster_secrets_and_instructor_commands(
    runner: Any, app: Any, web_settings: WebSettings, tmp_path: Path
) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["import-roster", str(roster)])
    assert result.exit_code == 0, result.output
    assert "2 students added" in result.output
    again = runner.invoke(args=["import-roster", str(roster)])
    assert "0 students added, 2 updated" in again.output

    exported = runner.invoke(args=["export-secrets"])
    assert exported.exit_code == 0, exported.output
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(exported.output))}
    assert set(rows) == {"u1", "u2"}
    assert rows["u1"]["secret"] != rows["u2"]["secret"]
    out = tmp_path / "secrets.csv"
    runner.invoke(args=["export-secrets", "--out", str(out)])
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert rows["u1"]["secret"] in out.read_text()

    # The exported secret signs the student in; rotating it makes the old one stop working.
    client = app.test_client()
    sign_in(client, rows["u1"]["secret"])
    rotated = runner.invoke(args=["rotate-secret", "u1"])
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.output.strip()
    fresh = app.test_client()
    token = csrf_of(fresh)
    old = fresh.post("/login", data={"secret": rows["u1"]["secret"], "csrf_token": token})
    assert old.status_code == 401
    sign_in(fresh, new_secret)

    made = runner.invoke(args=["create-instructor", "prof2", "--password", "longenough"])
    assert made.exit_code == 0, made.output
    short = runner.invoke(args=["create-instructor", "prof3", "--password", "short"])
    assert short.exit_code != 0
    assert "at least 8" in short.output
    staff = app.test_client()
    token = csrf_of(staff, "/staff/login")
    wrong = staff.post(
        "/staff/login", data={"username": "prof2", "password": "wrong!!!!", "csrf_token": token}
    )
    assert wrong.status_code == 401
    ok = staff.post("/staff/login", data={"username": "prof2", "password": "longenough", "csrf_token": token})
    assert ok.status_code == 302
    frozen = runner.invoke(args=["freeze-board"])
    assert "board frozen" in frozen.output


def test_roster_errors_name_the_line(runner: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,email\nu1,A,a@x\nu1,B,b@x\n")
    result = runner.invoke(args=["import-roster", str(bad)])
    assert result.exit_code != 0
    assert "line 3" in result.output
    assert "appears twice" in result.output
    missing = tmp_path / "missing.csv"
    missing.write_text("id,name\nu1,A\n")
    result = runner.invoke(args=["import-roster", str(missing)])
    assert "missing: email" in result.output


def test_flask_cli_runs_with_settings_from_the_environment(tmp_path: Path) -> None:
    """The real ``flask`` executable, as an operator runs it (SQLite in the instance folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADERBOARD_", "GRADER_"))}
    env["LEADERBOARD_INSTANCE"] = str(tmp_path / "instance")
    flask = str(ROOT / ".venv" / "bin" / "flask")
    done = subprocess.run(
        [flask, "--app", "leaderboard", "init-db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "instance" / "leaderboard.db").is_file()
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o777 == 0o600
