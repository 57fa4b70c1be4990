"""The API's documentation: every route under /api/ is in the OpenAPI document, the document is
valid OpenAPI 3, and the curl commands on /api/docs and on the upload page work as printed,
run by bash against a live server with a real-size (40+ MiB) submission zip."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from sqlmodel import Session

from leaderboard.apidocs import EXAMPLE_ID, SECRET_VAR
from leaderboard.models import Submission
from leaderboard.openapi import api_rules, openapi_path, operation, undocumented
from tests.leaderboard.helpers import LiveServer, Roster

REAL_SIZE = 40 << 20
EXAMPLE = re.compile(r'<pre class="command" data-example="(\w+)"[^>]*><code>(.*?)</code></pre>', re.S)


def test_every_api_route_is_in_the_document(app: Any, client: Any) -> None:
    doc = client.get("/api/openapi.json").get_json()
    assert undocumented(app) == []
    routes = {(m.lower(), openapi_path(r)) for r in api_rules(app) for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(m, path) for path, item in doc["paths"].items() for m in item}
    assert routes == documented
    assert {"/api/submissions", "/api/submissions/{submission_id}", "/api/leaderboard", "/api/openapi.json",
            "/api/docs"} <= set(doc["paths"])


def test_a_route_added_without_a_declaration_is_caught(app: Any) -> None:
    app.add_url_rule("/api/new-thing", "api_new_thing", lambda: "", methods=["GET", "POST"])
    assert undocumented(app) == ["GET /api/new-thing", "POST /api/new-thing"]
    documented = operation("A new thing", answers={})(lambda: "")
    app.add_url_rule("/api/other-thing", "api_other_thing", documented)
    assert "GET /api/other-thing" not in undocumented(app)


def test_the_document_is_valid_openapi_3(client: Any) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    doc = response.get_json()
    validate(doc)  # raises on any departure from the OpenAPI 3.1 schema
    assert doc["openapi"].startswith("3.")
    upload = doc["paths"]["/api/submissions"]["post"]
    assert set(upload["requestBody"]["content"]) >= {"multipart/form-data", "application/zip"}
    assert upload["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Submission"}
    one = doc["paths"]["/api/submissions/{submission_id}"]["get"]
    param = one["parameters"][0]
    assert (param["name"], param["in"], param["required"], param["schema"]) == (
        "submission_id", "path", True, {"type": "integer"})
    error = {"$ref": "#/components/schemas/Error"}
    assert one["responses"]["404"]["content"]["application/json"]["schema"] == error


def test_the_error_shape_is_what_the_api_sends(client: Any, roster: Roster) -> None:
    """The documented Error schema and the page's example match real refusals (401, 404)."""
    from jsonschema import validate as validate_json

    doc = client.get("/api/openapi.json").get_json()
    response = client.get("/api/submissions/1")
    assert response.status_code == 401
    validate_json(response.get_json(), doc["components"]["schemas"]["Error"])
    assert set(response.get_json()) == {"error", "status"}
    bearer = {"Authorization": f"Bearer {roster.secrets['s001']}"}
    missing = client.get("/api/submissions/99999", headers=bearer)
    assert missing.status_code == 404
    page = html.unescape(client.get("/api/docs").get_data(as_text=True))
    shown = re.search(r"(\{\"error\".*?\})</code>", page)
    assert shown, "no error example on /api/docs"
    assert json.loads(shown.group(1)) == missing.get_json()


# --------------------------------------------------------------------------- live curl


@pytest.fixture(scope="module")
def real_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-size submission: the reference code, a MyNet and a full ResNet-18 FinetuneNet
    checkpoint (seeded, untrained: only the size and the format matter here) and a report."""
    import io

    import torch

    from grader.demo import load_solution
    from tests.conftest import SOLUTION
    from tests.factories import make_zip

    torch.manual_seed(0)
    nets = load_solution("pytorch_cnn")
    blobs = {}
    for name, net in (("model.pt", nets.MyNet()), ("finetuned.pt", nets.FinetuneNet())):
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        blobs[name] = buffer.getvalue()
    files = {"numpy_nn.py": (SOLUTION / "numpy_nn.py").read_bytes(),
             "pytorch_cnn.py": (SOLUTION / "pytorch_cnn.py").read_bytes(), **blobs,
             "cnn.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 4}).encode()}
    path = make_zip(tmp_path_factory.mktemp("real-zip") / "submission.zip", files)
    assert path.stat().st_size >= REAL_SIZE, path.stat().st_size
    return path


@pytest.fixture
def live(app: Any, roster: Roster) -> Iterator[str]:
    server = LiveServer(app)
    yield server.url
    server.stop()


def _examples(page: str) -> dict[str, str]:
    return {key: html.unescape(code) for key, code in EXAMPLE.findall(page)}


def _bash(command: str, folder: Path, secret: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "LEADERBOARD_"))}
    done = subprocess.run(["bash", "-c", command], cwd=folder, env={**env, SECRET_VAR: secret},
                          capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout, done.stderr


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored(app: Any, sub_id: int) -> Path:
    with Session(app.extensions["leaderboard"].engine) as session:
        sub = session.get(Submission, sub_id)
        assert sub is not None
        return app.extensions["leaderboard"].settings.upload_dir / f"{sub.archive_key}.zip"


@pytest.mark.slow
def test_the_documented_curl_commands_work_with_a_real_size_zip(app: Any, live: str, roster: Roster,
                                                               real_zip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "submission.zip").symlink_to(real_zip)
    secret = roster.secrets["s001"]
    code, page, err = _bash(f"curl --fail-with-body --silent {live}/api/docs", folder, secret)
    assert code == 0, err
    examples = _examples(page)
    assert set(examples) == {"multipart", "raw", "list", "status", "board"}
    assert all(live + "/api/" in command for command in examples.values())

    uploaded = []
    for key in ("multipart", "raw"):
        code, out, err = _bash(examples[key], folder, secret)
        assert code == 0, (key, out, err)
        answer = json.loads(out)
        assert answer["status"] == "queued"
        assert answer["filename"] == "submission.zip"
        assert answer["sha256"] == _sha256(real_zip)
        stored = _stored(app, answer["id"])
        assert stored.stat().st_size == real_zip.stat().st_size
        uploaded.append(answer["id"])

    code, out, err = _bash(examples["list"], folder, secret)
    assert code == 0, err
    assert sorted(s["id"] for s in json.loads(out)["submissions"]) == sorted(uploaded)
    status = examples["status"].replace(f"/{EXAMPLE_ID}", f"/{uploaded[0]}")
    code, out, err = _bash(status, folder, secret)
    assert code == 0, err
    assert json.loads(out)["id"] == uploaded[0]
    code, out, err = _bash(examples["board"], folder, secret)
    assert code == 0, err
    assert "rows" in json.loads(out)
    # A refusal as documented: curl exits 22 and prints the Error body.
    code, out, _ = _bash(examples["status"], folder, "not-a-secret")
    assert code == 22
    assert json.loads(out) == {"error": "That secret is not known; check the one your instructor gave you.",
                               "status": 401}


@pytest.mark.slow
def test_the_upload_page_command_works_with_a_real_size_zip(app: Any, live: str, roster: Roster,
                                                            real_zip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "submission.zip").symlink_to(real_zip)
    secret = roster.secrets["s002"]
    jar = tmp_path / "cookies"
    sign_in = (f"curl -s -c {jar} -b {jar} {live}/login | grep -o 'name=\"csrf_token\" value=\"[^\"]*\"'"
               " | cut -d'\"' -f4")
    code, token, err = _bash(sign_in, folder, secret)
    assert code == 0, err
    code, _, err = _bash(f"curl -s -o /dev/null -c {jar} -b {jar} --data-urlencode \"secret=${SECRET_VAR}\" "
                         f"--data-urlencode csrf_token={token.strip()} {live}/login",
                         folder, secret)
    assert code == 0, err
    code, page, err = _bash(f"curl -s --fail-with-body -b {jar} {live}/upload", folder, secret)
    assert code == 0, err
    examples = _examples(page)
    assert list(examples) == ["multipart"]
    code, out, err = _bash(examples["multipart"], folder, secret)
    assert code == 0, (out, err)
    answer = json.loads(out)
    assert answer["status"] == "queued"
    assert _stored(app, answer["id"]).stat().st_size == real_zip.stat().st_size
