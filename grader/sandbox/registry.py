"""Which sandbox backends exist: a new backend is one module plus one line here.

Names map to ``"module:Class"`` and a backend's module is imported only when it is chosen, so
reading the names (the config's default and check, the CLI's ``--sandbox`` choices) loads no
backend. This module imports nothing from the rest of ``grader``, so ``grader.config`` can
read it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grader.config import SandboxSettings
    from grader.sandbox.base import Sandbox

BACKENDS: dict[str, str] = {
    "bwrap": "grader.sandbox.bwrap:BwrapSandbox",  # the default: namespaces, cgroups, no network
    "docker": "grader.sandbox.docker:DockerSandbox",  # a container per run, for hosts without bwrap
    "local": "grader.sandbox.local:LocalSandbox",  # no isolation: trusted code and tests only
}
DEFAULT_BACKEND = "bwrap"


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def unknown_backend(name: str) -> str:
    """The sentence for a name that is not a backend."""
    return f"unknown sandbox backend {name!r} (known: {', '.join(BACKENDS)})"


def backend_class(name: str) -> Callable[[SandboxSettings], Sandbox]:
    """The class of backend ``name`` (called with the sandbox settings); KeyError if none."""
    module, _, cls = BACKENDS[name].partition(":")
    found: Callable[[SandboxSettings], Sandbox] = getattr(importlib.import_module(module), cls)
    return found
