"""Run untrusted code: one protocol (``base``), one module per backend, named in ``registry``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grader.errors import GraderFault
from grader.sandbox.base import Mount, RunOutcome, RunRequest, Sandbox, SandboxLimits
from grader.sandbox.registry import BACKENDS, backend_class, unknown_backend

if TYPE_CHECKING:
    from grader.config import SandboxSettings

__all__ = ["Mount", "RunOutcome", "RunRequest", "Sandbox", "SandboxLimits", "get_sandbox"]


def get_sandbox(settings: SandboxSettings) -> Sandbox:
    """The backend named by ``settings.backend``; GraderFault if it cannot run here."""
    if settings.backend not in BACKENDS:
        raise GraderFault(unknown_backend(settings.backend))
    return backend_class(settings.backend)(settings)
