"""Part 2: PyTorch models.

``FCNet`` and ``SimpleCNN`` are complete examples. Implement:

- ``MyNet``: your own CNN for FashionMNIST (train it with ``python train_mynet.py``);
- ``FinetuneNet``: a pretrained ResNet-18 with a new last layer for dogs and cats
  (train it in the notebook, or with ``python train_finetune.py --data DIR --pretrained``);
- ``classify``: the predicted class of every image of a batch.

The grader builds your models with their DEFAULT constructors, ``MyNet()`` and
``FinetuneNet()`` (the course's notebook builds ``FinetuneNet(load_pretrained=False)``,
the same network), loads your checkpoints with
``torch.load(path, weights_only=True, map_location="cpu")`` and
``load_state_dict(..., strict=True)``, calls ``model.eval()`` and runs the hidden
test sets through ``classify``. It has no network: the default constructor must
not download anything. ``python check.py`` tries all of this locally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models  # noqa: F401  (for FinetuneNet)

# The number of classes of the dogs-and-cats data (one folder per class): 2, cat and dog.
# If your data has more classes (some years use 10 breeds), change it; train_finetune.py
# tells you when it does not match.
NUM_CLASSES = 2


class FCNet(nn.Module):
    """Example: one fully connected layer. (B, 1, 28, 28) -> (B, 10) log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return F.log_softmax(self.fc(x), dim=1)


class SimpleCNN(nn.Module):
    """Example: one convolution, then a linear layer.

    (B, 1, 28, 28) -> (B, 10) log-probabilities.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 10, kernel_size=3, stride=2, padding=1)  # -> (B, 10, 14, 14)
        self.fc = nn.Linear(10 * 14 * 14, 10)  # 1960 -> 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = torch.flatten(x, 1)
        return F.log_softmax(self.fc(x), dim=1)


class MyNet(nn.Module):
    """Your CNN for FashionMNIST.

    Input: (B, 1, 28, 28) float images in [0, 1] (``transforms.ToTensor()`` only,
    no normalisation; normalise inside ``forward`` if you want to).
    Output: (B, 10) log-probabilities (end with ``F.log_softmax(x, dim=1)``).

    ``MyNet()`` must work without arguments: the grader builds it that way and
    then loads ``model.pt``. Pass mark: 75 % on the hidden FashionMNIST test set,
    within the time limit (keep it small: 10,000 images should take seconds on a CPU).
    """

    def __init__(self) -> None:
        super().__init__()
        raise NotImplementedError("MyNet.__init__: build your layers here")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [0, 1] -> (B, 10) log-probabilities."""
        raise NotImplementedError("MyNet.forward: return (B, 10) log-probabilities")


class FinetuneNet(nn.Module):
    """ResNet-18 with its last layer replaced, for the dogs-and-cats images.

    Input: (B, 3, 96, 96) RGB images in [0, 1] (``Resize((96, 96))`` + ``ToTensor()``,
    no normalisation; apply the ImageNet mean/std inside ``forward`` if you want).
    Output: (B, NUM_CLASSES) scores (logits or log-probabilities).

    Build the network with ``models.resnet18(weights=None)`` and replace ``fc`` with a
    new ``nn.Linear(512, NUM_CLASSES)``. Load the ImageNet weights ONLY when
    ``load_pretrained=True`` (``models.ResNet18_Weights.DEFAULT``): training asks for
    them, the grader never does (it has no network and loads your ``finetuned.pt`` over
    the default ``FinetuneNet()``). Any other pretrained model is fine too, as long as
    nothing is downloaded unless ``load_pretrained=True``.
    """

    def __init__(self, load_pretrained: bool = False) -> None:
        super().__init__()
        raise NotImplementedError(
            "FinetuneNet.__init__: resnet18, pretrained only if load_pretrained, new fc"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 96, 96) in [0, 1] -> (B, NUM_CLASSES) scores."""
        raise NotImplementedError("FinetuneNet.forward: return (B, NUM_CLASSES) scores")


def classify(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The predicted class of every image: (B, ...) batch -> (B,) int64 class indices.

    ``model`` is a MyNet or FinetuneNet in eval mode; ``x`` is a batch of its inputs.
    No gradients are needed (use ``torch.no_grad()``).
    """
    raise NotImplementedError("classify: return the argmax of model(x) over the classes, (B,)")
