"""Reference solution of the FashionMNIST lab (instructors only): a small CNN.

The grader builds ``Net()`` with no arguments, loads ``model.pt`` with
``torch.load(path, weights_only=True, map_location="cpu")`` and
``load_state_dict(..., strict=True)``, calls ``model.eval()`` and, without gradients,
``classify(model, x)`` on batches of the hidden splits TEST and ROTATED.

``x`` is a float32 tensor (B, 1, 28, 28), already normalised like the training data:
ToTensor() (pixels / 255) then Normalize(mean=0.2860, std=0.3530), so the black
background is about -0.81. ``classify`` returns a (B,) integer tensor of class indices.

Trained by ``train.py`` (next to this file) with random rotations of up to 25 degrees,
which is what the ROTATED split asks of a model.
"""

from __future__ import annotations

import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530  # of FashionMNIST's 60,000 training images, pixels in [0, 1]


class Net(nn.Module):
    """(B, 1, 28, 28) normalised images -> (B, 10) class scores (logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),  # -> (B, 16, 28, 28)
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),  # -> (B, 32, 28, 28)
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # -> (B, 32, 14, 14)
            nn.Conv2d(32, 64, kernel_size=3, padding=1),  # -> (B, 64, 14, 14)
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # -> (B, 64, 7, 7)
            nn.Conv2d(64, 64, kernel_size=3, padding=1),  # -> (B, 64, 7, 7)
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def classify(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) normalised images -> (B,) int64 predicted class indices."""
    return model(x).argmax(dim=1)
