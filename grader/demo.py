"""The demo: build the demo hidden sets, make three sample submissions, grade them in the sandbox.

The samples come from the instructor's reference solution (``hidden_tests/cnn/solution``):
a good one (trained as a student would), a mediocre one (a layer bug, under-trained models)
and a broken one (unimplemented layers, a model that wants to download weights, a
checkpoint that does not fit). Trained checkpoints are cached under ``<home>/demo``.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from grader.config import Assignment, Settings

log = logging.getLogger(__name__)

SOLUTION_DIR = Path(__file__).resolve().parent.parent / "hidden_tests" / "cnn" / "solution"
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "student_template"
Echo = Callable[[str], None]


def load_solution(name: str, directory: Path = SOLUTION_DIR) -> ModuleType:
    """Import ``directory/name.py`` under a private module name (trusted instructor code)."""
    spec = importlib.util.spec_from_file_location(f"_demo_{name}", directory / f"{name}.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fit(model: Any, x: Any, y: Any, *, epochs: int, batch_size: int, lr: float, echo: Echo,
         label: str) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = len(x)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        started, total = time.monotonic(), 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb = torch.from_numpy(x[idx.numpy()]).float().div_(255.0)
            out = model(xb)
            loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y[idx.numpy()]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        echo(f"    {label}: epoch {epoch + 1}/{epochs}, loss {total / n:.3f}, "
             f"{time.monotonic() - started:.0f} s")
    model.eval()


def train_mynet(out: Path, *, images: int, epochs: int, echo: Echo) -> None:
    """Train the reference MyNet on the first ``images`` FashionMNIST training images."""
    import numpy as np
    import torch

    from grader.datasets.fashion import load_fashion_train

    torch.manual_seed(0)
    x, y = load_fashion_train()
    x = x[:images, None, :, :]
    model = load_solution("pytorch_cnn").MyNet()
    _fit(model, x, np.asarray(y[:images], dtype=np.int64), epochs=epochs, batch_size=64,
         lr=1e-3, echo=echo, label=f"MyNet on {images} images")
    torch.save(model.state_dict(), out)


def train_finetune(out: Path, *, images: int, epochs: int, num_classes: int, echo: Echo) -> None:
    """Train the reference FinetuneNet on synthetic dogs-and-cats training images."""
    import torch

    from grader.datasets.synthetic import TRAIN_STREAM, draw_images

    torch.manual_seed(0)
    x, y = draw_images("plain", images, seed=99, stream=TRAIN_STREAM, num_classes=num_classes)
    model = load_solution("pytorch_cnn").FinetuneNet(num_classes=num_classes)
    _fit(model, x, y, epochs=epochs, batch_size=32, lr=1e-3, echo=echo,
         label=f"FinetuneNet on {images} images")
    torch.save(model.state_dict(), out)


def _cached(path: Path, make: Callable[[Path], None]) -> Path:
    if not path.is_file():
        tmp = path.with_suffix(".partial")
        make(tmp)
        tmp.replace(path)
    return path


def _zip(dest: Path, files: dict[str, Path | str]) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, source in files.items():
            if isinstance(source, Path):
                zf.write(source, name)
            else:
                zf.writestr(name, source)
    return dest


def _buggy_numpy_nn() -> str:
    """The reference layers with a classic mistake: Sigmoid.backward without the derivative."""
    return (SOLUTION_DIR / "numpy_nn.py").read_text(encoding="utf-8") + (
        "\n\n# --- demo: a typical mistake ---------------------------------------------\n"
        "def _sigmoid_backward_no_derivative(self, dL_wrt_output):\n"
        "    return dL_wrt_output  # forgot to multiply by s * (1 - s)\n\n\n"
        "Sigmoid.backward = _sigmoid_backward_no_derivative\n"
    )


BROKEN_PYTORCH_CNN = '''"""A broken submission: FinetuneNet wants to download pretrained weights."""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


class FinetuneNet(nn.Module):
    def __init__(self):
        super().__init__()
        # Downloads ImageNet weights: the grader has no network, so this fails there.
        self.net = torchvision.models.resnet18(weights="IMAGENET1K_V1")

    def forward(self, x):
        return self.net(x)


def classify(model, x):
    return model(x).argmax(dim=1)
'''


def make_samples(settings: Settings, assignment: Assignment, *, echo: Echo) -> dict[str, Path]:
    """Build (or reuse) the three demo zips; returns {name: zip path}."""
    import torch

    from grader.datasets.manifest import load_manifest

    demo = settings.home / "demo"
    cache = demo / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(settings.data_dir / assignment.name, verify=False)
    num_classes = len(manifest.datasets["dogs_cats"].classes)
    torch.set_num_threads(max(1, int(assignment.limits.cpus)))

    echo("training the sample submissions' models (cached after the first run)")
    good_mynet = _cached(cache / "mynet-good.pt", lambda p: train_mynet(
        p, images=60000, epochs=1, echo=echo))
    weak_mynet = _cached(cache / "mynet-weak-1000.pt", lambda p: train_mynet(
        p, images=1000, epochs=1, echo=echo))
    good_ft = _cached(cache / f"finetune-good-{num_classes}.pt", lambda p: train_finetune(
        p, images=1200, epochs=2, num_classes=num_classes, echo=echo))
    weak_ft = _cached(cache / f"finetune-weak-400-{num_classes}.pt", lambda p: train_finetune(
        p, images=400, epochs=1, num_classes=num_classes, echo=echo))

    numpy_nn, pytorch_cnn = SOLUTION_DIR / "numpy_nn.py", SOLUTION_DIR / "pytorch_cnn.py"
    return {
        "good": _zip(demo / "good.zip", {
            "numpy_nn.py": numpy_nn, "pytorch_cnn.py": pytorch_cnn,
            "model.pt": good_mynet, "finetuned.pt": good_ft,
        }),
        "mediocre": _zip(demo / "mediocre.zip", {
            "numpy_nn.py": _buggy_numpy_nn(), "pytorch_cnn.py": pytorch_cnn,
            "model.pt": weak_mynet, "finetuned.pt": weak_ft,
        }),
        "broken": _zip(demo / "broken.zip", {
            "numpy_nn.py": TEMPLATE_DIR / "numpy_nn.py", "pytorch_cnn.py": BROKEN_PYTORCH_CNN,
            "model.pt": good_mynet, "finetuned.pt": good_ft,
        }),
    }


def ensure_hidden_data(settings: Settings, assignment: Assignment, *, echo: Echo) -> Path:
    """Build the demo hidden sets unless a verified build is already there."""
    from grader.datasets.build import build_sets
    from grader.datasets.manifest import load_manifest
    from grader.datasets.provenance import Provenance
    from grader.errors import GraderFault

    target = settings.data_dir / assignment.name
    try:
        load_manifest(target)
        echo(f"hidden test data: {target} (verified)")
    except GraderFault:
        echo(f"building the hidden test data in {target}")
        build_sets(assignment.datasets, target, progress=echo)
    for dataset in load_manifest(target, verify=False).datasets.values():
        if dataset.provenance is not Provenance.PRIVATE:  # the public t10k set, synthetic dogs
            echo(f"NOTE: {dataset.name}: {dataset.note}")
    return target
