"""Run untrusted code: one protocol, one module per backend (bwrap, docker, local)."""

from __future__ import annotations

from grader.config import SandboxSettings
from grader.errors import GraderFault
from grader.sandbox.base import Mount, RunOutcome, RunRequest, Sandbox, SandboxLimits

__all__ = ["Mount", "RunOutcome", "RunRequest", "Sandbox", "SandboxLimits", "get_sandbox"]


def get_sandbox(settings: SandboxSettings) -> Sandbox:
    """The backend named by ``settings.backend``; GraderFault if it cannot run here."""
    if settings.backend == "bwrap":
        from grader.sandbox.bwrap import BwrapSandbox

        return BwrapSandbox(settings)
    if settings.backend == "local":
        from grader.sandbox.local import LocalSandbox

        return LocalSandbox(settings)
    if settings.backend == "docker":
        from grader.sandbox.docker import DockerSandbox

        return DockerSandbox(settings)
    raise GraderFault(f"unknown sandbox backend {settings.backend!r} (known: bwrap, local, docker)")
