"""The sandbox against real bubblewrap, real cgroups and real processes (no fakes of behaviour).

The ``sandbox`` fixture runs every test that uses it on both isolating backends, bwrap and
docker (a real engine; see test_sandbox_docker.py for the docker-only tests). Where the two
differ by design the test says so next to the expectation.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from grader.config import SandboxSettings
from grader.errors import GraderFault
from grader.sandbox import Mount, RunOutcome, RunRequest, SandboxLimits, get_sandbox
from grader.sandbox.base import available_cores
from grader.sandbox.bwrap import BwrapSandbox
from grader.sandbox.cgroups import (
    CgroupUnavailable,
    CgroupV2,
    CgroupV2Root,
    find_cgroups,
    read_mounts,
    read_own_cgroups,
)
from grader.sandbox.docker import DockerSandbox
from grader.sandbox.local import PATH_MAP_ENV, translate
from grader.sandbox.process import HeadTail
from tests.conftest import docker_unavailable

PY = Path(sys.executable)
MiB = 2**20
LIMITS = SandboxLimits(wall_s=20, memory_bytes=256 * MiB, processes=32, output_bytes=8 * MiB,
                       tmp_bytes=8 * MiB, log_bytes=4096)


BACKENDS = {"bwrap": BwrapSandbox, "docker": DockerSandbox}


@pytest.fixture(scope="module", params=["bwrap", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> BwrapSandbox | DockerSandbox:
    backend = request.param
    if backend == "docker" and (reason := docker_unavailable(request.config)):
        pytest.skip(reason)
    box = get_sandbox(SandboxSettings(backend=backend, python=str(PY),
                                      work_dir=tmp_path_factory.mktemp(f"runs-{backend}")))
    assert isinstance(box, BACKENDS[backend])
    return box


def make_request(tmp_path: Path, code: str, *args: str, limits: SandboxLimits = LIMITS,
                 env: dict[str, str] | None = None, cwd: str = "/tmp") -> RunRequest:
    submission = tmp_path / "submission"
    submission.mkdir(exist_ok=True)
    (submission / "numpy_nn.py").write_text("X = 1\n")
    return RunRequest(
        argv=(str(PY), "-c", code, *args),
        python=PY,
        mounts=(Mount(submission, "/submission"),),
        output_dir=tmp_path / "out",
        limits=limits,
        env=env or {},
        cwd=cwd,
    )


def run(sandbox, tmp_path: Path, code: str, *args: str, poll=None, **kw) -> RunOutcome:
    return sandbox.run(make_request(tmp_path, code, *args, **kw), poll=poll)


def limits(**changes) -> SandboxLimits:
    values = {f: getattr(LIMITS, f) for f in LIMITS.__dataclass_fields__}
    values.update(changes)
    return SandboxLimits(**values)


def host_pids_with(marker: str) -> set[int]:
    """Host processes whose command line holds ``marker`` as one argument."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv:
                found.add(int(entry))
    return found


def is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its new parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def run_dirs(sandbox: BwrapSandbox) -> set[Path]:
    """This process's per-run cgroup directories that exist right now (others may run too)."""
    assert sandbox.cgroups is not None
    mine = f"run-{os.getpid()}-"
    return {p for d in sandbox.cgroups.parent_dirs() if d.is_dir()
            for p in d.iterdir() if p.is_dir() and p.name.startswith(mine)}


def run_units(sandbox) -> set[str]:
    """What the backend makes per run and must remove again, existing right now (this process's):
    cgroup directories for bwrap, containers for docker."""
    if isinstance(sandbox, DockerSandbox):
        listed = sandbox.cli("ps", "--all", "--filter", f"name=grader-run-{os.getpid()}-",
                             "--format", "{{.Names}}")
        return set(listed.stdout.split())
    return {str(p) for p in run_dirs(sandbox)}


# --------------------------------------------------------------------------- ordinary runs


def test_normal_run_writes_out_and_exits_zero(sandbox, tmp_path):
    code = "import sys; open('/out/result.txt', 'w').write('done'); print('hello'); " \
           "print('warn', file=sys.stderr)"
    outcome = run(sandbox, tmp_path, code)
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (0, None, False)
    assert outcome.stdout == "hello\n"
    assert outcome.stderr == "warn\n"
    assert (tmp_path / "out" / "result.txt").read_text() == "done"
    assert not outcome.out_of_memory
    assert not outcome.output_exceeded
    assert not outcome.pids_exceeded
    assert outcome.backend == sandbox.name
    assert outcome.enforced["wall"].startswith("host timer")
    # docker: read from the container's parent cgroup, which outlives the container
    assert outcome.peak_memory_bytes
    assert 0 < outcome.peak_memory_bytes < LIMITS.memory_bytes // 2
    if sandbox.name == "bwrap":
        assert outcome.enforced["network"].startswith("netns")
        assert outcome.enforced["memory"].startswith("cgroup")
    else:
        assert outcome.enforced["network"].startswith("docker --network none")
        assert outcome.enforced["memory"].startswith("docker --memory")


def test_cpu_quota_only_below_the_core_count(sandbox, tmp_path):
    """A quota as large as the machine only throttles threads, so none is set; a share is."""
    cores = len(os.sched_getaffinity(0))
    whole = run(sandbox, tmp_path, "pass", limits=limits(cpus=float(cores)))
    assert whole.enforced["cpu"].startswith("not limited")
    if cores > 1:
        share = run(sandbox, tmp_path, "pass", limits=limits(cpus=1.0))
        assert "not limited" not in share.enforced["cpu"]
        assert ("cfs quota" in share.enforced["cpu"] or "cpu.max" in share.enforced["cpu"]
                or share.enforced["cpu"] == "docker --cpus 1")


def test_exit_code_is_propagated(sandbox, tmp_path):
    outcome = run(sandbox, tmp_path, "import sys; sys.exit(3)")
    assert (outcome.exit_code, outcome.signal) == (3, None)


def test_crash_is_reported_not_raised(sandbox, tmp_path):
    outcome = run(sandbox, tmp_path, "raise ValueError('student bug')")
    assert outcome.exit_code == 1
    assert "ValueError: student bug" in outcome.stderr


def test_environment_is_exactly_the_given_one(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_TEST_SECRET", "hunter2")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    outcome = run(sandbox, tmp_path, code, env={"ONLY": "this", "HOME": "/out"})
    assert json.loads(outcome.stdout) == {
        "PATH": f"{PY.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/out",
        "LANG": "C.UTF-8",
        "PWD": "/tmp",
        "ONLY": "this",
    }
    assert "hunter2" not in outcome.stdout


def test_cwd_is_honoured_and_submission_readable(sandbox, tmp_path):
    code = "import os; print(os.getcwd(), open('numpy_nn.py').read().strip())"
    outcome = run(sandbox, tmp_path, code, cwd="/submission")
    assert outcome.stdout == "/submission X = 1\n"


# --------------------------------------------------------------------------- time


def test_endless_loop_times_out(sandbox, tmp_path):
    outcome = run(sandbox, tmp_path, "while True: pass", limits=limits(wall_s=1.5))
    assert outcome.timed_out
    assert outcome.stopped_reason == "did not finish within 1.5 s"
    assert outcome.signal == signal.SIGKILL
    assert outcome.exit_code is None
    assert 1.5 <= outcome.wall_s < 2.5


def test_poll_callback_stops_the_job_with_its_reason(sandbox, tmp_path):
    started = time.monotonic()
    calls = []

    def poll(live_out: Path) -> str | None:
        calls.append(time.monotonic())
        return "cancelled by staff" if time.monotonic() - started > 0.5 else None

    outcome = run(sandbox, tmp_path, "import time; time.sleep(60)", poll=poll)
    assert outcome.timed_out
    assert outcome.stopped_reason == "cancelled by staff"
    assert outcome.wall_s < 2
    assert len(calls) >= 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert max(gaps) < 0.5


def test_poll_sees_the_output_while_the_job_runs(sandbox, tmp_path):
    seen: list[str] = []

    def poll(live_out: Path) -> str | None:
        beat = live_out / "beat"
        if beat.is_file() and beat.read_text():
            seen.append(beat.read_text())
            return "saw the heartbeat"
        return None

    code = "import time\nopen('/out/beat', 'w').write('alive')\ntime.sleep(60)"
    outcome = run(sandbox, tmp_path, code, poll=poll)
    assert seen == ["alive"]
    assert outcome.stopped_reason == "saw the heartbeat"
    assert outcome.wall_s < 10


def test_failing_poll_callback_kills_the_job_and_raises(sandbox, tmp_path):
    marker = f"victim-{uuid.uuid4().hex}"

    def poll(live_out: Path) -> str | None:
        raise RuntimeError("caller bug")

    code = "import sys, time; time.sleep(60)"
    with pytest.raises(RuntimeError, match="caller bug"):
        run(sandbox, tmp_path, code, marker, poll=poll)
    assert not host_pids_with(marker)


# --------------------------------------------------------------------------- memory and processes


def test_memory_bomb_is_out_of_memory(sandbox, tmp_path):
    code = "x = []\nfor _ in range(32): x.append(b'\\x01' * 2**26)\nprint('survived')"
    outcome = run(sandbox, tmp_path, code)
    assert outcome.out_of_memory
    assert outcome.signal == signal.SIGKILL
    assert "survived" not in outcome.stdout
    assert outcome.peak_memory_bytes is not None
    # docker's peak is the container's parent cgroup's: it also counts the charges the kernel
    # forces through (in batches of 64 pages) while the OOM-killed task exits
    slack = {"bwrap": 0, "docker": available_cores() * 64 * 4096}[sandbox.name]
    assert LIMITS.memory_bytes // 2 < outcome.peak_memory_bytes <= LIMITS.memory_bytes + slack


def test_fork_bomb_is_contained(sandbox, tmp_path):
    marker = f"forkbomb-{uuid.uuid4().hex}"
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    seen: set[str] = set()

    def poll(live_out: Path) -> None:
        seen.update(run_units(sandbox))

    outcome = run(sandbox, tmp_path, code, marker, poll=poll,
                  limits=limits(wall_s=3, processes=16))
    assert outcome.pids_exceeded
    assert outcome.timed_out
    assert outcome.wall_s < 4.5
    assert not host_pids_with(marker)
    assert seen
    assert not seen & run_units(sandbox)
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks


def test_thread_bomb_is_contained(sandbox, tmp_path):
    code = (
        "import threading, time\nn = 0\ntry:\n    while True:\n"
        "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "        n += 1\nexcept RuntimeError:\n    print(n)\n"
    )
    outcome = run(sandbox, tmp_path, code, limits=limits(processes=16))
    assert outcome.pids_exceeded
    assert outcome.exit_code == 0
    assert int(outcome.stdout) < 16


def test_double_forked_setsid_daemon_dies_with_the_job(sandbox, tmp_path):
    token = uuid.uuid4().hex
    marker = f"daemon-{token}"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        body = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "time.sleep(600)'\n"
        "        os.execv(sys.executable, [sys.executable, '-c', body, 'daemon-' + sys.argv[1]])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "time.sleep(1.0)\n"
    )
    seen: set[int] = set()

    def poll(live_out: Path) -> None:
        seen.update(host_pids_with(marker))

    outcome = run(sandbox, tmp_path, code, token, poll=poll)
    assert outcome.exit_code == 0
    assert not outcome.timed_out
    assert outcome.wall_s < 5
    assert seen, "the daemon never ran"
    for pid in seen:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        assert marker.encode() not in cmdline, f"daemon {pid} survived"
    assert not host_pids_with(marker)


def test_cgroups_or_containers_are_removed_after_the_run(sandbox, tmp_path):
    seen: set[str] = set()

    def poll(live_out: Path) -> None:
        seen.update(run_units(sandbox))

    outcome = run(sandbox, tmp_path, "import time; time.sleep(1.0)", poll=poll)
    assert outcome.exit_code == 0
    assert seen
    assert not seen & run_units(sandbox)


# --------------------------------------------------------------------------- output


def test_stdout_flood_is_captured_bounded(sandbox, tmp_path):
    code = ("import sys\nchunk = b'x' * 2**20\nsys.stdout.buffer.write(b'START')\n"
            "for _ in range(1024): sys.stdout.buffer.write(chunk)\n"
            "sys.stdout.buffer.write(b'END')\n")
    outcome = run(sandbox, tmp_path, code, limits=limits(wall_s=60, log_bytes=1000))
    assert outcome.exit_code == 0
    assert not outcome.timed_out
    assert outcome.stdout.startswith("START")
    assert outcome.stdout.endswith("END")
    assert f"[… {2**30 + 8 - 1000} bytes cut …]" in outcome.stdout
    assert len(outcome.stdout) < 1100


def test_output_dir_flood_is_bounded(sandbox, tmp_path):
    code = (
        "import errno\nwritten = 0\ntry:\n    with open('/out/big', 'wb') as f:\n"
        "        for _ in range(256):\n            f.write(b'x' * 2**20); f.flush()\n"
        "            written += 2**20\nexcept OSError as e:\n    print(e.errno, written)\n"
    )
    outcome = run(sandbox, tmp_path, code, limits=limits(output_bytes=4 * MiB, file_bytes=2**30))
    code_errno, written = map(int, outcome.stdout.split())
    assert code_errno == errno.ENOSPC
    assert written <= 4 * MiB
    assert outcome.output_exceeded
    kept = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*"))
    assert kept <= 4 * MiB


def test_many_files_flood_is_bounded(sandbox, tmp_path):
    code = (
        "n = 0\ntry:\n    while n < 100000:\n        open(f'/out/f{n}', 'w').close(); n += 1\n"
        "except OSError as e:\n    print(e.errno, n)\n"
    )
    outcome = run(sandbox, tmp_path, code)
    code_errno, n = map(int, outcome.stdout.split())
    assert code_errno == errno.ENOSPC
    assert n < 5000
    assert outcome.output_exceeded
    assert len(list((tmp_path / "out").iterdir())) <= n


def test_file_size_limit(sandbox, tmp_path):
    code = (
        "try:\n    open('/tmp/f', 'wb').write(b'x' * 2 * 2**20)\n"
        "except OSError as e:\n    print(e.errno)\n"
    )
    outcome = run(sandbox, tmp_path, code, limits=limits(file_bytes=MiB))
    assert outcome.stdout.strip() == str(errno.EFBIG)


@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_tmp_flood_is_bounded_by_tmp_bytes(sandbox, tmp_path, folder):
    code = (
        "import sys\nwritten = 0\ntry:\n    with open(sys.argv[1] + '/big', 'wb') as f:\n"
        "        for _ in range(64):\n            f.write(b'x' * 2**20); f.flush()\n"
        "            written += 2**20\nexcept OSError as e:\n    print(e.errno, written)\n"
    )
    outcome = run(sandbox, tmp_path, code, folder,
                  limits=limits(tmp_bytes=4 * MiB, file_bytes=2**30))
    code_errno, written = map(int, outcome.stdout.split())
    assert code_errno == errno.ENOSPC
    assert written <= 4 * MiB


def test_links_and_special_files_in_out_are_not_copied(sandbox, tmp_path):
    code = (
        "import os\n"
        "open('/out/data.txt', 'w').write('ok')\n"
        "os.mkdir('/out/sub'); open('/out/sub/nested.txt', 'w').write('n')\n"
        "os.symlink('/etc/passwd', '/out/passwd_link')\n"
        "os.symlink('/', '/out/root_link')\n"
        "os.mkfifo('/out/fifo')\n"
        "open('/out/hard1', 'w').write('h'); os.link('/out/hard1', '/out/hard2')\n"
    )
    outcome = run(sandbox, tmp_path, code)
    assert outcome.exit_code == 0
    out = tmp_path / "out"
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert found == ["data.txt", "sub", "sub/nested.txt"]
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert (out / "data.txt").read_text() == "ok"
    assert "passwd_link (symlink)" in outcome.stderr
    assert "fifo (fifo)" in outcome.stderr
    assert "hard1 (hard link)" in outcome.stderr


# --------------------------------------------------------------------------- isolation


def test_read_only_places_cannot_be_written(sandbox, tmp_path):
    code = (
        "import json, sys\nres = {}\n"
        # sys.prefix: unless the venv lives under /tmp, where the job has its own tmpfs anyway
        "for path in ['/submission/new.py', '/submission/numpy_nn.py', '/etc/passwd', '/x',"
        " '/usr/evil'] + ([] if sys.prefix.startswith('/tmp/') else [sys.prefix + '/evil']):\n"
        "    try:\n        open(path, 'a').close(); res[path] = 'written'\n"
        "    except OSError as e:\n        res[path] = e.errno\n"
        "print(json.dumps(res))\n"
    )
    outcome = run(sandbox, tmp_path, code)
    results = json.loads(outcome.stdout)
    assert set(results.values()) <= {errno.EROFS, errno.EACCES}, results
    assert not (tmp_path / "submission" / "new.py").exists()


def test_proc_sys_is_read_only(sandbox, tmp_path):
    # bwrap: /proc/sys belongs to host root, which is unmapped in the job's user namespace
    # (EACCES; /proc is read-only besides, EROFS). docker: the job is a real unprivileged uid,
    # refused before the engine's read-only /proc/sys.
    code = (
        "import os\ntry:\n    os.close(os.open('/proc/sys/vm/swappiness', os.O_WRONLY))\n"
        "    print('writable')\nexcept OSError as e:\n    print(e.errno)\n"
    )
    outcome = run(sandbox, tmp_path, code)
    expected = {errno.EROFS, errno.EACCES}
    assert int(outcome.stdout) in expected


def test_host_files_are_invisible(sandbox, tmp_path):
    marker = tmp_path / "host-tmp-marker"
    marker.write_text("secret")
    code = (
        "import json, os, sys\n"
        "paths = ['/work/main/grader', '/work/shared', '/root/.ssh', '/etc/shadow',"
        " '/var/lib/postgresql', '/var', '/home', '/run', '/sys', '/opt', sys.argv[1]]\n"
        "print(json.dumps({'exists': {p: os.path.exists(p) for p in paths},"
        " 'tmp': os.listdir('/tmp'), 'etc': sorted(os.listdir('/etc')),"
        " 'root': os.listdir('/'), 'user': [os.getuid(), os.getgid()],"
        " 'host': os.uname().nodename}))\n"
    )
    outcome = run(sandbox, tmp_path, code, str(marker))
    seen = json.loads(outcome.stdout)
    # Docker always mounts a read-only sysfs, and adds /.dockerenv and its own /etc files.
    engine_extras = {"root": {"sys", ".dockerenv"}, "etc": {"hostname", "resolv.conf", "mtab"},
                     "exists": {"/sys"}} if sandbox.name == "docker" else {}
    found = {path for path, there in seen["exists"].items() if there}
    assert found <= engine_extras.get("exists", set()), found
    # Empty, but for the way down to the interpreter when the checkout itself lives in /tmp.
    prefixes = {p for p in (sys.prefix, sys.base_prefix) if p.startswith("/tmp/")}
    assert set(seen["tmp"]) <= {Path(p).relative_to("/tmp").parts[0] for p in prefixes}
    assert marker.name not in seen["tmp"]
    assert set(seen["etc"]) <= {"passwd", "group", "nsswitch.conf", "hosts", "ld.so.cache",
                                "ld.so.conf", "ld.so.conf.d", "localtime"} | engine_extras.get("etc", set())
    assert "shadow" not in seen["etc"]
    # The interpreter is mounted at its own path, so its top folder shows (/work here, /check in CI).
    interpreter_tops = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix)}
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
                                 "proc", "dev", "tmp", "out", "submission"} | interpreter_tops \
        | engine_extras.get("root", set())
    # bwrap: 65534 in its user namespace (host uid grader-sandbox); docker: that host uid itself.
    assert seen["user"] == ([65534, 65534] if sandbox.name == "bwrap" else list(sandbox.ids))
    assert seen["host"] == "sandbox"


def test_only_the_interpreter_prefixes_are_visible(sandbox, tmp_path):
    code = ("import json, os, sys\nseen = {}\n"
            "for p in [sys.prefix, sys.base_prefix]:\n"
            "    while p != '/':\n        parent = os.path.dirname(p)\n"
            "        seen[parent] = sorted(os.listdir(parent))\n        p = parent\n"
            "print(json.dumps(seen))\n")
    outcome = run(sandbox, tmp_path, code)
    listings = json.loads(outcome.stdout)
    prefixes = {sys.prefix, sys.base_prefix}
    for parent, names in listings.items():
        if parent == "/":
            continue
        for name in names:  # every entry on the way down leads to a prefix, nothing else
            path = os.path.join(parent, name)
            assert any(p == path or p.startswith(path + "/") for p in prefixes), path


def test_network_is_unreachable(sandbox, tmp_path):
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            "import json, socket, sys\nres = {}\n"
            "for port in (5432, 6379, int(sys.argv[1])):\n"
            "    s = socket.socket(); s.settimeout(2)\n"
            "    try:\n        s.connect(('127.0.0.1', port)); res[str(port)] = 'connected'\n"
            "    except OSError as e:\n        res[str(port)] = e.errno\n"
            "    finally:\n        s.close()\n"
            "try:\n    socket.getaddrinfo('example.com', 80); res['dns'] = 'resolved'\n"
            "except OSError:\n    res['dns'] = 'failed'\n"
            "s = socket.socket(); s.settimeout(2)\n"
            "try:\n    s.connect(('1.1.1.1', 53)); res['out'] = 'connected'\n"
            "except OSError as e:\n    res['out'] = e.errno\n"
            "res['ifaces'] = [n for _, n in socket.if_nameindex()]\n"
            "print(json.dumps(res))\n"
        )
        outcome = run(sandbox, tmp_path, code, str(port))
    finally:
        listener.close()
    res = json.loads(outcome.stdout)
    for key in ("5432", "6379", str(port)):
        assert res[key] == errno.ECONNREFUSED, res
    assert res["dns"] == "failed"
    assert res["out"] == errno.ENETUNREACH
    assert res["ifaces"] == ["lo"]


def test_only_its_own_processes_are_visible(sandbox, tmp_path):
    code = ("import json, os\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
            "init = open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode()\n"
            "print(json.dumps([pids, os.getpid(), init]))\n")
    outcome = run(sandbox, tmp_path, code)
    pids, own, init = json.loads(outcome.stdout)
    assert pids == [1, own]  # the backend's init and the job: nothing of the host
    if sandbox.name == "bwrap":  # the docker runtime uses a few pids itself while it starts
        assert own == 2
    assert init.endswith({"bwrap": "bwrap", "docker": "docker-init"}[sandbox.name])


# --------------------------------------------------------------------------- configuration


def test_writable_extra_mount_is_refused(sandbox, tmp_path):
    request = make_request(tmp_path, "pass")
    bad = RunRequest(argv=request.argv, python=PY, mounts=(Mount(tmp_path, "/scratch", True),),
                     output_dir=tmp_path / "out", limits=LIMITS)
    with pytest.raises(GraderFault, match="writable"):
        sandbox.run(bad)


@pytest.mark.parametrize("target", ["/tmp/x", "/out", "/proc/x", "relative", "/a/../b", "/"])
def test_bad_mount_target_is_refused(sandbox, tmp_path, target):
    request = RunRequest(argv=(str(PY), "-c", "pass"), python=PY, mounts=(Mount(tmp_path, target),),
                         output_dir=tmp_path / "out", limits=LIMITS)
    with pytest.raises(GraderFault):
        sandbox.run(request)


def test_sandbox_set_up_failure_is_a_grader_fault(sandbox, tmp_path):
    with pytest.raises(GraderFault, match="could not set up the sandbox") as info:
        run(sandbox, tmp_path, "pass", cwd="/nonexistent")
    assert "nonexistent" in info.value.detail
    assert not run_units(sandbox)


def test_unknown_backend_is_refused():
    with pytest.raises(GraderFault, match="unknown sandbox backend"):
        get_sandbox(SandboxSettings(backend="chroot"))


def test_cgroups_required_but_unusable_is_a_grader_fault():
    with pytest.raises(GraderFault, match="GRADER_REQUIRE_CGROUPS=0"):
        BwrapSandbox(SandboxSettings(require_cgroups=True), use_cgroups=False)


def test_rlimit_fallback_without_cgroups(tmp_path):
    box = BwrapSandbox(SandboxSettings(require_cgroups=False, work_dir=tmp_path),
                       use_cgroups=False)
    outcome = box.run(make_request(tmp_path, "open('/out/r', 'w').write('ok')"))
    assert outcome.exit_code == 0
    assert (tmp_path / "out" / "r").read_text() == "ok"
    assert outcome.enforced["memory"].startswith("RLIMIT_AS")
    bomb = "x = []\nfor _ in range(32): x.append(b'\\x01' * 2**26)"
    outcome = box.run(make_request(tmp_path, bomb))
    assert outcome.out_of_memory
    assert outcome.exit_code == 1


# --------------------------------------------------------------------------- cgroups module


def test_cgroup_lifecycle_on_the_real_hierarchy():
    root = find_cgroups()
    group = root.create()
    try:
        enforced = group.configure(memory_bytes=64 * MiB, processes=8, cpus=0.5)
        assert enforced["memory"] == root.version
        procs = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in group.procs_files()]

        def join() -> None:
            for fd in procs:
                os.write(fd, str(os.getpid()).encode())

        # a parent that keeps forking setsid'd children that ignore SIGTERM
        code = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "while True:\n    try:\n        if os.fork() == 0:\n            os.setsid()\n"
                "            time.sleep(600)\n    except OSError:\n        time.sleep(0.01)\n")
        proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=join)
        for fd in procs:
            os.close(fd)
        time.sleep(0.5)
        members = group.pids()
        assert proc.pid in members
        assert len(members) > 1
        assert group.stats().pids_limit_hits > 0  # it hit pids.max = 8
        assert group.kill_all(timeout_s=5)
        proc.wait(timeout=5)
        assert proc.returncode == -signal.SIGKILL
        assert group.pids() == set()
        assert all(is_dead(pid) for pid in members - {proc.pid})
    finally:
        assert group.remove()
        root.remove_parents_if_empty()
    assert not any(d.exists() for d in group.dirs)


def test_cgroup_detection_reads_this_machine():
    mounts = read_mounts()
    own = read_own_cgroups()
    assert any(m.fstype in ("cgroup", "cgroup2") for m in mounts)
    assert "" in own or "memory" in own


def test_cgroup_detection_explains_what_is_missing(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"41 31 0:38 / {tmp_path / 'unified'} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("cpu io\n")
    own = tmp_path / "cgroup"
    own.write_text("0::/\n")
    with pytest.raises(CgroupUnavailable) as info:
        find_cgroups(mountinfo=mountinfo, own_cgroup=own)
    message = str(info.value)
    assert "does not offer the memory and pids controller" in message
    assert "cgroup v1: no memory or pids hierarchy mounted" in message


def _fake_v2_dir(path: Path, files: dict[str, str]) -> None:
    """Stand in for the kernel creating interface files on mkdir (file logic only)."""
    path.mkdir(exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)


def test_cgroup_v2_file_logic_on_a_fake_tree(tmp_path):
    base = tmp_path / "job"
    _fake_v2_dir(base, {"cgroup.controllers": "cpu io memory pids\n",
                        "cgroup.subtree_control": ""})
    _fake_v2_dir(base / "grader", {"cgroup.controllers": "cpu memory pids\n",
                                   "cgroup.subtree_control": ""})
    root = CgroupV2Root(base / "grader")
    assert root.controllers == ("cpu", "memory", "pids")
    root._ensure_parents()
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (base / "grader" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    run = base / "grader" / "run-1"
    interface = ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max", "cpu.max",
                 "cgroup.procs", "cgroup.kill")
    _fake_v2_dir(run, dict.fromkeys(interface, ""))
    group = CgroupV2({"memory": run, "pids": run, "cpu": run})
    enforced = group.configure(memory_bytes=256 * MiB, processes=32, cpus=1.5)
    assert (run / "memory.max").read_text() == str(256 * MiB)
    assert (run / "memory.swap.max").read_text() == "0"
    assert (run / "memory.oom.group").read_text() == "1"
    assert (run / "pids.max").read_text() == "32"
    assert (run / "cpu.max").read_text() == "150000 100000"
    assert enforced == {"memory": "cgroup v2", "pids": "cgroup v2",
                        "swap": "cgroup v2 (memory.swap.max=0)", "cpu": "cgroup v2 (cpu.max)",
                        "kill": "cgroup.kill"}
    assert group.procs_files() == (run / "cgroup.procs",)
    (run / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
    (run / "pids.events").write_text("max 3\n")
    (run / "memory.peak").write_text("123456\n")
    stats = group.stats()
    assert (stats.oom_kills, stats.memory_limit_hits, stats.pids_limit_hits,
            stats.peak_memory_bytes) == (1, 7, 3, 123456)
    assert group.kill_all()  # empty cgroup.procs: nothing to kill
    assert (run / "cgroup.kill").read_text() == ""
    assert group._kill_atomic()
    assert (run / "cgroup.kill").read_text() == "1"


# --------------------------------------------------------------------------- small pieces


def test_head_tail_keeps_both_ends():
    capture = HeadTail(10)
    for piece in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        capture.feed(piece)
    assert capture.text() == "abcde\n[… 16 bytes cut …]\nvwxyz"
    short = HeadTail(10)
    short.feed(b"0123456789")
    assert short.text() == "0123456789"
    broken = HeadTail(100)
    broken.feed(b"\xff ok")
    assert broken.text() == "\ufffd ok"


def test_head_tail_drops_the_expected_prefix():
    marked = HeadTail(10, prefix=b"<go>")
    for piece in (b"<g", b"o>ab", b"c"):
        marked.feed(piece)
    assert marked.prefix_seen
    assert marked.text() == "abc"
    other = HeadTail(10, prefix=b"<go>")
    for piece in (b"<g", b"x"):
        other.feed(piece)
    assert not other.prefix_seen
    assert other.text() == "<gx"


def test_local_path_translation():
    path_map = {"/out": "/host/out", "/submission": "/host/sub", "/submission/x": "/other"}
    assert translate("/submission/a.py", path_map) == "/host/sub/a.py"
    assert translate("/submission/x/y", path_map) == "/other/y"
    assert translate("/submissions", path_map) == "/submissions"
    assert translate("/out", path_map) == "/host/out"
    assert translate("--flag", path_map) == "--flag"


# --------------------------------------------------------------------------- local backend


def test_local_backend_runs_with_translated_paths(tmp_path):
    box = get_sandbox(SandboxSettings(backend="local", work_dir=tmp_path))
    code = ("import json, os, sys\nopen(sys.argv[1], 'w').write(open(sys.argv[2]).read())\n"
            f"print(json.dumps(json.loads(os.environ['{PATH_MAP_ENV}'])))\n")
    request = make_request(tmp_path, code, "/out/copy.py", "/submission/numpy_nn.py")
    outcome = box.run(request)
    assert outcome.backend == "local"
    assert outcome.exit_code == 0, outcome.stderr
    assert (tmp_path / "out" / "copy.py").read_text() == "X = 1\n"
    path_map = json.loads(outcome.stdout)
    assert path_map["/submission"] == str((tmp_path / "submission").resolve())
    assert path_map["/out"] == str((tmp_path / "out").resolve())
    assert outcome.enforced["network"] == "NOT isolated"


def test_local_backend_times_out(tmp_path):
    box = get_sandbox(SandboxSettings(backend="local", work_dir=tmp_path))
    outcome = box.run(make_request(tmp_path, "while True: pass", limits=limits(wall_s=1)))
    assert outcome.timed_out
    assert outcome.stopped_reason == "did not finish within 1 s"
    assert outcome.signal == signal.SIGKILL
    assert outcome.wall_s < 2
