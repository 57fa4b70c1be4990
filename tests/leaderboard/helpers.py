"""Helpers for the web service's tests: rosters, sign-in, live server, worker processes."""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlmodel import Session, func, select

from grader.config import SandboxSettings, Settings
from leaderboard.accounts import RosterEntry, create_instructor, import_roster, student_secret
from leaderboard.db import make_engine, session_scope, upgrade
from leaderboard.models import Result
from leaderboard.settings import WebSettings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
INSTRUCTOR = ("prof", "correct horse battery")


def grader_settings(home: Path) -> Settings:
    """The single-assignment service: its course is the default assignment (cnn) alone,
    whatever else hidden_tests/ holds (``home/course`` has no assignment folders)."""
    return Settings(home=home, course_dir=home / "course",
                    sandbox=SandboxSettings(backend="bwrap", python=sys.executable))


@dataclass
class Roster:
    secrets: dict[str, str] = field(default_factory=dict)  # roster id -> secret
    ids: dict[str, int] = field(default_factory=dict)  # roster id -> student row id


def add_roster(settings: WebSettings, n: int, *, prefix: str = "s") -> Roster:
    """Import ``n`` students (named s001, …) with display names; return their secrets."""
    from sqlmodel import select

    from leaderboard.models import Student

    entries = [
        RosterEntry(f"{prefix}{i:03d}", f"Student {i}", f"{prefix}{i}@uni.example", f"{prefix}-{i}")
        for i in range(1, n + 1)
    ]
    engine = make_engine(settings.db_url)
    with session_scope(engine) as session:
        import_roster(session, entries=entries, roster_key=settings.roster_key)
        create_instructor(session, username=INSTRUCTOR[0], password=INSTRUCTOR[1])
        rows = session.exec(select(Student)).all()
    engine.dispose()
    roster = Roster()
    for row in rows:
        roster.secrets[row.roster_id] = student_secret(settings.roster_key, row.roster_id, 0)
        roster.ids[row.roster_id] = row.id or 0
    return roster


def multipart(fields: dict[str, bytes], boundary: str = "lbtest",
              filename: str = "s.zip") -> tuple[bytes, str]:
    """A multipart body as browsers send it (``file`` as a file part, the rest as fields); as
    bytes, since the test client's own encoding of a large file leaks a temporary file."""
    body = b""
    for name, value in fields.items():
        named = f'; filename="{filename}"' if name == "file" else ""
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{named}\r\n\r\n'.encode()
        body += value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def csrf_of(client: Any, path: str = "/login") -> str:
    """The CSRF token of the client's session, as a page's form carries it."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: Any, secret: str) -> None:
    token = csrf_of(client)
    response = client.post("/login", data={"secret": secret, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)


def sign_in_staff(client: Any) -> None:
    token = csrf_of(client, "/staff/login")
    response = client.post(
        "/staff/login",
        data={"username": INSTRUCTOR[0], "password": INSTRUCTOR[1], "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def worker_env(settings: WebSettings, **extra: str) -> dict[str, str]:
    """The environment that makes ``grader worker`` use exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADERBOARD_", "GRADER_"))}
    env.update(
        GRADER_HOME=str(settings.grader.home),
        GRADER_ASSIGNMENT=str(settings.grader.assignment_path),
        GRADER_COURSE_DIR=str(settings.grader.course_dir),
        GRADER_SANDBOX=settings.grader.sandbox.backend,
        GRADER_SANDBOX_PYTHON=str(settings.grader.sandbox.python),
        GRADER_SANDBOX_PRESTART="1" if settings.grader.sandbox.prestart else "0",
        LEADERBOARD_INSTANCE=str(settings.instance_path),
        LEADERBOARD_DATABASE_URL=settings.db_url,
        LEADERBOARD_QUEUE_URL=settings.queue_url,
        LEADERBOARD_QUEUE_NAME=settings.queue_name,
        LEADERBOARD_HEARTBEAT_S=str(settings.heartbeat_s),
        LEADERBOARD_STALE_AFTER_S=str(settings.stale_after_s),
        LEADERBOARD_SWEEP_INTERVAL_S=str(settings.sweep_interval_s),
        LEADERBOARD_LOST_AFTER_S=str(settings.lost_after_s),
        LEADERBOARD_WORKER_THREADS=str(settings.worker_threads),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A real ``grader worker`` process; its log goes to a file for the failure message."""

    def __init__(self, settings: WebSettings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "grader"), "worker", "-v"],
            env=worker_env(settings, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            start_new_session=True,  # its own process group: a kill takes its sandboxes too
        )

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (as if its machine died)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


class LiveServer:
    """The Flask app served by werkzeug in a thread of the test process, on a free port."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@dataclass
class Stack:
    """A whole service: settings, app, live server, roster and grading worker(s)."""

    settings: WebSettings
    app: Any
    server: LiveServer
    roster: Roster
    workers: list[WorkerProcess]
    tmp: Path

    @property
    def engine(self) -> Any:
        return self.app.extensions["leaderboard"].engine

    def start_worker(self, **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.settings, self.tmp / f"worker-{len(self.workers)}.log", **env)
        self.workers.append(worker)
        return worker

    def wait_for(self, predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        logs = "\n".join(f"--- {w.log_path.name}\n{w.log()}" for w in self.workers)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")

    def statuses(self) -> dict[int, str]:
        from sqlmodel import Session, select

        from leaderboard.models import Submission

        with Session(self.engine) as session:
            return {s.id: s.status for s in session.exec(select(Submission)).all()}


def build_stack(
    tmp: Path,
    *,
    grader_home: Path,
    db_url: str,
    queue_url: str = "",
    students: int = 3,
    workers: int = 1,
    **overrides: Any,
) -> Stack:
    from leaderboard import create_app

    settings = WebSettings(
        grader=grader_settings(grader_home),
        instance_path=tmp / "instance",
        database_url=db_url,
        queue_url=queue_url,
        queue_name=f"t{secrets.token_hex(4)}",
        heartbeat_s=1.0,
        stale_after_s=6.0,
        sweep_interval_s=2.0,
        lost_after_s=30.0,
        upload_rate_count=1000,
        board_poll_interval_s=1.0,
    )
    settings = replace(settings, **overrides).with_keys()
    upgrade(settings.db_url)
    app = create_app(settings)
    roster = add_roster(settings, students)
    stack = Stack(settings, app, LiveServer(app), roster, [], tmp)
    for _ in range(workers):
        stack.start_worker()
    return stack


def close_stack(stack: Stack) -> None:
    for worker in stack.workers:
        worker.stop()
    stack.server.stop()
    with contextlib.suppress(Exception):
        stack.app.extensions["leaderboard"].queue.flush()
    stack.app.extensions["leaderboard"].engine.dispose()


# --------------------------------------------------------------------------- uploads, waiting

TERMINAL = {"graded", "invalid", "crashed", "timed_out", "out_of_memory", "grader_fault"}


def api_upload(stack: Stack, secret: str, body: bytes, name: str = "sub.zip") -> Any:
    client = stack.app.test_client()
    return client.post(
        "/api/submissions",
        data={"file": (io.BytesIO(body), name)},
        headers={"Authorization": f"Bearer {secret}"},
        content_type="multipart/form-data",
    )


def wait_done(stack: Stack, ids: list[int], timeout_s: float = 150) -> dict[int, str]:
    def done() -> dict[int, str] | None:
        statuses = stack.statuses()
        mine = {i: statuses.get(i, "missing") for i in ids}
        return mine if all(s in TERMINAL for s in mine.values()) else None

    return stack.wait_for(done, timeout_s=timeout_s, what=f"submissions {ids} to be graded")


def results_of(stack: Stack, sub_id: int) -> int:
    with Session(stack.engine) as session:
        return session.exec(select(func.count(Result.id)).where(Result.submission_id == sub_id)).one()


def browser_signed_in(browser: Any, stack: Stack, role: str, *, width: int,
                      bypass_csp: bool = False) -> Any:
    """A browser context at ``width`` px signed in to ``stack`` as a ``student`` (s001), an
    ``instructor``, or nobody (any other role); ``bypass_csp`` lets a test inject its scripts."""
    import re

    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=bypass_csp)
    page = context.new_page()
    if role == "student":
        page.goto(stack.server.url + "/login")
        page.fill("#secret", stack.roster.secrets["s001"])
        page.click("main button[type=submit]")
        page.wait_for_load_state()
    elif role == "instructor":
        page.goto(stack.server.url + "/staff/login")
        page.fill("#username", INSTRUCTOR[0])
        page.fill("#password", INSTRUCTOR[1])
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r"/staff/?$"))
    page.close()
    return context


def page_paths(stack: Stack) -> list[str]:
    """Every page to visit: the GET routes without parameters (HTML ones are kept by the
    caller), a graded submission's page (``stack.graded_id``) for its student and for staff,
    and student s001's staff page."""
    paths = sorted({
        rule.rule for rule in stack.app.url_map.iter_rules()
        if "GET" in (rule.methods or ()) and not rule.arguments and rule.endpoint != "static"
    })
    sub = stack.graded_id  # type: ignore[attr-defined]
    student = stack.roster.ids["s001"]
    return [*paths, f"/submissions/{sub}", f"/staff/submissions/{sub}", f"/staff/students/{student}"]
