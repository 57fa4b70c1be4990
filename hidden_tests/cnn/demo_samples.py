"""The demo samples of this lab: good, mediocre and broken submissions made from the solution.

Called by ``grader demo`` (``grader.demo.make_samples``). The good one is the reference
solution trained as a student would; the mediocre one has a classic layer bug and
under-trained models; the broken one has unimplemented layers, a model that wants to
download weights and a checkpoint that does not fit.
"""

from __future__ import annotations

from pathlib import Path

from grader.config import Assignment, Settings
from grader.demo import Echo, cached, fit, load_solution, zip_files

HERE = Path(__file__).resolve().parent
SOLUTION_DIR = HERE / "solution"
TEMPLATE_DIR = HERE.parent.parent / "student_template"


def train_mynet(out: Path, *, images: int, epochs: int, echo: Echo) -> None:
    """Train the reference MyNet on the first ``images`` FashionMNIST training images."""
    import numpy as np
    import torch

    from grader.datasets.fashion import load_fashion_train

    torch.manual_seed(0)
    x, y = load_fashion_train()
    x = x[:images, None, :, :]
    model = load_solution("pytorch_cnn", SOLUTION_DIR).MyNet()
    fit(model, x, np.asarray(y[:images], dtype=np.int64), epochs=epochs, batch_size=64,
         lr=1e-3, echo=echo, label=f"MyNet on {images} images")
    torch.save(model.state_dict(), out)


def train_finetune(out: Path, *, images: int, epochs: int, num_classes: int, echo: Echo) -> None:
    """Train the reference FinetuneNet on synthetic dogs-and-cats training images."""
    import torch

    from grader.datasets.synthetic import TRAIN_STREAM, draw_images

    torch.manual_seed(0)
    x, y = draw_images("plain", images, seed=99, stream=TRAIN_STREAM, num_classes=num_classes)
    model = load_solution("pytorch_cnn", SOLUTION_DIR).FinetuneNet(num_classes=num_classes)
    fit(model, x, y, epochs=epochs, batch_size=32, lr=1e-3, echo=echo,
         label=f"FinetuneNet on {images} images")
    torch.save(model.state_dict(), out)


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
    demo = settings.home / "demo"
    import torch

    from grader.datasets.manifest import load_manifest

    demo = settings.home / "demo"
    cache = demo / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(settings.data_dir / assignment.name, verify=False)
    num_classes = len(manifest.datasets["dogs_cats"].classes)
    torch.set_num_threads(max(1, int(assignment.limits.cpus)))

    echo("training the sample submissions' models (cached after the first run)")
    good_mynet = cached(cache / "mynet-good.pt", lambda p: train_mynet(
        p, images=60000, epochs=1, echo=echo))
    weak_mynet = cached(cache / "mynet-weak-1000.pt", lambda p: train_mynet(
        p, images=1000, epochs=1, echo=echo))
    good_ft = cached(cache / f"finetune-good-{num_classes}.pt", lambda p: train_finetune(
        p, images=1200, epochs=2, num_classes=num_classes, echo=echo))
    weak_ft = cached(cache / f"finetune-weak-400-{num_classes}.pt", lambda p: train_finetune(
        p, images=400, epochs=1, num_classes=num_classes, echo=echo))

    numpy_nn, pytorch_cnn = SOLUTION_DIR / "numpy_nn.py", SOLUTION_DIR / "pytorch_cnn.py"
    return {
        "good": zip_files(demo / "good.zip", {
            "numpy_nn.py": numpy_nn, "pytorch_cnn.py": pytorch_cnn,
            "model.pt": good_mynet, "finetuned.pt": good_ft,
        }),
        "mediocre": zip_files(demo / "mediocre.zip", {
            "numpy_nn.py": _buggy_numpy_nn(), "pytorch_cnn.py": pytorch_cnn,
            "model.pt": weak_mynet, "finetuned.pt": weak_ft,
        }),
        "broken": zip_files(demo / "broken.zip", {
            "numpy_nn.py": TEMPLATE_DIR / "numpy_nn.py", "pytorch_cnn.py": BROKEN_PYTORCH_CNN,
            "model.pt": good_mynet, "finetuned.pt": good_ft,
        }),
    }
