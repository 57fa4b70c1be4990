"""Hostile submissions, through the real ``grade()`` on both isolating backends.

Each row of ATTACKS is one attack and the behaviour it must get: the exact status of the
attacked part, words of its message a student can act on, and whether the part may pass.
Every result is also checked for the host's secrets (planted before the run: a leaderboard
database, another student's submission, a concurrent grading folder, an environment variable
and a listening socket): none may appear anywhere in it. Probes report what they reached as
``PROBE <what they read>`` or ``PROBE blocked <error>``, so a leak shows up in the message.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from grader.config import Assignment
from grader.datasets.manifest import load_manifest
from grader.pipeline import grade
from grader.result import GradeResult, Status
from tests.conftest import ROOT, SOLUTION, quick

GOOD_NUMPY = (SOLUTION / "numpy_nn.py").read_text()
GOOD_CNN = (SOLUTION / "pytorch_cnn.py").read_text()
MiB = 2**20
SECRET = f"HOSTILE-{uuid.uuid4().hex}"  # never written into student code, only into host files
ENV_MARKER = "GRADER_HOSTILE_MARKER"
ABSTRACT = f"grader-hostile-{uuid.uuid4().hex[:8]}"

NP, MYNET = ("numpy_nn",), ("mynet",)


def probe(body: str) -> str:
    """Module code that runs ``body`` (returning what it reached) and reports it in an exception."""
    inner = "\n".join("    " + line for line in body.strip().splitlines())
    return (f"def _probe():\n{inner}\n"
            "try:\n    _found = repr(_probe())\n"
            "except BaseException as _exc:\n    _found = 'blocked ' + type(_exc).__name__\n"
            "raise RuntimeError('PROBE ' + _found[:300])\n")


def at_exit(base: str, plant: str) -> str:
    """``base``, plus ``plant`` run just before the runner reports it has finished every part.

    (Patching ``os._exit`` does not work: the runner looks it up before it starts.)
    """
    inner = "\n".join("            " + line for line in plant.strip().splitlines())
    return (base + "\nimport os\nfrom runner import common as _common\n"
            "_event = _common.Progress.event\n"
            "def _hooked_event(self, event, part, **fields):\n    if event == 'finished':\n"
            f"        try:\n{inner}\n        except Exception:\n            pass\n"
            "    return _event(self, event, part, **fields)\n"
            "_common.Progress.event = _hooked_event\n")


def read(path: str) -> str:
    return probe(f"with open({path!r}, 'rb') as fh:\n    return fh.read(200)")


def write(path: str) -> str:
    return probe(f"with open({path!r}, 'a') as fh:\n    fh.write('pwned')\nreturn 'wrote ' + {path!r}")


def connect(*addresses: tuple[str, int]) -> str:
    return probe(
        "import socket\ngot = []\n"
        f"for host, port in {list(addresses)!r}:\n"
        "    with socket.create_connection((host, port), timeout=2) as s:\n"
        "        got.append(s.recv(200))\nreturn got"
    )


def forge(save: str) -> str:
    """pytorch_cnn.py that replaces every prediction file after the runner is done."""
    return at_exit(GOOD_CNN, "import glob, numpy as np\nfor path in glob.glob('/out/mynet/*.npy'):\n"
                             f"    n = len(np.load(path))\n    {save}")


def classify_returns(expr: str) -> str:
    return GOOD_CNN + f"\nimport numpy as np, torch\ndef classify(model, x):\n    return {expr}\n"


BLOCKED = (Status.CRASHED, "PROBE blocked", False)
TIMED_OUT = (Status.TIMED_OUT, "did not finish within", False)
FINE = (Status.GRADED, "All 42 layer tests passed", True)
UNUSABLE = (Status.GRADED, "the predictions could not be used", False)

# id: (parts graded, file -> attack code, (status, message words, attacked part may pass))
ATTACKS: dict[str, tuple[tuple[str, ...], dict[str, str], tuple[Status, str, bool]]] = {
    # ---- time
    "endless loop at import": (NP, {"numpy_nn.py": "while True:\n    pass\n"}, TIMED_OUT),
    "endless sleep at import": (NP, {"numpy_nn.py": "import time\ntime.sleep(10**6)\n"}, TIMED_OUT),
    "endless loop in a layer": (NP, {"numpy_nn.py": GOOD_NUMPY + "\ndef _spin(self, *a):\n"
                                 "    while True:\n        pass\nReLU.forward = _spin\n"}, TIMED_OUT),
    "sleeping thread left behind": (NP, {"numpy_nn.py": GOOD_NUMPY + "\nimport threading, time\n"
                                     "threading.Thread(target=time.sleep, args=(10**6,)).start()\n"},
                                    FINE),
    "endless sleep in forward": (MYNET, {"pytorch_cnn.py": GOOD_CNN + "\nimport time\n"
                                 "MyNet.forward = lambda self, x: time.sleep(10**6)\n"}, TIMED_OUT),
    # ---- processes and memory
    "fork bomb": (NP, {"numpy_nn.py": "import os\nwhile True:\n    try:\n        os.fork()\n"
                                      "    except OSError:\n        pass\n"},
                  TIMED_OUT),  # each failed fork is caught, so it spins until its limit
    "thread bomb": (NP, {"numpy_nn.py": "import threading, time\nwhile True:\n"
                                        "    threading.Thread(target=time.sleep, args=(10**6,)).start()\n"},
                    (Status.CRASHED, "can't start new thread", False)),
    "memory bomb": (NP, {"numpy_nn.py": "import numpy as np\nx = [np.ones(2**27) for _ in range(100)]\n"},
                    (Status.OUT_OF_MEMORY, "memory limit", False)),
    # ---- floods
    "stdout flood": (NP, {"numpy_nn.py": GOOD_NUMPY + "\nimport sys\nfor _ in range(200):\n"
                                         "    sys.stdout.write('x' * 2**20)\n"}, FINE),
    "stderr flood": (NP, {"numpy_nn.py": GOOD_NUMPY + "\nimport sys\nfor _ in range(200):\n"
                                         "    sys.stderr.write('x' * 2**20)\n"}, FINE),
    "closes stdout and stderr": (NP, {"numpy_nn.py": GOOD_NUMPY + "\nimport os\nos.close(1)\nos.close(2)\n"},
                                 FINE),
    "output folder flood": (NP, {"numpy_nn.py": "with open('/out/junk', 'wb') as f:\n    while True:\n"
                                                "        f.write(b'x' * 2**20)\n"},
                            (Status.CRASHED, "output folder", False)),
    "tmp flood": (NP, {"numpy_nn.py": "with open('/tmp/junk', 'wb') as f:\n    while True:\n"
                                      "        f.write(b'x' * 2**20)\n"},
                  (Status.CRASHED, "filled the output folder or /tmp", False)),
    # ---- writing where it must not
    "write own submission": (NP, {"numpy_nn.py": write("/submission/numpy_nn.py")}, BLOCKED),
    "write new file in submission": (NP, {"numpy_nn.py": write("/submission/evil.py")}, BLOCKED),
    "write /usr": (NP, {"numpy_nn.py": write("/usr/lib/evil")}, BLOCKED),
    "write /etc/passwd": (NP, {"numpy_nn.py": write("/etc/passwd")}, BLOCKED),
    "write the runner": (NP, {"numpy_nn.py": write("/opt/runner/runner/common.py")}, BLOCKED),
    "write the job plan": (NP, {"numpy_nn.py": write("/job/plan.json")}, BLOCKED),
    "write the hidden inputs": (NP, {"numpy_nn.py": probe(
        "import glob\npath = sorted(glob.glob('/inputs/**/*.npy', recursive=True))[0]\n"
        "with open(path, 'r+b') as fh:\n    fh.write(b'x')\nreturn 'wrote ' + path")}, BLOCKED),
    "write the python packages": (NP, {"numpy_nn.py": probe(
        "import numpy\nwith open(numpy.__file__, 'a') as fh:\n    fh.write('#')\nreturn numpy.__file__")},
                                  BLOCKED),
    # ---- reading what it must not
    "read the labels": (NP, {"numpy_nn.py": read("@LABELS@")}, BLOCKED),
    "read the manifest": (NP, {"numpy_nn.py": read("@MANIFEST@")}, BLOCKED),
    "read the leaderboard database": (NP, {"numpy_nn.py": read("@SQLITE@")}, BLOCKED),
    "read another submission": (NP, {"numpy_nn.py": read("@OTHER@")}, BLOCKED),
    "read a concurrent grading folder": (NP, {"numpy_nn.py": probe(
        "import glob\nreturn [open(p).read() for p in glob.glob('@WORKGLOB@')] or "
        "open('/nonexistent')")}, BLOCKED),
    "read the grader's source": (NP, {"numpy_nn.py": read(str(ROOT / "grader" / "judge.py"))}, BLOCKED),
    "read the reference solution": (NP, {"numpy_nn.py": read(str(SOLUTION / "pytorch_cnn.py"))}, BLOCKED),
    "import the grader": (NP, {"numpy_nn.py": probe("import grader.judge\nreturn grader.judge.__file__")},
                          BLOCKED),
    "read /etc/shadow": (NP, {"numpy_nn.py": read("/etc/shadow")}, BLOCKED),
    "postgres socket": (NP, {"numpy_nn.py": probe(
        "import socket\ns = socket.socket(socket.AF_UNIX)\n"
        "s.connect('/var/run/postgresql/.s.PGSQL.5432')\nreturn 'connected'")}, BLOCKED),
    "docker socket": (NP, {"numpy_nn.py": probe(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/var/run/docker.sock')\n"
        "return 'connected'")}, BLOCKED),
    "abstract unix socket": (NP, {"numpy_nn.py": probe(
        f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0{ABSTRACT}')\n"
        "return s.recv(200)")}, BLOCKED),
    "other processes in /proc": (NP, {"numpy_nn.py": probe(
        "import os\nseen = []\nfor pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n    except OSError:\n"
        "        continue\n    if any(a.endswith((b'pytest', b'dockerd', b'containerd', b'postgres'))\n"
        "           for a in cmd.split(b'\\0')):\n"
        "        seen.append(cmd[:80])\nreturn seen or open('/nonexistent')")}, BLOCKED),
    # The host paths of the mounts (run folders, hidden data, the project) must not show in
    # any command line, environment or open file inside: bwrap's own argv once held them all.
    # The interpreter is bound at its own host path by design (SECURITY.md), so it is masked;
    # the job's own argv must be seen, or the probe proves nothing.
    "host paths in /proc/*/cmdline, environ, fds": (NP, {"numpy_nn.py": probe(
        "import os, stat, sys\ntexts = []\nfor pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    for name in ('cmdline', 'environ'):\n        try:\n"
        "            texts.append(open(f'/proc/{pid}/{name}', 'rb').read())\n"
        "        except OSError:\n            pass\n"
        "    try:\n        fds = os.listdir(f'/proc/{pid}/fd')\n    except OSError:\n        fds = []\n"
        "    for fd in fds:\n        try:\n            path = f'/proc/{pid}/fd/{fd}'\n"
        "            texts.append(os.readlink(path).encode())\n"
        "            if stat.S_ISREG(os.stat(path).st_mode):\n"
        "                with open(path, 'rb') as fh:\n                    texts.append(fh.read(2**20))\n"
        "        except OSError:\n            pass\n"
        "text = b'\\n'.join(texts).decode(errors='replace')\n"
        "for prefix in {sys.prefix, sys.base_prefix}:\n    text = text.replace(prefix, '<python>')\n"
        "if '/opt/runner/runner/__main__.py' not in text:\n    return 'nothing seen: ' + text[:200]\n"
        "return [p for p in @HOSTPATHS@ if p in text] or open('/nonexistent')")}, BLOCKED),
    "host environment": (NP, {"numpy_nn.py": probe(
        "import os, glob\nvalues = list(os.environ.values())\n"
        "for path in glob.glob('/proc/*/environ'):\n    try:\n"
        "        values += open(path, 'rb').read().decode(errors='replace').split('\\0')\n"
        "    except OSError:\n        pass\n"
        "return [v for v in values if 'HOSTILE' in v] or open('/nonexistent')")}, BLOCKED),
    # ---- network
    "host service on loopback": (NP, {"numpy_nn.py": connect(("127.0.0.1", "@PORT@"))}, BLOCKED),
    "host service on its own address": (NP, {"numpy_nn.py": connect(("@HOSTIP@", "@PORT@"))}, BLOCKED),
    "docker bridge gateway": (NP, {"numpy_nn.py": connect(("172.17.0.1", "@PORT@"))}, BLOCKED),
    "postgres and redis on loopback": (NP, {"numpy_nn.py": connect(("127.0.0.1", 5432),
                                                                   ("127.0.0.1", 6379))}, BLOCKED),
    "the internet": (NP, {"numpy_nn.py": connect(("1.1.1.1", 53))}, BLOCKED),
    "dns": (NP, {"numpy_nn.py": probe("import socket\nreturn socket.getaddrinfo('pypi.org', 443)")},
            BLOCKED),
    "udp out": (NP, {"numpy_nn.py": probe(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "return s.sendto(b'x', ('8.8.8.8', 53))")}, BLOCKED),
    # ---- exits and kills
    "os._exit(0) at import": (NP, {"numpy_nn.py": "import os\nos._exit(0)\n"},
                              (Status.CRASHED, "ended abruptly", False)),
    "sys.exit(0) at import": (NP, {"numpy_nn.py": "import sys\nsys.exit(0)\n"},
                              (Status.CRASHED, "exit(0)", False)),
    "kill the parent": (NP, {"numpy_nn.py": "import os\nos.kill(os.getppid(), 9)\nimport time\n"
                                            "time.sleep(10**6)\n"}, TIMED_OUT),
    "kill everything": (NP, {"numpy_nn.py": "import os\nos.kill(-1, 9)\n"},
                        (Status.CRASHED, "ProcessLookupError", False)),  # nothing else to kill
    # ---- forged results
    "fake done event then exit": (NP, {"numpy_nn.py": (
        "import json, os, time\nwith open('/out/progress.jsonl', 'a') as fh:\n"
        "    fh.write(json.dumps({'event': 'done', 'part': 'numpy_nn', 't': time.time()}) + '\\n')\n"
        "    fh.write(json.dumps({'event': 'finished', 'part': '', 't': time.time()}) + '\\n')\n"
        "os._exit(0)\n")}, (Status.GRADED, "0 of 42 layer tests passed", False)),
    "patched progress reports done": (NP, {"numpy_nn.py": (
        "from runner import common\n_event = common.Progress.event\n"
        "common.Progress.event = lambda self, e, p, **kw: _event(self, 'done' if e == 'failed' else e, p)\n"
        "raise ValueError('broken')\n")}, (Status.GRADED, "0 of 42 layer tests passed", False)),
    "garbage progress lines": (NP, {"numpy_nn.py": GOOD_NUMPY + (
        "\nwith open('/out/progress.jsonl', 'a') as fh:\n    fh.write('{not json\\n' + 'y' * 200000 + '\\n'"
        " + '[1, 2]\\n' + '{\"event\": \"done\", \"part\": 7}\\n')\n")}, FINE),
    "prints a perfect score": (NP, {"numpy_nn.py": (
        "import sys\nfor s in (sys.stdout, sys.stderr):\n"
        "    s.write('Score 100/100: numpy_nn passed, All 42 layer tests passed.\\n')\n")},
        (Status.GRADED, "0 of 42 layer tests passed", False)),
    "forged layer outputs after the run": (NP, {"numpy_nn.py": at_exit(GOOD_NUMPY,
        "import glob, numpy as np\nfor path in glob.glob('/out/numpy_nn/*.npz'):\n"
        "    np.savez(path, out=np.zeros(1))")},
        (Status.GRADED, "layer tests passed; first failure", False)),
    "numpy comparisons patched": (NP, {"numpy_nn.py": GOOD_NUMPY + (
        "\nimport numpy\nnumpy.equal = numpy.isclose = numpy.allclose = lambda *a, **k: True\n"
        "numpy.mean = lambda *a, **k: 1.0\nnumpy.array_equal = lambda *a, **k: True\n"
        "def _zero(self, x, *a, **k):\n    return numpy.zeros_like(x)\nReLU.forward = _zero\n")},
        (Status.GRADED, "layer tests passed; first failure", False)),
    "torch patched to agree": (MYNET, {"pytorch_cnn.py": classify_returns(
                                           "torch.zeros(len(x), dtype=torch.long)")
                                       + "\ntorch.Tensor.argmax = lambda self, *a, **k: 'patched'\n"
                                       "torch.Tensor.__eq__ = lambda self, other: torch.ones(1)\n"
                                       "np.mean = lambda *a, **k: 1.0\n"},
                               (Status.GRADED, "not passed", False)),
    "symlink to a host file as predictions": (MYNET, {"pytorch_cnn.py": forge(
        "os.unlink(path)\n    os.symlink('@LABELS@', path)")}, UNUSABLE),
    "symlink to / in the output folder": (NP, {"numpy_nn.py": at_exit(GOOD_NUMPY,
                                          "os.symlink('/', '/out/root')\n"
                                          "os.symlink('/', '/out/numpy_nn/x')")},
                                          FINE),
    "hard link of a host file into the output folder": (NP, {"numpy_nn.py": probe(
        "import os\nos.link('/etc/passwd', '/out/passwd')\nreturn 'linked'")}, BLOCKED),
    "predictions overwritten with zeros": (MYNET, {"pytorch_cnn.py": forge(
        "np.save(path, np.zeros(n, dtype=np.int64))")}, (Status.GRADED, "not passed", False)),
    "pickled predictions file": (MYNET, {"pytorch_cnn.py": forge(
        "np.save(path, np.array([object()] * n), allow_pickle=True)")},
        (Status.GRADED, "not a plain array", False)),
    "float predictions file": (MYNET, {"pytorch_cnn.py": forge("np.save(path, np.full(n, np.nan))")},
                               (Status.GRADED, "integer class indices", False)),
    "wrong shape predictions file": (MYNET, {"pytorch_cnn.py": forge(
        "np.save(path, np.zeros((n, 2), int))")},
                                     (Status.GRADED, "predictions, found shape", False)),
    "giant sparse predictions file": (MYNET, {"pytorch_cnn.py": forge(
        "with open(path, 'r+b') as fh:\n        fh.truncate(2**30)")},
        # the sandbox's file-size limit refuses the 1 GiB file: the honest predictions stand
        (Status.GRADED, "; passed (pass above", True)),
    "out of range class indices": (MYNET, {"pytorch_cnn.py": classify_returns(
        "torch.full((len(x),), 10**9, dtype=torch.long)")}, (Status.GRADED, "must lie in 0..9", False)),
    # ---- what classify returns
    "classify returns NaN": (MYNET, {"pytorch_cnn.py": classify_returns(
        "torch.full((len(x),), float('nan'))")},
                             (Status.CRASHED, "integer class indices", False)),
    "classify returns pickled objects": (MYNET, {"pytorch_cnn.py": classify_returns(
        "np.array([object()] * len(x))")}, (Status.CRASHED, "TypeError", False)),
    "classify returns a giant array": (MYNET, {"pytorch_cnn.py": classify_returns(
        "torch.zeros(len(x) * 1000, dtype=torch.long)")}, (Status.CRASHED, "shape (B,)", False)),
}


# --------------------------------------------------------------------------- fixtures


def _serve(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.sendall(SECRET.encode())


@pytest.fixture(scope="module")
def host(grader_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Secrets on the host: files, a database, a concurrent job, TCP and abstract sockets."""
    sqlite = grader_home / "leaderboard.sqlite"
    with sqlite3.connect(sqlite) as db:
        db.execute("CREATE TABLE IF NOT EXISTS secret (value TEXT)")
        db.execute("INSERT INTO secret VALUES (?)", (SECRET,))
    db.close()
    other = grader_home / "submissions" / "other-student" / "numpy_nn.py"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_text(f"# {SECRET}\n")
    work = Path(tempfile.mkdtemp(prefix="grade-"))
    (work / "submission").mkdir()
    (work / "submission" / "numpy_nn.py").write_text(f"# {SECRET}\n")
    tcp = socket.create_server(("0.0.0.0", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(f"\0{ABSTRACT}")
    unix.listen()
    for server in (tcp, unix):
        threading.Thread(target=_serve, args=(server,), daemon=True).start()
    probe_ip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe_ip.connect(("10.255.255.255", 1))
        host_ip = probe_ip.getsockname()[0]
    except OSError:
        host_ip = "127.0.0.2"
    finally:
        probe_ip.close()
    manifest = load_manifest(grader_home / "hidden" / "cnn")
    labels = next(iter(manifest.datasets["fashion_mnist"].splits.values())).labels
    tokens = {
        "@LABELS@": str(labels if labels.is_absolute() else manifest.root / labels),
        "@MANIFEST@": str(manifest.root / "manifest.json"),
        "@SQLITE@": str(sqlite), "@OTHER@": str(other),
        "@WORKGLOB@": f"{tempfile.gettempdir()}/grade-*/submission/*.py",
        '"@PORT@"': str(tcp.getsockname()[1]), "'@PORT@'": str(tcp.getsockname()[1]),
        "@HOSTIP@": host_ip,
        # grade()'s run folders, the sandboxes' own, pytest's (hidden data, zips), the project
        "@HOSTPATHS@": repr([f"{tempfile.gettempdir()}/grade-", f"{tempfile.gettempdir()}/grader-",
                             str(tmp_path_factory.getbasetemp()), str(grader_home), str(ROOT)]),
    }
    yield tokens
    tcp.close()
    unix.close()
    assert other.read_text() == f"# {SECRET}\n"  # nothing lost
    with sqlite3.connect(sqlite) as db:
        assert db.execute("SELECT value FROM secret").fetchall() == [(SECRET,)]
    db.close()


def only(assignment: Assignment, names: tuple[str, ...]) -> Assignment:
    spec = quick(assignment, memory_bytes=1536 * MiB, output_bytes=8 * MiB, tmp_bytes=8 * MiB)
    return dataclasses.replace(spec, parts=tuple(p for p in spec.parts if p.name in names))


def assert_no_secret(result: GradeResult) -> None:
    text = result.to_json()
    assert SECRET not in text
    assert "HOSTILE-" not in text


# --------------------------------------------------------------------------- the attacks


# What these attacks forge is judged by the host from the files the job left in /out, the same
# way whichever sandbox ran it: they run once, on bwrap. Every attack on the sandbox itself
# (limits, files, processes, network, /proc, links planted in /out) runs on both backends.
JUDGED_ON_THE_HOST = (
    "fake done event then exit", "patched progress reports done", "garbage progress lines",
    "prints a perfect score", "forged layer outputs after the run", "numpy comparisons patched",
    "torch patched to agree", "predictions overwritten with zeros", "pickled predictions file",
    "float predictions file", "wrong shape predictions file", "out of range class indices",
    "classify returns NaN", "classify returns pickled objects", "classify returns a giant array",
)
# An attack that can only time out needs no room for real work: a short limit keeps it quick.
# One that must end by another stop gets room for it: the cgroup's memory kill takes 6-10 s
# of reclaim on a busy 2-core machine, after which a 6 s limit would report a time-out.
SHORT_LIMITS_S = {"endless sleep in forward": 8.0, "memory bomb": 40.0}


# Docker runs one or more attacks of every class the sandbox itself must stop (time, processes,
# memory, floods, writes, reads, sockets, /proc, network, exits, links planted in /out); bwrap,
# the default, runs every attack. Variants within a class (another path to write, another
# address to reach) differ in what they aim at, not in which mechanism of the backend stops them.
ON_DOCKER_TOO = (
    "endless loop at import", "endless sleep in forward", "fork bomb", "thread bomb",
    "memory bomb", "stdout flood", "output folder flood", "tmp flood",
    "write own submission", "write /usr", "write the runner", "write the python packages",
    "read the labels", "read the leaderboard database", "read another submission",
    "read a concurrent grading folder", "read the grader's source", "docker socket",
    "postgres socket", "abstract unix socket", "other processes in /proc",
    "host paths in /proc/*/cmdline, environ, fds", "host environment", "host service on loopback",
    "host service on its own address", "docker bridge gateway", "the internet", "dns",
    "kill the parent", "kill everything", "symlink to / in the output folder",
    "hard link of a host file into the output folder", "symlink to a host file as predictions",
)


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a not in JUDGED_ON_THE_HOST])
def test_attack(attack, host, settings, make_submission, assignment, monkeypatch):
    check_attack(attack, host, settings, make_submission, assignment, monkeypatch)


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["docker"], indirect=True)
@pytest.mark.parametrize("attack", ON_DOCKER_TOO)
def test_attack_on_docker(attack, host, backend_settings, make_submission, assignment, monkeypatch):
    check_attack(attack, host, backend_settings, make_submission, assignment, monkeypatch)


def test_every_docker_attack_is_an_attack() -> None:
    assert set(ON_DOCKER_TOO) <= set(ATTACKS) - set(JUDGED_ON_THE_HOST)


@pytest.mark.parametrize("attack", JUDGED_ON_THE_HOST)
def test_attack_judged_on_the_host(attack, host, settings, make_submission, assignment, monkeypatch):
    check_attack(attack, host, settings, make_submission, assignment, monkeypatch)


def check_attack(attack, host, backend_settings, make_submission, assignment, monkeypatch):
    names, files, (status, words, may_pass) = ATTACKS[attack]
    monkeypatch.setenv(ENV_MARKER, SECRET)
    overrides = {}
    for filename, code in files.items():
        for token, value in host.items():
            code = code.replace(token, value)
        overrides[filename.replace(".", "__")] = code
    spec = only(assignment, names)
    if attack in SHORT_LIMITS_S:
        spec = dataclasses.replace(spec, parts=tuple(
            dataclasses.replace(p, time_limit_s=SHORT_LIMITS_S[attack]) for p in spec.parts))
    limit_s = {p.name: p.time_limit_s for p in spec.parts}
    result = grade(make_submission(**overrides), spec, backend_settings)
    part = result.part(names[0])
    assert part is not None
    assert (part.status, part.passed) == (status, may_pass), part.message
    assert words in part.message, part.message
    if status is not Status.GRADED:  # the whole result leads with the part that did not finish
        assert words in result.message, result.message
    assert result.status is status
    if not may_pass:
        assert part.score < part.max_score, part.message
    if status is Status.TIMED_OUT:  # stopped at its own limit, not the sandbox's
        assert limit_s[part.name] <= part.runtime_s < limit_s[part.name] + 5
    assert result.environment["backend"] == backend_settings.sandbox.backend
    assert_no_secret(result)


def test_grader_still_grades_correctly_afterwards(host, backend_settings, make_submission, assignment):
    """After every attack above, a normal submission still grades fully on the same backend."""
    result = grade(make_submission(), only(assignment, ("numpy_nn", "mynet")), backend_settings)
    assert result.status is Status.GRADED, result.message
    assert result.part("numpy_nn").passed, result.part("numpy_nn").message
    assert result.part("mynet").status is Status.GRADED
    assert os.environ.get(ENV_MARKER) is None
    assert_no_secret(result)


# --------------------------------------------------------------------------- determinism


def _stable(result: GradeResult) -> dict:
    data = result.to_dict()
    for key in ("runtime_s", "environment"):
        data.pop(key)
    for part in data["parts"]:
        part.pop("runtime_s")
    return data


def test_same_submission_grades_identically(settings, make_submission, assignment):
    """Graded twice, a submission gets the same result down to every metric and message."""
    archive = make_submission()
    spec = only(assignment, ("numpy_nn", "mynet"))
    first, second = grade(archive, spec, settings), grade(archive, spec, settings)
    assert first.status is Status.GRADED, first.message
    assert _stable(first) == _stable(second)
