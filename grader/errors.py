"""The grader's exceptions: each message is what its reader reads, ``.detail`` is for staff.

    GradingError(message, *, detail="")   the student's side; .status names the result
      SubmissionInvalid                   intake refused the upload (bad zip, missing file,
                                          over a limit); does not use up an attempt
    SpecError(ValueError)                 a spec, settings file or data manifest that does
      DataBuildError (grader.datasets)    not load, or hidden sets that cannot be built
    GraderFault(Exception)                our bug or broken infrastructure, never the student's
    Cancelled(BaseException)              the caller stopped grading (Ctrl-C in a batch)

What the student's code does inside the sandbox (a crash, a time-out, too much memory) is
not an exception: it travels as a part's status and message. ``grade()`` turns a
``SubmissionInvalid`` into a result; a ``GraderFault`` it raises for the caller, which
records it with ``grader.faults`` (a ``grader_fault`` result; the attempt is refunded).
``Cancelled`` is raised from the sandbox's poll callback when the caller asks grading to
stop; the sandbox kills the job and ``grade()`` cleans up on the way out. It is a
``BaseException`` so that nothing recording faults mistakes stopping for a result.

Other packages keep their own few errors next to the code that raises them, each with a
message for its reader: ``BatchError`` (grader.batch), ``ExportError``, ``KitError``,
``UploadRefused`` and ``AccountError`` (leaderboard).
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


class SpecError(ValueError):
    """An assignment spec, settings file or data manifest that does not load; names the key."""


class GraderFault(Exception):
    """A failure of the grader or its machine, not of the submission."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class Cancelled(BaseException):
    """Grading was asked to stop (a batch interrupted); raised in the grading thread."""
