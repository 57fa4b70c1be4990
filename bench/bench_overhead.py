"""Grader overhead: wall time of `grader grade` on the demo's good submission, divided by the
time of plain in-process inference of the same two models on the same hidden inputs (torch
already imported). Targets: the worker path (pre-started sandboxes, grader/warm.py) at most
1.10 x the warm baseline; the single CLI `grader grade` at most 1.20 x the fresh baseline.

The worker path is measured as a busy worker runs: jobs back to back in this process, each
in the sandbox pre-started while the one before it ran; the first job (its sandbox started
at the same moment) is not counted.

The baseline is what the spec names: a Python process that has imported torch, then imports
the submission's module (which imports torchvision), builds both models, loads the
checkpoints and classifies every hidden input. It runs in a fresh process each time, as the
grader's runner does. For reference the script also prints a "warm" baseline: the same work
repeated in a process that has done it once already (torchvision imported, kernels warmed),
which no grading run can have.

    .venv/bin/python bench/bench_overhead.py [--repeat 3] [--sandbox bwrap|docker]

Needs the demo's data and sample (run `.venv/bin/grader demo` once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from machine import machine  # a sibling script (bench/ is on sys.path when run)

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


def plain_fresh(zip_path: Path) -> float:
    """``plain_inference`` in a new process that has imported torch (the spec's baseline)."""
    child = subprocess.run([sys.executable, __file__, "--plain-child", str(zip_path)], check=True,
                           capture_output=True, text=True)
    return float(child.stdout.strip().splitlines()[-1])


def grader_grade(zip_path: Path, sandbox: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of `grader grade`, and the runtime of each part inside the sandbox."""
    grader = Path(sys.executable).with_name("grader")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        started = time.perf_counter()
        subprocess.run([str(grader), "grade", str(zip_path), "--json", str(out), "--sandbox", sandbox],
                       check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        parts = {p["name"]: float(p["runtime_s"]) for p in json.loads(out.read_text())["parts"]}
    return wall, parts


def worker_path(zip_path: Path, settings: Settings, repeat: int) -> tuple[float, dict[str, float]]:
    """Median wall seconds of ``grade`` in pre-started sandboxes, back to back, and per part."""
    from grader.pipeline import grade
    from grader.warm import WarmPool

    assignment = load_assignment(settings.assignment_path)
    manifest = load_manifest(settings.data_dir / assignment.name, verify=False)
    pool = WarmPool(assignment, settings, size=1)
    pool.start(manifest)
    pool.fill()  # returns once the first one is started
    walls: list[float] = []
    parts: dict[str, list[float]] = {}
    try:
        for i in range(repeat + 1):
            started = time.perf_counter()
            warm = pool.take(manifest)
            if warm is None:
                sys.exit("no pre-started sandbox was ready: see the log")
            result = grade(zip_path, assignment, settings, manifest=manifest, warm=warm)
            if result.status != "graded" or result.environment.get("sandbox_runs") != 1:
                sys.exit(f"worker path: unexpected result {result.status} {result.message}")
            if i:
                walls.append(time.perf_counter() - started)
                for part in result.parts:
                    parts.setdefault(part.name, []).append(part.runtime_s)
    finally:
        pool.close()
    return statistics.median(walls), {k: statistics.median(v) for k, v in parts.items()}


def intake_figures(zip_path: Path, settings: Settings, repeat: int) -> tuple[float, float, float]:
    """(MiB of the zip, ms per MiB to hash it, ms per MiB to check and unpack it): the only
    copy of each checkpoint the grader makes; the sandbox then sees it through a bind mount."""
    from grader.intake import intake, sha256_file

    assignment = load_assignment(settings.assignment_path)
    mib = zip_path.stat().st_size / 2**20
    hashes, unpacks = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        sha = sha256_file(zip_path)
        hashes.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            intake(zip_path, Path(tmp) / "submission", assignment=assignment, sha256=sha)
            unpacks.append(time.perf_counter() - started)
    return mib, 1000 * statistics.median(hashes) / mib, 1000 * statistics.median(unpacks) / mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zip", type=Path, help="default: <home>/demo/good.zip")
    parser.add_argument("--sandbox", default="bwrap", choices=("bwrap", "docker"))
    parser.add_argument("--plain-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = Settings.from_env()
    if args.plain_child:
        print(plain_inference(args.plain_child, settings))
        return
    zip_path = args.zip or settings.home / "demo" / "good.zip"
    if not zip_path.is_file():
        sys.exit(f"{zip_path} is missing: run `.venv/bin/grader demo` first")
    plain_inference(zip_path, settings)  # warm the page cache and torch's kernels once
    warm = statistics.median(plain_inference(zip_path, settings) for _ in range(args.repeat))
    plain = statistics.median(plain_fresh(zip_path) for _ in range(args.repeat))
    runs = [grader_grade(zip_path, args.sandbox) for _ in range(args.repeat)]
    g = statistics.median(wall for wall, _ in runs)
    import dataclasses

    worker_settings = dataclasses.replace(
        settings, sandbox=dataclasses.replace(settings.sandbox, backend=args.sandbox))
    w, w_parts = worker_path(zip_path, worker_settings, args.repeat)
    mib, hash_ms, unpack_ms = intake_figures(zip_path, settings, args.repeat)
    print(machine())
    print(f"zip {mib:.1f} MiB: hashing {hash_ms:.2f} ms/MiB, checking + unpacking (the one copy) "
          f"{unpack_ms:.2f} ms/MiB; the sandbox gets it by bind mount (no copy)")
    print(f"plain inference, torch imported : {plain:7.2f} s (median of {args.repeat}, fresh process)")
    print(f"  (warm, same process again     : {warm:7.2f} s)")
    print(f"grader grade ({args.sandbox:<6})            : {g:7.2f} s (median of {args.repeat})")
    for name in runs[0][1]:
        part = statistics.median(r[1][name] for r in runs)
        print(f"  part {name:<27}: {part:7.2f} s in the sandbox")
    inside = statistics.median(sum(r[1].values()) for r in runs)
    print(f"  outside the parts             : {g - inside:7.2f} s (intake, sandbox start, judging)")
    print(f"worker path, pre-started        : {w:7.2f} s (median of {args.repeat}, back to back)")
    for name, part in w_parts.items():
        print(f"  part {name:<27}: {part:7.2f} s in the sandbox")
    print(f"  outside the parts             : {w - sum(w_parts.values()):7.2f} s")
    print(f"worker path / warm baseline     : {w / warm:7.2f}  (target <= 1.10)")
    print(f"CLI grade / fresh baseline      : {g / plain:7.2f}  (target <= 1.20; "
          f"{g / warm:.2f} against the warm baseline)")

if __name__ == "__main__":
    main()
