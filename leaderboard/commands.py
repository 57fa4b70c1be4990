"""``flask`` commands for the database, accounts and the board (``flask --app leaderboard …``)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, TextIO

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlmodel import select

from grader.errors import SpecError
from leaderboard import accounts
from leaderboard.db import session_scope, upgrade
from leaderboard.gradebook import gradebook_csv
from leaderboard.models import AssignmentRow, Student
from leaderboard.ranking import ensure_assignment, freeze_board
from leaderboard.reports import grades_csv


def _svc() -> Any:
    return current_app.extensions["leaderboard"]


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database to the newest schema (Alembic migrations)."""
    svc = _svc()
    upgrade(svc.settings.db_url)
    with session_scope(svc.engine) as session:
        for spec in svc.course:
            ensure_assignment(session, spec=spec)
    click.echo(f"database ready: {svc.engine.url.render_as_string(hide_password=True)}")


@click.command("create-instructor")
@with_appcontext
@click.argument("username")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="At least 8 characters (asked for when left out).",
)
def create_instructor(username: str, password: str) -> None:
    """Create an instructor account (or set a new password for one)."""
    try:
        with session_scope(_svc().engine) as session:
            accounts.create_instructor(session, username=username, password=password)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"instructor {username!r} can sign in at /staff/login")


@click.command("import-roster")
@with_appcontext
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_roster(csv_file: Path) -> None:
    """Add the students of a CSV roster (id,name,email[,display_name]); known ids are updated."""
    svc = _svc()
    try:
        entries = accounts.parse_roster(csv_file.read_text(encoding="utf-8-sig"))
        with session_scope(svc.engine) as session:
            added, updated = accounts.import_roster(
                session, entries=entries, roster_key=svc.settings.roster_key
            )
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{added} students added, {updated} updated; hand out secrets with export-secrets")


@click.command("export-secrets")
@with_appcontext
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a CSV file (mode 600) instead of printing.",
)
def export_secrets(out_path: Path | None) -> None:
    """Print (or write) every student's sign-in secret as CSV: id,name,email,secret."""
    svc = _svc()
    with session_scope(svc.engine) as session:
        rows = accounts.export_secrets(session, roster_key=svc.settings.roster_key)
    if out_path is not None:
        out_path.touch(mode=0o600)
        out_path.chmod(0o600)
        handle: TextIO = out_path.open("w", newline="", encoding="utf-8")
    else:
        handle = sys.stdout
    writer = csv.DictWriter(handle, fieldnames=["id", "name", "email", "secret"])
    writer.writeheader()
    writer.writerows(rows)
    if out_path is not None:
        handle.close()
        click.echo(f"{len(rows)} secrets written to {out_path}", err=True)


@click.command("rotate-secret")
@with_appcontext
@click.argument("roster_id")
def rotate_secret(roster_id: str) -> None:
    """Give one student a new secret (the old one stops working) and print it."""
    svc = _svc()
    with session_scope(svc.engine) as session:
        student = session.exec(select(Student).where(Student.roster_id == roster_id)).first()
        if student is None:
            raise click.ClickException(f"no student with id {roster_id!r}")
        secret = accounts.rotate_secret(session, student=student, roster_key=svc.settings.roster_key)
    click.echo(secret)


@click.command("freeze-board")
@with_appcontext
@click.option("--assignment", "name", metavar="NAME",
              help="The assignment whose board to freeze; default: the service's default one.")
def freeze_board_command(name: str | None) -> None:
    """Freeze the leaderboard now: store the final (private) ranking and the bonus points."""
    svc = _svc()
    try:
        spec = svc.course.get(name)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    with session_scope(svc.engine) as session:
        ensured = ensure_assignment(session, spec=spec)
        row = session.get(AssignmentRow, ensured.id)
        assert row is not None
        done = freeze_board(session, spec=spec, assignment=row, by="flask freeze-board")
    click.echo(f"board frozen: {spec.name}" if done else f"the board was already frozen: {spec.name}")


def _write(text: str, out_path: Path | None, what: str) -> None:
    if out_path is None:
        click.echo(text, nl=False)
        return
    out_path.write_text(text, encoding="utf-8")
    click.echo(f"{what} written to {out_path}", err=True)


_out = click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                    help="Write the CSV here instead of printing it.")


@click.command("export-grades")
@with_appcontext
@click.option("--assignment", "name", metavar="NAME",
              help="The assignment; default: the service's default one.")
@_out
def export_grades(name: str | None, out_path: Path | None) -> None:
    """One assignment's grades CSV (as the staff page's "Export grades")."""
    svc = _svc()
    try:
        lab = svc.lab(name)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    with session_scope(svc.engine) as session:
        text = grades_csv(session, spec=lab.spec, assignment_id=lab.id)
    _write(text, out_path, f"grades of {lab.name}")


@click.command("gradebook")
@with_appcontext
@_out
def gradebook(out_path: Path | None) -> None:
    """The course gradebook CSV: one row per student, the points of every assignment, a total."""
    svc = _svc()
    assignments = {lab.name: lab.id for lab in svc.labs()}
    with session_scope(svc.engine) as session:
        text = gradebook_csv(session, assignments=assignments)
    _write(text, out_path, "gradebook")


def init_app(app: Flask) -> None:
    for command in (
        init_db,
        create_instructor,
        import_roster,
        export_secrets,
        rotate_secret,
        freeze_board_command,
        export_grades,
        gradebook,
    ):
        app.cli.add_command(command)
    app.cli.add_command(init_db, name="upgrade")
