"""Grading many zips at once: N threads each calling grade(), Ctrl-C.

Threads are enough: the work happens in the sandbox subprocesses. Ctrl-C (or SIGTERM) lands
in the main thread, which stops handing out zips and sets the pool's ``cancel`` event, which
every grade() in progress was given. The sandbox calls grade()'s poll callback every 0.1 s
while the job runs; the callback sees the event and raises ``Cancelled``, the sandbox kills
the job (its cgroup killed and removed, /out unmounted) and grade() deletes its work folder
on the way out, exactly as Ctrl-C does in ``grader grade``. No exception is injected into a
thread from outside. What finished is already stored.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from grader.errors import Cancelled
from grader.result import GradeResult

log = logging.getLogger(__name__)

POLL_S = 0.2
CANCEL_WAIT_S = 60.0  # grade()'s cleanup kills the sandbox at once; this is only a backstop


@dataclass(frozen=True)
class Task:
    """One distinct zip to grade."""

    sha256: str
    archive: Path
    label: str  # who and what, for the progress lines: "s001 (s001.zip)"


@dataclass(frozen=True)
class Outcome:
    task: Task
    result: GradeResult
    started_at: float  # wall clock, seconds since the epoch
    finished_at: float

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


# Grades one task; stops with Cancelled soon after the event is set.
Grade = Callable[["Task", threading.Event], GradeResult]


class _Pool:
    """The threads, the zips not yet handed out, and which threads are inside grade()."""

    def __init__(self, tasks: Sequence[Task], grade: Grade, keep: Callable[[Outcome], None]) -> None:
        self.pending = deque(tasks)
        self.grade = grade
        self.keep = keep
        self.lock = threading.Lock()
        self.stopped = False
        self.cancel_event = threading.Event()  # set: every grade() in progress stops at its next poll
        self.finished: queue.Queue[Outcome | BaseException] = queue.Queue()

    def work(self) -> None:
        try:
            while True:
                with self.lock:
                    if self.stopped or not self.pending:
                        return
                    task = self.pending.popleft()
                started = time.time()
                result = self.grade(task, self.cancel_event)
                outcome = Outcome(task, result, started, time.time())
                self.keep(outcome)  # stored before anyone hears of it
                self.finished.put(outcome)
        except Cancelled:
            return
        except BaseException as exc:  # the store cannot be written, or a bug: tell the main thread
            self.finished.put(exc)

    def cancel(self) -> None:
        """No more zips; every grade() in progress stops at its sandbox's next poll."""
        with self.lock:
            self.stopped = True
        self.cancel_event.set()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the batch like Ctrl-C (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_tasks(
    tasks: Sequence[Task],
    *,
    grade: Grade,
    jobs: int,
    keep: Callable[[Outcome], None],
    on_done: Callable[[Outcome], None],
    tick: Callable[[], None] = lambda: None,
) -> tuple[list[Outcome], bool]:
    """Grade ``tasks`` in ``jobs`` threads; returns the outcomes and whether Ctrl-C stopped it.

    ``grade(task, cancel)`` must stop (raise ``Cancelled``) soon after ``cancel`` is set, as
    ``grader.pipeline.grade(..., cancel=cancel)`` does. ``keep`` runs in the grading thread as
    soon as a zip is graded (store it there); ``on_done`` and ``tick`` run in the calling thread
    (progress, publishing).
    """
    pool = _Pool(tasks, grade, keep)
    threads = [threading.Thread(target=pool.work, name=f"grade-{i + 1}", daemon=True)
               for i in range(min(max(1, jobs), len(tasks)))]
    outcomes: list[Outcome] = []
    failure: BaseException | None = None

    def take(item: Outcome | BaseException) -> None:
        nonlocal failure
        if isinstance(item, BaseException):
            failure = failure or item
            pool.cancel()
        else:
            outcomes.append(item)
            on_done(item)

    with _sigterm_as_interrupt():
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads) or not pool.finished.empty():
                try:
                    take(pool.finished.get(timeout=POLL_S))
                except queue.Empty:
                    tick()
        except KeyboardInterrupt:
            pool.cancel()
            deadline = time.monotonic() + CANCEL_WAIT_S
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            while not pool.finished.empty():  # finished and stored while we were stopping
                item = pool.finished.get_nowait()
                if not isinstance(item, BaseException):
                    outcomes.append(item)
                    on_done(item)
            return outcomes, True
    if failure is not None:
        raise failure
    return outcomes, False
