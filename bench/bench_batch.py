"""Batch throughput: submissions per minute of `grader batch` with --jobs 1 and --jobs 2 on the
same set of real-size good submissions (the demo's, 40+ MiB each, every copy with its own
bytes), with sandboxes pre-started (grader/warm.py, the default) and without (today's cold
path, GRADER_SANDBOX_PRESTART=0). Target: pre-started --jobs 2 at least 1.8 x the cold --jobs 2.

    .venv/bin/python bench/bench_batch.py [--count 40] [--modes cold,prestart] [--jobs 1,2]

Uses the demo's hidden data (built under $GRADER_HOME, default var/, as `grader demo` does,
if it is not there yet) and the demo's trained checkpoints under var/demo/checkpoints when
present; otherwise the reference solution's models, seeded and untrained (grading time is
inference time, so training does not change it). Each run starts from an empty results store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from grader.config import Settings, load_assignment
from grader.demo import SOLUTION_DIR, ensure_hidden_data, load_solution
from grader.sandbox.base import available_cores
from grader.share import sandbox_cpus

GRADER = Path(sys.executable).with_name("grader")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402  (a sibling script, not a package)


def checkpoints(settings: Settings, num_classes: int, folder: Path) -> dict[str, Path]:
    """The demo's good checkpoints if trained already, else freshly initialised reference models."""
    cache = settings.home / "demo" / "checkpoints"
    demo = {"model.pt": cache / "mynet-good.pt", "finetuned.pt": cache / f"finetune-good-{num_classes}.pt"}
    if all(path.is_file() for path in demo.values()):
        print(f"checkpoints: the demo's, from {cache}")
        return demo
    import torch

    print("checkpoints: reference models, seeded, untrained (run `grader demo` for trained ones)")
    torch.manual_seed(0)
    module = load_solution("pytorch_cnn")
    out = {"model.pt": folder / "model.pt", "finetuned.pt": folder / "finetuned.pt"}
    torch.save(module.MyNet().state_dict(), out["model.pt"])
    torch.save(module.FinetuneNet(num_classes=num_classes).state_dict(), out["finetuned.pt"])
    return out


def make_submissions(folder: Path, count: int, weights: dict[str, Path]) -> None:
    """``count`` good zips that differ only in a note, so each has its own SHA-256."""
    folder.mkdir(parents=True)
    for i in range(1, count + 1):
        with zipfile.ZipFile(folder / f"s{i:03d}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(SOLUTION_DIR / "numpy_nn.py", "numpy_nn.py")
            zf.write(SOLUTION_DIR / "pytorch_cnn.py", "pytorch_cnn.py")
            for name, path in weights.items():
                zf.write(path, name)
            zf.writestr("notes.txt", f"benchmark submission {i}\n")


def run_batch(source: Path, jobs: int, work: Path, mode: str) -> tuple[float, list[float]]:
    """Wall seconds of one `grader batch` run, and each submission's time in the store."""
    csv = work / f"{mode}-jobs{jobs}.csv"
    env = dict(os.environ, GRADER_SANDBOX_PRESTART="1" if mode == "prestart" else "0")
    started = time.perf_counter()
    subprocess.run([str(GRADER), "batch", str(source), "--jobs", str(jobs), "--csv", str(csv)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - started
    records = [json.loads(p.read_text())
               for p in work.glob(f"{mode}-jobs{jobs}.results/results/*/v*.json")]
    statuses = {r["result"]["status"] for r in records}
    if statuses != {"graded"}:
        sys.exit(f"--jobs {jobs}: expected every submission graded, got {sorted(statuses)}")
    return wall, [r["finished_at"] - r["started_at"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="good submissions in the set")
    parser.add_argument("--modes", default="cold,prestart", help="cold, prestart or both")
    parser.add_argument("--jobs", default="1,2", help="the --jobs values to run, comma-separated")
    args = parser.parse_args()
    job_counts = [int(j) for j in args.jobs.split(",") if j.strip()]
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"cold", "prestart"}:
        sys.exit("--modes: cold and/or prestart")
    print(machine())
    settings = Settings.from_env()
    assignment = load_assignment(settings.assignment_path)
    data = ensure_hidden_data(settings, assignment, echo=print)
    classes = len(json.loads((data / "manifest.json").read_text())["datasets"]["dogs_cats"]["classes"])
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        make_submissions(work / "in", args.count, checkpoints(settings, classes, work))
        warm = work / "warm.zip"
        warm.write_bytes((work / "in" / "s001.zip").read_bytes())
        subprocess.run([str(GRADER), "grade", str(warm)], check=True, stdout=subprocess.DEVNULL)
        mib = (work / "in" / "s001.zip").stat().st_size / 2**20
        print(f"{args.count} submissions of {mib:.1f} MiB each")
        cores = available_cores()
        results: dict[tuple[str, int], float] = {}
        for mode in modes:
            for jobs in job_counts:
                wall, each = run_batch(work / "in", jobs, work, mode)
                rate = results[mode, jobs] = args.count / (wall / 60)
                cpus = sandbox_cpus(jobs, assignment.limits.cpus, cores)
                print(f"{mode:<8} --jobs {jobs}: {wall:6.1f} s for {args.count} submissions -> "
                      f"{rate:5.2f} submissions/min  ({jobs} sandbox{'es' if jobs > 1 else ''} "
                      f"x {cpus:g} CPU, median {statistics.median(each):.1f} s per submission)")
            if {1, 2} <= set(job_counts):
                print(f"{mode:<8} ratio --jobs 2 / --jobs 1: "
                      f"{results[mode, 2] / results[mode, 1]:.2f}  ({cores} cores)")
    if len(modes) == 2:
        for jobs in job_counts:
            print(f"prestart --jobs {jobs} / cold --jobs {jobs}: "
                  f"{results['prestart', jobs] / results['cold', jobs]:.2f}"
                  + ("  (target >= 1.8)" if jobs == 2 else ""))


if __name__ == "__main__":
    main()
