"""What the staff's Similarity pages show, read from the assignment's stored index (kept up to
date by ``leaderboard.similarity``): the ranked pairs with both students and the state of the
updates, and one pair's evidence with both code files side by side. Nothing is compared here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlmodel import Session, col, select

from grader.config import Assignment
from grader.similarity.signals import PAIR_LINE, FlagLines, Kind, Pair, Signal, flag_line_text
from grader.similarity.storage import SqliteStorage
from leaderboard.models import Submission
from leaderboard.settings import WebSettings
from leaderboard.similarity import Update, UpdateLog, index_path, newest_compared

SHARED_START_NOTE = (
    "Fine-tuned models share their pretrained backbone by design, so their raw weights agree "
    "closely without any copying: that signal is weak for them. What tells is the trained head "
    "and the changes from the common start (the cosine of the changes, measured from the starting "
    "checkpoint when it is known, else from the mean of the other submissions)."
)


@dataclass(frozen=True)
class Side:
    """One submission of a pair, with its student (None when the row is gone)."""

    submission_id: int
    roster_id: str
    name: str


@dataclass(frozen=True)
class PairRow:
    rank: int
    pair: Pair
    a: Side
    b: Side


@dataclass(frozen=True)
class Overview:
    """What the Similarity page shows: a page of ranked pairs and the state of the updates."""

    rows: list[PairRow]
    total: int  # stored pairs (at or above the engine's floor)
    flagged: int  # of them, at or above the pair flag line
    compared: int  # submissions in the index
    pending: list[int]  # students' newest compared submissions not in the index yet
    failed: list[Update]


@dataclass(frozen=True)
class CodeLine:
    number: int
    text: str
    shared: bool


@dataclass(frozen=True)
class CodePanes:
    """One source file of both submissions, line by line, shared passages marked."""

    file: str
    a: list[CodeLine] | None  # None: the submission has no such file
    b: list[CodeLine] | None
    signal: Signal | None


def _sides(session: Session, ids: set[int]) -> dict[int, Side]:
    from leaderboard.models import Student

    if not ids:
        return {}
    rows = session.exec(
        select(Submission.id, Student.roster_id, Student.name)
        .join(Student, col(Student.id) == col(Submission.student_id))
        .where(col(Submission.id).in_(sorted(ids)))
    ).all()
    return {int(i or 0): Side(int(i or 0), r, n) for i, r, n in rows}


def _side(sides: dict[int, Side], sid: str) -> Side:
    return sides.get(int(sid), Side(int(sid), "?", "(submission deleted)"))


@contextlib.contextmanager
def _storage(settings: WebSettings, spec: Assignment) -> Iterator[SqliteStorage | None]:
    path = index_path(settings, spec.name)
    if not path.is_file():
        yield None
        return
    storage = SqliteStorage(path)
    try:
        yield storage
    finally:
        storage.close()


def overview(session: Session, *, settings: WebSettings, spec: Assignment, assignment_id: int,
             page: int = 1, per_page: int = 100) -> Overview:
    """A page of the stored pairs, ranked, with both students; no comparison happens here."""
    newest = newest_compared(session, assignment_id=assignment_id)
    with _storage(settings, spec) as storage:
        if storage is None:
            return Overview([], 0, 0, 0, newest, [])
        pairs = storage.top_pairs(per_page, (page - 1) * per_page)
        total, flagged = storage.count_pairs(), storage.count_pairs(min_score=PAIR_LINE)
        held = storage.tags()
    with contextlib.closing(UpdateLog(index_path(settings, spec.name))) as updates:
        failed = updates.with_state("failed")
    failed = [u for u in failed if str(u.submission_id) not in held]  # added since, by `grader similarity`
    failed_ids = {u.submission_id for u in failed}
    sides = _sides(session, {int(s) for p in pairs for s in (p.a, p.b)})
    rows = [
        PairRow((page - 1) * per_page + i, p, _side(sides, p.a), _side(sides, p.b))
        for i, p in enumerate(pairs, start=1)
    ]
    pending = [i for i in newest if str(i) not in held and i not in failed_ids]
    return Overview(rows, total, flagged, len(held), pending, failed)


def _lines(text: str, ranges: list[list[int]]) -> list[CodeLine]:
    shared = {n for first, last in ranges for n in range(int(first), int(last) + 1)}
    return [CodeLine(n, line, n in shared) for n, line in enumerate(text.splitlines(), start=1)]


@dataclass(frozen=True)
class PairDetail:
    pair: Pair
    a: Side
    b: Side
    code: list[CodePanes]
    shared_start: bool  # a weights signal says the models share a start


def pair_detail(
    session: Session, *, settings: WebSettings, spec: Assignment, a: int, b: int
) -> PairDetail | None:
    """One stored pair with both code files side by side; None when the index has no such pair."""
    from grader.similarity import course

    with _storage(settings, spec) as storage:
        if storage is None or (pair := storage.pair(str(a), str(b))) is None:
            return None
        evidence = {sid: storage.evidence(sid) for sid in (pair.a, pair.b)}
    sides = _sides(session, {int(pair.a), int(pair.b)})
    panes = []
    for file in course.wanted(spec).code:
        signal = next((s for s in pair.signals if s.kind == Kind.CODE and s.subject == file), None)
        data = signal.data if signal else {}
        texts = [
            found.code[file].text if found is not None and file in found.code else None
            for found in (evidence[pair.a], evidence[pair.b])
        ]
        panes.append(CodePanes(
            file,
            _lines(texts[0], data.get("lines_a", [])) if texts[0] is not None else None,
            _lines(texts[1], data.get("lines_b", [])) if texts[1] is not None else None,
            signal,
        ))
    shared_start = any(s.data.get("shared_start") for s in pair.signals if s.kind == Kind.WEIGHTS_RAW)
    return PairDetail(pair, _side(sides, pair.a), _side(sides, pair.b), panes, shared_start)


def legend(lines: FlagLines | None = None) -> list[tuple[str, str]]:
    """(signal, when it is flagged and how strong it is) for every kind of signal."""
    lines = lines or FlagLines()
    return [(str(kind), flag_line_text(kind, lines)) for kind in Kind]
