"""Shared fixtures: a small real hidden set, settings, trained tiny models, submission zips."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from grader.config import Assignment, SandboxSettings, Settings, load_assignment

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "hidden_tests" / "cnn" / "solution"
# Small synthetic dogs-and-cats splits keep a full grade at a few seconds; FashionMNIST is
# the real 10,000-image test set.
TEST_SPLIT_COUNTS = {"ORIG": 48, "AUG": 48, "NEW": 48}


_ENGINES_USED: weakref.WeakSet[Engine] = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _remember_the_engine(connection) -> None:  # type: ignore[no-untyped-def]
    _ENGINES_USED.add(connection.engine)


@pytest.fixture(autouse=True)
def _engines_closed_after_each_test() -> Iterator[None]:
    """Closes the pooled connections of every engine a test used and left open (an app built
    by a test, a worker it started): otherwise the garbage collector closes them in whichever
    later test it runs, and psycopg's warning fails that unrelated test."""
    yield
    for engine in list(_ENGINES_USED):
        engine.dispose()
    _ENGINES_USED.clear()


@pytest.fixture(scope="session")
def grader_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grader home whose hidden data is built once per session by the real builder."""
    from tests.factories import build_hidden_data

    home = tmp_path_factory.mktemp("grader-home")
    build_hidden_data(home / "hidden" / "cnn", synthetic_counts=TEST_SPLIT_COUNTS, seed=11)
    return home


@pytest.fixture(scope="session")
def assignment() -> Assignment:
    return load_assignment()


@pytest.fixture
def settings(grader_home: Path) -> Settings:
    return Settings(home=grader_home, sandbox=SandboxSettings(backend="bwrap", python=sys.executable))


def docker_unavailable(config: pytest.Config) -> str:
    """Why no engine with the runner image is here ("" when there is); set up once per session."""
    # Kept on the session's config, not in a module cache: pytest imports this module as
    # ``conftest``, and the test modules import it again as ``tests.conftest``.
    if not hasattr(config, "_grader_docker_unavailable"):
        config._grader_docker_unavailable = _set_up_docker()  # type: ignore[attr-defined]
    return config._grader_docker_unavailable  # type: ignore[attr-defined]


def _set_up_docker() -> str:
    env = dict(os.environ, GRADER_DOCKER_IMAGE=SandboxSettings().docker_image)
    lock = ROOT / "var" / "docker" / ".setup.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist's workers each ask: one sets up, the others wait and then find it done.
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            done = subprocess.run(["bash", str(ROOT / "scripts" / "setup-docker.sh")], env=env,
                                  capture_output=True, text=True, timeout=1800, check=False)
        except subprocess.TimeoutExpired:
            return "scripts/setup-docker.sh did not finish within 30 minutes"
    if done.returncode == 0:
        return ""
    lines = [line for line in done.stderr.splitlines() if line.strip()] or ["(no output)"]
    return f"no docker engine: scripts/setup-docker.sh failed: {lines[-1]}"


@pytest.fixture(scope="module", params=["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest) -> str:
    """The sandbox backend: bwrap, then docker (skipped, saying why, where no engine can start).

    Module-scoped, so a module's fixtures can grade once per backend and share the result.
    """
    if request.param == "docker" and (reason := docker_unavailable(request.config)):
        pytest.skip(reason)
    return request.param


@pytest.fixture
def backend_settings(backend: str, settings: Settings) -> Settings:
    """The test's settings with the sandbox backend set to ``backend``."""
    return dataclasses.replace(settings, sandbox=dataclasses.replace(settings.sandbox, backend=backend))


QUICK_LIMITS_S = {"numpy_nn": 6.0, "mynet": 25.0, "finetune": 40.0}


def quick(assignment: Assignment, **limits: int | float) -> Assignment:
    """The spec with short time limits per part (and any limit overridden) for failure-mode tests."""
    parts = tuple(
        dataclasses.replace(p, time_limit_s=QUICK_LIMITS_S.get(p.name, p.time_limit_s))
        for p in assignment.parts
    )
    return dataclasses.replace(
        assignment, parts=parts, limits=dataclasses.replace(assignment.limits, **limits)
    )


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.pt: the reference MyNet trained briefly (real data); finetuned.pt: seeded, untrained."""
    import torch

    from grader.config import HIDDEN_TESTS_DIR
    from grader.demo import load_solution

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.set_num_threads(2)
    recipe = load_solution("demo_samples", HIDDEN_TESTS_DIR / "cnn")
    recipe.train_mynet(folder / "model.pt", images=6000, epochs=1, echo=lambda _line: None)
    torch.manual_seed(0)
    net = load_solution("pytorch_cnn").FinetuneNet()
    torch.save(net.state_dict(), folder / "finetuned.pt")
    return {"model.pt": folder / "model.pt", "finetuned.pt": folder / "finetuned.pt"}


def build_submission(path: Path, checkpoints: dict[str, Path], **files: str | bytes | None) -> Path:
    """A zip of the reference solution at ``path``, with files replaced (text/bytes) or removed
    (None); ``model__pt`` names ``model.pt``."""
    from tests.factories import make_zip

    content: dict[str, bytes] = {
        "numpy_nn.py": (SOLUTION / "numpy_nn.py").read_bytes(),
        "pytorch_cnn.py": (SOLUTION / "pytorch_cnn.py").read_bytes(),
        "model.pt": checkpoints["model.pt"].read_bytes(),
        "finetuned.pt": checkpoints["finetuned.pt"].read_bytes(),
    }
    for key, value in files.items():
        filename = key.replace("__", ".") if "__" in key else key
        if value is None:
            content.pop(filename, None)
        else:
            content[filename] = value.encode() if isinstance(value, str) else value
    return make_zip(path, content)


@pytest.fixture
def make_submission(tmp_path: Path, checkpoints: dict[str, Path]):
    """Build a zip from the reference solution, with files replaced (text/bytes) or removed (None)."""

    def make(name: str = "submission.zip", **files: str | bytes | None) -> Path:
        return build_submission(tmp_path / name, checkpoints, **files)

    return make


def low_ceiling_spec(folder: Path) -> Path:
    """The shipped spec with MyNet's plausibility ceiling (and pass line) far below what the
    session's trained MyNet reaches, in ``folder/assignment.toml``."""
    text = (ROOT / "hidden_tests" / "cnn" / "assignment.toml").read_text()
    for old, new in (("threshold = 0.75", "threshold = 0.2"),
                     ("suspicious_above = 0.97", "suspicious_above = 0.4")):
        assert old in text
        text = text.replace(old, new, 1)
    from tests.factories import write_spec

    return write_spec(folder, text)


@pytest.fixture(scope="session")
def flagged(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]):
    """The reference submission with the session's trained MyNet, graded once by
    `grader grade --json` in the bwrap sandbox against an instructor's private 500-image
    FashionMNIST set, under a spec whose MyNet ceiling it exceeds: (CLI result, result JSON
    path, zip, spec folder)."""
    from click.testing import CliRunner

    from grader.cli import main
    from tests.factories import build_hidden_data, private_fashion_set

    home = tmp_path_factory.mktemp("private-home")
    private_fashion_set(home / "mine", n=500, seed=5)
    build_hidden_data(home / "hidden" / "cnn", fashion_dir=home / "mine",
                      synthetic_counts=TEST_SPLIT_COUNTS, seed=11)
    archive = build_submission(home / "submission.zip", checkpoints)
    spec = low_ceiling_spec(home / "spec")
    settings = Settings(home=home, assignment_path=spec,
                        sandbox=SandboxSettings(backend="bwrap", python=sys.executable))
    out = home / "result.json"
    res = CliRunner().invoke(main, ["grade", str(archive), "--json", str(out)],
                             obj={"settings": settings})
    return res, out, archive, spec


# Test files that take minutes, longest first (measured on the 2-core CI machine). With
# `-n 2 --dist loadfile` and `--no-loadscope-reorder` (pyproject's addopts) xdist hands files out
# in collection order, so the long ones start first and the short ones fill in around them;
# xdist's own reordering (by number of tests) would leave a few long single tests for last.
LONGEST_FIRST = (
    "test_hostile.py", "test_compose.py", "test_failure_modes.py", "test_real_size_uploads.py",
    "test_similarity.py", "test_distributed.py", "test_template.py", "test_pipeline.py",
    "test_checkpoints.py", "test_worker_flow.py", "test_batch.py", "test_demo_web.py",
    "test_sandbox.py", "test_hostile_output.py", "test_kit_notebook.py", "test_browser.py",
    "test_priority.py", "test_sandbox_docker.py", "test_datasets.py", "test_similarity_web.py",
    "test_hostile_sandbox.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
