"""Where the evidence and the pairs are kept: a small interface, a dict, and one SQLite file.

The index keeps its working arrays in memory and asks a ``Storage`` only to load everything
once and to keep what changes. The web app can implement the same five methods on its own
database; ``SqliteStorage`` is the one file the command line uses (``similarity.sqlite``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from grader.similarity.evidence import Evidence
from grader.similarity.signals import Pair, ranked

log = logging.getLogger(__name__)


class Storage(Protocol):
    """Evidence by submission id (with its owner and a caller's tag), and the stored pairs."""

    def load(self) -> Iterator[tuple[str, str, Evidence]]:
        """Every (id, owner, evidence), in the order they were first put."""
        ...

    def put(self, submission_id: str, owner: str, evidence: Evidence, *, tag: str = "") -> None: ...

    def delete(self, submission_id: str) -> None:
        """Forget a submission's evidence and every pair it is in."""
        ...

    def tags(self) -> dict[str, str]:
        """id -> the tag it was put with (e.g. the zip's SHA-256 and spec version)."""
        ...

    def put_pairs(self, submission_id: str, pairs: Sequence[Pair]) -> None:
        """Replace every stored pair of ``submission_id`` by ``pairs``."""
        ...

    def replace_pairs(self, pairs: Sequence[Pair]) -> None:
        """Replace all stored pairs."""
        ...

    def pairs(self) -> list[Pair]: ...


class MemoryStorage:
    """Everything in dicts: for tests, benchmarks and one-off runs."""

    def __init__(self) -> None:
        self._evidence: dict[str, tuple[str, Evidence, str]] = {}
        self._pairs: dict[tuple[str, str], Pair] = {}

    def load(self) -> Iterator[tuple[str, str, Evidence]]:
        for sid, (owner, evidence, _tag) in list(self._evidence.items()):
            yield sid, owner, evidence

    def put(self, submission_id: str, owner: str, evidence: Evidence, *, tag: str = "") -> None:
        self._evidence[submission_id] = (owner, evidence, tag)

    def delete(self, submission_id: str) -> None:
        self._evidence.pop(submission_id, None)
        self._pairs = {k: p for k, p in self._pairs.items() if submission_id not in k}

    def tags(self) -> dict[str, str]:
        return {sid: tag for sid, (_o, _e, tag) in self._evidence.items()}

    def put_pairs(self, submission_id: str, pairs: Sequence[Pair]) -> None:
        self._pairs = {k: p for k, p in self._pairs.items() if submission_id not in k}
        self._pairs.update({(p.a, p.b): p for p in pairs})

    def replace_pairs(self, pairs: Sequence[Pair]) -> None:
        self._pairs = {(p.a, p.b): p for p in pairs}

    def pairs(self) -> list[Pair]:
        return list(self._pairs.values())


class SqliteStorage:
    """One SQLite file: ``evidence(id, owner, tag, data)`` and ``pairs(a, b, score, data)``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS evidence (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "id TEXT UNIQUE NOT NULL, owner TEXT NOT NULL, tag TEXT NOT NULL, data BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pairs (a TEXT NOT NULL, b TEXT NOT NULL, "
                "score REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (a, b))"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS pairs_b ON pairs (b)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStorage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def load(self) -> Iterator[tuple[str, str, Evidence]]:
        """Every stored evidence; one that no longer reads (damaged, an old format) is dropped, so
        the next ``grader similarity`` reads its zip again."""
        damaged = []
        for sid, owner, data in self._db.execute("SELECT id, owner, data FROM evidence ORDER BY seq"):
            try:
                found = Evidence.from_bytes(data)
            except ValueError as exc:
                log.warning("dropping the stored evidence of %s: %s", sid, exc)
                damaged.append(sid)
                continue
            yield sid, owner, found
        for sid in damaged:
            self.delete(sid)

    def put(self, submission_id: str, owner: str, evidence: Evidence, *, tag: str = "") -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO evidence (id, owner, tag, data) VALUES (?, ?, ?, ?) ON CONFLICT(id) "
                "DO UPDATE SET owner=excluded.owner, tag=excluded.tag, data=excluded.data",
                (submission_id, owner, tag, evidence.to_bytes()),
            )

    def delete(self, submission_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM evidence WHERE id = ?", (submission_id,))
            self._db.execute("DELETE FROM pairs WHERE a = ? OR b = ?", (submission_id, submission_id))

    def tags(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT id, tag FROM evidence"))

    def _insert(self, pairs: Sequence[Pair]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO pairs (a, b, score, data) VALUES (?, ?, ?, ?)",
            [(p.a, p.b, p.score, json.dumps(p.to_dict())) for p in pairs],
        )

    def put_pairs(self, submission_id: str, pairs: Sequence[Pair]) -> None:
        with self._db:
            self._db.execute("DELETE FROM pairs WHERE a = ? OR b = ?", (submission_id, submission_id))
            self._insert(pairs)

    def replace_pairs(self, pairs: Sequence[Pair]) -> None:
        with self._db:
            self._db.execute("DELETE FROM pairs")
            self._insert(pairs)

    def pairs(self) -> list[Pair]:
        return [
            Pair.from_dict(json.loads(data))
            for (data,) in self._db.execute("SELECT data FROM pairs ORDER BY score DESC")
        ]

    # ---- reads for a page: a slice, not everything

    def top_pairs(self, limit: int, offset: int = 0) -> list[Pair]:
        """The ``limit`` highest-scoring stored pairs after ``offset``, ranked (a page of them)."""
        rows = self._db.execute(
            "SELECT data FROM pairs ORDER BY score DESC, a, b LIMIT ? OFFSET ?", (limit, offset)
        )
        return ranked([Pair.from_dict(json.loads(data)) for (data,) in rows])

    def count_pairs(self, *, min_score: float = 0.0) -> int:
        """How many stored pairs score at least ``min_score``."""
        row = self._db.execute("SELECT count(*) FROM pairs WHERE score >= ?", (min_score,)).fetchone()
        return int(row[0])

    def pair(self, a: str, b: str) -> Pair | None:
        """One stored pair (either order), or None."""
        first, second = sorted((a, b))
        row = self._db.execute("SELECT data FROM pairs WHERE a = ? AND b = ?", (first, second)).fetchone()
        return Pair.from_dict(json.loads(row[0])) if row else None

    def evidence(self, submission_id: str) -> Evidence | None:
        """One submission's stored evidence, or None (absent, or no longer readable)."""
        row = self._db.execute("SELECT data FROM evidence WHERE id = ?", (submission_id,)).fetchone()
        if row is None:
            return None
        try:
            return Evidence.from_bytes(row[0])
        except ValueError:
            return None

    def owners(self) -> dict[str, str]:
        """id -> owner of every stored evidence."""
        return dict(self._db.execute("SELECT id, owner FROM evidence"))
