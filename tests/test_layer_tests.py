"""The hidden layer tests: the real runner on real student-like code, judged on the host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grader.config import load_assignment
from grader.demo import load_solution
from grader.parts import JobContext, PartRun, judge_part, plan_entry
from grader.parts.layer_checks import write_probes
from grader.result import Status

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "hidden_tests" / "cnn" / "solution" / "numpy_nn.py"
# The lab's own layer tests (hidden_tests/cnn/layer_tests.py, named in its spec).
COURSE = load_solution("layer_tests", ROOT / "hidden_tests" / "cnn")
COURSE_ACT_G, COURSE_B, COURSE_G, COURSE_W, COURSE_X = (
    COURSE.COURSE_ACT_G, COURSE.COURSE_B, COURSE.COURSE_G, COURSE.COURSE_W, COURSE.COURSE_X)
build_cases, ref_linear = COURSE.build_cases, COURSE.ref_linear
RUNNER = ROOT / "grader" / "runner" / "__main__.py"

MISTAKES = {
    "per-sample grads summed over the batch": (
        "def _bw(self, g):\n"
        "    g = np.asarray(g, dtype=float)\n"
        "    self.dL_wrt_W = self.x.T @ g\n"
        "    self.dL_wrt_b = g.sum(axis=0, keepdims=True)\n"
        "    return g @ self.W.T\n"
        "Linear.backward = _bw\n",
        "Linear",
    ),
    "params returns copies": (
        "Linear.params = lambda self: {'W': self.W.copy(), 'b': self.b.copy()}\n",
        "Linear",
    ),
    "forward forgets the bias": (
        "Linear.forward = lambda self, x: (setattr(self, 'x', np.asarray(x, float)), self.x @ self.W)[1]\n",
        "Linear",
    ),
    "sigmoid backward without derivative": (
        "Sigmoid.backward = lambda self, g: np.asarray(g, dtype=float)\n",
        "Sigmoid",
    ),
    "relu backward passes everything": (
        "ReLU.backward = lambda self, g: np.asarray(g, dtype=float)\n",
        "ReLU",
    ),
    "SE backward without the factor 2": (
        "SE.backward = lambda self: self.diff\n",
        "SE",
    ),
    "relu only works on 2-D": (
        "_fw = ReLU.forward\n"
        "def _relu2d(self, x):\n"
        "    assert np.ndim(x) == 2, 'only 2-D'\n"
        "    return _fw(self, x)\n"
        "ReLU.forward = _relu2d\n",
        "ReLU",
    ),
}


def run_layer_tests(tmp_path: Path, source: str):
    """Run the real runner on ``source`` as numpy_nn.py (no sandbox), then judge on the host."""
    assignment = load_assignment()
    spec = assignment.part("numpy_nn")
    submission, job, out = tmp_path / "submission", tmp_path / "job", tmp_path / "out"
    for d in (submission, job, out):
        d.mkdir()
    (submission / "numpy_nn.py").write_text(source)
    context = JobContext(assignment, None, job, lambda name: name)  # type: ignore[arg-type]
    plan = {"threads": 1, "parts": [plan_entry(spec, context)]}
    (job / "plan.json").write_text(json.dumps(plan))
    proc = subprocess.run(
        [sys.executable, "-I", "-B", str(RUNNER), str(job / "plan.json"), "--submission",
         str(submission), "--inputs", str(tmp_path), "--job", str(job), "--out", str(out),
         "--parts", "numpy_nn"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    end = next(e for e in events if e["event"] in ("done", "failed"))
    run = PartRun("numpy_nn", Status.GRADED, failed=end["event"] == "failed",
                  message=end.get("message", ""), out_dir=out / "numpy_nn")
    return judge_part(spec, run, context)


def test_reference_reproduces_the_course_values():
    ref = ref_linear(COURSE_W, COURSE_B, COURSE_X, COURSE_G)
    np.testing.assert_almost_equal(ref["forward"], [[-2.5, -0.06], [-1.06, -1.5]], decimal=6)
    np.testing.assert_almost_equal(
        ref["dx"], [[1.8, -0.06666667, -1.93333333], [2.86666667, -0.06666667, -3.0]], decimal=6)
    np.testing.assert_almost_equal(ref["dW"], [
        [[-2, -2.66666667], [-1.2, -1.6], [-0.4, -0.53333333]],
        [[0.66666667, 0.8], [2, 2.4], [3.33333333, 4]]], decimal=6)
    np.testing.assert_almost_equal(ref["db"], [[[1, 1.33333333]], [[1.66666667, 2]]], decimal=6)
    sig = 1 / (1 + np.exp(-COURSE_X))
    np.testing.assert_almost_equal(sig, [[0.119203, 0.231475, 0.401312],
                                         [0.598688, 0.768525, 0.880797]], decimal=6)
    np.testing.assert_almost_equal(COURSE_ACT_G * sig * (1 - sig), [
        [-0.314981, 0.213473, -0.12013], [-0.096104, 0.391368, 0.314981]], decimal=6)


def test_cases_are_deterministic_and_cover_every_method():
    first, second = build_cases(73019), build_cases(73019)
    names = [check.name for case in first for check in case.checks]
    assert names == [check.name for case in second for check in case.checks]
    for a, b in zip(first, second, strict=True):
        for key in a.inputs:
            np.testing.assert_array_equal(a.inputs[key], b.inputs[key])
    for prefix in ("Linear.forward", "Linear.backward: dL/dx", "Linear.backward: per-sample dL_wrt_W",
                   "Linear.backward: per-sample dL_wrt_b", "Linear.params", "ReLU.forward",
                   "ReLU.backward", "Sigmoid.forward", "Sigmoid.backward", "SE.forward",
                   "SE.backward", "Linear + SE"):
        assert any(n.startswith(prefix) for n in names), prefix
    for dims in ("2-D", "3-D", "4-D"):
        assert any(dims in n and n.startswith("ReLU") for n in names)
        assert any(dims in n and n.startswith("Sigmoid") for n in names)
    assert build_cases(1)[1].inputs["x"].tolist() != first[1].inputs["x"].tolist()


def test_probe_file_holds_inputs_only(tmp_path):
    cases = build_cases(5)
    write_probes(cases, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files}
    # (The course's SE example is excluded: there backward() equals the input y by design.)
    expected_values = [c.expected for case in cases if case.id != "se0"
                       for c in case.checks if c.expected.size > 3]
    for value in expected_values:
        assert not any(v.shape == value.shape and np.allclose(v, value) for v in stored.values())


def test_correct_solution_passes_every_layer_test(tmp_path):
    result = run_layer_tests(tmp_path, SOLUTION.read_text())
    failed = [(t.name, t.message) for t in result.tests if not t.passed]
    assert failed == []
    assert result.passed
    assert result.score == result.max_score
    assert result.message.startswith("All ")


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_typical_mistakes_fail_exactly_their_layer(tmp_path, mistake):
    patch, layer = MISTAKES[mistake]
    result = run_layer_tests(tmp_path, SOLUTION.read_text() + "\n\n" + patch)
    failed = [t for t in result.tests if not t.passed]
    assert failed, "the mistake went unnoticed"
    assert not result.passed
    assert 0 < result.score < result.max_score
    for test in failed:
        # "Linear + SE" is the training check: it uses both classes.
        assert test.name.startswith(layer) or (test.name.startswith("Linear + SE") and layer in (
            "Linear", "SE")), (test.name, test.message)
        assert test.message
        assert test.message.endswith(".")
    passed_layers = {t.name.split(".")[0].split(":")[0] for t in result.tests if t.passed}
    assert passed_layers >= ({"Linear", "ReLU", "Sigmoid", "SE"} - {layer})


def test_messages_say_what_was_expected_and_what_came(tmp_path):
    patch = MISTAKES["per-sample grads summed over the batch"][0]
    result = run_layer_tests(tmp_path, SOLUTION.read_text() + "\n\n" + patch)
    by_name = {t.name: t.message for t in result.tests}
    msg = by_name["Linear.backward: per-sample dL_wrt_W (N, in, out), course example"]
    assert "expected shape (2, 3, 2), got (3, 2)" in msg
    assert "per-sample" in msg
    patch = MISTAKES["sigmoid backward without derivative"][0]
    result = run_layer_tests(tmp_path / "b", SOLUTION.read_text() + "\n\n" + patch) if (
        (tmp_path / "b").mkdir() is None) else None
    msg = {t.name: t.message for t in result.tests}["Sigmoid.backward: course example"]
    assert msg.startswith("largest difference")
    assert "expected" in msg
    assert "got" in msg


def test_untouched_template_fails_with_not_implemented(tmp_path):
    template = (ROOT / "student_template" / "numpy_nn.py").read_text()
    result = run_layer_tests(tmp_path, template)
    assert not result.passed
    passed = {t.name for t in result.tests if t.passed}
    # The template's constructors already make W and b of the right shapes; nothing else works.
    assert passed <= {t.name for t in result.tests if t.name.startswith("Linear: ")}
    for test in result.tests:
        if not test.passed:
            assert "NotImplementedError" in test.message or "not run because" in test.message


def test_import_error_fails_the_part_with_the_students_line(tmp_path):
    result = run_layer_tests(tmp_path, "import numpy as np\n\nx = 1 / 0\n")
    assert result.status is Status.CRASHED
    assert "ZeroDivisionError" in result.message
    assert "line 3" in result.message


STALE_FORWARD = (
    "def _stale_forward(self, x):\n"
    "    if not hasattr(self, '_W0'):\n"
    "        self._W0, self._b0 = self.W.copy(), self.b.copy()\n"
    "    self.x = np.asarray(x, dtype=float)\n"
    "    return self.x @ self._W0 + self._b0\n"
    "Linear.forward = _stale_forward\n"
)

# Broken layers -> the methods a failing "Linear + SE" training check must name (none: every
# Linear and SE test passes, so the hint about how they work together is the right one).
COMBINED = {
    "Linear.backward sums the per-sample grads": (
        MISTAKES["per-sample grads summed over the batch"][0], ["Linear.backward"]),
    "SE.backward without the factor 2": (MISTAKES["SE backward without the factor 2"][0], ["SE.backward"]),
    "params() returns copies": (MISTAKES["params returns copies"][0], ["Linear.params"]),
    "Linear.backward and SE.backward both wrong": (
        MISTAKES["per-sample grads summed over the batch"][0]
        + MISTAKES["SE backward without the factor 2"][0],
        ["Linear.backward", "SE.backward"]),
    "forward keeps a stale copy of W (every layer test passes)": (STALE_FORWARD, []),
}


@pytest.mark.parametrize("broken", sorted(COMBINED))
def test_a_failing_combined_test_names_the_broken_layer(tmp_path, broken):
    patch, methods = COMBINED[broken]
    result = run_layer_tests(tmp_path, SOLUTION.read_text() + "\n\n" + patch)
    combined = [t for t in result.tests if t.name.startswith("Linear + SE")]
    singles = [t for t in result.tests if not t.name.startswith("Linear + SE")]
    assert len(combined) == 2
    assert not any(t.passed for t in combined), "the training check should fail"
    failing_methods = {t.name.split(":")[0] for t in singles if not t.passed}
    for test in combined:
        if methods:
            named = " and ".join(methods)
            assert f"fix {named} first" in test.message, test.message
            assert "every Linear and SE test passes" not in test.message
            assert "params() must return the live arrays" not in test.message
            assert failing_methods >= set(methods)
        else:
            assert failing_methods == set(), "every single-layer test should pass"
            assert "every Linear and SE test passes" in test.message, test.message
            assert "fix " not in test.message
        assert test.message.endswith(".")
