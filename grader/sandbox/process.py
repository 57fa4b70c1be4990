"""Watch one child process: bounded stdout/stderr capture, wall timer, poll callback, reaping.

Shared by the backends. Reading both pipes and timing happen in one ``selectors`` loop
in the calling thread, so a flood costs bounded memory and never blocks the child
forever, and there is no helper thread to leak.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from grader.sandbox.base import POLL_INTERVAL_S, Poll, RunOutcome
from grader.sandbox.outdir import OutputReport

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, spelled out for Python builds without it
READ_CHUNK = 1 << 20
DRAIN_GRACE_S = 2.0
KILL_RETRY_S = 1.0  # how long pipes may stay open after the job ended and was killed


class HeadTail:
    """Keep the first and last ``limit // 2`` bytes of a stream and count the rest.

    With ``prefix``, the stream is expected to start with those bytes (a backend's own
    "started" marker); they are dropped and ``prefix_seen`` tells whether they came.
    """

    def __init__(self, limit: int, *, prefix: bytes = b"") -> None:
        self.head_cap = (limit + 1) // 2
        self.tail_cap = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.prefix = prefix
        self._pending = prefix  # what of ``prefix`` is still to come
        self.prefix_seen = not prefix

    def feed(self, data: bytes) -> None:
        if self._pending:  # a leading ``prefix`` is dropped, not kept or counted
            n = min(len(data), len(self._pending))
            if data[:n] != self._pending[:n]:  # not the prefix: what matched so far is output
                data = self.prefix[: len(self.prefix) - len(self._pending)] + data
                self._pending = b""
            else:
                self._pending = self._pending[n:]
                self.prefix_seen = not self._pending
                data = data[n:]
                if not data:
                    return
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data[-self.tail_cap:] if len(data) > self.tail_cap else data
            if len(self.tail) > 2 * self.tail_cap:  # trim in bulk, not on every chunk
                del self.tail[: len(self.tail) - self.tail_cap]

    def text(self) -> str:
        """Head + ``[… N bytes cut …]`` + tail, decoded with replacement characters."""
        tail = bytes(self.tail[-self.tail_cap:]) if self.tail_cap else b""
        cut = self.total - len(self.head) - len(tail)
        if cut <= 0:
            return (bytes(self.head) + tail).decode("utf-8", errors="replace")
        return (
            bytes(self.head).decode("utf-8", errors="replace")
            + f"\n[… {cut} bytes cut …]\n"
            + tail.decode("utf-8", errors="replace")
        )


@dataclass
class Supervision:
    """How the watch ended."""

    returncode: int
    timed_out: bool
    stopped_reason: str
    wall_s: float
    max_rss_bytes: int | None
    stdout: HeadTail
    stderr: HeadTail


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, int] | None:
    """Reap ``proc`` if it ended; returns (returncode, max RSS bytes) and records it on proc."""
    try:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    except ChildProcessError:  # reaped behind our back: the status is lost
        proc.returncode = 255 if proc.returncode is None else proc.returncode
        return proc.returncode, 0
    if pid == 0:
        return None
    returncode = os.waitstatus_to_exitcode(status)
    proc.returncode = returncode  # keep Popen from waiting again or signalling a reused pid
    return returncode, usage.ru_maxrss * 1024


def bind_poll(poll: Poll | None, live_out: Path) -> Callable[[], str | None] | None:
    """The poll callback with the live output folder filled in."""
    return None if poll is None else (lambda: poll(live_out))


def supervise(
    proc: subprocess.Popen[bytes],
    *,
    started: float,
    wall_s: float,
    log_bytes: int,
    poll: Callable[[], str | None] | None,
    kill: Callable[[], None],
    after_exit: Callable[[], None],
    stdout_prefix: bytes = b"",
) -> Supervision:
    """Read the pipes and watch the clock until the child ended and its pipes closed.

    ``kill`` must end the whole job at once; ``after_exit`` runs once when the main
    child has ended, to kill anything it left behind (daemons holding the pipes).
    On an exception (a failing poll callback) the job is killed and the error re-raised.
    ``stdout_prefix`` is a marker the child writes first; see ``HeadTail``.
    """
    out, err = HeadTail(log_bytes, prefix=stdout_prefix), HeadTail(log_bytes)
    captures = {}
    selector = selectors.DefaultSelector()
    for stream, capture in ((proc.stdout, out), (proc.stderr, err)):
        assert stream is not None
        fd = stream.fileno()
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, READ_CHUNK)
        selector.register(fd, selectors.EVENT_READ)
        captures[fd] = capture
    pidfd = os.pidfd_open(proc.pid)  # readable once the child has ended: no sleeping
    selector.register(pidfd, selectors.EVENT_READ)
    deadline = started + wall_s
    next_poll = time.monotonic() + POLL_INTERVAL_S
    reason = ""
    reaped: tuple[int, int] | None = None
    ended_at = drain_until = killed_at = 0.0
    try:
        while True:
            now = time.monotonic()
            if reaped is None:
                reaped = _reap(proc)
                if reaped is not None:
                    ended_at = now
                    drain_until = now + DRAIN_GRACE_S
                    with contextlib.suppress(KeyError):
                        selector.unregister(pidfd)
                    after_exit()
            if reaped is not None:
                if not selector.get_map() or now >= drain_until:
                    break
                wake = drain_until
            elif killed_at:
                if now - killed_at > KILL_RETRY_S:
                    killed_at = now  # should not happen: a kill is synchronous; try again
                    kill()
                wake = killed_at + KILL_RETRY_S
            else:
                if now >= deadline:
                    reason = f"did not finish within {wall_s:g} s"
                elif poll is not None and now >= next_poll:
                    next_poll = now + POLL_INTERVAL_S
                    reason = poll() or ""
                if reason:
                    killed_at = now
                    kill()
                    continue
                wake = min(next_poll, deadline)
            timeout = max(0.0, min(POLL_INTERVAL_S, wake - time.monotonic()))
            for key, _ in selector.select(timeout=timeout):
                if key.fd == pidfd:
                    continue  # reaped at the top of the loop
                try:
                    data = os.read(key.fd, READ_CHUNK)
                except BlockingIOError:
                    continue
                if data:
                    captures[key.fd].feed(data)
                else:
                    selector.unregister(key.fd)
    except BaseException:
        if reaped is None:
            kill()
            proc.wait()
        raise
    finally:
        selector.close()
        os.close(pidfd)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert reaped is not None
    returncode, max_rss = reaped
    return Supervision(
        returncode=returncode,
        timed_out=bool(reason),
        stopped_reason=reason,
        wall_s=ended_at - started,
        max_rss_bytes=max_rss or None,
        stdout=out,
        stderr=err,
    )


def exit_status(returncode: int) -> tuple[int | None, int | None]:
    """(exit code, signal); a child killed by signal N shows as 128 + N, as a shell reports it.

    bwrap and docker-init both report it so, so a job's own ``exit(137)`` looks the same.
    """
    if returncode < 0:
        return None, -returncode
    if 128 < returncode <= 128 + 64:
        return None, returncode - 128
    return returncode, None


def rlimit_setter(limits: list[tuple[int, int]]) -> Callable[[], None]:
    """A preexec step that lowers rlimits (soft = hard), never above the current hard limit."""
    capped = []
    for which, value in limits:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        capped.append((which, value))

    def apply() -> None:
        for which, value in capped:
            resource.setrlimit(which, (value, value))

    return apply


def run_outcome(backend: str, watch: Supervision, report: OutputReport, *, exit_code: int | None,
                sig: int | None, stderr: str, out_of_memory: bool, pids_exceeded: bool,
                peak_memory_bytes: int | None, enforced: Mapping[str, str]) -> RunOutcome:
    """What every backend returns once the run is over: /out's dropped files noted under
    ``stderr``, a file-size signal counted as output exceeded."""
    return RunOutcome(
        backend=backend,
        exit_code=exit_code,
        signal=sig,
        timed_out=watch.timed_out,
        stopped_reason=watch.stopped_reason,
        out_of_memory=out_of_memory,
        output_exceeded=report.exceeded or sig == signal.SIGXFSZ,
        pids_exceeded=pids_exceeded,
        stdout=watch.stdout.text(),
        stderr=report.annotate(stderr),
        wall_s=watch.wall_s,
        peak_memory_bytes=peak_memory_bytes,
        enforced=dict(enforced),
    )
