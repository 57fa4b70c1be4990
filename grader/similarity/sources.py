"""Where ``grader similarity`` finds the submissions: a ``grader batch`` results store, or a source
another package declares (the web app's instance, under the ``grader.similarity`` entry point).

A source names each student's submissions to compare (``Candidate``), the predictions it kept
of one, where its index and CSV go, and a lock that keeps others (the web app's worker) from
changing the index meanwhile. grader imports nothing of the web app: the entry point does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from grader.config import Assignment

if TYPE_CHECKING:  # the command's --help does not load numpy and the batch store
    import numpy as np

    from grader.batch.store import ResultsStore
    from grader.similarity.fromstore import Candidate

ENTRY_POINTS = "grader.similarity"
INDEX_NAME = "similarity.sqlite"
CSV_NAME = "similarity.csv"


class Source(Protocol):
    """The submissions of one assignment, and where their similarity index is kept."""

    what: str  # "results store", "web app instance": for messages
    index_path: Path
    csv_path: Path

    def candidates(self, *, best: bool) -> list[Candidate]: ...

    def predictions(self, candidate: Candidate) -> Mapping[str, np.ndarray] | None: ...

    def scratch(self) -> Path:
        """A new, empty folder to unpack zips into (the caller removes it)."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while the index is refreshed and recomputed."""
        ...


class StoreSource:
    """A ``grader batch`` results store: its newest (and best) graded zip per student."""

    what = "results store"

    def __init__(self, store: ResultsStore, assignment: Assignment) -> None:
        self.store, self.assignment = store, assignment
        self.index_path = store.root / INDEX_NAME
        self.csv_path = store.root / CSV_NAME

    def candidates(self, *, best: bool) -> list[Candidate]:
        from grader.similarity.fromstore import candidates

        return candidates(self.store, self.assignment, best=best)

    def predictions(self, candidate: Candidate) -> Mapping[str, np.ndarray] | None:
        return self.store.predictions(candidate.sha256, candidate.version)

    def scratch(self) -> Path:
        return self.store.scratch()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield


class NotASource(Exception):
    """The path is none of the sources; ``message`` says what was looked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def open_source(path: Path, assignment: Assignment) -> Source:
    """The results store at ``path``, or the source a ``grader.similarity`` entry point finds there."""
    from grader.batch import BatchError
    from grader.batch.store import ResultsStore

    try:
        return StoreSource(ResultsStore.existing(path), assignment)
    except BatchError as exc:
        not_store = exc.message
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        opener: Callable[[Path, Assignment], Source | None] = entry.load()
        found = opener(path, assignment)
        if found is not None:
            return found
    raise NotASource(f"{not_store} (nor a web app instance folder with its database and uploads)")
