"""Results in other systems' formats: Gradescope's ``results.json``.

Only what the student may see goes out, as ``grader.visible.visible_to_student`` decides:
never staff details or flags, and while part of the hidden splits is private only the ranked
part's public numbers, as on the leaderboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from grader.config import Assignment
from grader.result import GradeResult, PartResult
from grader.visible import visible_to_student

SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._@-]+")
FAILED_TESTS_SHOWN = 12


class ExportError(Exception):
    """RESULTS cannot be exported; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _title(assignment: Assignment, name: str) -> str:
    try:
        return assignment.part(name).title
    except KeyError:
        return name


def _part_output(part: PartResult) -> str:
    """A visible part's message and its failed tests (none left on a public-only part)."""
    lines = [part.message]
    failed = [t for t in part.tests if not t.passed]
    lines += [f"  x {t.name}: {t.message}" for t in failed[:FAILED_TESTS_SHOWN]]
    if len(failed) > FAILED_TESTS_SHOWN:
        lines.append(f"  … and {len(failed) - FAILED_TESTS_SHOWN} more failed tests")
    return "\n".join(lines)


def gradescope(result: GradeResult, assignment: Assignment, *, final: bool = False) -> dict[str, Any]:
    """One result as Gradescope's ``results.json``: score, output, a test per part, leaderboard;
    what the student may see (``visible_to_student``), the public part only unless ``final``."""
    result = visible_to_student(result, assignment, final=final)
    tests = [
        {
            "name": _title(assignment, part.name),
            "score": part.score,
            "max_score": part.max_score,
            "output": _part_output(part),
            "status": "passed" if part.passed else "failed",
            "visibility": "visible",
        }
        for part in result.parts
    ]
    ranked, metric = assignment.ranked_part, assignment.ranked_metric
    part = result.part(ranked)
    metrics = dict(part.metrics) if part is not None else {}
    try:
        names = [*assignment.part(ranked).columns, metric]
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
