"""Print the project's dependencies (pyproject.toml) for one image, one requirement a line.

    python3 docker/requirements.py pyproject.toml app       # web and worker: all but the torch stack
    python3 docker/requirements.py pyproject.toml sandbox   # the sandbox: what the runner imports

The images read the versions from pyproject.toml, so they never drift from the project's.
Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import re
import sys
import tomllib

# What student code and the runner import inside the sandbox (grader/runner: stdlib, numpy,
# torch; students' models: torchvision, timm; checkpoints: safetensors, pillow for images).
SANDBOX = {"torch", "torchvision", "timm", "numpy", "pillow", "safetensors"}
# Only the sandbox needs these: the web app and the worker process never import torch.
TORCH_STACK = {"torch", "torchvision", "timm", "safetensors"}


def name_of(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise SystemExit(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def main(pyproject: str, image: str) -> None:
    with open(pyproject, "rb") as fh:
        dependencies = tomllib.load(fh)["project"]["dependencies"]
    if image == "app":
        chosen = [d for d in dependencies if name_of(d) not in TORCH_STACK]
    elif image == "sandbox":
        chosen = [d for d in dependencies if name_of(d) in SANDBOX]
    else:
        raise SystemExit(f"unknown image {image!r}: app or sandbox")
    print("\n".join(chosen))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
