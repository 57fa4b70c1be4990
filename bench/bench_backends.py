"""Per-submission overhead of the Docker sandbox backend next to the bubblewrap one.

Two figures per backend, each the median of ``--repeat`` runs:

* an empty job (``python -c pass`` with the grader's limits): what a sandbox costs to
  start, run and tear down, with no student work at all;
* `grader grade` of the demo's good submission: the whole pipeline on each backend.

    .venv/bin/python bench/bench_backends.py [--repeat 5]

Needs the demo's data and sample (`.venv/bin/grader demo --no-serve` once) and, for Docker,
an engine and the runner image (`scripts/setup-docker.sh`); a backend that cannot run here
is reported as such instead of measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.config import Settings, load_assignment
from grader.errors import GraderFault
from grader.sandbox import Mount, RunRequest, SandboxLimits, get_sandbox

GRADER = Path(sys.executable).with_name("grader")


def empty_job(settings: Settings, backend: str, repeat: int) -> float:
    """Median seconds of a sandbox run that does nothing."""
    sandbox_settings = dataclasses.replace(settings.sandbox, backend=backend)
    sandbox = get_sandbox(sandbox_settings)
    limits = load_assignment(settings.assignment_path).limits
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        submission = Path(tmp) / "submission"
        submission.mkdir()
        for i in range(repeat + 1):  # the first run warms caches and is not counted
            request = RunRequest(
                argv=(str(sandbox_settings.python), "-I", "-c", "pass"),
                python=Path(sandbox_settings.python),
                mounts=(Mount(submission, "/submission"),),
                output_dir=Path(tmp) / f"out-{i}",
                limits=SandboxLimits(wall_s=60, memory_bytes=limits.memory_bytes,
                                     processes=limits.processes, output_bytes=limits.output_bytes,
                                     tmp_bytes=limits.tmp_bytes, cpus=limits.cpus),
                env={},
            )
            started = time.perf_counter()
            outcome = sandbox.run(request)
            if outcome.exit_code != 0:
                raise GraderFault(f"the empty job failed on {backend}: {outcome.stderr[-500:]}")
            if i:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def full_grade(zip_path: Path, backend: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([str(GRADER), "grade", str(zip_path), "--sandbox", backend], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--grade-repeat", type=int, default=3)
    parser.add_argument("--zip", type=Path, help="default: <home>/demo/good.zip")
    args = parser.parse_args()
    settings = Settings.from_env()
    zip_path = args.zip or settings.home / "demo" / "good.zip"
    if not zip_path.is_file():
        sys.exit(f"{zip_path} is missing: run `.venv/bin/grader demo --no-serve` first")
    results: dict[str, tuple[float, float] | str] = {}
    for backend in ("bwrap", "docker"):
        try:
            results[backend] = (empty_job(settings, backend, args.repeat),
                                full_grade(zip_path, backend, args.grade_repeat))
        except (GraderFault, subprocess.CalledProcessError) as exc:
            results[backend] = f"cannot run here: {getattr(exc, 'message', exc)}"
    print(f"{'backend':<8} {'empty job':>10} {'grade good.zip':>15}")
    for backend, figures in results.items():
        if isinstance(figures, str):
            print(f"{backend:<8} {figures}")
        else:
            print(f"{backend:<8} {figures[0]:9.2f}s {figures[1]:14.2f}s")
    bwrap, docker = results["bwrap"], results["docker"]
    if not isinstance(bwrap, str) and not isinstance(docker, str):
        print(f"docker costs {docker[0] - bwrap[0]:+.2f} s per sandbox start and "
              f"{docker[1] - bwrap[1]:+.2f} s per graded submission "
              f"({docker[1] / bwrap[1]:.2f}x the bwrap time)")


if __name__ == "__main__":
    main()
