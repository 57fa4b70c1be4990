"""A `grader batch` results store as the source of similarity evidence.

Which submissions: each student's newest graded zip (and, with ``best``, their best-scoring
one when it is another zip). What is read of each is the assignment's (``course``); the
predictions come from the store (``v<version>.predictions.npz``, written by ``batch`` and
``regrade``; results graded before those were kept have none). The evidence is cached in a
``Storage`` by a tag of the zip and spec version, so only new zips are read.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from grader.batch.csvout import newest_per_student
from grader.batch.grading import store_entries
from grader.batch.store import ResultsStore
from grader.config import Assignment
from grader.result import Status
from grader.similarity import course
from grader.similarity.checkpoints import CheckpointUnreadable, float_arrays, load_tensors
from grader.similarity.evidence import Evidence, Wanted
from grader.similarity.storage import Storage

log = logging.getLogger(__name__)

NOT_COMPARED = (Status.INVALID, Status.GRADER_FAULT)  # nothing of the submission was looked at


@dataclass(frozen=True)
class Candidate:
    """One submission to compare: ``sid`` names it in the pairs, ``owner`` is its student."""

    sid: str
    owner: str
    sha256: str
    version: str
    archive: Path
    score: float

    @property
    def tag(self) -> str:
        """What its evidence was made from: the zip and the spec version of its predictions."""
        return f"{self.sha256}:{self.version}"


def candidates(store: ResultsStore, assignment: Assignment, *, best: bool = False) -> list[Candidate]:
    """Each student's newest compared zip (and best-scoring one, when ``best`` and another zip)."""
    entries = [
        e
        for e in store_entries(store, prefer_version=assignment.version)
        if e.result is not None
        and e.result.assignment == assignment.name
        and e.result.status not in NOT_COMPARED
    ]
    rows, _warnings = newest_per_student(entries)
    found: list[Candidate] = []
    for row in rows:
        entry = row.entry
        assert entry.result is not None
        found.append(
            Candidate(
                entry.student,
                entry.student,
                entry.sha256,
                entry.result.spec_version,
                store.archive(entry.sha256),
                entry.result.score,
            )
        )
        if best:
            top = max(
                (e for e in entries if e.student == entry.student),
                key=lambda e: (e.result.score if e.result else 0.0, e.mtime),
            )
            if top.sha256 != entry.sha256 and top.result is not None:
                found.append(
                    Candidate(
                        f"{entry.student} (best)",
                        entry.student,
                        top.sha256,
                        top.result.spec_version,
                        store.archive(top.sha256),
                        top.result.score,
                    )
                )
    return found


class _Kept(Protocol):
    def predictions(self, candidate: Candidate) -> Mapping[str, np.ndarray] | None: ...

    def scratch(self) -> Path: ...


def evidence_of(candidate: Candidate, source: _Kept, assignment: Assignment, what: Wanted,
                scratch: Path) -> Evidence:
    """The evidence of one stored zip, with the predictions its source kept of it."""
    return course.zip_evidence(candidate.archive, assignment, what, scratch,
                               predictions=source.predictions(candidate))


class ArchiveTensors:
    """The full tensors of a candidate's checkpoint, read from its stored zip, for exact cosines."""

    def __init__(self, found: list[Candidate], what: Wanted, *, keep: int = 6) -> None:
        self.archives = {c.sid: c.archive for c in found}
        self.what = what
        self.keep = keep
        self._cache: OrderedDict[tuple[str, str], Mapping[str, np.ndarray] | None] = OrderedDict()

    def __call__(self, sid: str, slot: str) -> Mapping[str, np.ndarray] | None:
        key = (sid, slot)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        loaded = self._read(sid, slot)
        self._cache[key] = loaded
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return loaded

    def _read(self, sid: str, slot: str) -> Mapping[str, np.ndarray] | None:
        archive = self.archives.get(sid)
        if archive is None:
            return None
        limit = self.what.max_checkpoint_bytes
        try:
            with zipfile.ZipFile(archive) as zf:
                names = set(zf.namelist())
                name = next((n for n in self.what.checkpoints.get(slot, ()) if n in names), None)
                if name is None or zf.getinfo(name).file_size > limit:
                    return None
                with zf.open(name) as fh:
                    data = fh.read(limit + 1)
            if len(data) > limit:
                return None
            return float_arrays(load_tensors(data, name))
        except (CheckpointUnreadable, OSError, zipfile.BadZipFile) as exc:
            log.info("no exact tensors of %s %s: %s", sid, slot, exc)
            return None


def refresh(
    storage: Storage,
    found: list[Candidate],
    source: _Kept,
    assignment: Assignment,
    what: Wanted,
    *,
    echo: Callable[[str], None],
) -> None:
    """Read the evidence of every candidate the storage lacks (or has of another zip or spec
    version), and forget submissions that are no longer candidates."""
    tags = storage.tags()
    for sid in set(tags) - {c.sid for c in found}:
        storage.delete(sid)
    todo = [c for c in found if tags.get(c.sid) != c.tag]
    if not todo:
        return
    echo(f"reading the evidence of {len(todo)} submissions ({len(found) - len(todo)} cached)")
    scratch = source.scratch()
    try:
        for number, candidate in enumerate(todo, start=1):
            evidence = evidence_of(candidate, source, assignment, what, scratch)
            storage.put(candidate.sid, candidate.owner, evidence, tag=candidate.tag)
            for note in evidence.notes:
                echo(f"  {candidate.sid}: {note}")
            if number % 25 == 0 or number == len(todo):
                echo(f"  {number}/{len(todo)} read")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
