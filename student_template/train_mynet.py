"""Train MyNet (pytorch_cnn.py) on FashionMNIST and save its state_dict to model.pt.

    python train_mynet.py                           # 2 epochs on all 60,000 training images
    python train_mynet.py --epochs 1 --limit 5000   # a quick try on 5,000 images
    python train_mynet.py --data ~/data/FashionMNIST/raw --out model.pt

Reads the four original IDX files (``train-images-idx3-ubyte.gz`` ... , gzipped or
not) from ``--data``; nothing is downloaded. After every epoch it prints the
accuracy on FashionMNIST's test split (``t10k-*``), the course's validation set.
The images go to MyNet as the grader sends them: (B, 1, 28, 28) floats in [0, 1].
"""

from __future__ import annotations

import argparse
import gzip
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    return data.reshape(shape)


def find_idx(data_dir: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``data_dir`` (or in torchvision's FashionMNIST/raw below it)."""
    for folder in (data_dir, data_dir / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no {name}(.gz) in {data_dir}: pass --data with the folder of the four FashionMNIST "
        "IDX files (https://github.com/zalandoresearch/fashion-mnist)"
    )


def load_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``train`` or ``t10k`` split: uint8 images (N, 1, 28, 28) and int64 labels (N,)."""
    images = read_idx(find_idx(data_dir, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find_idx(data_dir, f"{split}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels in {data_dir}")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "model.pt",
                        help="where to save the state_dict (default: model.pt next to this file)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.limit < 0:
        parser.error("--epochs and --batch-size must be at least 1, --limit at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train MyNet as the options say, save its state_dict; returns the exit code."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from pytorch_cnn import MyNet

    try:
        x_train, y_train = load_split(args.data, "train")
        x_val, y_val = load_split(args.data, "t10k")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    generator = torch.Generator().manual_seed(args.seed)
    if args.limit and args.limit < len(x_train):
        keep = torch.randperm(len(x_train), generator=generator)[: args.limit]
        x_train, y_train = x_train[keep], y_train[keep]
    print(f"training MyNet on {len(x_train)} images for {args.epochs} epoch(s), "
          f"validating on {len(x_val)} test images")

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
