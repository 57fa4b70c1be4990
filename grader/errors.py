"""The exception tree of the grader.

    GradingError(message, *, detail="")   .message is for the student, .detail for staff
      SubmissionInvalid                   bad archive, missing file, over a limit
      StudentCodeFailed                   the student's code raised or ended the process
      TimeLimitExceeded                   did not finish within the wall-time limit
      MemoryLimitExceeded                 went over the memory limit
    SpecError(ValueError)                 an assignment spec or manifest that does not load
    GraderFault(Exception)                our bug or broken infrastructure; never the student's

A ``GradingError`` becomes a result (the student's attempt counts, except for
``SubmissionInvalid``). A ``GraderFault`` is not caught by ``grade()``: the
caller records ``grader_fault`` and refunds the attempt.
"""

from __future__ import annotations


class GradingError(Exception):
    """Something the student did; ``message`` is one sentence they can act on."""

    status = "crashed"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class SubmissionInvalid(GradingError):
    """The upload is not a gradable submission; it does not use up an attempt."""

    status = "invalid"


class StudentCodeFailed(GradingError):
    """The student's code raised, or ended the process early."""

    status = "crashed"


class TimeLimitExceeded(GradingError):
    """The student's code did not finish within the wall-time limit."""

    status = "timed_out"


class MemoryLimitExceeded(GradingError):
    """The student's code used more memory than the limit allows."""

    status = "out_of_memory"


class SpecError(ValueError):
    """An assignment spec, settings file or data manifest that does not load; names the key."""


class GraderFault(Exception):
    """A failure of the grader or its machine, not of the submission."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
