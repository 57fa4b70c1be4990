"""grade(): intake -> sandbox -> judge -> result."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import grader
from grader.config import Assignment, Settings
from grader.datasets.manifest import Manifest, load_manifest
from grader.errors import Cancelled, GraderFault, SubmissionInvalid
from grader.intake import Submission, intake, sha256_file
from grader.jobrequest import RUNNER_DIR as RUNNER_DIR  # tests and tools import it from here
from grader.jobrequest import runner_request, threads_of
from grader.judge import combine
from grader.leftovers import sweep_once
from grader.parts import JobContext, PartRun, PartSpec, judge_part, plan_entry
from grader.progress import FILENAME as PROGRESS_FILE
from grader.progress import PartProgress, ProgressLog
from grader.result import GradeResult, PartResult, Status
from grader.sandbox import RunOutcome, get_sandbox
from grader.sandbox.base import temp_prefix

if TYPE_CHECKING:
    from grader.warm import WarmSandbox

log = logging.getLogger(__name__)

# A part whose end the host saw more than this after its limit is timed out, even if it ended.
LATE_SLACK_S = 1.0

ProgressCallback = Callable[[list[PartProgress]], None]


def grade(
    archive: Path,
    assignment: Assignment,
    settings: Settings,
    *,
    manifest: Manifest | None = None,
    predictions: dict[str, np.ndarray] | None = None,
    cancel: threading.Event | None = None,
    warm: WarmSandbox | None = None,
    sha256: str = "",
    on_progress: ProgressCallback | None = None,
) -> GradeResult:
    """Grade one submission; a student's failure comes back as a result, not raised.

    ``GraderFault`` (missing data, broken sandbox) is raised for the caller to record.
    ``predictions``, when given, is filled with the class indices the judge scored, by
    ``"<part>/<split>"`` (for the staff's similarity check). Once ``cancel`` is set, the
    sandbox's poll callback raises ``Cancelled``: the sandbox kills the job and the work
    folder is removed on the way out (``grader batch`` stops this way on Ctrl-C).
    ``warm``, a claimed pre-started sandbox (grader/warm.py), runs the first attempt of the
    parts and is destroyed on the way out, used or not. ``sha256``: the archive's digest
    when the caller has just verified it (not computed again). ``on_progress`` is called with
    every part's state (``grader.progress.PartProgress``) when one changes; what it raises is
    logged and ignored (a page that shows progress must not stop the grading).
    """
    started = time.monotonic()
    sweep_once(settings.sandbox.work_dir)  # what a killed grader left in the work folder
    if warm is not None and manifest is not None and not warm.fits(assignment, manifest):
        warm.close()
        warm = None
    if warm is not None:
        work = warm.work
    else:
        work = Path(tempfile.mkdtemp(prefix=temp_prefix("grade"), dir=settings.sandbox.work_dir))
    try:
        try:
            submission = intake(archive, work / "submission", assignment=assignment, sha256=sha256)
        except SubmissionInvalid as exc:
            return GradeResult.failed(
                exc, submission_sha256=_sha_or_empty(archive), assignment=assignment.name,
                spec_version=assignment.version, max_score=assignment.max_score,
            ).with_runtime(time.monotonic() - started)
        if manifest is None:
            manifest = load_manifest(settings.data_dir / assignment.name)
        runs_in = warm
        if warm is not None and not warm.fits(assignment, manifest):
            warm.stop()  # started for other inputs: the job runs cold, in its folder
            shutil.rmtree(warm.out, ignore_errors=True)
            runs_in = None
        job = _Job(assignment, settings, manifest, submission, work, predictions, warm=runs_in)
        job.cancel = cancel
        job.on_progress = on_progress
        parts = job.run()
        result = combine(
            assignment, parts, submission_sha256=submission.sha256,
            environment=job.environment(), warnings=submission.warnings,
        )
        return result.with_runtime(time.monotonic() - started)
    finally:
        if warm is not None:
            warm.close()
        shutil.rmtree(work, ignore_errors=True)


def _sha_or_empty(archive: Path) -> str:
    try:
        return sha256_file(archive)
    except OSError:
        return ""


# --------------------------------------------------------------------------- one job


class _Job:
    """Runs the parts of one submission, resuming in a fresh sandbox after a part is killed."""

    def __init__(
        self, assignment: Assignment, settings: Settings, manifest: Manifest,
        submission: Submission, work: Path, predictions: dict[str, np.ndarray] | None = None,
        *, warm: WarmSandbox | None = None,
    ) -> None:
        self.assignment = assignment
        self.settings = settings
        self.manifest = manifest
        self.submission = submission
        self.work = work
        self.sandbox = get_sandbox(settings.sandbox)
        self.job_dir = work / "job"
        self.job_dir.mkdir(exist_ok=True)  # a pre-started sandbox's folder has it already
        self.warm = warm  # runs the first attempt when given
        self.context = JobContext(
            assignment, manifest, self.job_dir, self._checkpoint_name, predictions=predictions,
        )
        self.plan = self._write_plan()
        self.outcomes: list[RunOutcome] = []
        self.cancel: threading.Event | None = None  # set: the next poll raises Cancelled
        self.on_progress: ProgressCallback | None = None
        self._shown = {spec.name: PartProgress(spec.name, "waiting") for spec in assignment.parts}
        self._reported: list[tuple[str, str]] = []

    # ---- plan

    def _write_plan(self) -> dict[str, Any]:
        parts = [plan_entry(spec, self.context) for spec in self.assignment.parts]
        plan = {"threads": threads_of(self.assignment), "parts": parts}
        (self.job_dir / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        return plan

    def _checkpoint_name(self, name: str) -> str:
        """The checkpoint file present: ``model.pt`` or one of its allowed alternatives."""
        if name in self.submission.files:
            return name
        for alternative in self.assignment.files.alternatives.get(name, ()):
            if alternative in self.submission.files:
                return alternative
        return name

    # ---- running

    def _show(self, states: list[PartProgress]) -> None:
        """Tell ``on_progress`` the parts' states when one changed (not on every poll)."""
        self._shown.update((s.name, s) for s in states)
        now = [(s.name, s.state) for s in self._shown.values()]
        if self.on_progress is None or now == self._reported:
            return
        self._reported = now
        try:
            self.on_progress(list(self._shown.values()))
        except Exception:  # progress is for people: grading goes on without it
            log.exception("reporting the progress of %s failed", self.submission.sha256[:12])

    def run(self) -> list[PartResult]:
        self._show([])
        specs = list(self.assignment.parts)
        runs: dict[str, PartRun] = {}
        remaining = [s.name for s in specs]
        attempt = 0
        while remaining:
            attempt += 1
            out = self.work / f"out-{attempt}"
            out.mkdir(exist_ok=True)
            finished = self._run_once(remaining, out)
            runs.update({r.name: r for r in finished})
            remaining = [name for name in remaining if name not in runs]
        return [self._judge(spec, runs[spec.name]) for spec in specs]

    def _run_once(self, names: list[str], out: Path) -> list[PartRun]:
        """One sandbox for ``names``; returns the runs of the parts it got through."""
        limits = self.assignment.limits
        specs = {s.name: s for s in self.assignment.parts}
        limits_s = {n: specs[n].time_limit_s for n in names}
        wall_s = limits.startup_s + sum(limits_s.values())
        progress = ProgressLog(names)

        def poll(live_out: Path) -> str | None:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("grading was cancelled")
            try:
                progress.read(live_out / PROGRESS_FILE)
            except Exception:  # a bug of ours must not stop the clock: the timer still runs
                log.exception("reading the progress of %s failed", names)
            self._show(progress.states())
            return progress.overdue(limits_s, startup_s=limits.startup_s)

        warm, self.warm = self.warm, None  # the first attempt only
        outcome = None
        if warm is not None and warm.names == names and warm.out == out:
            outcome = warm.go(poll, wall_s=wall_s)
            if outcome is None:  # it ended before its job started: run it cold in a clean /out
                shutil.rmtree(out)
                out.mkdir()
        if outcome is None:
            request = runner_request(
                self.assignment, self.settings, names, submission=self.submission.root,
                inputs=self.manifest.inputs_dir, job_dir=self.job_dir, out=out, wall_s=wall_s,
            )
            outcome = self.sandbox.run(request, poll=poll)
        ended = time.monotonic()  # the job is dead and its output copied
        self.outcomes.append(outcome)
        # The copy in ``out`` holds what the live file held: read on from the same offset,
        # to its end; events first seen now count as seen when the job had ended.
        progress.read(out / PROGRESS_FILE, final=True, at=ended)
        if progress.refused:
            log.info("sandbox run of %s: %d progress lines refused", names, progress.refused)
        self._show(progress.states(now=ended, final=True))
        log.debug("sandbox run of %s: %s", names, outcome)
        return self._part_runs(names, out, progress, outcome, ended)

    def _part_runs(
        self, names: list[str], out: Path, progress: ProgressLog, outcome: RunOutcome, ended: float
    ) -> list[PartRun]:
        """The runs of the parts this sandbox got to, timed by the host's clock alone."""
        specs = {s.name: s for s in self.assignment.parts}
        runs: list[PartRun] = []
        for name in names:
            clock = progress.clocks[name]
            if not clock.start_seen and clock.ended_at is None:
                break
            runtime = clock.runtime(ended)
            limit = specs[name].time_limit_s
            if clock.ended_at is None:
                runs.append(self._killed(specs[name], outcome, out, runtime))
                break
            if runtime > limit + LATE_SLACK_S:  # ended, but only after its limit on our clock
                runs.append(self._late(specs[name], out, runtime))
            elif clock.outcome == "done":
                runs.append(PartRun(name, Status.GRADED, runtime_s=runtime, out_dir=out / name))
            else:
                runs.append(PartRun(
                    name, Status.GRADED, failed=True, message=clock.message,
                    detail=clock.traceback, runtime_s=runtime, out_dir=out / name,
                ))
        if not runs and not progress.clocks[names[0]].start_seen:
            if outcome.timed_out or outcome.out_of_memory:
                raise GraderFault(
                    "The sandbox did not start the runner in time.",
                    detail=f"{outcome.stopped_reason}\n{outcome.stderr[-4000:]}",
                )
            raise GraderFault(
                "The sandbox could not start the runner.",
                detail=f"exit {outcome.exit_code} signal {outcome.signal}\n{outcome.stderr[-4000:]}",
            )
        return runs

    def _late(self, spec: PartSpec, out: Path, runtime: float) -> PartRun:
        """A part that reported its end only after its time limit, as the host's clock measured it."""
        return PartRun(
            spec.name, Status.TIMED_OUT,
            message=_too_slow(spec),
            detail=f"ended after {runtime:.1f} s by the grader's clock", runtime_s=runtime,
            out_dir=out / spec.name,
        )

    def _killed(self, spec: PartSpec, outcome: RunOutcome, out: Path, runtime: float) -> PartRun:
        """The part that was running when the sandbox ended without it finishing."""
        mib = self.assignment.limits.memory_bytes / 2**20
        detail = f"exit={outcome.exit_code} signal={outcome.signal} {outcome.stopped_reason}\n" \
                 f"stderr:\n{outcome.stderr[-4000:]}"
        if outcome.out_of_memory:
            status = Status.OUT_OF_MEMORY
            message = f"{spec.title} used more than the {mib:.0f} MiB memory limit and was stopped."
        elif outcome.timed_out:
            status = Status.TIMED_OUT
            message = _too_slow(spec)
        elif outcome.output_exceeded:
            status = Status.CRASHED
            message = (f"{spec.title} wrote more than the "
                       f"{self.assignment.limits.output_bytes / 2**20:.0f} MiB output limit.")
        elif outcome.pids_exceeded:
            status = Status.CRASHED
            message = (f"{spec.title} started more than {self.assignment.limits.processes} "
                       "processes or threads and was stopped.")
        else:
            status = Status.CRASHED
            how = f"signal {outcome.signal}" if outcome.signal else f"exit code {outcome.exit_code}"
            message = (f"{spec.title}: the Python process ended abruptly ({how}); your code may "
                       "call os._exit() or crash the interpreter.")
        return PartRun(spec.name, status, message=message, detail=detail, runtime_s=runtime,
                       out_dir=out / spec.name)

    # ---- judging

    def _judge(self, spec: PartSpec, run: PartRun) -> PartResult:
        return judge_part(spec, run, self.context)

    def environment(self) -> dict[str, Any]:
        """Versions and sandbox facts, recorded with every result."""
        versions = {"grader": grader.__version__, "python": platform.python_version()}
        for package in ("torch", "torchvision", "numpy", "timm"):
            try:
                versions[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                versions[package] = "absent"
        last = self.outcomes[-1] if self.outcomes else None
        return {
            "versions": versions,
            "backend": self.sandbox.name,
            "enforced": dict(last.enforced) if last else {},
            "sandbox_runs": len(self.outcomes),
            "data": {name: str(ds.provenance) for name, ds in self.manifest.datasets.items()},
            "machine": platform.machine(),
        }


def _too_slow(spec: PartSpec) -> str:
    return (f"{spec.title} did not finish within {spec.time_limit_s:g} s on the hidden tests; "
            "make it faster or check for an endless loop.")
