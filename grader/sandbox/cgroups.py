"""Per-run cgroups: find a usable hierarchy, create, limit, attach, kill, measure, remove.

cgroup v2 is preferred when its memory and pids controllers can be delegated to us;
otherwise cgroup v1 memory + pids (+ cpu, + freezer for an atomic kill). Run groups live
under a ``grader/`` parent below the cgroup this process is in, so the machine's own
accounting still covers the jobs; the parent is removed again whenever it is empty.

A process joins by writing its pid into every ``cgroup.procs`` of ``Cgroup.procs_files()``
(the sandbox does it in ``preexec_fn``, before bubblewrap is executed).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PARENT_NAME = "grader"
CPU_PERIOD_US = 100_000
_V1_REQUIRED = ("memory", "pids")
_V1_OPTIONAL = ("cpu", "freezer")
_counter = itertools.count(1)


class CgroupUnavailable(Exception):
    """No usable cgroup hierarchy; the message says why."""


@dataclass(frozen=True)
class CgroupStats:
    """Counters read after a run."""

    oom_kills: int
    memory_limit_hits: int
    pids_limit_hits: int
    peak_memory_bytes: int | None


@dataclass(frozen=True)
class MountEntry:
    fstype: str
    mountpoint: Path
    root: str
    super_options: frozenset[str]


# --------------------------------------------------------------------------- small file helpers


def _write(path: Path, text: str) -> None:
    """Write a cgroup interface file; it must exist (no O_CREAT, as on cgroupfs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def _read_keyed(path: Path, key: str) -> int:
    """The number after ``key`` in a flat keyed file such as memory.events; 0 if absent."""
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            with contextlib.suppress(ValueError):
                return int(parts[1])
    return 0


def _read_pids(path: Path) -> set[int]:
    return {int(p) for p in (_read(path) or "").split()}


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def read_mounts(path: Path = Path("/proc/self/mountinfo")) -> list[MountEntry]:
    """The cgroup and cgroup2 mounts of this mount namespace."""
    mounts = []
    for line in (_read(path) or "").splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(MountEntry(
            fstype=rest[0],
            mountpoint=Path(_unescape(fields[4])),
            root=_unescape(fields[3]),
            super_options=frozenset(rest[2].split(",")),
        ))
    return mounts


def mount_points(path: Path = Path("/proc/self/mountinfo")) -> list[Path]:
    """Every mount point of this mount namespace."""
    lines = (_read(path) or "").splitlines()
    return [Path(_unescape(line.split()[4])) for line in lines if len(line.split()) > 4]


def read_own_cgroups(path: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """Controller -> this process's cgroup path; the cgroup v2 entry is under key ``""``."""
    own: dict[str, str] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                own[controller] = parts[2]
    return own


def _own_dir(mount: MountEntry, own_path: str) -> Path:
    """The directory of our own cgroup inside one mounted hierarchy."""
    rel = own_path
    if mount.root != "/" and (rel == mount.root or rel.startswith(mount.root + "/")):
        rel = rel[len(mount.root):]
    return mount.mountpoint / rel.lstrip("/")


def _parent_dir(own_dir: Path, mountpoint: Path, parent: str) -> Path:
    """``parent`` below our own cgroup, or below the hierarchy root when it starts with /."""
    return mountpoint / parent.lstrip("/") if parent.startswith("/") else own_dir / parent


def _rmdir(path: Path, timeout_s: float = 0.0) -> bool:
    """Remove a cgroup directory; retry EBUSY (exiting tasks) until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def _kill_listed(procs_file: Path) -> int:
    """SIGKILL every process listed in ``procs_file``; returns how many were listed.

    Each pid is pinned with a pidfd and signalled only if it is still listed afterwards,
    so a pid that was freed and reused by a host process in between is never signalled.
    """
    pids = _read_pids(procs_file)
    if not pids:
        return 0
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fds[pid] = os.pidfd_open(pid)
    try:
        still = _read_pids(procs_file)
        for pid, fd in fds.items():
            if pid in still:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        for fd in fds.values():
            os.close(fd)
    return len(pids)


def _sweep(parent: Path) -> None:
    """Remove run groups left by grader processes that died (``run-<pid>-…``, pid gone)."""
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            parts = child.name.split("-")
            if len(parts) < 2 or parts[0] != "run" or not parts[1].isdigit():
                continue
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                if not _read_pids(child / "cgroup.procs"):
                    _rmdir(child)
            except PermissionError:
                pass


def run_name() -> str:
    """A unique name for one run's group; carries our pid so stale groups can be swept."""
    return f"run-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"


# --------------------------------------------------------------------------- one run's group


class Cgroup:
    """The cgroup(s) of one run."""

    version = ""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.controller_dirs = dirs
        self.dirs = tuple(dict.fromkeys(dirs.values()))

    def procs_files(self) -> tuple[Path, ...]:
        """The files a new member writes its pid to (one per hierarchy)."""
        return tuple(d / "cgroup.procs" for d in self.dirs)

    def pids(self) -> set[int]:
        """Every process currently in the group."""
        return set().union(*(_read_pids(f) for f in self.procs_files()))

    def configure(self, *, memory_bytes: int, processes: int, cpus: float | None) -> dict[str, str]:
        """Set the limits; returns which mechanism enforces each one."""
        raise NotImplementedError

    # (file, lowest, default) of the weight each version gives a group among its siblings
    WEIGHT: tuple[str, str, str] = ("", "", "")

    def _cpu_dir(self) -> Path | None:
        return None

    def set_background(self, on: bool) -> str | None:
        """While ``on``, the group only gets CPU its siblings leave idle (``cpu.idle``, else the
        lowest weight); off again, it has the usual share. The file used, or None (no cpu
        controller here: the priority is left as it is)."""
        cpu = self._cpu_dir()
        if cpu is None:
            return None
        if (cpu / "cpu.idle").exists():
            _write(cpu / "cpu.idle", "1" if on else "0")
            return "cpu.idle"
        name, lowest, default = self.WEIGHT
        if name and (cpu / name).exists():
            _write(cpu / name, lowest if on else default)
            return name
        return None

    def stats(self) -> CgroupStats:
        raise NotImplementedError

    def _freeze(self) -> bool:
        return False

    def _thaw(self) -> None:
        pass

    def _kill_atomic(self) -> bool:
        return False

    def kill_all(self, timeout_s: float = 5.0) -> bool:
        """SIGKILL every process in the group, forks racing included; True once it is empty."""
        deadline = time.monotonic() + timeout_s
        if not self.pids():
            return True
        if self._kill_atomic():
            listed = 1
        else:
            frozen = self._freeze()
            try:
                listed = sum(_kill_listed(f) for f in self.procs_files())
            finally:
                if frozen:
                    self._thaw()  # frozen tasks only die once thawed
        while listed:
            if not self.pids():
                return True
            if time.monotonic() >= deadline:
                logger.error("processes survived in %s: %s", self.dirs, sorted(self.pids()))
                return False
            time.sleep(0.002)
            listed = sum(_kill_listed(f) for f in self.procs_files()) or 1
        return True

    def remove(self, timeout_s: float = 2.0) -> bool:
        """Remove the group's directories (they must be empty of processes)."""
        return all([_rmdir(d, timeout_s) for d in self.dirs])


class CgroupV2(Cgroup):
    version = "cgroup v2"
    WEIGHT = ("cpu.weight", "1", "100")

    def _cpu_dir(self) -> Path | None:
        return self.path

    @property
    def path(self) -> Path:
        return self.dirs[0]

    def configure(self, *, memory_bytes: int, processes: int, cpus: float | None) -> dict[str, str]:
        enforced = {"memory": self.version, "pids": self.version}
        _write(self.path / "memory.max", str(memory_bytes))
        if (self.path / "memory.swap.max").exists():
            _write(self.path / "memory.swap.max", "0")
            enforced["swap"] = f"{self.version} (memory.swap.max=0)"
        else:
            enforced["swap"] = "not bounded (no swap accounting)"
        if (self.path / "memory.oom.group").exists():
            _write(self.path / "memory.oom.group", "1")  # an OOM kill takes the whole job
        _write(self.path / "pids.max", str(processes))
        if cpus is not None and (self.path / "cpu.max").exists():
            _write(self.path / "cpu.max", f"{max(1000, int(cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
            enforced["cpu"] = f"{self.version} (cpu.max)"
        enforced["kill"] = ("cgroup.kill" if (self.path / "cgroup.kill").exists()
                            else f"{self.version} freeze + SIGKILL")
        return enforced

    def _kill_atomic(self) -> bool:
        if not (self.path / "cgroup.kill").exists():
            return False
        _write(self.path / "cgroup.kill", "1")
        return True

    def _freeze(self) -> bool:
        if not (self.path / "cgroup.freeze").exists():
            return False
        _write(self.path / "cgroup.freeze", "1")
        deadline = time.monotonic() + 0.5
        while _read_keyed(self.path / "cgroup.events", "frozen") != 1:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.001)
        return True

    def _thaw(self) -> None:
        _write(self.path / "cgroup.freeze", "0")

    def stats(self) -> CgroupStats:
        return CgroupStats(
            oom_kills=_read_keyed(self.path / "memory.events", "oom_kill"),
            memory_limit_hits=_read_keyed(self.path / "memory.events", "max"),
            pids_limit_hits=_read_keyed(self.path / "pids.events", "max"),
            peak_memory_bytes=_read_int(self.path / "memory.peak"),
        )


class CgroupV1(Cgroup):
    version = "cgroup v1"
    WEIGHT = ("cpu.shares", "2", "1024")

    def _cpu_dir(self) -> Path | None:
        return self.controller_dirs.get("cpu")

    def configure(self, *, memory_bytes: int, processes: int, cpus: float | None) -> dict[str, str]:
        memory, pids = self.controller_dirs["memory"], self.controller_dirs["pids"]
        enforced = {"memory": self.version, "pids": self.version}
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # memory + swap, set after memory
            _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
            enforced["swap"] = f"{self.version} (memsw)"
        else:
            enforced["swap"] = "not bounded (no swap accounting)"
        _write(pids / "pids.max", str(processes))
        cpu = self.controller_dirs.get("cpu")
        if cpus is not None and cpu is not None:
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(cpus * CPU_PERIOD_US))))
            enforced["cpu"] = f"{self.version} (cfs quota)"
        enforced["kill"] = (f"{self.version} freezer + SIGKILL" if "freezer" in self.controller_dirs
                            else "SIGKILL over cgroup.procs until empty")
        return enforced

    def _freeze(self) -> bool:
        freezer = self.controller_dirs.get("freezer")
        if freezer is None:
            return False
        _write(freezer / "freezer.state", "FROZEN")
        deadline = time.monotonic() + 0.5
        while (_read(freezer / "freezer.state") or "").strip() != "FROZEN":
            if time.monotonic() >= deadline:
                break
            time.sleep(0.001)
        return True

    def _thaw(self) -> None:
        _write(self.controller_dirs["freezer"] / "freezer.state", "THAWED")

    def stats(self) -> CgroupStats:
        memory, pids = self.controller_dirs["memory"], self.controller_dirs["pids"]
        return CgroupStats(
            oom_kills=_read_keyed(memory / "memory.oom_control", "oom_kill"),
            memory_limit_hits=max(_read_int(memory / "memory.failcnt") or 0,
                                  _read_int(memory / "memory.memsw.failcnt") or 0),
            pids_limit_hits=_read_keyed(pids / "pids.events", "max"),
            peak_memory_bytes=_read_int(memory / "memory.max_usage_in_bytes"),
        )


# --------------------------------------------------------------------------- hierarchies


class CgroupRoot:
    """Where run groups are made; ``create`` gives one run its own group."""

    version = ""

    def parent_dirs(self) -> tuple[Path, ...]:
        raise NotImplementedError

    def _ensure_parents(self) -> None:
        for parent in self.parent_dirs():
            parent.mkdir(exist_ok=True)

    def _make(self, name: str) -> dict[str, Path]:
        raise NotImplementedError

    def create(self, name: str | None = None) -> Cgroup:
        """Create a fresh group for one run (the parent is re-created if a cleanup raced us)."""
        name = name or run_name()
        for attempt in range(5):
            self._ensure_parents()
            try:
                return self._group(self._make(name))
            except FileNotFoundError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _group(self, dirs: dict[str, Path]) -> Cgroup:
        raise NotImplementedError

    def remove_parents_if_empty(self) -> None:
        """Drop the ``grader/`` parents when no run uses them (best effort)."""
        for parent in self.parent_dirs():
            _rmdir(parent)

    def sweep_stale(self) -> None:
        """Remove run groups left behind by grader processes that no longer exist."""
        for parent in self.parent_dirs():
            _sweep(parent)


class CgroupV2Root(CgroupRoot):
    """Run groups under ``parent``, a child of ``base`` (a cgroup we may delegate from)."""

    version = "cgroup v2"

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self.base = parent.parent
        available = set((_read(self.base / "cgroup.controllers") or "").split())
        missing = [c for c in ("memory", "pids") if c not in available]
        if missing:
            raise CgroupUnavailable(
                f"cgroup v2 at {self.base} does not offer the {' and '.join(missing)} "
                "controller (they may be bound to cgroup v1)"
            )
        self.controllers = tuple(c for c in ("cpu", "memory", "pids") if c in available)

    def parent_dirs(self) -> tuple[Path, ...]:
        return (self.parent,)

    def _enable(self, directory: Path) -> None:
        enabled = set((_read(directory / "cgroup.subtree_control") or "").split())
        wanted = [c for c in self.controllers if c not in enabled]
        if wanted:
            _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def _ensure_parents(self) -> None:
        try:
            self._enable(self.base)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise CgroupUnavailable(
                    f"cgroup v2: cannot delegate controllers below {self.base} because it holds "
                    "processes itself (run the grader in a leaf of a delegated cgroup, e.g. "
                    "systemd Delegate=yes, and point cgroup_parent there)"
                ) from exc
            raise
        self.parent.mkdir(exist_ok=True)
        self._enable(self.parent)

    def _make(self, name: str) -> dict[str, Path]:
        path = self.parent / name
        path.mkdir()
        return {c: path for c in self.controllers}

    def _group(self, dirs: dict[str, Path]) -> Cgroup:
        return CgroupV2(dirs)


class CgroupV1Root(CgroupRoot):
    """Run groups under one ``parent`` directory per v1 hierarchy (memory, pids, cpu, freezer)."""

    version = "cgroup v1"

    def __init__(self, parents: dict[str, Path]) -> None:
        self.parents = parents

    def parent_dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(self.parents.values()))

    def _make(self, name: str) -> dict[str, Path]:
        made: list[Path] = []
        try:
            for parent in self.parent_dirs():
                (parent / name).mkdir()
                made.append(parent / name)
        except BaseException:
            for path in made:
                _rmdir(path)
            raise
        return {c: p / name for c, p in self.parents.items()}

    def _group(self, dirs: dict[str, Path]) -> Cgroup:
        return CgroupV1(dirs)


def _probe(root: CgroupRoot, needed: list[Path]) -> CgroupRoot:
    """Make the parents, check the interface files we write exist, tidy up again."""
    try:
        root._ensure_parents()
    except PermissionError as exc:
        raise CgroupUnavailable(
            f"{root.version}: cannot create {exc.filename} (not root?)") from exc
    except OSError as exc:
        raise CgroupUnavailable(f"{root.version}: cannot create its parent group ({exc})") from exc
    for path in needed:
        if not path.exists():
            root.remove_parents_if_empty()
            raise CgroupUnavailable(f"{root.version}: {path} is missing")
    root.sweep_stale()
    root.remove_parents_if_empty()
    return root


def find_cgroups(
    parent: str = PARENT_NAME,
    *,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    own_cgroup: Path = Path("/proc/self/cgroup"),
) -> CgroupRoot:
    """The usable hierarchy, v2 preferred; raises CgroupUnavailable listing why none is.

    ``parent`` is a name below our own cgroup (default ``grader``) or, starting with
    ``/``, a path from the hierarchy's root.
    """
    mounts = read_mounts(mountinfo)
    own = read_own_cgroups(own_cgroup)
    reasons = []
    v2 = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if v2 is None:
        reasons.append("no cgroup2 mount")
    else:
        try:
            v2_parent = _parent_dir(_own_dir(v2, own.get("", "/")), v2.mountpoint, parent)
            root = CgroupV2Root(v2_parent)
            return _probe(root, [v2_parent / "memory.max", v2_parent / "pids.max"])
        except CgroupUnavailable as exc:
            reasons.append(str(exc))
    parents: dict[str, Path] = {}
    for controller in _V1_REQUIRED + _V1_OPTIONAL:
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.super_options),
                     None)
        if mount is None:
            continue
        own_dir = _own_dir(mount, own.get(controller, "/"))
        parents[controller] = _parent_dir(own_dir, mount.mountpoint, parent)
    missing = [c for c in _V1_REQUIRED if c not in parents]
    if missing:
        reasons.append(f"cgroup v1: no {' or '.join(missing)} hierarchy mounted")
        raise CgroupUnavailable("; ".join(reasons))
    root_v1 = CgroupV1Root(parents)
    try:
        return _probe(root_v1, [
            parents["memory"] / "memory.limit_in_bytes",
            parents["pids"] / "pids.max",
        ])
    except CgroupUnavailable as exc:
        reasons.append(str(exc))
        raise CgroupUnavailable("; ".join(reasons)) from None


# --------------------------------------------------------------------------- a container's parent

ENGINE_PARENT = "grader-docker"  # below each hierarchy's root, as the docker engine names paths


class EngineParent:
    """The parent cgroup of one container, named by us (``docker --cgroup-parent``).

    The engine makes a container's group, and removes it with the container, so its counters
    are gone when the run ends. With the cgroupfs driver the runtime creates the named parent
    (in every hierarchy) and removes only the container's own group below it: the parent's
    hierarchical counters outlive the container. Read them, then remove the parent.
    """

    def __init__(self, name: str, version: str, *,
                 mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
        self.path = f"/{ENGINE_PARENT}/{name}"
        self.version = version  # the engine's cgroup version, "1" or "2"
        # Only hierarchies mounted at their root map an engine path onto our file system.
        self.mounts = [m for m in read_mounts(mountinfo) if m.root == "/"]

    def _dir(self, controller: str) -> Path | None:
        fstype = "cgroup2" if self.version == "2" else "cgroup"
        for mount in self.mounts:
            if mount.fstype == fstype and (fstype == "cgroup2" or controller in mount.super_options):
                return mount.mountpoint / self.path.lstrip("/")
        return None

    def stats(self, processes: int) -> CgroupStats | None:
        """Peak memory and pids-limit hits of the finished container; None if not readable.

        cgroup v1 counts a refused fork in the forking task's own group (gone with the
        container), so there a process peak at the limit counts as hitting it.
        """
        memory, pids = self._dir("memory"), self._dir("pids")
        if memory is None or pids is None or not memory.is_dir():
            return None
        if self.version == "2":
            peak = _read_int(memory / "memory.peak")
            oom_kills = _read_keyed(memory / "memory.events", "oom_kill")
        else:
            peak = _read_int(memory / "memory.max_usage_in_bytes")
            oom_kills = 0  # counted in the container's own group only
        pids_peak = _read_int(pids / "pids.peak") or 0
        hits = max(_read_keyed(pids / "pids.events", "max"), int(pids_peak >= processes))
        return CgroupStats(oom_kills=oom_kills, memory_limit_hits=0, pids_limit_hits=hits,
                           peak_memory_bytes=peak or None)

    def remove(self, timeout_s: float = 2.0) -> bool:
        """Remove the parent from every hierarchy (the engine has removed the container's group)."""
        return all([_rmdir(m.mountpoint / self.path.lstrip("/"), timeout_s) for m in self.mounts])


def engine_parents_usable(version: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Whether we see, and may remove, the parents the runtime makes: every hierarchy of the
    engine's cgroup version mounted at its root and writable (not so inside most containers)."""
    mounts = [m for m in read_mounts(mountinfo) if m.fstype == ("cgroup2" if version == "2"
                                                                 else "cgroup")]
    needed = {"memory", "pids"} if version != "2" else set()
    seen = set().union(*(m.super_options for m in mounts)) if mounts else set()
    return bool(mounts) and needed <= seen and all(
        m.root == "/" and os.access(m.mountpoint, os.W_OK) for m in mounts)


def sweep_engine_parents(mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
    """Remove the containers' parents left by grader processes that no longer exist."""
    for mount in read_mounts(mountinfo):
        if mount.root == "/":
            _sweep(mount.mountpoint / ENGINE_PARENT)
