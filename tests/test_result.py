"""The result type: frozen, JSON round trip, the contract's field names."""

from __future__ import annotations

import dataclasses
import json

import pytest

from grader.errors import GraderFault, GradingError, SubmissionInvalid
from grader.result import GradeResult, PartResult, Status, TestResult


def sample() -> GradeResult:
    return GradeResult(
        status=Status.GRADED, score=70.0, max_score=100.0, passed=False, message="m",
        parts=(
            PartResult("numpy_nn", Status.GRADED, 40, 40, True, "ok",
                       tests=(TestResult("Linear.forward: x", True),)),
            PartResult("finetune", Status.GRADED, 0, 30, False, "low",
                       metrics={"ORIG": 0.8, "AUG": 0.5, "NEW": 0.2, "weighted": 0.65}),
        ),
        submission_sha256="ab" * 32, runtime_s=1.5, environment={"backend": "bwrap"},
    )


def test_json_round_trip_keeps_everything():
    result = sample()
    data = json.loads(result.to_json())
    for key in ("status", "score", "max_score", "passed", "message", "parts",
                "submission_sha256", "runtime_s", "environment"):
        assert key in data
    part = data["parts"][1]
    for key in ("name", "status", "score", "max_score", "passed", "message", "metrics", "tests"):
        assert key in part
    assert part["metrics"] == {"ORIG": 0.8, "AUG": 0.5, "NEW": 0.2, "weighted": 0.65}
    assert data["parts"][0]["tests"] == [{"name": "Linear.forward: x", "passed": True, "message": ""}]
    assert GradeResult.from_json(result.to_json()) == result


def test_results_are_frozen():
    result = sample()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 100  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.parts[1].metrics["ORIG"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("exc", "status", "counts"),
    [
        (SubmissionInvalid("bad zip"), Status.INVALID, False),
        (GradingError("crashed on import"), Status.CRASHED, True),
        (GraderFault("disk full"), Status.GRADER_FAULT, False),
    ],
)
def test_failed_results(exc, status, counts):
    result = GradeResult.failed(exc, max_score=100)
    assert result.status is status
    assert result.message == exc.message
    assert result.counts_as_attempt is counts
    assert result.score == 0
    assert not result.passed
