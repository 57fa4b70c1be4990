"""The grading worker: a real Huey consumer plus a heartbeat-and-sweep thread.

``grader worker`` runs this. Each job claims its submission in the database, grades it
with ``grader.pipeline.grade`` and records the result. A ``GraderFault`` (or any bug of
ours) puts the submission back in the queue for a run ``fault_retry_after_s`` later, on any
worker; after ``max_grading_attempts`` runs it is recorded as ``grader_fault``, which refunds
the attempt. A second thread beats
for the submissions being graded and, every ``sweep_interval_s``, re-queues what a dead
worker left behind and freezes the board at the bonus deadline.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import click
import numpy as np
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from grader.config import Assignment, load_assignment
from grader.datasets.manifest import MANIFEST_NAME, NOT_BUILT, Manifest, load_manifest
from grader.datasets.sync import fingerprint
from grader.errors import GraderFault, SpecError
from grader.faults import grade_or_fault
from grader.leftovers import sweep_once
from grader.result import GradeResult, Status
from grader.share import spec_for_jobs
from grader.warm import grade_warm, start_pool
from leaderboard.archives import archive_for, discard_archive
from leaderboard.db import make_engine, session_scope
from leaderboard.models import AssignmentRow, WorkerBeat, utcnow
from leaderboard.ranking import maybe_auto_freeze
from leaderboard.settings import WebSettings
from leaderboard.similarity import SimilarityUpdater
from leaderboard.submissions import (
    Claim,
    claim,
    ensure_assignment,
    heartbeat,
    keeps_archive,
    mark_enqueued,
    queued_since,
    record_result,
    release_for_retry,
    sweep_stuck,
)
from leaderboard.tasks import GradingQueue

log = logging.getLogger(__name__)


class WorkerSetupError(click.ClickException):
    """The worker cannot start (a wrong setting, hidden data missing or damaged); exit code 2."""

    exit_code = 2


class HiddenData:
    """This machine's hidden test data: verified when the worker starts and whenever its
    manifest changes (``grader sync-tests`` replaced it), not on every job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._manifest: Manifest | None = None
        self.current()

    def current(self) -> Manifest:
        """The verified manifest; GraderFault when the data no longer verifies."""
        try:
            st = (self.root / MANIFEST_NAME).stat()
        except OSError as exc:
            raise GraderFault(NOT_BUILT, detail=f"{self.root / MANIFEST_NAME}: {exc}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._manifest is None or stamp != self._stamp:
                self._manifest = load_manifest(self.root, verify=True)
                self._stamp = stamp
                log.info("hidden data %s verified, fingerprint %s", self.root, fingerprint(self.root))
            return self._manifest


class Grader:
    """Grades submissions by id for one worker process; safe to call from several threads."""

    def __init__(
        self, settings: WebSettings, queue: GradingQueue, *, name: str = "", threads: int = 1
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.spec: Assignment = load_assignment(settings.grader.assignment_path)
        # Each of the `threads` sandboxes gets its share of the cores (or the set CPUs/memory).
        self.graded_spec, self.cpus = spec_for_jobs(self.spec, threads, settings.grader.sandbox)
        try:
            self.hidden = HiddenData(settings.grader.data_dir / self.spec.name)
        except (GraderFault, OSError) as exc:
            message = exc.message if isinstance(exc, GraderFault) else str(exc)
            raise WorkerSetupError(
                f"this machine's hidden test data cannot be used: {message} "
                "On a worker machine, copy it with `grader sync-tests SHARED_FOLDER`."
            ) from None
        self.engine: Engine = make_engine(settings.db_url)
        self._lock = threading.Lock()
        self._active: dict[int, Claim] = {}
        self.graded = 0
        self.similarity = SimilarityUpdater(settings, self.spec, self.engine)
        # Each grading thread finds the next job's sandbox started (grader/warm.py).
        self.pool = start_pool(self.graded_spec, settings.grader, self.hidden.current(), size=threads)
        with session_scope(self.engine) as session:
            ensure_assignment(session, spec=self.spec)

    def close(self) -> None:
        """Stop the pre-started sandboxes; finish the similarity updates; release the database."""
        if self.pool is not None:
            self.pool.close()
        self.similarity.close()
        self.engine.dispose()

    # ---- one job

    def grade_one(self, submission_id: int) -> None:
        """Claim, grade and record one submission; a no-op if it is not queued any more."""
        taken = claim(
            self.engine,
            submission_id=submission_id,
            worker=self.name,
            max_attempts=self.settings.max_grading_attempts,
        )
        if taken is None:
            log.info("submission %s: not queued any more, skipped", submission_id)
            return
        with self._lock:
            self._active[submission_id] = taken
        log.info("submission %s: grading (run %s)", submission_id, taken.attempt)
        predictions: dict[str, np.ndarray] = {}  # the judge's answers, for the staff's similarity check
        try:
            result = self._grade(taken, predictions)
            if result.status == Status.GRADER_FAULT and self._retry(taken):
                return
            if not keeps_archive(result):  # while the claim holds: its token opens a remote delete
                discard_archive(taken, self.settings)
            if record_result(self.engine, claim=taken, result=result, spec=self.spec, worker=self.name):
                self.similarity.after_result(submission_id, predictions)  # background; never raises
            log.info(
                "submission %s: %s %.1f/%.1f",
                submission_id,
                result.status,
                result.score,
                result.max_score,
            )
        finally:
            with self._lock:
                self._active.pop(submission_id, None)
                self.graded += 1

    def _grade(self, taken: Claim, predictions: dict[str, np.ndarray] | None = None) -> GradeResult:
        def run() -> GradeResult:
            manifest = self.hidden.current()
            max_bytes = self.settings.max_upload_bytes or self.spec.limits.upload_bytes
            with archive_for(taken, self.settings, max_bytes=max_bytes) as archive:
                # archive_for verified the digest when the claim carries one: not hashed again
                return grade_warm(self.pool, archive, self.graded_spec, self.settings.grader,
                                  manifest=manifest, predictions=predictions,
                                  sha256=taken.archive_sha256)

        return grade_or_fault(run, self.spec, label=f"submission {taken.submission_id}")

    def _retry(self, taken: Claim) -> bool:
        """After a grader fault (hidden data damaged, a sandbox that failed to start, the web app
        away...) with runs left: back in the queue for a later run on any worker, and True."""
        runs = self.settings.max_grading_attempts
        if taken.attempt >= runs:
            return False
        priority = release_for_retry(self.engine, claim=taken)
        if priority is None:
            return False
        delay_s = self.settings.fault_retry_after_s
        self.queue.enqueue(taken.submission_id, priority=priority, delay_s=delay_s)
        log.warning("submission %s: grader fault on run %s of %s; tried again in %g s",
                    taken.submission_id, taken.attempt, runs, delay_s)
        return True


    # ---- housekeeping

    def beat(self) -> None:
        """Heartbeat for the running submissions and for this worker."""
        with self._lock:
            active = list(self._active.values())
            graded = self.graded
        heartbeat(self.engine, claims=active)
        now = utcnow()
        with session_scope(self.engine) as session:
            n = session.execute(  # type: ignore[attr-defined]  # execute(update()) returns a CursorResult, which has rowcount
                update(WorkerBeat)
                .where(col(WorkerBeat.name) == self.name)
                .values(
                    seen_at=now,
                    graded=graded,
                    current_submission_id=active[0].submission_id if active else None,
                )
            ).rowcount
            if not n:
                session.add(WorkerBeat(name=self.name, started_at=now, seen_at=now))

    def sweep(self) -> None:
        """Re-queue stuck and lost submissions; freeze the board at the bonus deadline."""
        report = sweep_stuck(self.engine, settings=self.settings, spec=self.spec)
        for sub_id in report.requeued:
            self.queue.enqueue(sub_id, priority=5)
        cutoff = utcnow() - timedelta(seconds=self.settings.lost_after_s)
        candidates = queued_since(self.engine, before=cutoff)
        if candidates:
            waiting = self.queue.pending_ids()
            lost = [(i, p) for i, p in candidates if i not in waiting]
            for sub_id, priority in lost:
                self.queue.enqueue(sub_id, priority=priority)
            mark_enqueued(self.engine, submission_ids=[i for i, _ in candidates])
            if lost:
                log.warning("enqueued again submissions missing from the queue: %s", [i for i, _ in lost])
        if self.settings.auto_freeze:
            with session_scope(self.engine) as session:
                row = session.exec(select(AssignmentRow).where(AssignmentRow.name == self.spec.name)).one()
                maybe_auto_freeze(session, spec=self.spec, assignment=row)


def _housekeeping(grader: Grader, stop: threading.Event) -> None:
    next_sweep = 0.0
    while not stop.is_set():
        try:
            grader.beat()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + grader.settings.sweep_interval_s
                grader.sweep()
        except Exception:  # the database may be away for a moment; try again next beat
            log.exception("worker housekeeping failed")
        stop.wait(grader.settings.heartbeat_s)


def run_worker(settings: WebSettings, *, threads: int | None = None) -> None:
    """Run a Huey consumer that grades until SIGINT/SIGTERM."""
    threads = threads or settings.worker_threads
    queue = GradingQueue(settings)
    sweep_once(settings.grader.sandbox.work_dir)  # run folders of a worker killed on this machine
    grader = Grader(settings, queue, threads=threads)
    queue.bind(grader.grade_one)
    stop = threading.Event()
    keeper = threading.Thread(target=_housekeeping, args=(grader, stop), name="heartbeat", daemon=True)
    keeper.start()
    consumer = queue.huey.create_consumer(
        workers=threads,
        worker_type="thread",
        periodic=False,
        initial_delay=0.1,
        backoff=1.15,
        max_delay=0.25,  # an idle queue without blocking reads (SQLite) is polled this often
        check_worker_health=True,
    )
    log.info(
        "worker %s: grading %s from %s, %d at once, %g CPUs and %d MiB per sandbox, "
        "archives from %s",
        grader.name,
        grader.spec.name,
        _redacted(settings.queue_url) or settings.queue_file,
        threads,
        grader.cpus,
        grader.graded_spec.limits.memory_bytes // 2**20,
        settings.archive_url or settings.upload_dir,
    )
    try:
        consumer.run()
    finally:
        stop.set()
        keeper.join(timeout=5)
        grader.close()


def _redacted(url: str) -> str:
    """A URL without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


@click.command("worker")
@click.option(
    "--threads",
    "-t",
    type=int,
    default=None,
    help="Submissions graded at once (default: LEADERBOARD_WORKER_THREADS or 1).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each job.")
def worker(threads: int | None, verbose: bool) -> None:
    """Grade uploaded submissions from the queue (settings from LEADERBOARD_*/GRADER_*)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("leaderboard").setLevel(logging.INFO)
    try:
        settings = WebSettings.from_env().with_keys()
    except SpecError as exc:
        raise WorkerSetupError(f"a setting is wrong: {exc}") from None
    run_worker(settings, threads=threads)
