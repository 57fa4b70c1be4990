"""The kit's numbers come from the spec: grader/kit.py renders the README section and
course_limits.json, and these tests fail while the shipped kit differs from the spec."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from grader import kit
from grader.cli import main
from grader.config import HIDDEN_TESTS_DIR, Assignment, load_assignment

GENERATED = (kit.README_FILE, kit.CONSTANTS_FILE)


@dataclasses.dataclass(frozen=True)
class _SpecWithBonusRule(Assignment):
    """The spec with ``[bonus] requires_all_passed`` set (the key grader/config.py reads)."""

    bonus_requires_all_passed: bool = True


@pytest.fixture
def kit_copy(tmp_path: Path) -> Path:
    """The shipped kit's generated files, in a folder of their own."""
    folder = tmp_path / "kit"
    folder.mkdir()
    for name in GENERATED:
        shutil.copy(kit.KIT_DIR / name, folder / name)
    return folder


def changed_spec(assignment: Assignment) -> Assignment:
    """The spec with another MyNet line and points, upload budget and bonus table."""
    parts = tuple(
        dataclasses.replace(p, threshold=0.8, points=35.0) if p.name == "mynet" else p
        for p in assignment.parts
    )
    return dataclasses.replace(assignment, parts=parts, upload_budget=42, bonus_points=(3, 2, 1))


def section(readme: str) -> str:
    return readme[readme.index(kit.BEGIN):readme.index(kit.END)]


@pytest.mark.parametrize("lab", ["cnn", "fmnist"])
def test_the_shipped_kit_matches_the_spec(lab: str) -> None:
    spec = load_assignment(HIDDEN_TESTS_DIR / lab)
    stale = kit.stale_files(spec)
    assert stale == [], (f"{', '.join(map(str, stale))}: out of date; run .venv/bin/grader "
                         f"render-kit --assignment {lab}")


def test_the_readme_section_states_every_number_of_the_spec(assignment: Assignment) -> None:
    text = section((kit.KIT_DIR / kit.README_FILE).read_text())
    mynet, finetune = assignment.part("mynet"), assignment.part("finetune")
    line = f"{mynet.threshold * 100:g} %"
    assert f"better than {line} (exactly {line} does not pass)" in text
    assert f"better than {finetune.threshold * 100:g} %" in text
    assert "0.6 · ORIG + 0.3 · AUG + 0.1 · NEW" in text
    for part in assignment.parts:
        assert f"| {part.title} |" in text
        assert f"| {part.points:g} |" in text
        assert f"| {part.time_limit_s:g} s |" in text
    assert f"{assignment.max_score:g} points in all" in text
    assert f"Uploads: {assignment.upload_budget} per student" in text
    assert "memory: 4 GiB" in text
    assert f"CPUs: {assignment.limits.cpus:g}" in text
    assert "the zip: at most 200 MiB" in text
    assert "a checkpoint at most 150 MiB" in text
    for moment in assignment.deadlines.values():
        assert moment.strftime("%Y-%m-%d %H:%M UTC") in text
    assert "1. +6, 2. +5, 3. +4, 4. +3, 5. +2, 6. +1" in text
    assert "Only students who pass every part are eligible" in text
    assert "over-fitted to the test data" in text


def test_course_limits_json_holds_the_spec(assignment: Assignment) -> None:
    data = json.loads((kit.KIT_DIR / kit.CONSTANTS_FILE).read_text())
    assert data["files"]["required"] == list(assignment.files.required)
    assert data["files"]["report"] == list(assignment.files.report)
    assert data["limits"]["checkpoint_bytes"] == assignment.limits.checkpoint_bytes
    assert data["limits"]["upload_bytes"] == assignment.limits.upload_bytes
    assert data["parts"]["mynet"]["threshold"] == assignment.part("mynet").threshold
    assert data["parts"]["finetune"]["weights"] == dict(assignment.part("finetune").weights)
    assert data["upload_budget"] == assignment.upload_budget
    assert data["bonus"] == {"points": list(assignment.bonus_points), "requires_all_passed": True}


def test_a_changed_spec_makes_both_files_stale_until_rendered(assignment: Assignment,
                                                              kit_copy: Path) -> None:
    readme_before = (kit_copy / kit.README_FILE).read_text()
    spec = changed_spec(assignment)
    assert kit.stale_files(spec, kit_copy) == [kit_copy / kit.CONSTANTS_FILE,
                                               kit_copy / kit.README_FILE]

    assert sorted(kit.render_kit(spec, kit_copy)) == sorted(kit_copy / n for n in GENERATED)
    assert kit.stale_files(spec, kit_copy) == []
    readme = (kit_copy / kit.README_FILE).read_text()
    assert "better than 80 % (exactly 80 % does not pass)" in section(readme)
    assert "Uploads: 42 per student" in section(readme)
    assert "1. +3, 2. +2, 3. +1" in section(readme)
    # Only the section changed: the hand-written text around it is kept as it was.
    start, end = readme_before.index(kit.BEGIN), readme_before.index(kit.END)
    assert readme.startswith(readme_before[:start])
    assert readme.endswith(readme_before[end:])
    data = json.loads((kit_copy / kit.CONSTANTS_FILE).read_text())
    assert data["parts"]["mynet"]["threshold"] == 0.8
    assert data["parts"]["mynet"]["points"] == 35.0
    assert data["upload_budget"] == 42


def test_bonus_by_rank_alone_when_the_spec_says_so(assignment: Assignment) -> None:
    fields = {f.name: getattr(assignment, f.name) for f in dataclasses.fields(Assignment)}
    spec = _SpecWithBonusRule(**{**fields, "bonus_requires_all_passed": False})
    text = kit.readme_section(spec)
    assert "Only students who pass every part" not in text
    assert "The bonus goes by rank alone" in text
    assert kit.kit_constants(spec)["bonus"]["requires_all_passed"] is False


def test_render_kit_command(assignment: Assignment, kit_copy: Path, tmp_path: Path) -> None:
    spec_dir = tmp_path / "spec"
    shutil.copytree(assignment.spec_dir, spec_dir, ignore=shutil.ignore_patterns("solution"))
    toml = spec_dir / "assignment.toml"
    toml.write_text(toml.read_text().replace("upload_budget = 100", "upload_budget = 7"))
    args = ["--kit", str(kit_copy), "--assignment", str(spec_dir)]
    runner = CliRunner()

    stale = runner.invoke(main, ["render-kit", "--check", *args])
    assert stale.exit_code == 1, stale.output
    assert "README.md is out of date with the spec; run grader render-kit" in stale.output

    written = runner.invoke(main, ["render-kit", *args])
    assert written.exit_code == 0, written.output
    assert f"wrote {kit_copy / kit.CONSTANTS_FILE}" in written.output
    assert "Uploads: 7 per student" in (kit_copy / kit.README_FILE).read_text()

    fresh = runner.invoke(main, ["render-kit", "--check", *args])
    assert fresh.exit_code == 0, fresh.output
    assert "up to date with spec cnn" in fresh.output


def test_a_readme_without_the_markers_is_named(assignment: Assignment, kit_copy: Path) -> None:
    (kit_copy / kit.README_FILE).write_text("# kit\n")
    result = CliRunner().invoke(main, ["render-kit", "--kit", str(kit_copy)])
    assert result.exit_code == 1
    assert "needs exactly one generated section" in result.output
    assert "Traceback" not in result.output
