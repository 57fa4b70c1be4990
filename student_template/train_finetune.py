"""Fine-tune FinetuneNet (pytorch_cnn.py) on an image folder and save its state_dict.

    python train_finetune.py --data dogs_cats --pretrained            # the real thing
    python train_finetune.py --data dogs_cats --pretrained --freeze   # train only the new fc
    python train_finetune.py --data dogs_cats --epochs 1 --limit 200  # a quick try

``--data`` is laid out in one of two ways:

- the course's: one folder per class, ``DIR/<class>/*.jpg`` (any image type). A seeded
  ``random_split`` (``--val-fraction``, 20 %, and ``--seed``) holds out the validation
  images, so the same seed always gives the same split;
- already split: ``DIR/train/<class>/...`` and optionally ``DIR/val/<class>/...`` with
  the same classes.

Class indices are the folder names in alphabetical order (``cat`` = 0, ``dog`` = 1).
Images go to the model as the grader sends them: ``Resize((96, 96))`` + ``ToTensor()``,
RGB in [0, 1].

``--pretrained`` builds ``FinetuneNet(load_pretrained=True)``, which downloads the
ImageNet weights once (needs the internet); the saved ``finetuned.pt`` then holds
all the weights, so the grader never downloads anything.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, random_split
from torchvision import datasets, transforms

HERE = Path(__file__).resolve().parent
IMAGE_SIZE = (96, 96)


class Progress:
    """A tqdm bar if tqdm is installed, else one self-overwriting line on stderr."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.start = time.monotonic()
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)

    def update(self, n: int, loss: float) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            return
        elapsed = time.monotonic() - self.start
        sys.stderr.write(
            f"\r{self.desc}: {100 * self.done / self.total:3.0f}% "
            f"({self.done}/{self.total} images, {elapsed:.0f} s) loss {loss:.4f}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def image_folder(root: Path, train: bool) -> datasets.ImageFolder:
    """An ImageFolder giving (3, 96, 96) floats in [0, 1]; random flips when training."""
    steps: list = [transforms.Resize(IMAGE_SIZE)]
    if train:
        steps.append(transforms.RandomHorizontalFlip())
    steps.append(transforms.ToTensor())
    return datasets.ImageFolder(str(root), transform=transforms.Compose(steps))


class DataError(Exception):
    """The --data folder is not laid out as expected; the message says how."""


def split_folders(data: Path, val_fraction: float, seed: int
                  ) -> tuple[Dataset, Dataset | None, list[str]]:
    """(training set, validation set or None, class names) of either layout of ``data``."""
    train_dir, val_dir = data / "train", data / "val"
    if train_dir.is_dir():
        train_set = image_folder(train_dir, train=True)
        val_set = image_folder(val_dir, train=False) if val_dir.is_dir() else None
        if val_set is not None and val_set.classes != train_set.classes:
            raise DataError(f"val/ has classes {val_set.classes} but train/ has "
                            f"{train_set.classes}")
        return train_set, val_set, train_set.classes
    if not data.is_dir():
        raise DataError(f"no folder {data}")
    try:
        # Two views of the same files: flips for training, none for validation.
        for_training, for_validation = image_folder(data, train=True), image_folder(data, False)
    except (FileNotFoundError, RuntimeError) as exc:  # no class folders / no images in them
        raise DataError(f"{data} holds neither train/<class>/<images> nor <class>/<images> "
                        f"({exc})") from None
    n = len(for_training)
    n_val = round(n * val_fraction)
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"{data} has {n} images: too few to hold out {val_fraction:.0%} for "
                        "validation")
    generator = torch.Generator().manual_seed(seed)
    train_part, val_part = random_split(range(n), [n - n_val, n_val], generator=generator)
    return (Subset(for_training, list(train_part)), Subset(for_validation, list(val_part)),
            for_training.classes)


def build_model(finetune_net: type, num_classes: int, pretrained: bool) -> torch.nn.Module:
    """FinetuneNet as the course builds it; num_classes is passed only if it takes one."""
    try:
        takes = inspect.signature(finetune_net).parameters
    except (TypeError, ValueError):
        takes = {}
    if "num_classes" in takes:
        return finetune_net(num_classes=num_classes, load_pretrained=pretrained)
    return finetune_net(load_pretrained=pretrained)


def evaluate(model: torch.nn.Module, data: Dataset, batch_size: int) -> float:
    """Accuracy of ``model`` (in eval mode) on ``data``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in DataLoader(data, batch_size=batch_size):
            correct += int((model(x).argmax(dim=1) == y).sum())
            total += len(y)
    return correct / max(1, total)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder with <class>/* (split here), or train/<class>/* and "
                        "optionally val/<class>/*")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam's learning rate")
    parser.add_argument("--limit", type=int, default=0,
                        help="train on only N (random) training images, for quick runs")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="with <class>/* folders: part held out for validation (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "finetuned.pt",
                        help="where to save the state_dict (default: finetuned.pt next to "
                        "this file)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--pretrained", action="store_true",
                        help="start from the ImageNet weights (downloads them once)")
    parser.add_argument("--freeze", action="store_true",
                        help="train only the new last layer (fc), keep the rest fixed")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.limit < 0:
        parser.error("--epochs and --batch-size must be at least 1, --limit at least 0")
    if not 0 < args.val_fraction < 1:
        parser.error("--val-fraction must lie between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Fine-tune FinetuneNet as the options say, save its state_dict; returns the exit code."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from pytorch_cnn import FinetuneNet

    try:
        train_set, val_set, classes = split_folders(args.data, args.val_fraction, args.seed)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    generator = torch.Generator().manual_seed(args.seed)
    if args.limit and args.limit < len(train_set):
        keep = torch.randperm(len(train_set), generator=generator)[: args.limit].tolist()
        train_set = Subset(train_set, keep)
    print("classes: " + ", ".join(f"{name}={i}" for i, name in enumerate(classes)))
    print(f"training FinetuneNet on {len(train_set)} images for {args.epochs} epoch(s)"
          + (f", validating on {len(val_set)}" if val_set is not None else
             " (no val/ folder: no validation)"))

    try:
        model = build_model(FinetuneNet, len(classes), args.pretrained)
    except OSError as exc:  # urllib's URLError is an OSError
        if not args.pretrained:
            raise
        print(f"error: could not download the ImageNet weights ({exc}); connect to the internet "
              "for the first run (they are cached afterwards)", file=sys.stderr)
        return 1
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(1, 3, *IMAGE_SIZE)).shape[-1]
    if outputs != len(classes):
        print(f"error: FinetuneNet gives {outputs} scores per image but the data has "
              f"{len(classes)} classes; set NUM_CLASSES = {len(classes)} in pytorch_cnn.py (the "
              "grader builds FinetuneNet() with no arguments)", file=sys.stderr)
        return 1
    if args.freeze:
        # The new last layer is the model's last nn.Linear, wherever it sits.
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in last.parameters():
            p.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.lr)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=generator)
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.train()
        progress = Progress(len(train_set), f"epoch {epoch}/{args.epochs}")
        total_loss = 0.0
        for x, y in loader:
            # cross_entropy works for logits; log-probabilities give the same loss.
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.item()
            total_loss += value * len(y)
            progress.update(len(y), value)
        progress.close()
        line = f"epoch {epoch}/{args.epochs}: loss {total_loss / len(train_set):.4f}"
        if val_set is not None:
            line += f", validation accuracy {evaluate(model, val_set, args.batch_size):.2%}"
        print(f"{line} ({time.monotonic() - started:.0f} s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved FinetuneNet's state_dict to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
