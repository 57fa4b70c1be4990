"""One fault result and one "grade or fault" wrapper: what a failure on our side records."""

from __future__ import annotations

import pytest

from grader.config import Assignment, load_assignment
from grader.errors import Cancelled, GraderFault
from grader.faults import REFUNDED, UNEXPECTED, fault_result, grade_or_fault
from grader.result import GradeResult, Status


@pytest.fixture(scope="module")
def spec() -> Assignment:
    return load_assignment()


def _raise(exc: BaseException) -> GradeResult:
    raise exc


@pytest.mark.parametrize(
    ("exc", "message", "detail"),
    [
        (GraderFault("The hidden data is damaged.", detail="sha mismatch"), "The hidden data is damaged.",
         "sha mismatch"),
        (RuntimeError("a bug of ours"), UNEXPECTED, "RuntimeError: a bug of ours"),
        (KeyError("x"), UNEXPECTED, "KeyError"),
    ],
    ids=["grader-fault", "bug", "key-error"],
)
def test_failures_on_our_side_become_one_kind_of_result(
    spec: Assignment, exc: Exception, message: str, detail: str
) -> None:
    result = grade_or_fault(lambda: _raise(exc), spec, label="t", submission_sha256="ab" * 32)
    assert result.status is Status.GRADER_FAULT
    assert result.message == f"{message} {REFUNDED}"
    assert detail in result.detail
    assert not result.counts_as_attempt
    assert (result.score, result.passed, result.max_score) == (0.0, False, spec.max_score)
    assert (result.assignment, result.spec_version, result.submission_sha256) == (
        spec.name, spec.version, "ab" * 32)


def test_a_result_passes_through(spec: Assignment) -> None:
    made = fault_result(spec, "x")
    assert grade_or_fault(lambda: made, spec, label="t") is made


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Cancelled("stop")], ids=["ctrl-c", "cancelled"])
def test_stopping_is_not_a_result(spec: Assignment, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        grade_or_fault(lambda: _raise(exc), spec, label="t")


def test_the_refund_sentence_is_said_once(spec: Assignment) -> None:
    once = fault_result(spec, f"Already told. {REFUNDED}")
    assert once.message.count(REFUNDED) == 1
    assert fault_result(spec, "  ").message == f"{UNEXPECTED} {REFUNDED}"
