"""The sandbox backends are named in one registry, and everything that lists them reads it."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from grader.batch.cli import batch
from grader.cli import grade
from grader.config import SandboxSettings, Settings
from grader.errors import GraderFault, SpecError
from grader.sandbox import get_sandbox
from grader.sandbox.base import Poll, RunOutcome, RunRequest
from grader.sandbox.registry import BACKENDS, DEFAULT_BACKEND, backend_class, backend_names


class EchoSandbox:
    """A backend written for this test: one class, registered with one line."""

    name = "echo"

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings

    def run(self, request: RunRequest, *, poll: Poll | None = None) -> RunOutcome:
        raise NotImplementedError


def test_every_registered_backend_resolves_to_its_class() -> None:
    assert DEFAULT_BACKEND in BACKENDS
    assert SandboxSettings().backend == DEFAULT_BACKEND
    for name in backend_names():
        assert backend_class(name).name == name  # type: ignore[attr-defined]  # a class, read as a factory


@pytest.mark.parametrize("command", [grade, batch], ids=["grade", "batch"])
def test_the_cli_offers_exactly_the_registered_backends(command: click.Command) -> None:
    option = next(p for p in command.params if p.name == "sandbox")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == backend_names()


def test_a_new_backend_is_one_class_plus_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(BACKENDS, "echo", f"{__name__}:EchoSandbox")
    settings = Settings.from_env({"GRADER_SANDBOX": "echo"}).sandbox
    box = get_sandbox(settings)
    assert isinstance(box, EchoSandbox)
    assert box.settings is settings


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(SpecError, match="unknown sandbox backend 'nope' \\(known: bwrap, docker, local\\)"):
        Settings.from_env({"GRADER_SANDBOX": "nope"})
    with pytest.raises(GraderFault, match="unknown sandbox backend 'nope'"):
        get_sandbox(SandboxSettings(backend="nope"))
