"""Batch cancellation goes through the sandbox's poll callback: Ctrl-C sets an event, each
running sandbox sees it at its next poll, kills its job and the grading thread ends.

Real bwrap sandboxes run a long sleep; the main loop's Ctrl-C is a KeyboardInterrupt from the
``tick`` callback once both jobs run. Nothing is injected into the threads: if ``run_tasks``
stopped setting the event, the sleeps would run to the sandbox's wall limit, no poll would
raise ``Cancelled`` and the assertions below would fail.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from grader.batch.run import CANCEL_WAIT_S, Outcome, Task, run_tasks
from grader.config import SandboxSettings
from grader.errors import Cancelled
from grader.result import GradeResult
from grader.sandbox import get_sandbox
from tests.test_sandbox import PY, host_pids_with, make_request


@pytest.mark.timeout(60)
def test_ctrl_c_stops_running_sandboxes_through_their_poll(tmp_path: Path) -> None:
    box = get_sandbox(SandboxSettings(backend="bwrap", python=str(PY), work_dir=tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    marker = f"victim-{uuid.uuid4().hex}"
    running: set[str] = set()
    cancelled: list[str] = []
    lock = threading.Lock()

    def grade(task: Task, cancel: threading.Event) -> GradeResult:
        folder = tmp_path / task.sha256
        folder.mkdir()

        def poll(_live_out: Path) -> str | None:
            with lock:
                running.add(task.sha256)
            if cancel.is_set():
                cancelled.append(task.sha256)
                raise Cancelled("stop")
            return None

        box.run(make_request(folder, "import time; time.sleep(60)", marker), poll=poll)
        raise AssertionError("the sandbox ran to its end: the cancel event never reached it")

    def tick() -> None:
        with lock:
            if len(running) == 2:
                raise KeyboardInterrupt

    kept: list[Outcome] = []
    tasks = [Task(f"zip{i}", tmp_path / f"zip{i}.zip", f"s{i}") for i in range(3)]
    started = time.monotonic()
    outcomes, interrupted = run_tasks(tasks, grade=grade, jobs=2, keep=kept.append,
                                      on_done=lambda _o: None, tick=tick)
    assert interrupted
    assert outcomes == []
    assert kept == []
    assert sorted(cancelled) == ["zip0", "zip1"]  # the third zip was never handed out
    assert time.monotonic() - started < min(30.0, CANCEL_WAIT_S)
    assert not host_pids_with(marker)
