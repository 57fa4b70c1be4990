"""The Similarity pages through the real service: uploads graded by a real worker process, the
similarity index updated in the worker's background, the staff pages reading it, students refused.

Three students: s001 hands in the reference layers and a tiny seeded net; s002 copies them
(identifiers renamed, comments rewritten, the same weights saved again); s003 writes their own
layers and net, trained from another seed. The copy pair comes first and is flagged; the honest
pairs, if alike enough to be stored at all, stay below the flag line.
"""

from __future__ import annotations

import collections
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from grader.similarity import course
from grader.similarity.index import Config, SimilarityIndex
from grader.similarity.signals import FlagLines
from grader.similarity.storage import MemoryStorage, SqliteStorage
from leaderboard.similarity import UpdateLog, index_path
from tests.leaderboard.factories import tiny_good_zip, tiny_zip
from tests.leaderboard.helpers import (
    Stack,
    api_upload,
    build_stack,
    close_stack,
    sign_in,
    sign_in_staff,
    wait_done,
)

pytestmark = pytest.mark.slow

HONEST = Path(__file__).resolve().parents[1] / "fixtures" / "similarity"
RENAMES = {"dL_wrt_output": "upstream_grad", "mask": "active", "diff": "residual",
           "input_dimension": "fan_in", "output_dimension": "fan_out", "model": "network"}

# s003's own tiny nets: the same task, written differently.
OWN_NETS = '''"""My CNNs for the challenge (kept small)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, kernel_size=5, stride=3, padding=1)
        self.fc = nn.Linear(6 * 9 * 9, 10)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = torch.flatten(h, start_dim=1)
        return F.log_softmax(self.fc(h), dim=-1)


class FinetuneNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 8, kernel_size=7, stride=5)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.pool(torch.tanh(self.features(x)))
        return self.head(h.view(h.shape[0], -1))


def classify(model, x):
    model.eval()
    with torch.no_grad():
        scores = model(x)
    return torch.max(scores, 1).indices
'''


def renamed(text: str) -> str:
    """What a copier does: local names changed, every comment rewritten."""
    for old, new in RENAMES.items():
        text = re.sub(rf"\b{old}\b", new, text)
    return re.sub(r"#[^\n]*", "# my own note", text)


def _saved(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def copied_zip(original: bytes) -> bytes:
    """The original's code renamed and its weights saved again (other file bytes, same tensors)."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(original)) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    for name in ("numpy_nn.py", "pytorch_cnn.py"):
        files[name] = renamed(files[name].decode()).encode()
    for name in ("model.pt", "finetuned.pt"):
        state = torch.load(io.BytesIO(files[name]), weights_only=True)
        files[name] = _saved(collections.OrderedDict(reversed([(k, v.clone()) for k, v in state.items()])))
    return tiny_zip(files)


def honest_zip() -> bytes:
    namespace: dict[str, Any] = {}
    exec(compile(OWN_NETS, "pytorch_cnn.py", "exec"), namespace)  # our own test code, not a student's
    torch.manual_seed(5)
    return tiny_zip({
        "numpy_nn.py": (HONEST / "numpy_nn_honest.py").read_bytes(),
        "pytorch_cnn.py": OWN_NETS.encode(),
        "model.pt": _saved(namespace["MyNet"]().state_dict()),
        "finetuned.pt": _saved(namespace["FinetuneNet"]().state_dict()),
    })


@pytest.fixture(scope="module")
def graded(
    tmp_path_factory: pytest.TempPathFactory, grader_home: Path
) -> Iterator[tuple[Stack, dict[str, int]]]:
    """A service with three graded uploads, each compared in the worker's background."""
    tmp = tmp_path_factory.mktemp("similarity-web")
    # The instance's own database name, so `grader similarity INSTANCE` finds it as the web app does.
    stack = build_stack(tmp, grader_home=grader_home,
                        db_url=f"sqlite:///{tmp / 'instance' / 'leaderboard.db'}")
    try:
        original = tiny_good_zip(seed=0)
        uploads = {"s001": original, "s002": copied_zip(original), "s003": honest_zip()}
        ids = {}
        for who, body in uploads.items():
            response = api_upload(stack, stack.roster.secrets[who], body)
            assert response.status_code in (200, 201, 202), response.get_data(as_text=True)
            ids[who] = response.get_json()["id"]
            wait_done(stack, [ids[who]])  # one at a time: each is compared with those before it
        statuses = wait_done(stack, list(ids.values()))
        assert set(statuses.values()) == {"graded"}, statuses

        def compared() -> dict[int, str] | None:
            path = index_path(stack.settings, stack.app.extensions["leaderboard"].spec.name)
            if not path.is_file():
                return None
            log = UpdateLog(path)
            try:
                states = {i: (u.state if (u := log.of(i)) else "missing") for i in ids.values()}
            finally:
                log.close()
            return states if "pending" not in states.values() and "missing" not in states.values() else None

        states = stack.wait_for(compared, timeout_s=60, what="the similarity updates")
        assert set(states.values()) == {"done"}, states
        yield stack, ids
    finally:
        close_stack(stack)


def _staff(stack: Stack) -> Any:
    client = stack.app.test_client()
    sign_in_staff(client)
    return client


def test_the_copy_pair_ranks_first_and_the_honest_pairs_stay_below_the_flag_line(
        graded: tuple[Stack, dict[str, int]]) -> None:
    stack, ids = graded
    started = time.monotonic()
    page = _staff(stack).get("/staff/similarity/")
    took_s = time.monotonic() - started
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    rows = re.findall(r'<tr class="(flagged|below)" data-pair="(\d+)-(\d+)"', html)
    assert rows, html
    copy = {ids["s001"], ids["s002"]}
    verdict, a, b = rows[0]
    assert {int(a), int(b)} == copy, rows
    assert verdict == "flagged", rows
    for verdict, a, b in rows[1:]:
        assert verdict == "below", rows
        assert ids["s003"] in (int(a), int(b))
    assert "1 flagged" in html
    # The honest pairs are not shown (below the floor): measured again with no floor, from the
    # evidence the worker stored, they are there and below the flag line.
    spec = stack.app.extensions["leaderboard"].spec
    with SqliteStorage(index_path(stack.settings, spec.name)) as stored:
        evidence = [(sid, owner, stored.evidence(sid)) for sid, owner in stored.owners().items()]
    again = SimilarityIndex(MemoryStorage(), Config(labels=course.labels(stack.settings.grader, spec)[0],
                                                    template=course.template(spec),
                                                    lines=FlagLines(floor=0.0)))
    for sid, owner, found in evidence:
        assert found is not None
        assert found.predictions, "the worker kept the judge's predictions"
        again.add(sid, found, owner=owner)
    honest = [p for p in again.pairs() if str(ids["s003"]) in (p.a, p.b)]
    assert len(honest) == 2
    for pair in honest:
        assert not pair.flagged, pair.to_dict()
        assert pair.score < 0.5, pair.to_dict()
    assert "nothing here changes a score" in html
    assert "Fine-tuned models share their pretrained backbone" in html
    assert 'href="/staff/similarity/"' in html  # the staff nav links it
    assert took_s < 2.0  # read from the stored index, nothing compared per request


def test_the_pair_page_marks_the_shared_code_and_links_both_students(
        graded: tuple[Stack, dict[str, int]]) -> None:
    stack, ids = graded
    first, second = sorted((str(ids["s001"]), str(ids["s002"])))
    page = _staff(stack).get(f"/staff/similarity/{first}/{second}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Shared lines:" in html
    for kind in ("weights identical", "predictions wrong", "code"):
        assert kind in html, kind
    assert "numpy_nn.py" in html
    assert "pytorch_cnn.py" in html
    assert html.count('class="shared"') > 20  # the copied layers, marked on both sides
    assert "upstream_grad" in html  # the renamed copy, shown as it was handed in
    for sid in ids["s001"], ids["s002"]:
        assert f'href="/staff/submissions/{sid}"' in html
    assert "q=s001" in html
    assert "q=s002" in html
    # Either order of the ids finds the pair; a pair not stored is a 404.
    assert _staff(stack).get(f"/staff/similarity/{second}/{first}").status_code == 200
    assert _staff(stack).get(f"/staff/similarity/{first}/999999").status_code == 404


def test_students_and_strangers_are_refused(graded: tuple[Stack, dict[str, int]]) -> None:
    stack, ids = graded
    student = stack.app.test_client()
    sign_in(student, stack.roster.secrets["s003"])
    first, second = sorted((str(ids["s001"]), str(ids["s002"])))
    for url in ("/staff/similarity/", f"/staff/similarity/{first}/{second}"):
        response = student.get(url)
        assert response.status_code in (403, 404), (url, response.status_code)
        assert "upstream_grad" not in response.get_data(as_text=True)
        stranger = stack.app.test_client().get(url)
        assert stranger.status_code == 302
        assert "/staff/login" in stranger.headers["Location"]
    assert 'href="/staff/similarity/"' not in student.get("/").get_data(as_text=True)


# --------------------------------------------------------------------------- in a real browser




@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
def test_the_similarity_pages_in_the_browser(
        graded: tuple[Stack, dict[str, int]], browser: Any, width: int) -> None:
    """Staff open the Similarity page from the nav and a pair side by side; nothing runs off the page."""
    from tests.leaderboard.helpers import INSTRUCTOR, SCREENSHOTS

    stack, _ids = graded
    SCREENSHOTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(stack.server.url + "/staff/login")
    page.fill("#username", INSTRUCTOR[0])
    page.fill("#password", INSTRUCTOR[1])
    page.click("button[type=submit]")
    page.click("header.top nav >> text=Similarity")
    page.wait_for_selector("table.pairs")
    assert page.locator("table.pairs tr.flagged").count() == 1
    first = page.locator("table.pairs tbody tr").first
    assert first.get_attribute("class") == "flagged"
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"the Similarity page is {wide} px wide in a {width} px window"
    page.screenshot(path=str(SCREENSHOTS / f"similarity-{width}.png"), full_page=True)

    first.locator("text=Side by side").click()
    page.wait_for_selector("div.code")
    assert page.locator("div.code tr.shared").count() > 20
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"the pair page is {wide} px wide in a {width} px window"
    page.screenshot(path=str(SCREENSHOTS / f"similarity-pair-{width}.png"), full_page=True)
    assert not errors, errors
    context.close()


# --------------------------------------------------------------------------- the command line on an instance


def test_grader_similarity_reads_an_instance_and_catches_up_what_the_worker_left(
        graded: tuple[Stack, dict[str, int]]) -> None:
    """A result graded on another machine is not in the index (pending on the page); `grader
    similarity INSTANCE` reads its zip, recomputes under the index's lock and writes the CSV."""
    from click.testing import CliRunner

    from grader.cli import main

    stack, ids = graded
    spec = stack.app.extensions["leaderboard"].spec
    path = index_path(stack.settings, spec.name)
    with SqliteStorage(path) as stored:
        stored.delete(str(ids["s003"]))
    html = _staff(stack).get("/staff/similarity/").get_data(as_text=True)
    assert re.search(r"data-pending>1 ", html), html

    command = ["similarity", str(stack.settings.instance_path), "--assignment", "cnn"]
    result = CliRunner().invoke(main, command, obj={"settings": stack.settings.grader})
    assert result.exit_code == 0, result.output
    assert "reading the evidence of 1 submissions (2 cached)" in result.output
    first = next(line for line in result.output.splitlines() if line.strip().startswith("1."))
    assert "FLAGGED" in first
    assert {str(ids["s001"]), str(ids["s002"])} == set(re.findall(r"(\d+)\s+<->\s+(\d+)", first)[0])
    assert path.with_suffix(".csv").is_file()
    html = _staff(stack).get("/staff/similarity/").get_data(as_text=True)
    assert re.search(r"data-pending>0<", html), html
    assert "3 submissions" in html
