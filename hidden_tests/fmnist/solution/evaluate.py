"""Print the TEST, ROTATED and weighted accuracy of a model folder, as the grader measures them.

    python evaluate.py .            # the reference solution (this folder)
    python evaluate.py ../wrong     # the typical wrong solution
    python evaluate.py ../solution --seed 25013 --data /usr/share/datasets/fashion-mnist

The folder holds ``model.py`` (``Net``, ``classify``) and ``model.pt`` (a state_dict). The
model is built with ``Net()``, loaded with ``weights_only=True`` and ``strict=True``, put
in eval mode and asked ``classify(model, x)`` without gradients on batches of float32
images (B, 1, 28, 28), normalised (pixels / 255, then (x - 0.2860) / 0.3530); it must
return (B,) integer class indices. TEST is FashionMNIST's 10,000 test images; ROTATED is
the same images turned by a seeded angle in [-25, 25] degrees (see ``fmnist_data.py``).
Weighted = 0.5 TEST + 0.5 ROTATED; the lab passes above 85 %.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fmnist_data import DEFAULT_DATA, ROTATED_SEED, load_split, normalise, rotated_copy  # noqa: E402

WEIGHTS = {"TEST": 0.5, "ROTATED": 0.5}
THRESHOLD = 0.85


def load_model(folder: Path) -> tuple[object, torch.nn.Module]:
    """The folder's ``model`` module and its ``Net()`` with ``model.pt`` loaded, in eval mode."""
    spec = importlib.util.spec_from_file_location("submitted_model", folder / "model.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no model.py in {folder}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Net()
    state = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()
    return module, model


def accuracy(module: object, model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
             batch_size: int) -> float:
    """Share of ``images`` (uint8 (N, 28, 28)) that ``classify`` gets right."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            got = module.classify(model, normalise(images[i : i + batch_size]))  # type: ignore[attr-defined]
            got = torch.as_tensor(got)
            if got.shape != (len(images[i : i + batch_size]),) or got.dtype.is_floating_point:
                raise SystemExit(f"classify returned {got.dtype} {tuple(got.shape)}; "
                                 "it must return (B,) integer class indices")
            correct += int((got == torch.from_numpy(labels[i : i + batch_size])).sum())
    return correct / len(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder with model.py and model.pt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=ROTATED_SEED, help="seed of ROTATED")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    images, labels = load_split(args.data, "test")
    splits = {"TEST": images, "ROTATED": rotated_copy(images, seed=args.seed)}
    module, model = load_model(args.folder.resolve())
    start = time.monotonic()
    scores = {name: accuracy(module, model, x, labels, args.batch_size) for name, x in splits.items()}
    weighted = sum(WEIGHTS[name] * score for name, score in scores.items())
    for name, score in scores.items():
        print(f"{name:8s} {score:.2%}")
    verdict = "passes" if weighted > THRESHOLD else "fails"
    print(f"weighted {weighted:.2%} ({verdict}: the lab passes above {THRESHOLD:.0%}); "
          f"classify took {time.monotonic() - start:.1f} s for {2 * len(images)} images")


if __name__ == "__main__":
    main()
