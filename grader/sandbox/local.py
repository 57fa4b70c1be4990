"""The local backend: EXPLICITLY INSECURE. The job runs as a plain subprocess of this host.

Meant for a student's own pre-flight check and for debugging, never for untrusted code:
nothing is hidden, the network is open, and a process that leaves its process group
survives. Sandbox paths are not remapped by mounts, so they are translated instead:
every argv element after argv[0] (the interpreter, the same path on the host) and every
environment value that starts with a sandbox path (``/submission``, ``/inputs``,
``/opt/runner``, ``/out``, ``/tmp`` …) gets the matching host path, and
``GRADER_PATH_MAP`` holds the JSON mapping sandbox path -> host path for the runner.
Only wall time (host timer), RLIMIT_AS (memory_bytes, per process) and RLIMIT_FSIZE are
applied, plus a post-run size check of the output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from grader.config import SandboxSettings
from grader.errors import GraderFault
from grader.sandbox.base import (
    OUT_TARGET,
    Poll,
    RunOutcome,
    RunRequest,
    check_request,
    default_env,
    temp_prefix,
)
from grader.sandbox.outdir import sweep_in_place
from grader.sandbox.process import bind_poll, rlimit_setter, supervise

logger = logging.getLogger(__name__)

PATH_MAP_ENV = "GRADER_PATH_MAP"
_warned = False


def translate(value: str, path_map: dict[str, str]) -> str:
    """Replace a leading sandbox path (whole path components only) by its host path."""
    for target in sorted(path_map, key=len, reverse=True):
        if value == target or value.startswith(target + "/"):
            return path_map[target] + value[len(target):]
    return value


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "LOCAL SANDBOX BACKEND: code runs UNSANDBOXED on this host with your user's rights "
            "(files, network, environment are all reachable). Use it only for your own code; "
            "grade untrusted submissions with the bwrap backend."
        )


class LocalSandbox:
    """Runs the job directly on the host (insecure; see the module docstring)."""

    name = "local"

    def __init__(self, settings: SandboxSettings) -> None:
        self.work_dir = settings.work_dir

    def run(self, request: RunRequest, *, poll: Poll | None = None) -> RunOutcome:
        """Run the request as a host subprocess with wall time and rlimits only."""
        _warn_once()
        check_request(request)
        request.output_dir.mkdir(parents=True, exist_ok=True)
        private_tmp = Path(tempfile.mkdtemp(prefix=temp_prefix("grader-local"), dir=self.work_dir))
        try:
            return self._run(request, private_tmp, poll)
        finally:
            shutil.rmtree(private_tmp, ignore_errors=True)

    def _run(self, request: RunRequest, private_tmp: Path, poll: Poll | None) -> RunOutcome:
        limits = request.limits
        path_map = {m.target: os.fspath(m.source.resolve()) for m in request.mounts}
        path_map[OUT_TARGET] = os.fspath(request.output_dir.resolve())
        path_map["/tmp"] = os.fspath(private_tmp)
        argv = [request.argv[0], *(translate(a, path_map) for a in request.argv[1:])]
        env = {k: translate(v, path_map) for k, v in default_env(request).items()}
        cwd = translate(request.cwd, path_map)
        env["PWD"] = cwd
        env[PATH_MAP_ENV] = json.dumps(path_map)
        set_rlimits = rlimit_setter([
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_FSIZE, limits.fsize_bytes),
            (resource.RLIMIT_AS, limits.memory_bytes),
        ])
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=cwd, preexec_fn=set_rlimits, start_new_session=True,
            )
        except OSError as exc:
            raise GraderFault(f"could not start {argv[0]}: {exc}") from exc
        except subprocess.SubprocessError as exc:
            raise GraderFault(f"could not set the limits of {argv[0]}: {exc}") from exc

        def kill_group() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        watch = supervise(proc, started=started, wall_s=limits.wall_s, log_bytes=limits.log_bytes,
                          poll=bind_poll(poll, request.output_dir), kill=kill_group,
                          after_exit=kill_group)
        report = sweep_in_place(request.output_dir, limit_bytes=limits.output_bytes)
        stderr = watch.stderr.text()
        if report.dropped:
            stderr += ("\n" if stderr and not stderr.endswith("\n") else "") + report.note() + "\n"
        sig = -watch.returncode if watch.returncode < 0 else None
        return RunOutcome(
            backend=self.name,
            exit_code=watch.returncode if watch.returncode >= 0 else None,
            signal=sig,
            timed_out=watch.timed_out,
            stopped_reason=watch.stopped_reason,
            out_of_memory="MemoryError" in stderr,
            output_exceeded=report.exceeded or sig == signal.SIGXFSZ,
            pids_exceeded=False,
            stdout=watch.stdout.text(),
            stderr=stderr,
            wall_s=watch.wall_s,
            peak_memory_bytes=watch.max_rss_bytes,
            enforced={
                "wall": "host timer",
                "memory": "RLIMIT_AS (per process)",
                "file_size": "RLIMIT_FSIZE",
                "output": "post-run size check",
                "pids": "not enforced",
                "cpu": "not enforced",
                "network": "NOT isolated",
                "filesystem": "NOT isolated",
            },
        )
