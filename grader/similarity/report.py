"""Ranked pairs as text for a terminal and as a CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from grader.batch.store import write_atomic
from grader.similarity.signals import PAIR_LINE, FlagLines, Kind, Pair, flag_line_text
from grader.spreadsheet import safe_cell

CSV_FIXED = ["rank", "a", "b", "score", "flagged", "strong_flags", "weak_flags"]


def pair_lines(rank: int, pair: Pair) -> list[str]:
    """One heading line and one line per signal, strongest first."""
    verdict = "FLAGGED" if pair.flagged else "below the flag line"
    lines = [f"{rank:>3}. {pair.a}  <->  {pair.b}   score {pair.score:.2f}  {verdict}"]
    for signal in pair.signals:
        mark = "!" if signal.flagged else " "
        strength = "strong" if signal.strong else "weak  "
        lines.append(f"     {mark} {strength} {signal.kind:<18} {signal.detail}")
    return lines


def legend(lines: FlagLines) -> list[str]:
    """What each signal means and where its flag line is."""
    return [
        f"pairs score 0-1; {PAIR_LINE} and more means a strong signal is at or above its flag line "
        "(! marks a signal at or above its own). Evidence for a person to judge: nothing changes a score.",
        *(f"  {kind}: {flag_line_text(kind, lines)}" for kind in Kind),
    ]


def _columns(pairs: Sequence[Pair]) -> list[str]:
    seen = dict.fromkeys(f"{s.kind}:{s.subject}" for p in pairs for s in p.signals)
    return CSV_FIXED + sorted(seen) + ["evidence"]


def write_csv(path: Path, pairs: Sequence[Pair]) -> None:
    """One row per pair, ranked: the score, the flags, one value column per signal and subject, and
    every signal's sentence; written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(pairs), lineterminator="\n")
    writer.writeheader()
    for rank, pair in enumerate(pairs, start=1):
        row = {
            "rank": str(rank),
            "a": safe_cell(pair.a),
            "b": safe_cell(pair.b),
            "score": f"{pair.score:.4f}",
            "flagged": "yes" if pair.flagged else "no",
            "strong_flags": str(sum(s.strong and s.flagged for s in pair.signals)),
            "weak_flags": str(sum(not s.strong and s.flagged for s in pair.signals)),
            "evidence": safe_cell(
                " | ".join(("strong: " if s.strong else "weak: ") + s.detail for s in pair.signals)
            ),
        }
        row.update({f"{s.kind}:{s.subject}": f"{s.value:.6g}" for s in pair.signals})
        writer.writerow(row)
    write_atomic(path, buffer.getvalue().encode("utf-8"))
