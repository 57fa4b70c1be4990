"""Submissions that misbehave get a clear status and message; the grader and other parts survive."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from grader.pipeline import grade
from grader.result import Status
from tests.conftest import SOLUTION, quick

GOOD_NUMPY = (SOLUTION / "numpy_nn.py").read_text()
GOOD_CNN = (SOLUTION / "pytorch_cnn.py").read_text()

CASES = {
    # name: (files to replace, {part: expected status}, words expected in that part's message)
    "crash at import": (
        {"pytorch_cnn.py": "import torch\nraise ValueError('boom at import')\n"},
        {"numpy_nn": Status.GRADED, "mynet": Status.CRASHED, "finetune": Status.CRASHED},
        ("ValueError", "boom at import", "line 2"),
    ),
    "endless loop at import": (
        {"numpy_nn.py": "while True:\n    pass\n"},
        {"numpy_nn": Status.TIMED_OUT, "mynet": Status.GRADED, "finetune": Status.GRADED},
        ("did not finish within",),
    ),
    "endless sleep in forward": (
        {"pytorch_cnn.py": GOOD_CNN + "\nimport time\nMyNet.forward = lambda self, x: time.sleep(10**6)\n"},
        {"numpy_nn": Status.GRADED, "mynet": Status.TIMED_OUT, "finetune": Status.GRADED},
        ("did not finish within",),
    ),
    "memory bomb": (
        {"numpy_nn.py": "import numpy as np\nx = [np.ones(2**27) for _ in range(100)]\n"},
        {"numpy_nn": Status.OUT_OF_MEMORY, "mynet": Status.GRADED, "finetune": Status.GRADED},
        ("memory limit",),
    ),
    "fork bomb": (
        {"numpy_nn.py": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                        "        pass\n"},
        {"mynet": Status.GRADED, "finetune": Status.GRADED},
        (),
    ),
    "print flood": (
        {"numpy_nn.py": GOOD_NUMPY + "\nimport sys\nfor _ in range(200):\n"
                                     "    sys.stdout.write('x' * 2**20)\n"},
        {"numpy_nn": Status.GRADED, "mynet": Status.GRADED, "finetune": Status.GRADED},
        (),
    ),
    "output folder flood": (
        {"numpy_nn.py": "with open('/out/junk', 'wb') as f:\n    while True:\n"
                        "        f.write(b'x' * 2**20)\n"},
        {"numpy_nn": Status.CRASHED, "mynet": Status.GRADED, "finetune": Status.GRADED},
        ("output folder",),
    ),
    "exit early with success": (
        {"numpy_nn.py": "import os\nos._exit(0)\n"},
        {"numpy_nn": Status.CRASHED, "mynet": Status.GRADED, "finetune": Status.GRADED},
        ("ended abruptly",),
    ),
    "sys.exit": (
        {"pytorch_cnn.py": "import sys\nsys.exit(0)\n"},
        {"mynet": Status.CRASHED, "finetune": Status.CRASHED},
        ("exit(0)",),
    ),
    "downloads pretrained weights": (
        {"pytorch_cnn.py": GOOD_CNN + "\nimport torchvision\n_Old = FinetuneNet\n"
         "class FinetuneNet(_Old):\n    def __init__(self):\n        super().__init__()\n"
         "        torchvision.models.resnet18(weights='IMAGENET1K_V1')\n"},
        {"numpy_nn": Status.GRADED, "mynet": Status.GRADED, "finetune": Status.CRASHED},
        ("network", "pretrained weights"),
    ),
    "wrong checkpoint keys": (
        {"finetuned.pt": "MODEL_PT"},
        {"finetune": Status.CRASHED},
        ("does not match FinetuneNet()", "missing keys"),
    ),
    "pickled module as checkpoint": (
        {"model.pt": "PICKLED_MODULE"},
        {"mynet": Status.CRASHED, "finetune": Status.GRADED},
        ("state_dict()",),
    ),
    "classify returns scores": (
        {"pytorch_cnn.py": GOOD_CNN + "\ndef classify(model, x):\n    return model(x)\n"},
        {"numpy_nn": Status.GRADED, "mynet": Status.CRASHED, "finetune": Status.CRASHED},
        ("shape (B,)",),
    ),
}


# A part that can only time out needs no room for real work: a short limit keeps the case quick.
# Per-case part limits: short for a case that can only time out; long for one that must end
# by another stop (the cgroup's memory kill takes 6-10 s of reclaim on a busy 2-core machine,
# and a 6 s limit would then report a time-out instead).
SHORT_LIMITS_S = {"endless sleep in forward": {"mynet": 8.0}, "memory bomb": {"numpy_nn": 40.0}}


def _bytes(value: str, checkpoints, tmp_path) -> bytes:
    if value == "MODEL_PT":
        return checkpoints["model.pt"].read_bytes()
    if value == "PICKLED_MODULE":
        import torch

        path = tmp_path / "whole.pt"
        torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), path)
        return path.read_bytes()
    return value.encode()


# Every case runs on bwrap, whole (all three parts: the point here is that the other parts
# survive). On docker, the attacks themselves (limits, floods, exits, network) are each run by
# tests/test_hostile.py part by part; here docker gets the cases whose survival depends on how
# the engine stops a job: the memory kill, and a download refused without a network.
ON_DOCKER_TOO = ("memory bomb", "downloads pretrained weights")


@pytest.mark.parametrize("case", CASES)
def test_failure_mode(case, make_submission, assignment, settings, checkpoints, tmp_path):
    check_failure_mode(case, make_submission, assignment, settings, checkpoints, tmp_path)


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["docker"], indirect=True)
@pytest.mark.parametrize("case", ON_DOCKER_TOO)
def test_failure_mode_on_docker(case, make_submission, assignment, backend_settings, checkpoints,
                                tmp_path):
    check_failure_mode(case, make_submission, assignment, backend_settings, checkpoints, tmp_path)


def check_failure_mode(case, make_submission, assignment, backend_settings, checkpoints, tmp_path):
    files, expected, words = CASES[case]
    overrides = {k.replace(".", "__"): _bytes(v, checkpoints, tmp_path) for k, v in files.items()}
    spec = quick(assignment, memory_bytes=1536 * 2**20, output_bytes=8 * 2**20)
    short = SHORT_LIMITS_S.get(case, {})
    spec = dataclasses.replace(spec, parts=tuple(
        dataclasses.replace(p, time_limit_s=short.get(p.name, p.time_limit_s)) for p in spec.parts))
    limits_s = {p.name: p.time_limit_s for p in spec.parts}
    result = grade(make_submission(**overrides), spec, backend_settings)
    statuses = {p.name: p.status for p in result.parts}
    for part, status in expected.items():
        assert statuses[part] is status, (part, result.part(part).message)
    if words:
        bad = next(p for p in result.parts if expected.get(p.name, Status.GRADED) is not Status.GRADED)
        for word in words:
            assert word in bad.message, bad.message
    assert result.runtime_s < 120
    for part in result.parts:
        if part.status is Status.TIMED_OUT:  # stopped at its own limit, not the sandbox's
            assert limits_s[part.name] <= part.runtime_s < limits_s[part.name] + 5
    # The untouched parts still earn their points: nothing is hidden by the failure.
    if statuses.get("finetune") is Status.GRADED:
        assert set(result.part("finetune").metrics) == {"ORIG", "AUG", "NEW", "weighted"}
    if expected.get("numpy_nn") is Status.GRADED:
        assert result.part("numpy_nn").passed


def test_no_network_inside(make_submission, assignment, backend_settings):
    probe = (
        "import socket\nreached = []\n"
        "for host, port in [('127.0.0.1', 5432), ('127.0.0.1', 6379), ('127.0.0.1', 5672),"
        " ('pypi.org', 443), ('1.1.1.1', 53)]:\n"
        "    try:\n        socket.create_connection((host, port), timeout=2).close()\n"
        "        reached.append(f'{host}:{port}')\n"
        "    except OSError:\n        pass\n"
        "if reached:\n    raise RuntimeError('NETWORK REACHED ' + ' '.join(reached))\n"
    )
    result = grade(make_submission(numpy_nn__py=GOOD_NUMPY + '\n' + probe), assignment, backend_settings)
    assert result.part("numpy_nn").passed, result.part("numpy_nn").message


def test_labels_are_not_reachable_from_inside(make_submission, assignment, backend_settings):
    """A submission walks the sandbox's whole filesystem and environment looking for the labels."""
    data = backend_settings.data_dir / "cnn"
    secrets = [*(data / "labels").rglob("*.npy"), data / "manifest.json"]
    digests = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in secrets)
    assert digests
    scan = f"""
import hashlib, json, os
DIGESTS = set({digests!r})
LIMIT = {max(p.stat().st_size for p in secrets) + 1}
hits, files, env = [], 0, sorted(os.environ)
for top in ['/']:
    for root, dirs, names in os.walk(top):
        if root.startswith(('/proc', '/sys', '/dev')):
            dirs[:] = []
            continue
        for name in names:
            path = os.path.join(root, name)
            files += 1
            if str({str(backend_settings.data_dir)!r}) in path:
                hits.append(path)
            try:
                if os.path.getsize(path) < LIMIT:  # the labels are small; skip torch's big libraries
                    with open(path, 'rb') as fh:
                        if hashlib.sha256(fh.read()).hexdigest() in DIGESTS:
                            hits.append('CONTENT ' + path)
            except OSError:
                pass
raise RuntimeError('SCAN ' + json.dumps({{'hits': len(hits), 'first': hits[:1], 'files': files,
                                        'env': ','.join(env)}}))
"""
    # The walk reads every small file of the interpreter and the venv: give it time, so a busy
    # machine cannot turn the scan into a time-out (which would prove nothing).
    parts = tuple(dataclasses.replace(p, time_limit_s=600.0) if p.name == "numpy_nn" else p
                  for p in assignment.parts if p.name == "numpy_nn")
    spec = dataclasses.replace(assignment, parts=parts,
                               limits=dataclasses.replace(assignment.limits, startup_s=120))
    result = grade(make_submission(numpy_nn__py=scan), spec, backend_settings)
    message = result.part("numpy_nn").message
    assert "SCAN " in message, message
    report = json.loads(message.split("SCAN ", 1)[1].split("}", 1)[0] + "}")
    assert report["files"] > 1000, "the scan saw too little to mean anything"
    assert report["hits"] == 0, report["first"]
    assert set(report["env"].split(",")) <= {"PATH", "HOME", "LANG", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                  "OPENBLAS_NUM_THREADS", "TORCH_HOME", "HF_HUB_OFFLINE",
                                  "CUDA_VISIBLE_DEVICES", "LC_CTYPE", "PWD"}
