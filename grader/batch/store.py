"""The results store of a batch: one JSON record per (zip SHA-256, spec version), zips kept.

    <store>/
      archives/<sha256>.zip             a hard link to (or a copy of) each graded zip, for regrade
      results/<sha256>/v<version>.json  the record: result, the students and files it came from,
                                        wall-clock start and end, the sandbox's CPU share
      results/<sha256>/v<version>.predictions.npz
                                        the class indices the judge scored, by "<part>/<split>"
                                        (small int arrays, for `grader similarity`)
      .lock                             held by the one batch or regrade using the store
      .work-*/                          scratch (an unpacked outer zip, zipped-up folders)

Every file is written under a temporary name and renamed into place, so a batch killed at
any moment leaves the old record or the new one, never half of one; what a killed run left
in scratch is removed by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from grader.batch import BatchError
from grader.result import GradeResult, Status
from grader.text import dump_json

log = logging.getLogger(__name__)

FORMAT = 1
SHA_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Source:
    """Where a zip was found: the student it belongs to, its name, its modification time."""

    student: str
    name: str
    mtime: float

    def to_dict(self) -> dict[str, Any]:
        return {"student": self.student, "name": self.name, "mtime": self.mtime}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Source:
        return cls(str(data["student"]), str(data.get("name", "")), float(data.get("mtime", 0.0)))


@dataclass(frozen=True)
class Record:
    """One zip graded under one spec version, and what the batch knows about it."""

    sha256: str
    assignment: str
    spec_version: str
    result: GradeResult
    sources: tuple[Source, ...] = ()
    started_at: float = 0.0  # wall clock, seconds since the epoch
    finished_at: float = 0.0
    sandbox_cpus: float = 0.0
    published: tuple[str, ...] = ()  # students this result was recorded for in the leaderboard
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Graded for good: a grader fault is ours, so the next run tries again."""
        return self.result.status is not Status.GRADER_FAULT

    @property
    def students(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.student for s in self.sources))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sha256": self.sha256,
            "assignment": self.assignment,
            "spec_version": self.spec_version,
            "sources": [s.to_dict() for s in self.sources],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "sandbox_cpus": self.sandbox_cpus,
            "published": list(self.published),
            **dict(self.extra),
            "result": self.result.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        known = {"format", "sha256", "assignment", "spec_version", "sources", "started_at",
                 "finished_at", "sandbox_cpus", "published", "result"}
        return cls(
            sha256=str(data["sha256"]),
            assignment=str(data.get("assignment", "")),
            spec_version=str(data.get("spec_version", "")),
            result=GradeResult.from_dict(data["result"]),
            sources=tuple(Source.from_dict(s) for s in data.get("sources", [])),
            started_at=float(data.get("started_at", 0.0)),
            finished_at=float(data.get("finished_at", 0.0)),
            sandbox_cpus=float(data.get("sandbox_cpus", 0.0)),
            published=tuple(str(s) for s in data.get("published", [])),
            extra={k: v for k, v in data.items() if k not in known},
        )


def merge_sources(*groups: tuple[Source, ...] | list[Source]) -> tuple[Source, ...]:
    """All sources, once each (by student and name), in the order first seen."""
    merged: dict[tuple[str, str], Source] = {}
    for group in groups:
        for source in group:
            merged.setdefault((source.student, source.name), source)
    return tuple(merged.values())


def _compact(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    small = np.int8 if values.size == 0 or (values.min() >= -128 and values.max() < 128) else np.int32
    return values.astype(small)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ResultsStore:
    """A results store folder; see the module docstring for its layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.archives = self.root / "archives"
        self.results = self.root / "results"
        self._lock_fd: int | None = None

    # ---- opening

    @staticmethod
    def is_store(path: Path) -> bool:
        return (Path(path) / "results").is_dir()

    @classmethod
    def create(cls, root: Path) -> ResultsStore:
        """Open the store at ``root``, making it if needed; BatchError if that is impossible."""
        store = cls(root)
        if root.exists() and not root.is_dir():
            raise BatchError(f"the results store {root} is a file, not a folder")
        if root.is_dir() and any(root.iterdir()) and not cls.is_store(root):
            raise BatchError(f"{root} is not empty and is not a results store; choose another --json-dir")
        try:
            store.archives.mkdir(parents=True, exist_ok=True)
            store.results.mkdir(exist_ok=True)
        except OSError as exc:
            raise BatchError(f"cannot make the results store {root}: {exc.strerror}") from None
        return store

    @classmethod
    def existing(cls, root: Path) -> ResultsStore:
        if not root.is_dir():
            raise BatchError(f"{root}: no such folder")
        if not cls.is_store(root):
            raise BatchError(f"{root} is not a results store (it has no results/ folder); "
                             "give the folder `grader batch` wrote next to its CSV, or its --json-dir")
        return cls(root)

    @contextlib.contextmanager
    def locked(self) -> Iterator[ResultsStore]:
        """Hold the store for one batch or regrade; sweeps what a killed run left behind."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BatchError(f"another `grader batch` or `grader regrade` is using {self.root}; "
                             "wait for it to finish") from None
        self._lock_fd = fd
        try:
            self._sweep()
            yield self
        finally:
            self._lock_fd = None
            os.close(fd)

    def _sweep(self) -> None:
        for scratch in self.root.glob(".work-*"):
            shutil.rmtree(scratch, ignore_errors=True)
        for tmp in [*self.archives.glob(".*.tmp"), *self.results.glob("*/.*.tmp")]:
            tmp.unlink(missing_ok=True)

    def scratch(self) -> Path:
        """A new scratch folder inside the store (same file system, so archives can be hard links)."""
        return Path(tempfile.mkdtemp(prefix=".work-", dir=self.root))

    # ---- records

    def record_path(self, sha256: str, version: str) -> Path:
        return self.results / sha256 / f"v{quote(version, safe='')}.json"

    def get(self, sha256: str, version: str) -> Record | None:
        return self._read(self.record_path(sha256, version))

    def records(self, sha256: str) -> list[Record]:
        """Every record of one zip, oldest first."""
        found = (self._read(p) for p in sorted((self.results / sha256).glob("v*.json")))
        return sorted((r for r in found if r is not None), key=lambda r: r.finished_at)

    def latest(self, sha256: str) -> Record | None:
        records = self.records(sha256)
        return records[-1] if records else None

    def shas(self) -> list[str]:
        """The zips with at least one record, sorted."""
        if not self.results.is_dir():
            return []
        return sorted(p.name for p in self.results.iterdir() if p.is_dir() and SHA_RE.fullmatch(p.name))

    def _read(self, path: Path) -> Record | None:
        try:
            return Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable record %s: %s", path, exc)
            return None

    def put(self, record: Record) -> Path:
        """Write one record atomically (replacing the one of the same zip and version)."""
        path = self.record_path(record.sha256, record.spec_version)
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, (dump_json(record.to_dict(), indent=2) + "\n").encode())
        return path

    # ---- predictions (for `grader similarity`)

    def predictions_path(self, sha256: str, version: str) -> Path:
        return self.results / sha256 / f"v{quote(version, safe='')}.predictions.npz"

    def put_predictions(self, sha256: str, version: str, predictions: Mapping[str, np.ndarray]) -> None:
        """Keep the judged class indices of one zip (by "<part>/<split>"), in the smallest int type;
        none (a zip graded again without any) removes what was kept."""
        path = self.predictions_path(sha256, version)
        if not predictions:
            path.unlink(missing_ok=True)
            return
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {key: _compact(values) for key, values in predictions.items()}
        np.savez_compressed(buffer, **arrays)  # Any: numpy's stub would match ** to allow_pickle
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, buffer.getvalue())

    def predictions(self, sha256: str, version: str) -> dict[str, np.ndarray]:
        """The kept class indices of one zip under one spec version ({} when none were kept)."""
        try:
            with np.load(self.predictions_path(sha256, version), allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, EOFError) as exc:
            log.warning("ignoring the unreadable predictions of %s: %s", sha256, exc)
            return {}

    # ---- archives

    def archive(self, sha256: str) -> Path:
        return self.archives / f"{sha256}.zip"

    def keep_archive(self, sha256: str, source: Path) -> Path:
        """Keep the zip for later regrades: a hard link where possible, else a copy."""
        target = self.archive(sha256)
        if target.is_file():
            return target
        tmp = self.archives / f".{sha256}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return target
