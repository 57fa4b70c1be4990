"""Geometry of the small charts drawn as inline SVG (no script, no CDN).

The charts span their card at every width: the SVG parts are ``width="100%"`` with their
geometry in percent of that width, and every word (labels, values, axes, the pass line's
label) is HTML or unscaled SVG text beside the plot, never on a bar. A viewBox would scale the
text with the page (5 px on a phone); here text keeps the page's font size (12 px or more).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from grader.config import PartSpec

TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def pct(value: float) -> str:
    """A share as the page writes it: ``0.8125`` -> ``81.3%``."""
    return f"{value * 100:.1f}%"


def _anchor(share: float) -> str:
    """Where a label at ``share`` of the width hangs so it stays inside the plot."""
    return "end" if share > 0.85 else "start" if share < 0.15 else "middle"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    width: float  # percent of the plot's width
    passed: bool
    text: str


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars on a 0-100 % axis with a dashed pass line, labelled above the bars."""

    title: str
    bars: tuple[Bar, ...]
    threshold: float
    threshold_x: float  # percent of the plot's width
    threshold_anchor: str
    ticks: tuple[tuple[float, str, str], ...]  # (percent, text, text-anchor)

    @property
    def summary(self) -> str:
        """The same numbers as text, for screen readers and the title tooltip."""
        parts = [f"{b.label} {b.text}" for b in self.bars]
        return f"{self.title}: " + ", ".join(parts) + f"; pass line {self.threshold:.0%}"


def _ticks() -> tuple[tuple[float, str, str], ...]:
    """Grid lines at the quarters; text at 0, 50 and 100 % only (room on a phone)."""
    return tuple((f * 100, f"{f:.0%}" if f in (0.0, 0.5, 1.0) else "", _anchor(f)) for f in TICKS)


def bar_chart(title: str, values: Sequence[tuple[str, float]], part: PartSpec) -> BarChart:
    """One bar per (label, value in [0, 1]) against ``part``'s pass line."""
    bars = []
    for label, value in values:
        clamped = min(max(float(value), 0.0), 1.0)
        bars.append(Bar(label=label, value=clamped, width=round(clamped * 100, 2),
                        passed=part.passes(float(value)), text=pct(clamped)))
    return BarChart(
        title=title,
        bars=tuple(bars),
        threshold=part.threshold,
        threshold_x=round(part.threshold * 100, 2),
        threshold_anchor=_anchor(part.threshold),
        ticks=_ticks(),
    )


# The line chart's plot keeps a margin inside its box so the end points are whole.
_X0, _X1 = 3.0, 97.0
_Y0, _Y1 = 6.0, 94.0


def _y(value: float) -> float:
    """Percent from the top of the plot for a share in [0, 1]."""
    return round(_Y1 - value * (_Y1 - _Y0), 2)


@dataclass(frozen=True)
class Point:
    label: str  # "#12": the submission it comes from
    value: float
    x: float  # percent of the plot's width
    y: float  # percent of the plot's height, from the top
    passed: bool
    text: str
    show_label: bool  # labelled on the x axis (the last and every few before it, never crowded)
    anchor: str


@dataclass(frozen=True)
class ScoreChart:
    """A student's value per graded upload, in upload order, against the pass line."""

    title: str
    points: tuple[Point, ...]
    threshold: float
    threshold_y: float
    ticks: tuple[tuple[float, str], ...]  # (percent from the top, text)

    @property
    def segments(self) -> tuple[tuple[Point, Point], ...]:
        return tuple(pairwise(self.points))

    @property
    def summary(self) -> str:
        said = ", ".join(f"{p.label} {p.text}" for p in self.points)
        return f"{said}; pass line {self.threshold:.0%}"


def score_chart(title: str, values: Sequence[tuple[str, float]], part: PartSpec,
                *, max_labels: int = 6) -> ScoreChart:
    """Lay out (label, value in [0, 1]) pairs, oldest first, against ``part``'s pass line."""
    n = len(values)
    # Labels every ``stride`` uploads counted back from the last: at most ``max_labels``.
    stride = max(1, -(-(n - 1) // max(max_labels - 1, 1)))
    points = []
    for i, (label, value) in enumerate(values):
        clamped = min(max(float(value), 0.0), 1.0)
        x = 50.0 if n == 1 else _X0 + i * (_X1 - _X0) / (n - 1)
        points.append(Point(
            label=label, value=clamped, x=round(x, 2), y=_y(clamped), passed=part.passes(float(value)),
            text=pct(clamped),
            show_label=(n - 1 - i) % stride == 0,
            anchor="middle" if n == 1 else _anchor(x / 100),
        ))
    return ScoreChart(
        title=title,
        points=tuple(points),
        threshold=part.threshold,
        threshold_y=_y(part.threshold),
        ticks=tuple((_y(f), f"{f:.0%}") for f in TICKS),
    )
