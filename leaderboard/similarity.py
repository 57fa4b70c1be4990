"""Similarity in the web app: each graded upload joins its assignment's index in the background
(here); the staff pages read what is stored there (``leaderboard.similarity_pages``).

The index is the engine's (``grader.similarity``): one SQLite file per assignment in the
instance folder, ``<instance>/similarity/<assignment>.sqlite``, holding every compared
submission's evidence and the pairs worth a look. After the worker records a result it hands
the submission to ``SimilarityUpdater``, whose one background thread reads the zip's evidence
(the engine's bounded, weights-only checkpoint reading) with the predictions the judge scored,
and compares only that submission with the others (``SimilarityIndex.add``). Any error there
is logged and recorded as "failed" for the staff; the student's result is already stored and
never touched. Nothing here changes a score.

Which submissions are compared: each student's newest compared upload and their best-scoring
one (an invalid upload or a grader fault gives nothing to compare). Submission ids name them
in the pairs, student ids are their owners (one student's uploads are never paired).

Workers that share the instance folder update the index (several processes take turns through
a file lock, and one that finds the file changed by another reloads it). A worker on another
machine (``LEADERBOARD_ARCHIVE_URL``) has neither the upload folder nor the index: its results
show as pending until ``grader similarity INSTANCE`` on the web host adds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from grader.config import Assignment
from grader.similarity.storage import SqliteStorage
from leaderboard.models import AssignmentRow, Submission, SubmissionStatus, utcnow
from leaderboard.settings import WebSettings

if TYPE_CHECKING:
    from grader.similarity.fromstore import Candidate
    from grader.similarity.index import SimilarityIndex

log = logging.getLogger(__name__)

# Statuses whose zip was looked at: the others (invalid, grader fault, not yet graded) give no evidence.
COMPARED = (
    SubmissionStatus.GRADED,
    SubmissionStatus.TIMED_OUT,
    SubmissionStatus.OUT_OF_MEMORY,
    SubmissionStatus.CRASHED,
)


def index_path(settings: WebSettings, assignment: str) -> Path:
    """Where an assignment's similarity index lives in the instance folder."""
    return settings.instance_path / "similarity" / f"{assignment}.sqlite"


@contextlib.contextmanager
def index_lock(path: Path) -> Iterator[None]:
    """One change of an index at a time, across the worker processes and ``grader similarity``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- what happened to each update


@dataclass(frozen=True)
class Update:
    """The last background update of one submission: ``state`` is pending, done, skipped or failed."""

    submission_id: int
    state: str
    message: str
    at: str


class UpdateLog:
    """The state of each submission's update, beside the index (``updates`` in the same file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS updates (id INTEGER PRIMARY KEY, state TEXT NOT NULL, "
                "message TEXT NOT NULL, at TEXT NOT NULL)"
            )

    def close(self) -> None:
        self._db.close()

    def set(self, submission_id: int, state: str, message: str = "") -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO updates (id, state, message, at) VALUES (?, ?, ?, ?)",
                (submission_id, state, message, utcnow().strftime("%Y-%m-%d %H:%M:%S")),
            )

    def of(self, submission_id: int) -> Update | None:
        row = self._db.execute(
            "SELECT id, state, message, at FROM updates WHERE id = ?", (submission_id,)
        ).fetchone()
        return Update(*row) if row else None

    def with_state(self, state: str, limit: int = 50) -> list[Update]:
        rows = self._db.execute(
            "SELECT id, state, message, at FROM updates WHERE state = ? ORDER BY at DESC LIMIT ?",
            (state, limit),
        )
        return [Update(*row) for row in rows]

    def count(self, state: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM updates WHERE state = ?", (state,)).fetchone()[0])


# --------------------------------------------------------------------------- which submissions to keep


def kept(rows: list[Submission]) -> list[Submission]:
    """Of one student's compared submissions, those the index keeps: the newest and the best-scoring."""
    if not rows:
        return []
    newest = max(rows, key=lambda r: (r.created_at, r.id or 0))
    best = max(rows, key=lambda r: (r.score or 0.0, r.created_at, r.id or 0))
    return [newest] if best is newest else [newest, best]


def _compared(session: Session, *, assignment_id: int, student_id: int | None = None) -> list[Submission]:
    query = select(Submission).where(
        Submission.assignment_id == assignment_id,
        col(Submission.status).in_([str(s) for s in COMPARED]),
    )
    if student_id is not None:
        query = query.where(Submission.student_id == student_id)
    return list(session.exec(query).all())


def kept_of(session: Session, *, assignment_id: int, student_id: int) -> set[int]:
    """The ids of a student's compared submissions the index keeps (``kept``)."""
    return {s.id or 0 for s in kept(_compared(session, assignment_id=assignment_id, student_id=student_id))}


def newest_compared(session: Session, *, assignment_id: int) -> list[int]:
    """Each student's newest compared submission id (what the index should hold, at least)."""
    return [
        int(i or 0)
        for i in session.exec(
            select(func.max(Submission.id))
            .where(
                Submission.assignment_id == assignment_id,
                col(Submission.status).in_([str(s) for s in COMPARED]),
            )
            .group_by(col(Submission.student_id))
        ).all()
    ]


# --------------------------------------------------------------------------- the worker's side


class _UploadArchives:
    """Submission id -> its zip in the upload folder, for ``ArchiveTensors`` (exact cosines)."""

    def __init__(self, engine: Engine, upload_dir: Path) -> None:
        self.engine, self.upload_dir = engine, upload_dir

    def get(self, sid: str) -> Path | None:
        with Session(self.engine) as session:
            sub = session.get(Submission, int(sid))
        return self.upload_dir / f"{sub.archive_key}.zip" if sub is not None else None


class SimilarityUpdater:
    """Adds graded submissions to the assignment's index, one at a time, in a background thread."""

    def __init__(self, settings: WebSettings, spec: Assignment, engine: Engine) -> None:
        self.settings, self.spec, self.engine = settings, spec, engine
        self.path = index_path(settings, spec.name)
        self.enabled = not settings.archive_url  # no upload folder, no index on this machine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="similarity")
        self._futures: list[Future[None]] = []
        self._futures_lock = threading.Lock()  # several grading threads hand in results
        self._index: SimilarityIndex | None = None
        self._tags: dict[str, str] = {}

    def after_result(self, submission_id: int, predictions: Mapping[str, np.ndarray] | None) -> None:
        """Queue the update of a just-recorded submission; returns at once and never raises."""
        if not self.enabled:
            return
        try:
            with self._log() as updates:
                updates.set(submission_id, "pending")
            future = self._pool.submit(self._run, submission_id, dict(predictions or {}))
            with self._futures_lock:
                self._futures = [f for f in self._futures if not f.done()] + [future]
        except Exception:  # similarity must never cost a student their result
            log.exception("submission %s: similarity update not queued", submission_id)

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the queued updates (tests; shutting down)."""
        with self._futures_lock:
            waiting = list(self._futures)
        for future in waiting:
            future.result(timeout=timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, submission_id: int, predictions: dict[str, np.ndarray]) -> None:
        try:
            state, message = self.update(submission_id, predictions)
        except Exception as exc:
            log.exception("submission %s: similarity update failed", submission_id)
            state, message = "failed", f"{type(exc).__name__}: {exc}"
        try:
            with self._log() as updates:
                updates.set(submission_id, state, message)
        except Exception:
            log.exception("submission %s: similarity state %s not recorded", submission_id, state)

    @contextlib.contextmanager
    def _log(self) -> Iterator[UpdateLog]:
        updates = UpdateLog(self.path)
        try:
            yield updates
        finally:
            updates.close()

    def update(self, submission_id: int, predictions: Mapping[str, np.ndarray]) -> tuple[str, str]:
        """Compare one submission with the others; (state, message) for the staff."""
        from grader.similarity import course

        with Session(self.engine) as session:
            sub = session.get(Submission, submission_id)
            if sub is None:
                return "skipped", "the submission is gone"
            if sub.status not in COMPARED:
                return "skipped", f"{sub.status}: nothing of the zip was compared"
            assignment = session.get(AssignmentRow, sub.assignment_id)
            if assignment is None or assignment.name != self.spec.name:
                return "skipped", "another assignment"
            keep = kept_of(session, assignment_id=sub.assignment_id, student_id=sub.student_id)
            student, sha = sub.student_id, sub.archive_sha256
            archive = self.settings.upload_dir / f"{sub.archive_key}.zip"
        if submission_id not in keep:
            return "skipped", "neither the student's newest nor best upload"
        what = course.wanted(self.spec)
        scratch = Path(tempfile.mkdtemp(prefix="similarity-", dir=self.settings.grader.sandbox.work_dir))
        try:
            found = course.zip_evidence(archive, self.spec, what, scratch, predictions=predictions)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        with self._locked():
            index = self._current()
            pairs = index.add(str(submission_id), found, owner=str(student), tag=f"{sha}:{self.spec.version}")
            for sid, owner in self._storage_of(index).owners().items():
                if owner == str(student) and int(sid) not in keep:
                    index.remove(sid)
            self._tags = self._storage_of(index).tags()
        flagged = sum(p.flagged for p in pairs)
        notes = "; ".join(found.notes)
        return "done", f"{len(pairs)} pairs, {flagged} flagged" + (f"; {notes}" if notes else "")

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return index_lock(self.path)

    @staticmethod
    def _storage_of(index: SimilarityIndex) -> SqliteStorage:
        assert isinstance(index.storage, SqliteStorage)
        return index.storage

    def _current(self) -> SimilarityIndex:
        """The index in memory, loaded again when another process changed the file since."""
        from grader.similarity import course
        from grader.similarity.fromstore import ArchiveTensors
        from grader.similarity.index import Config, SimilarityIndex

        if self._index is not None and self._storage_of(self._index).tags() == self._tags:
            return self._index
        if self._index is not None:
            self._storage_of(self._index).close()
        labels, no_labels = course.labels(self.settings.grader, self.spec)
        if no_labels:
            log.info("similarity without prediction evidence: %s", no_labels)
        config = Config(labels=labels, template=course.template(self.spec))
        tensors = ArchiveTensors([], course.wanted(self.spec))
        tensors.archives = _UploadArchives(self.engine, self.settings.upload_dir)  # type: ignore[assignment]  # duck-typed: any mapping of id to archive path works
        self._index = SimilarityIndex(SqliteStorage(self.path), config, tensors=tensors)
        return self._index


# --------------------------------------------------------------------------- `grader similarity INSTANCE`


class InstanceSource:
    """The web app's instance as a source for ``grader similarity``: each student's newest and best
    compared upload, from its database and upload folder, into the index the worker updates."""

    what = "web app instance"

    def __init__(self, settings: WebSettings, assignment: Assignment) -> None:
        self.settings, self.assignment = settings, assignment
        self.index_path = index_path(settings, assignment.name)
        self.csv_path = self.index_path.with_suffix(".csv")

    def candidates(self, *, best: bool) -> list[Candidate]:
        """Newest and best per student, whatever ``best`` says: the index the web app keeps."""
        from grader.similarity.fromstore import Candidate
        from leaderboard.db import make_engine

        engine = make_engine(self.settings.db_url)
        try:
            with Session(engine) as session:
                name = self.assignment.name
                row = session.exec(select(AssignmentRow).where(AssignmentRow.name == name)).first()
                rows = _compared(session, assignment_id=row.id or 0) if row is not None else []
        finally:
            engine.dispose()
        by_student: dict[int, list[Submission]] = {}
        for sub in rows:
            by_student.setdefault(sub.student_id, []).append(sub)
        return [
            Candidate(str(sub.id), str(student), sub.archive_sha256, self.assignment.version,
                      self.settings.upload_dir / f"{sub.archive_key}.zip", sub.score or 0.0)
            for student, subs in sorted(by_student.items())
            for sub in kept(subs)
        ]

    def predictions(self, candidate: Candidate) -> Mapping[str, np.ndarray] | None:
        return None  # the judge's answers are kept only in the evidence the worker stored

    def scratch(self) -> Path:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".work-", dir=self.index_path.parent))

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return index_lock(self.index_path)


def open_instance(path: Path, assignment: Assignment) -> InstanceSource | None:
    """The ``grader.similarity`` entry point: an instance folder (uploads, and the SQLite database
    or ``LEADERBOARD_DATABASE_URL``) as a source; None when ``path`` is not one."""
    settings = WebSettings.from_env(instance_path=Path(path))
    if not settings.upload_dir.is_dir():
        return None
    if not settings.database_url and not (settings.instance_path / "leaderboard.db").is_file():
        return None
    return InstanceSource(settings, assignment)
