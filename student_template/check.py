#!/usr/bin/env python3
"""Pre-flight check of your submission: run it in this folder before you pack and upload.

    python check.py                       # every check
    python check.py --skip-checkpoints    # only the code, before you have trained
    python check.py --only Linear,SE      # some checks
    python check.py --pack                # the checks, then submission.zip
    python check.py --upload URL          # the checks, submission.zip, then the upload
                                          # (secret from --secret or $GRADER_SECRET)

Each check prints ``ok  <name>`` or ``FAIL <name>: <what to fix>``; the exit code is
0 only if all of them pass. The checks are the course's public ones plus what the
grader relies on (shapes, default constructors, checkpoints that load with
``torch.load(..., weights_only=True)``, no network). Passing them does not mean full
marks: the grader runs hidden tests and hidden test sets. Needs numpy, and torch for
the model checks. The course's files and limits come from course_limits.json, next to
this file (generated from the grader's own settings).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import pickle
import re
import signal
import socket
import sys
import tempfile
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# The course's files and limits, generated from the grader's assignment spec: not restated here.
COURSE_FILE = "course_limits.json"
KIT_TOOLS = frozenset({"check.py", "train_mynet.py", "train_finetune.py", "mnist_data.py"})
ZIP_NAME = "submission.zip"
ITEM_TIMEOUT_S = 120
DECIMALS = 6
NETWORK_MESSAGE = (
    "FinetuneNet() tried to use the network (download pretrained weights?) — the grader has "
    "no network; build it with load_pretrained=False by default"
)
TRAIN_HINT = {
    "model.pt": "train MyNet with python train_mynet.py, which saves it here",
    "finetuned.pt": "train FinetuneNet with python train_finetune.py --data DIR --pretrained, "
    "which saves it here",
}

# The course's public layer checks (DESIGN: compared to 6 decimals).
X = np.array([[-2.0, -1.2, -0.4], [0.4, 1.2, 2.0]])
LIN_W = np.array([[1.0, 0.6], [0.2, -0.2], [-0.6, -1.0]])
LIN_B = np.array([[-0.5, 0.5]])
LIN_OUT = np.array([[-2.5, -0.06], [-1.06, -1.5]])
LIN_G = np.array([[1.0, 1.33333333], [1.66666667, 2.0]])
LIN_DX = np.array([[1.8, -0.06666667, -1.93333333], [2.86666667, -0.06666667, -3.0]])
LIN_DW = np.array([
    [[-2.0, -2.66666667], [-1.2, -1.6], [-0.4, -0.53333333]],
    [[0.66666667, 0.8], [2.0, 2.4], [3.33333333, 4.0]],
])
LIN_DB = np.array([[[1.0, 1.33333333]], [[1.66666667, 2.0]]])
ACT_G = np.array([[-3.0, 1.2, -0.5], [-0.4, 2.2, 3.0]])
RELU_OUT = np.array([[0.0, 0.0, 0.0], [0.4, 1.2, 2.0]])
RELU_DX = np.array([[0.0, 0.0, 0.0], [-0.4, 2.2, 3.0]])
SIG_OUT = np.array([[0.119203, 0.231475, 0.401312], [0.598688, 0.768525, 0.880797]])
SIG_DX = np.array([[-0.314981, 0.213473, -0.12013], [-0.096104, 0.391368, 0.314981]])
SE_Y = np.linspace(-5, 5, 9)
SE_DY = np.array([-5.0, -3.75, -2.5, -1.25, 0.0, 1.25, 2.5, 3.75, 5.0])


class CheckFailed(Exception):
    """A check did not pass; the message is the one sentence the student reads."""


class Course:
    """The course's files and limits from course_limits.json (generated from the spec)."""

    def __init__(self, folder: Path) -> None:
        path = folder / COURSE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files, limits = data["files"], data["limits"]
            self.required = tuple(str(n) for n in files["required"])
            self.report = tuple(str(n) for n in files["report"])
            self.checkpoint_bytes = int(limits["checkpoint_bytes"])
            self.upload_bytes = int(limits["upload_bytes"])
            self.entry_bytes = int(limits["entry_bytes"])
            self.total_bytes = int(limits["total_bytes"])
            self.max_entries = int(limits["max_entries"])
        except FileNotFoundError:
            raise CheckFailed(f"{COURSE_FILE} is missing from {folder}: it comes with the kit and "
                              "holds the course's files and limits; download the kit again "
                              "and copy it here") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckFailed(f"{COURSE_FILE} in {folder} is damaged ({type(exc).__name__}: "
                              f"{exc}); download the kit again and copy it here") from None


class ItemTimeout(BaseException):
    """A check ran over ITEM_TIMEOUT_S (a BaseException: student code may catch Exception)."""


class NetworkBlocked(OSError):
    """Raised by the patched socket functions while student code runs."""


# --------------------------------------------------------------------------- helpers


def fmt(a: object) -> str:
    """A short one-line rendering of an array (or anything) for a message."""
    try:
        arr = np.asarray(a, dtype=float)
        text = np.array2string(np.round(arr, DECIMALS), separator=", ", threshold=12,
                               max_line_width=10_000)
    except (TypeError, ValueError):
        text = repr(a)
    text = " ".join(text.split())
    return text if len(text) <= 140 else text[:137] + "..."


def shape_of(a: object) -> str:
    return str(tuple(np.shape(a))) if a is not None else "None"


def require(condition: bool, sentence: str) -> None:
    if not condition:
        raise CheckFailed(sentence)


def close(actual: object, expected: np.ndarray) -> bool:
    """Equal to 6 decimals (numpy's assert_almost_equal criterion), same shape."""
    try:
        a = np.asarray(actual, dtype=float)
    except (TypeError, ValueError):
        return False
    return a.shape == expected.shape and bool(
        np.all(np.abs(a - expected) < 1.5 * 10.0**-DECIMALS)
    )


def expect(actual: object, expected: np.ndarray, what: str, hint: str = "") -> None:
    """Shape first (the clearer message), then the values."""
    if actual is None:
        raise CheckFailed(f"{what} is None: return (or store) an array of shape "
                          f"{tuple(expected.shape)}")
    require(isinstance(actual, np.ndarray),
            f"{what} must be a numpy array, got {type(actual).__name__}")
    require(actual.shape == expected.shape,
            f"{what} has shape {shape_of(actual)}, expected {tuple(expected.shape)}")
    require(bool(np.all(np.isfinite(actual))), f"{what} contains NaN or inf: {fmt(actual)}")
    require(close(actual, expected), f"{what} is wrong: expected {fmt(expected)}, got "
            f"{fmt(actual)}" + (f" — {hint}" if hint else ""))


# --------------------------------------------------------------------------- the student's code


class Kit:
    """The student's folder: imports their modules once, remembers import failures."""

    def __init__(self, folder: Path, course: Course) -> None:
        self.folder = folder
        self.course = course
        self._modules: dict[str, object] = {}
        self._errors: dict[str, CheckFailed] = {}

    def module(self, name: str):
        if name in self._errors:
            raise self._errors[name]
        if name not in self._modules:
            path = self.folder / f"{name}.py"
            if not path.is_file():
                self._errors[name] = CheckFailed(f"{name}.py is missing from {self.folder}")
                raise self._errors[name]
            if name == "pytorch_cnn":
                torch_module()
            if str(self.folder) not in sys.path:
                sys.path.insert(0, str(self.folder))
            try:
                self._modules[name] = importlib.import_module(name)
            except NotImplementedError:
                raise
            except CheckFailed:
                raise
            except Exception as exc:
                sentence = f"{name}.py could not be imported: {describe(exc, self.folder)}"
                self._errors[name] = CheckFailed(sentence)
                raise self._errors[name] from exc
        return self._modules[name]

    def attr(self, module: str, name: str):
        mod = self.module(module)
        if not hasattr(mod, name):
            raise CheckFailed(f"{module}.py has no {name}: keep the name from the template")
        return getattr(mod, name)


def torch_module():
    try:
        import torch
    except ImportError as exc:
        raise CheckFailed("torch is not installed: pip install torch torchvision") from exc
    return torch


def describe(exc: BaseException, folder: Path) -> str:
    """``ValueError: message (numpy_nn.py, line 88, in backward)``, the deepest student frame."""
    message = " ".join(str(exc).split()) or "(no message)"
    if len(message) > 160:
        message = message[:157] + "..."
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<"):  # <frozen importlib._bootstrap> and the like
            continue
        path = Path(frame.filename).resolve()
        if path.parent == folder and path.name != Path(__file__).name:
            where = f" ({path.name}, line {frame.lineno}, in {frame.name})"
    return f"{type(exc).__name__}: {message}{where}"


@contextlib.contextmanager
def no_network(attempts: list[str]):
    """Make every connection and DNS look-up fail, and record who tried.

    Model caches point at an empty folder too, so weights cached on this machine
    cannot hide a download the grader would have to do.
    """

    def refuse(what: str):
        def blocked(*args, **kwargs):
            target = args[1] if what.endswith("connect") and len(args) > 1 else (
                args[0] if args else "")
            attempts.append(f"{what}({target!r})")
            raise NetworkBlocked(f"check.py blocks the network: {what}({target!r})")

        return blocked

    patches = [
        (socket.socket, "connect", refuse("socket.connect")),
        (socket.socket, "connect_ex", refuse("socket.connect")),
        (socket, "create_connection", refuse("socket.create_connection")),
        (socket, "getaddrinfo", refuse("socket.getaddrinfo")),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    env_names = ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "TIMM_HOME")
    saved_env = {name: os.environ.get(name) for name in env_names}
    with tempfile.TemporaryDirectory(prefix="check-cache-") as cache:
        try:
            for owner, name, replacement in patches:
                setattr(owner, name, replacement)
            for name in env_names:
                os.environ[name] = cache
            yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextlib.contextmanager
def time_limit(seconds: int):
    """Stop a check that hangs (POSIX main thread only; elsewhere no limit)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise ItemTimeout

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- numpy_nn


def check_linear(kit: Kit) -> None:
    Linear = kit.attr("numpy_nn", "Linear")
    layer = Linear(3, 2)
    require(np.shape(getattr(layer, "W", None)) == (3, 2)
            and np.shape(getattr(layer, "b", None)) == (1, 2),
            f"Linear(3, 2) must create W of shape (3, 2) and b of shape (1, 2), got "
            f"{shape_of(getattr(layer, 'W', None))} and {shape_of(getattr(layer, 'b', None))}")
    layer.W, layer.b = LIN_W.copy(), LIN_B.copy()
    x = X.copy()
    expect(layer.forward(x), LIN_OUT, "Linear.forward on the public example",
           "it should return x @ W + b")
    require(np.array_equal(x, X), "Linear.forward changed its input x in place; leave x as it is")
    expect(layer.backward(LIN_G.copy()), LIN_DX, "Linear.backward (dL/dx) on the public example",
           "dL/dx = dL_wrt_output @ W.T")

    for attr, expected, collapsed in (("dL_wrt_W", LIN_DW, (3, 2)), ("dL_wrt_b", LIN_DB, (1, 2))):
        value = getattr(layer, attr, None)
        shape = tuple(np.shape(value)) if value is not None else None
        if shape in (collapsed, collapsed[1:]):
            raise CheckFailed(
                f"Linear.backward stores {attr} with shape {shape}, summed or averaged over the "
                f"batch: store per-sample gradients, shape {tuple(expected.shape)} = (N, "
                f"{'in' if attr == 'dL_wrt_W' else '1'}, out); the training loop takes the mean")
        if attr == "dL_wrt_b" and shape == (2, 2):
            raise CheckFailed("Linear.backward stores dL_wrt_b with shape (2, 2): it must be "
                              "per-sample with a middle axis, (N, 1, out) = (2, 1, 2)")
        expect(value, expected, f"Linear.{attr} (per-sample) on the public example")

    grads = layer.grads()
    require(isinstance(grads, dict) and set(grads) == {"W", "b"},
            f"Linear.grads() must return a dict with keys 'W' and 'b', got {grads!r:.80}")
    expect(grads["W"], LIN_DW, "Linear.grads()['W']", "return self.dL_wrt_W")
    expect(grads["b"], LIN_DB, "Linear.grads()['b']", "return self.dL_wrt_b")

    params = layer.params()
    require(isinstance(params, dict) and set(params) == {"W", "b"},
            f"Linear.params() must return a dict with keys 'W' and 'b', got {params!r:.80}")
    expect(params["W"], LIN_W, "Linear.params()['W']")
    expect(params["b"], LIN_B, "Linear.params()['b']")
    # The course's training loop updates params() in place: that must change the layer.
    params["W"] -= 0.5
    params["b"] += 0.25
    require(close(layer.W, LIN_W - 0.5) and close(layer.b, LIN_B + 0.25),
            "Linear.params() returns copies: updating params()['W'] in place did not change "
            "the layer's W, so training would never change it; return the arrays themselves, "
            "{'W': self.W, 'b': self.b}")
    expect(layer.forward(X.copy()), X @ (LIN_W - 0.5) + LIN_B + 0.25,
           "Linear.forward after an in-place update of params()",
           "forward must use the current self.W and self.b")

    rng = np.random.default_rng(1)
    for n, d_in, d_out in ((5, 4, 3), (1, 2, 6)):
        layer = Linear(d_in, d_out)
        require(np.shape(layer.W) == (d_in, d_out) and np.shape(layer.b) == (1, d_out),
                f"Linear({d_in}, {d_out}) must create W of shape ({d_in}, {d_out}) and b of "
                f"shape (1, {d_out}), got {shape_of(layer.W)} and {shape_of(layer.b)}")
        w, b = rng.normal(size=(d_in, d_out)), rng.normal(size=(1, d_out))
        x, g = rng.normal(size=(n, d_in)), rng.normal(size=(n, d_out))
        layer.W, layer.b = w.copy(), b.copy()
        what = f"on a random batch (N={n}, in={d_in}, out={d_out})"
        expect(layer.forward(x), x @ w + b, f"Linear.forward {what}")
        expect(layer.backward(g), g @ w.T, f"Linear.backward {what}")
        expect(layer.dL_wrt_W, np.einsum("ni,no->nio", x, g), f"Linear.dL_wrt_W {what}",
               "dL_wrt_W[n] = outer(x[n], dL_wrt_output[n])")
        expect(layer.dL_wrt_b, g[:, None, :], f"Linear.dL_wrt_b {what}")


def _check_activation(kit: Kit, name: str, fn, dfn) -> object:
    """Forward/backward on 3-D and 4-D inputs, against the element-wise formulas."""
    cls = kit.attr("numpy_nn", name)
    rng = np.random.default_rng(2)
    for shape in ((2, 3, 4), (2, 3, 4, 5)):
        x = rng.normal(size=shape)
        x[np.abs(x) < 1e-3] = 0.5  # keep clear of ReLU's kink
        g = rng.normal(size=shape)
        layer = cls()
        what = f"on a {len(shape)}-D input of shape {shape}"
        out = layer.forward(x.copy())
        require(np.shape(out) == shape, f"{name} must work on inputs of any shape: {name}.forward "
                f"{what} returned shape {shape_of(out)}")
        expect(out, fn(x), f"{name}.forward {what}")
        expect(layer.backward(g), dfn(x, g), f"{name}.backward {what}")
    return cls


def check_relu(kit: Kit) -> None:
    ReLU = kit.attr("numpy_nn", "ReLU")
    layer, x = ReLU(), X.copy()
    expect(layer.forward(x), RELU_OUT, "ReLU.forward on the public example",
           "it should return max(0, x)")
    require(np.array_equal(x, X), "ReLU.forward changed its input x in place; return a new array "
            "(np.maximum(x, 0))")
    expect(layer.backward(ACT_G.copy()), RELU_DX, "ReLU.backward on the public example",
           "pass the gradient where x > 0 and 0 elsewhere")
    _check_activation(kit, "ReLU", lambda x: np.maximum(x, 0), lambda x, g: g * (x > 0))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def check_sigmoid(kit: Kit) -> None:
    Sigmoid = kit.attr("numpy_nn", "Sigmoid")
    layer, x = Sigmoid(), X.copy()
    expect(layer.forward(x), SIG_OUT, "Sigmoid.forward on the public example",
           "it should return 1 / (1 + exp(-x))")
    require(np.array_equal(x, X), "Sigmoid.forward changed its input x in place; return a new "
            "array")
    dx = layer.backward(ACT_G.copy())
    s = _sigmoid(X)
    if isinstance(dx, np.ndarray) and dx.shape == ACT_G.shape and not close(dx, SIG_DX):
        if close(dx, ACT_G):
            raise CheckFailed("Sigmoid.backward returns the incoming gradient unchanged: multiply "
                              "it by the sigmoid's derivative s * (1 - s), where s = forward(x)")
        if close(dx, ACT_G * s) or close(dx, ACT_G * (1 - s)):
            raise CheckFailed("Sigmoid.backward uses only part of the sigmoid's derivative: "
                              "return dL_wrt_output * s * (1 - s), where s = forward(x)")
    expect(dx, SIG_DX, "Sigmoid.backward on the public example",
           "return dL_wrt_output * s * (1 - s), the chain rule with the sigmoid's derivative")
    _check_activation(kit, "Sigmoid", _sigmoid,
                      lambda x, g: g * _sigmoid(x) * (1 - _sigmoid(x)))
    big = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with np.errstate(all="ignore"):
        out = Sigmoid().forward(big)
    require(isinstance(out, np.ndarray) and bool(np.all(np.isfinite(out))),
            f"Sigmoid.forward gives NaN or inf for large |x| ({fmt(out)}): compute "
            "1 / (1 + np.exp(-x)), which stays finite")


def check_se(kit: Kit) -> None:
    SE = kit.attr("numpy_nn", "SE")
    loss = SE()
    y, y_gt = SE_Y.copy(), 0.5 * SE_Y
    out = loss.forward(y, y_gt)
    require(np.shape(out) == (9,), f"SE.forward must return the element-wise squared error "
            f"(shape (9,) here), not a sum or mean: got shape {shape_of(out)}")
    expect(out, (SE_Y - 0.5 * SE_Y) ** 2, "SE.forward on the public example",
           "it should return (y - y_gt) ** 2")
    expect(loss.backward(), SE_DY, "SE.backward on the public example",
           "the gradient of (y - y_gt) ** 2 w.r.t. y is 2 * (y - y_gt)")
    rng = np.random.default_rng(3)
    y, y_gt = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    expect(loss.forward(y, y_gt), (y - y_gt) ** 2, "SE.forward on a (4, 3) batch")
    expect(loss.backward(), 2 * (y - y_gt), "SE.backward after a second forward (4, 3)",
           "backward must use the y and y_gt of the latest forward")


# --------------------------------------------------------------------------- pytorch_cnn


def _run_model(model, x, name: str):
    torch = torch_module()
    require(isinstance(model, torch.nn.Module), f"{name} must be a torch.nn.Module")
    model.eval()
    with torch.no_grad():
        out = model(x)
    require(isinstance(out, torch.Tensor), f"{name}'s forward must return a tensor, got "
            f"{type(out).__name__}")
    return out


def check_mynet(kit: Kit) -> None:
    torch = torch_module()
    MyNet = kit.attr("pytorch_cnn", "MyNet")
    torch.manual_seed(0)
    model = MyNet()
    for batch in (2, 1):
        out = _run_model(model, torch.rand(batch, 1, 28, 28), "MyNet")
        require(tuple(out.shape) == (batch, 10), f"MyNet must map a ({batch}, 1, 28, 28) batch to "
                f"({batch}, 10), got {tuple(out.shape)}")
        require(out.is_floating_point() and bool(torch.isfinite(out).all()),
                "MyNet's output must be finite floats (log-probabilities)")
        sums = out.double().exp().sum(dim=1)
        require(bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)),
                f"MyNet must return log-probabilities, but exp of a row sums to "
                f"{float(sums[0]):.4g}, not 1: end forward with F.log_softmax(x, dim=1)")


def check_finetune(kit: Kit) -> None:
    """Builds as the grader does, FinetuneNet(), and as the course does,
    FinetuneNet(load_pretrained=False); any signature and number of classes that allow both."""
    torch = torch_module()
    FinetuneNet = kit.attr("pytorch_cnn", "FinetuneNet")
    try:
        params = inspect.signature(FinetuneNet).parameters
    except (TypeError, ValueError):
        params = {}
    if "load_pretrained" in params:
        require(params["load_pretrained"].default is False,
                "FinetuneNet's load_pretrained must default to False: the grader builds "
                "FinetuneNet() without network and loads your finetuned.pt over it")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 96, 96)
    out = _run_model(FinetuneNet(), x, "FinetuneNet")
    hint = ": replace resnet's fc with nn.Linear(512, number of classes)" if out.ndim == 2 else ""
    require(out.ndim == 2 and out.shape[0] == 2 and out.shape[1] >= 2,
            f"FinetuneNet() must map a (2, 3, 96, 96) batch to (2, K) scores, one per class "
            f"(K = 2 for dogs and cats), got {tuple(out.shape)}{hint}")
    require(out.is_floating_point() and bool(torch.isfinite(out).all()),
            "FinetuneNet's output must be finite float scores")
    try:
        course_model = FinetuneNet(load_pretrained=False)
    except TypeError as exc:
        raise CheckFailed(f"FinetuneNet(load_pretrained=False) raised {describe(exc, kit.folder)}: "
                          "the course builds the model this way; keep the argument "
                          "load_pretrained, default False") from exc
    same = _run_model(course_model, x, "FinetuneNet")
    require(tuple(same.shape) == tuple(out.shape),
            f"FinetuneNet(load_pretrained=False) gives scores of shape {tuple(same.shape)} but "
            f"FinetuneNet() {tuple(out.shape)}: both must build the same network")


def check_classify(kit: Kit) -> None:
    torch = torch_module()
    classify = kit.attr("pytorch_cnn", "classify")
    scores = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0], [-1.0, -2.0, 5.0], [0.5, 0.4, 0.3]])

    class Fixed(torch.nn.Module):
        """A stand-in model whose scores are known, so classify is checked on its own."""

        def forward(self, x):
            return torch.log_softmax(scores[: len(x)], dim=1)

    model = Fixed().eval()
    result = classify(model, torch.rand(4, 1, 28, 28))
    require(isinstance(result, torch.Tensor), f"classify must return a torch tensor, got "
            f"{type(result).__name__}")
    require(result.ndim == 1 and len(result) == 4, f"classify must return one class index per "
            f"image, shape (B,) = (4,), got {tuple(result.shape)}: take argmax over dim 1")
    require(not result.is_floating_point() and not result.is_complex()
            and result.dtype != torch.bool,
            f"classify must return integer class indices, got {result.dtype}: argmax gives int64")
    require(result.tolist() == [1, 0, 2, 0], f"classify returned {result.tolist()} for scores "
            "whose argmax is [1, 0, 2, 0]: return model(x).argmax(dim=1)")


# --------------------------------------------------------------------------- checkpoints


def _unpickling_sentence(name: str, exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"GLOBAL ([\w.]+)", text)
    culprit = match.group(1) if match else ""
    module_name, _, attr = culprit.rpartition(".")
    obj = getattr(sys.modules.get(module_name), attr, None) if culprit else None
    torch = torch_module()
    whole_model = isinstance(obj, type) and issubclass(obj, torch.nn.Module)
    if whole_model or culprit.startswith(("torch.nn.modules", "pytorch_cnn.", "__main__.")):
        return (f"{name} holds a whole pickled model ({culprit}), which the grader's "
                f"torch.load(weights_only=True) refuses: save only the weights, "
                f"torch.save(model.state_dict(), '{name}')")
    what = f"a pickled {culprit}" if culprit else "pickled Python objects"
    return (f"{name} holds {what}, which the grader's torch.load(weights_only=True) refuses: "
            f"save only the weights, torch.save(model.state_dict(), '{name}')")


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _load_checkpoint(kit: Kit, name: str, class_name: str) -> None:
    torch = torch_module()
    path = kit.folder / name
    require(path.is_file(), f"not found in {kit.folder}: {TRAIN_HINT[name]} (or run python "
            "check.py --skip-checkpoints until then)")
    size, limit = path.stat().st_size, kit.course.checkpoint_bytes
    require(size <= limit, f"{name} is {size / 2**20:.0f} MiB, over the grader's "
            f"{limit / 2**20:g} MiB limit: make the model smaller")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise CheckFailed(_unpickling_sentence(name, exc)) from exc
    except Exception as exc:
        raise CheckFailed(f"{name} could not be read by torch.load ({describe(exc, kit.folder)}): "
                          f"save it again with torch.save(model.state_dict(), '{name}')") from exc
    require(isinstance(state, dict), f"{name} holds a {type(state).__name__}, not a state_dict: "
            f"save it with torch.save(model.state_dict(), '{name}')")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [k for k, v in state.items() if isinstance(v, dict)]
        entry = f" (your weights are probably in the '{nested[0]}' entry)" if nested else ""
        raise CheckFailed(f"{name} holds a dict with keys {_keys([str(k) for k in state])} rather "
                          f"than a state_dict{entry}: save torch.save(model.state_dict(), "
                          f"'{name}') itself")

    cls = kit.attr("pytorch_cnn", class_name)
    try:
        model = cls()
    except NotImplementedError as exc:
        raise CheckFailed(f"cannot load {name} before {class_name} is implemented") from exc
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state
                  and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys {_keys(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_keys(unexpected)}")
        for k in mismatched[:2]:
            problems.append(f"{k} has shape {tuple(state[k].shape)} in the file but "
                            f"{tuple(expected[k].shape)} in {class_name}()")
        hint = (f"save the state_dict of the {class_name} that is in pytorch_cnn.py now "
                "(retrain if you changed it)")
        for prefix in ("module.", "_orig_mod."):
            if unexpected and all(k.startswith(prefix) for k in unexpected):
                hint = (f"the keys start with '{prefix}' (a wrapped model): save the state_dict "
                        f"of the {class_name} inside the wrapper")
        if class_name == "FinetuneNet" and mismatched and not (missing or unexpected):
            hint += ("; trained on another number of classes? the grader builds FinetuneNet() "
                     "with no arguments, so its default must have one output per class")
        raise CheckFailed(f"{name} does not fit {class_name}(): {'; '.join(problems)} — {hint}")
    model.load_state_dict(state, strict=True)
    shape = (2, 1, 28, 28) if class_name == "MyNet" else (2, 3, 96, 96)
    out = _run_model(model, torch.rand(*shape), class_name)
    require(bool(torch.isfinite(out).all()), f"with the weights of {name}, {class_name} gives NaN "
            "or inf: training diverged; retrain (a lower --lr helps)")


def check_model_pt(kit: Kit) -> None:
    _load_checkpoint(kit, "model.pt", "MyNet")


def check_finetuned_pt(kit: Kit) -> None:
    _load_checkpoint(kit, "finetuned.pt", "FinetuneNet")


CHECKS = (
    ("Linear", check_linear, False),
    ("ReLU", check_relu, False),
    ("Sigmoid", check_sigmoid, False),
    ("SE", check_se, False),
    ("MyNet", check_mynet, False),
    ("FinetuneNet", check_finetune, False),
    ("classify", check_classify, False),
    ("model.pt", check_model_pt, True),
    ("finetuned.pt", check_finetuned_pt, True),
)


def run_item(kit: Kit, name: str, check) -> str | None:
    """Run one check; None if it passed, else the sentence to print."""
    attempts: list[str] = []
    sentence = None
    try:
        with no_network(attempts), time_limit(ITEM_TIMEOUT_S):
            check(kit)
    except CheckFailed as exc:
        sentence = str(exc)
    except NotImplementedError as exc:
        detail = " ".join(str(exc).split())
        sentence = "not implemented yet" + (f" ({detail})" if detail else "")
    except ItemTimeout:
        sentence = f"did not finish within {ITEM_TIMEOUT_S} s (an endless loop?)"
    except (Exception, SystemExit) as exc:  # a student's bug must not stop the other checks
        sentence = describe(exc, kit.folder)
    if attempts:
        if name in ("FinetuneNet", "finetuned.pt"):
            return NETWORK_MESSAGE
        return (f"your code tried to use the network ({attempts[0]}) — the grader has no "
                "network; download nothing when the module is imported or a model is built")
    return sentence


def run_checks(folder: Path, course: Course, only: set[str], skip_checkpoints: bool
               ) -> tuple[int, int]:
    """Print one line per check; returns (number run, number failed)."""
    kit = Kit(folder, course)
    ran = failed = 0
    for name, check, is_checkpoint in CHECKS:
        if only and name.lower() not in only:
            continue
        if is_checkpoint and skip_checkpoints:
            print(f"skip {name} (--skip-checkpoints)", flush=True)
            continue
        ran += 1
        sentence = run_item(kit, name, check)
        if sentence is None:
            print(f"ok  {name}", flush=True)
        else:
            failed += 1
            sentence = " ".join(sentence.split())
            print(f"FAIL {name}: {sentence}{'' if sentence.endswith('.') else '.'}", flush=True)
    return ran, failed


# --------------------------------------------------------------------------- pack and upload


def files_to_pack(folder: Path, course: Course) -> list[Path]:
    """Required files, the report files present, and the student's own top-level modules.

    Everything sits at the zip's root, as the course asks: no folders.
    """
    chosen = [folder / name for name in course.required]
    report = [folder / name for name in course.report]
    helpers = sorted(p for p in folder.glob("*.py")
                     if p.name not in course.required and p.name not in KIT_TOOLS)
    for path in report + helpers:
        if path.is_file() and not path.name.startswith(".") and path not in chosen:
            chosen.append(path)
    return chosen


def _over_limit(files: list[Path], course: Course) -> str:
    """Why the zip would be refused for its size or number of files ("" if it would not)."""
    if len(files) > course.max_entries:
        return f"{len(files)} files, over the grader's limit of {course.max_entries}"
    for path in files:
        if path.stat().st_size > course.entry_bytes:
            return (f"{path.name} is {path.stat().st_size / 2**20:.0f} MiB, over the grader's "
                    f"{course.entry_bytes / 2**20:g} MiB limit per file")
    total = sum(p.stat().st_size for p in files)
    if total > course.total_bytes:
        return (f"the files add up to {total / 2**20:.0f} MiB, over the grader's "
                f"{course.total_bytes / 2**20:g} MiB limit for all files together")
    return ""


def pack(folder: Path, course: Course) -> Path | None:
    """Write submission.zip with every file at its root; None (and a message) if refused."""
    missing = [name for name in course.required if not (folder / name).is_file()]
    if missing:
        hints = [TRAIN_HINT[m] for m in missing if m in TRAIN_HINT]
        print(f"cannot pack: {', '.join(missing)} missing from {folder}"
              + (f" ({'; '.join(hints)})" if hints else "") + f"; {ZIP_NAME} was not written",
              flush=True)
        return None
    files = files_to_pack(folder, course)
    refusal = _over_limit(files, course)
    if refusal:
        print(f"cannot pack: {refusal}; {ZIP_NAME} was not written", flush=True)
        return None
    target = folder / ZIP_NAME
    partial = folder / f".{ZIP_NAME}.partial"
    with zipfile.ZipFile(partial, "w") as zf:
        for path in files:
            # Checkpoints and images hardly compress: store them, deflate the text.
            method = zipfile.ZIP_STORED if path.suffix in (".pt", ".png") else zipfile.ZIP_DEFLATED
            zf.write(path, arcname=path.name, compress_type=method)
    os.replace(partial, target)
    if target.stat().st_size > course.upload_bytes:
        target.unlink()
        print(f"cannot pack: the zip is over the {course.upload_bytes / 2**20:g} MiB upload "
              f"limit; {ZIP_NAME} was not written", flush=True)
        return None
    print(f"packed {target} ({target.stat().st_size / 2**20:.1f} MiB): "
          + ", ".join(p.name for p in files), flush=True)
    absent = [name for name in course.report if not (folder / name).is_file()]
    if absent:
        print(f"note: {', '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing: the "
              "report is expected, though not graded (the notebook cnn.ipynb saves the plots)",
              flush=True)
    return target


def _multipart(path: Path) -> tuple[Iterator[bytes], int, str]:
    """The zip as the form field ``file``: the body in 1 MiB pieces read from disk as they are
    sent (never the whole zip in memory), its length, and its content type."""
    boundary = f"----check-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/zip\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[bytes]:
        yield head
        with path.open("rb") as fh:
            while piece := fh.read(1 << 20):
                yield piece
        yield tail

    length = len(head) + path.stat().st_size + len(tail)
    return pieces(), length, f"multipart/form-data; boundary={boundary}"


def _json(raw: bytes) -> dict:
    try:
        data = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def upload(archive: Path, base_url: str, secret: str, timeout_s: float) -> bool:
    """POST the zip to URL/api/submissions; prints the server's answer; True if accepted."""
    url = base_url.rstrip("/") + "/api/submissions"
    body, length, content_type = _multipart(archive)
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {secret}",
        "Content-Type": content_type,
        "Content-Length": str(length),
        "Accept": "application/json",
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as exc:
        data = _json(exc.read())
        reason = data.get("error") or data.get("message") or exc.reason
        hint = {401: " (check your secret)", 403: " (check your secret)",
                413: " (the zip is too large)"}.get(exc.code, "")
        if exc.code >= 500:
            hint = " (the server failed; try again later)"
        retry = exc.headers.get("Retry-After") if exc.headers else None
        if retry:
            hint += f" (try again in {retry} s)"
        print(f"upload failed: the server answered HTTP {exc.code}: {reason}{hint}", flush=True)
        return False
    except urllib.error.URLError as exc:
        print(f"upload failed: could not reach {url} ({exc.reason}); check the address and your "
              "network connection", flush=True)
        return False
    except (TimeoutError, OSError) as exc:
        print(f"upload failed: no answer from {url} ({exc}); try again later", flush=True)
        return False
    data = _json(raw)
    message = (data.get("message") or data.get("status")
               or raw.decode("utf-8", "replace").strip()[:200] or "accepted")
    print(f"uploaded {archive.name} (HTTP {status}): {message}", flush=True)
    if isinstance(data.get("remaining_attempts"), int):
        print(f"attempts left: {data['remaining_attempts']}", flush=True)
    link = data.get("url") or data.get("status_url") or data.get("submission_url")
    if link:
        print(f"follow the grading at {urllib.parse.urljoin(base_url.rstrip('/') + '/', link)}",
              flush=True)
    return True


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pre-flight check of your submission.")
    parser.add_argument("--skip-checkpoints", action="store_true",
                        help="check the code only (model.pt / finetuned.pt not needed yet)")
    parser.add_argument("--only", default="",
                        help="comma-separated checks to run: " + ", ".join(n for n, _, _ in CHECKS))
    parser.add_argument("--pack", action="store_true", help=f"after the checks, write {ZIP_NAME}")
    parser.add_argument("--upload", metavar="URL", help=f"after the checks, pack and POST "
                        f"{ZIP_NAME} to URL/api/submissions")
    parser.add_argument("--secret", help="your upload secret (default: $GRADER_SECRET)")
    parser.add_argument("--force", action="store_true",
                        help="upload even if some checks failed (it still uses an attempt)")
    parser.add_argument("--timeout", type=float, default=300.0, help="upload timeout in seconds")
    args = parser.parse_args(argv)
    names = {n.lower() for n, _, _ in CHECKS}
    args.only = {n.strip().lower() for n in args.only.split(",") if n.strip()}
    if args.only - names:
        parser.error(f"unknown check(s) {', '.join(sorted(args.only - names))}; "
                     f"choose from {', '.join(n for n, _, _ in CHECKS)}")
    if args.upload and not args.upload.startswith(("http://", "https://")):
        parser.error("--upload needs the grader's address, starting with http:// or https://")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the checks, then pack and upload if asked; returns the exit code."""
    args = parse_args(argv)
    sys.dont_write_bytecode = True  # keep __pycache__ out of the student's folder
    try:
        course = Course(HERE)
    except CheckFailed as exc:
        print(f"cannot check: {exc}", flush=True)
        return 2
    ran, failed = run_checks(HERE, course, args.only, args.skip_checkpoints)
    if failed:
        print(f"{failed} of {ran} checks failed: fix the FAIL lines above", flush=True)
    else:
        print(f"all {ran} checks passed", flush=True)
    if not (args.pack or args.upload):
        return 1 if failed else 0
    if failed:
        print(f"note: {failed} checks failed; the parts they belong to will lose points",
              flush=True)
    archive = pack(HERE, course)
    if archive is None:
        return 1
    if args.upload:
        if failed and not args.force:
            print("not uploading: checks failed, and every upload uses one of your attempts; "
                  "fix them, or pass --force to upload anyway", flush=True)
            return 1
        secret = args.secret or os.environ.get("GRADER_SECRET", "")
        if not secret:
            print("not uploading: no secret; pass --secret S or set GRADER_SECRET (the course "
                  "page shows yours)", flush=True)
            return 1
        if not upload(archive, args.upload, secret, args.timeout):
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
