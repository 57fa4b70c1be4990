"""Grader overhead: wall time of `grader grade` on the demo's good submission, divided by the
time of plain in-process inference of the same two models on the same hidden inputs (torch
already imported). Target: at most 1.3.

    .venv/bin/python bench/bench_overhead.py [--repeat 3]

Needs the demo's data and sample (run `.venv/bin/grader demo` once).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from grader.config import Settings, load_assignment
from grader.datasets.manifest import load_manifest
from grader.demo import load_solution


def plain_inference(zip_path: Path, settings: Settings) -> float:
    """Seconds to build, load and run both models over every hidden input, in this process."""
    assignment = load_assignment(settings.assignment_path)
    manifest = load_manifest(settings.data_dir / assignment.name, verify=False)
    torch.set_num_threads(max(1, int(assignment.limits.cpus)))
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)  # our own trusted demo zip
        started = time.perf_counter()
        module = load_solution("pytorch_cnn", Path(tmp))
        for part in assignment.parts:
            if not part.model_class:
                continue
            model = getattr(module, part.model_class)()
            model.load_state_dict(
                torch.load(Path(tmp) / part.checkpoint, weights_only=True, map_location="cpu")
            )
            model.eval()
            for split in manifest.datasets[part.dataset].splits.values():
                data = np.load(split.inputs, mmap_mode="r")
                with torch.no_grad():
                    for i in range(0, len(data), part.batch_size):
                        x = torch.from_numpy(np.array(data[i : i + part.batch_size]))
                        module.classify(model, x.float().div_(255.0))
        return time.perf_counter() - started


def grader_grade(zip_path: Path) -> float:
    grader = Path(sys.executable).with_name("grader")
    started = time.perf_counter()
    subprocess.run([str(grader), "grade", str(zip_path)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zip", type=Path, help="default: <home>/demo/good.zip")
    args = parser.parse_args()
    settings = Settings.from_env()
    zip_path = args.zip or settings.home / "demo" / "good.zip"
    if not zip_path.is_file():
        sys.exit(f"{zip_path} is missing: run `.venv/bin/grader demo` first")
    plain_inference(zip_path, settings)  # warm the page cache and torch's kernels once
    plain = [plain_inference(zip_path, settings) for _ in range(args.repeat)]
    graded = [grader_grade(zip_path) for _ in range(args.repeat)]
    p, g = statistics.median(plain), statistics.median(graded)
    print(f"plain in-process inference : {p:7.2f} s (median of {args.repeat})")
    print(f"grader grade (bwrap)       : {g:7.2f} s (median of {args.repeat})")
    print(f"overhead ratio             : {g / p:7.2f}  (target <= 1.30)")


if __name__ == "__main__":
    main()
