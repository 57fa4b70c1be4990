"""Hostile jobs against the sandbox itself, on both isolating backends (issue 11, items 1 and 3).

- The label walk: a job reads every file it can see and reports SHA-256s; none may be a hidden
  labels file or a raw file the hidden sets were built from (FashionMNIST's IDX files).
- The tamper run: a job tries chmod, chown, utime, truncate and open(…, "w") on every path it
  can see, /dev included; on the host, no file it saw changed mode, owner, ctime or content.
- The host uid: read on the host while the job runs, it is the grader-sandbox user's, never 0.

The jobs run with the mounts the pipeline gives a real grade (the submission, the hidden set's
inputs, the job folder, the runner), so what they can reach is what a student's code reaches.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pwd
import sys
import uuid
from pathlib import Path

import pytest

from grader.config import SandboxSettings, Settings
from grader.datasets.manifest import load_manifest
from grader.errors import GraderFault
from grader.pipeline import RUNNER_DIR
from grader.sandbox import Mount, RunRequest, SandboxLimits, base, get_sandbox
from grader.sandbox.base import sandbox_host_ids
from grader.sandbox.cgroups import mount_points
from grader.sandbox.runtime import runtime_for
from grader.sandbox.views import persistent_view
from tests.conftest import ROOT, SOLUTION

PY = Path(sys.executable)
MiB = 2**20
FASHION = Path("/usr/share/datasets/fashion-mnist")
LIMITS = SandboxLimits(wall_s=300, memory_bytes=1024 * MiB, processes=32, output_bytes=8 * MiB,
                       tmp_bytes=8 * MiB, log_bytes=8192)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def sandbox(backend: str, tmp_path_factory: pytest.TempPathFactory):
    return get_sandbox(SandboxSettings(backend=backend, python=str(PY),
                                       work_dir=tmp_path_factory.mktemp(f"runs-{backend}")))


@pytest.fixture
def mounts(tmp_path: Path, grader_home: Path) -> tuple[Mount, ...]:
    """What the pipeline mounts for a grade: submission, hidden inputs, job folder, runner."""
    submission = tmp_path / "submission"
    submission.mkdir(mode=0o755)
    for name in ("numpy_nn.py", "pytorch_cnn.py"):
        (submission / name).write_bytes((SOLUTION / name).read_bytes())
        (submission / name).chmod(0o644)
    job = tmp_path / "job"
    job.mkdir(mode=0o755)
    (job / "plan.json").write_text("{}")
    (job / "plan.json").chmod(0o644)
    inputs = load_manifest(Settings(home=grader_home).data_dir / "cnn").inputs_dir
    return (Mount(submission, "/submission"), Mount(inputs, "/inputs"), Mount(job, "/job"),
            Mount(RUNNER_DIR, "/opt/runner/runner"))


def run(sandbox, tmp_path: Path, mounts, code: str, *args: str, poll=None):
    request = RunRequest(argv=(str(PY), "-I", "-c", code, *args), python=PY, mounts=mounts,
                         output_dir=tmp_path / "out", limits=LIMITS)
    return sandbox.run(request, poll=poll)


# --------------------------------------------------------------------------- the label walk

def secret_digests(grader_home: Path) -> dict[str, str]:
    """SHA-256 -> what it is, for every file whose content would leak the hidden answers."""
    secrets: dict[str, bytes] = {}
    homes = {grader_home, Settings().home}  # the tests' hidden sets and the demo's, if built
    for home in homes:
        data = Settings(home=home).data_dir
        if data.is_dir():
            for path in data.rglob("*"):
                if path.is_file() and ("labels" in path.parts or path.name == "manifest.json"):
                    secrets[str(path)] = path.read_bytes()
    for path in sorted(FASHION.glob("*.gz")):  # the raw files the MyNet set is built from
        secrets[str(path)] = path.read_bytes()
        if "labels" in path.name or "t10k" in path.name:
            secrets[f"{path} (decompressed)"] = gzip.decompress(path.read_bytes())
    assert secrets, "no hidden labels or raw dataset files found: the walk would prove nothing"
    return {sha256(content): name for name, content in secrets.items()}


WALK = r"""
import hashlib, json, os, sys, time
sizes = set(json.loads(sys.argv[1]))
report = {'files': 0, 'unreadable': 0, 'digests': {}, 'complete': True}
deadline = time.monotonic() + 240
for root, dirs, names in os.walk('/'):
    if root in ('/proc', '/sys') or root.startswith(('/proc/', '/sys/')):
        dirs[:] = []
        continue
    if time.monotonic() > deadline:
        report['complete'] = False
        break
    for name in names:
        path = os.path.join(root, name)
        try:
            if not os.path.isfile(path):
                continue
            report['files'] += 1
            if os.path.getsize(path) in sizes:  # equal digests need equal sizes
                with open(path, 'rb') as fh:
                    report['digests'][path] = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            report['unreadable'] += 1
with open('/out/walk.json', 'w') as fh:
    json.dump(report, fh)
"""


def test_no_file_inside_is_a_hidden_labels_file(sandbox, tmp_path, mounts, grader_home):
    secrets = secret_digests(grader_home)
    sizes = set()
    for name in secrets.values():
        path = Path(name.removesuffix(" (decompressed)"))
        sizes.add(len(gzip.decompress(path.read_bytes())) if name.endswith(")") else path.stat().st_size)
    # The positive control: a file planted in the submission must be found by the walk.
    canary = os.urandom(4093)
    submission = mounts[0].source
    (submission / "canary.bin").write_bytes(canary)
    (submission / "canary.bin").chmod(0o644)
    sizes.add(len(canary))
    outcome = run(sandbox, tmp_path, mounts, WALK, json.dumps(sorted(sizes)))
    assert outcome.exit_code == 0, outcome.stderr
    report = json.loads((tmp_path / "out" / "walk.json").read_text())
    assert report["complete"], "the walk ran out of time"
    assert report["files"] > 1000, "the walk saw too little to mean anything"
    assert report["digests"].get("/submission/canary.bin") == sha256(canary)
    leaked = {path: secrets[digest] for path, digest in report["digests"].items() if digest in secrets}
    assert not leaked, leaked
    assert not any(p.startswith("/usr/share") for p in report["digests"])


def test_host_data_and_project_tree_are_not_visible(sandbox, tmp_path, mounts):
    # The project's own files (its venv may be bound, below the checkout, but nothing else).
    project = [str(ROOT / name) for name in ("grader", "tests", "hidden_tests", "pyproject.toml",
                                             "var", ".git")]
    code = ("import json, os, sys\nprint(json.dumps({p: os.path.exists(p) for p in "
            "['/usr/share', '/usr/share/datasets', '/usr/local/etc', '/usr/bin'] + sys.argv[1:]}))\n")
    outcome = run(sandbox, tmp_path, mounts, code, *project)
    seen = json.loads(outcome.stdout)
    assert not seen["/usr/share/datasets"]
    assert not [p for p in project if seen[p]], "the project tree is visible"
    if sandbox.name == "bwrap":  # docker's image is its own bare userland, with /usr/bin
        assert not any(seen.values()), seen


# --------------------------------------------------------------------------- the tamper run

TAMPER = r"""
import json, os, sys
own = ('/out', '/tmp', '/dev/shm', '/proc', '/sys')
done, tried = [], 0
paths = []
for root, dirs, names in os.walk('/'):
    if root in own or root.startswith(tuple(p + '/' for p in own)):
        dirs[:] = []
        continue
    paths += [p for p in (os.path.join(root, n) for n in dirs + names) if p not in own]
paths += ['/', '/dev', '/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']
def attempts(path):
    yield 'chmod', lambda: os.chmod(path, 0o777)
    yield 'chmod000', lambda: os.chmod(path, 0)
    yield 'chown', lambda: os.chown(path, os.getuid(), os.getgid())
    yield 'chown0', lambda: os.chown(path, 0, 0)
    yield 'utime', lambda: os.utime(path, (0, 0))
    if os.path.isfile(path):
        yield 'truncate', lambda: os.truncate(path, 0)
        yield 'open-w', lambda: open(path, 'w').close()
for path in paths:
    try:
        st = os.stat(path)
    except OSError:
        continue
    for what, attempt in attempts(path):
        tried += 1
        try:
            attempt()
            done.append(f'{what} {os.path.realpath(path)}')  # docker's /etc/mtab -> /proc
        except OSError:
            continue
        try:  # should this ever work, leave the machine usable (chmod 000 /dev/null ...)
            os.chmod(path, st.st_mode & 0o7777)
            os.chown(path, st.st_uid, st.st_gid)
        except OSError:
            pass
with open('/out/tamper.json', 'w') as fh:
    json.dump({'tried': tried, 'paths': len(paths), 'done': done[:200]}, fh)
"""


def host_state(paths: list[Path]) -> dict[str, tuple]:
    """Mode, owner, ctime, link count and (small regular files) content digest of each path."""
    state = {}
    for path in paths:
        st = os.stat(path)
        digest = ""
        if path.is_file() and st.st_size < 4 * MiB:
            digest = sha256(path.read_bytes())
        state[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_ctime_ns, st.st_nlink,
                            st.st_size, digest)
    return state


def changed(before: tuple, after: tuple) -> bool:
    """Whether the job changed the file. A new or removed hard link elsewhere also moves the
    ctime (here: worktrees whose venvs are hard-linked copies), so the ctime counts only when
    the link count stayed the same."""
    if before[3] != after[3] and before[4] != after[4]:
        return before[:3] + before[5:] != after[:3] + after[5:]
    return before != after


def test_job_cannot_change_host_files_it_sees(sandbox, tmp_path, mounts):
    import numpy

    submission = mounts[0].source
    watched = [Path(p) for p in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                 "/dev/urandom", "/dev/tty") if os.path.exists(p)]
    watched += [Path(os.path.realpath(PY)), PY.parent, Path(os.__file__), Path(os.__file__).parent,
                Path(numpy.__file__), Path(json.__file__), Path("/etc/ld.so.cache"),
                submission, *submission.iterdir(), mounts[1].source, mounts[2].source,
                *mounts[2].source.iterdir(), RUNNER_DIR / "__main__.py"]
    libc = Path(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"))
    if libc.exists():
        watched.append(libc)
    before = host_state(watched)
    outcome = run(sandbox, tmp_path, mounts, TAMPER)
    assert outcome.exit_code == 0, outcome.stderr
    report = json.loads((tmp_path / "out" / "tamper.json").read_text())
    assert report["paths"] > 1000, "the job saw too little to mean anything"
    after = host_state(watched)
    moved = {path: (before[path], after[path]) for path in before
             if changed(before[path], after[path])}
    assert not moved, (moved, report["done"][:20])
    # Nothing of the host may be changed from inside; only the job's own /dev (a fresh tmpfs
    # under bwrap, the engine's nodes under docker) and its own /proc files may be.
    host_changes = [d for d in report["done"] if not any(
        d.split(" ", 1)[1] == own or d.split(" ", 1)[1].startswith(own + "/")
        for own in ("/dev", "/proc"))]
    assert not host_changes, host_changes[:20]


# --------------------------------------------------------------------------- the host uid

def test_job_runs_as_the_sandbox_user_on_the_host(sandbox, tmp_path, mounts):
    marker = f"uid-probe-{uuid.uuid4().hex}"
    code = ("import os, sys, time\nopen('/out/mine', 'w').close()\n"
            "deadline = time.monotonic() + 60\n"
            "while not os.path.exists('/out/stop') and time.monotonic() < deadline:\n"
            "    time.sleep(0.05)\n")
    seen: dict[str, object] = {}

    def poll(live_out: Path) -> str | None:
        mine = live_out / "mine"
        if "file" not in seen and mine.exists():
            st = mine.stat()
            seen["file"] = (st.st_uid, st.st_gid)
            seen["root"] = live_out.stat().st_uid
            seen["procs"] = job_uids(marker)
            (live_out / "stop").touch()
        return None

    outcome = run(sandbox, tmp_path, mounts, code, marker, poll=poll)
    assert outcome.exit_code == 0, outcome.stderr
    uid, gid = sandbox_host_ids()
    assert uid != 0
    assert gid != 0
    assert seen["file"] == (uid, gid), seen
    assert seen["root"] == uid, "the tmpfs root of /out belongs to the sandbox user"
    assert seen["procs"], "no job process found on the host"
    for uids in seen["procs"]:  # real, effective, saved and file-system uid of every process
        assert set(uids) == {uid}, seen["procs"]
    assert outcome.enforced["user"].count(str(uid)) >= 1


def job_uids(marker: str) -> list[list[int]]:
    """The Uid: line (real, effective, saved, fs) of each job process: the interpreter run with
    ``marker`` in its argv (not bwrap or the docker CLI, which carry the job's argv too)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if marker.encode() in argv and argv[0] == os.fsencode(PY):
            line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
            found.append([int(v) for v in line.split()[1:]])
    return found


# --------------------------------------------------------------------------- set-up rules

@pytest.mark.skipif(os.geteuid() != 0, reason="a grader that is not root runs jobs as itself")
def test_root_grader_without_the_sandbox_user_refuses_with_the_fix(monkeypatch):
    monkeypatch.setattr(base, "SANDBOX_USER", f"no-such-user-{uuid.uuid4().hex[:8]}")
    with pytest.raises(GraderFault, match=r"does not exist; run scripts/sandbox-user\.sh"):
        base.sandbox_host_ids()


def test_sandbox_user_is_never_root():
    uid, gid = sandbox_host_ids()
    assert uid != 0
    assert gid != 0
    if os.geteuid() == 0:
        assert pwd.getpwuid(uid).pw_name == base.SANDBOX_USER
    else:
        assert uid == os.geteuid()


def test_runtime_holds_no_host_data():
    runtime = runtime_for(str(PY))
    every = [*runtime.dirs, *runtime.files, *(link for link, _ in runtime.links)]
    assert not [p for p in every if p.startswith(("/usr/share", "/usr/local/etc", "/etc/")) and
                p != "/etc/ld.so.cache"]
    assert not [p for p in every if p.startswith(str(ROOT) + "/") and
                not p.startswith(sys.prefix + "/")], "only the venv of the project tree is bound"
    assert any(os.path.basename(p).startswith("ld-linux") for p in runtime.files), \
        "the dynamic loader"


@pytest.mark.skipif(os.geteuid() != 0, reason="views are made by a root grader only")
def test_views_are_made_once_and_read_only():
    source = os.path.dirname(os.path.realpath(os.__file__))  # the stdlib (under /root here)
    first, second = persistent_view(source), persistent_view(source)
    assert first == second
    assert sum(1 for m in mount_points() if m == first) == 1
    with pytest.raises(OSError, match="Read-only"):
        os.utime(first, None)


def test_mount_the_sandbox_user_cannot_read_is_refused(sandbox, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    if os.geteuid() != 0:
        pytest.skip("a grader that is not root runs jobs as itself, the owner")
    with pytest.raises(GraderFault, match=rf"not readable by the sandbox user \(uid {sandbox.ids[0]}"):
        run(sandbox, tmp_path, (Mount(private, "/submission"),), "pass")
