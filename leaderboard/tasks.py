"""The grading queue (Huey): SQLite storage on one machine, Redis across machines.

A job carries only a submission id. The database holds the state, so a job that is lost
(a dead worker, a flushed queue) is found again by ``sweep``: stuck ``running`` rows are
re-queued and ``queued`` rows missing from the queue are enqueued again. Running a job
twice is harmless: the claim in ``leaderboard.claims`` lets only one run record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from huey import Huey, PriorityRedisHuey, SqliteHuey

from leaderboard.settings import WebSettings

log = logging.getLogger(__name__)

TASK_NAME = "grade_submission"


def make_huey(settings: WebSettings) -> Huey:
    """The Huey instance the settings name (no results are stored: the database has them)."""
    if settings.queue_url.startswith(("redis://", "rediss://", "unix://")):
        return PriorityRedisHuey(settings.queue_name, url=settings.queue_url, results=False, utc=True)
    if settings.queue_url and not settings.queue_url.startswith("sqlite"):
        raise ValueError(f"queue_url must be redis://… or empty (SQLite), not {settings.queue_url!r}")
    path = settings.queue_url.split("///", 1)[1] if settings.queue_url else str(settings.queue_file)
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(
        settings.queue_name, filename=path, results=False, utc=True, timeout=30, strict_fifo=True
    )


class GradingQueue:
    """What the web app and the worker share: enqueue a submission, look at the queue."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.huey = make_huey(settings)
        self._handler: Callable[[int], None] | None = None

        @self.huey.task(name=TASK_NAME)
        def grade_submission(submission_id: int) -> None:
            if self._handler is None:
                raise RuntimeError("this process does not grade (no handler bound)")
            self._handler(submission_id)

        self._task = grade_submission

    def bind(self, handler: Callable[[int], None]) -> None:
        """Set the function that grades a submission id (only in worker processes)."""
        self._handler = handler

    def enqueue(self, submission_id: int, *, priority: int = 0, delay_s: float = 0.0) -> None:
        """Queue a submission; higher priority first (uploads 10, regrades 0). With ``delay_s``
        it waits in Huey's schedule until then (any worker's consumer moves it to the queue)."""
        if delay_s > 0:
            self._task.schedule(args=(submission_id,), delay=delay_s, priority=priority)
        else:
            self.huey.enqueue(self._task.s(submission_id, priority=priority))

    def pending_ids(self) -> set[int]:
        """Submission ids with a job waiting in the queue or in its schedule (a delayed retry)."""
        ids: set[int] = set()
        for task in (*self.huey.pending(), *self.huey.scheduled()):
            if task.name == TASK_NAME and task.args:
                ids.add(int(task.args[0]))
        return ids

    def pending_count(self) -> int:
        return self.huey.pending_count()

    def flush(self) -> None:
        self.huey.flush()


def lost_cutoff(settings: WebSettings) -> timedelta:
    return timedelta(seconds=settings.lost_after_s)
