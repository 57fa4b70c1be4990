"""The ``layers`` kind: the student's hand-written layers against hidden cases.

Spec keys besides the common ones: ``tests`` (a Python file in the assignment's folder whose
``build_cases(seed)`` returns the cases with their expected values; host only), ``probes``
(a Python file whose ``OPS`` the runner uses to drive the layers; copied into the job) and
``scoring``: ``"per_test"`` shares the points out per passing test, ``"threshold"`` gives
them all only when every test passes. The part passes when every test passes.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader.errors import GraderFault, SpecError
from grader.parts.common import JobContext, PartRun, not_run
from grader.parts.layer_checks import Case, judge_cases, write_probes
from grader.parts.spec import COMMON_KEYS, PartSpec, common_fields, take
from grader.result import PartResult, Status

KEYS = COMMON_KEYS | {"tests", "probes", "scoring", "suspicious_above"}  # the last: refused
PROBES_FILE = "probes.npz"


def parse(name: str, table: Mapping[str, Any], where: str, spec_dir: Path) -> PartSpec:
    if "suspicious_above" in table:
        raise SpecError(f"{where}: key 'suspicious_above' needs a part with a metric "
                        "(kind = \"classifier\"); layer tests have none")
    scoring = table.get("scoring", "per_test")
    if scoring not in ("threshold", "per_test"):
        raise SpecError(f"{where}: key 'scoring' must be 'threshold' or 'per_test'")
    files = {key: take(table, key, str, where) for key in ("tests", "probes")}
    for key, file in files.items():
        if not (spec_dir / file).is_file():
            raise SpecError(f"{where}: key '{key}': no file {file} in {spec_dir}")
    return PartSpec(**common_fields(name, table, where), scoring=scoring, **files)


def load_cases(spec: PartSpec, spec_dir: Path, seed: int) -> list[Case]:
    """The part's cases, from ``build_cases(seed)`` of its ``tests`` file (trusted course code)."""
    path = spec_dir / spec.tests
    module_name = f"_grader_layer_tests_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(module_name)
    if module is None:
        loader = importlib.util.spec_from_file_location(module_name, path)
        if loader is None or loader.loader is None:
            raise GraderFault(f"The layer tests {path} cannot be loaded.")
        module = importlib.util.module_from_spec(loader)
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            raise GraderFault(f"The layer tests {path} failed to load: {exc!r}") from exc
        sys.modules[module_name] = module
    try:
        return list(module.build_cases(seed))
    except Exception as exc:
        raise GraderFault(f"build_cases({seed}) of {path} failed: {exc!r}") from exc


def plan(spec: PartSpec, job: JobContext) -> dict[str, Any]:
    """The runner's entry: the probe inputs (never the expected values) and the ops file."""
    cases = load_cases(spec, job.assignment.spec_dir, job.assignment.seed)
    job.state[spec.name] = cases
    probes = f"{spec.name}-{PROBES_FILE}"
    ops = f"{spec.name}-ops.py"
    shutil.copyfile(job.assignment.spec_dir / spec.probes, job.job_dir / ops)
    plan_cases = write_probes(cases, job.job_dir / probes)
    return {
        "probes": probes, "ops": ops, "cases": plan_cases,
        "outputs": [f"{c['id']}{ext}" for c in plan_cases for ext in (".npz", ".json")],
    }


def judge(spec: PartSpec, run: PartRun, job: JobContext) -> PartResult:
    """Score the layer tests; tests that ran are judged even when the part was stopped."""
    cases: list[Case] = job.state[spec.name]
    tests = tuple(judge_cases(cases, run.out_dir)) if run.out_dir else ()
    passed_count = sum(t.passed for t in tests)
    total = sum(len(c.checks) for c in cases)
    score = round(spec.points * passed_count / total, 4) if spec.scoring == "per_test" else (
        spec.points if passed_count == total else 0.0
    )
    stopped = not_run(spec, run)
    if stopped is not None and not tests:
        return stopped
    status = stopped.status if stopped else Status.GRADED
    all_passed = passed_count == total and stopped is None
    if stopped is not None:
        message = f"{run.message} {passed_count} of {total} layer tests passed before that."
    elif all_passed:
        message = f"All {total} layer tests passed."
    else:
        first = next(t for t in tests if not t.passed)
        message = (f"{passed_count} of {total} layer tests passed; "
                   f"first failure: {first.name}: {first.message}")
    return PartResult(
        name=spec.name, status=status, score=score, max_score=spec.points, passed=all_passed,
        message=message, tests=tests, detail=run.detail, runtime_s=run.runtime_s,
    )
