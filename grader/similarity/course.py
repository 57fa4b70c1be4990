"""What similarity reads of an assignment's submissions, from its spec: nothing hard-coded.

The parts' source modules and checkpoints (with the spec's alternative names), the starter
kit's copy of each module as boilerplate, the hidden labels of every split a part is judged
on (keyed ``"<part>/<split>"``, as ``grade(predictions=...)`` keys the predictions), and the
evidence of one zip, read through ``intake`` (the one rule of what a safe zip is). For the
command line and, later, the web app's worker alike.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from grader.config import PROJECT_ROOT, Assignment, Settings
from grader.errors import GraderFault, SubmissionInvalid
from grader.intake import intake
from grader.similarity.evidence import Evidence, Wanted, extract

TEMPLATE_DIR = PROJECT_ROOT / "student_template"


def wanted(assignment: Assignment) -> Wanted:
    """The parts' source modules and checkpoints (with their alternative names)."""
    modules = tuple(dict.fromkeys(p.module for p in assignment.parts if p.module))
    slots = {
        p.checkpoint: (p.checkpoint, *assignment.files.alternatives.get(p.checkpoint, ()))
        for p in assignment.parts
        if p.checkpoint
    }
    return Wanted(code=modules, checkpoints=slots, max_checkpoint_bytes=assignment.limits.checkpoint_bytes)


def template(assignment: Assignment, folder: Path = TEMPLATE_DIR) -> dict[str, str]:
    """The starter kit's copy of each source module (the boilerplate), where it has one."""
    return {
        name: (folder / name).read_text(encoding="utf-8")
        for name in wanted(assignment).code
        if (folder / name).is_file()
    }


def labels(settings: Settings, assignment: Assignment) -> tuple[dict[str, np.ndarray], str]:
    """The hidden labels by "<part>/<split>", or ({}, why not) when the hidden data is not here."""
    from grader.datasets.manifest import load_labels, load_manifest

    try:
        manifest = load_manifest(settings.data_dir / assignment.name)
    except GraderFault as exc:
        return {}, exc.message
    found: dict[str, np.ndarray] = {}
    for part in assignment.parts:
        dataset = manifest.datasets.get(part.dataset) if part.dataset else None
        for split_name, split in dataset.splits.items() if dataset else ():
            found[f"{part.name}/{split_name}"] = load_labels(split)
    return found, ""


def zip_evidence(
    archive: Path, assignment: Assignment, what: Wanted, scratch: Path,
    *, predictions: Mapping[str, np.ndarray] | None = None,
) -> Evidence:
    """The evidence of one submission zip: checked by intake (again), read, removed from ``scratch``;
    ``predictions`` by "<part>/<split>", as ``grade()`` gives them."""
    folder = Path(tempfile.mkdtemp(prefix="similarity-", dir=scratch))
    try:
        try:
            intake(archive, folder / "submission", assignment=assignment)
        except SubmissionInvalid as exc:
            return Evidence(notes=(f"the zip is refused: {exc.message}",))
        except OSError as exc:
            return Evidence(notes=(f"the zip cannot be read: {exc.strerror}",))
        return extract(folder / "submission", what, predictions=predictions)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
