"""The demo: build the demo hidden sets, make each lab's sample submissions, grade them.

Each lab's samples come from its own recipe (``demo_samples.py`` in its spec folder), made
from the instructor's reference solution: typically a good one (trained as a student
would), a mediocre one and a broken one. Trained checkpoints are cached under
``<home>/demo``; this module holds what the recipes share.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from grader.config import Assignment, Settings
from grader.errors import SpecError

log = logging.getLogger(__name__)

SOLUTION_DIR = Path(__file__).resolve().parent.parent / "hidden_tests" / "cnn" / "solution"
Echo = Callable[[str], None]


def load_solution(name: str, directory: Path = SOLUTION_DIR) -> ModuleType:
    """Import ``directory/name.py`` under a private module name (trusted instructor code)."""
    spec = importlib.util.spec_from_file_location(f"_demo_{name}", directory / f"{name}.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit(model: Any, x: Any, y: Any, *, epochs: int, batch_size: int, lr: float, echo: Echo,
         label: str) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = len(x)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        started, total = time.monotonic(), 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb = torch.from_numpy(x[idx.numpy()]).float().div_(255.0)
            out = model(xb)
            loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y[idx.numpy()]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        echo(f"    {label}: epoch {epoch + 1}/{epochs}, loss {total / n:.3f}, "
             f"{time.monotonic() - started:.0f} s")
    model.eval()


def cached(path: Path, make: Callable[[Path], None]) -> Path:
    if not path.is_file():
        tmp = path.with_suffix(".partial")
        make(tmp)
        tmp.replace(path)
    return path


def zip_files(dest: Path, files: dict[str, Path | str]) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, source in files.items():
            if isinstance(source, Path):
                zf.write(source, name)
            else:
                zf.writestr(name, source)
    return dest


SAMPLES_FILE = Path("demo") / "samples.toml"
RECIPE_FILE = "demo_samples.py"


def make_samples(settings: Settings, assignment: Assignment, *, echo: Echo) -> dict[str, Path]:
    """Build (or reuse) the assignment's demo zips; returns {name: zip path}.

    A lab declares its samples in its spec folder, either as files (``demo/samples.toml``:
    ``[samples.<name>] files = { "name in the zip" = "path in the lab's folder" }``) or, when
    they must be trained, as a recipe (``demo_samples.py``: ``make_samples(settings,
    assignment, echo=...)``, built on the helpers of this module).
    """
    declared = assignment.spec_dir / SAMPLES_FILE
    if declared.is_file():
        return _declared_samples(declared, assignment, settings.home / "demo" / assignment.name)
    recipe = assignment.spec_dir / RECIPE_FILE
    if not recipe.is_file():
        raise SpecError(f"{assignment.name} has no demo samples: add {declared} or {recipe}")
    samples: dict[str, Path] = load_solution("demo_samples", assignment.spec_dir).make_samples(
        settings, assignment, echo=echo)
    return samples


def _declared_samples(path: Path, assignment: Assignment, out: Path) -> dict[str, Path]:
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("samples", {})
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    zips = {}
    for name, sample in table.items():
        files = sample.get("files", {}) if isinstance(sample, dict) else {}
        if not files:
            raise SpecError(f"{path}: [samples.{name}] needs files = {{ \"in the zip\" = \"path\" }}")
        sources = {inside: assignment.spec_dir / source for inside, source in files.items()}
        for inside, source in sources.items():
            if not source.is_file():
                raise SpecError(f"{path}: [samples.{name}] file {inside!r}: {source} does not exist")
        zips[name] = zip_files(out / f"{name}.zip", dict(sources))
    return zips


def ensure_hidden_data(settings: Settings, assignment: Assignment, *, echo: Echo) -> Path:
    """Build the demo hidden sets unless a verified build is already there."""
    from grader.datasets.build import build_sets
    from grader.datasets.manifest import load_manifest
    from grader.datasets.provenance import Provenance
    from grader.errors import GraderFault

    target = settings.data_dir / assignment.name
    try:
        load_manifest(target)
        echo(f"hidden test data: {target} (verified)")
    except GraderFault:
        echo(f"building the hidden test data in {target}")
        build_sets(assignment.datasets, target, progress=echo)
    for dataset in load_manifest(target, verify=False).datasets.values():
        if dataset.provenance is not Provenance.PRIVATE:  # the public t10k set, synthetic dogs
            echo(f"NOTE: {dataset.name}: {dataset.note}")
    return target
