"""Every entrance at real size: a 40+ MiB submission (the reference solution with a real
ResNet-18 FinetuneNet checkpoint, a trained MyNet and the report files, as the demo's good.zip
is built) goes through the browser form (file input and drag-and-drop, in Debian's chromium),
``curl -F``, ``check.py --upload``, the raw API body and ``grader batch --publish``, into a real
service (gunicorn, a grading worker), and is graded. A body over the limit gets a true 413 on
the upload page, with the form kept. One service on SQLite for the whole module: the size is
what is tested here, the databases elsewhere."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from leaderboard import create_app
from leaderboard.models import Student, Submission
from tests.conftest import SOLUTION, build_submission
from tests.leaderboard.factories import tiny_zip
from tests.leaderboard.helpers import (
    ROOT,
    SCREENSHOTS,
    LiveServer,
    Stack,
    build_stack,
    close_stack,
    wait_done,
    worker_env,
)

pytestmark = pytest.mark.slow

BIN = ROOT / ".venv" / "bin"
REAL_SIZE = 40 << 20
GRADE_TIMEOUT_S = 900  # the single worker grades the module's uploads one after the other


# --------------------------------------------------------------------------- the zip


def _plot(seed: int) -> bytes:
    """A training-curve figure as a student's notebook saves it (PNG, 1000x700)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1000, 700), "white")
    draw = ImageDraw.Draw(image)
    points = [(60 + x * 9, 640 - int(560 * (1 - 0.9 ** (x / 4)) - (x * seed * 7) % 23)) for x in range(100)]
    draw.line([(60, 40), (60, 640), (960, 640)], fill="black", width=2)
    draw.line(points, fill=(36, 87, 197), width=3)
    for x in range(0, 100, 10):
        draw.text((60 + x * 9, 650), str(x), fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def report_files() -> dict[str, bytes]:
    """The report the spec expects beside the code (not graded): four figures and the notebook
    that shows them."""
    figures = {name: _plot(i + 1) for i, name in enumerate(("loss.png", "accuracy.png", "mynet.png",
                                                              "finetune.png"))}
    cells = [{"cell_type": "code", "execution_count": i + 1, "metadata": {},
              "source": [f"plot('{name}')"],
              "outputs": [{"output_type": "display_data", "metadata": {},
                           "data": {"image/png": base64.b64encode(png).decode(),
                                    "text/plain": ["<Figure>"]}}]}
             for i, (name, png) in enumerate(figures.items())]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return {**figures, "cnn.ipynb": json.dumps(notebook, indent=1).encode()}


@pytest.fixture(scope="module")
def big_zip(tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path]) -> Path:
    """The real-size submission: the reference code, the trained MyNet, a full ResNet-18
    FinetuneNet checkpoint (~43 MiB) and the report, deflated as the demo's good.zip."""
    report = {name.replace(".", "__"): data for name, data in report_files().items()}
    path = build_submission(tmp_path_factory.mktemp("real-size") / "good.zip", checkpoints, **report)
    assert path.stat().st_size >= REAL_SIZE, path.stat().st_size
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the service


@dataclass
class Service:
    stack: Stack
    url: str  # gunicorn, as in production
    web: subprocess.Popen[bytes]
    log: Path

    def secret(self, roster_id: str) -> str:
        return self.stack.roster.secrets[roster_id]


def _start_gunicorn(stack: Stack, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class",
             "gthread", "--threads", "4", "--timeout", "120", "leaderboard:create_app()"],
            env=worker_env(stack.settings), cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        with contextlib.suppress(OSError, http.client.HTTPException), contextlib.closing(conn):
            conn.request("GET", "/api/leaderboard")
            if conn.getresponse().status == 200:
                return f"http://127.0.0.1:{port}", proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("gunicorn did not come up:\n" + log.read_text(errors="replace"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, grader_home: Path) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("real-size-service")
    stack = build_stack(tmp, grader_home=grader_home, db_url=f"sqlite:///{tmp / 'instance' / 'lb.db'}",
                        students=12)
    url, web = _start_gunicorn(stack, tmp / "gunicorn.log")
    yield Service(stack, url, web, tmp / "gunicorn.log")
    os.killpg(web.pid, 15)
    web.wait(timeout=30)
    close_stack(stack)


def submission_of(service: Service, sub_id: int) -> Submission:
    with Session(service.stack.engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        return sub


def assert_stored_and_graded(service: Service, sub_id: int, original: Path) -> Submission:
    """The zip arrived whole (same bytes on disk) and the worker graded it."""
    stored = service.stack.settings.upload_dir / f"{submission_of(service, sub_id).archive_key}.zip"
    assert stored.stat().st_size == original.stat().st_size
    assert sha256_of(stored) == sha256_of(original)
    status = wait_done(service.stack, [sub_id], timeout_s=GRADE_TIMEOUT_S)[sub_id]
    sub = submission_of(service, sub_id)
    assert status == "graded", sub.message
    assert sub.score is not None
    assert sub.score > 0
    return sub


def curl(*args: str) -> tuple[int, str]:
    done = subprocess.run(["curl", "--silent", "--show-error", "--max-time", "300",
                           "--write-out", "\n%{http_code}", *args],
                          capture_output=True, text=True, timeout=330, check=False)
    assert done.returncode == 0, done.stderr
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


# --------------------------------------------------------------------------- the browser




def _signed_in_page(browser: Any, url: str, secret: str, width: int = 1280, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    page = context.new_page()
    page.goto(url + "/login?next=/upload")
    page.fill("#secret", secret)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/upload$"))
    return page


def _wait_graded_on_the_page(page: Any, filename: str) -> str:
    """The submissions list shows the upload; its status cell turns 'Graded' by itself."""
    page.wait_for_url(re.compile(r"/submissions$"), timeout=120_000)
    row = page.locator("table.list tbody tr").first
    assert filename in row.inner_text()
    page.wait_for_function(
        "() => document.querySelector('table.list tbody tr [data-field=status]').textContent === 'Graded'",
        timeout=GRADE_TIMEOUT_S * 1000,
    )
    return str(row.get_attribute("data-id"))


@pytest.mark.browser
def test_the_browser_form_takes_the_real_size_zip_by_file_input(service: Service, browser: Any,
                                                                big_zip: Path) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page = _signed_in_page(browser, service.url, service.secret("s001"))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_input_files("#file", str(big_zip))
    assert page.inner_text("[data-chosen]") == "Chosen: good.zip"
    # Slow the upload down (about 4 MiB/s) so the progress can be seen and photographed.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1, "uploadThroughput": 4 << 20})
    page.click("form.upload button[type=submit]")
    page.wait_for_function("() => { const p = document.querySelector('[data-progress] progress');"
                           " return p && p.max > 1 && p.value / p.max > 0.2; }", timeout=60_000)
    text = page.inner_text("[data-progress-text]")
    assert re.fullmatch(r"Uploading good\.zip: \d+\.\d MiB of 4\d\.\d MiB \(\d+%\)", text), text
    assert page.locator("form.upload button[type=submit]").is_disabled()
    page.screenshot(path=str(SCREENSHOTS / "upload-progress-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SCREENSHOTS / "upload-progress-390.png"), full_page=True)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                  "downloadThroughput": -1, "uploadThroughput": -1})
    sub_id = int(_wait_graded_on_the_page(page, "good.zip"))
    assert_stored_and_graded(service, sub_id, big_zip)
    page.goto(f"{service.url}/submissions/{sub_id}")
    assert "pass 75%" in page.inner_text("#part-mynet")
    assert not errors, errors
    page.context.close()


@pytest.mark.browser
def test_the_browser_form_takes_the_real_size_zip_by_drag_and_drop(service: Service, browser: Any,
                                                                   big_zip: Path) -> None:
    page = _signed_in_page(browser, service.url, service.secret("s002"))
    # The page fetches the zip from a test-only address (answered here, not by the server), then
    # drops it on the zone as a file manager would.
    page.route("**/test-fixture/good.zip", lambda route: route.fulfill(
        path=str(big_zip), headers={"Content-Type": "application/zip"}))
    transfer = page.evaluate_handle("""async () => {
        const blob = await (await fetch('/test-fixture/good.zip')).blob();
        const dt = new DataTransfer();
        dt.items.add(new File([blob], 'dropped.zip', {type: 'application/zip'}));
        return dt;
    }""")
    page.dispatch_event("[data-dropzone]", "drop", {"dataTransfer": transfer})
    assert page.inner_text("[data-chosen]") == "Chosen: dropped.zip"
    assert page.evaluate("() => document.querySelector('#file').files[0].size") == big_zip.stat().st_size
    page.click("form.upload button[type=submit]")
    sub_id = int(_wait_graded_on_the_page(page, "dropped.zip"))
    assert_stored_and_graded(service, sub_id, big_zip)
    page.context.close()


# --------------------------------------------------------------------------- the command line


def test_curl_multipart_takes_the_real_size_zip(service: Service, big_zip: Path) -> None:
    code, body = curl("-H", f"Authorization: Bearer {service.secret('s003')}",
                      "-F", f"file=@{big_zip}", f"{service.url}/api/submissions")
    assert code == 202, body
    assert_stored_and_graded(service, json.loads(body)["id"], big_zip)


def test_the_raw_api_body_takes_the_real_size_zip(service: Service, big_zip: Path) -> None:
    code, body = curl("-H", f"Authorization: Bearer {service.secret('s004')}",
                      "-H", "Content-Type: application/zip", "-H", "X-Filename: raw.zip",
                      "--data-binary", f"@{big_zip}", f"{service.url}/api/submissions")
    assert code == 202, body
    answer = json.loads(body)
    assert answer["filename"] == "raw.zip"
    assert_stored_and_graded(service, answer["id"], big_zip)


def _kit(folder: Path, checkpoints: dict[str, Path]) -> Path:
    """A student's folder: the kit's check.py, the finished code, checkpoints and report."""
    folder.mkdir()
    for name in ("check.py", "course_limits.json"):
        shutil.copy(ROOT / "student_template" / name, folder / name)
    for name in ("numpy_nn.py", "pytorch_cnn.py"):
        shutil.copy(SOLUTION / name, folder / name)
    for name, path in checkpoints.items():
        shutil.copy(path, folder / name)
    for name, data in report_files().items():
        (folder / name).write_bytes(data)
    return folder


def test_check_py_uploads_the_real_size_zip(service: Service, tmp_path: Path,
                                            checkpoints: dict[str, Path]) -> None:
    kit = _kit(tmp_path / "kit", checkpoints)
    env = {k: v for k, v in os.environ.items() if k != "GRADER_SECRET"}
    done = subprocess.run([sys.executable, "check.py", "--upload", service.url, "--secret",
                           service.secret("s005")], cwd=kit, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    packed = kit / "submission.zip"
    assert packed.stat().st_size >= REAL_SIZE
    assert "uploaded submission.zip (HTTP 202)" in done.stdout
    with Session(service.stack.engine) as session:
        student_id = service.stack.roster.ids["s005"]
        sub = session.exec(select(Submission).where(Submission.student_id == student_id)).one()
    assert_stored_and_graded(service, sub.id or 0, packed)


class _Sink(BaseHTTPRequestHandler):
    """Takes a POST in 1 MiB pieces and answers 202, counting what arrived."""

    received: list[int]

    def do_POST(self) -> None:
        left, total = int(self.headers["Content-Length"]), 0
        while left:
            piece = self.rfile.read(min(left, 1 << 20))
            if not piece:
                break
            left, total = left - len(piece), total + len(piece)
        self.received.append(total)
        raw = b'{"status": "queued"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_check_py_upload_does_not_hold_the_zip_in_memory(tmp_path: Path, checkpoints: dict[str, Path],
                                                         big_zip: Path) -> None:
    """A student may have little RAM: the upload streams the zip from disk. (Sent to a sink that
    counts the bytes, so the service does not grade it once more.)"""
    kit = _kit(tmp_path / "kit", checkpoints)
    handler = type("Sink", (_Sink,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec).
    script = (
        "import re, sys\nfrom pathlib import Path\nimport check\n"
        "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1]) * 1024\n"
        "before = peak()\n"
        "ok = check.upload(Path(sys.argv[1]), sys.argv[2], 's', 300)\n"
        "print('result', ok, peak() - before)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script, str(big_zip),
                               f"http://127.0.0.1:{server.server_address[1]}"],
                              cwd=kit, capture_output=True, text=True, timeout=600, check=False)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert done.returncode == 0, done.stdout + done.stderr
    result = done.stdout.splitlines()[-1].split()
    assert result[:2] == ["result", "True"], done.stdout
    assert handler.received[0] > big_zip.stat().st_size
    assert int(result[2]) < 12 << 20, f"the upload grew the peak memory by {int(result[2]) >> 20} MiB"


def test_batch_publish_takes_the_real_size_zip(service: Service, tmp_path: Path, big_zip: Path,
                                              grader_home: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    shutil.copy(big_zip, folder / "s007.zip")
    (folder / "s008.zip").write_bytes(tiny_zip())  # invalid: published, and its zip not kept
    env = worker_env(service.stack.settings, OMP_NUM_THREADS="1")
    done = subprocess.run([str(BIN / "grader"), "batch", str(folder), "--jobs", "1", "--csv",
                           str(tmp_path / "grades.csv"), "--publish"], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published 2, not published 0" in done.stdout, done.stdout
    with Session(service.stack.engine) as session:
        rows = {s.roster_id: sub for sub, s in session.exec(
            select(Submission, Student).where(Submission.student_id == Student.id,
                                              Student.roster_id.in_(["s007", "s008"]))).all()}  # type: ignore[attr-defined]
    assert rows["s007"].status == "graded"
    assert rows["s007"].archive_sha256 == sha256_of(big_zip)
    stored = service.stack.settings.upload_dir / f"{rows['s007'].archive_key}.zip"
    assert sha256_of(stored) == sha256_of(big_zip)
    assert rows["s008"].status == "invalid"
    assert not (service.stack.settings.upload_dir / f"{rows['s008'].archive_key}.zip").exists()


# --------------------------------------------------------------------------- over the limit


@pytest.fixture(scope="module")
def small_limit(service: Service) -> Iterator[tuple[str, int]]:
    """The same service with a 1 MiB upload limit, served by werkzeug in a thread."""
    limit = 1 << 20
    app = create_app(replace(service.stack.settings, max_upload_bytes=limit))
    server = LiveServer(app)
    yield server.url, limit
    server.stop()
    app.extensions["leaderboard"].engine.dispose()


def test_a_body_just_over_the_limit_gets_413_on_the_upload_page(small_limit: tuple[str, int], tmp_path: Path,
                                                                service: Service) -> None:
    """curl posting the form as a browser does (session cookie, CSRF token): a zip just over the
    limit, then a body just over the body's limit; both get the upload page with the 413 message."""
    from leaderboard.bodies import FORM_OVERHEAD_BYTES

    url, limit = small_limit
    jar = str(tmp_path / "cookies")

    def token(path: str) -> str:
        code, html = curl("-b", jar, "-c", jar, url + path)
        assert code == 200
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    code, _ = curl("-b", jar, "-c", jar, "--data-urlencode", f"secret={service.secret('s010')}",
                   "--data-urlencode", f"csrf_token={token('/login')}", url + "/login")
    assert code == 302
    for size in (limit + 1, limit + FORM_OVERHEAD_BYTES + 1):
        zip_path = tmp_path / f"over-{size}.zip"
        zip_path.write_bytes(os.urandom(size))
        code, html = curl("-b", jar, "-c", jar, "-F", f"csrf_token={token('/upload')}",
                          "-F", f"file=@{zip_path}", url + "/upload")
        assert code == 413, (size, html[:300])
        assert ("The upload is larger than the limit of 1 MiB; zip only the required files and try "
                "again.") in html
        assert "data-upload-form" in html
        assert 'type="file"' in html
    student_id = service.stack.roster.ids["s010"]
    with Session(service.stack.engine) as session:
        assert session.exec(select(Submission).where(Submission.student_id == student_id)).all() == []


@pytest.mark.browser
def test_the_upload_page_shows_413_with_the_form_kept(small_limit: tuple[str, int], browser: Any,
                                                     service: Service, tmp_path: Path) -> None:
    url, limit = small_limit
    over = tmp_path / "too-big.zip"
    over.write_bytes(os.urandom(limit + 1))
    # With the page's script, the zip is refused before it is sent.
    for width in (1280, 390):
        page = _signed_in_page(browser, url, service.secret("s009"), width=width)
        page.set_input_files("#file", str(over))
        page.click("form.upload button[type=submit]")
        alert = page.locator("[data-upload-error]")
        alert.wait_for(state="visible")
        assert alert.inner_text() == ("The upload is larger than the limit of 1 MiB; zip only the "
                                      "required files and try again.")
        assert page.locator("#file").evaluate("input => input.files[0].name") == "too-big.zip"
        page.screenshot(path=str(SCREENSHOTS / f"upload-413-{width}.png"), full_page=True)
        page.context.close()
    # Without script the browser posts the form itself: the server's own 413, on the page.
    page = _signed_in_page(browser, url, service.secret("s009"), java_script_enabled=False)
    page.set_input_files("#file", str(over))
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("form.upload button[type=submit]")
    assert answer.value.status == 413
    assert "The upload is larger than the limit of 1 MiB" in page.inner_text("[data-upload-error]")
    assert page.locator("form.upload #file").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "upload-413-server-1280.png"), full_page=True)
    page.context.close()
