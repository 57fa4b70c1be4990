"""docker/compose.yaml against a real engine: the file validates, its images build from the local
Debian base, and the whole stack (PostgreSQL, Redis, gunicorn, a worker running student code in
sibling sandbox containers) grades one upload sent over HTTP.

The engine comes from scripts/setup-docker.sh (the fixture of test_sandbox_docker.py) and Compose
from scripts/setup-compose.sh; where either cannot be had the tests are skipped saying why. The
first build installs Debian packages and wheels (torch) from the registries and takes minutes;
later runs reuse the engine's build cache.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import docker_unavailable
from tests.leaderboard.factories import tiny_good_zip
from tests.leaderboard.helpers import TERMINAL

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
BASE_IMAGE = "cnn-grader-base:bookworm"  # tagged by scripts/setup-docker.sh
BUILD_TIMEOUT_S = 1800
STACK_TIMEOUT_S = 240
MIRROR_PORT = 39217
BUILD_NEEDS_BYTES = 16 << 30
IMAGE_LABEL = "org.cnn-grader.image"  # on every image of compose.yaml (its Dockerfiles)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def compose(request: pytest.FixtureRequest) -> list[str]:
    """The `docker compose -f docker/compose.yaml` command, or the test is skipped saying why."""
    reason = docker_unavailable(request.config)
    if reason:
        pytest.skip(reason)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "setup-compose.sh"), "--no-engine"],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no output)"]
        pytest.skip(f"no docker compose: scripts/setup-compose.sh failed: {lines[-1]}")
    return ["docker", "compose", "-f", str(COMPOSE_FILE)]


def run(argv: list[str], *, env: dict[str, str], timeout_s: float, input_text: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, input=input_text, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv[3:])} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def docker_free_bytes(env: dict[str, str]) -> int:
    root = run(["docker", "info", "--format", "{{.DockerRootDir}}"], env=env, timeout_s=60).stdout.strip()
    return shutil.disk_usage(root or "/var/lib/docker").free


def make_room_for_build(env: dict[str, str]) -> None:
    """Drop this project's superseded images and the engine's dangling build cache when the
    engine's disk is short of what a build from scratch needs (the torch layer is ~6 GB, twice
    that while pip unpacks); a cached build needs almost nothing."""
    if docker_free_bytes(env) >= BUILD_NEEDS_BYTES:
        return
    run(["docker", "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"], env=env,
        timeout_s=600, check=False)
    run(["docker", "builder", "prune", "--force"], env=env, timeout_s=600, check=False)


def test_the_compose_file_validates_with_defaults_and_production_settings(compose):
    plain = run([*compose, "config", "--quiet"], env=dict(os.environ), timeout_s=60)
    assert plain.stderr.strip() == ""  # no warnings (an unset variable, an obsolete key)
    production = dict(os.environ, GRADER_BASE_IMAGE="debian:bookworm-slim",
                      POSTGRES_IMAGE="postgres:15", REDIS_IMAGE="redis:7",
                      GRADER_IMAGE_PREFIX="registry.example/cnn-grader", GRADER_IMAGE_TAG="2026.1",
                      GRADER_HOST_DIR="/srv/cnn-grader", POSTGRES_PASSWORD="p" * 32,
                      REDIS_PASSWORD="r" * 32, PIP_EXTRA_INDEX_URL="https://download.pytorch.org/whl/cpu")
    config = json.loads(run([*compose, "--profile", "images", "config", "--format", "json"],
                            env=production, timeout_s=60).stdout)
    services = config["services"]
    assert set(services) == {"postgres", "redis", "migrate", "hidden-data", "web", "worker", "sandbox-image"}
    for name in ("postgres", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    worker = services["worker"]
    assert worker["environment"]["GRADER_SANDBOX"] == "docker"
    # The host folder is mounted at its own path: the sibling sandboxes see the same paths.
    binds = {(v["source"], v["target"]) for v in worker["volumes"] if v["type"] == "bind"}
    assert ("/srv/cnn-grader", "/srv/cnn-grader") in binds
    assert worker["image"] == "registry.example/cnn-grader-worker:2026.1"
    assert services["web"]["build"]["args"]["BASE_IMAGE"] == "debian:bookworm-slim"
    assert "pypi" not in services["sandbox-image"]["build"]["args"]["PIP_EXTRA_INDEX_URL"]
    assert set(config["volumes"]) >= {"database", "uploads", "instance", "queue"}


# A wheel mirror on this machine's disk (a PEP 503 index), if there is one: the builds then take
# torch from it instead of downloading ~5 GB from PyPI, as a site's own mirror would serve them.
LOCAL_MIRROR = Path(os.environ.get("GRADER_TEST_PIP_MIRROR", "/opt/pypi-more"))


@pytest.fixture(scope="module")
def pip_index() -> Iterator[dict[str, str]]:
    """Build arguments that put the local mirror (served over loopback) before PyPI."""
    if not (LOCAL_MIRROR / "simple" / "torch").is_dir():
        yield {}
        return
    # A fixed port when it is free: the index URL is a build argument, part of the cache key of
    # the torch layer, so a new port every run would rebuild that layer (and leave ~6 GB behind).
    port = MIRROR_PORT if port_is_free(MIRROR_PORT) else free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(LOCAL_MIRROR),
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/simple/torch/", timeout=5) as page:
                return page.status == 200

        wait_for("the local wheel mirror", up, 30)
        yield {"PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple",
               "PIP_EXTRA_INDEX_URL": "https://pypi.org/simple"}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(compose, pip_index, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack built and started under its own project name and port; removed with its volumes."""
    host_dir = tmp_path_factory.mktemp("compose-host")
    project = f"cnngrader-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = dict(
        os.environ,
        COMPOSE_PROJECT_NAME=project,
        GRADER_BASE_IMAGE=BASE_IMAGE,
        GRADER_HOST_DIR=str(host_dir),
        WEB_PORT=str(port),
        POSTGRES_PASSWORD=secrets.token_hex(16),
        REDIS_PASSWORD=secrets.token_hex(16),
        LEADERBOARD_ENFORCE_DEADLINES="false",
        GRADER_BUILD_TESTS_ARGS="--synthetic-count 200",
        GUNICORN_CMD_ARGS="--workers 2 --threads 2 --timeout 120",
        **pip_index,
    )
    make_room_for_build(env)
    started = time.monotonic()
    build = run([*compose, "--profile", "images", "build"], env=env, timeout_s=BUILD_TIMEOUT_S,
                check=False)
    if build.returncode != 0:
        free_gib = docker_free_bytes(env) / (1 << 30)
        raise AssertionError(f"compose build exited {build.returncode} ({free_gib:.1f} GiB free for "
                             f"the engine):\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    built_s = time.monotonic() - started
    # A rebuilt image leaves the one it replaces dangling: drop it, keep the disk from filling.
    run(["docker", "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"], env=env,
        timeout_s=600, check=False)
    try:
        run([*compose, "up", "--detach"], env=env, timeout_s=STACK_TIMEOUT_S)
        yield {"env": env, "port": port, "project": project, "host_dir": host_dir, "built_s": built_s}
    finally:
        logs = run([*compose, "logs", "--no-color", "--tail", "60"], env=env, timeout_s=60, check=False)
        print(logs.stdout[-20000:])
        run([*compose, "down", "--volumes", "--remove-orphans", "--timeout", "10"], env=env,
            timeout_s=180, check=False)
        shutil.rmtree(host_dir, ignore_errors=True)


def http(port: int, path: str, *, secret: str = "", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     method="POST" if body is not None else "GET",
                                     headers=dict(headers or {}))
    if secret:
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(what: str, check, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(1)


def health(stack: dict[str, Any], compose: list[str], service: str) -> str:
    cid = run([*compose, "ps", "--quiet", service], env=stack["env"], timeout_s=30).stdout.strip()
    if not cid:
        return "missing"
    return run(["docker", "inspect", "--format", "{{.State.Health.Status}}", cid],
               env=stack["env"], timeout_s=30).stdout.strip()


def test_the_stack_grades_an_upload_end_to_end(compose, stack):
    env, port = stack["env"], stack["port"]
    wait_for("the web app", lambda: http(port, "/api/leaderboard")[0] == 200, STACK_TIMEOUT_S)
    wait_for("a healthy worker", lambda: health(stack, compose, "worker") == "healthy", STACK_TIMEOUT_S)

    # A student, added as an instructor would: through the web container's flask commands.
    roster = "id,name,email\ns001,Ada Lovelace,ada@example.org\n"
    flask = [*compose, "exec", "-T", "web", "sh", "-c",
             "cat > /tmp/roster.csv && flask --app leaderboard import-roster /tmp/roster.csv >&2 "
             "&& flask --app leaderboard export-secrets"]
    exported = run(flask, env=env, timeout_s=120, input_text=roster).stdout
    secret = next(row["secret"] for row in csv.DictReader(io.StringIO(exported)) if row["id"] == "s001")

    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="good.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n").encode() + tiny_good_zip() + \
        f"\r\n--{boundary}--\r\n".encode()
    status, answer = http(port, "/api/submissions", secret=secret, body=body,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 202, answer
    sub_id = answer["id"]

    def finished() -> dict[str, Any] | None:
        code, got = http(port, f"/api/submissions/{sub_id}", secret=secret)
        return got if code == 200 and got["status"] in TERMINAL else None

    done = wait_for(f"submission {sub_id} to be graded", finished, STACK_TIMEOUT_S)
    result = done["result"]
    assert done["status"] == "graded", result.get("message")
    parts = {p["name"]: p for p in result["parts"]}
    assert list(parts) == ["numpy_nn", "mynet", "finetune"]
    # The reference NumPy layers pass every layer test; the tiny nets are untrained, below the
    # thresholds, but ran on the whole hidden sets in the sandbox (accuracies are measured).
    assert parts["numpy_nn"]["passed"] is True
    assert parts["numpy_nn"]["score"] == parts["numpy_nn"]["max_score"] == 40.0
    assert 0.0 <= parts["mynet"]["metrics"]["accuracy"] < 0.75
    assert set(parts["finetune"]["metrics"]) >= {"ORIG", "AUG", "NEW", "weighted"}
    assert result["score"] == pytest.approx(sum(p["score"] for p in parts.values()))
    assert result["max_score"] == 100.0

    # The job ran in sibling containers labelled with the worker's host name; none is left.
    worker = run([*compose, "ps", "--quiet", "worker"], env=env, timeout_s=30).stdout.strip()
    hostname = run(["docker", "inspect", "--format", "{{.Config.Hostname}}", worker], env=env,
                   timeout_s=30).stdout.strip()
    leftovers = run(["docker", "ps", "--all", "--quiet", "--filter", f"label=org.cnn-grader.host={hostname}"],
                    env=env, timeout_s=30).stdout.split()
    assert leftovers == []
    assert result["environment"]["backend"] == "docker"
    # Every image carries the label the build's clean-up goes by (no superseded 6 GB images pile up).
    for image, role in (("cnn-grader-sandbox:latest", "sandbox"), ("cnn-grader-worker:latest", "worker"),
                        ("cnn-grader-web:latest", "web")):
        template = f'{{{{ index .Config.Labels "{IMAGE_LABEL}" }}}}'
        label = run(["docker", "image", "inspect", "--format", template, image], env=env,
                    timeout_s=30).stdout.strip()
        assert label == role, image
    board = http(port, "/api/leaderboard")[1]
    assert any(row["uploads"] >= 1 for row in board["rows"])
