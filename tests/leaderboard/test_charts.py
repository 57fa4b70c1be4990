"""The charts' geometry and SVG: the score-over-time chart of a student's uploads and the bar
chart, rendered by the app's own macros and read back as XML."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader

from grader.parts.spec import PartSpec
from leaderboard.charts import bar_chart, score_chart

PART = PartSpec(name="finetune", title="FinetuneNet", points=30, module="m", time_limit_s=1.0, threshold=0.75)
SVG = ""  # inline SVG in HTML: no namespace
TEMPLATES = Path(__file__).resolve().parents[2] / "leaderboard" / "templates"


def _render(macro: str, chart: Any) -> ET.Element:
    """The app's own macro (it needs no request), parsed as XML."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    return ET.fromstring(str(getattr(env.get_template("_chart.html").module, macro)(chart)))


def _pct(value: str | None) -> float:
    assert value is not None
    assert value.endswith("%"), value
    return float(value[:-1])


def test_score_chart_places_uploads_in_order_against_the_pass_line() -> None:
    chart = score_chart("Score", [("#3", 0.5), ("#5", 0.8), ("#9", 1.0), ("#10", 0.75)], PART)
    assert [p.passed for p in chart.points] == [False, True, True, False]  # 75 % exactly fails
    assert [p.text for p in chart.points] == ["50.0%", "80.0%", "100.0%", "75.0%"]
    figure = _render("score_chart", chart)
    circles = figure.findall(f".//{SVG}circle")
    xs = [_pct(c.get("cx")) for c in circles]
    ys = [_pct(c.get("cy")) for c in circles]
    assert xs == sorted(xs)
    assert xs[0] >= 0
    assert xs[-1] <= 100
    assert ys[2] < ys[1] < ys[0]  # higher values are higher up (SVG y grows downwards)
    line = next(el for el in figure.iter(f"{SVG}line") if el.get("class") == "threshold")
    assert _pct(line.get("y1")) == _pct(line.get("y2")) == ys[3]  # the pass line at 75 %
    assert [c.get("class") for c in circles] == ["point fail", "point pass", "point pass", "point fail"]
    assert len([el for el in figure.iter(f"{SVG}line") if el.get("class") == "trend"]) == 3
    # Responsive: every SVG spans its box, with no viewBox to shrink its text.
    for svg in figure.iter(f"{SVG}svg"):
        assert svg.get("width") == "100%"
        assert svg.get("viewBox") is None
    # The pass line's label sits in its own column beside the plot, not on the points.
    label = next(el for el in figure.iter(f"{SVG}text") if el.get("class") == "threshold-label")
    assert label.text == "pass 75%"
    holder = next(svg for svg in figure.iter(f"{SVG}svg") if label in list(svg))
    assert holder.get("class") == "side"
    caption = "".join(figure.find("figcaption").itertext())  # type: ignore[union-attr]
    assert "#3 50.0%" in caption
    assert "pass line 75%" in caption


@pytest.mark.parametrize(("n", "most"), [(1, 1), (2, 2), (6, 6), (7, 4), (30, 5), (100, 5)])
def test_score_chart_labels_a_few_uploads_and_always_the_last(n: int, most: int) -> None:
    chart = score_chart("S", [(f"#{i}", i / max(n, 1)) for i in range(n)], PART)
    shown = [p for p in chart.points if p.show_label]
    assert chart.points[-1].show_label
    assert 1 <= len(shown) <= most
    if n == 1:
        assert chart.points[0].x == 50.0
    gaps = [b.x - a.x for a, b in itertools.pairwise(shown)]
    assert all(g >= 94 / 5 - 0.01 for g in gaps), gaps  # labels never crowd each other


def test_bar_chart_labels_the_pass_line_outside_the_bars() -> None:
    chart = bar_chart("FinetuneNet", [("orig", 0.9), ("aug", 0.6), ("new", 1.4)], PART)
    assert [b.width for b in chart.bars] == [90.0, 60.0, 100.0]
    figure = _render("bar_chart", chart)
    label = next(el for el in figure.iter(f"{SVG}text") if el.get("class") == "threshold-label")
    head = next(svg for svg in figure.iter(f"{SVG}svg") if label in list(svg))
    assert "head" in (head.get("class") or "")
    assert head.find(f"{SVG}rect") is None  # no bar under the label
    assert _pct(label.get("x")) == 75.0
    rects = figure.findall(f".//{SVG}rect")
    assert [r.get("class") for r in rects] == ["bar pass", "bar fail", "bar pass"]
    assert [_pct(r.get("width")) for r in rects] == [90.0, 60.0, 100.0]
    values = [el for el in figure.iter("span") if el.get("class") == "bar-value"]
    assert [v.text for v in values] == ["90.0%", "60.0%", "100.0%"]  # HTML text beside the bars
