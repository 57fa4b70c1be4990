"""Train MyNet (pytorch_cnn.py) on FashionMNIST and save its state_dict to model.pt.

    python train_mynet.py                           # 2 epochs on all 60,000 training images
    python train_mynet.py --epochs 1 --limit 5000   # a quick try on 5,000 images
    python train_mynet.py --data ~/data/FashionMNIST/raw --out model.pt

Reads the training IDX files (``train-images-idx3-ubyte.gz``, ``train-labels-...``,
gzipped or not) from ``--data``; nothing is downloaded. A seeded random part of the
TRAINING images (``--val-fraction``, 10 %) is held out for validation, and the accuracy
on it is printed after every epoch. The test split (``t10k-*``) is never read: in the
course the test set is the grader's, hidden, and choosing a model by its score on the
test set would only fit the model to it. The images go to MyNet as the grader sends
them: (B, 1, 28, 28) floats in [0, 1].
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import random_split

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from mnist_data import DEFAULT_DATA  # noqa: E402  (the kit's own module, next to this file)
from mnist_data import load_split as load_idx_split  # noqa: E402


# --------------------------------------------------------------------------- data


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``train`` split: uint8 images (N, 1, 28, 28) and int64 labels (N,)."""
    images, labels = load_idx_split(data_dir, split)
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def hold_out(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded (training, validation) indices of ``n`` training images, as random_split gives."""
    n_val = max(1, round(n * fraction))
    generator = torch.Generator().manual_seed(seed)
    train, val = random_split(range(n), [n - n_val, n_val], generator=generator)
    return list(train), list(val)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1], exactly what ToTensor() gives and the grader sends."""
    return images.float().div_(255.0)


# --------------------------------------------------------------------------- progress


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


# --------------------------------------------------------------------------- training


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Accuracy of ``model`` (in eval mode) on uint8 images ``x`` with labels ``y``."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(to_input(x[i : i + batch_size]))
            correct += int((out.argmax(dim=1) == y[i : i + batch_size]).sum())
    return correct / max(1, len(x))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA),
                        help=f"folder of the FashionMNIST IDX files (default {DEFAULT_DATA})")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--limit", type=int, default=0,
                        help="train on only N (random) training images, for quick runs")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="part of the training images held out for validation (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "model.pt",
                        help="where to save the state_dict (default: model.pt next to this file)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.limit < 0:
        parser.error("--epochs and --batch-size must be at least 1, --limit at least 0")
    if not 0 < args.val_fraction < 1:
        parser.error("--val-fraction must lie between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train MyNet as the options say, save its state_dict; returns the exit code."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from pytorch_cnn import MyNet

    try:
        x_all, y_all = load_split(args.data, "train")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    train_idx, val_idx = hold_out(len(x_all), args.val_fraction, args.seed)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    x_val, y_val = x_all[val_idx], y_all[val_idx]
    generator = torch.Generator().manual_seed(args.seed)
    if args.limit and args.limit < len(x_train):
        keep = torch.randperm(len(x_train), generator=generator)[: args.limit]
        x_train, y_train = x_train[keep], y_train[keep]
    print(f"training MyNet on {len(x_train)} images for {args.epochs} epoch(s), "
          f"validating on {len(x_val)} held-out training images")

    model = MyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
    # Cosine decay to zero over the whole run: a good model in one or two epochs.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    started = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        progress = Progress(len(x_train), f"epoch {epoch}/{args.epochs}")
        total_loss = 0.0
        for i in range(0, len(order), args.batch_size):
            batch = order[i : i + args.batch_size]
            loss = F.nll_loss(model(to_input(x_train[batch])), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = loss.item()
            total_loss += value * len(batch)
            progress.update(len(batch), value)
        progress.close()
        accuracy = evaluate(model, x_val, y_val, batch_size=500)
        print(f"epoch {epoch}/{args.epochs}: loss {total_loss / len(x_train):.4f}, "
              f"validation accuracy {accuracy:.2%} ({time.monotonic() - started:.0f} s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved MyNet's state_dict to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
