"""The docker backend against a real engine: its own failure messages, leftovers, a full grade.

The behaviour it shares with bwrap is tested in test_sandbox.py, whose ``sandbox`` fixture
runs every test on both backends. The engine and the runner image come from
scripts/setup-docker.sh, run once per session; without an engine the tests are skipped
with the script's reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.config import SandboxSettings
from grader.errors import GraderFault
from grader.pipeline import grade
from grader.result import Status
from grader.sandbox import Mount, RunRequest, SandboxLimits, get_sandbox
from grader.sandbox.cgroups import ENGINE_PARENT, read_mounts
from grader.sandbox.docker import DockerSandbox
from tests.conftest import docker_unavailable

PY = Path(sys.executable)
MiB = 2**20
LIMITS = SandboxLimits(wall_s=20, memory_bytes=256 * MiB, processes=32, output_bytes=8 * MiB,
                       tmp_bytes=8 * MiB, log_bytes=4096)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> None:
    """A running engine with the runner image, or the test is skipped saying why not."""
    reason = docker_unavailable(request.config)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def box(docker_engine, tmp_path_factory: pytest.TempPathFactory) -> DockerSandbox:
    sandbox = get_sandbox(SandboxSettings(backend="docker", python=str(PY),
                                          work_dir=tmp_path_factory.mktemp("docker-runs")))
    assert isinstance(sandbox, DockerSandbox)
    return sandbox


def request_for(tmp_path: Path, code: str, *, python: Path = PY) -> RunRequest:
    submission = tmp_path / "submission"
    submission.mkdir(exist_ok=True)
    return RunRequest(argv=(str(python), "-c", code), python=python,
                      mounts=(Mount(submission, "/submission"),), output_dir=tmp_path / "out",
                      limits=LIMITS)


def engine_parents(name_part: str) -> set[Path]:
    """The containers' parent cgroups named ``name_part…``, in every hierarchy, existing now."""
    found = set()
    for mount in read_mounts():
        parent = mount.mountpoint / ENGINE_PARENT
        if mount.root == "/" and parent.is_dir():
            found.update(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(name_part))
    return found


def containers(box: DockerSandbox, name_part: str) -> list[str]:
    listed = box.cli("ps", "--all", "--filter", f"name={name_part}", "--format", "{{.Names}}")
    return listed.stdout.split()


# --------------------------------------------------------------------------- configuration errors


def test_missing_runner_image_names_the_setup_script(docker_engine):
    with pytest.raises(GraderFault, match=r"runner image grader-no-such:image not found; "
                                          r"run scripts/setup-docker\.sh"):
        get_sandbox(SandboxSettings(backend="docker", docker_image="grader-no-such:image"))


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this host")
def test_unreachable_engine_is_a_grader_fault(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(GraderFault, match=r"docker engine not reachable: .*setup-docker\.sh"):
        get_sandbox(SandboxSettings(backend="docker"))


def test_interpreter_the_image_replaces_is_refused(box, tmp_path):
    system_python = Path("/usr/bin/python3")
    if not system_python.exists():
        pytest.skip("no /usr/bin/python3 on this host")
    with pytest.raises(GraderFault, match="runner image replaces"):
        box.run(request_for(tmp_path, "pass", python=system_python))


def test_mount_the_job_cannot_read_is_refused(box, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    request = RunRequest(argv=(str(PY), "-c", "pass"), python=PY,
                         mounts=(Mount(private, "/submission"),), output_dir=tmp_path / "out",
                         limits=LIMITS)
    uid = box.ids[0]  # the grader-sandbox user (the grader's own uid when it is not root)
    with pytest.raises(GraderFault, match=rf"not readable by the sandbox user \(uid {uid}, mode 0700\)"):
        box.run(request)


@pytest.mark.parametrize("code", [125, 126, 127])
def test_exit_codes_docker_itself_uses_are_the_jobs_own(box, tmp_path, code):
    # docker run exits 125-127 when it cannot start the command; a job's own exit with them
    # must stay the job's (a student failure), not turn into a set-up failure (a grader fault)
    outcome = box.run(request_for(tmp_path, f"print('started'); raise SystemExit({code})"))
    assert (outcome.exit_code, outcome.signal) == (code, None)
    assert outcome.stdout == "started\n"


def test_an_interpreter_baked_into_the_image_is_not_mounted(docker_engine, tmp_path):
    """Production bakes the venv into the image and names it in a label; nothing is bound then."""
    base = SandboxSettings().docker_image
    baked = "grader-test-baked:latest"
    dockerfile = f"FROM {base}\nLABEL org.cnn-grader.python=/bin/sh\n"
    built = subprocess.run(["docker", "build", "--quiet", "--tag", baked, "-"], input=dockerfile,
                           env=dict(os.environ, DOCKER_BUILDKIT="0"), capture_output=True,
                           text=True, check=False)
    assert built.returncode == 0, built.stderr
    try:
        box = get_sandbox(SandboxSettings(backend="docker", python="/bin/sh", docker_image=baked))
        assert box.interpreter_mounts(Path("/bin/sh")) == ()
        request = RunRequest(argv=("/bin/sh", "-c", "echo in $PWD; ls /"), python=Path("/bin/sh"),
                             mounts=(), output_dir=tmp_path / "out", limits=LIMITS)
        outcome = box.run(request)
        assert outcome.exit_code == 0, outcome.stderr
        first, *root = outcome.stdout.split("\n")
        assert first == "in /tmp"
        assert {"work", "root"}.isdisjoint(root)  # no interpreter prefix bound from the host
    finally:
        subprocess.run(["docker", "rmi", "--force", baked], capture_output=True, check=False)


# --------------------------------------------------------------------------- containers


def test_container_is_named_labelled_and_removed(box, tmp_path):
    mine = f"grader-run-{os.getpid()}-"
    seen: dict[str, dict[str, str]] = {}

    def poll(live_out: Path) -> None:
        for name in containers(box, mine):
            labels = box.cli("inspect", "--format", "{{json .Config.Labels}}", name)
            if labels.returncode == 0:
                seen[name] = json.loads(labels.stdout)

    outcome = box.run(request_for(tmp_path, "import time; time.sleep(1.5)"), poll=poll)
    assert outcome.exit_code == 0
    assert len(seen) == 1
    [(name, labels)] = seen.items()
    assert labels["org.cnn-grader.sandbox"] == "run"
    assert labels["org.cnn-grader.host"] == box.host
    assert not containers(box, name)


def test_leftovers_of_a_dead_grader_are_removed(box, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    name = f"grader-run-{dead.pid}-1-abcdef"
    made = box.cli("create", "--name", name, "--label", "org.cnn-grader.sandbox=run",
                   "--label", f"org.cnn-grader.host={box.host}", "--network", "none",
                   box.image, "/bin/true")
    assert made.returncode == 0, made.stderr
    parents = [m.mountpoint / ENGINE_PARENT / name.removeprefix("grader-")
               for m in read_mounts() if m.fstype == "cgroup" and m.root == "/"]
    for parent in parents:  # as a grader that died while its container ran leaves them
        parent.mkdir(parents=True, exist_ok=True)
    try:
        assert name in box.remove_leftovers()
        assert not containers(box, name)
        assert not [p for p in parents if p.exists()]
    finally:
        box.cli("rm", "--force", name)
        for parent in parents:
            with contextlib.suppress(OSError):
                parent.rmdir()


def test_the_containers_parent_cgroup_is_read_and_removed(box, tmp_path):
    """The container's group lives below a parent of ours, read for the peak, then removed."""
    if not box.cgroup_version:
        pytest.skip("the engine's cgroup driver is not cgroupfs: no parent cgroup is named")
    mine = f"run-{os.getpid()}-"
    seen: dict[Path, set[str]] = {}

    def poll(live_out: Path) -> None:
        for parent in engine_parents(mine):
            seen.setdefault(parent, set()).update(c.name for c in parent.iterdir() if c.is_dir())

    outcome = box.run(request_for(tmp_path, "import time; x = b'1' * 2**26; time.sleep(1.5)"),
                      poll=poll)
    assert outcome.exit_code == 0, outcome.stderr
    assert seen
    assert any(seen.values())  # the container's own group, below ours
    assert not engine_parents(mine)
    assert outcome.peak_memory_bytes is not None
    assert 2**26 < outcome.peak_memory_bytes < LIMITS.memory_bytes


# --------------------------------------------------------------------------- a full grade


def test_a_full_grade_in_docker_scores_like_bwrap(docker_engine, make_submission, assignment,
                                                  settings, tmp_path):
    """One real submission through `grader grade --sandbox docker`, compared with bwrap."""
    archive = make_submission()
    out = tmp_path / "docker.json"
    res = CliRunner().invoke(main, ["grade", str(archive), "--sandbox", "docker", "--json", str(out)],
                             obj={"settings": settings})
    assert res.exit_code == 0, res.output
    in_docker = json.loads(out.read_text())
    in_bwrap = grade(archive, assignment, settings).to_dict()
    assert in_docker["status"] == Status.GRADED.value, in_docker["message"]
    assert in_docker["environment"]["backend"] == "docker"
    assert in_docker["environment"]["enforced"]["network"].startswith("docker --network none")
    assert in_bwrap["environment"]["backend"] == "bwrap"

    def scores(result: dict) -> dict:
        return {
            "score": result["score"], "passed": result["passed"],
            "parts": [
                {key: part[key] for key in ("name", "status", "score", "passed", "metrics", "tests")}
                for part in result["parts"]
            ],
        }

    assert scores(in_docker) == scores(in_bwrap)
    assert in_docker["parts"][0]["score"] == 40

