"""A typical WRONG solution of the FashionMNIST lab (instructors only): the reference ``Net``,
trained the way most first attempts are, on upright images only (no rotation augmentation):

    python ../solution/train.py --no-rotate --epochs 3 --threads 1 --out model.pt

It is a good classifier of FashionMNIST's test set as it is (TEST) but much worse on the
rotated copy (ROTATED), so its weighted accuracy stays under the 85 % pass mark: it fails
for the reason the lab is about. ``python ../solution/evaluate.py .`` measures it.
The code is the reference's, unchanged: only the checkpoint differs.
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
