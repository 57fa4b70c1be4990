"""What every part kind is handed: how its sandbox run ended, and the job it belongs to."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grader.result import PartResult, Status, percent

if TYPE_CHECKING:  # types only: the spec module imports the kinds
    from grader.config import Assignment
    from grader.datasets.manifest import Manifest
    from grader.parts.spec import PartSpec


@dataclass(frozen=True)
class PartRun:
    """How the sandbox run of one part ended, as the host saw it."""

    name: str
    status: Status  # GRADED when it ran to the end (even if the student's code raised)
    failed: bool = False  # the student's code raised (status stays GRADED)
    message: str = ""  # for the student
    detail: str = ""  # for staff: traceback, stderr tail
    runtime_s: float = 0.0
    out_dir: Path | None = None


@dataclass
class JobContext:
    """One submission's grading job, as the kinds see it while planning and judging."""

    assignment: Assignment
    manifest: Manifest
    job_dir: Path  # mounted read-only at /job in the sandbox
    checkpoint_name: Callable[[str], str]  # the spec's checkpoint -> the file the zip has
    # Filled by the judge when given: class indices per "<part>/<split>" (similarity check).
    predictions: dict[str, np.ndarray] | None = None
    # What a kind's plan() keeps for its judge(), by part name (e.g. the layer cases).
    state: dict[str, Any] = field(default_factory=dict)


def public_mask(n: int, fraction: float, seed: int, key: str) -> np.ndarray:
    """A fixed subset of ``fraction`` of ``n`` items: the part the live leaderboard shows."""
    if fraction >= 1.0:
        return np.ones(n, dtype=bool)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: round(n * fraction)]] = True
    return mask


def not_run(spec: PartSpec, run: PartRun) -> PartResult | None:
    """A result for a part whose code did not get to the end, or None if it did."""
    if run.status is Status.GRADED and not run.failed:
        return None
    status = Status.CRASHED if run.failed else run.status
    return PartResult(
        name=spec.name, status=status, score=0.0, max_score=spec.points, passed=False,
        message=run.message, detail=run.detail, runtime_s=run.runtime_s,
    )


def pct(value: float) -> str:
    """The one percent format of results (``grader.result.percent``)."""
    return percent(value)
