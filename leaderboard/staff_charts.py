"""Geometry of the staff pages' column charts (inline SVG, no script): the class's best scores
as a histogram, uploads per day, one student's score history. Each chart carries its numbers
as text too (``summary`` and ``rows``) for screen readers and a table under the chart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Column:
    label: str  # under the column (may be blank where the axis would crowd)
    name: str  # the column's full name, for the text alternative
    value: float
    text: str  # the value as drawn above the column
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class ColumnChart:
    title: str
    unit: str  # what a value counts ("students", "uploads", "points")
    columns: tuple[Column, ...]
    width: int
    height: int
    base_y: float  # the axis line
    show_values: bool  # numbers above the columns, where they have room (else: the table)

    @property
    def summary(self) -> str:
        """The same numbers as one sentence, for screen readers and the title tooltip."""
        if not self.columns:
            return f"{self.title}: nothing yet"
        return f"{self.title} ({self.unit}): " + ", ".join(f"{c.name} {c.text}" for c in self.columns)

    @property
    def rows(self) -> list[tuple[str, str]]:
        return [(c.name, c.text) for c in self.columns]


def column_chart(
    title: str,
    unit: str,
    values: Sequence[tuple[str, str, float, str]],
    *,
    top: float | None = None,
    width: int = 400,
    height: int = 180,
    left: int = 12,
    right: int = 12,
    top_margin: int = 28,
    bottom: int = 30,
) -> ColumnChart:
    """Lay out one column per (label, name, value, text); the tallest reaches ``top`` (default:
    the largest value)."""
    n = max(len(values), 1)
    plot_w = width - left - right
    plot_h = height - top_margin - bottom
    peak = top if top is not None else max((v for _, _, v, _ in values), default=0.0)
    slot = plot_w / n
    col_w = max(2.0, slot * 0.78)
    base = height - bottom
    columns = []
    for i, (label, name, value, text) in enumerate(values):
        h = 0.0 if peak <= 0 else plot_h * max(0.0, min(value, peak)) / peak
        columns.append(Column(
            label=label, name=name, value=value, text=text,
            x=round(left + i * slot + (slot - col_w) / 2, 1), y=round(base - h, 1),
            width=round(col_w, 1), height=round(h, 1),
        ))
    return ColumnChart(title, unit, tuple(columns), width, height, base, show_values=slot >= 26)


def score_histogram(scores: Sequence[float], max_score: float, *, bins: int = 10) -> ColumnChart:
    """How many students' best points fall in each tenth of the maximum (the top bin is closed)."""
    counts = [0] * bins
    for score in scores:
        share = 0.0 if max_score <= 0 else score / max_score
        counts[min(bins - 1, max(0, int(share * bins)))] += 1
    step = max_score / bins
    values = []
    for i, count in enumerate(counts):
        lo, hi = i * step, (i + 1) * step
        name = f"{lo:g} to {hi:g} points"
        values.append((f"{lo:g}", name, float(count), str(count)))
    return column_chart("Best score per student", "students", values)


def per_day(counts: Sequence[tuple[date, int]]) -> ColumnChart:
    """Uploads per day; the axis labels thin out so that at most about seven are shown."""
    every = max(1, -(-len(counts) // 7))
    values = [
        (day.strftime("%m-%d") if i % every == 0 else "", day.isoformat(), float(n), str(n))
        for i, (day, n) in enumerate(counts)
    ]
    return column_chart("Uploads per day (UTC)", "uploads", values)


def score_history(points: Sequence[tuple[int, float | None]], max_score: float) -> ColumnChart:
    """One column per upload (submission id, points; None for an ungraded one), oldest first."""
    every = max(1, -(-len(points) // 6))
    values = [
        (f"#{sub_id}" if i % every == 0 else "", f"upload #{sub_id}", score or 0.0,
         "—" if score is None else f"{score:g}")
        for i, (sub_id, score) in enumerate(points)
    ]
    return column_chart("Points per upload", "points", values, top=max_score or None)
