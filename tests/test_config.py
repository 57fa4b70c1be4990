"""The assignment spec: typed on load, every wrong key named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from grader.config import Settings, load_assignment
from grader.errors import SpecError

SPEC = Path(__file__).resolve().parent.parent / "hidden_tests" / "cnn" / "assignment.toml"


def test_the_shipped_spec_has_the_course_numbers():
    a = load_assignment()
    assert a.name == "cnn"
    assert a.upload_budget == 100
    assert [p.name for p in a.parts] == ["numpy_nn", "mynet", "finetune"]
    assert a.part("mynet").threshold == 0.75
    assert a.part("finetune").threshold == 0.70
    assert dict(a.part("finetune").weights) == {"ORIG": 0.6, "AUG": 0.3, "NEW": 0.1}
    assert a.bonus_points == (6, 5, 4, 3, 2, 1)
    assert a.bonus_requires_all_passed  # "pass all tests" to take a bonus place
    assert a.max_score == 100
    assert a.limits.memory_bytes == 4 * 2**30
    assert a.limits.processes == 64
    assert set(a.deadlines) == {"opens", "bonus", "final"}
    assert "model.pt" in a.files.required
    assert a.files.alternatives["model.pt"] == ("model.safetensors",)


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("threshold = 0.75", "threshold = 1.75", "'threshold'"),
        ("threshold = 0.75", "treshold = 0.75", "'treshold'"),
        ("ORIG = 0.6", "ORIG = 0.7", "add up to 1"),
        ("NEW = 0.1", "NEU = 0.1", "'NEU'"),
        ("upload_budget = 100", 'upload_budget = "100"', "'upload_budget'"),
        ("memory_bytes = 4_294_967_296", "memory_bytes = -1", "'memory_bytes'"),
        ("points = 40.0", "points = 0", "'points'"),
        ('rank_by = "finetune.weighted"', 'rank_by = "nope.weighted"', "'rank_by'"),
        ("public_fraction = 0.5", "public_fraction = 0", "'public_fraction'"),
        ("[parts.mynet]", "[parts.mynett]", "mynett"),
        ("bonus = 2026-12-14T23:59:00Z", 'bonus = "soon"', "'bonus'"),
        ("requires_all_passed = true", 'requires_all_passed = "yes"', "'requires_all_passed'"),
        ("requires_all_passed = true", "requires_all_pased = true", "'requires_all_pased'"),
    ],
)
def test_a_wrong_key_is_named(tmp_path, old, new, named):
    text = SPEC.read_text()
    assert old in text
    (tmp_path / "assignment.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_assignment(tmp_path)
    assert named in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(SpecError, match="no such assignment spec"):
        load_assignment(tmp_path / "nope.toml")
    (tmp_path / "assignment.toml").write_text("[assignment\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_assignment(tmp_path)


def test_settings_from_environment(tmp_path):
    settings = Settings.from_env({"GRADER_HOME": str(tmp_path), "GRADER_SANDBOX": "local",
                                  "GRADER_REQUIRE_CGROUPS": "0"})
    assert settings.home == tmp_path
    assert settings.data_dir == tmp_path / "hidden"
    assert settings.sandbox.backend == "local"
    assert not settings.sandbox.require_cgroups
    assert Settings.from_env({}, home=tmp_path / "x").home == tmp_path / "x"


@pytest.mark.parametrize(("line", "expected"), [("requires_all_passed = false", False), ("", True)])
def test_bonus_rule_is_read_from_the_spec_and_defaults_to_the_course(tmp_path, line, expected):
    text = SPEC.read_text()
    (tmp_path / "assignment.toml").write_text(text.replace("requires_all_passed = true", line, 1))
    assert load_assignment(tmp_path).bonus_requires_all_passed is expected


@pytest.mark.parametrize(
    ("points", "all_passed", "requires", "expected"),
    [
        ((6, 5, 4), [False, True, True, True], True, [0, 6, 5, 4]),
        ((6, 5, 4), [False, True, True, True], False, [6, 5, 4, 0]),
        ((6, 5, 4), [False, False, False], True, [0, 0, 0]),
        ((6, 5), [True, False, True, True], True, [6, 0, 5, 0]),
        ((), [True, True], True, [0, 0]),
    ],
)
def test_award_bonus_table(points, all_passed, requires, expected):
    rule = replace(load_assignment(), bonus_points=points, bonus_requires_all_passed=requires)
    assert rule.award_bonus(all_passed) == expected


@pytest.mark.parametrize(
    ("part", "value", "passes"),
    [
        ("mynet", 0.75, False),  # "better than 75 %": exactly on the line is not passed
        ("mynet", 0.7501, True),
        ("finetune", 0.70, False),
        # 70 % exactly, which floats compute as 0.7000000000000001
        ("finetune", 0.6 * 0.66 + 0.3 * 0.84 + 0.1 * 0.52, False),
        ("finetune", 0.6999, False),
        ("finetune", 0.7001, True),
    ],
)
def test_the_pass_line_is_strict(part, value, passes):
    assert load_assignment().part(part).passes(value) is passes
