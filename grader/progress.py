"""The runner's progress events, read by the host as hostile input, timed by the host's clock.

The runner appends one JSON line per event to ``/out/progress.jsonl`` (``start``, ``done``
or ``failed`` of a part, and others the host does not need). The student's code runs in
the same process, so it can write any line too: floods, NaN, nesting ten thousand deep,
events for parts that do not exist, a late ``start`` meant to shorten a runtime. So:

- The file is read incrementally: an offset is kept, nothing is read twice, at most
  ``POLL_READ_BYTES`` per poll, and the final read goes on to the end of the file, up to
  ``MAX_READ_BYTES`` in all (more than the output limit lets the job write).
- Only lines that could still change something are parsed: lines naming one of the three
  events (a C regex finds them) and a part that has not ended, never a ``start`` once
  every start is known; at most ``MAX_EVENTS_PARSED`` of them, each within
  ``MAX_LINE_BYTES``, by ``untrusted.parse_json`` (no NaN, no huge numbers, no deep
  nesting). A line that fails is counted and skipped, never raised. A job that floods the
  file with event lines naming its own parts can only lose its own later events.
- Nothing is kept per event: per part of the run only the first ``start`` and the first
  ``done``/``failed`` (with its message and traceback, cleaned and cut), plus counters.
- Every time is the HOST's monotonic clock when the host saw the event; a ``t`` the job
  wrote is never read. Events for parts not in the run are ignored.
- The per-part timer cannot be switched off: a part's clock starts when its first
  ``start`` is seen or when the part before it ended, whichever comes first, and runs
  until its first end; every running clock is checked on each poll. Forging an early end
  only starts the next part's clock; once every part has ended the job must exit within
  ``TAIL_S``. Some clock runs from the first start to the end of the job.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader.text import clean_text
from grader.untrusted import ForgedOutput, parse_json

MAX_LINE_BYTES = 64 * 1024
POLL_READ_BYTES = 4 * 2**20
MAX_READ_BYTES = 256 * 2**20
READ_CHUNK = 256 * 1024
MAX_EVENTS_PARSED = 100_000  # lines that could still change something; more is the job's loss
MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000
TAIL_S = 15.0  # after its last part the runner only tidies up and exits
FILENAME = "progress.jsonl"

_EVENT_NAME = re.compile(rb'"(?:start|done|failed)"')
_END_NAME = re.compile(rb'"(?:done|failed)"')
_ENDS = ("done", "failed")


@dataclass
class PartClock:
    """What the host saw of one part, in its own clock's seconds."""

    started_at: float | None = None  # its clock started (first start seen, or previous part ended)
    start_seen: bool = False
    ended_at: float | None = None
    outcome: str = ""  # "done" or "failed" once ended
    message: str = ""
    traceback: str = ""

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    def runtime(self, until: float) -> float:
        """Seconds from its clock's start to its end (or ``until`` when it did not end)."""
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else until
        return max(0.0, end - self.started_at)


@dataclass(frozen=True)
class PartProgress:
    """One part's state while grading runs, as the student's page shows it (never a number
    the judge computes: those come with the result)."""

    name: str
    state: str  # waiting, running, done, failed (it raised), stopped (killed while running)
    seconds: float = 0.0  # its runtime by the host's clock: so far, or in all once ended

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "state": self.state, "seconds": round(self.seconds, 1)}


class ProgressLog:
    """Follows one sandbox run's progress file; see the module docstring for the rules."""

    def __init__(self, parts: Sequence[str], *, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = MAX_READ_BYTES) -> None:
        self.parts = list(parts)
        self.clocks = {name: PartClock() for name in self.parts}
        self.clock = clock
        self.opened_at = clock()
        self.max_bytes = max_bytes
        self.offset = 0
        self.parsed = 0
        self.refused = 0
        self._partial = b""
        self._skipping = False  # inside a line longer than MAX_LINE_BYTES
        self._all_started = self._all_ended = False
        # '"name"' of each part that can still change (not yet ended): a line naming none of
        # them is skipped unparsed. (A name spelled with escapes is as if never written.)
        self._open_parts = [f'"{name}"'.encode() for name in self.parts]

    # ---- reading

    def read(self, path: Path, *, final: bool = False, at: float | None = None) -> None:
        """Take in what was appended since the last read: at most ``POLL_READ_BYTES``, or, when
        ``final``, everything up to ``max_bytes`` in all. Events seen now get time ``at`` (the
        host's clock by default). Never raises for anything in the file."""
        now = self.clock() if at is None else at
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return
            if info.st_size < self.offset:  # truncated or replaced by the job: a new file
                self.offset, self._partial, self._skipping = 0, b"", False
            budget = self.max_bytes - self.offset
            if not final:
                budget = min(budget, POLL_READ_BYTES)
            os.lseek(fd, self.offset, os.SEEK_SET)
            while budget > 0:
                chunk = os.read(fd, min(READ_CHUNK, budget))
                if not chunk:
                    break
                self.offset += len(chunk)
                budget -= len(chunk)
                self._feed(chunk, now)
        except OSError:
            return
        finally:
            os.close(fd)
        if final and self._partial and not self._skipping:  # a last line without its newline
            self._scan(self._partial, now)
            self._partial = b""

    def _feed(self, chunk: bytes, now: float) -> None:
        data = self._partial + chunk
        cut = data.rfind(b"\n")
        block, rest = (data[: cut + 1], data[cut + 1:]) if cut >= 0 else (b"", data)
        if self._skipping:
            newline = block.find(b"\n")
            if newline < 0:
                self._partial = b""
                return
            block, self._skipping = block[newline + 1:], False
        if len(rest) > MAX_LINE_BYTES:
            rest, self._skipping = b"", True
        self._partial = rest
        self._scan(block, now)

    def _scan(self, block: bytes, now: float) -> None:
        """Parse only the lines of ``block`` that name an event (found in C, not line by line)."""
        if (self._all_ended or self.parsed >= MAX_EVENTS_PARSED
                or not any(token in block for token in self._open_parts)):
            return  # nothing here could change anything (decided in C, for the whole block)
        line_end = -1
        # Once every start is known, a start line can change nothing: look for ends alone.
        for match in (_END_NAME if self._all_started else _EVENT_NAME).finditer(block):
            if self.parsed >= MAX_EVENTS_PARSED or self._all_ended:
                return
            if match.start() < line_end:
                continue  # another hit on a line already taken
            begin = block.rfind(b"\n", 0, match.start()) + 1
            line_end = block.find(b"\n", match.end())
            if line_end < 0:
                line_end = len(block)
            line = block[begin:line_end]
            if len(line) <= MAX_LINE_BYTES and any(token in line for token in self._open_parts):
                self._line(line, now)

    def _line(self, line: bytes, now: float) -> None:
        self.parsed += 1
        try:
            event = parse_json(line, what="a progress line", max_depth=2)
        except ForgedOutput:
            self.refused += 1
            return
        if not isinstance(event, dict):
            return
        kind, part = event.get("event"), event.get("part")
        if not isinstance(part, str) or part not in self.clocks or kind not in ("start", *_ENDS):
            return  # a part this run does not have: ignored, it switches nothing
        clock = self.clocks[part]
        if kind == "start":
            if not clock.start_seen:
                clock.start_seen = True
                if clock.started_at is None:
                    clock.started_at = now
                self._all_started = all(c.start_seen for c in self.clocks.values())
            return
        if clock.ended_at is not None:
            return
        if clock.started_at is None:
            clock.started_at = now
        clock.ended_at, clock.outcome = now, kind
        if kind == "failed":
            clock.message = _text(event.get("message"), MAX_MESSAGE_CHARS)
            clock.traceback = _text(event.get("traceback"), MAX_TRACEBACK_CHARS)
        self._all_ended = all(c.ended_at is not None for c in self.clocks.values())
        self._open_parts = [f'"{n}"'.encode() for n, c in self.clocks.items() if c.ended_at is None]
        index = self.parts.index(part)
        if index + 1 < len(self.parts):  # the next part's clock starts now at the latest
            following = self.clocks[self.parts[index + 1]]
            if following.started_at is None:
                following.started_at = now

    # ---- what the page shows

    def states(self, *, now: float | None = None, final: bool = False) -> list[PartProgress]:
        """Each part's state now; with ``final`` (the sandbox is gone), a part that was running
        was stopped, and one whose clock only started on its own (never seen starting) waits
        for the next sandbox, as ``grader.pipeline`` runs it."""
        now = self.clock() if now is None else now
        shown: list[PartProgress] = []
        for name in self.parts:
            clock = self.clocks[name]
            if clock.ended_at is not None:
                state = "done" if clock.outcome == "done" else "failed"
            elif clock.started_at is None or (final and not clock.start_seen):
                shown.append(PartProgress(name, "waiting"))
                continue
            else:
                state = "stopped" if final else "running"
            shown.append(PartProgress(name, state, clock.runtime(now)))
        return shown

    # ---- the timer

    def overdue(self, limits_s: Mapping[str, float], *, startup_s: float,
                now: float | None = None) -> str | None:
        """Why the job must be stopped now (a part over its limit, no start, no exit), or None."""
        now = self.clock() if now is None else now
        for name in self.parts:
            clock = self.clocks[name]
            if clock.running and now - (clock.started_at or now) > limits_s[name]:
                return f"{name} over its {limits_s[name]:g} s limit"
        if all(c.started_at is None for c in self.clocks.values()):
            if now - self.opened_at > startup_s:
                return f"the runner did not start within {startup_s:g} s"
            return None
        ends = [c.ended_at for c in self.clocks.values()]
        if all(e is not None for e in ends) and now - max(e for e in ends if e is not None) > TAIL_S:
            return f"the runner did not exit within {TAIL_S:g} s after its last part"
        return None


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    with contextlib.suppress(Exception):
        return clean_text(value, limit)
    return ""
