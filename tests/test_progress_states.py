"""What the grading reports of each part while it runs (``grade(on_progress=...)``): the
states the student's page shows, read from the runner's events by the host's clock."""

from __future__ import annotations

from pathlib import Path

from grader.config import Assignment, Settings
from grader.pipeline import grade
from grader.progress import PartProgress, ProgressLog
from grader.result import Status

ORDER = {"waiting": 0, "running": 1, "done": 2, "failed": 2, "stopped": 2}


def test_states_follow_the_events_and_the_host_clock(tmp_path: Path) -> None:
    now = [100.0]
    log = ProgressLog(["a", "b", "c"], clock=lambda: now[0])
    events = tmp_path / "progress.jsonl"
    events.write_text('{"event": "start", "part": "a"}\n')
    log.read(events)
    now[0] = 103.0
    assert [(s.name, s.state, s.seconds) for s in log.states()] == [
        ("a", "running", 3.0), ("b", "waiting", 0.0), ("c", "waiting", 0.0)]
    with events.open("a") as f:
        f.write('{"event": "done", "part": "a"}\n{"event": "failed", "part": "b", "message": "x"}\n')
    log.read(events)
    now[0] = 104.0
    states = log.states()
    assert [(s.name, s.state) for s in states] == [("a", "done"), ("b", "failed"), ("c", "running")]
    # The sandbox is gone: c's clock started on its own (b ended), c never started: it waits
    # for the next sandbox, as the pipeline runs it.
    assert [s.state for s in log.states(final=True)] == ["done", "failed", "waiting"]


def test_grade_reports_every_parts_change_in_order_and_a_broken_reporter_changes_nothing(
    make_submission, assignment: Assignment, settings: Settings
) -> None:
    archive = make_submission()
    reports: list[list[PartProgress]] = []
    result = grade(archive, assignment, settings, on_progress=reports.append)
    assert result.status == Status.GRADED
    names = [p.name for p in assignment.parts]
    assert [p.state for p in reports[0]] == ["waiting"] * len(names)
    assert [(p.name, p.state) for p in reports[-1]] == [(n, "done") for n in names]
    for i in range(len(names)):  # each part only moves forward
        states = [r[i].state for r in reports]
        assert [ORDER[s] for s in states] == sorted(ORDER[s] for s in states), states
    assert len({tuple((p.name, p.state) for p in r) for r in reports}) == len(reports)  # changes only

    def broken(_parts: list[PartProgress]) -> None:
        raise RuntimeError("the database is gone")

    again = grade(archive, assignment, settings, on_progress=broken)
    assert (again.status, again.score) == (result.status, result.score)
