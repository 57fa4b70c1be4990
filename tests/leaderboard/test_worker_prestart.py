"""The real ``grader worker`` keeps the next job's sandbox pre-started (grader/warm.py): killed
while it holds one, it leaves nothing behind once the next worker starts, and that worker
grades in its own fresh pre-started sandbox."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.sandbox.views import VIEWS_ROOT
from tests.leaderboard.helpers import (
    Stack,
    api_upload,
    build_stack,
    close_stack,
    grader_settings,
    sign_in,
    wait_done,
)
from tests.test_warm import gone, run_groups

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory, grader_home: Path) -> Iterator[Stack]:
    """A service of its own (SQLite) whose worker pre-starts sandboxes (GRADER_SANDBOX_PRESTART=1)."""
    tmp = tmp_path_factory.mktemp("stack-prestart")
    settings = grader_settings(grader_home)
    settings = dataclasses.replace(settings, sandbox=dataclasses.replace(settings.sandbox, prestart=True))
    s = build_stack(tmp, grader_home=grader_home, db_url=f"sqlite:///{tmp / 'lb.db'}", grader=settings)
    yield s
    close_stack(s)


def held(pid: int) -> tuple[list[Path], dict[Path, set[int]]]:
    """The run folders and busy cgroups of the grader process ``pid``."""
    folders = list(Path(tempfile.gettempdir()).glob(f"grade-*.{pid}-*"))
    groups = run_groups(pid)
    return folders, groups if any(groups.values()) else {}


def test_a_worker_killed_while_holding_a_pre_started_sandbox_leaves_nothing(
        stack: Stack, zips: dict[str, bytes]) -> None:
    worker = next(w for w in stack.workers if w.proc.poll() is None)
    pid = worker.proc.pid
    folders, groups = stack.wait_for(
        lambda: (found := held(pid))[0] and found[1] and found, timeout_s=180,
        what="the worker's pre-started sandbox")
    pids = {p for procs in groups.values() for p in procs}

    worker.kill()
    gone(pids)
    stack.start_worker()  # sweeps the run folders, views and cgroups of dead graders

    stack.wait_for(lambda: not any(f.exists() for f in folders) and
                   not any(g.exists() for g in groups), timeout_s=180,
                   what="the dead worker's sandbox to be swept")
    assert not list(VIEWS_ROOT.glob(f"*.{pid}-*"))

    secret = stack.roster.secrets["s004"]
    client = stack.app.test_client()
    sign_in(client, secret)
    sub_id = api_upload(stack, secret, zips["good"], "good.zip").get_json()["id"]
    assert wait_done(stack, [sub_id]) == {sub_id: "graded"}
    result = client.get(f"/api/submissions/{sub_id}").get_json()["result"]
    assert result["status"] == "graded"
