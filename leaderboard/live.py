"""What a submission still being graded shows: its place in the queue while it waits, then
each part's state (waiting, running for how long, done) while a worker grades it.

The worker stores the parts' states as they change (``claims.report_progress``, from the
pipeline's ``on_progress``); the page and the API read them here, add the time a running
part has run since, and give every state its words in one place for both. No number the
judge computes is shown before the result: the points come with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from grader.config import Assignment
from leaderboard.models import Submission, SubmissionStatus, utcnow

STATES = ("waiting", "running", "done", "failed", "stopped")


@dataclass(frozen=True)
class LivePart:
    name: str
    title: str
    state: str
    seconds: float

    @property
    def label(self) -> str:
        """The words for this part's state (the page and the JSON say the same)."""
        if self.state == "waiting":
            return "waiting"
        if self.state == "running":
            return f"running for {self.seconds:.0f} s"
        if self.state == "done":
            return f"finished in {self.seconds:.1f} s"
        if self.state == "failed":
            return f"stopped with an error after {self.seconds:.1f} s"
        return f"stopped after {self.seconds:.0f} s"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "state": self.state,
                "seconds": round(self.seconds, 1), "label": self.label}


def waiting_parts(spec: Assignment) -> list[LivePart]:
    """Every part of ``spec``, waiting: what a queued submission's page holds (hidden) for its
    script to fill in once a worker takes it."""
    return [LivePart(part.name, part.title, "waiting", 0.0) for part in spec.parts]


def live_parts(sub: Submission, spec: Assignment, *, now: datetime | None = None) -> list[LivePart]:
    """Each part of ``spec`` with its state while ``sub`` is graded ([] when it is not running)."""
    if sub.status != SubmissionStatus.RUNNING:
        return []
    now = now or utcnow()
    stored: dict[str, tuple[str, float]] = {}
    since = 0.0
    try:
        data = json.loads(sub.progress_json) if sub.progress_json else {}
        since = max(0.0, (now - datetime.fromisoformat(data["at"])).total_seconds()) if data else 0.0
        for entry in data.get("parts", []):
            if entry.get("state") in STATES:
                stored[str(entry["name"])] = (entry["state"], float(entry.get("seconds") or 0.0))
    except (ValueError, KeyError, TypeError, AttributeError):  # written by our worker; still, never a 500
        stored = {}
    parts = []
    for part in spec.parts:
        state, seconds = stored.get(part.name, ("waiting", 0.0))
        if state == "running":
            seconds += since
        parts.append(LivePart(part.name, part.title, state, seconds))
    return parts


def queue_position(session: Session, sub: Submission) -> int | None:
    """1 for the next submission a worker takes, 2 for the one after, …; None unless queued.

    Workers take higher priorities first (uploads before regrades), then the longest waiting.
    """
    if sub.status != SubmissionStatus.QUEUED:
        return None
    enqueued = sub.enqueued_at or sub.created_at
    waited = col(Submission.enqueued_at)
    ahead = session.exec(
        select(func.count(col(Submission.id))).where(
            Submission.status == SubmissionStatus.QUEUED,
            col(Submission.id) != sub.id,
            or_(
                col(Submission.priority) > sub.priority,
                and_(col(Submission.priority) == sub.priority,
                     or_(waited < enqueued, and_(waited == enqueued, col(Submission.id) < sub.id))),
            ),
        )
    ).one()
    return int(ahead) + 1


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def progress_sentence(status: str, position: int | None, parts: list[LivePart]) -> str:
    """The line above the parts: where the upload is, in words ("" once it is done)."""
    if status == SubmissionStatus.QUEUED:
        return f"Waiting for a grader: {ordinal(position)} in line." if position else "Waiting for a grader."
    if status != SubmissionStatus.RUNNING:
        return ""
    if parts and all(p.state not in ("waiting", "running") for p in parts):
        return "Every part has run; the grader is scoring the results."
    return "Grading now; the points come when every part has run."


def progress_brief(position: int | None, parts: list[LivePart]) -> str:
    """The same in a few words, for a row of the list ("2nd in line", "MyNet: running for 12 s")."""
    if position:
        return f"{ordinal(position)} in line"
    running = [p for p in parts if p.state == "running"]
    if running:
        return f"{running[0].title}: {running[0].label}"
    if parts and all(p.state != "waiting" for p in parts):
        return "scoring the results"
    return "starting" if parts else ""


def live_json(session: Session, sub: Submission, spec: Assignment) -> dict[str, Any]:
    """The ``progress`` object of a submission's JSON (documented in the API's schemas)."""
    position = queue_position(session, sub)
    parts = live_parts(sub, spec)
    return {
        "queue_position": position,
        "sentence": progress_sentence(sub.status, position, parts),
        "brief": progress_brief(position, parts),
        "parts": [p.to_json() for p in parts],
    }
