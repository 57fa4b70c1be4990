"""Everything the job leaves in /out is hostile input to the host (issue 11, item 4).

Each case is a real submission graded by the real ``grade()`` in the bwrap sandbox, whose
code writes a hostile file into /out: a forged array header, a zip bomb, poisoned or
flooding progress events, forged timings, undecodable text. Whatever it writes, the host
must come back with a result for that part (its true outcome, or "damaged or forged output"),
never a grader fault and never a crash; within bounded host memory and CPU; as strict JSON
(no NaN) that is valid UTF-8, and that the web app can store and show.

What these attacks forge is judged by the host from the files in /out, the same way whichever
sandbox ran the job: they run on bwrap (the sandbox side of /out is covered on both backends by
tests/test_hostile.py).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from grader.config import Assignment, SandboxSettings, Settings
from grader.pipeline import grade
from grader.result import GradeResult, Status
from tests.conftest import SOLUTION, build_submission, quick
from tests.test_hostile import at_exit

GOOD_NUMPY = (SOLUTION / "numpy_nn.py").read_text()
GOOD_CNN = (SOLUTION / "pytorch_cnn.py").read_text()
MiB = 2**20
TERA = 2**40


def npy_header(shape: str, descr: str = "<i8") -> str:
    """Python source for the bytes of a .npy header (version 1.0) claiming ``shape``."""
    return (f"(lambda h: b'\\x93NUMPY\\x01\\x00' + len(h).to_bytes(2, 'little') + h.encode())"
            f"(\"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\".ljust(117) "
            "+ '\\n')")


# A deflated .npz member that inflates to 2 GiB: a 16 MiB block of zeros compressed once
# and repeated (a full flush makes each copy stand alone), so it is made in a second.
ZIP_BOMB = '''
import struct, zlib
def _bomb(path, name="forward.npy", blocks=128):
    head = @HEADER@
    zero = bytes(2**24)
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = first.compress(head) + first.flush(zlib.Z_FULL_FLUSH)
    again = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = again.compress(zero) + again.flush(zlib.Z_FULL_FLUSH)
    stream += block * blocks + again.flush()
    size = len(head) + blocks * len(zero)
    crc = zlib.crc32(head)
    for _ in range(blocks):
        crc = zlib.crc32(zero, crc)
    raw = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(stream), size,
                        len(raw), 0) + raw
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc,
                          len(stream), size, len(raw), 0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                      len(local) + len(stream), 0)
    with open(path, "wb") as fh:
        fh.write(local + stream + central + end)
'''.replace("@HEADER@", npy_header(f"({2**31 // 8},)", "<f8"))


def progress_lines(*lines: str) -> str:
    """numpy_nn.py: the correct layers, plus raw lines appended to the progress file at import."""
    text = "".join(line + "\n" for line in lines)
    return GOOD_NUMPY + f"\nwith open('/out/progress.jsonl', 'a') as _fh:\n    _fh.write({text!r})\n"


FLOOD = (GOOD_NUMPY + "\nimport time as _t\n_line = ('{\"event\": \"start\", \"part\": \"numpy_nn\", "
         "\"t\": %r}\\n' % _t.time()).encode()\n"
         "with open('/out/progress.jsonl', 'ab') as _fh:\n"
         "    _fh.write(_line * (40 * 2**20 // len(_line)))\n")

NP, MYNET = ("numpy_nn",), ("mynet",)
GRADED_FINE = (Status.GRADED, "All 42 layer tests passed", True)
FORGED_CASE = (Status.GRADED, "damaged or forged output", False)
TIMED_OUT = (Status.TIMED_OUT, "did not finish within", False)

# id: (parts graded, file -> code, (status of the part, words of its message, part passes))
CASES: dict[str, tuple[tuple[str, ...], dict[str, str], tuple[Status, str, bool]]] = {
    "layer npz member claims a huge shape": (NP, {"numpy_nn.py": at_exit(GOOD_NUMPY, (
        "import io, numpy as np, zipfile\nbuf = io.BytesIO()\n"
        "with zipfile.ZipFile('/out/numpy_nn/lin0.npz', 'w') as zf:\n"
        f"    zf.writestr('forward.npy', {npy_header(f'({TERA}, {TERA})', '<f8')} + bytes(64))\n"))},
        FORGED_CASE),
    "layer npz is a zip bomb": (NP, {"numpy_nn.py": at_exit(GOOD_NUMPY + ZIP_BOMB,
                                                            "_bomb('/out/numpy_nn/lin0.npz')\n")},
                                FORGED_CASE),
    "progress: huge numbers, NaN, deep nesting": (NP, {"numpy_nn.py": progress_lines(
        '{"event": "start", "part": "numpy_nn", "t": 1' + "0" * 5000 + "}",
        '{"event": "done", "part": "numpy_nn", "t": 1e999}',
        '{"event": "failed", "part": "numpy_nn", "t": NaN, "message": NaN}',
        '{"event": "failed", "part": "numpy_nn", "x": ' + "[" * 20000 + "]" * 20000 + "}",
        '{"event": "failed", "part": ["numpy_nn"]}',
        '{"event": "done", "part": {"numpy_nn": 1}}',
    )}, GRADED_FINE),
    "progress: 40 MiB of events": (NP, {"numpy_nn.py": FLOOD}, GRADED_FINE),
    "progress: start of a part that does not exist": (NP, {"numpy_nn.py": (
        "import json, time\nwith open('/out/progress.jsonl', 'a') as fh:\n"
        "    fh.write(json.dumps({'event': 'start', 'part': 'elsewhere', 't': time.time()}) + '\\n')\n"
        "time.sleep(10**6)\n")}, TIMED_OUT),
    "progress: late start forges a tiny runtime": (NP, {"numpy_nn.py": GOOD_NUMPY + (
        "\nimport json, time\ndef _event(**e):\n    with open('/out/progress.jsonl', 'a') as fh:\n"
        "        fh.write(json.dumps(dict(e, t=time.time())) + '\\n')\n"
        "_event(event='start', part='elsewhere')\ntime.sleep(@LIMIT@ + 3)\n"
        "_event(event='start', part='numpy_nn')\n")}, TIMED_OUT),
    "exception text with a lone surrogate": (NP, {"numpy_nn.py": (
        "import os\nraise OSError('cannot read ' + os.fsdecode(b'weights\\xff\\x00.bin') + ' \\x1b[2J')\n")},
        (Status.CRASHED, "cannot read weights\ufffd\ufffd.bin", False)),
}


def spec_for(assignment: Assignment, names: tuple[str, ...]) -> Assignment:
    spec = quick(assignment, memory_bytes=1536 * MiB)
    return dataclasses.replace(spec, parts=tuple(p for p in spec.parts if p.name in names))


def strict_json(text: str) -> Any:
    """``text`` parsed as strict JSON: valid UTF-8, no NaN or infinity."""
    text.encode("utf-8")  # no lone surrogate survives

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the result JSON")

    return json.loads(text, parse_constant=refuse)


def graded(archive: Path, spec: Assignment, settings) -> tuple[GradeResult, int, float]:
    """grade() with the host's Python memory traced: (result, peak bytes, host CPU seconds)."""
    tracemalloc.start()
    cpu = time.process_time()
    try:
        result = grade(archive, spec, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak, time.process_time() - cpu


@pytest.fixture(scope="module")
def results(tmp_path_factory, checkpoints, assignment, grader_home) -> dict[str, Any]:
    """Every case graded once (the tests below look at different sides of the same results)."""
    folder = tmp_path_factory.mktemp("hostile-output")
    settings = Settings(home=grader_home, sandbox=SandboxSettings(backend="bwrap", python=sys.executable))
    done = {}
    for case, (names, files, _expect) in CASES.items():
        spec = spec_for(assignment, names)
        limit = spec.parts[0].time_limit_s
        overrides = {k.replace(".", "__"): v.replace("@LIMIT@", repr(limit)) for k, v in files.items()}
        archive = build_submission(folder / f"{len(done)}.zip", checkpoints, **overrides)
        done[case] = graded(archive, spec, settings)
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_output_gets_a_result_for_that_part(case, results, assignment):
    names, _files, (status, words, may_pass) = CASES[case]
    result, peak, cpu = results[case]
    part = result.part(names[0])
    assert part is not None, result.message
    assert (part.status, part.passed) == (status, may_pass), part.message
    text = part.message + " " + " ".join(t.message for t in part.tests)
    assert words in text, text
    assert result.status is status
    assert result.counts_as_attempt
    data = strict_json(result.to_json())
    assert data["parts"][0]["runtime_s"] == part.runtime_s
    # Bounded on the host, whatever the job wrote (each attack used to cost GiBs or minutes).
    assert peak < 64 * MiB, f"{peak / MiB:.0f} MiB of host memory"
    assert cpu < 20, f"{cpu:.1f} s of host CPU"


def test_forged_layer_outputs_fail_only_their_case(results):
    for case in ("layer npz member claims a huge shape", "layer npz is a zip bomb"):
        part = results[case][0].part("numpy_nn")
        failed = [t for t in part.tests if not t.passed]
        assert len(failed) == 4, failed  # the four checks of the forged case, no other
        assert all(t.name.startswith("Linear.") and "course example" in t.name for t in failed)
        assert "38 of 42 layer tests passed" in part.message, part.message
    bomb = results["layer npz is a zip bomb"][0].part("numpy_nn")
    assert "compressed" in bomb.message, bomb.message


@pytest.mark.parametrize("case", ["progress: start of a part that does not exist",
                                  "progress: late start forges a tiny runtime"])
def test_part_time_is_the_hosts_clock(case, results, assignment):
    """The part is stopped at its own limit, and its runtime is what the host measured."""
    limit = spec_for(assignment, NP).parts[0].time_limit_s
    part = results[case][0].part("numpy_nn")
    assert limit <= part.runtime_s < limit + 5, part.runtime_s


def test_a_flood_of_events_still_grades_the_finished_part(results):
    result, peak, _cpu = results["progress: 40 MiB of events"]
    part = result.part("numpy_nn")
    assert "ended abruptly" not in part.message
    assert part.passed
    assert part.runtime_s < 60
    assert peak < 32 * MiB, f"{peak / MiB:.0f} MiB"


def test_cli_grades_a_forged_prediction_header(tmp_path, checkpoints, settings):
    """`grader grade --json` on a MyNet whose predictions file claims 8 TiB: exit code 0 (a
    student's failure), strict JSON, "damaged or forged output" for MyNet alone."""
    from click.testing import CliRunner

    from grader.cli import main

    plant = ("import glob\nfor path in glob.glob('/out/mynet/*.npy'):\n"
             f"    open(path, 'wb').write({npy_header(f'({TERA},)')} + bytes(64))\n")
    archive = build_submission(tmp_path / "s.zip", checkpoints,
                               pytorch_cnn__py=at_exit(GOOD_CNN, plant))
    out = tmp_path / "result.json"
    res = CliRunner().invoke(main, ["grade", str(archive), "--json", str(out)],
                             obj={"settings": settings})
    assert res.exit_code == 0, res.output
    data = strict_json(out.read_text())
    parts = {p["name"]: p for p in data["parts"]}
    assert data["status"] == "graded"
    assert parts["mynet"]["status"] == "graded"
    assert not parts["mynet"]["passed"]
    assert "damaged or forged output" in parts["mynet"]["message"], parts["mynet"]["message"]
    assert "claims 1,099,511,627,776 values" in parts["mynet"]["message"]
    assert parts["numpy_nn"]["passed"]
    assert parts["finetune"]["status"] == "graded"


def test_the_web_app_stores_and_shows_text_the_job_wrote(results, tmp_path):
    """The result with the job's undecodable text goes through the worker's store (real SQLite)
    and appears on the student's page and API, readable."""
    from leaderboard import create_app
    from leaderboard.db import upgrade
    from leaderboard.settings import WebSettings
    from tests.leaderboard.factories import add_graded
    from tests.leaderboard.helpers import add_roster, grader_settings, sign_in

    result = results["exception text with a lone surrogate"][0]
    url = f"sqlite:///{tmp_path / 'instance' / 'leaderboard.db'}"
    (tmp_path / "instance").mkdir()
    upgrade(url)
    web = WebSettings(grader=grader_settings(tmp_path / "home"), instance_path=tmp_path / "instance",
                      database_url=url, queue_name=f"t{secrets.token_hex(4)}").with_keys()
    app = create_app(web)
    app.config.update(TESTING=True)
    roster = add_roster(web, 1)
    svc = app.extensions["leaderboard"]
    try:
        sub_id = add_graded(web, svc.spec, student_id=roster.ids["s001"], data=result.to_dict(),
                            engine=svc.engine, tmp=tmp_path)
        client = app.test_client()
        sign_in(client, roster.secrets["s001"])
        api = client.get(f"/api/submissions/{sub_id}").get_json()
        assert api["result"]["status"] == "crashed"
        message = api["result"]["parts"][0]["message"]
        assert "cannot read weights\ufffd\ufffd.bin \ufffd[2J" in message, message
        page = client.get(f"/submissions/{sub_id}").get_data(as_text=True)
        assert "cannot read weights\ufffd\ufffd.bin" in page
    finally:
        svc.engine.dispose()


# --------------------------------------------------------------------------- the reader alone


class Clock:
    """A clock the test moves: the host's time as ProgressLog sees it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_reader_keeps_to_the_hosts_clock_and_its_own_parts(tmp_path):
    from grader.progress import ProgressLog

    path, clock = tmp_path / "progress.jsonl", Clock()
    log = ProgressLog(["numpy_nn", "mynet"], clock=clock)
    limits = {"numpy_nn": 10.0, "mynet": 20.0}

    def write(*events: str) -> None:
        with path.open("a") as fh:
            fh.write("".join(e + "\n" for e in events))

    write('{"event": "start", "part": "numpy_nn", "t": 0}')
    log.read(path)
    clock.now += 5
    write('{"event": "start", "part": "elsewhere"}', '{"event": "start", "part": "numpy_nn", "t": 1e9}')
    log.read(path)
    assert log.overdue(limits, startup_s=60) is None
    clock.now += 6  # 11 s after the first start: the unknown part and the late start changed nothing
    assert log.overdue(limits, startup_s=60) == "numpy_nn over its 10 s limit"
    write('{"event": "done", "part": "numpy_nn", "t": 0.5}')
    log.read(path)
    assert log.clocks["numpy_nn"].runtime(clock.now) == 11.0
    assert log.clocks["mynet"].running  # its clock started when numpy_nn ended
    clock.now += 21
    assert log.overdue(limits, startup_s=60) == "mynet over its 20 s limit"


def test_progress_final_read_goes_to_the_end_within_its_cap(tmp_path):
    from grader.progress import POLL_READ_BYTES, ProgressLog

    path = tmp_path / "progress.jsonl"
    junk = b'{"event": "split", "part": "numpy_nn"}\n'
    path.write_bytes(b'{"event": "start", "part": "numpy_nn"}\n' + junk * (3 * POLL_READ_BYTES // len(junk))
                     + b'{"event": "failed", "part": "numpy_nn", "message": "bad \\ud800 \\u0000"}')
    log = ProgressLog(["numpy_nn"])
    log.read(path)
    assert log.clocks["numpy_nn"].start_seen
    assert log.clocks["numpy_nn"].ended_at is None  # one poll reads a bounded slice
    log.read(path, final=True)
    assert log.clocks["numpy_nn"].outcome == "failed"  # the last line, even without its newline
    assert log.clocks["numpy_nn"].message == "bad \ufffd \ufffd"
    assert log.offset == path.stat().st_size
