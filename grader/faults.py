"""How a grader fault becomes a result: one builder and one "grade or fault" wrapper.

The web worker, ``grader batch``, ``grader grade`` and the sweeper's give-up path all record
a failure on our side the same way: a ``grader_fault`` result (which never counts as an
attempt, see ``GradeResult.counts_as_attempt``) whose message tells the student so, with the
traceback or the fault's detail for staff. A bug of ours (any ``Exception``) is a fault too:
one submission must never stop a worker or a batch. ``BaseException``s that are not
``Exception``s (Ctrl-C, ``Cancelled``) pass through: stopping is not a result.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from grader.config import Assignment
from grader.errors import GraderFault
from grader.result import GradeResult

log = logging.getLogger(__name__)

UNEXPECTED = "The grader failed on its side."
REFUNDED = "This did not use up an attempt; the staff have been told."


def fault_result(
    assignment: Assignment, message: str, *, detail: str = "", submission_sha256: str = ""
) -> GradeResult:
    """A ``grader_fault`` result for ``assignment``: ``message`` plus the refund sentence."""
    text = message.strip() or UNEXPECTED
    if REFUNDED not in text:
        text = f"{text} {REFUNDED}"
    return GradeResult.failed(
        GraderFault(text, detail=detail), submission_sha256=submission_sha256,
        assignment=assignment.name, spec_version=assignment.version, max_score=assignment.max_score,
    )


def grade_or_fault(
    run: Callable[[], GradeResult], assignment: Assignment, *, label: str, submission_sha256: str = ""
) -> GradeResult:
    """``run()``'s result, or a fault result if it raised ``GraderFault`` or any other ``Exception``."""
    try:
        return run()
    except GraderFault as exc:
        log.error("%s: grader fault: %s\n%s", label, exc.message, exc.detail)
        return fault_result(assignment, exc.message, detail=exc.detail,
                            submission_sha256=submission_sha256)
    except Exception as exc:  # a bug of ours must not lose the submission or the batch
        log.exception("%s: unexpected error while grading", label)
        return fault_result(assignment, UNEXPECTED, detail=f"{type(exc).__name__}: {exc}\n"
                            f"{traceback.format_exc()}", submission_sha256=submission_sha256)
