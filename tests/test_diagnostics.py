"""What a result teaches: classifier diagnostics on the public part, layer tests by group.

The diagnostics come from the real judge (``judge_splits``) on crafted predictions and are
checked against an independent count; they never depend on the private part; the one
visibility rule drops any that do not say they are public; the layer tests name their group
and the failure that kept them from running; results written before these fields still load.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from grader.config import Assignment, PartSpec
from grader.parts import PartRun
from grader.parts.classifier import judge_splits
from grader.parts.common import public_mask
from grader.parts.layer_checks import judge_cases
from grader.parts.layers import load_cases
from grader.result import GradeResult, PartResult, Status, TestResult, percent, points
from grader.visible import visible_to_student
from leaderboard.present import group_tests
from tests.leaderboard.taught import BROKEN, layer_outputs

N = 120


def classifier(spec: Assignment, *, weighted: bool) -> PartSpec:
    """The spec's first classifier part with (or without) weighted splits."""
    return next(p for p in spec.parts if p.kind == "classifier" and bool(p.weights) is weighted)


def crafted(
    part: PartSpec, tmp_path: Path, num_classes: int, *, private_right: bool = True, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], Path]:
    """Labels, public masks and predictions (written as the sandbox writes them) per split:
    each later split gets more wrong on the public part; the private part all right or all wrong."""
    rng = np.random.default_rng(seed)
    out = tmp_path / f"out-{part.name}-{private_right}"
    out.mkdir()
    truth, public, got = {}, {}, {}
    for k, split in enumerate(part.weights or {"test": 1.0}):
        labels = rng.integers(0, num_classes, size=N)
        mask = public_mask(N, 0.5, 7, f"{part.dataset}/{split}")
        predicted = np.where(rng.random(N) < 0.15 * (k + 1), (labels + 1) % num_classes, labels)
        predicted[~mask] = labels[~mask] if private_right else (labels[~mask] + 1) % num_classes
        truth[split], public[split], got[split] = labels, mask, predicted.astype(np.int64)
        np.save(out / f"{split}.npy", got[split], allow_pickle=False)
    return truth, public, got, out


def independent_confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> list[list[int]]:
    counts = Counter(zip(labels.tolist(), predicted.tolist(), strict=True))
    return [[counts[(i, j)] for j in range(num_classes)] for i in range(num_classes)]


@pytest.mark.parametrize("weighted", [False, True], ids=["one-split", "weighted-splits"])
def test_diagnostics_match_an_independent_count_on_the_public_part(
    assignment: Assignment, tmp_path: Path, weighted: bool
) -> None:
    part = classifier(assignment, weighted=weighted)
    classes = [f"class {i}" for i in range(4)]
    truth, public, got, out = crafted(part, tmp_path, len(classes))
    result = judge_splits(part, PartRun(part.name, Status.GRADED, out_dir=out), truth, public,
                          len(classes), "set", classes=classes)
    diag = result.diagnostics
    assert diag["scope"] == "public"
    assert diag["classes"] == classes
    assert list(diag["splits"]) == list(truth)
    for split, labels in truth.items():
        mask = public[split]
        body = diag["splits"][split]
        expected = independent_confusion(labels[mask], got[split][mask], len(classes))
        assert body["confusion"] == expected
        assert body["count"] == int(mask.sum()) < N
        for i, row in enumerate(expected):
            assert body["per_class_accuracy"][i] == pytest.approx(row[i] / sum(row), abs=1e-6)
        # The matrix's diagonal is the public accuracy the student also sees as a number.
        primary = split if weighted else part.metrics[0]
        assert sum(expected[i][i] for i in range(len(classes))) / mask.sum() == pytest.approx(
            result.public_metrics[primary])
    if not weighted:
        assert "gap" not in diag
        return
    gap = diag["gap"]
    reference, *others = list(part.weights)
    assert gap["reference"] == reference
    for split in others:
        want = 100 * (result.public_metrics[split] - result.public_metrics[reference])
        assert gap["points"][split] == pytest.approx(want, abs=0.05)
        assert f"{abs(gap['points'][split]):.1f}" in gap["reading"]
        assert split in gap["reading"]
    assert gap["reading"].startswith("On the public part your model loses")
    assert gap["reading"].endswith(f"compared to {reference}.")


def test_diagnostics_never_depend_on_the_private_part(assignment: Assignment, tmp_path: Path) -> None:
    """The same public predictions with the private part all right or all wrong: the private
    numbers move, the diagnostics do not (so they cannot carry anything of the private part)."""
    part = classifier(assignment, weighted=True)
    results = []
    for private_right in (True, False):
        truth, public, _got, out = crafted(part, tmp_path, 2, private_right=private_right)
        results.append(judge_splits(part, PartRun(part.name, Status.GRADED, out_dir=out), truth, public,
                                    2, "set", classes=["cat", "dog"]))
    right, wrong = results
    assert right.private_metrics != wrong.private_metrics
    assert right.metrics != wrong.metrics
    assert dict(right.public_metrics) == dict(wrong.public_metrics)
    assert json.dumps(dict(right.diagnostics)) == json.dumps(dict(wrong.diagnostics))


def test_the_visibility_rule_keeps_public_diagnostics_and_drops_any_other(assignment: Assignment) -> None:
    part = classifier(assignment, weighted=True)
    public_diag = {"scope": "public", "classes": ["a", "b"],
                   "splits": {s: {"count": 2, "confusion": [[1, 0], [1, 0]],
                                  "per_class_accuracy": [1.0, 0.0]} for s in part.weights}}
    whole_diag = {**public_diag, "scope": "whole"}
    spec = dataclasses.replace(assignment, public_fraction=0.5)
    for diag, live_kept in ((public_diag, True), (whole_diag, False)):
        result = GradeResult(Status.GRADED, 0, 100, False, "", parts=(
            PartResult(part.name, Status.GRADED, 0, part.points, False, "", diagnostics=diag),))
        live = visible_to_student(result, spec, final=False).part(part.name)
        final = visible_to_student(result, spec, final=True).part(part.name)
        assert live is not None
        assert final is not None
        assert (dict(live.diagnostics) == diag) is live_kept
        assert not live_kept or live.diagnostics
        assert dict(final.diagnostics) == diag  # once the board is final nothing is held back


def test_layer_tests_name_their_group_and_the_failure_that_stopped_them(
    assignment: Assignment, tmp_path: Path
) -> None:
    part = next(p for p in assignment.parts if p.kind == "layers")
    cases = load_cases(part, assignment.spec_dir, assignment.seed)
    layer_outputs(tmp_path, cases)
    tests = list(judge_cases(cases, tmp_path))
    layer = BROKEN.split(".")[0]
    by_name = {t.name: t for t in tests}
    for case in cases:
        for check in case.checks:
            t = by_name[check.name]
            assert t.group == (check.method.split(".")[0] if check.method else " + ".join(check.requires))
    stopped = [t for t in tests if t.caused_by]
    assert stopped
    for t in stopped:
        assert not t.passed
        assert t.message.startswith("not run because")
        cause = by_name[t.caused_by]
        assert not cause.passed
        assert cause.group == t.group
        assert layer in t.group
    # On the page: the broken layer's group first, its "not run" tests folded under their cause.
    groups = group_tests(tests)
    assert groups[0].name == layer
    assert groups[0].failed
    assert [g.name for g in groups if not g.failed] == [g.name for g in groups[len(
        [g for g in groups if g.failed]):]]
    shown = [r.test.name for g in groups for r in g.rows]
    folded = [s.name for g in groups for r in g.rows for s in r.stopped]
    assert sorted(folded) == sorted(t.name for t in stopped)
    assert not set(shown) & set(folded)
    assert len(shown) + len(folded) == len(tests)
    first = groups[0]
    assert (first.passed, first.total) == (sum(t.passed for t in tests if t.group == layer),
                                           sum(t.group == layer for t in tests))
    assert all(not r.test.passed for r in first.rows[: len([r for r in first.rows if not r.test.passed])])


def test_results_without_the_new_fields_still_load_and_new_ones_round_trip() -> None:
    old = {"status": "graded", "score": 1.0, "max_score": 2.0, "passed": False, "message": "",
           "parts": [{"name": "p", "status": "graded", "score": 1.0, "max_score": 2.0, "passed": False,
                      "message": "", "tests": [{"name": "t", "passed": True, "message": ""}]}]}
    loaded = GradeResult.from_dict(old)
    assert loaded.parts[0].tests[0] == TestResult("t", True)
    assert dict(loaded.parts[0].diagnostics) == {}
    new = dataclasses.replace(loaded, parts=(dataclasses.replace(
        loaded.parts[0], tests=(TestResult("t", False, "m", group="G", caused_by="u"),),
        diagnostics={"scope": "public", "classes": ["a"], "splits": {}}),))
    data = json.loads(new.to_json())
    assert data["parts"][0]["tests"][0] == {"name": "t", "passed": False, "message": "m", "group": "G",
                                            "caused_by": "u"}
    assert data["parts"][0]["diagnostics"]["scope"] == "public"
    assert GradeResult.from_json(new.to_json()) == new


def test_one_number_format() -> None:
    assert percent(0.813) == "81.3%"
    assert points(38.0952, 40) == "38.1 / 40"
    assert points(40.0, 40.0) == "40 / 40"


@pytest.mark.parametrize(("diffs", "sentence"), [
    ({"B": -6.0}, "loses 6.0 points of accuracy on B compared to A."),
    ({"B": -6.0, "C": -12.5}, "loses 6.0 points of accuracy on B and 12.5 on C compared to A."),
    ({"B": 2.0, "C": -12.5}, "gains 2.0 points of accuracy on B and loses 12.5 on C compared to A."),
    ({"B": 0.0, "C": -1.0}, "does as well on B and loses 1.0 points of accuracy on C compared to A."),
])
def test_the_gap_reads_as_one_sentence(diffs: dict[str, float], sentence: str) -> None:
    from grader.parts.diagnostics import reading

    assert reading(diffs, "A", "accuracy") == "On the public part your model " + sentence
