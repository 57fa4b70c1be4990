"""The sandbox request that starts the runner on one submission's parts (cold or pre-started)."""

from __future__ import annotations

from pathlib import Path

from grader.config import Assignment, Settings
from grader.sandbox import Mount, RunRequest, SandboxLimits

RUNNER_DIR = Path(__file__).resolve().parent / "runner"
GO_FILE = "go"  # in the job folder: a pre-started runner waits until it appears


def threads_of(assignment: Assignment) -> int:
    """The runner's thread count: the sandbox's CPU share."""
    return max(1, int(assignment.limits.cpus))


def runner_request(
    assignment: Assignment, settings: Settings, names: list[str], *, submission: Path,
    inputs: Path, job_dir: Path, out: Path, wall_s: float, wait_max_s: float | None = None,
) -> RunRequest:
    """The runner on ``names`` with the submission, hidden inputs and job folder mounted
    read-only; with ``wait_max_s``, it prepares and waits (at most that long, then exits) for
    ``/job/go`` before reading the plan."""
    limits = assignment.limits
    argv = [
        str(settings.sandbox.python), "-I", "-B", "/opt/runner/runner/__main__.py",
        "/job/plan.json", "--submission", "/submission", "--inputs", "/inputs",
        "--job", "/job", "--out", "/out", "--parts", ",".join(names),
    ]
    if wait_max_s is not None:
        argv += ["--wait", f"/job/{GO_FILE}", "--wait-max-s", f"{wait_max_s:g}"]
    return RunRequest(
        argv=tuple(argv),
        python=Path(settings.sandbox.python),
        mounts=(
            Mount(submission, "/submission"),
            Mount(inputs, "/inputs"),
            Mount(job_dir, "/job"),
            Mount(RUNNER_DIR, "/opt/runner/runner"),
        ),
        output_dir=out,
        limits=SandboxLimits(
            wall_s=wall_s, memory_bytes=limits.memory_bytes, processes=limits.processes,
            output_bytes=limits.output_bytes, tmp_bytes=limits.tmp_bytes, cpus=limits.cpus,
            log_bytes=limits.log_bytes,
        ),
        env=sandbox_env(threads_of(assignment)),
        cwd="/tmp",
    )


def sandbox_env(threads: int) -> dict[str, str]:
    """The whole environment inside: no secrets, no proxies, offline hubs, thread counts."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "TORCH_HOME": "/tmp/torch",
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
