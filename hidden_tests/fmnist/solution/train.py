"""Train the reference ``Net`` (model.py) on FashionMNIST and save its state_dict.

    python train.py                        # the reference: with rotations -> model.pt
    python train.py --no-rotate --epochs 3 --threads 1 --out ../wrong/model.pt   # the wrong one

CPU only, seeded (the same --threads gives the same checkpoint). An epoch takes about two
minutes on two free cores; on a shared machine much longer. Reads the training IDX files
from ``--data``; holds out a seeded ``--val`` images of them and prints the accuracy on
them, plain and randomly rotated, after every epoch. The test split is never read here
(``evaluate.py`` measures it).

Augmentation (the point of the lab): every training image is turned by a random angle in
[-25, 25] degrees, bilinear, the corners filled with 0, on the un-normalised image in
[0, 1], and only then normalised with the training set's mean and std, as the grader's
inputs are. ``--no-rotate`` leaves it out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fmnist_data import (  # noqa: E402  (modules next to this file)
    DEFAULT_DATA,
    DEGREES,
    MEAN,
    STD,
    load_split,
    random_rotation,
)
from model import Net  # noqa: E402


def accuracy(model: Net, x01: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy on float images in [0, 1] (normalised here), in eval mode."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x01), 1000):
            out = model((x01[i : i + 1000] - MEAN) / STD)
            correct += int((out.argmax(1) == y[i : i + 1000]).sum())
    return correct / len(x01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--val", type=int, default=5000, help="training images held out")
    parser.add_argument("--limit", type=int, default=0, help="train on N images only (a try)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-rotate", action="store_true", help="no rotation augmentation")
    parser.add_argument("--out", type=Path, default=HERE / "model.pt")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    images, labels = load_split(args.data, "train")
    x = torch.from_numpy(images)[:, None].float() / 255.0  # ToTensor: (N, 1, 28, 28) in [0, 1]
    y = torch.from_numpy(labels)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    val_idx, train_idx = order[: args.val], order[args.val :]
    if args.limit:
        train_idx = train_idx[: args.limit]
    x_val, y_val = x[val_idx], y[val_idx]
    x_val_rot = random_rotation(x_val, DEGREES, torch.Generator().manual_seed(args.seed + 1))

    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(train_idx) + args.batch_size - 1) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    shuffle = torch.Generator().manual_seed(args.seed + 2)
    turn = torch.Generator().manual_seed(args.seed + 3)
    start = time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        perm = train_idx[torch.randperm(len(train_idx), generator=shuffle)]
        for i in range(0, len(perm), args.batch_size):
            batch = perm[i : i + args.batch_size]
            xb = x[batch]
            if not args.no_rotate:
                xb = random_rotation(xb, DEGREES, turn)
            loss = F.cross_entropy(model((xb - MEAN) / STD), y[batch], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        print(f"epoch {epoch}/{args.epochs}: loss {total / len(perm):.4f}, "
              f"val {accuracy(model, x_val, y_val):.2%}, "
              f"val rotated {accuracy(model, x_val_rot, y_val):.2%} "
              f"({time.monotonic() - start:.0f} s)", flush=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
