"""The leaderboard's ranking, public/private split, freeze and bonus, on both databases.

Results are recorded through the real crud path (upload, claim, record) with results in
the grading engine's JSON form; no worker is needed to rank."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from grader.config import Assignment, load_assignment
from leaderboard.db import make_engine, session_scope
from leaderboard.models import AssignmentRow
from leaderboard.ranking import BoardCache, compute_board, ensure_assignment, freeze_board, maybe_auto_freeze
from leaderboard.settings import WebSettings
from tests.leaderboard.factories import add_graded, result_data
from tests.leaderboard.helpers import Roster, add_roster

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(web_settings: WebSettings) -> Iterator[Any]:
    engine = make_engine(web_settings.db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def spec() -> Assignment:
    return load_assignment()


@pytest.fixture
def students(web_settings: WebSettings) -> Roster:
    return add_roster(web_settings, 8)


def board(engine: Any, spec: Assignment) -> Any:
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        return compute_board(session, spec=spec, assignment=row)


def grade(
    web_settings: WebSettings,
    spec: Assignment,
    engine: Any,
    students: Roster,
    who: str,
    *,
    minutes: int,
    tmp_path: Path,
    **kw: Any,
) -> int:
    return add_graded(
        web_settings,
        spec,
        student_id=students.ids[who],
        data=result_data(**kw),
        engine=engine,
        at=T0 + timedelta(minutes=minutes),
        tmp=tmp_path,
    )


def test_best_submission_per_student_ties_to_the_earlier(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    g = lambda who, m, final, **kw: grade(  # noqa: E731
        web_settings, spec, engine, students, who, minutes=m, tmp_path=tmp_path, final=final, **kw
    )
    g("s001", 1, (0.6, 0.6, 0.6))
    best1 = g("s001", 2, (0.9, 0.8, 0.7))
    g("s001", 3, (0.7, 0.7, 0.7))
    tie_late = g("s002", 5, (0.9, 0.8, 0.7))  # same value as s001's best, later
    g("s003", 4, (0.5, 0.5, 0.5))
    g("s003", 6, (0.99, 0.99, 0.99), status="crashed")  # failures never rank
    g("s004", 7, (0.99, 0.99, 0.99), status="invalid")
    b = board(engine, spec)
    assert [r.display_name for r in b.rows] == ["s-1", "s-2", "s-3"]
    assert [r.rank for r in b.rows] == [1, 2, 3]
    assert b.rows[0].submission_id == best1
    assert b.rows[1].submission_id == tie_late
    assert b.rows[0].uploads == 3
    assert b.rows[2].uploads == 2  # the crash counts as an upload, the invalid one would not
    assert b.rows[0].metrics["weighted"] == pytest.approx(0.6 * 0.9 + 0.3 * 0.8 + 0.1 * 0.7)
    assert b.rows[0].submitted_at == T0 + timedelta(minutes=2)
    assert [r.passed for r in b.rows] == [True, True, False]
    assert [r.bonus for r in b.rows] == [6, 5, 0]  # s-3 is below the pass line: no bonus place


def test_live_board_ranks_by_public_part_and_freeze_by_private(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    # s001 looks best on the public half but is worse on the rest (overfitting the board). On
    # the whole split s001 still leads (0.845 vs 0.75): only the private part reverses it.
    grade(
        web_settings,
        spec,
        engine,
        students,
        "s001",
        minutes=1,
        tmp_path=tmp_path,
        public=(0.99, 0.99, 0.99),
        private=(0.7, 0.7, 0.7),
        final=(0.845, 0.845, 0.845),
    )
    grade(
        web_settings,
        spec,
        engine,
        students,
        "s002",
        minutes=2,
        tmp_path=tmp_path,
        public=(0.7, 0.7, 0.7),
        private=(0.8, 0.8, 0.8),
        final=(0.75, 0.75, 0.75),
    )
    live = board(engine, spec)
    assert live.scope == "public"
    assert [r.display_name for r in live.rows] == ["s-1", "s-2"]
    assert live.rows[0].metrics["ORIG"] == pytest.approx(0.99)

    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        assert freeze_board(session, spec=spec, assignment=row, by="prof")
    final = board(engine, spec)
    assert final.scope == "final"
    assert final.frozen_at is not None
    assert [r.display_name for r in final.rows] == ["s-2", "s-1"]
    assert final.rows[0].metrics["ORIG"] == pytest.approx(0.8)
    assert [r.bonus for r in final.rows] == [6, 5]

    # Afterwards nothing moves it: a better upload, a second freeze.
    grade(
        web_settings,
        spec,
        engine,
        students,
        "s003",
        minutes=3,
        tmp_path=tmp_path,
        final=(1.0, 1.0, 1.0),
    )
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        assert not freeze_board(session, spec=spec, assignment=row, by="prof")
    again = board(engine, spec)
    assert [(r.display_name, r.value, r.bonus) for r in again.rows] == [
        (r.display_name, r.value, r.bonus) for r in final.rows
    ]


def test_public_fraction_one_behaves_like_the_original_board(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    full = replace(spec, public_fraction=1.0)
    grade(
        web_settings,
        full,
        engine,
        students,
        "s001",
        minutes=1,
        tmp_path=tmp_path,
        public=(0.95, 0.95, 0.95),
        final=(0.7, 0.7, 0.7),
    )
    grade(
        web_settings,
        full,
        engine,
        students,
        "s002",
        minutes=2,
        tmp_path=tmp_path,
        public=(0.85, 0.85, 0.85),
        final=(0.9, 0.9, 0.9),
    )
    b = board(engine, full)
    assert b.scope == "final"
    assert [r.display_name for r in b.rows] == ["s-2", "s-1"]


def test_auto_freeze_waits_for_the_deadline_and_pending_uploads(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    grade(web_settings, spec, engine, students, "s001", minutes=1, tmp_path=tmp_path)
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        assert not maybe_auto_freeze(session, spec=spec, assignment=row)  # before the deadline
    past = replace(spec, deadlines={**spec.deadlines, "bonus": T0 + timedelta(minutes=30)})
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=past)
        assert maybe_auto_freeze(session, spec=past, assignment=row)
    b = board(engine, past)
    assert b.frozen_at is not None
    assert len(b.rows) == 1


def test_cache_follows_every_new_result(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    cache = BoardCache()
    with Session(engine) as session:
        ensure_assignment(session, spec=spec)
        session.commit()
        first, scratch = cache.get(session, spec=spec)
        scratch["html"] = "rendered once"
        again, scratch_again = cache.get(session, spec=spec)
        assert again is first
        assert scratch_again["html"] == "rendered once"
    grade(web_settings, spec, engine, students, "s005", minutes=1, tmp_path=tmp_path)
    with Session(engine) as session:
        fresh, scratch = cache.get(session, spec=spec)
        assert fresh.version > first.version
        assert "html" not in scratch
        assert [r.display_name for r in fresh.rows] == ["s-5"]
        row = session.exec(select(AssignmentRow)).one()
        assert row.board_version == fresh.version


def test_incremental_board_agrees_with_ranking_every_submission(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    """``board_entry`` (kept per result) ranks exactly like a window over all submissions."""
    import random

    from leaderboard.models import utcnow
    from leaderboard.ranking import _ranked

    rng = random.Random(5)
    for m in range(30):
        who = f"s{rng.randrange(1, 9):03d}"
        value = rng.choice([0.5, 0.6, 0.7, 0.8])  # many ties on purpose
        grade(
            web_settings,
            spec,
            engine,
            students,
            who,
            minutes=m,
            tmp_path=tmp_path,
            public=(value, value, value),
            final=(value, value, rng.random()),
            status="graded" if m % 7 else "crashed",
        )
    live = board(engine, spec)
    with Session(engine) as session:
        every = _ranked(session, spec=spec, assignment_id=1, scope="public", cutoff=utcnow())
    assert [(r.student_id, r.submission_id, r.rank) for r in live.rows] == [
        (r.student_id, r.submission_id, r.rank) for r in every
    ]


def _course_class(web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster,
                  tmp_path: Path) -> None:
    """A class whose top scorer fails the NumPy part (the board once gave such a row "+6")."""
    g = lambda who, m, final, **kw: grade(  # noqa: E731
        web_settings, spec, engine, students, who, minutes=m, tmp_path=tmp_path,
        final=(final, final, final), **kw
    )
    g("s001", 1, 0.95, layer_failures=1)  # best value, but a NumPy layer test fails
    g("s002", 2, 0.90)  # passes every part
    g("s007", 3, 0.88, layer_failures=2)  # fails NumPy in its best upload ...
    g("s007", 8, 0.71)  # ... and passes every part in a later, lower one
    g("s003", 4, 0.85, mynet=0.60)  # MyNet below its 75 % line
    g("s004", 5, 0.80)
    g("s006", 6, 0.75)
    g("s005", 7, 0.60)  # below the 70 % line


def test_bonus_places_skip_students_who_did_not_pass_every_part(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    assert spec.bonus_requires_all_passed  # the course's rule is the shipped spec's
    _course_class(web_settings, spec, engine, students, tmp_path)
    live = board(engine, spec)
    # Ranks stay by the ranked value; the bonus places go to the next students who passed.
    assert [(r.display_name, r.rank, r.bonus) for r in live.rows] == [
        ("s-1", 1, 0), ("s-2", 2, 6), ("s-7", 3, 5), ("s-3", 4, 0), ("s-4", 5, 4), ("s-6", 6, 3),
        ("s-5", 7, 0),
    ]
    assert [r.bonus_withheld for r in live.rows] == [True, False, False, True, False, False, False]
    assert [r.passed for r in live.rows] == [True] * 6 + [False]  # the pass line stays by value
    assert live.to_dict()["rows"][0]["bonus"] == 0

    # The freeze uses the same rule, counting only uploads up to the cutoff: s007's complete
    # upload came later, so s007 keeps third place without a bonus.
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        assert freeze_board(session, spec=spec, assignment=row, by="prof",
                            cutoff=T0 + timedelta(minutes=7, seconds=30))
    final = board(engine, spec)
    assert [(r.display_name, r.rank, r.bonus) for r in final.rows] == [
        ("s-1", 1, 0), ("s-2", 2, 6), ("s-7", 3, 0), ("s-3", 4, 0), ("s-4", 5, 5), ("s-6", 6, 4),
        ("s-5", 7, 0),
    ]
    assert [r.bonus_withheld for r in final.rows] == [True, False, True, True, False, False, False]


def test_bonus_by_rank_alone_when_the_spec_says_so(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    by_rank = replace(spec, bonus_requires_all_passed=False)
    _course_class(web_settings, by_rank, engine, students, tmp_path)
    live = board(engine, by_rank)
    assert [(r.display_name, r.bonus) for r in live.rows] == [
        ("s-1", 6), ("s-2", 5), ("s-7", 4), ("s-3", 3), ("s-4", 2), ("s-6", 1), ("s-5", 0),
    ]
    assert not any(r.bonus_withheld for r in live.rows)
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=by_rank)
        assert freeze_board(session, spec=by_rank, assignment=row, by="prof")
    assert [r.bonus for r in board(engine, by_rank).rows] == [6, 5, 4, 3, 2, 1, 0]



def test_upgrading_a_running_course_fills_in_who_passed_every_part(
    web_settings: WebSettings, spec: Assignment, engine: Any, students: Roster, tmp_path: Path
) -> None:
    """Migration 0002 computes ``board_entry.all_passed_at`` for results recorded before it."""
    from leaderboard.db import downgrade, upgrade
    from leaderboard.models import BoardEntry

    _course_class(web_settings, spec, engine, students, tmp_path)

    def passed_at() -> dict[int, Any]:
        with Session(engine) as session:
            return {e.student_id: e.all_passed_at for e in session.exec(select(BoardEntry)).all()}

    kept = passed_at()
    assert sum(v is not None for v in kept.values()) == 4  # s002, s004, s006, s007
    assert kept[students.ids["s007"]] == T0 + timedelta(minutes=8)  # its later, complete upload
    engine.dispose()
    downgrade(web_settings.db_url, "0001")
    upgrade(web_settings.db_url)
    assert passed_at() == kept
    assert [r.bonus for r in board(engine, spec).rows] == [0, 6, 5, 0, 4, 3, 0]
