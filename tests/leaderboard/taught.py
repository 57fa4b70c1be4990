"""A real result for the result page's tests: the real judges on the real built hidden data,
with the sandbox's outputs written as the runner writes them (no sandbox run needed).

The layers part has one method broken (it raises), so later checks of its cases are "not run
because …" and the combined checks fail; each classifier part predicts every class right
except some images of class 1, and more of them wrong on each later split (so the gap
between splits reads "loses … on <split>").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from grader.config import Assignment, Settings
from grader.datasets.manifest import Manifest, load_manifest
from grader.judge import combine
from grader.parts import JobContext, PartRun, judge_part
from grader.parts.layers import load_cases
from grader.result import GradeResult, Status

BROKEN = "Linear.forward"
MISALIGNED = "ValueError: shapes (2,3) and (2,2) not aligned"


def layer_outputs(out: Path, cases: list, broken: str = BROKEN) -> None:
    """What the runner writes for ``cases`` when ``broken`` raises: its checks and the rest
    of their case fail ("not run because …"), as do the combined checks that use its class."""
    out.mkdir(parents=True, exist_ok=True)
    layer = broken.split(".")[0]
    for case in cases:
        arrays: dict[str, np.ndarray] = {}
        errors: dict[str, str] = {}
        stopped = ""
        for check in case.checks:
            if stopped:
                errors[check.key] = f"not run because {stopped} failed"
            elif check.method == broken or layer in check.requires:
                errors[check.key] = f"{check.method or 'training'} raised {MISALIGNED}"
                stopped = check.method or "training"
            else:
                arrays[check.key] = np.asarray(check.expected)
        np.savez(out / f"{case.id}.npz", **arrays)
        (out / f"{case.id}.json").write_text(json.dumps({"errors": errors}), encoding="utf-8")


def predictions_for(labels: np.ndarray, num_classes: int, wrong_every: int) -> np.ndarray:
    """Right, except every ``wrong_every``-th image of class 1 (predicted as class 0)."""
    got = labels.astype(np.int64).copy()
    ones = np.flatnonzero(labels == 1)
    got[ones[::wrong_every]] = 0 if num_classes > 1 else 1
    return got


def taught_result(spec: Assignment, settings: Settings, work: Path) -> tuple[GradeResult, Manifest]:
    """A whole result from the real judges on ``settings``' built hidden data."""
    manifest = load_manifest(settings.data_dir / spec.name)
    job_dir = work / "job"
    job_dir.mkdir(parents=True)
    job = JobContext(spec, manifest, job_dir, lambda name: name)
    parts = []
    for part in spec.parts:
        out = work / "out" / part.name
        out.mkdir(parents=True)
        if part.kind == "layers":
            cases = load_cases(part, spec.spec_dir, spec.seed)
            job.state[part.name] = cases
            layer_outputs(out, cases)
        else:
            dataset = manifest.datasets[part.dataset]
            for k, (name, split) in enumerate(dataset.splits.items()):
                labels = np.load(split.labels, allow_pickle=False)
                got = predictions_for(labels, len(dataset.classes), wrong_every=max(1, 3 - k))
                np.save(out / f"{name}.npy", got, allow_pickle=False)
        parts.append(judge_part(part, PartRun(part.name, Status.GRADED, runtime_s=3.2, out_dir=out), job))
    environment = {"data": {name: str(ds.provenance) for name, ds in manifest.datasets.items()}}
    return combine(spec, parts, submission_sha256="0" * 64, environment=environment), manifest
