"""Batch and regrade: found zips -> skip what the store has -> grade in parallel -> store -> publish."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from grader.batch import BatchError
from grader.batch.csvout import Entry, Row, newest_per_student
from grader.batch.discover import Found
from grader.batch.progress import Progress
from grader.batch.run import Outcome, Task, run_tasks
from grader.batch.store import Record, ResultsStore, Source, merge_sources
from grader.config import Assignment, Settings
from grader.datasets.manifest import Manifest
from grader.faults import grade_or_fault
from grader.intake import sha256_file
from grader.result import GradeResult, Status
from grader.share import spec_for_jobs
from grader.warm import WarmPool, grade_warm, start_pool

log = logging.getLogger(__name__)

Publisher = Callable[..., Any]  # (settings, student_id, archive, result, *, filename) -> note
Echo = Callable[[str], None]
ManifestLoader = Callable[[], Manifest | None]  # called only when there is something to grade


def load_publisher() -> Publisher:
    """The leaderboard's ``record`` function, declared under the ``grader.publish`` entry point."""
    found = {ep.name: ep for ep in metadata.entry_points(group="grader.publish")}
    if "record" not in found:
        raise BatchError("--publish needs the leaderboard (it declares the grader.publish entry point); "
                         "install this project with scripts/setup.sh, or leave out --publish")
    return found["record"].load()


@dataclass
class Report:
    """What a batch or regrade did; ``rows`` is empty when it was interrupted."""

    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    submissions: int = 0
    graded_now: int = 0
    skipped: int = 0
    faults: int = 0
    interrupted: bool = False
    statuses: Counter[str] = field(default_factory=Counter)
    published: int = 0
    not_published: int = 0
    lines: list[str] = field(default_factory=list)  # regrade: one per student
    changes: int = 0


def _filename(label: str) -> str:
    name = label.rstrip("/").rsplit("/", 1)[-1]
    return name if name.lower().endswith(".zip") else f"{name}.zip"


def _label(group: list[Found] | list[Source]) -> str:
    first = group[0]
    name = first.label if isinstance(first, Found) else first.name
    students = list(dict.fromkeys(g.student for g in group))
    if len(group) == 1:
        return f"{first.student} ({name})"
    return f"{', '.join(students)} ({len(group)} identical zips)"


class _Batch:
    """The state of one ``grader batch`` run."""

    def __init__(self, found: list[Found], *, store: ResultsStore, assignment: Assignment,
                 settings: Settings, manifest: ManifestLoader, jobs: int, force: bool,
                 publisher: Publisher | None, stream: TextIO, echo: Echo) -> None:
        self.found = found
        self.store = store
        self.assignment = assignment
        self.version = assignment.version
        self.settings = settings
        self.load_manifest = manifest
        self.manifest: Manifest | None = None
        self.jobs = jobs
        self.force = force
        self.publisher = publisher
        self.stream = stream
        self.echo = echo
        self.graded_spec, self.cpus = spec_for_jobs(assignment, jobs, settings.sandbox)
        self.by_sha: dict[str, list[Found]] = {}
        self.sha_of: dict[int, str] = {}
        self.problems: dict[int, str] = {}
        self.notes: dict[tuple[str, str], str] = {}
        self.report = Report(submissions=len(found))
        self.progress: Progress | None = None
        self.predictions: dict[str, dict[str, np.ndarray]] = {}  # by zip, from grade() until kept
        self.pool: WarmPool | None = None

    def sources(self, sha: str) -> tuple[Source, ...]:
        return tuple(Source(f.student, f.label, f.mtime) for f in self.by_sha[sha])

    def hash_all(self) -> None:
        for index, item in enumerate(self.found):
            if item.archive is None:
                continue
            try:
                sha = sha256_file(item.archive)
            except OSError as exc:
                self.problems[index] = f"the zip cannot be read ({exc.strerror}); not graded."
                continue
            self.sha_of[index] = sha
            self.by_sha.setdefault(sha, []).append(item)

    def plan(self) -> tuple[list[Task], list[str]]:
        tasks: list[Task] = []
        skipped: list[str] = []
        for sha, group in self.by_sha.items():
            record = self.store.get(sha, self.version)
            fresh = record is not None and record.done and record.assignment == self.assignment.name
            if record is not None and fresh and not self.force:
                merged = merge_sources(record.sources, self.sources(sha))
                if merged != record.sources:
                    self.store.put(replace(record, sources=merged))
                skipped.append(sha)
                self.report.skipped += len(group)
            else:
                tasks.append(Task(sha, group[0].archive or Path(), _label(group)))
        return tasks, skipped

    # ---- called by the runner

    def grade(self, task: Task, cancel: threading.Event) -> GradeResult:
        predictions: dict[str, np.ndarray] = {}
        result = grade_or_fault(
            lambda: grade_warm(self.pool, task.archive, self.graded_spec, self.settings,
                               manifest=self.manifest, predictions=predictions, cancel=cancel),
            self.graded_spec, label=str(task.archive), submission_sha256=task.sha256)
        self.predictions[task.sha256] = predictions
        return result

    def keep(self, outcome: Outcome) -> None:
        """In the grading thread, as soon as the zip is graded: archive first, then the record."""
        sha = outcome.task.sha256
        self.store.keep_archive(sha, outcome.task.archive)
        self.store.put_predictions(sha, self.version, self.predictions.pop(sha, {}))
        previous = self.store.latest(sha)
        self.store.put(Record(
            sha256=sha, assignment=self.assignment.name, spec_version=self.version,
            result=outcome.result,
            sources=merge_sources(previous.sources if previous else (), self.sources(sha)),
            started_at=outcome.started_at, finished_at=outcome.finished_at, sandbox_cpus=self.cpus,
        ))

    def done(self, outcome: Outcome) -> None:
        assert self.progress is not None
        self.progress.add(outcome.task.label, outcome.result, outcome.seconds)
        self.report.graded_now += len(self.by_sha[outcome.task.sha256])
        self.publish(outcome.task.sha256)

    # ---- publishing

    def publish(self, sha: str) -> None:
        if self.publisher is None:
            return
        record = self.store.get(sha, self.version)
        if record is None or not record.done:
            return
        published = list(record.published)
        for item in self.by_sha[sha]:
            key = (item.student, sha)
            if item.student in published:
                self.notes[key] = "already published"
                continue
            try:
                text = self.publisher(self.settings, item.student, self.store.archive(sha), record.result,
                                      filename=_filename(item.label))
            except Exception as exc:  # unknown student, database down: a note on the row, not a stop
                message = str(exc) or type(exc).__name__
                self.notes[key] = f"not published: {message}"
                self.report.not_published += 1
                self._say(f"{item.student} ({item.label}): not published: {message}")
                continue
            self.notes[key] = f"published ({text})" if text else "published"
            self.report.published += 1
            published.append(item.student)
        if tuple(published) != record.published:
            self.store.put(replace(record, published=tuple(published)))

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.note(text)
        else:
            self.echo(text)

    # ---- the whole run

    def run(self) -> Report:
        self.hash_all()
        tasks, skipped = self.plan()
        students = len({f.student for f in self.found})
        self.echo(
            f"{len(self.found)} submissions of {students} students: {self.report.skipped} already graded "
            f"under spec {self.version} (skipped; --force grades them again), {len(tasks)} distinct zips "
            f"to grade with {self.jobs} job{'s' if self.jobs != 1 else ''}, "
            f"{self.cpus:g} CPU{'s' if self.cpus != 1 else ''} per sandbox"
        )
        for sha in skipped:
            self.publish(sha)
        if tasks:
            self.manifest = self.load_manifest()
            self.pool = start_pool(self.graded_spec, self.settings, self.manifest, size=self.jobs)
        self.progress = Progress(len(tasks), stream=self.stream, jobs=self.jobs)
        try:
            _outcomes, interrupted = run_tasks(tasks, grade=self.grade, jobs=self.jobs, keep=self.keep,
                                               on_done=self.done, tick=self.progress.tick)
        finally:
            self.progress.close()
            if self.pool is not None:
                self.pool.close()
        self.report.interrupted = interrupted
        if not interrupted:
            self._rows()
        return self.report

    def _rows(self) -> None:
        entries: list[Entry] = []
        for index, item in enumerate(self.found):
            sha = self.sha_of.get(index, "")
            problem = item.problem or self.problems.get(index, "")
            record = self.store.get(sha, self.version) if sha and not problem else None
            if sha and not problem and record is None:
                problem = "no result was stored for this zip; run the batch again."
            entries.append(Entry(item.student, item.label, item.mtime, sha,
                                 record.result if record else None, problem,
                                 self.notes.get((item.student, sha), "")))
        for entry in entries:
            status = str(entry.result.status) if entry.result else str(Status.INVALID)
            self.report.statuses[status] += 1
            if entry.result is not None and entry.result.status is Status.GRADER_FAULT:
                self.report.faults += 1
        self.report.rows, self.report.warnings = newest_per_student(entries)


def batch_grade(
    found: list[Found],
    *,
    store: ResultsStore,
    assignment: Assignment,
    settings: Settings,
    manifest: ManifestLoader,
    jobs: int,
    force: bool = False,
    publisher: Publisher | None = None,
    stream: TextIO,
    echo: Echo,
) -> Report:
    """Grade every found zip not yet graded under this spec version, store each result as it comes."""
    return _Batch(found, store=store, assignment=assignment, settings=settings, manifest=manifest,
                  jobs=jobs, force=force, publisher=publisher, stream=stream, echo=echo).run()


# --------------------------------------------------------------------------- from a store


def store_entries(store: ResultsStore, *, prefer_version: str = "") -> list[Entry]:
    """One entry per (zip, student it came from), with the zip's record of ``prefer_version``
    if it has one, else its latest."""
    entries: list[Entry] = []
    for sha in store.shas():
        record = (store.get(sha, prefer_version) if prefer_version else None) or store.latest(sha)
        if record is None:
            continue
        sources = merge_sources(*(r.sources for r in store.records(sha)))
        for source in sources:
            entries.append(Entry(source.student, source.name, source.mtime, sha, record.result))
    return entries


def regrade_store(
    store: ResultsStore,
    *,
    assignment: Assignment,
    settings: Settings,
    manifest: ManifestLoader,
    jobs: int,
    stream: TextIO,
    echo: Echo,
) -> Report:
    """Grade every zip of the store again under the current spec; old and new score per student."""
    report = Report()
    graded_spec, cpus = spec_for_jobs(assignment, jobs, settings.sandbox)
    before: dict[str, Record] = {}
    tasks: list[Task] = []
    problems: dict[str, str] = {}
    for sha in store.shas():
        records = store.records(sha)
        if not records:
            continue
        before[sha] = records[-1]
        sources = merge_sources(*(r.sources for r in records))
        archive = store.archive(sha)
        if not archive.is_file():
            problems[sha] = "its zip is missing from the store"
        elif sha256_file(archive) != sha:
            problems[sha] = "its zip in the store changed after it was graded"
        else:
            tasks.append(Task(sha, archive, _label(list(sources))))
    report.submissions = len(before)
    newest, _ = newest_per_student(store_entries(store))  # each student's newest zip
    echo(f"regrading {len(tasks)} zips of {len(newest)} students under spec {assignment.version} "
         f"with {jobs} job{'s' if jobs != 1 else ''}, {cpus:g} CPU{'s' if cpus != 1 else ''} per sandbox")

    predictions: dict[str, dict[str, np.ndarray]] = {}

    def grade(task: Task, cancel: threading.Event) -> GradeResult:
        found: dict[str, np.ndarray] = {}
        result = grade_or_fault(
            lambda: grade_warm(pool, task.archive, graded_spec, settings, manifest=loaded,
                               predictions=found, cancel=cancel),
            graded_spec, label=str(task.archive), submission_sha256=task.sha256)
        predictions[task.sha256] = found
        return result

    def keep(outcome: Outcome) -> None:
        sha = outcome.task.sha256
        store.put_predictions(sha, assignment.version, predictions.pop(sha, {}))
        store.put(Record(
            sha256=sha, assignment=assignment.name, spec_version=assignment.version,
            result=outcome.result, sources=merge_sources(*(r.sources for r in store.records(sha))),
            started_at=outcome.started_at, finished_at=outcome.finished_at, sandbox_cpus=cpus,
        ))

    loaded = manifest() if tasks else None
    pool = start_pool(graded_spec, settings, loaded, size=jobs)
    progress = Progress(len(tasks), stream=stream, jobs=jobs)
    try:
        outcomes, report.interrupted = run_tasks(
            tasks, jobs=jobs, keep=keep, tick=progress.tick, grade=grade,
            on_done=lambda o: progress.add(o.task.label, o.result, o.seconds))
    finally:
        progress.close()
        if pool is not None:
            pool.close()
    after = {o.task.sha256: o.result for o in outcomes}
    report.graded_now = len(after)
    for row in newest:
        student, sha = row.entry.student, row.entry.sha256
        old = before[sha].result
        new = after.get(sha)
        if new is None:
            why = problems.get(sha, "not regraded (interrupted)")
            report.lines.append(f"{student}: {old.score:g} (kept: {why})")
            continue
        changed = (old.score, old.status, old.passed) != (new.score, new.status, new.passed)
        report.changes += changed
        statuses = f" ({old.status} -> {new.status})" if old.status != new.status else ""
        report.lines.append(f"{student}: {old.score:g} -> {new.score:g}{statuses}"
                            f"{'  CHANGED' if changed else ''}")
        report.statuses[str(new.status)] += 1
        report.faults += new.status is Status.GRADER_FAULT
    report.warnings = [f"{_label(list(before[sha].sources))}: {why}; not regraded"
                       for sha, why in problems.items()]
    return report
