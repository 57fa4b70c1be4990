"""The docker backend: one fresh container per run (``docker run --rm``), limited by the engine.

The runner image (``docker/``, built by ``scripts/setup-docker.sh``) is a minimal Debian
userland laid out like the bwrap sandbox: /usr, the /bin, /lib… links and a made-up /etc.
The grader's interpreter prefixes (venv and base interpreter) and the request's mounts are
bound read-only at their own paths, unless the image provides the interpreter itself (label
``org.cnn-grader.python``). ``/out`` is the same host tmpfs as in the bwrap backend, so
``poll`` reads it live and a flood ends in ENOSPC inside.

The job runs as the host uid:gid of the ``grader-sandbox`` system user
(``base.sandbox_host_ids``; the grader's own when it is not root), never 0, with
``--network none`` (loopback only), ``--read-only``, ``--cap-drop ALL``, ``no-new-privileges``,
``--pids-limit``, ``--memory`` = ``--memory-swap``, ``--cpus``, size-limited tmpfs /tmp and
/dev/shm, rlimits (fsize, nofile, core) and docker-init as pid 1, so everything it started dies
with it; no log driver, so an output flood never reaches the engine's disk. The engine makes
the container's own /dev nodes, and the image is a bare Debian userland with no data of the
host (no /usr/share/datasets). The wall clock is the host's: ``docker kill`` ends the
container. The container is removed by ``--rm``, or by ``docker rm --force`` on every other
path; containers are named ``grader-run-<pid>-…`` and labelled, so those of a grader process
that died are found and removed when the next sandbox is made.

Differences from bwrap: an OOM kill is learnt from the engine's ``oom`` event. The engine
removes a container's cgroup together with it, so with the ``cgroupfs`` driver each container
gets a parent cgroup named by us (``--cgroup-parent``, see ``cgroups.EngineParent``) whose
counters outlive it: peak memory, and on cgroup v1 a process peak at the limit as a hit of
it. With the ``systemd`` driver neither is reported (``peak_memory_bytes`` None,
``pids_exceeded`` False). The engine, the grader and every mounted path must be on the same
machine and file system view.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from grader.config import SandboxSettings
from grader.errors import GraderFault
from grader.sandbox.base import (
    OUT_TARGET,
    RESERVED_TARGETS,
    SANDBOX_USER,
    Poll,
    RunOutcome,
    RunRequest,
    check_readable,
    check_request,
    cpu_quota,
    cpu_unlimited_note,
    default_env,
    is_under,
    process_alive,
    python_prefixes,
    refuse_writable_mounts,
    sandbox_host_ids,
)
from grader.sandbox.cgroups import (
    CgroupStats,
    EngineParent,
    engine_parents_usable,
    run_name,
    sweep_engine_parents,
)
from grader.sandbox.outdir import PAGE, OutputFolder
from grader.sandbox.process import bind_poll, exit_status, run_outcome, supervise

logger = logging.getLogger(__name__)

NAME_PREFIX = "grader-"  # + cgroups.run_name(): grader-run-<pid>-<n>-<hex>
RUN_LABEL = "org.cnn-grader.sandbox"
HOST_LABEL = "org.cnn-grader.host"
PYTHON_LABEL = "org.cnn-grader.python"
OPEN_FILES = 1024
CLI_TIMEOUT_S = 60.0
REMOVE_RETRY_S = (1.0, 3.0, 0.0)  # pauses after refused `docker rm --force` attempts (three tries)
SETUP_HINT = "run scripts/setup-docker.sh"
# Where an interpreter cannot be bound from the host: the image's own system and the
# engine's /proc, /dev and /out (a prefix under /tmp is fine: it is bound onto the tmpfs).
IMAGE_OWNED = tuple(t for t in RESERVED_TARGETS if t != "/tmp")
# The container's command: enter the request's cwd, write STARTED to stdout (so that a set-up
# failure is told apart from the job's own exit code: the job cannot write before it, and the
# docker CLI writes its own warnings to stderr), then exec ``env -i`` with exactly the
# request's environment (the engine would add HOSTNAME and more).
STARTED = "\x1egrader: sandbox started\x1e"
ENTRY = 'cd -- "$1" || exit 127; printf %s "$2"; shift 2; exec "$@"'

_swept: set[str] = set()  # engines (DOCKER_HOST) already swept for leftovers by this process


def find_docker() -> str:
    """The docker CLI, or GraderFault saying how to install it."""
    found = shutil.which("docker")
    if not found:
        raise GraderFault(f"the docker CLI is not installed; {SETUP_HINT}")
    return found


def _cli_env() -> dict[str, str]:
    """The docker CLI's environment: where the engine is, nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}
    env["PATH"] = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no answer"


def _bind(source: str, target: str, *, writable: bool = False) -> str:
    """A ``--mount`` value, CSV-quoted as the docker CLI parses it, so any path is safe."""
    fields = ["type=bind", f"source={source}", f"target={target}"]
    if not writable:
        fields.append("readonly")
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    return line.getvalue()


def _owner_pid(name: str) -> int | None:
    """The grader pid in a container name ``grader-run-<pid>-…``."""
    parts = name.split("-")
    if len(parts) > 3 and parts[0] == "grader" and parts[1] == "run" and parts[2].isdigit():
        return int(parts[2])
    return None


class DockerSandbox:
    """Runs each request in a fresh container; see the module docstring for what it enforces."""

    name = "docker"

    def __init__(self, settings: SandboxSettings) -> None:
        self.docker = find_docker()
        self.image = settings.docker_image
        self.work_dir = settings.work_dir
        self.can_mount = os.geteuid() == 0
        self.ids = sandbox_host_ids()  # the container's uid:gid; GraderFault if the user is missing
        self.host = socket.gethostname()
        server = self.cli("version", "--format", "{{.Server.Version}}")
        if server.returncode != 0 or not server.stdout.strip():
            raise GraderFault(f"docker engine not reachable: {_last_line(server.stderr)}; {SETUP_HINT}",
                              detail=server.stderr)
        self.engine = f"docker {server.stdout.strip()}"
        found = self.cli("image", "inspect", "--format", "{{json .Config.Labels}}", self.image)
        if found.returncode != 0:
            raise GraderFault(f"runner image {self.image} not found; {SETUP_HINT}",
                              detail=found.stderr)
        try:
            labels = json.loads(found.stdout) or {}
        except ValueError:
            labels = {}
        self.image_python = str(labels.get(PYTHON_LABEL) or "")
        info = self.cli("info", "--format", "{{.CgroupDriver}} {{.CgroupVersion}}")
        driver, _, version = info.stdout.strip().partition(" ")
        # The version whose parent cgroups we name, read and remove (as root, since the runtime
        # makes them as root, in the host's hierarchies); "" when we cannot: systemd driver, not
        # root, or the hierarchies are not ours to see whole (a grader inside a container).
        usable = (info.returncode == 0 and driver == "cgroupfs" and os.geteuid() == 0
                  and engine_parents_usable(version))
        self.cgroup_version = version if usable else ""
        engine = os.environ.get("DOCKER_HOST", "")
        if engine not in _swept:
            _swept.add(engine)
            self.remove_leftovers()

    def cli(self, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run one docker command and capture its output; GraderFault if it does not answer."""
        try:
            return subprocess.run([self.docker, *args], env=_cli_env(), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise GraderFault(f"docker engine not answering: `docker {args[0]}` took over "
                              f"{timeout_s:g} s") from exc
        except OSError as exc:
            raise GraderFault(f"could not run the docker CLI {self.docker}: {exc}") from exc

    def remove_leftovers(self) -> list[str]:
        """Remove the containers of grader processes on this host that no longer exist."""
        listed = self.cli("ps", "--all", "--filter", f"label={RUN_LABEL}", "--format",
                          f'{{{{.Names}}}}\t{{{{.Label "{HOST_LABEL}"}}}}')
        stale = []
        for line in listed.stdout.splitlines():
            name, _, host = line.partition("\t")
            pid = _owner_pid(name)
            if host == self.host and pid is not None and not process_alive(pid):
                stale.append(name)
        if stale:
            logger.warning("removing %d container(s) left by grader processes that died: %s",
                           len(stale), ", ".join(stale))
            self.cli("rm", "--force", *stale)
        sweep_engine_parents()
        return stale

    def interpreter_mounts(self, python: Path) -> tuple[str, ...]:
        """Host folders bound at their own paths so ``python`` runs inside; none if the image has it."""
        if self.image_python and os.fspath(python) == self.image_python:
            return ()
        prefixes = python_prefixes(os.fspath(python))
        for prefix in prefixes:
            if prefix == "/" or any(is_under(prefix, r) for r in IMAGE_OWNED):
                raise GraderFault(
                    f"the sandbox interpreter {python} lives in {prefix}, which the runner image "
                    "replaces; use a venv or pyenv interpreter outside /usr, or bake it into the "
                    "image (docker/README.md)")
        return prefixes

    def run(self, request: RunRequest, *, poll: Poll | None = None) -> RunOutcome:
        """Run one request in a fresh container; student failures come back in the outcome."""
        check_request(request)
        refuse_writable_mounts(request, self.name)
        if "=" in request.argv[0]:
            raise GraderFault(f"the docker backend cannot run a program named {request.argv[0]!r}")
        interpreter = self.interpreter_mounts(request.python)
        for source in (*interpreter, *(os.fspath(m.source) for m in request.mounts)):
            check_readable(source, self.ids)
        job = _Job(self, request, interpreter)
        try:
            return job.run(poll)
        finally:
            job.cleanup()


class _Job:
    """The state of one run, so every exit path cleans up the same way."""

    def __init__(self, sandbox: DockerSandbox, request: RunRequest,
                 interpreter: tuple[str, ...]) -> None:
        self.sandbox = sandbox
        self.request = request
        self.interpreter = interpreter
        self.limits = request.limits
        name = run_name()
        self.container = NAME_PREFIX + name
        self.cgroup = EngineParent(name, sandbox.cgroup_version) if sandbox.cgroup_version else None
        self.out = OutputFolder(request.output_dir, work_dir=sandbox.work_dir,
                                limit_bytes=self.limits.output_bytes, can_mount=sandbox.can_mount,
                                owner=sandbox.ids)
        self.proc: subprocess.Popen[bytes] | None = None
        self.removed = False
        self.cpus = cpu_quota(self.limits.cpus)  # None: the whole machine (the engine refuses more)
        self.enforced: dict[str, str] = {
            "wall": "host timer (docker kill)",
            "network": "docker --network none (loopback only)",
            "filesystem": "docker --read-only image root, read-only binds",
            "user": (f"host uid {sandbox.ids[0]}"
                     f"{' (' + SANDBOX_USER + ')' if os.geteuid() == 0 else ''}, "
                     "docker --cap-drop ALL, no-new-privileges, the engine's own /dev"),
            "memory": "docker --memory",
            "swap": "docker --memory-swap = --memory",
            "pids": "docker --pids-limit",
            "cpu": f"docker --cpus {self.cpus:g}" if self.cpus is not None else cpu_unlimited_note(),
            "kill": "docker kill (docker-init is pid 1)",
            "engine": sandbox.engine,
            "tmp": "tmpfs size",
            "file_size": "ulimit fsize",
            "open_files": "ulimit nofile",
        }

    # ------------------------------------------------------------------ set-up

    def _argv(self, out_source: Path) -> list[str]:
        request, limits = self.request, self.limits
        tmp_size = str(max(PAGE, limits.tmp_bytes))
        fsize = str(limits.fsize_bytes)
        args = [
            self.sandbox.docker, "run", "--rm", "--name", self.container,
            "--label", f"{RUN_LABEL}=run", "--label", f"{HOST_LABEL}={self.sandbox.host}",
            "--pull", "never", "--init", "--sig-proxy=false", "--log-driver", "none",
            "--network", "none", "--hostname", "sandbox", "--ipc", "private",
            "--read-only", "--user", f"{self.sandbox.ids[0]}:{self.sandbox.ids[1]}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", str(limits.memory_bytes), "--memory-swap", str(limits.memory_bytes),
            "--pids-limit", str(limits.processes),
            *(("--cgroup-parent", self.cgroup.path) if self.cgroup is not None else ()),
            *(("--cpus", f"{self.cpus:g}") if self.cpus is not None else ()),
            "--ulimit", "core=0:0", "--ulimit", f"fsize={fsize}:{fsize}",
            "--ulimit", f"nofile={OPEN_FILES}:{OPEN_FILES}",
            "--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={tmp_size},mode=1777",
            "--shm-size", tmp_size,
        ]
        for prefix in self.interpreter:
            args += ["--mount", _bind(prefix, prefix)]
        for mount in request.mounts:
            args += ["--mount", _bind(os.path.abspath(mount.source), mount.target)]
        args += ["--mount", _bind(os.fspath(out_source), OUT_TARGET, writable=True)]
        env = [f"{key}={value}" for key, value in default_env(request).items()]
        args += ["--workdir", "/", "--entrypoint", "/bin/sh", self.sandbox.image,
                 "-c", ENTRY, "grader-sandbox", request.cwd, STARTED,
                 "/usr/bin/env", "-i", "--", *env]
        return args + list(request.argv)

    # ------------------------------------------------------------------ the run

    def _kill(self) -> None:
        """End the job at once: kill the container, or the client if there is none yet."""
        with contextlib.suppress(GraderFault):
            if self.sandbox.cli("kill", self.container).returncode == 0:
                return
        # Not running (yet): end the client; whatever it created is removed afterwards.
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)  # not reaped yet, so the pid is ours

    def run(self, poll: Poll | None) -> RunOutcome:
        out_source = self.out.prepare()
        self.enforced["output"] = self.out.enforced
        if self.out.mounted is None:
            out_source.chmod(0o777)  # the job's uid is a real host uid here, not ours mapped
        argv = self._argv(out_source)
        since = time.time() - 1
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=_cli_env(), cwd="/", start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GraderFault(f"could not start the docker CLI: {exc}") from exc
        watch = supervise(self.proc, started=started, wall_s=self.limits.wall_s,
                          log_bytes=self.limits.log_bytes, poll=bind_poll(poll, out_source),
                          kill=self._kill, after_exit=lambda: None,
                          stdout_prefix=STARTED.encode())
        events = self._events(since)
        self.removed = "destroy" in events
        if not self.removed:  # the client was killed or lost the engine: the container may live
            self._remove()
        stats = self._cgroup_stats()
        report = self.out.collect()
        stderr = watch.stderr.text()
        died = events.get("die", "")
        exit_code, sig = exit_status(int(died) if died.isdigit() else watch.returncode)
        out_of_memory = "oom" in events
        if not watch.timed_out and not out_of_memory and not watch.stdout.prefix_seen:
            if "No such image" in stderr:
                raise GraderFault(f"runner image {self.sandbox.image} not found; {SETUP_HINT}",
                                  detail=stderr)
            raise GraderFault("docker could not set up the sandbox", detail=stderr)
        return run_outcome(
            self.sandbox.name, watch, report, exit_code=exit_code, sig=sig, stderr=stderr,
            out_of_memory=out_of_memory,
            pids_exceeded=stats is not None and stats.pids_limit_hits > 0,
            peak_memory_bytes=stats.peak_memory_bytes if stats is not None else None,
            enforced=self.enforced,
        )

    def _events(self, since: float) -> dict[str, str]:
        """This container's die / oom / destroy events: action -> exit code ("" if none)."""
        try:
            done = self.sandbox.cli(
                "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                "--filter", f"container={self.container}", "--filter", "event=die",
                "--filter", "event=oom", "--filter", "event=destroy",
                "--format", '{{.Action}} {{index .Actor.Attributes "exitCode"}}',
            )
        except GraderFault:
            logger.exception("cannot read the engine's events of %s", self.container)
            return {}
        if done.returncode != 0:
            logger.warning("cannot read the engine's events of %s: %s", self.container,
                           _last_line(done.stderr))
            return {}
        events: dict[str, str] = {}
        for line in done.stdout.splitlines():
            action, _, value = line.partition(" ")
            events[action] = value.strip()
        return events

    def _cgroup_stats(self) -> CgroupStats | None:
        """Read the container's parent cgroup (the container is gone by now), then remove it."""
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is None:
            return None
        stats = cgroup.stats(self.limits.processes)
        if not cgroup.remove():
            logger.warning("cannot remove the parent cgroup %s of %s", cgroup.path, self.container)
        return stats

    def _remove(self) -> None:
        """``docker rm --force``, again after a pause when the engine refuses: a busy engine
        answers "removal already in progress" or "did not receive an exit event" for a
        container it is still killing, which is no fault of the grader's yet."""
        errors = []
        for pause_s in REMOVE_RETRY_S:
            done = self.sandbox.cli("rm", "--force", self.container)
            if done.returncode == 0 or "No such container" in done.stderr:
                self.removed = True
                return
            errors.append(done.stderr.strip())
            time.sleep(pause_s)
        raise GraderFault(f"cannot remove the sandbox container {self.container}",
                          detail="\n".join(errors))

    # ------------------------------------------------------------------ tidy-up

    def cleanup(self) -> None:
        """Kill what is left, remove the container, unmount /out, remove the run folder."""
        if self.proc is not None and self.proc.returncode is None:
            self._kill()
            self.proc.wait()
        if self.proc is not None and not self.removed:
            try:
                self._remove()
            except GraderFault:
                logger.exception("sandbox cleanup")
        if self.cgroup is not None and self.removed:
            self._cgroup_stats()
        self.out.release()
