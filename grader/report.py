"""Readable text summaries of results, for the terminal."""

from __future__ import annotations

import click

from grader.datasets.provenance import data_notes
from grader.result import GradeResult, Status


def _style(text: str, ok: bool, color: bool) -> str:
    return click.style(text, fg="green" if ok else "red", bold=True) if color else text


def format_result(label: str, result: GradeResult, *, details: bool = False, color: bool = False) -> str:
    """A few lines per submission: status, each part's points and message, failed tests, the
    staff flags and what the hidden data is (public, synthetic). For staff, not students."""
    sha = result.submission_sha256[:12] or "-"
    lines = [
        f"{label}  (sha256 {sha}…, {result.runtime_s:.1f} s)",
        f"  {_style(str(result.status), result.status is Status.GRADED, color)}  "
        f"{result.score:g}/{result.max_score:g}  {result.message}",
    ]
    for part in result.parts:
        verdict = _style("passed" if part.passed else "not passed", part.passed, color)
        points = f"{part.score:>6.4g}/{part.max_score:<4g}"
        lines.append(f"  {part.name:<9} {points} {verdict:<10}  {part.message}")
        failed = [t for t in part.tests if not t.passed] if not part.passed else []
        if failed:
            for test in failed[:12]:
                lines.append(f"      x {test.name}: {test.message}")
            if len(failed) > 12:
                lines.append(f"      … and {len(failed) - 12} more failed tests")
        if details and part.detail:
            lines.extend("      | " + line for line in part.detail.splitlines()[-20:])
    if details and result.detail:
        lines.extend("  | " + line for line in result.detail.splitlines()[-20:])
    for flag in result.flags:
        lines.append("  " + _style("FLAG", False, color) + f" {flag.part}: {flag.reason}")
    lines.extend(f"  note: {note}" for note in data_notes(result.environment))
    return "\n".join(lines)
