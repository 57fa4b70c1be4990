"""WCAG AA contrast of every text colour in leaderboard/static/style.css, computed from the CSS
itself (its custom properties resolved): at least 4.5:1 for body-size text, which every one of
these is (pills, badges and flags are 12-13 px). The browser test runs axe-core over the pages;
this table also covers what a page shows only sometimes (a bonus badge, an invalid pill)."""

from __future__ import annotations

import re
from functools import cache

import pytest

from tests.leaderboard.helpers import ROOT

CSS = ROOT / "leaderboard" / "static" / "style.css"
AA_NORMAL = 4.5

# (text selector and the property that colours it, background selector): where the text sits.
PAIRS = [
    ("body", "body"),
    ("body", ".card"),
    (".muted", ".card"),
    (".muted", "body"),
    (".muted", "table.board tr.bonus"),
    (".muted", ".dropzone"),
    (".muted", "tr.flagged"),
    (".muted", ".note"),
    (".muted", "pre"),
    ("th", ".card"),
    ("a", ".card"),
    ("a", "body"),
    ("a", ".flash"),
    ("a", "table.board tr.bonus"),
    ("header.top a", "header.top"),
    ("header.top .brand", "header.top"),
    ("button.link", "header.top"),
    ("button", "button"),
    ("button", "button.danger"),
    (".error", ".card"),
    (".error", "p.error"),
    (".badge", ".badge"),
    (".status", ".status"),
    (".status-queued", ".status-queued"),
    (".status-running", ".status-running"),
    (".status-graded", ".status-graded"),
    (".status-invalid", ".status-invalid"),
    (".status-failed", ".status-failed"),
    (".flag", ".flag"),
    ("table.board tr.below td", ".card"),
    ("table.board tr.below td", "table.board tr.bonus"),
    ("table.board tr.pass-line td", ".card"),
    ("table.tests tr.bad td", ".card"),
    ("table.tests tr.ok td:nth-child(2)", ".card"),
    (".pending", ".card"),
    ("ul.signals .strong .strength", "ul.signals .strong .strength"),
    ("ul.signals .weak .strength", "ul.signals .weak .strength"),
    ("ul.signals li.hit.strong .value", ".card"),
    ("ul.signals li.hit.strong .value", "tr.flagged"),
    ("table.pairs tr.flag-line td", ".card"),
    (".code tr.shared td.ln", ".code tr.shared td"),
    (".chart .tick", ".card"),
    (".chart .threshold-label", ".card"),
    (".chart .bar-value", ".card"),
    (".skip-link", ".skip-link"),
    (".muted", ".dropzone:focus-within"),
]


@cache
def rules() -> dict[str, dict[str, str]]:
    """selector -> declarations, later rules overriding earlier ones (media queries flattened)."""
    text = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    out: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = dict(
            (k.strip(), v.strip()) for k, _, v in (d.partition(":") for d in body.split(";")) if v.strip()
        )
        for selector in selectors.split(","):
            out.setdefault(" ".join(selector.split()), {}).update(declarations)
    return out


def colour(selector: str, *properties: str) -> str:
    declarations = rules()[selector]
    value = next(declarations[p] for p in properties if p in declarations)
    while value.startswith("var("):
        value = rules()[":root"][value[4:-1].strip()]
    assert re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", value), (selector, value)
    return value


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_the_formula_matches_known_ratios() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#1f8a4c", "#def5e6") == pytest.approx(3.81, abs=0.01)  # axe's number, before the fix


@pytest.mark.parametrize(("text", "background"), PAIRS, ids=[f"{t} on {b}" for t, b in PAIRS])
def test_text_meets_wcag_aa(text: str, background: str) -> None:
    fg = colour(text, "color", "fill")
    bg = colour(background, "background", "background-color")
    ratio = contrast(fg, bg)
    assert ratio >= AA_NORMAL, f"{text} ({fg}) on {background} ({bg}): {ratio:.2f}:1 < {AA_NORMAL}:1"
