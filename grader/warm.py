"""Pre-started sandboxes: the next submission's sandbox is started while the current one runs.

A ``WarmSandbox`` is an ordinary sandbox run (any backend, its own limits and cgroup) whose
runner is started with ``--wait``: it imports torch and torchvision, sets its threads,
memory-maps the hidden inputs and then waits for ``/job/go``. Its work folder holds an empty
submission folder and job folder, both already mounted read-only. ``grade(..., warm=w)``
unpacks the zip into that submission folder, writes the plan into the job folder, and
creates ``go``; from then on the run is watched exactly as a cold one (the part timer and
the startup limit start at ``go``, on the host's clock, so waiting never counts against a
student).

Never reused: one submission per sandbox, then it is destroyed with its folder. One that
waited longer than ``max_wait_s`` stops itself (its poll says so) and is replaced by the
pool. Its work folder is named like every grader temp path (``grade-<owner>-…``) and its
cgroup ``run-<pid>-…``, so what a killed worker leaves is swept as usual (grader/leftovers.py).

``WarmPool`` keeps one ready sandbox per grading thread: ``take`` hands out a ready one
(or None: grade cold) and starts its successor at once.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from grader.config import Assignment, Settings
from grader.datasets.manifest import Manifest
from grader.errors import GraderFault
from grader.jobrequest import GO_FILE, runner_request
from grader.progress import FILENAME as PROGRESS_FILE
from grader.result import GradeResult
from grader.sandbox import RunOutcome, RunRequest, Sandbox, get_sandbox
from grader.sandbox.base import temp_prefix

log = logging.getLogger(__name__)

MAX_WAIT_S = 600.0  # a sandbox not taken by then is replaced (a fresh one, fresh inputs)
CLAIM_MARGIN_S = 5.0  # not handed out this close to its expiry
RUNNER_GRACE_S = 60.0  # a waiting runner exits by itself this long after its expiry
UNUSED = "pre-started sandbox not used"


class State(Enum):
    WAITING = "waiting"  # runner preparing or waiting for go; may expire
    CLAIMED = "claimed"  # a submission is being unpacked into it
    RUNNING = "running"  # go given: watched as a cold run
    ENDED = "ended"  # the sandbox run is over


class WarmSandbox:
    """One pre-started sandbox for all parts of ``assignment``; used at most once."""

    def __init__(
        self, assignment: Assignment, settings: Settings, manifest: Manifest, *,
        sandbox: Sandbox | None = None, max_wait_s: float = MAX_WAIT_S,
        on_end: Callable[[WarmSandbox], None] | None = None,
    ) -> None:
        self.assignment = assignment
        self.manifest = manifest
        self.names = [p.name for p in assignment.parts]
        self.work = Path(tempfile.mkdtemp(prefix=temp_prefix("grade"), dir=settings.sandbox.work_dir))
        self.work.chmod(0o755)
        self.submission_dir = self.work / "submission"
        self.job_dir = self.work / "job"
        self.out = self.work / "out-1"
        for folder in (self.submission_dir, self.job_dir, self.out):
            folder.mkdir(mode=0o755)
            folder.chmod(0o755)
        self.started_at = time.monotonic()
        self.expires_at = self.started_at + max_wait_s
        self._lock = threading.Lock()
        self._state = State.WAITING
        self._discard = ""
        self._job_poll: Callable[[Path], str | None] | None = None
        self._job_wall_s = 0.0
        self._go_at = 0.0
        self._outcome: RunOutcome | None = None
        self._error: BaseException | None = None
        self._on_end = on_end
        self.prepared = threading.Event()  # the runner said it is ready (torch imported ...)
        self.margin_s = min(CLAIM_MARGIN_S, max_wait_s / 4)
        # Waiting time, then the whole job; the job's own wall limit is checked from go on.
        self.job_wall_s = assignment.limits.startup_s + sum(p.time_limit_s for p in assignment.parts)
        request = runner_request(
            assignment, settings, self.names, submission=self.submission_dir,
            inputs=manifest.inputs_dir, job_dir=self.job_dir, out=self.out,
            wall_s=max_wait_s + self.job_wall_s + 60.0,
            # The runner gives up on its own a little after we would have replaced it: a worker
            # killed with SIGKILL leaves no runner waiting forever (bwrap's --die-with-parent
            # was seen to leave the sandbox's own pid 1 and the runner alive).
            wait_max_s=max_wait_s + RUNNER_GRACE_S,
        )
        # Until go, it runs at the lowest CPU priority: its imports use what the running job
        # leaves idle instead of slowing that job (the bwrap backend; others ignore it).
        self._going = threading.Event()
        request = dataclasses.replace(request, idle_until=self._going)
        try:
            self._sandbox = sandbox or get_sandbox(settings.sandbox)
        except BaseException:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self.backend = self._sandbox.name
        self._thread = threading.Thread(target=self._run, args=(request,),
                                        name=f"warm-{self.work.name}", daemon=True)
        self._thread.start()

    # ---- the sandbox thread

    def _run(self, request: RunRequest) -> None:
        try:
            self._outcome = self._sandbox.run(request, poll=self._poll)
        except BaseException as exc:  # handed to go(); logged if nobody takes it
            self._error = exc
        with self._lock:
            unused = self._state is State.WAITING
            self._state = State.ENDED
        if unused:
            log.info("pre-started sandbox %s ended unused (%s)", self.work.name,
                     self._discard or (self._outcome.stopped_reason if self._outcome else
                                       repr(self._error)))
            if self._error is not None and not isinstance(self._error, GraderFault):
                log.error("pre-started sandbox %s failed", self.work.name, exc_info=self._error)
        if self._on_end is not None:
            self._on_end(self)

    def _poll(self, live_out: Path) -> str | None:
        with self._lock:
            state, discard = self._state, self._discard
        if discard:
            return f"{UNUSED} ({discard})"
        if not self.prepared.is_set() and (live_out / PROGRESS_FILE).exists():
            self.prepared.set()
        if state is State.WAITING:
            return f"{UNUSED} (waited too long)" if time.monotonic() > self.expires_at else None
        if state is State.CLAIMED:
            return None
        if time.monotonic() - self._go_at > self._job_wall_s:
            return f"did not finish within {self._job_wall_s:g} s"
        assert self._job_poll is not None
        return self._job_poll(live_out)

    # ---- the job's side

    @property
    def ready(self) -> bool:
        """Still waiting for a submission, and not about to expire."""
        with self._lock:
            return (self._state is State.WAITING and not self._discard
                    and time.monotonic() < self.expires_at - self.margin_s)

    def claim(self) -> bool:
        """Reserve it for one submission; False if it has ended, expired or was claimed."""
        with self._lock:
            if self._state is not State.WAITING or self._discard or \
                    time.monotonic() >= self.expires_at - self.margin_s:
                return False
            self._state = State.CLAIMED
            return True

    def fits(self, assignment: Assignment, manifest: Manifest) -> bool:
        """Started for this spec's parts and limits, with this build of the hidden inputs opened
        (a rebuild at the same path, e.g. by ``grader sync-tests``, has other file digests)."""
        return assignment == self.assignment and (
            manifest is self.manifest or (manifest.inputs_dir == self.manifest.inputs_dir
                                          and manifest.files == self.manifest.files))

    def go(self, poll: Callable[[Path], str | None], *, wall_s: float) -> RunOutcome | None:
        """Start the claimed job (plan and submission in place) and watch it like a cold run;
        None if the sandbox had already ended (the caller runs the job cold)."""
        with self._lock:
            if self._state is State.ENDED:
                log.warning("pre-started sandbox %s ended before its job started: %s", self.work.name,
                            self._outcome.stderr[-2000:] if self._outcome else repr(self._error))
                return None
            if self._state is not State.CLAIMED:
                raise GraderFault("a pre-started sandbox was started without being claimed")
            self._job_poll, self._job_wall_s = poll, wall_s
            self._go_at = time.monotonic()
            self._state = State.RUNNING
        self._going.set()
        (self.job_dir / GO_FILE).touch(mode=0o644)
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome

    def stop(self) -> None:
        """Stop it if it still runs (within one poll) and wait until it has ended."""
        with self._lock:
            if self._state in (State.WAITING, State.CLAIMED):
                self._discard = "closed"
        self._thread.join()

    def close(self) -> None:
        """``stop``, then remove its work folder."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class WarmPool:
    """Keeps ``size`` pre-started sandboxes ready; thread-safe."""

    def __init__(self, assignment: Assignment, settings: Settings, *, size: int = 1,
                 max_wait_s: float = MAX_WAIT_S) -> None:
        self.assignment = assignment
        self.settings = settings
        self.size = size
        self.max_wait_s = max_wait_s
        self._sandbox = get_sandbox(settings.sandbox)
        self._lock = threading.Lock()
        self._filling = threading.Lock()
        self._ready: list[WarmSandbox] = []
        self._closed = False
        self._manifest: Manifest | None = None

    def start(self, manifest: Manifest) -> None:
        """Pre-start the first sandboxes for ``manifest``'s inputs, in the background."""
        with self._lock:
            self._manifest = manifest
        threading.Thread(target=self.fill, name="warm-fill", daemon=True).start()

    def take(self, manifest: Manifest) -> WarmSandbox | None:
        """A claimed ready sandbox for ``manifest``'s inputs (None: grade cold); its successor
        is started at once, so the next job finds one ready."""
        taken: WarmSandbox | None = None
        stale: list[WarmSandbox] = []
        with self._lock:
            if self._manifest is not None and manifest is not self._manifest:
                stale = [w for w in self._ready if not w.fits(self.assignment, manifest)]
                self._ready = [w for w in self._ready if w not in stale]
            self._manifest = manifest
            for warm in list(self._ready):
                if not warm.alive or not warm.fits(self.assignment, manifest):
                    self._ready.remove(warm)
                    stale.append(warm)
                elif taken is None and warm.claim():
                    self._ready.remove(warm)
                    taken = warm
        for warm in stale:
            threading.Thread(target=warm.close, daemon=True).start()
        self.fill()
        return taken

    def fill(self) -> None:
        """Start sandboxes until ``size`` are waiting (none before the first ``take``)."""
        with self._filling:
            self._fill()

    def _fill(self) -> None:
        while True:
            with self._lock:
                if self._closed or self._manifest is None or len(self._ready) >= self.size:
                    return
                manifest = self._manifest
            try:
                warm = WarmSandbox(self.assignment, self.settings, manifest, sandbox=self._sandbox,
                                   max_wait_s=self.max_wait_s, on_end=self._ended)
            except (GraderFault, OSError):
                log.exception("a sandbox could not be pre-started; jobs are graded cold")
                return
            with self._lock:
                closed = self._closed
                if not closed:
                    self._ready.append(warm)
            if closed:  # closed while this one was being started
                warm.close()
                return

    def _ended(self, warm: WarmSandbox) -> None:
        """An unused sandbox ended (expired or failed): remove it; replace it if it expired."""
        with self._lock:
            if warm not in self._ready:
                return
            self._ready.remove(warm)
            replace = not self._closed and time.monotonic() >= warm.expires_at
        shutil.rmtree(warm.work, ignore_errors=True)
        if replace:
            self.fill()

    def close(self) -> None:
        """Stop and remove every waiting sandbox."""
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        for warm in ready:
            warm.close()


PRESTART_BACKENDS = ("bwrap", "docker")  # the local backend is for a student's own check


def pool_for(assignment: Assignment, settings: Settings, *, size: int) -> WarmPool | None:
    """A pool for the worker or ``grader batch``, or None when pre-starting is off."""
    if not settings.sandbox.prestart or settings.sandbox.backend not in PRESTART_BACKENDS:
        return None
    return WarmPool(assignment, settings, size=size, max_wait_s=settings.sandbox.prestart_max_wait_s)


def start_pool(assignment: Assignment, settings: Settings, manifest: Manifest | None, *,
               size: int) -> WarmPool | None:
    """``pool_for``, already pre-starting for ``manifest`` (None: nothing to grade)."""
    pool = pool_for(assignment, settings, size=size) if manifest is not None else None
    if pool is not None and manifest is not None:
        pool.start(manifest)
    return pool


def grade_warm(pool: WarmPool | None, archive: Path, assignment: Assignment, settings: Settings,
               *, manifest: Manifest | None, **options: Any) -> GradeResult:
    """``pipeline.grade`` in a pre-started sandbox from ``pool`` when one is ready (else cold);
    the sandbox is destroyed afterwards either way."""
    from grader.pipeline import grade  # heavy: the judge

    warm = pool.take(manifest) if pool is not None and manifest is not None else None
    try:
        return grade(archive, assignment, settings, manifest=manifest, warm=warm, **options)
    finally:
        if warm is not None:
            warm.close()
