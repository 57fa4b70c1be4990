"""The sandbox protocol: what a run asks for (RunRequest) and what it reports (RunOutcome).

Every backend (``bwrap``, ``docker``, ``local``) takes the same request: an argv
whose paths are the paths *inside* the sandbox, the host interpreter to make
available, read-only mounts, one writable output folder (``/out`` inside) and the
limits. A student's failure (crash, time-out, memory, output flood) comes back in the
outcome; only our own infrastructure problems raise ``GraderFault``.
"""

from __future__ import annotations

import functools
import os
import posixpath
import pwd
import stat
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from grader.errors import GraderFault

OUT_TARGET = "/out"
SANDBOX_UID = 65534  # the job's uid and gid ("nobody") as the job sees them (bwrap)
SANDBOX_USER = "grader-sandbox"  # the host user a root grader runs every job as
SANDBOX_USER_FIX = "run scripts/sandbox-user.sh"
# Sandbox paths a Mount may not cover: the system, /proc, /dev, the private /tmp, /out.
RESERVED_TARGETS = (
    "/proc", "/dev", "/tmp", "/etc", "/usr", "/bin", "/sbin",
    "/lib", "/lib32", "/lib64", "/libx32", OUT_TARGET,
)
POLL_INTERVAL_S = 0.1

# Called about every POLL_INTERVAL_S with the host folder where /out can be read while the job
# runs; a returned string stops the job with that reason.
Poll = Callable[[Path], str | None]


@dataclass(frozen=True)
class Mount:
    """A host folder or file made visible inside the sandbox at ``target``."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run; sizes in bytes, times in seconds."""

    wall_s: float
    memory_bytes: int
    processes: int
    output_bytes: int
    tmp_bytes: int
    cpus: float = 1.0
    log_bytes: int = 65536
    file_bytes: int | None = None  # RLIMIT_FSIZE; None means output_bytes

    @property
    def fsize_bytes(self) -> int:
        """The largest single file the job may write (RLIMIT_FSIZE)."""
        return self.output_bytes if self.file_bytes is None else self.file_bytes


@dataclass(frozen=True)
class RunRequest:
    """One job: argv (paths as seen inside), interpreter, mounts, /out, limits, environment."""

    argv: tuple[str, ...]
    python: Path
    mounts: tuple[Mount, ...]
    output_dir: Path
    limits: SandboxLimits
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/tmp"
    # A pre-started run (grader/warm.py) waits in the background: until this is set it only
    # gets CPU that running jobs leave idle, so preparing the next job does not slow this one.
    idle_until: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RunOutcome:
    """What happened; student failures are reported here, never raised."""

    backend: str
    exit_code: int | None
    signal: int | None
    timed_out: bool
    stopped_reason: str
    out_of_memory: bool
    output_exceeded: bool
    pids_exceeded: bool
    stdout: str
    stderr: str
    wall_s: float
    peak_memory_bytes: int | None
    enforced: Mapping[str, str]


class Sandbox(Protocol):
    """A backend that runs one request in a fresh sandbox."""

    name: str

    def run(self, request: RunRequest, *, poll: Poll | None = None) -> RunOutcome:
        """Run the request; ``poll`` is called about every 0.1 s and may stop the job."""
        ...


def default_env(request: RunRequest) -> dict[str, str]:
    """The complete environment inside: sane defaults overridden by ``request.env``."""
    python_bin = posixpath.dirname(request.argv[0]) if request.argv else ""
    path = ":".join(p for p in (python_bin, "/usr/local/bin", "/usr/bin", "/bin") if p)
    env = {"PATH": path, "HOME": "/tmp", "LANG": "C.UTF-8", "PWD": request.cwd}
    env.update(request.env)
    return env


def is_under(path: str, root: str) -> bool:
    """``path`` is ``root`` or inside it (whole path components)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_request(request: RunRequest) -> None:
    """Refuse a malformed request (our bug, so ``GraderFault``) before anything is started."""
    if not request.argv or not all(isinstance(a, str) for a in request.argv):
        raise GraderFault("sandbox request has an empty or non-text argv",
                          detail=repr(request.argv))
    limits = request.limits
    for name in ("wall_s", "memory_bytes", "processes", "output_bytes", "tmp_bytes", "cpus",
                 "log_bytes"):
        value = getattr(limits, name)
        if not value > 0:
            raise GraderFault(f"sandbox limit {name} must be positive, got {value!r}")
    if limits.fsize_bytes <= 0:
        raise GraderFault(f"sandbox limit file_bytes must be positive, got {limits.file_bytes!r}")
    if not posixpath.isabs(request.cwd):
        raise GraderFault(f"sandbox cwd must be an absolute path, got {request.cwd!r}")
    for key, value in request.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise GraderFault(f"sandbox environment entry {key!r} is not valid")
    seen: set[str] = set()
    for mount in request.mounts:
        target = mount.target
        if not posixpath.isabs(target) or posixpath.normpath(target) != target or target == "/":
            raise GraderFault(f"mount target {target!r} must be a normalised absolute path, not /")
        if any(is_under(target, r) for r in RESERVED_TARGETS):
            raise GraderFault(f"mount target {target!r} would cover a reserved sandbox path")
        if target in seen:
            raise GraderFault(f"mount target {target!r} is given twice")
        seen.add(target)
        if not mount.source.exists():
            raise GraderFault(f"mount source {mount.source} does not exist")
    if request.output_dir.is_symlink() or (
        request.output_dir.exists() and not request.output_dir.is_dir()
    ):
        raise GraderFault(f"output_dir {request.output_dir} is not a folder")


def refuse_writable_mounts(request: RunRequest, backend: str) -> None:
    """Isolating backends let the job write to /out only."""
    if any(m.writable for m in request.mounts):
        raise GraderFault(f"the {backend} backend has no writable extra mounts; the job writes to "
                          "output_dir, seen as /out")


@functools.cache
def python_prefixes(python: str) -> tuple[str, ...]:
    """``sys.prefix`` and ``sys.base_prefix`` of an interpreter (asked once per interpreter)."""
    code = "import sys; print(sys.prefix); print(sys.base_prefix)"
    try:
        done = subprocess.run([python, "-I", "-c", code], env={}, capture_output=True,
                              text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GraderFault(f"the sandbox interpreter {python} does not run",
                          detail=str(exc)) from exc
    return tuple(dict.fromkeys(line for line in done.stdout.splitlines() if line.startswith("/")))


def sandbox_host_ids() -> tuple[int, int]:
    """The host uid:gid every sandboxed job runs as; never 0.

    A grader running as root runs jobs as the system user ``grader-sandbox`` (made by
    scripts/sandbox-user.sh): as host root, a job could chmod or chown the host files it sees
    (the device nodes bound into /dev). A grader that is not root runs them as itself.
    """
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        raise GraderFault(f"the sandbox user {SANDBOX_USER} does not exist; "
                          f"{SANDBOX_USER_FIX}") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise GraderFault(f"the sandbox user {SANDBOX_USER} must not be uid or gid 0")
    return entry.pw_uid, entry.pw_gid


def _allowed(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """``bits`` (r=4, w=2, x=1) granted to uid:gid (no supplementary groups) by the mode."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return (st.st_mode >> 6) & bits == bits
    if st.st_gid == gid:
        return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits


def readable_by(path: str, uid: int, gid: int) -> bool:
    """``path`` itself can be read (and a folder entered) by uid:gid."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _allowed(st, uid, gid, 5 if stat.S_ISDIR(st.st_mode) else 4)


def reachable_by(path: str, uid: int, gid: int) -> bool:
    """uid:gid can reach ``path`` (enter every folder on the way) and read it."""
    current = "/"
    for part in Path(os.path.abspath(path)).parts[1:-1]:
        current = os.path.join(current, part)
        try:
            if not _allowed(os.stat(current), uid, gid, 1):
                return False
        except OSError:
            return False
    return readable_by(path, uid, gid)


def check_readable(source: str, ids: tuple[int, int]) -> None:
    """GraderFault unless the sandbox user ``ids`` may read the mount source ``source`` itself
    (the folders above it are the backend's business: docker creates them, bwrap uses views)."""
    if not os.path.exists(source):
        raise GraderFault(f"mount source {source} does not exist")
    if not readable_by(source, *ids):
        mode = stat.S_IMODE(os.stat(source).st_mode)
        raise GraderFault(f"mount source {source} is not readable by the sandbox user (uid "
                          f"{ids[0]}, mode {mode:04o}); make it world-readable (chmod o+rX)")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_quota(cpus: float) -> float | None:
    """The CPU quota to set, or None when it would cover every core this process may use.

    A quota as large as the machine limits nothing, yet the kernel's per-period accounting
    still throttles bursty multi-threaded code: a 2-thread convolution ran 1.6-2.2x slower
    under a 2-CPU quota on 2 cores (bench/bench_overhead.py). Below the core count (e.g.
    ``grader batch --jobs 2``) the quota is what shares the cores fairly, so it stays.
    """
    return None if cpus >= available_cores() else cpus


def cpu_unlimited_note() -> str:
    return f"not limited: all {available_cores()} cores (a quota would only throttle)"


# --------------------------------------------------------------------------- temporary paths

# What the grader makes in its work folder; see grader/leftovers.py for why names carry owners.
TEMP_KINDS = ("grade", "grader-run", "grader-etc", "grader-local", "grader-view", "archive")


def pid_namespace() -> str:
    """This process's pid namespace (its inode number), "0" where /proc does not tell."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists in our pid namespace (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_prefix(kind: str) -> str:
    """The name prefix of a temporary path of ``kind`` made by this process:
    ``<kind>-<pid namespace>.<pid>-``, so a later process can tell that its owner is gone."""
    if kind not in TEMP_KINDS:
        raise ValueError(f"unknown kind of temporary path: {kind}")
    return f"{kind}-{pid_namespace()}.{os.getpid()}-"
