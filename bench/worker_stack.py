"""A whole grading service for the worker benchmarks, started as in production.

One ``Service`` is one run: its own PostgreSQL schema, its own Huey queue name on Redis (or
its own SQLite queue file), its own instance folder, the web app under gunicorn on a free
loopback port and N real ``grader worker`` processes. Everything is reached through its
public behaviour only: the settings go in as ``LEADERBOARD_*``/``GRADER_*`` variables, uploads
go through ``POST /api/submissions``, and the outcome is read from the database's submission
and result rows. ``close()`` stops the processes and drops the schema and the queue.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from grader.config import load_assignment  # noqa: E402
from leaderboard.accounts import RosterEntry, import_roster, student_secret  # noqa: E402
from leaderboard.db import make_engine, session_scope, upgrade  # noqa: E402
from leaderboard.models import Result, Submission  # noqa: E402
from leaderboard.ranking import ensure_assignment  # noqa: E402
from leaderboard.settings import WebSettings  # noqa: E402

BIN = Path(sys.executable).parent
PENDING = {"queued", "running"}
# Set on Ctrl-C/SIGTERM: a KeyboardInterrupt can be swallowed by a library (or land while the
# main thread waits on a pool), so every wait of the benchmark also watches this.
STOP = threading.Event()


def pause(seconds: float) -> None:
    """Sleep, or raise KeyboardInterrupt as soon as the benchmark is told to stop."""
    if STOP.wait(max(0.0, seconds)):
        raise KeyboardInterrupt


@dataclass(frozen=True)
class Upload:
    """One upload as the client saw it: wall-clock times (``time.time()``), HTTP status, id."""

    sent: float
    answered: float
    status: int  # 0: no HTTP answer at all
    submission_id: int | None
    message: str = ""


@dataclass(frozen=True)
class Row:
    """One submission as the database has it, with its times as ``time.time()`` seconds."""

    id: int
    status: str
    created: float
    started: float | None
    finished: float | None
    attempts: int
    worker: str
    results: int  # result rows recorded for it


# A warning or worse in the workers' lines ("ERROR leaderboard.worker: ...") or gunicorn's
# ("[...] [ERROR] ..."), and tracebacks.
LOG_PROBLEM = re.compile(r"(^|[\s\[])(WARNING|ERROR|CRITICAL)([\s\]:])|Traceback")


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A running web app, N workers, a schema and a queue; see the module docstring."""

    tmp: Path
    settings: WebSettings
    env: dict[str, str]
    schema: str
    admin_url: str
    url: str = ""
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    worker_env: dict[str, str] = field(default_factory=dict)  # on top of ``env``, workers only
    warm_students: int = 0
    _warm_count: int = 0
    _engine: object = None

    # ---- start and stop

    @classmethod
    def start(
        cls,
        tmp_root: Path,
        *,
        pg_url: str,
        redis_url: str,
        workers: int,
        students: int,
        sandbox: str,
        extra_env: Mapping[str, str] | None = None,
        archives_from_web: bool = False,
    ) -> Service:
        """Make the schema and queue, import ``students`` (plus some for the warm-up), start
        gunicorn and the workers; ``redis_url`` empty means Huey's SQLite queue file, and
        ``archives_from_web`` has the workers download each archive from the web app
        (``LEADERBOARD_ARCHIVE_URL``) as a machine without the upload folder does."""
        tag = f"bench_workers_{os.getpid()}_{secrets.token_hex(3)}"
        tmp = tmp_root / tag
        tmp.mkdir(parents=True)
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{tag}"'))
        admin.dispose()
        db_url = (
            make_url(pg_url)
            .update_query_dict({"options": f"-csearch_path={tag}"})
            .render_as_string(hide_password=False)
        )
        port = _free_port()
        env = dict(os.environ)
        env.update(
            GRADER_SANDBOX=sandbox,
            LEADERBOARD_INSTANCE=str(tmp / "instance"),
            LEADERBOARD_DATABASE_URL=db_url,
            LEADERBOARD_QUEUE_URL=redis_url,  # empty: Huey's SQLite file in the instance folder
            LEADERBOARD_QUEUE_NAME=tag,
            # The benchmark must work on any date; the deadline check itself still runs.
            LEADERBOARD_ENFORCE_DEADLINES="0",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        # The very settings the child processes will read from this environment.
        settings = WebSettings.from_env(env).with_keys()
        service = cls(tmp=tmp, settings=settings, env=env, schema=tag, admin_url=pg_url,
                      url=f"http://127.0.0.1:{port}")
        if archives_from_web:
            service.worker_env = {"LEADERBOARD_ARCHIVE_URL": service.url}
        try:
            upgrade(db_url)
            service.warm_students = 8 * workers
            service._add_students(students + service.warm_students)
            service._start_web(port)
            for _ in range(workers):
                service.add_worker()
        except BaseException:
            service.close()
            raise
        return service

    def _add_students(self, n: int) -> None:
        entries = [RosterEntry(f"b{i:04d}", f"Student {i}", f"b{i}@uni.example", f"b-{i}") for i in range(n)]
        engine = make_engine(self.settings.db_url)
        with session_scope(engine) as session:
            import_roster(session, entries=entries, roster_key=self.settings.roster_key)
            ensure_assignment(session, spec=load_assignment(self.settings.grader.assignment_path))
        engine.dispose()
        self.secrets = [student_secret(self.settings.roster_key, e.roster_id, 0) for e in entries]

    def _start_web(self, port: int) -> None:
        with (self.tmp / "web.log").open("ab") as log:  # the child keeps its own descriptor
            self.web = subprocess.Popen(
                [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                 "--worker-class", "gthread", "--threads", "8", "--log-level", "warning",
                 "leaderboard:create_app()"],
                env=self.env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_tail('web.log')}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/leaderboard")
                if conn.getresponse().status == 200:
                    return
            pause(0.2)
        raise RuntimeError(f"gunicorn did not come up:\n{self.log_tail('web.log')}")

    def add_worker(self) -> None:
        """Start one more ``grader worker`` process (its own process group, its own log)."""
        with (self.tmp / f"worker-{len(self.workers)}.log").open("ab") as log:
            self.workers.append(subprocess.Popen(
                [str(BIN / "grader"), "worker", "-v"],
                env={**self.env, **self.worker_env}, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))

    def close(self, *, keep_files: bool = False) -> None:
        """Stop the workers and the web app, drop the schema and the queue, remove the folder."""
        for proc in [*self.workers, self.web]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.web]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._engine is not None:
            self._engine.dispose()  # type: ignore[attr-defined]
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()
        if self.settings.queue_url:
            import redis

            client = redis.Redis.from_url(self.settings.queue_url)
            keys = list(client.scan_iter(match=f"huey.*{self.schema}*"))
            if keys:
                client.delete(*keys)
            client.close()
        if not keep_files:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- use

    def upload(self, body: bytes, *, student: int, filename: str = "submission.zip") -> Upload:
        """``POST /api/submissions`` as the student template does; never raises."""
        request = urllib.request.Request(
            f"{self.url}/api/submissions",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.secrets[student % len(self.secrets)]}",
                "Content-Type": "application/zip",
                "X-Filename": filename,
            },
        )
        sent = time.time()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = json.loads(response.read())
                answered = time.time()
                return Upload(sent, answered, response.status, int(payload["id"]))
        except urllib.error.HTTPError as exc:
            answered = time.time()
            return Upload(sent, answered, exc.code, None, exc.read().decode(errors="replace")[:200])
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            return Upload(sent, time.time(), 0, None, f"{type(exc).__name__}: {exc}")

    def rows(self) -> dict[int, Row]:
        """Every submission of this run, with how many result rows each has."""
        if self._engine is None:
            self._engine = make_engine(self.settings.db_url)
        with Session(self._engine) as session:  # type: ignore[arg-type]
            per_submission = select(Result.submission_id, func.count(Result.id)).group_by(
                Result.submission_id
            )
            counts = dict(session.exec(per_submission).all())
            return {
                s.id: Row(s.id, s.status, _ts(s.created_at) or 0.0, _ts(s.started_at), _ts(s.finished_at),
                          s.grading_attempts, s.worker, counts.get(s.id, 0))
                for s in session.exec(select(Submission)).all()
                if s.id is not None
            }

    def messages(self, statuses: set[str]) -> dict[int, tuple[str, str]]:
        """Status and message of each submission whose newest result has one of ``statuses``."""
        if self._engine is None:
            self._engine = make_engine(self.settings.db_url)
        with Session(self._engine) as session:  # type: ignore[arg-type]
            found = session.exec(select(Result).where(Result.status.in_(sorted(statuses)))).all()  # type: ignore[attr-defined]
            return {r.submission_id: (r.status, r.message) for r in found}

    def wait_done(self, ids: list[int], *, timeout_s: float, poll_s: float = 0.5) -> dict[int, Row]:
        """Wait until every id has a final status; the rows then (or at the time-out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.rows()
            if all(i in rows and rows[i].status not in PENDING for i in ids) or time.monotonic() > deadline:
                return rows
            pause(poll_s)

    def warm_up(self, body: bytes, *, timeout_s: float = 120) -> int:
        """Upload small jobs until every worker has done one (its first-job imports are paid).

        Returns how many distinct workers took part. The uploads come from students of their
        own (``warm_students`` at the end of the roster), so the measured uploads' students
        keep their whole rate limit.
        """
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        first = len(self.secrets) - self.warm_students
        while len(seen) < len(self.workers) and time.monotonic() < deadline:
            ups = []
            for _ in range(len(self.workers)):
                ups.append(self.upload(body, student=first + self._warm_count % self.warm_students,
                                       filename="warm-up.zip"))
                self._warm_count += 1
            ids = [u.submission_id for u in ups if u.submission_id is not None]
            if len(ids) != len(ups):
                raise RuntimeError(f"warm-up upload refused: {[u.message for u in ups if u.message]}")
            rows = self.wait_done(ids, timeout_s=max(1.0, deadline - time.monotonic()), poll_s=0.2)
            seen |= {rows[i].worker for i in ids if i in rows and rows[i].worker}
        return len(seen)

    def dead_workers(self) -> list[int]:
        """Indexes of worker processes that have exited."""
        return [i for i, proc in enumerate(self.workers) if proc.poll() is not None]

    def log_warnings(self) -> list[str]:
        """Warning, error and traceback lines of the web app's and the workers' logs."""
        lines = []
        for path in sorted(self.tmp.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if LOG_PROBLEM.search(line):
                    lines.append(f"{path.name}: {line.strip()}")
        return lines

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace")[-chars:] if path.is_file() else f"({name} missing)"
