"""The bubblewrap backend: one fresh sandbox per run, limited by cgroups, rlimits and tmpfs sizes.

Inside the job sees only a minimal runtime (``runtime.py``: the interpreter, its standard
library, the venv's site-packages and the shared libraries they load, each at its own path;
no wholesale /usr, nothing of /usr/share, /usr/local/etc or the project tree), a made-up
minimal /etc, the request's read-only mounts, a private /proc (read-only) and /dev,
size-limited tmpfs /tmp and /dev/shm, and /out. It runs as uid 65534 in fresh user, pid,
network (loopback only), ipc, uts and cgroup namespaces with no capabilities, no_new_privs and
no way to create further user namespaces.

A grader running as root starts bwrap as the system user ``grader-sandbox``
(``base.sandbox_host_ids``), so the job's uid 65534 is that host uid, never host uid 0: the
host device nodes bound into /dev and every bound file stay out of its reach (chmod, chown,
utime fail). What that user may not reach on the host (the interpreter under the 0700 /root,
the 0700 run folders) the grader binds read-only under a root-owned folder first (``views.py``)
and bwrap binds that view at the original path. /out's tmpfs root is owned by the user.
bwrap's options come from a memfd (``--args``): its command line, which the job can read as
/proc/1/cmdline, holds only the job's own argv.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from grader.config import SandboxSettings
from grader.errors import GraderFault
from grader.sandbox.base import (
    OUT_TARGET,
    SANDBOX_UID,
    SANDBOX_USER,
    Poll,
    RunOutcome,
    RunRequest,
    check_readable,
    check_request,
    cpu_quota,
    cpu_unlimited_note,
    default_env,
    reachable_by,
    refuse_writable_mounts,
    sandbox_host_ids,
    temp_prefix,
)
from grader.sandbox.cgroups import PARENT_NAME, Cgroup, CgroupRoot, CgroupUnavailable, find_cgroups
from grader.sandbox.outdir import PAGE, OutputFolder
from grader.sandbox.process import bind_poll, exit_status, rlimit_setter, run_outcome, supervise
from grader.sandbox.runtime import Runtime, runtime_for
from grader.sandbox.views import VIEWS_ROOT, RunViews, persistent_view

logger = logging.getLogger(__name__)

OPEN_FILES = 1024
# Top-level links of a merged-/usr system (/lib -> usr/lib ...), re-made inside: the loader's
# paths (/lib/x86_64-linux-gnu/libc.so.6, /lib64/ld-linux-x86-64.so.2) go through them.
SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
GENERATED_ETC = {
    "passwd": "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
              f"nobody:x:{SANDBOX_UID}:{SANDBOX_UID}:nobody:/tmp:/usr/sbin/nologin\n",
    "group": f"root:x:0:\nnogroup:x:{SANDBOX_UID}:\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
}
NO_CGROUPS = (
    "neither cgroup v2 nor cgroup v1 memory+pids controllers are usable here ({reason}); "
    "run as root or set GRADER_REQUIRE_CGROUPS=0 to fall back to rlimits, which cannot "
    "bound memory of threads reliably"
)


def find_bwrap() -> str:
    """The bubblewrap executable, or GraderFault saying how to install it."""
    found = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK)
                                      else None)
    if not found:
        raise GraderFault("bubblewrap is not installed: apt-get install bubblewrap")
    return found


class BwrapSandbox:
    """Runs each request with bubblewrap; see the module docstring for what it enforces."""

    name = "bwrap"

    def __init__(self, settings: SandboxSettings, *, cgroup_parent: str = PARENT_NAME,
                 use_cgroups: bool = True) -> None:
        self.bwrap = find_bwrap()
        self.work_dir = settings.work_dir
        self.can_mount = os.geteuid() == 0
        self.ids = sandbox_host_ids()  # the job's host uid:gid; GraderFault if the user is missing
        self.as_user = os.geteuid() == 0  # root starts bwrap as that user; others as themselves
        if self.as_user:
            from grader.leftovers import sweep_once

            sweep_once(VIEWS_ROOT)  # the run views of grader processes that died
        self.cgroups: CgroupRoot | None = None
        reason = "disabled for this sandbox"
        if use_cgroups:
            try:
                self.cgroups = find_cgroups(cgroup_parent)
            except CgroupUnavailable as exc:
                reason = str(exc)
        if self.cgroups is None:
            if settings.require_cgroups:
                raise GraderFault(NO_CGROUPS.format(reason=reason))
            logger.warning("sandbox runs WITHOUT cgroups (%s): memory and processes are only "
                           "bounded per process by rlimits", reason)
        else:  # the grader/ parents stay while we live, so runs do not re-create them
            weakref.finalize(self, self.cgroups.remove_parents_if_empty)
        self._etc: Path | None = None

    def etc_dir(self) -> Path:
        """The made-up /etc files (passwd, group, nsswitch.conf, hosts), written once."""
        if self._etc is None or not self._etc.is_dir():
            etc = Path(tempfile.mkdtemp(prefix=temp_prefix("grader-etc"), dir=self.work_dir))
            etc.chmod(0o755)
            for name, text in GENERATED_ETC.items():
                (etc / name).write_text(text)
                (etc / name).chmod(0o444)
            weakref.finalize(self, shutil.rmtree, etc, ignore_errors=True)
            self._etc = etc
        return self._etc

    def run(self, request: RunRequest, *, poll: Poll | None = None) -> RunOutcome:
        """Run one request in a fresh sandbox; student failures come back in the outcome."""
        check_request(request)
        refuse_writable_mounts(request, self.name)
        for mount in request.mounts:  # the folders above it are made reachable by views
            check_readable(os.fspath(mount.source), self.ids)
        runtime = runtime_for(os.fspath(request.python))
        job = _Job(self, request, runtime)
        try:
            return job.run(poll)
        finally:
            job.cleanup()


class _Job:
    """The state of one run, so every exit path cleans up the same way."""

    def __init__(self, sandbox: BwrapSandbox, request: RunRequest, runtime: Runtime) -> None:
        self.sandbox = sandbox
        self.request = request
        self.runtime = runtime
        self.limits = request.limits
        self.out = OutputFolder(request.output_dir, work_dir=sandbox.work_dir,
                                limit_bytes=self.limits.output_bytes, can_mount=sandbox.can_mount,
                                owner=sandbox.ids)
        self.views = RunViews()
        uid = sandbox.ids[0]
        self.cgroup: Cgroup | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.status_r = -1
        self.enforced: dict[str, str] = {
            "wall": "host timer",
            "network": "netns (loopback only)",
            "filesystem": "mount namespace, read-only binds of the minimal runtime (no /usr)",
            "user": (f"userns uid {SANDBOX_UID} = host uid {uid}"
                     f"{' (' + SANDBOX_USER + ')' if sandbox.as_user else ''}, "
                     "no capabilities, no new userns"),
            "views": ("host paths the sandbox user cannot reach are bound read-only under "
                      f"{VIEWS_ROOT} by the grader first" if sandbox.as_user else "none"),
            "tmp": "tmpfs size",
            "file_size": "RLIMIT_FSIZE",
            "open_files": "RLIMIT_NOFILE",
        }

    # ------------------------------------------------------------------ set-up

    def _options(self, out_source: Path, status_fd: int) -> list[str]:
        """bwrap's options (read from a file descriptor with ``--args``, so never on its argv)."""
        request, limits = self.request, self.limits
        args = [
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            "--json-status-fd", str(status_fd),
            "--clearenv",
        ]
        for key, value in default_env(request).items():
            args += ["--setenv", key, value]
        for name in SYSTEM_LINKS:
            host = Path("/", name)
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), f"/{name}"]
        args += ["--dir", "/etc"]
        etc = Path(self._source(os.fspath(self.sandbox.etc_dir())))
        for name in GENERATED_ETC:
            args += ["--ro-bind", str(etc / name), f"/etc/{name}"]
        tmp_size = str(max(PAGE, limits.tmp_bytes))
        args += [
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", tmp_size, "--tmpfs", "/tmp",
            "--perms", "1777", "--size", tmp_size, "--tmpfs", "/dev/shm",
        ]
        # The runtime after the private /tmp, so an interpreter or venv kept under /tmp on the
        # host (a checkout there, say) is bound over it rather than hidden by it.
        runtime = self.runtime
        for folder in runtime.dirs:
            args += ["--ro-bind", self._source(folder, keep=True), folder]
        for file in runtime.files:
            args += ["--ro-bind", self._source(file, keep=True), file]
        for link, text in runtime.links:
            args += ["--symlink", text, link]
        for mount in request.mounts:
            args += ["--ro-bind", self._source(os.fspath(mount.source)), mount.target]
        args += ["--bind", self._source(os.fspath(out_source), writable=True), OUT_TARGET]
        # /proc read-only: the job is root in its own user namespace, and /proc/sys files owned
        # by that namespace's root would otherwise be writable to it.
        args += ["--remount-ro", "/proc", "--remount-ro", "/", "--chdir", request.cwd]
        return args

    def _source(self, path: str, *, keep: bool = False, writable: bool = False) -> str:
        """Where bwrap (running as the sandbox user) binds ``path`` from: the path itself, or a
        view of it made by the grader (root) when the user cannot reach it (views.py)."""
        if not self.sandbox.as_user or reachable_by(path, *self.sandbox.ids):
            return path
        if keep:
            return os.fspath(persistent_view(path))
        return os.fspath(self.views.view(path, writable=writable))

    def _options_fd(self, options: list[str]) -> int:
        """A memfd holding ``options`` NUL-separated, for ``bwrap --args FD``.

        bwrap's pid 1 inside the sandbox is a fork of bwrap, so whatever is on its command
        line (the host paths of every mount, the environment) is readable as /proc/1/cmdline.
        bwrap reads the fd to the end and closes it before the job starts.
        """
        fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
        try:
            data = b"".join(os.fsencode(arg) + b"\0" for arg in options)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _rlimits(self) -> list[tuple[int, int]]:
        limits = [
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_FSIZE, self.limits.fsize_bytes),
            (resource.RLIMIT_NOFILE, OPEN_FILES),
        ]
        if self.cgroup is None:  # the fallback: per-process bounds only
            limits.append((resource.RLIMIT_AS, self.limits.memory_bytes))
            self.enforced["memory"] = "RLIMIT_AS (per process, not a job total)"
            self.enforced["cpu"] = "not enforced"
            if os.geteuid() != 0:
                limits.append((resource.RLIMIT_NPROC, self.limits.processes))
                self.enforced["pids"] = "RLIMIT_NPROC (per user)"
            else:
                self.enforced["pids"] = "not enforced (root is exempt from RLIMIT_NPROC)"
        return limits

    def _make_cgroup(self) -> None:
        root = self.sandbox.cgroups
        if root is None:
            return
        try:
            self.cgroup = root.create()
            quota = cpu_quota(self.limits.cpus)
            self.enforced.update(self.cgroup.configure(
                memory_bytes=self.limits.memory_bytes,
                processes=self.limits.processes,
                cpus=quota,
            ))
            if quota is None:
                self.enforced["cpu"] = cpu_unlimited_note()
        except (OSError, CgroupUnavailable) as exc:
            raise GraderFault(f"cannot create the sandbox's cgroup: {exc}") from exc

    def _in_background(self, poll: Poll | None) -> Poll | None:
        """Lower the run's CPU priority until ``request.idle_until`` is set (checked at each
        poll, every 0.1 s); ``poll`` itself is called as before."""
        until, cgroup = self.request.idle_until, self.cgroup
        if until is None or until.is_set() or cgroup is None:
            return poll
        try:
            how = cgroup.set_background(True)
        except OSError as exc:
            logger.warning("cannot lower a pre-started sandbox's CPU priority: %s", exc)
            return poll
        if how is None:
            return poll
        lowered = True

        def watched(live_out: Path) -> str | None:
            nonlocal lowered
            if lowered and until.is_set():
                lowered = False
                try:
                    cgroup.set_background(False)
                except OSError as exc:  # the run goes on at the low priority: slower, not wrong
                    logger.warning("cannot restore a sandbox's CPU priority: %s", exc)
            return poll(live_out) if poll is not None else None

        return watched

    # ------------------------------------------------------------------ the run

    def _kill(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill_all()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)  # not reaped yet, so the pid is ours

    def _after_exit(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def run(self, poll: Poll | None) -> RunOutcome:
        out_source = self.out.prepare()
        self.enforced["output"] = self.out.enforced
        self._make_cgroup()
        poll = self._in_background(poll)
        status_r, status_w = os.pipe()
        self.status_r = status_r
        try:
            options_fd = self._options_fd(self._options(out_source, status_w))
        except OSError as exc:
            os.close(status_w)
            raise GraderFault(f"cannot pass the sandbox's options to bubblewrap: {exc}") from exc
        except GraderFault:  # a view could not be made
            os.close(status_w)
            raise
        # Only the job's own argv (paths as seen inside) is on the command line.
        argv = [self.sandbox.bwrap, "--args", str(options_fd), "--", *self.request.argv]
        procs_fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC)
                     for f in (self.cgroup.procs_files() if self.cgroup else ())]
        set_rlimits = rlimit_setter(self._rlimits())
        # As root: bwrap runs as the sandbox user (Popen switches uid before preexec_fn; the
        # cgroup.procs files were opened above by root, and writing "0" moves the writer).
        uid, gid = self.sandbox.ids if self.sandbox.as_user else (None, None)

        def preexec() -> None:  # in the child, before bwrap is executed; allocates nothing
            for fd in procs_fds:
                os.write(fd, b"0")  # "0" = the writing process itself
            set_rlimits()

        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={}, cwd="/", preexec_fn=preexec, pass_fds=(status_w, options_fd),
                start_new_session=True, user=uid, group=gid,
                extra_groups=None if uid is None else [],
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GraderFault(f"could not start bubblewrap: {exc}") from exc
        finally:
            os.close(status_w)
            os.close(options_fd)
            for fd in procs_fds:
                os.close(fd)
        watch = supervise(self.proc, started=started, wall_s=self.limits.wall_s,
                          log_bytes=self.limits.log_bytes, poll=bind_poll(poll, out_source),
                          kill=self._kill, after_exit=self._after_exit)
        status = self._read_status()
        stats = self.cgroup.stats() if self.cgroup else None
        self._remove_cgroup()
        report = self.out.collect()
        exit_code, sig = exit_status(watch.returncode)
        stderr = watch.stderr.text()
        if stats is not None:  # an OOM kill, or a SIGKILL we did not send after hitting the limit
            out_of_memory = stats.oom_kills > 0 or (
                sig == signal.SIGKILL and not watch.timed_out and stats.memory_limit_hits > 0)
        else:  # without cgroups RLIMIT_AS makes allocations fail instead
            out_of_memory = "MemoryError" in stderr
        if not watch.timed_out and not out_of_memory and '"exit-code"' not in status:
            raise GraderFault("bubblewrap could not set up the sandbox", detail=stderr)
        return run_outcome(
            self.sandbox.name, watch, report, exit_code=exit_code, sig=sig, stderr=stderr,
            out_of_memory=out_of_memory,
            pids_exceeded=stats is not None and stats.pids_limit_hits > 0,
            peak_memory_bytes=stats.peak_memory_bytes if stats else watch.max_rss_bytes,
            enforced=self.enforced,
        )

    def _read_status(self) -> str:
        os.set_blocking(self.status_r, False)
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.status_r, 65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def _remove_cgroup(self) -> None:
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is None:
            return
        survivors = not cgroup.kill_all()
        if not cgroup.remove() or survivors:
            raise GraderFault(f"sandboxed processes survived the kill in {cgroup.dirs}")

    # ------------------------------------------------------------------ tidy-up

    def cleanup(self) -> None:
        """Kill what is left, remove the cgroup, unmount /out, remove the run folder."""
        if self.proc is not None and self.proc.returncode is None:
            self._kill()
            self.proc.wait()
        if self.status_r >= 0:
            os.close(self.status_r)
            self.status_r = -1
        try:
            self._remove_cgroup()
        except GraderFault:
            logger.exception("sandbox cleanup")
        self.views.release()  # first: a view of /out holds its tmpfs
        self.out.release()
