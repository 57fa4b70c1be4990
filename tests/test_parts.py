"""Part kinds: a part's name is only a label; its kind decides what runs and how it is judged."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.batch.csvout import columns
from grader.config import load_assignment
from grader.errors import SpecError
from grader.parts import KINDS
from grader.pipeline import grade
from grader.report import format_result
from grader.result import Status
from tests.factories import write_spec

SPEC = Path(__file__).resolve().parent.parent / "hidden_tests" / "cnn" / "assignment.toml"
RENAMES = (("[parts.numpy_nn]", "[parts.layers_by_hand]"), ("[parts.mynet]", "[parts.clothes]"),
           ("[parts.finetune]", "[parts.pets]"), ("[parts.finetune.weights]", "[parts.pets.weights]"),
           ('rank_by = "finetune.weighted"', 'rank_by = "pets.weighted"'))


def renamed_spec(folder: Path, *more: tuple[str, str]) -> Path:
    text = SPEC.read_text()
    for old, new in (*RENAMES, *more):
        assert old in text, old
        text = text.replace(old, new, 1)
    return write_spec(folder, text)


def test_the_kinds_are_a_registry_and_the_shipped_spec_names_them():
    assert set(KINDS) == {"layers", "classifier"}
    spec = load_assignment()
    assert [(p.name, p.kind) for p in spec.parts] == [
        ("numpy_nn", "layers"), ("mynet", "classifier"), ("finetune", "classifier")]
    finetune = spec.part("finetune")
    assert finetune.columns == ("ORIG", "AUG", "NEW", "weighted")
    assert finetune.main_metric == "weighted"
    assert finetune.label("weighted") == "weighted accuracy"
    assert spec.part("mynet").columns == ("accuracy",)
    assert spec.part("numpy_nn").columns == ()


def test_splits_and_weights_take_any_names(tmp_path):
    spec = load_assignment(renamed_spec(
        tmp_path, ("ORIG = 0.6\nAUG = 0.3\nNEW = 0.1", "plain = 0.25\nturned = 0.5\nshifted = 0.25"),
        ("[datasets.dogs_cats.splits.ORIG]", "[datasets.dogs_cats.splits.plain]"),
        ("[datasets.dogs_cats.splits.AUG]", "[datasets.dogs_cats.splits.turned]"),
        ('of = "ORIG"', 'of = "plain"'),
        ("[datasets.dogs_cats.splits.NEW]", "[datasets.dogs_cats.splits.shifted]")))
    pets = spec.part("pets")
    assert dict(pets.weights) == {"plain": 0.25, "turned": 0.5, "shifted": 0.25}
    assert pets.columns == ("plain", "turned", "shifted", "weighted")
    assert list(spec.datasets["dogs_cats"].splits) == ["plain", "turned", "shifted"]
    assert spec.ranked_part == "pets"
    assert spec.ranked_metric == "weighted"


@pytest.mark.parametrize(("old", "new", "named"), [
    ('kind = "layers"', 'kind = "layer"', "unknown kind 'layer'"),
    ('metrics = ["accuracy"]', 'metrics = ["acuracy"]', "unknown metric 'acuracy'"),
    ('metrics = ["accuracy"]', 'metrics = []', "one or more metrics"),
    ('tests = "layer_tests.py"', 'tests = "missing.py"', "no file missing.py"),
    ('model_class = "MyNet"', 'scoring = "per_test"', "unknown key 'scoring'"),
])
def test_a_kind_checks_its_own_keys(tmp_path, old, new, named):
    text = SPEC.read_text()
    assert old in text
    write_spec(tmp_path, text.replace(old, new, 1))
    with pytest.raises(SpecError, match=named.replace("(", r"\(")):
        load_assignment(tmp_path)


def test_renamed_parts_are_graded_end_to_end(tmp_path, settings, make_submission):
    """The reference submission against a spec whose parts have other names: the same
    runner and judges run (chosen by kind), and every output names the spec's parts."""
    spec = load_assignment(renamed_spec(tmp_path / "spec"))
    result = grade(make_submission(), spec, settings)
    assert [p.name for p in result.parts] == ["layers_by_hand", "clothes", "pets"]
    layers, clothes, pets = result.parts
    assert layers.passed
    assert layers.status is Status.GRADED
    assert len(layers.tests) > 30
    assert clothes.passed
    assert set(clothes.metrics) == {"accuracy"}
    assert set(pets.metrics) == {"ORIG", "AUG", "NEW", "weighted"}  # untrained: not passed
    assert "NumPy layers passed" in result.message  # titles, not internal names
    assert {"pets_ORIG", "pets_weighted", "clothes_accuracy", "layers_by_hand_points"} <= set(
        columns(spec))
    assert "layers_by_hand" in format_result("x", result)


def test_macro_f1_is_the_mean_f1_of_the_classes_computed_by_hand():
    import numpy as np

    from grader.parts.metrics import METRICS

    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, 300)
    predicted = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 4, 300))
    predicted[predicted == 3] = 2  # class 3 is never predicted: its F1 is 0
    f1s = []
    for c in range(5):  # class 4 appears nowhere: left out of the mean
        tp = int(np.sum((predicted == c) & (truth == c)))
        fp = int(np.sum((predicted == c) & (truth != c)))
        fn = int(np.sum((predicted != c) & (truth == c)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    assert METRICS["macro_f1"].compute(predicted, truth, 5) == pytest.approx(sum(f1s) / len(f1s))
    assert METRICS["macro_f1"].compute(truth, truth, 5) == 1.0


def test_a_second_metric_gets_its_columns_and_labels_from_the_spec():
    spec = load_assignment(Path(__file__).resolve().parent.parent / "hidden_tests" / "fmnist")
    net = spec.part("net")
    assert net.columns == ("TEST", "ROTATED", "weighted", "TEST_macro_f1", "ROTATED_macro_f1",
                           "weighted_macro_f1")
    assert net.label("ROTATED_macro_f1") == "ROTATED macro-F1"
    assert net.main_metric == "weighted"  # the first metric decides
    assert {"net_TEST_macro_f1", "net_weighted_macro_f1"} <= set(columns(spec))
