"""The student starter kit: check.py (checks, pack, upload), the training scripts, the solution.

Every test works on a copy of ``student_template/`` in ``tmp_path`` and runs ``check.py``
the way a student does: a subprocess with this interpreter, in the copy's folder.
"""

from __future__ import annotations

import email.parser
import email.policy
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from grader.config import Assignment, Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "student_template"
SOLUTION = ROOT / "hidden_tests" / "cnn" / "solution"
FASHION = Path("/usr/share/datasets/fashion-mnist")
CHECK_NAMES = ("Linear", "ReLU", "Sigmoid", "SE", "MyNet", "FinetuneNet", "classify",
               "model.pt", "finetuned.pt")


def load_module(path: Path, name: str) -> ModuleType:
    """Import one file under a private name, leaving sys.modules as it was."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def solution_cnn() -> ModuleType:
    return load_module(SOLUTION / "pytorch_cnn.py", "_template_test_solution_cnn")


@pytest.fixture(scope="session")
def state_dicts(tmp_path_factory: pytest.TempPathFactory, solution_cnn: ModuleType) -> Path:
    """Freshly initialised (untrained) state dicts of the solution's MyNet and FinetuneNet."""
    import torch

    folder = tmp_path_factory.mktemp("state-dicts")
    torch.manual_seed(0)
    torch.save(solution_cnn.MyNet().state_dict(), folder / "model.pt")
    torch.save(solution_cnn.FinetuneNet().state_dict(), folder / "finetuned.pt")
    return folder


def make_kit(tmp_path: Path, *, solution: bool = False, checkpoints: Path | None = None,
             edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """A copy of the template; with the solution's modules, checkpoints, and text edits."""
    kit = tmp_path / "kit"
    shutil.copytree(TEMPLATE, kit, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pt", "submission.zip", ".*"))
    if solution:
        for name in ("numpy_nn.py", "pytorch_cnn.py"):
            shutil.copy(SOLUTION / name, kit / name)
    if checkpoints is not None:
        for name in ("model.pt", "finetuned.pt"):
            shutil.copy(checkpoints / name, kit / name)
    for name, (old, new) in (edits or {}).items():
        text = (kit / name).read_text()
        assert old in text, f"edit target not in {name}: {old!r}"
        (kit / name).write_text(text.replace(old, new))
    return kit


def run_check(kit: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    # One torch thread: the test machine's cores are shared, and oversubscription is slow.
    full_env = {k: v for k, v in os.environ.items() if k != "GRADER_SECRET"}
    full_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run([sys.executable, "check.py", *args], cwd=kit, env=full_env,
                          capture_output=True, text=True, timeout=180, check=False)


def result_lines(stdout: str) -> dict[str, str]:
    """{check name: its whole line} for the ok/FAIL lines."""
    lines = {}
    for line in stdout.splitlines():
        for prefix in ("ok  ", "FAIL "):
            if line.startswith(prefix):
                name = line[len(prefix):].split(":", 1)[0]
                lines[name] = line
    return lines


# --------------------------------------------------------------------------- whole runs


def test_untouched_template_fails_once_per_missing_piece(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    proc = run_check(kit)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = result_lines(proc.stdout)
    assert list(lines) == list(CHECK_NAMES), proc.stdout
    for name in ("Linear", "ReLU", "Sigmoid", "SE", "MyNet", "FinetuneNet", "classify"):
        assert lines[name].startswith(f"FAIL {name}: not implemented yet"), lines[name]
    for name in ("model.pt", "finetuned.pt"):
        assert lines[name].startswith(f"FAIL {name}: not found"), lines[name]
    assert "9 of 9 checks failed" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_solution_passes_every_check_and_packs(tmp_path: Path, state_dicts: Path) -> None:
    kit = make_kit(tmp_path, solution=True, checkpoints=state_dicts)
    # What goes in: the report and the student's own helper module; what stays out:
    # data, other checkpoints, caches, hidden files, the kit's own tools, other files.
    (kit / "numpy_nn_training.png").write_bytes(b"\x89PNG fake")
    (kit / "layer_relu_forward.png").write_bytes(b"\x89PNG not in the course's list")
    (kit / "helpers.py").write_text("HELP = 1\n")
    (kit / "data" / "train").mkdir(parents=True)
    (kit / "data" / "train" / "x.png").write_bytes(b"x")
    (kit / "best_epoch.pt").write_bytes(b"x")
    (kit / "__pycache__").mkdir()
    (kit / "__pycache__" / "numpy_nn.cpython-311.pyc").write_bytes(b"x")
    (kit / ".notes.py").write_text("")
    (kit / "notes.txt").write_text("")

    proc = run_check(kit, "--pack")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(result_lines(proc.stdout).values()) == [f"ok  {n}" for n in CHECK_NAMES]
    assert "all 9 checks passed" in proc.stdout
    with zipfile.ZipFile(kit / "submission.zip") as zf:
        names = sorted(zf.namelist())
        assert zf.read("model.pt") == (state_dicts / "model.pt").read_bytes()
    assert names == sorted(["numpy_nn.py", "pytorch_cnn.py", "model.pt", "finetuned.pt",
                            "cnn.ipynb", "numpy_nn_training.png", "helpers.py"])
    # The report files the spec names and the kit does not have yet are named.
    assert ("note: numpy_nn_classification.png, pytorch_fcnet_training.png, "
            "pytorch_cnn_training.png are missing: the report is expected") in proc.stdout


def test_pack_refuses_without_model_pt(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, solution=True)
    (kit / "finetuned.pt").write_bytes(b"stand-in")
    proc = run_check(kit, "--only", "Linear", "--pack")
    assert proc.returncode == 1
    assert "ok  Linear" in proc.stdout
    assert "cannot pack: model.pt missing" in proc.stdout
    assert "train_mynet.py" in proc.stdout
    assert not (kit / "submission.zip").exists()


def test_skip_checkpoints_checks_the_code_before_training(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, solution=True)
    proc = run_check(kit, "--skip-checkpoints", "--only", "Linear,SE,model.pt")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines()[:3] == ["ok  Linear", "ok  SE",
                                            "skip model.pt (--skip-checkpoints)"]


# --------------------------------------------------------------------------- typical mistakes

SOLUTION_LINEAR_DW = "self.dL_wrt_W = self.x[:, :, None] * g[:, None, :]"
SOLUTION_SIGMOID_BACK = (
    "return np.asarray(dL_wrt_output, dtype=np.float64) * self.s * (1.0 - self.s)"
)

NUMPY_MISTAKES = {
    "grads summed over the batch": (
        "Linear", (SOLUTION_LINEAR_DW, "self.dL_wrt_W = self.x.T @ g"),
        ["dL_wrt_W with shape (3, 2)", "per-sample", "(N, in, out)"]),
    "params() returns copies": (
        "Linear", ('return {"W": self.W, "b": self.b}',
                   'return {"W": self.W.copy(), "b": self.b.copy()}'),
        ["params() returns copies", "{'W': self.W, 'b': self.b}"]),
    "sigmoid backward without the derivative": (
        "Sigmoid", (SOLUTION_SIGMOID_BACK, "return np.asarray(dL_wrt_output, dtype=np.float64)"),
        ["unchanged", "derivative s * (1 - s)"]),
    "a crash in backward": (
        "Linear", ("return g @ self.W.T", "return g @ self.W"),
        ["ValueError", "(numpy_nn.py, line", "in backward)"]),
}


@pytest.mark.parametrize("mistake", list(NUMPY_MISTAKES))
def test_layer_mistakes_are_named(tmp_path: Path, mistake: str) -> None:
    name, edit, phrases = NUMPY_MISTAKES[mistake]
    kit = make_kit(tmp_path, solution=True, edits={"numpy_nn.py": edit})
    proc = run_check(kit, "--only", "Linear,ReLU,Sigmoid,SE")
    assert proc.returncode == 1
    lines = result_lines(proc.stdout)
    failed = [n for n, line in lines.items() if line.startswith("FAIL")]
    assert failed == [name], proc.stdout
    for phrase in phrases:
        assert phrase in lines[name], lines[name]


def test_checkpoint_with_a_wrong_key(tmp_path: Path, state_dicts: Path) -> None:
    import torch

    kit = make_kit(tmp_path, solution=True, checkpoints=state_dicts)
    state = torch.load(state_dicts / "model.pt", weights_only=True)
    state["conv1.weight"] = state.pop("features.0.weight")
    torch.save(state, kit / "model.pt")
    proc = run_check(kit, "--only", "model.pt")
    assert proc.returncode == 1
    line = result_lines(proc.stdout)["model.pt"]
    assert line.startswith("FAIL model.pt: model.pt does not fit MyNet(): "), line
    assert "missing keys features.0.weight" in line
    assert "unexpected keys conv1.weight" in line


def test_checkpoint_of_a_whole_pickled_module(tmp_path: Path, state_dicts: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    kit = make_kit(tmp_path, solution=True, checkpoints=state_dicts)
    # Pickled as the student's would be: the class lives in the module ``pytorch_cnn``.
    module = load_module(kit / "pytorch_cnn.py", "pytorch_cnn")
    monkeypatch.setitem(sys.modules, "pytorch_cnn", module)
    torch.save(module.MyNet(), kit / "model.pt")
    proc = run_check(kit, "--only", "model.pt")
    assert proc.returncode == 1
    line = result_lines(proc.stdout)["model.pt"]
    assert "whole pickled model (pytorch_cnn.MyNet)" in line, line
    assert "torch.save(model.state_dict(), 'model.pt')" in line


def test_finetunenet_that_opens_a_connection(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, solution=True, edits={"pytorch_cnn.py": (
        "        super().__init__()\n        weights =",
        "        super().__init__()\n        import socket\n\n"
        "        socket.create_connection(('download.pytorch.org', 443), timeout=5)\n"
        "        weights =",
    )})
    proc = run_check(kit, "--only", "FinetuneNet")
    assert proc.returncode == 1
    assert result_lines(proc.stdout)["FinetuneNet"] == (
        "FAIL FinetuneNet: FinetuneNet() tried to use the network (download pretrained "
        "weights?) — the grader has no network; build it with load_pretrained=False by "
        "default.")


# --------------------------------------------------------------------------- upload


class _Grader(BaseHTTPRequestHandler):
    """A stand-in for the leaderboard's POST /api/submissions, recording what it got."""

    answer: tuple[int, dict] = (202, {})
    received: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), body))
        status, payload = self.answer
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def grader_server() -> Iterator[tuple[str, type[_Grader]]]:
    handler = type("Handler", (_Grader,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _packable_kit(tmp_path: Path) -> Path:
    kit = make_kit(tmp_path, solution=True)
    (kit / "model.pt").write_bytes(b"stand-in")
    (kit / "finetuned.pt").write_bytes(b"stand-in")
    return kit


def test_upload_posts_the_zip_with_the_secret(tmp_path: Path, grader_server) -> None:
    url, handler = grader_server
    handler.answer = (202, {"message": "queued for grading", "url": "/submissions/7",
                            "remaining_attempts": 99})
    kit = _packable_kit(tmp_path)
    proc = run_check(kit, "--only", "Linear", "--upload", url + "/", "--secret", "s3cret")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "queued for grading" in proc.stdout
    assert f"{url}/submissions/7" in proc.stdout
    assert "attempts left: 99" in proc.stdout

    [(path, headers, body)] = handler.received
    assert path == "/api/submissions"
    assert headers["Authorization"] == "Bearer s3cret"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
    [part] = list(message.iter_parts())
    assert part.get_param("name", header="content-disposition") == "file"
    with zipfile.ZipFile(io.BytesIO(part.get_payload(decode=True))) as zf:
        assert sorted(zf.namelist()) == ["cnn.ipynb", "finetuned.pt", "model.pt", "numpy_nn.py",
                                         "pytorch_cnn.py"]


def test_upload_shows_the_servers_error(tmp_path: Path, grader_server) -> None:
    url, handler = grader_server
    handler.answer = (401, {"error": "That secret is not known.", "status": 401})
    kit = _packable_kit(tmp_path)
    proc = run_check(kit, "--only", "Linear", "--upload", url, env={"GRADER_SECRET": "wrong"})
    assert proc.returncode == 1
    assert "HTTP 401: That secret is not known. (check your secret)" in proc.stdout
    assert handler.received[0][1]["Authorization"] == "Bearer wrong"


def test_upload_without_a_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kit = _packable_kit(tmp_path)
    proc = run_check(kit, "--only", "Linear", "--upload", f"http://127.0.0.1:{port}",
                     "--secret", "s")
    assert proc.returncode == 1
    assert f"could not reach http://127.0.0.1:{port}/api/submissions" in proc.stdout


def test_upload_refused_while_checks_fail(tmp_path: Path, grader_server) -> None:
    url, handler = grader_server
    kit = make_kit(tmp_path)
    (kit / "model.pt").write_bytes(b"stand-in")
    (kit / "finetuned.pt").write_bytes(b"stand-in")
    proc = run_check(kit, "--only", "Linear", "--upload", url, "--secret", "s")
    assert proc.returncode == 1
    assert "not uploading: checks failed" in proc.stdout
    assert handler.received == []


# --------------------------------------------------------------------------- solution, helpers


def test_solution_reproduces_the_public_layer_values() -> None:
    nn = load_module(SOLUTION / "numpy_nn.py", "_template_test_solution_nn")
    x = np.array([[-2, -1.2, -0.4], [0.4, 1.2, 2]])
    layer = nn.Linear(3, 2)
    layer.W = np.array([[1, 0.6], [0.2, -0.2], [-0.6, -1]])
    layer.b = np.array([[-0.5, 0.5]])
    np.testing.assert_almost_equal(layer.forward(x), [[-2.5, -0.06], [-1.06, -1.5]], decimal=6)
    np.testing.assert_almost_equal(
        layer.backward(np.array([[1, 1.33333333], [1.66666667, 2]])),
        [[1.8, -0.06666667, -1.93333333], [2.86666667, -0.06666667, -3.0]], decimal=6)
    np.testing.assert_almost_equal(layer.dL_wrt_W, [
        [[-2, -2.66666667], [-1.2, -1.6], [-0.4, -0.53333333]],
        [[0.66666667, 0.8], [2, 2.4], [3.33333333, 4]]], decimal=6)
    np.testing.assert_almost_equal(layer.dL_wrt_b, [[[1, 1.33333333]], [[1.66666667, 2]]],
                                   decimal=6)
    assert layer.params()["W"] is layer.W
    assert layer.params()["b"] is layer.b
    assert layer.grads()["W"] is layer.dL_wrt_W
    assert layer.grads()["b"] is layer.dL_wrt_b

    g = np.array([[-3, 1.2, -0.5], [-0.4, 2.2, 3]])
    relu = nn.ReLU()
    np.testing.assert_almost_equal(relu.forward(x), [[0, 0, 0], [0.4, 1.2, 2]], decimal=6)
    np.testing.assert_almost_equal(relu.backward(g), [[0, 0, 0], [-0.4, 2.2, 3]], decimal=6)
    sigmoid = nn.Sigmoid()
    np.testing.assert_almost_equal(sigmoid.forward(x), [
        [0.119203, 0.231475, 0.401312], [0.598688, 0.768525, 0.880797]], decimal=6)
    np.testing.assert_almost_equal(sigmoid.backward(g), [
        [-0.314981, 0.213473, -0.12013], [-0.096104, 0.391368, 0.314981]], decimal=6)
    se = nn.SE()
    y = np.linspace(-5, 5, 9)
    np.testing.assert_almost_equal(se.forward(y, 0.5 * y), (0.5 * y) ** 2, decimal=6)
    np.testing.assert_almost_equal(
        se.backward(), [-5, -3.75, -2.5, -1.25, 0, 1.25, 2.5, 3.75, 5], decimal=6)


def test_load_data_keeps_the_named_classes_in_their_order(tmp_path: Path) -> None:
    nn = load_module(TEMPLATE / "numpy_nn.py", "_template_test_template_nn")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "digits.npz",
             x_train=rng.integers(0, 256, (50, 4, 4)).astype(np.uint8), y_train=np.arange(50) % 5,
             x_test=rng.integers(0, 256, (20, 4, 4)).astype(np.uint8), y_test=np.arange(20) % 5)
    (x_train, y_train), (x_test, y_test) = nn.load_data(str(tmp_path / "digits.npz"), (3, 1))
    assert x_train.shape == (20, 16)
    assert y_train.shape == (20, 1)
    assert x_test.shape == (8, 16)
    assert y_test.shape == (8, 1)
    # Named order, not numeric order: a 3 is class 0, a 1 is class 1.
    assert y_train[:4, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert x_train.min() >= 0.0
    assert x_train.max() <= 1.0


# --------------------------------------------------------------------------- training scripts


@pytest.fixture
def kit_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A kit with the solution, importable as the scripts import it; torch threads restored."""
    import torch

    kit = make_kit(tmp_path, solution=True)
    monkeypatch.syspath_prepend(str(kit))
    monkeypatch.setitem(sys.modules, "pytorch_cnn", load_module(kit / "pytorch_cnn.py",
                                                                "pytorch_cnn"))
    threads = torch.get_num_threads()
    yield kit
    torch.set_num_threads(threads)


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"FashionMNIST not at {FASHION} "
                    "(scripts/setup.sh installs Debian's dataset-fashion-mnist)")
def test_train_mynet_in_process_writes_a_loadable_state_dict(
        kit_modules: Path, solution_cnn: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    # Only the training files: the test split (t10k) is the grader's and is never read.
    data = kit_modules / "fashion"
    data.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (data / name).symlink_to(FASHION / name)
    train = load_module(kit_modules / "train_mynet.py", "_template_test_train_mynet")
    out = kit_modules / "model.pt"
    assert train.main(["--data", str(data), "--limit", "2000", "--epochs", "1",
                       "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "training MyNet on 2000 images for 1 epoch(s), validating on 6000 held-out training " \
        "images" in printed
    assert "validation accuracy" in printed
    state = torch.load(out, weights_only=True, map_location="cpu")
    solution_cnn.MyNet().load_state_dict(state, strict=True)


def test_train_finetune_in_process_on_an_image_folder(
        kit_modules: Path, solution_cnn: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from PIL import Image

    data = kit_modules / "dogs_cats"
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for label, tint in (("cat", 40), ("dog", 200)):
            (data / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(tint, 30, (40, 50, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(data / split / label / f"{i}.png")
    train = load_module(kit_modules / "train_finetune.py", "_template_test_train_finetune")
    out = kit_modules / "finetuned.pt"
    assert train.main(["--data", str(data), "--epochs", "1", "--batch-size", "4",
                       "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes: cat=0, dog=1" in printed
    assert "validation accuracy" in printed
    state = torch.load(out, weights_only=True, map_location="cpu")
    solution_cnn.FinetuneNet().load_state_dict(state, strict=True)


def test_train_mynet_holds_out_a_seeded_part_of_the_training_images(kit_modules: Path) -> None:
    train = load_module(kit_modules / "train_mynet.py", "_template_test_train_mynet_split")
    fit, val = train.hold_out(1000, 0.1, seed=4)
    assert len(val) == 100
    assert sorted(fit + val) == list(range(1000))
    assert train.hold_out(1000, 0.1, seed=4) == (fit, val)
    assert train.hold_out(1000, 0.1, seed=5)[1] != val


def _image_classes(root: Path, classes: dict[str, int], per_class: int) -> None:
    """``root/<class>/<i>.png``: the course's layout, one folder per class, one tint each."""
    rng = np.random.default_rng(0)
    from PIL import Image

    for label, tint in classes.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(tint, 30, (40, 50, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")


def test_train_finetune_splits_the_courses_one_folder_per_class_layout(
        kit_modules: Path, solution_cnn: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    data = kit_modules / "dogs_cats"
    _image_classes(data, {"cat": 40, "dog": 200}, per_class=10)
    train = load_module(kit_modules / "train_finetune.py", "_template_test_train_finetune_flat")
    fit, val, classes = train.split_folders(data, 0.25, seed=3)
    assert classes == ["cat", "dog"]
    assert (len(fit), len(val)) == (15, 5)
    assert sorted(fit.indices + val.indices) == list(range(20))
    assert train.split_folders(data, 0.25, seed=3)[1].indices == val.indices  # seeded
    assert train.split_folders(data, 0.25, seed=4)[1].indices != val.indices

    out = kit_modules / "finetuned.pt"
    assert train.main(["--data", str(data), "--val-fraction", "0.25", "--epochs", "1",
                       "--batch-size", "5", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes: cat=0, dog=1" in printed
    assert "training FinetuneNet on 15 images for 1 epoch(s), validating on 5" in printed
    state = torch.load(out, weights_only=True, map_location="cpu")
    solution_cnn.FinetuneNet().load_state_dict(state, strict=True)


SEED_STYLE_FINETUNE = ("def __init__(self, num_classes: int = 2, load_pretrained: bool = False) "
                       "-> None:\n        super().__init__()\n",
                       "def __init__(self, load_pretrained=False):\n        super().__init__()\n"
                       "        num_classes = NUM_CLASSES\n")


def _seed_style(kit: Path, num_classes: int) -> None:
    """The course's FinetuneNet(load_pretrained=False), with a module constant for the classes."""
    old, new = SEED_STYLE_FINETUNE
    path = kit / "pytorch_cnn.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new) + f"\n\nNUM_CLASSES = {num_classes}\n")


def test_train_finetune_says_when_the_models_classes_do_not_fit_the_data(
        kit_modules: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _seed_style(kit_modules, num_classes=2)
    monkeypatch.setitem(sys.modules, "pytorch_cnn", load_module(kit_modules / "pytorch_cnn.py",
                                                                "pytorch_cnn"))
    data = kit_modules / "breeds"
    _image_classes(data, {"beagle": 30, "persian": 120, "pug": 220}, per_class=3)
    train = load_module(kit_modules / "train_finetune.py", "_template_test_train_finetune_k")
    assert train.main(["--data", str(data), "--epochs", "1", "--threads", "1",
                       "--out", str(kit_modules / "finetuned.pt")]) == 1
    assert ("FinetuneNet gives 2 scores per image but the data has 3 classes; set NUM_CLASSES = 3 "
            "in pytorch_cnn.py") in capsys.readouterr().err
    assert not (kit_modules / "finetuned.pt").exists()


# --------------------------------------------------------------------------- FinetuneNet's signature


def test_the_template_shows_the_courses_finetunenet_signature() -> None:
    import inspect

    template = load_module(TEMPLATE / "pytorch_cnn.py", "_template_test_template_cnn")
    params = inspect.signature(template.FinetuneNet).parameters
    assert list(params) == ["load_pretrained"]
    assert params["load_pretrained"].default is False


@pytest.mark.parametrize("num_classes", [2, 10])
def test_a_seed_style_finetunenet_passes_check(tmp_path: Path, num_classes: int) -> None:
    import torch

    kit = make_kit(tmp_path, solution=True)
    _seed_style(kit, num_classes)
    module = load_module(kit / "pytorch_cnn.py", f"_template_test_seed_{num_classes}")
    torch.save(module.FinetuneNet().state_dict(), kit / "finetuned.pt")
    proc = run_check(kit, "--only", "FinetuneNet,finetuned.pt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[:2] == ["ok  FinetuneNet", "ok  finetuned.pt"]


FINETUNE_SIGNATURES = {
    "no load_pretrained argument": (
        "def __init__(self, load_pretrained=False):", "def __init__(self):",
        "FinetuneNet(load_pretrained=False) raised TypeError"),
    "load_pretrained defaults to True": (
        "def __init__(self, load_pretrained=False):", "def __init__(self, load_pretrained=True):",
        "load_pretrained must default to False"),
}


@pytest.mark.parametrize("case", list(FINETUNE_SIGNATURES))
def test_a_finetunenet_the_course_cannot_build_is_named(tmp_path: Path, case: str) -> None:
    old, new, phrase = FINETUNE_SIGNATURES[case]
    kit = make_kit(tmp_path, solution=True)
    _seed_style(kit, 2)
    (kit / "pytorch_cnn.py").write_text((kit / "pytorch_cnn.py").read_text().replace(
        old, new).replace("weights = models.ResNet18_Weights.DEFAULT if load_pretrained else None",
                          "weights = None"))
    proc = run_check(kit, "--only", "FinetuneNet")
    assert proc.returncode == 1
    assert phrase in result_lines(proc.stdout)["FinetuneNet"]


def test_a_seed_style_finetunenet_passes_the_grader(tmp_path: Path, settings: Settings,
                                                     assignment: Assignment) -> None:
    import torch

    from grader.pipeline import grade
    from grader.result import Status
    from tests.factories import make_zip

    kit = make_kit(tmp_path, solution=True)
    _seed_style(kit, 2)
    module = load_module(kit / "pytorch_cnn.py", "_template_test_seed_grade")
    torch.manual_seed(0)
    torch.save(module.MyNet().state_dict(), kit / "model.pt")
    torch.save(module.FinetuneNet().state_dict(), kit / "finetuned.pt")
    archive = make_zip(tmp_path / "seed.zip", {
        name: (kit / name).read_bytes()
        for name in ("numpy_nn.py", "pytorch_cnn.py", "model.pt", "finetuned.pt")})
    result = grade(archive, assignment, settings)
    finetune = result.part("finetune")
    assert finetune is not None
    assert finetune.status is Status.GRADED, finetune.message
    assert set(finetune.metrics) >= {"ORIG", "AUG", "NEW", "weighted"}


# --------------------------------------------------------------------------- the course's numbers


def test_check_reads_the_limits_from_course_limits_json(tmp_path: Path, state_dicts: Path) -> None:
    kit = make_kit(tmp_path, solution=True, checkpoints=state_dicts)
    course = json.loads((kit / "course_limits.json").read_text())
    course["limits"]["checkpoint_bytes"] = 2**20  # 1 MiB
    (kit / "course_limits.json").write_text(json.dumps(course))
    proc = run_check(kit, "--only", "model.pt")
    assert proc.returncode == 1
    assert "over the grader's 1 MiB limit" in result_lines(proc.stdout)["model.pt"]


def test_check_without_course_limits_json_says_so(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, solution=True)
    (kit / "course_limits.json").unlink()
    proc = run_check(kit, "--only", "Linear")
    assert proc.returncode == 2
    assert proc.stdout.startswith("cannot check: course_limits.json is missing from")
    assert "download the kit again" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
