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

from grader.config import Assignment
from grader.course import load_course
from grader.datasets.manifest import MANIFEST_NAME, NOT_BUILT, Manifest, load_manifest
from grader.datasets.sync import fingerprint
from grader.errors import GraderFault, SpecError
from grader.faults import grade_or_fault
from grader.leftovers import sweep_once
from grader.progress import PartProgress
from grader.result import GradeResult, Status
from grader.share import spec_for_jobs
from grader.warm import grade_warm, start_pool
from leaderboard.archives import archive_for, discard_archive
from leaderboard.claims import (
    Claim,
    claim,
    heartbeat,
    mark_enqueued,
    queued_since,
    record_result,
    release_for_retry,
    report_progress,
    sweep_stuck,
)
from leaderboard.db import make_engine, session_scope
from leaderboard.models import AssignmentRow, WorkerBeat, utcnow
from leaderboard.ranking import ensure_assignment, maybe_auto_freeze
from leaderboard.settings import WebSettings
from leaderboard.similarity import SimilarityUpdater
from leaderboard.tasks import GradingQueue
from leaderboard.uploads import keeps_archive

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


class LabGrading:
    """What grading one assignment takes on this machine: its spec (with each sandbox's share
    of the cores), its verified hidden data and its similarity index."""

    def __init__(self, settings: WebSettings, spec: Assignment, engine: Engine, threads: int) -> None:
        self.spec = spec
        # Each of the `threads` sandboxes gets its share of the cores (or the set CPUs/memory).
        self.graded_spec, self.cpus = spec_for_jobs(spec, threads, settings.grader.sandbox)
        self.hidden = HiddenData(settings.grader.data_dir / spec.name)
        self.similarity = SimilarityUpdater(settings, spec, engine)
        # Each grading thread finds the next job's sandbox started (grader/warm.py), if enabled.
        self.pool = start_pool(self.graded_spec, settings.grader, self.hidden.current(), size=threads)


class Grader:
    """Grades submissions of any assignment of the course by id for one worker process; safe
    to call from several threads. Each assignment is set up on its first submission (the
    default one at start, so a worker without its hidden data does not start)."""

    def __init__(
        self, settings: WebSettings, queue: GradingQueue, *, name: str = "", threads: int = 1
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.threads = threads
        try:
            self.course = load_course(settings.grader)
        except SpecError as exc:
            raise WorkerSetupError(f"an assignment spec does not load: {exc}") from None
        self.spec: Assignment = self.course.get()  # the default assignment
        self.engine: Engine = make_engine(settings.db_url)
        self._lock = threading.Lock()
        self._labs: dict[str, LabGrading] = {}
        self._setup_lock = threading.Lock()
        self._active: dict[int, Claim] = {}
        self.graded = 0
        with session_scope(self.engine) as session:
            self.ids = {spec.name: ensure_assignment(session, spec=spec).id or 0 for spec in self.course}
        try:
            default = self.lab(self.spec.name)
        except GraderFault as exc:
            raise WorkerSetupError(
                f"this machine's hidden test data cannot be used: {exc.message} "
                "On a worker machine, copy it with `grader sync-tests SHARED_FOLDER`."
            ) from None
        self.graded_spec, self.cpus = default.graded_spec, default.cpus

    def lab(self, name: str) -> LabGrading:
        """Assignment ``name``'s grading set-up, made (and its data verified) on first use;
        GraderFault when its hidden data is missing or damaged here."""
        with self._setup_lock:  # one set-up per assignment, not one per grading thread
            with self._lock:
                found = self._labs.get(name)
            if found is not None:
                return found
            try:
                made = LabGrading(self.settings, self.course.get(name), self.engine, self.threads)
            except OSError as exc:
                raise GraderFault(NOT_BUILT, detail=f"{name}: {exc}") from None
            with self._lock:
                self._labs[name] = made
            return made

    def spec_of(self, assignment_id: int) -> Assignment:
        """The spec of the assignment with this row id (the default one for an unknown id,
        whose submission then becomes a grader fault in ``_grade``)."""
        for name, row_id in self.ids.items():
            if row_id == assignment_id:
                return self.course.get(name)
        return self.spec

    def close(self) -> None:
        """Stop the pre-started sandboxes; finish the similarity updates; release the database."""
        with self._lock:
            labs = list(self._labs.values())
        for each in labs:
            if each.pool is not None:
                each.pool.close()
            each.similarity.close()
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
        spec = self.spec_of(taken.assignment_id)
        try:
            result = self._grade(taken, predictions)
            if result.status == Status.GRADER_FAULT and self._retry(taken):
                return
            if not keeps_archive(result):  # while the claim holds: its token opens a remote delete
                discard_archive(taken, self.settings)
            if record_result(self.engine, claim=taken, result=result, spec=spec, worker=self.name):
                with self._lock:
                    lab = self._labs.get(spec.name)
                if lab is not None:
                    lab.similarity.after_result(submission_id, predictions)  # background; never raises
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
        spec = self.spec_of(taken.assignment_id)

        def run() -> GradeResult:
            if taken.assignment_id not in self.ids.values():
                raise GraderFault("This worker does not grade that assignment.",
                                  detail=f"assignment row {taken.assignment_id} is not in "
                                  f"{self.settings.grader.course_dir} here")
            lab = self.lab(spec.name)
            manifest = lab.hidden.current()
            max_bytes = self.settings.max_upload_bytes or spec.limits.upload_bytes
            with archive_for(taken, self.settings, max_bytes=max_bytes) as archive:
                # archive_for verified the digest when the claim carries one: not hashed again
                return grade_warm(lab.pool, archive, lab.graded_spec, self.settings.grader,
                                  manifest=manifest, predictions=predictions,
                                  sha256=taken.archive_sha256, on_progress=show)

        def show(parts: list[PartProgress]) -> None:  # the student's page shows each part's state
            report_progress(self.engine, claim=taken, parts=parts)

        return grade_or_fault(run, spec, label=f"submission {taken.submission_id}")

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
        for spec in self.course:
            report = sweep_stuck(self.engine, settings=self.settings, spec=spec,
                                 assignment_id=self.ids[spec.name])
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
            for spec in self.course:
                with session_scope(self.engine) as session:
                    row = session.exec(select(AssignmentRow).where(AssignmentRow.name == spec.name)).one()
                    maybe_auto_freeze(session, spec=spec, assignment=row)


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
        ", ".join(grader.course.assignments),
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
