"""The assignment spec: typed on load, every wrong key named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from grader.config import Settings, load_assignment
from grader.errors import SpecError
from tests.factories import write_spec

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
    assert a.part("mynet").suspicious_above == 0.97
    assert a.part("finetune").suspicious_above == 0.99
    assert a.part("numpy_nn").suspicious_above is None


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("0", "must lie in (0, 1]"),
        ("1.01", "must lie in (0, 1]"),
        ("-0.5", "must lie in (0, 1]"),
        ("nan", "must lie in (0, 1]"),
        ("0.75", "must be above the pass threshold (0.75)"),
        ("0.5", "must be above the pass threshold (0.75)"),
        ('"high"', "must be float"),
        ("true", "must be float"),
    ],
)
def test_a_wrong_plausibility_ceiling_is_refused(tmp_path, value, named):
    text = SPEC.read_text()
    assert "suspicious_above = 0.97" in text
    write_spec(tmp_path,
        text.replace("suspicious_above = 0.97", f"suspicious_above = {value}", 1))
    with pytest.raises(SpecError) as info:
        load_assignment(tmp_path)
    assert "[parts.mynet]: key 'suspicious_above'" in str(info.value)
    assert named in str(info.value)


def test_a_plausibility_ceiling_needs_a_part_with_an_accuracy(tmp_path):
    text = SPEC.read_text()
    old = 'scoring = "per_test"'
    write_spec(tmp_path, text.replace(old, old + "\nsuspicious_above = 0.9", 1))
    with pytest.raises(SpecError, match=r"\[parts.numpy_nn\]: key 'suspicious_above' needs a part"):
        load_assignment(tmp_path)


def test_the_plausibility_ceiling_is_optional_and_may_be_1(tmp_path):
    text = SPEC.read_text()
    text = text.replace("suspicious_above = 0.97\n", "", 1)
    write_spec(tmp_path,
        text.replace("suspicious_above = 0.99", "suspicious_above = 1"))
    spec = load_assignment(tmp_path)
    assert spec.part("mynet").suspicious_above is None
    assert spec.part("finetune").suspicious_above == 1.0


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("threshold = 0.75", "threshold = 1.75", "'threshold'"),
        ("threshold = 0.75", "treshold = 0.75", "'treshold'"),
        ("ORIG = 0.6", "ORIG = 0.7", "add up to 1"),
        ("NEW = 0.1", "NEW = -0.1", "'NEW'"),
        ("NEW = 0.1", "NEU = 0.1", "must weight exactly the splits of dataset 'dogs_cats'"),
        ('dataset = "dogs_cats"', 'dataset = "dogs"', "undeclared dataset 'dogs'"),
        ("upload_budget = 100", 'upload_budget = "100"', "'upload_budget'"),
        ("memory_bytes = 4_294_967_296", "memory_bytes = -1", "'memory_bytes'"),
        ("points = 40.0", "points = 0", "'points'"),
        ('rank_by = "finetune.weighted"', 'rank_by = "nope.weighted"', "'rank_by'"),
        ("public_fraction = 0.5", "public_fraction = 0", "'public_fraction'"),
        ('kind = "classifier"', 'kind = "classifer"', "'classifer'"),
        ('rank_by = "finetune.weighted"', 'rank_by = "finetune.best"', "'best'"),
        ("bonus = 2026-12-14T23:59:00Z", 'bonus = "soon"', "'bonus'"),
        ("requires_all_passed = true", 'requires_all_passed = "yes"', "'requires_all_passed'"),
        ("requires_all_passed = true", "requires_all_pased = true", "'requires_all_pased'"),
    ],
)
def test_a_wrong_key_is_named(tmp_path, old, new, named):
    text = SPEC.read_text()
    assert old in text
    write_spec(tmp_path, text.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_assignment(tmp_path)
    assert named in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(SpecError, match="no such assignment spec"):
        load_assignment(tmp_path / "nope.toml")
    write_spec(tmp_path, "[assignment\n")
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
    write_spec(tmp_path, text.replace("requires_all_passed = true", line, 1))
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


def test_a_split_may_show_its_own_share_on_the_live_board(tmp_path):
    text = SPEC.read_text()
    old = "[datasets.dogs_cats.splits.NEW]\n"
    assert old in text
    spec = load_assignment(write_spec(tmp_path, text.replace(old, old + "public_fraction = 1.0\n", 1)))
    assert spec.split_public_fraction("dogs_cats", "NEW") == 1.0
    assert spec.split_public_fraction("dogs_cats", "ORIG") == 0.5  # the [leaderboard] default
    assert replace(spec, public_fraction=1.0).has_private_part is False
    assert load_assignment().split_public_fraction("fashion_mnist", "test") == 0.5
