"""Geometry of the small bar charts drawn as inline SVG (no script, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass

from grader.config import PartSpec


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    y: float
    width: float
    passed: bool
    text: str


@dataclass(frozen=True)
class BarChart:
    """Horizontal bars on a 0-100 % axis with a dashed pass line."""

    title: str
    bars: tuple[Bar, ...]
    threshold: float
    width: int
    height: int
    left: int
    plot_width: int
    bar_height: int
    threshold_x: float
    ticks: tuple[tuple[float, str], ...]

    @property
    def summary(self) -> str:
        """The same numbers as text, for screen readers and the title tooltip."""
        parts = [f"{b.label} {b.text}" for b in self.bars]
        return f"{self.title}: " + ", ".join(parts) + f"; pass line {self.threshold:.0%}"


def bar_chart(
    title: str,
    values: list[tuple[str, float]],
    part: PartSpec,
    *,
    width: int = 520,
    bar_height: int = 26,
    gap: int = 10,
    left: int = 90,
    right: int = 70,
    top: int = 24,
    bottom: int = 28,
) -> BarChart:
    """Lay out one bar per (label, value in [0, 1]) against ``part``'s pass line."""
    threshold = part.threshold
    plot_width = width - left - right
    bars = []
    for i, (label, value) in enumerate(values):
        clamped = min(max(float(value), 0.0), 1.0)
        bars.append(
            Bar(
                label=label,
                value=clamped,
                y=top + i * (bar_height + gap),
                width=round(clamped * plot_width, 1),
                passed=part.passes(float(value)),
                text=f"{clamped * 100:.1f}%",
            )
        )
    height = top + len(bars) * (bar_height + gap) - gap + bottom
    ticks = tuple((left + f * plot_width, f"{f:.0%}") for f in (0.0, 0.25, 0.5, 0.75, 1.0))
    return BarChart(
        title=title,
        bars=tuple(bars),
        threshold=threshold,
        width=width,
        height=height,
        left=left,
        plot_width=plot_width,
        bar_height=bar_height,
        threshold_x=round(left + threshold * plot_width, 1),
        ticks=ticks,
    )
