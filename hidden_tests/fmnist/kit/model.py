"""Your FashionMNIST classifier: implement ``Net`` and ``classify``.

The grader builds ``Net()`` with NO arguments, loads your ``model.pt`` with
``torch.load(path, weights_only=True, map_location="cpu")`` and
``load_state_dict(..., strict=True)``, calls ``model.eval()`` and then, without gradients,
``classify(model, x)`` on batches of the hidden images.

``x`` is a float32 tensor of shape (B, 1, 28, 28), already normalised exactly like
``transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])``:
the pixels divided by 255, then (x - 0.2860) / 0.3530. So do not normalise again inside the
model, and train on inputs normalised the same way (``train.py`` does).

Keep the names ``Net`` and ``classify``; you may add other classes and functions. The
grader runs your model on a CPU with a time limit: a small CNN is plenty.
"""

from __future__ import annotations

import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530  # of FashionMNIST's training images; the grader uses the same


class Net(nn.Module):
    """(B, 1, 28, 28) normalised images -> (B, 10) class scores."""

    def __init__(self) -> None:
        super().__init__()
        # TODO: your layers. A start: two or three blocks of Conv2d(3x3) + BatchNorm2d + ReLU
        # (+ MaxPool2d(2)), then Flatten and one or two Linear layers ending in 10 outputs.
        # The grader calls Net() with no arguments: give every argument a default.
        raise NotImplementedError("Net.__init__: define your layers")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TODO: (B, 1, 28, 28) -> (B, 10) scores (logits or log-probabilities).
        raise NotImplementedError("Net.forward")


def classify(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) normalised images -> (B,) integer class indices (0-9).

    The grader checks the shape (B,) and an integer dtype: return indices, not scores.
    """
    # TODO: the index of the highest score of every image, e.g. model(x).argmax(dim=1).
    raise NotImplementedError("classify")
