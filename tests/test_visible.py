"""What a student may see of a result: one rule, and every surface (page, API, export) obeys it.

One result with distinct whole-split (0.90…), public (0.88…) and private (0.92…) numbers, a
staff detail and a flag goes through ``visible_to_student`` and through each surface built on
it. A table says, per (public_fraction, final), whether the whole-split and private numbers
may show; a surface that spells its own rule would disagree with the table somewhere.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from grader.config import Assignment, load_assignment, split_rank_by
from grader.export import gradescope
from grader.result import Flag, GradeResult, points
from grader.visible import public_only, visible_to_student
from leaderboard.present import part_views, student_result
from tests.leaderboard.factories import result_data

FULL, PUBLIC, PRIVATE = (0.9031, 0.7031, 0.5031), (0.8817, 0.6817, 0.4817), (0.9243, 0.7243, 0.5243)


@pytest.fixture(scope="module")
def spec() -> Assignment:
    return load_assignment()


@pytest.fixture(scope="module")
def result() -> GradeResult:
    data = result_data(final=FULL, public=PUBLIC, private=PRIVATE, detail="staff-only top detail")
    return dataclasses.replace(GradeResult.from_dict(data), flags=(Flag("mynet", "too good: 99 %"),))


def _surfaces(result: GradeResult, spec: Assignment, final: bool) -> dict[str, str]:
    views = part_views(result, spec, frozen=final)
    return {
        "visible": visible_to_student(result, spec, final=final).to_json(),
        "api": json.dumps(student_result(result, spec, frozen=final)),
        "page": repr([(v.message, v.metrics, v.tests, v.chart) for v in views]),
        "gradescope": json.dumps(gradescope(result, spec, final=final)),
    }


def _texts(values: tuple[float, float, float]) -> list[str]:
    """How a number shows on some surface: a float in JSON, a percent in a message."""
    return [t for v in values for t in (repr(v), f"{v:.1%}", f"{v:.2%}", f"{100 * v:.2f}")]


@pytest.mark.parametrize(
    ("fraction", "final", "hidden"),
    [(0.5, False, True), (0.5, True, False), (1.0, False, False), (1.0, True, False)],
    ids=["private-part-live", "private-part-frozen", "all-public-live", "all-public-frozen"],
)
def test_every_surface_shows_what_the_rule_allows(
    spec: Assignment, result: GradeResult, fraction: float, final: bool, hidden: bool
) -> None:
    spec = dataclasses.replace(spec, public_fraction=fraction)
    assert public_only(spec, final=final) is hidden
    for name, text in _surfaces(result, spec, final).items():
        for secret in ("staff-only", "too good"):
            assert secret not in text, (name, secret)
        whole = [t for t in _texts(FULL) if t in text]
        private = [t for t in _texts(PRIVATE) if t in text]
        if hidden:
            assert whole == [], (name, whole)
            assert private == [], (name, private)
            assert any(t in text for t in _texts(PUBLIC)), name
        else:
            assert whole, name  # the whole-split numbers show once nothing is held back


def test_the_public_only_part_keeps_its_points_and_loses_its_tests(spec: Assignment,
                                                                   result: GradeResult) -> None:
    shown = visible_to_student(result, spec, final=False)
    ranked = shown.part(spec.ranked_part)
    original = result.part(spec.ranked_part)
    assert ranked is not None
    assert original is not None
    assert ranked.tests == ()
    assert original.tests
    assert dict(ranked.metrics) == dict(original.public_metrics)
    assert dict(ranked.private_metrics) == {}
    assert (ranked.score, ranked.max_score, ranked.passed) == (original.score, original.max_score,
                                                               original.passed)
    assert "pass line" in ranked.message
    assert points(ranked.score, ranked.max_score) in ranked.message
    others = [p for p in shown.parts if p.name != spec.ranked_part]
    assert [p.tests for p in others] == [p.tests for p in result.parts if p.name != spec.ranked_part]
    assert all(p.detail == "" for p in shown.parts)
    assert shown.flags == ()
    assert shown.detail == ""


def test_rank_by_is_taken_apart_in_one_place(spec: Assignment) -> None:
    assert split_rank_by("finetune.weighted") == ("finetune", "weighted")
    assert (spec.ranked_part, spec.ranked_metric) == split_rank_by(spec.rank_by)
    other = dataclasses.replace(spec, rank_by="mynet.accuracy", public_fraction=1.0)
    assert (other.ranked_part, other.ranked_metric, other.has_private_part) == ("mynet", "accuracy", False)
    assert dataclasses.replace(spec, public_fraction=0.5).has_private_part


def test_staff_pages_see_everything(spec: Assignment, result: GradeResult) -> None:
    views = part_views(result, spec, frozen=False, staff=True)
    text: Any = repr([(v.message, v.metrics, v.tests) for v in views])
    assert any(t in text for t in _texts(FULL))
