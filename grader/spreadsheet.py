"""CSV cells a spreadsheet shows as text: nothing a student typed may run as a formula."""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """One line of text, with a leading ``'`` if a spreadsheet would read it as a formula."""
    value = value.replace("\r", " ").replace("\n", " ")
    return "'" + value if value.startswith(FORMULA_START) else value
