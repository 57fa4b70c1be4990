"""The demo's web part: put graded demo submissions on a board, start a worker, serve.

``grader demo`` grades its sample zips, then calls ``serve_demo`` with them: the web app
and a grading worker run on 127.0.0.1 (SQLite, Huey on SQLite, all under
``<home>/demo-web``), the samples are already on the board, and the address, a student
secret and an instructor password are printed.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from grader.config import Assignment, Settings
from grader.course import load_course
from grader.result import GradeResult
from leaderboard.accounts import (
    RosterEntry,
    create_instructor,
    import_roster,
    student_secret,
)
from leaderboard.claims import claim, record_result
from leaderboard.db import make_engine, session_scope, upgrade
from leaderboard.models import AssignmentRow, Student, Submission
from leaderboard.ranking import ensure_assignment
from leaderboard.settings import WebSettings
from leaderboard.uploads import accept_upload, store_archive

log = logging.getLogger(__name__)

DEMO_STUDENT = "demo-you"
INSTRUCTOR = "instructor"


def demo_settings(settings: Settings) -> WebSettings:
    return WebSettings(
        grader=settings,
        instance_path=settings.home / "demo-web",
        enforce_deadlines=False,  # the demo works whatever today's date is
        upload_rate_count=30,
    ).with_keys()


Graded = Mapping[str, Mapping[str, tuple[Path, GradeResult]]]  # lab -> sample -> (zip, result)


def _sample_student(lab: str, name: str, default: str) -> RosterEntry:
    """The roster entry of one sample: ``demo-good`` for the default lab, ``demo-<lab>-good``."""
    if lab == default:
        return RosterEntry(f"demo-{name}", f"Sample {name}", f"{name}@example.org", f"sample {name}")
    return RosterEntry(f"demo-{lab}-{name}", f"Sample {name} ({lab})", f"{lab}-{name}@example.org",
                       f"sample {lab} {name}")


def prepare_demo(settings: Settings, graded: Graded) -> tuple[WebSettings, str, str]:
    """Make the demo database with one student per graded sample on its lab's board.

    Returns the web settings, the secret of the demo student who signs in, and the
    instructor's password (both new each run).
    """
    web = demo_settings(settings)
    upgrade(web.db_url)
    course = load_course(settings)
    engine = make_engine(web.db_url)
    password = secrets.token_urlsafe(9)
    entries = [RosterEntry(DEMO_STUDENT, "Demo Student", "demo@example.org", "")]
    entries += [_sample_student(lab, name, course.default) for lab, samples in graded.items()
                for name in samples]
    with session_scope(engine) as session:
        import_roster(session, entries=entries, roster_key=web.roster_key)
        create_instructor(session, username=INSTRUCTOR, password=password)
    ids: list[tuple[int, str, GradeResult]] = []
    for lab, samples in graded.items():
        ids += _add_samples(engine, web, course.get(lab), samples, course.default)
    for sub_id, lab, result in ids:  # the samples were graded by the demo: record, not regrade
        taken = claim(engine, submission_id=sub_id, worker="demo", max_attempts=3)
        if taken is not None:
            record_result(engine, claim=taken, result=result, spec=course.get(lab), worker="demo")
    engine.dispose()
    return web, student_secret(web.roster_key, DEMO_STUDENT, 0), password


def _add_samples(
    engine: Any, web: WebSettings, spec: Assignment, samples: Mapping[str, tuple[Path, GradeResult]],
    default: str,
) -> list[tuple[int, str, GradeResult]]:
    """Upload one lab's samples as their students (once: a second demo run adds nothing)."""
    ids: list[tuple[int, str, GradeResult]] = []
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        assignment = session.get(AssignmentRow, row.id)
        assert assignment is not None
        already = {s.filename for s in session.exec(
            select(Submission).where(Submission.assignment_id == row.id)).all()}
        for name, (archive, result) in samples.items():
            if archive.name in already:
                continue
            roster_id = _sample_student(spec.name, name, default).roster_id
            student = session.exec(select(Student).where(Student.roster_id == roster_id)).one()
            with archive.open("rb") as fh:
                stored = store_archive(fh, upload_dir=web.upload_dir, max_bytes=2**31)
            sub = accept_upload(
                session,
                settings=web,
                spec=spec,
                assignment=assignment,
                student_id=student.id or 0,
                archive=stored,
                filename=archive.name,
            )
            ids.append((sub.id or 0, spec.name, result))
    return ids


def _worker_env(web: WebSettings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GRADER_HOME=str(web.grader.home),
        GRADER_SANDBOX=web.grader.sandbox.backend,
        LEADERBOARD_INSTANCE=str(web.instance_path),
        LEADERBOARD_ENFORCE_DEADLINES="0",
    )
    return env


def serve_demo(
    settings: Settings,
    graded: Graded,
    *,
    port: int = 8000,
    echo: Callable[[str], None] = print,
) -> None:
    """Prepare the board, start a worker, serve on 127.0.0.1 until Ctrl-C."""
    from werkzeug.serving import make_server

    from leaderboard.app import create_app

    web, secret, password = prepare_demo(settings, graded)
    grader = Path(sys.executable).parent / "grader"
    worker = subprocess.Popen(
        [str(grader), "worker"],
        env=_worker_env(web),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(web.instance_path / "worker.log").open("ab"),
    )
    app = create_app(web)
    try:
        server = make_server("127.0.0.1", port, app, threaded=True)
    except OSError as exc:  # taken: any free port will do for a demo
        echo(f"port {port} is not free ({exc.strerror}); using another one")
        server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    out = io.StringIO()
    out.write(f"\nThe leaderboard is at {url}/ (a grading worker runs beside it).\n")
    out.write(f"  student sign-in:   {url}/login   secret: {secret}\n")
    out.write(f"  instructor:        {url}/staff/login   user: {INSTRUCTOR}   password: {password}\n")
    out.write("Press Ctrl-C to stop.\n")
    echo(out.getvalue())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)


def board_rows(web: WebSettings, assignment: str | None = None) -> list[str]:
    """Display names on the demo board of ``assignment`` (default: the default lab), for checks."""
    from leaderboard.ranking import compute_board

    spec = load_course(web.grader).get(assignment)
    engine = make_engine(web.db_url)
    with Session(engine) as session:
        row = ensure_assignment(session, spec=spec)
        names = [r.display_name for r in compute_board(session, spec=spec, assignment=row).rows]
    engine.dispose()
    return names
