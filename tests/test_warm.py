"""Pre-started sandboxes (grader/warm.py), in the real bwrap sandbox: the same results as a
cold run, never shared by two submissions, nothing left behind when unused, expired or when
the worker holding one is killed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from grader.config import Assignment, Settings
from grader.datasets.manifest import load_manifest
from grader.leftovers import sweep
from grader.pipeline import grade
from grader.result import GradeResult
from grader.sandbox.base import process_alive
from grader.sandbox.cgroups import PARENT_NAME, find_cgroups, mount_points
from grader.sandbox.views import VIEWS_ROOT
from grader.warm import WarmPool, WarmSandbox
from tests.conftest import ROOT


@pytest.fixture
def work_settings(settings: Settings, tmp_path: Path) -> Settings:
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o755)
    return dataclasses.replace(settings, sandbox=dataclasses.replace(settings.sandbox, work_dir=work))


def run_groups(pid: int) -> dict[Path, set[int]]:
    """This machine's sandbox cgroups made by process ``pid``, with the processes in each."""
    root = find_cgroups(PARENT_NAME)
    groups: dict[Path, set[int]] = {}
    for parent in root.parent_dirs():
        for child in parent.glob(f"run-{pid}-*"):
            try:  # a group may be removed while we look
                procs = (child / "cgroup.procs").read_text().split()
            except FileNotFoundError:
                continue
            groups[child] = {int(p) for p in procs}
    return groups


def cpu_idle(groups: Iterable[Path]) -> str | None:
    """The run's ``cpu.idle`` (cgroup v1's cpu hierarchy or the v2 group); None once removed."""
    for group in groups:
        try:
            return (group / "cpu.idle").read_text().strip()
        except FileNotFoundError:
            continue
    return None


def comparable(result: GradeResult) -> dict[str, object]:
    """The result without what differs between two runs of the same job (times, environment)."""
    data = json.loads(json.dumps(result.to_dict()))
    data.pop("runtime_s", None)
    data.pop("environment", None)
    for part in data["parts"]:
        part.pop("runtime_s", None)
    return data


def leftovers(work: Path | None) -> list[str]:
    """Run folders in the work folder (not the backend's shared /etc files, kept while it lives)."""
    assert work is not None
    return [p.name for p in work.iterdir() if p.name.startswith(("grade-", "grader-run-"))]


def gone(pids: Iterable[int]) -> None:
    """The processes end at once; their zombies, re-parented to init, are reaped in seconds."""
    pids = set(pids)
    assert pids
    wait_until(lambda: not any(process_alive(p) for p in pids), timeout_s=60)


def wait_until(condition, timeout_s: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_pre_started_sandbox_grades_as_a_cold_one_and_is_destroyed(
        work_settings: Settings, assignment: Assignment, make_submission) -> None:
    manifest = load_manifest(work_settings.data_dir / assignment.name)
    archive = make_submission()
    cold = grade(archive, assignment, work_settings, manifest=manifest)
    warm = WarmSandbox(assignment, work_settings, manifest)
    assert warm.prepared.wait(300), "the runner never said it was ready"
    groups = run_groups(os.getpid())
    assert len({g.name for g in groups}) == 1
    assert all(groups.values())
    assert cpu_idle(groups) == "1"  # waiting, it only takes CPU that running jobs leave idle
    time.sleep(8)  # waiting for a submission never counts against it
    assert warm.claim()

    seen: list[str | None] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            seen.append(cpu_idle(groups))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = grade(archive, assignment, work_settings, manifest=manifest, warm=warm)
    finally:
        watching.set()
        watcher.join()
    assert "0" in seen  # its job runs with the usual share of the CPU

    assert comparable(result) == comparable(cold)
    assert result.status == "graded"
    assert result.score == cold.score > 0
    assert result.environment["sandbox_runs"] == 1
    assert result.parts[0].runtime_s < 6  # the layer tests take well under a second
    assert not warm.work.exists()
    assert not warm.alive
    assert run_groups(os.getpid()) == {}
    gone(p for pids in groups.values() for p in pids)


def test_an_unused_pre_started_sandbox_is_cleaned_up(
        work_settings: Settings, assignment: Assignment) -> None:
    manifest = load_manifest(work_settings.data_dir / assignment.name)
    warm = WarmSandbox(assignment, work_settings, manifest)
    assert warm.prepared.wait(300)
    groups = run_groups(os.getpid())
    pids = {p for procs in groups.values() for p in procs}
    assert pids
    assert warm.work.is_dir()

    warm.close()

    assert not warm.alive
    assert not warm.work.exists()
    gone(pids)
    assert not any(g.exists() for g in groups)
    assert not warm.claim()  # closed: never handed out


def test_one_that_waited_too_long_is_replaced(
        work_settings: Settings, assignment: Assignment) -> None:
    manifest = load_manifest(work_settings.data_dir / assignment.name)
    pool = WarmPool(assignment, work_settings, max_wait_s=20.0)
    try:
        assert pool.take(manifest) is None  # nothing ready yet: that job grades cold
        first = pool._ready[0]
        wait_until(lambda: not first.alive, timeout_s=300)  # it stopped itself after 20 s
        assert not first.work.exists()
        wait_until(lambda: bool(pool._ready) and pool._ready[0] is not first)
        second = pool._ready[0]
        assert second.alive
        assert second.work != first.work
    finally:
        pool.close()
    assert not second.alive
    assert not second.work.exists()
    assert leftovers(work_settings.sandbox.work_dir) == []


def test_two_submissions_never_share_a_sandbox(
        work_settings: Settings, assignment: Assignment, make_submission) -> None:
    manifest = load_manifest(work_settings.data_dir / assignment.name)
    good = make_submission("good.zip")
    broken = make_submission("broken.zip", pytorch_cnn__py="raise ImportError('nope')\n")
    pool = WarmPool(assignment, work_settings)
    try:
        assert pool.take(manifest) is None
        wait_until(lambda: pool._ready[0].prepared.is_set())
        first = pool.take(manifest)
        assert first is not None
        result_good = grade(good, assignment, work_settings, manifest=manifest, warm=first)
        wait_until(lambda: bool(pool._ready) and pool._ready[0].prepared.is_set())
        second = pool.take(manifest)
        assert second is not None
        assert second is not first
        assert second.work != first.work
        assert not first.claim()  # used once: never again
        result_broken = grade(broken, assignment, work_settings, manifest=manifest, warm=second)
    finally:
        pool.close()
    assert result_good.score > 0
    cold = grade(broken, assignment, work_settings, manifest=manifest)
    assert comparable(result_broken) == comparable(cold)  # nothing of the good one was seen
    assert leftovers(work_settings.sandbox.work_dir) == []


HOLD_AND_WAIT = textwrap.dedent("""
    import dataclasses, sys
    from pathlib import Path
    from grader.config import SandboxSettings, Settings, load_assignment
    from grader.datasets.manifest import load_manifest
    from grader.warm import WarmSandbox
    home, work = Path(sys.argv[1]), Path(sys.argv[2])
    settings = Settings(home=home, sandbox=SandboxSettings(backend="bwrap", python=sys.executable,
                                                           work_dir=work))
    assignment = load_assignment()
    warm = WarmSandbox(assignment, settings, load_manifest(settings.data_dir / assignment.name))
    warm.prepared.wait(300)
    print(warm.work, flush=True)
    import time
    time.sleep(600)
""")


def test_a_worker_killed_while_holding_one_leaves_nothing_behind(
        work_settings: Settings, grader_home: Path) -> None:
    work = work_settings.sandbox.work_dir
    assert work is not None
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, str(grader_home), str(work)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None
        folder = Path(holder.stdout.readline().strip())
        assert folder.is_dir()
        groups = run_groups(holder.pid)
        pids = {p for procs in groups.values() for p in procs}
        assert pids
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    gone(pids)  # bwrap dies with its parent, and the sandbox with bwrap

    removed = sweep(work)  # what the next worker does when it starts
    sweep(VIEWS_ROOT)  # as root: the read-only views of its paths (a new bwrap sandbox does this)
    find_cgroups(PARENT_NAME)  # sweeps the run groups of dead graders

    assert folder in removed
    assert leftovers(work) == []
    assert not any(g.exists() for g in groups)
    assert not [p for p in VIEWS_ROOT.glob(f"*.{holder.pid}-*")]
    assert not [m for m in mount_points() if str(work) in str(m) or f".{holder.pid}-" in str(m)]
