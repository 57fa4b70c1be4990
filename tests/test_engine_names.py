"""The engine names no lab: a part's or split's name lives in the spec folders, the kit, the
tests and grader/parts/ (where a kind's docs may give examples), nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This lab's part names and split names, as the issue that made the engine generic lists them.
LAB_NAMES = re.compile(r"numpy_nn|mynet|finetune|\bORIG\b|\bAUG\b|\bNEW\b")
ENGINE = ("grader", "leaderboard")
SUFFIXES = {".py", ".html", ".js", ".css", ".toml", ".json", ".sql"}


def hits(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(text.splitlines(), start=1) if LAB_NAMES.search(line)]


def test_the_pattern_finds_the_names_where_they_belong():
    assert hits(ROOT / "hidden_tests" / "cnn" / "assignment.toml")


def test_no_part_or_split_name_outside_the_parts_package():
    found = [
        hit
        for top in ENGINE
        for path in sorted((ROOT / top).rglob("*"))
        if path.suffix in SUFFIXES and path.is_file()
        and "__pycache__" not in path.parts
        and not path.is_relative_to(ROOT / "grader" / "parts")
        for hit in hits(path)
    ]
    assert found == [], "\n".join(found)
