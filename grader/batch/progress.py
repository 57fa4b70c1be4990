"""The batch's progress on stderr: a bar on a terminal, one line per finished zip otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from grader.result import GradeResult, Status

BAR_WIDTH = 24
REDRAW_S = 1.0
MESSAGE_CHARS = 150


def format_duration(seconds: float) -> str:
    """1 h 05 min, 3 min 20 s, 42 s: what a person reads."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def outcome_text(label: str, result: GradeResult, seconds: float) -> str:
    """``s001 (s001.zip): graded 70/100 in 8.9 s``, with the message when not fully graded."""
    text = f"{label}: {result.status} {result.score:g}/{result.max_score:g} in {seconds:.1f} s"
    if result.status is not Status.GRADED:
        message = result.message if len(result.message) <= MESSAGE_CHARS else (
            result.message[: MESSAGE_CHARS - 1] + "…")
        text += f" - {message}"
    return text


class Progress:
    """Counts done (graded), failed (any other status) and remaining, with an estimate of time left.

    On a terminal a bar is redrawn in place and each finished zip is printed above it; when
    the stream is not a terminal (a log file, CI) each finished zip is one line with the counts.
    """

    def __init__(self, total: int, *, stream: TextIO, jobs: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stream = stream
        self.jobs = jobs
        self.clock = clock
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = clock()
        self.done = 0
        self.failed = 0
        self._drawn = 0.0
        self._bar_shown = False

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def remaining(self) -> int:
        return self.total - self.finished

    def eta(self) -> str:
        """Time left at the rate seen so far (zips finished per second of this run)."""
        if not self.remaining:
            return "0 s left"
        if not self.finished:
            return "estimating time left"
        per_zip = (self.clock() - self.started) / self.finished
        return f"about {format_duration(per_zip * self.remaining)} left"

    def counts(self) -> str:
        return f"done {self.done}, failed {self.failed}, remaining {self.remaining}, {self.eta()}"

    def bar(self) -> str:
        filled = round(BAR_WIDTH * self.finished / self.total) if self.total else BAR_WIDTH
        return (f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {self.finished}/{self.total}  "
                f"{self.counts()}")

    def add(self, label: str, result: GradeResult, seconds: float) -> None:
        """One zip finished."""
        if result.status is Status.GRADED:
            self.done += 1
        else:
            self.failed += 1
        line = outcome_text(label, result, seconds)
        if self.tty:
            self._clear()
            self.stream.write(line + "\n")
            self._draw()
        else:
            self.stream.write(f"[{self.finished}/{self.total}] {line} | {self.counts()}\n")
        self.stream.flush()

    def tick(self) -> None:
        """Redraw the bar now and then, so the estimate moves while zips are being graded."""
        if self.tty and self.clock() - self._drawn >= REDRAW_S:
            self._draw()

    def note(self, text: str) -> None:
        """A line that is not about one zip (a warning), without breaking the bar."""
        if self.tty:
            self._clear()
        self.stream.write(text + "\n")
        if self.tty and self._bar_shown:
            self._draw()
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._bar_shown:
            self._clear()
            self.stream.write(self.bar() + "\n")
            self._bar_shown = False
            self.stream.flush()

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[2K")

    def _draw(self) -> None:
        self._clear()
        self.stream.write(self.bar())
        self.stream.flush()
        self._bar_shown = True
        self._drawn = self.clock()
