"""How much of the machine one sandbox gets when several grade at once.

``grader batch --jobs N`` and a worker with N threads both run N sandboxes side by side;
each gets ``cores // N`` CPUs (at least one), never more than the spec's ``limits.cpus``,
which is the share the spec's time limits assume. An operator may set the CPUs and the
memory of each sandbox outright (``GRADER_SANDBOX_CPUS``, ``GRADER_SANDBOX_MEMORY_BYTES``);
less than the spec gives can turn a passing submission into a timed-out one, so the
defaults follow the spec.
"""

from __future__ import annotations

from dataclasses import replace

from grader.config import Assignment, SandboxSettings
from grader.sandbox.base import available_cores


def sandbox_cpus(jobs: int, spec_cpus: float, cores: int | None = None) -> float:
    """Each of ``jobs`` sandboxes gets ``max(1, cores // jobs)`` CPUs, and never more than the
    spec's ``limits.cpus`` (the share the web worker gives, and the one its time limits assume)."""
    share = max(1, (cores or available_cores()) // max(1, jobs))
    return float(min(share, spec_cpus))


def spec_for_jobs(
    assignment: Assignment, jobs: int, sandbox: SandboxSettings | None = None
) -> tuple[Assignment, float]:
    """The spec with each sandbox's CPUs (and memory, if set) fitted to ``jobs`` parallel runs."""
    cpus = sandbox.cpus if sandbox and sandbox.cpus else sandbox_cpus(jobs, assignment.limits.cpus)
    limits = replace(assignment.limits, cpus=cpus)
    if sandbox and sandbox.memory_bytes:
        limits = replace(limits, memory_bytes=sandbox.memory_bytes)
    return replace(assignment, limits=limits), cpus
