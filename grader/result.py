"""The frozen result types and their JSON form, shared by the CLI, the worker and the web app."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from grader.errors import GraderFault, GradingError
from grader.text import clean_text, dump_json

SCHEMA_VERSION = 1


def percent(value: float) -> str:
    """A share as every message and page writes it: 0.8125 -> "81.3%"."""
    return f"{100 * value:.1f}%"


def points(score: float, max_score: float) -> str:
    """Points as every message and page writes them: "38.1 / 40"."""
    return f"{round(score, 1):g} / {max_score:g}"


class Status(StrEnum):
    """How grading of a submission (or of one part) ended."""

    GRADED = "graded"
    INVALID = "invalid"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    CRASHED = "crashed"
    GRADER_FAULT = "grader_fault"


def _clean(obj: object, *names: str) -> None:
    """Make the text fields ``names`` of a frozen result safe for JSON and every database
    (``clean_text``): messages and details carry text the job wrote."""
    for name in names:
        object.__setattr__(obj, name, clean_text(getattr(obj, name)))


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class TestResult:
    """One hidden test: its name, whether it passed, and one sentence on why not.

    ``group``: what the pages group it under (a layer tests' class, "Linear"; "" for none);
    ``caused_by``: the name of the failing test that kept this one from running ("" if none).
    Both are left out of the JSON when empty, and results written before them still load.
    """

    __test__ = False  # not a pytest class

    name: str
    passed: bool
    message: str = ""
    group: str = ""
    caused_by: str = ""

    def __post_init__(self) -> None:
        _clean(self, "name", "message", "group", "caused_by")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "passed": self.passed, "message": self.message}
        if self.group:
            data["group"] = self.group
        if self.caused_by:
            data["caused_by"] = self.caused_by
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        return cls(name=data["name"], passed=bool(data["passed"]), message=data.get("message", ""),
                   group=str(data.get("group", "")), caused_by=str(data.get("caused_by", "")))


@dataclass(frozen=True)
class Flag:
    """A reason for staff to look at a result before trusting it (e.g. an implausibly high
    accuracy). Staff only: the student's views leave flags out; it changes no score."""

    part: str
    reason: str

    def __post_init__(self) -> None:
        _clean(self, "part", "reason")

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flag:
        return cls(part=str(data.get("part", "")), reason=str(data.get("reason", "")))


@dataclass(frozen=True)
class PartResult:
    """The outcome of one part of the assignment (named as in the spec's ``[parts.<name>]``)."""

    name: str
    status: Status
    score: float
    max_score: float
    passed: bool
    message: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    tests: tuple[TestResult, ...] = ()
    detail: str = ""  # for staff: trimmed traceback, sandbox notes; never shown to students
    public_metrics: Mapping[str, float] = field(default_factory=dict)
    runtime_s: float = 0.0
    # The rest of each split (empty when the whole split is public): the final ranking's numbers.
    private_metrics: Mapping[str, float] = field(default_factory=dict)
    # What the kind measured beyond the metrics, for the student to learn from (a classifier:
    # confusion matrices on the public part, per-class accuracy, the gap between splits).
    # JSON-shaped; its form is the kind's (README, "The result JSON").
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _clean(self, "name", "message", "detail")
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "metrics", _frozen(self.metrics))
        object.__setattr__(self, "public_metrics", _frozen(self.public_metrics))
        object.__setattr__(self, "private_metrics", _frozen(self.private_metrics))
        object.__setattr__(self, "diagnostics", _frozen(self.diagnostics))
        object.__setattr__(self, "tests", tuple(self.tests))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "message": self.message,
            "metrics": dict(self.metrics),
            "public_metrics": dict(self.public_metrics),
            "private_metrics": dict(self.private_metrics),
            "tests": [t.to_dict() for t in self.tests],
            "diagnostics": dict(self.diagnostics),
            "runtime_s": self.runtime_s,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartResult:
        return cls(
            name=data["name"],
            status=Status(data["status"]),
            score=float(data["score"]),
            max_score=float(data["max_score"]),
            passed=bool(data["passed"]),
            message=data.get("message", ""),
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
            public_metrics={k: float(v) for k, v in data.get("public_metrics", {}).items()},
            private_metrics={k: float(v) for k, v in data.get("private_metrics", {}).items()},
            tests=tuple(TestResult.from_dict(t) for t in data.get("tests", [])),
            diagnostics=_mapping(data.get("diagnostics")),
            runtime_s=float(data.get("runtime_s", 0.0)),
            detail=data.get("detail", ""),
        )


@dataclass(frozen=True)
class GradeResult:
    """Everything known about one graded submission; serialised with ``to_json``."""

    status: Status
    score: float
    max_score: float
    passed: bool
    message: str
    parts: tuple[PartResult, ...] = ()
    submission_sha256: str = ""
    assignment: str = ""
    spec_version: str = ""
    runtime_s: float = 0.0
    environment: Mapping[str, Any] = field(default_factory=dict)
    detail: str = ""
    flags: tuple[Flag, ...] = ()  # for staff: see Flag

    def __post_init__(self) -> None:
        _clean(self, "message", "detail")
        object.__setattr__(self, "status", Status(self.status))
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "flags", tuple(self.flags))
        object.__setattr__(self, "environment", _frozen(self.environment))

    def part(self, name: str) -> PartResult | None:
        """The part called ``name``, or None."""
        return next((p for p in self.parts if p.name == name), None)

    @property
    def counts_as_attempt(self) -> bool:
        """Invalid uploads and grader faults do not use up one of the student's attempts."""
        return self.status not in (Status.INVALID, Status.GRADER_FAULT)

    def with_runtime(self, runtime_s: float) -> GradeResult:
        return replace(self, runtime_s=round(runtime_s, 3))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "status": str(self.status),
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "message": self.message,
            "parts": [p.to_dict() for p in self.parts],
            "submission_sha256": self.submission_sha256,
            "assignment": self.assignment,
            "spec_version": self.spec_version,
            "runtime_s": self.runtime_s,
            "environment": dict(self.environment),
            "detail": self.detail,
            "flags": [f.to_dict() for f in self.flags],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return dump_json(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GradeResult:
        return cls(
            status=Status(data["status"]),
            score=float(data["score"]),
            max_score=float(data["max_score"]),
            passed=bool(data["passed"]),
            message=data.get("message", ""),
            parts=tuple(PartResult.from_dict(p) for p in data.get("parts", [])),
            submission_sha256=data.get("submission_sha256", ""),
            assignment=data.get("assignment", ""),
            spec_version=data.get("spec_version", ""),
            runtime_s=float(data.get("runtime_s", 0.0)),
            environment=dict(data.get("environment", {})),
            detail=data.get("detail", ""),
            flags=tuple(Flag.from_dict(f) for f in data.get("flags", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> GradeResult:
        return cls.from_dict(json.loads(text))

    @classmethod
    def failed(
        cls,
        exc: GradingError | GraderFault,
        *,
        submission_sha256: str = "",
        assignment: str = "",
        spec_version: str = "",
        max_score: float = 0.0,
    ) -> GradeResult:
        """A result for a submission that could not be graded at all."""
        status = Status.GRADER_FAULT if isinstance(exc, GraderFault) else Status(exc.status)
        return cls(
            status=status,
            score=0.0,
            max_score=max_score,
            passed=False,
            message=exc.message,
            submission_sha256=submission_sha256,
            assignment=assignment,
            spec_version=spec_version,
            detail=exc.detail,
        )
