"""The assignment spec: typed on load, every wrong key named."""

from __future__ import annotations

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
