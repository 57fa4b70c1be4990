"""Results in other systems' formats: Gradescope's ``results.json``.

Only what the student may see goes out: never staff details (tracebacks, sandbox notes,
environment), and while the spec keeps part of the hidden splits private
(``public_fraction`` < 1) the ranked part's numbers are those on the public part
(``PartResult.public_metrics``), its message is rebuilt from them and its per-split tests,
whose messages carry the whole-split accuracies, are left out, as on the leaderboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from grader.config import Assignment
from grader.result import GradeResult, PartResult, Status

SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._@-]+")
FAILED_TESTS_SHOWN = 12


class ExportError(Exception):
    """RESULTS cannot be exported; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _ranked(assignment: Assignment) -> tuple[str, str]:
    part, _, metric = assignment.rank_by.partition(".")
    return part, metric


def hides_private(assignment: Assignment) -> bool:
    return assignment.public_fraction < 1.0


def _public_part_message(assignment: Assignment, part: PartResult, metrics: dict[str, float]) -> str:
    """The ranked part's message from public numbers (the judge's message names whole-split values)."""
    spec = assignment.part(_ranked(assignment)[0])
    summary = assignment.public_summary(metrics)
    if not summary:
        return f"{spec.title}: {part.score:g}/{part.max_score:g} points."
    return (f"{spec.title}: {part.score:g}/{part.max_score:g} points; {summary}; the rest of the test "
            "set decides the final ranking.")


def _title(assignment: Assignment, name: str) -> str:
    try:
        return assignment.part(name).title
    except KeyError:
        return name


def _part_output(assignment: Assignment, part: PartResult) -> str:
    ranked, _ = _ranked(assignment)
    if part.name == ranked and hides_private(assignment):
        if part.status is Status.GRADED:
            return _public_part_message(assignment, part, dict(part.public_metrics))
        return part.message  # stopped before measuring: no numbers in it
    lines = [part.message]
    failed = [t for t in part.tests if not t.passed]
    lines += [f"  x {t.name}: {t.message}" for t in failed[:FAILED_TESTS_SHOWN]]
    if len(failed) > FAILED_TESTS_SHOWN:
        lines.append(f"  … and {len(failed) - FAILED_TESTS_SHOWN} more failed tests")
    return "\n".join(lines)


def leaderboard_metrics(result: GradeResult, assignment: Assignment) -> dict[str, float]:
    """The ranked part's metrics a student may see now: public ones while part is private."""
    ranked, _ = _ranked(assignment)
    part = result.part(ranked)
    if part is None:
        return {}
    return dict(part.public_metrics if hides_private(assignment) else part.metrics)


def gradescope(result: GradeResult, assignment: Assignment) -> dict[str, Any]:
    """One result as Gradescope's ``results.json``: score, output, a test per part, leaderboard."""
    tests = [
        {
            "name": _title(assignment, part.name),
            "score": part.score,
            "max_score": part.max_score,
            "output": _part_output(assignment, part),
            "status": "passed" if part.passed else "failed",
            "visibility": "visible",
        }
        for part in result.parts
    ]
    ranked, metric = _ranked(assignment)
    metrics = leaderboard_metrics(result, assignment)
    try:
        names = [*assignment.part(ranked).weights, metric]
    except KeyError:
        names = [metric]
    board = [{"name": name, "value": round(100 * metrics.get(name, 0.0), 2), "order": "desc"}
             for name in dict.fromkeys(names)]
    return {
        "score": result.score,
        "max_score": result.max_score,
        "output": result.message,
        "tests": tests,
        "leaderboard": board,
    }


def safe_filename(student: str, taken: set[str]) -> str:
    """A file name for a student id, unique within ``taken`` (which it joins)."""
    base = SAFE_NAME_RE.sub("_", student).strip("._") or "student"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


def read_result_json(path: Path) -> GradeResult:
    """A result JSON as ``grader grade --json`` writes it (one object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"{path} is not a readable result JSON ({exc})") from None
    if isinstance(data, list):
        raise ExportError(f"{path} holds {len(data)} results; export them one by one, or grade them "
                          "with `grader batch` and export its results store")
    try:
        return GradeResult.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path} is not a result JSON of `grader grade --json` ({exc})") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
