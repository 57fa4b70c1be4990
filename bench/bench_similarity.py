"""Similarity for a course of 1,000 students: the incremental update per new result, and a full
recomputation.

    .venv/bin/python bench/bench_similarity.py [--students 1000] [--additions 20]

Synthetic, at realistic sizes: every student has a MyNet-sized state_dict (the reference
MyNet, 422k parameters, seeded per student), a numpy_nn.py and a pytorch_cnn.py of
realistic length (the starter kit with each method filled in by one of several
implementations, identifiers renamed at random, lines of their own added), and predictions
over 10,000 + 3 x 500 items from a model of item difficulty (students of similar skill fail
on the same hard items, as real ones do). About 2 % are copies of another student (weights
with noise, renamed code, the other's predictions). The index keeps its evidence in a
SQLite file, as the web app's worker would keep it in its database.

Measured: evidence extraction of one new submission from real files (a checkpoint file and
two source files), ``add()`` of it to the index of all the others (median and p99 over
``--additions``), the full ``recompute()`` of every pair, and opening the index from SQLite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine  # a sibling script (bench/ is on sys.path when run)

from grader.config import PROJECT_ROOT
from grader.similarity.evidence import Evidence, Wanted, extract
from grader.similarity.index import Config, SimilarityIndex
from grader.similarity.storage import SqliteStorage

SOLUTION = PROJECT_ROOT / "hidden_tests" / "cnn" / "solution"
TEMPLATE = PROJECT_ROOT / "student_template"
HONEST = PROJECT_ROOT / "tests" / "fixtures" / "similarity" / "numpy_nn_honest.py"
WANTED = Wanted(code=("numpy_nn.py", "pytorch_cnn.py"), checkpoints={"model.pt": ("model.pt",)})
SPLITS = {"mynet/test": (10_000, 10), "finetune/ORIG": (500, 2), "finetune/AUG": (500, 2),
          "finetune/NEW": (500, 2)}
EXTRAS = ["assert np.all(np.isfinite(self.W))", "dtype = np.float64", "eps = 1e-12", "n_items = 0",
          "self.calls = getattr(self, 'calls', 0) + 1", "checked = True", "debug = False",
          "shape_in = getattr(self, 'shape_in', None)", "import math"]
NAMES = ["x", "g", "grad", "out", "inp", "mask", "result", "value", "s", "diff", "h", "z", "tmp"]


# --------------------------------------------------------------------------- synthetic students


def _bodies() -> dict[str, list[str]]:
    """For each method the kit leaves open, the bodies three students wrote (reference, honest, third)."""
    def methods(text: str) -> dict[str, str]:
        found: dict[str, str] = {}
        current, lines, klass, in_doc = None, [], "", False
        for line in text.splitlines():
            stripped = line.strip()
            if line.startswith("class "):
                klass = line.split()[1].split("(")[0]
            match = re.match(r"    def (\w+)\(", line)
            if match:
                if current:
                    found[current] = "\n".join(lines).rstrip()
                current, lines, in_doc = f"{klass}.{match.group(1)}", [], False
                continue
            if current is None:
                continue
            if not (line.startswith("        ") or not stripped):
                found[current], current = "\n".join(lines).rstrip(), None
                continue
            if in_doc or (stripped.startswith('"""') and not lines):
                opened = stripped.startswith('"""') and not in_doc
                in_doc = not (stripped.endswith('"""') and (len(stripped) > 3 or not opened))
                continue
            lines.append(line)
        return found

    reference, honest = methods((SOLUTION / "numpy_nn.py").read_text()), methods(HONEST.read_text())
    third = {
        "Linear.forward": "        self.x = x\n        return x.dot(self.W) + self.b",
        "Linear.backward": ("        self.dL_wrt_W = np.einsum('ni,nj->nij', self.x, dL_wrt_output)\n"
                            "        self.dL_wrt_b = np.expand_dims(dL_wrt_output, 1)\n"
                            "        return dL_wrt_output.dot(self.W.T)"),
        "Linear.params": "        return {'W': self.W, 'b': self.b}",
        "Linear.grads": "        return {'W': self.dL_wrt_W, 'b': self.dL_wrt_b}",
        "ReLU.forward": "        self.x = x\n        return np.maximum(x, 0)",
        "ReLU.backward": "        return dL_wrt_output * (self.x > 0)",
        "Sigmoid.forward": "        self.y = 1 / (1 + np.exp(-x))\n        return self.y",
        "Sigmoid.backward": "        return dL_wrt_output * self.y * (1 - self.y)",
        "SE.forward": "        self.y, self.t = y, y_gt\n        return (y - y_gt) ** 2",
        "SE.backward": "        return 2 * (self.y - self.t)",
    }
    return {name: [reference.get(name, body), honest.get(name, body), body] for name, body in third.items()}


def numpy_nn(rng: np.random.Generator, bodies: dict[str, list[str]]) -> str:
    """The kit's numpy_nn.py, each open method filled by one of the bodies, renamed, lines added."""
    text = (TEMPLATE / "numpy_nn.py").read_text()
    klass = ""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("class "):
            klass = line.split()[1].split("(")[0]
        if "raise NotImplementedError(" in line and klass in {"Linear", "ReLU", "Sigmoid", "SE"}:
            method = next(re.match(r"    def (\w+)\(", lines[j]).group(1) for j in range(i, 0, -1)
                          if re.match(r"    def (\w+)\(", lines[j]))
            body = bodies[f"{klass}.{method}"][rng.integers(3)]
            extras = rng.choice(EXTRAS, size=rng.integers(0, 3), replace=False)
            out.extend(f"        {line}" for line in extras)
            out.append(body)
            if rng.random() < 0.3:
                out.append(f"        # checked on {rng.integers(1, 30)} examples, to {rng.random():.3g}")
            while not lines[i].rstrip().endswith(")") or lines[i].strip().startswith('"'):
                i += 1
        else:
            out.append(line)
        i += 1
    code = "\n".join(out) + "\n"
    for name in rng.choice(NAMES, size=4, replace=False):
        code = re.sub(rf"\b{name}\b(?=\s*=)", f"{name}_{rng.integers(100)}", code)
    extra = "\n".join(f"STEP_{k} = {rng.random():.6f}  # tuning note {rng.integers(1000)}"
                      for k in range(rng.integers(3, 12)))
    return code + "\n\n" + extra + "\n"


ACTIVATIONS = ["ReLU()", "LeakyReLU(0.1)", "GELU()", "ReLU(inplace=True)"]
HEADS = [
    "        self.backbone.fc = nn.Linear(512, num_classes)\n",
    "        self.backbone.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, num_classes))\n",
    "        for p in self.backbone.parameters():\n            p.requires_grad = False\n"
    "        self.backbone.fc = nn.Linear(self.backbone.fc.in_features, num_classes)\n",
]
CLASSIFY = [
    "def classify(model, x):\n    with torch.no_grad():\n        return model(x).argmax(1)\n",
    "def classify(model, x):\n    model.eval()\n    out = model(x)\n    return torch.max(out, dim=1)[1]\n",
    "def classify(model, x):\n    with torch.inference_mode():\n        scores = model(x)\n"
    "    _, predicted = scores.max(1)\n    return predicted.long()\n",
]


def pytorch_cnn(rng: np.random.Generator) -> str:
    """The kit's pytorch_cnn.py with a MyNet, FinetuneNet and classify of the student's own design."""
    head = (TEMPLATE / "pytorch_cnn.py").read_text().split("class MyNet(nn.Module):", 1)[0]
    sizes = [8, 12, 16, 24, 32, 48, 64, 96]
    channels = [1, *(int(c) for c in rng.choice(sizes, size=rng.integers(2, 5)))]
    blocks = []
    for i in range(1, len(channels)):
        kernel = int(rng.choice([3, 5]))
        blocks.append(f"nn.Conv2d({channels[i - 1]}, {channels[i]}, {kernel}, padding={kernel // 2}),")
        if rng.random() < 0.6:
            blocks.append(f"nn.BatchNorm2d({channels[i]}),")
        blocks.append(f"nn.{rng.choice(ACTIVATIONS)},")
        if i <= 2:
            blocks.append(f"nn.{rng.choice(['MaxPool2d(2)', 'AvgPool2d(2)'])},")
    hidden, dropout = int(rng.choice([64, 100, 128, 256])), rng.choice([0.1, 0.25, 0.5])
    mynet = "\n".join([
        "class MyNet(nn.Module):", "    def __init__(self):", "        super().__init__()",
        f"        self.{rng.choice(['body', 'features', 'trunk', 'convs'])} = nn.Sequential(",
        *(f"            {b}" for b in blocks), "        )",
        f"        self.{rng.choice(['head', 'classifier', 'fc'])} = nn.Sequential(",
        f"            nn.Flatten(), nn.Linear({channels[-1]} * 7 * 7, {hidden}), nn.ReLU(),",
        f"            nn.Dropout({dropout}), nn.Linear({hidden}, 10))", "", "    def forward(self, x):",
        rng.choice(["        x = (x - 0.5) / 0.5", "        x = x * 2 - 1", "        x = x.float()"]),
        "        return F.log_softmax(self.classifier(self.features(x)), dim=1)", "", "", ""])
    weights = rng.choice(["models.ResNet18_Weights.DEFAULT", "'IMAGENET1K_V1'"])
    finetune = "\n".join([
        "class FinetuneNet(nn.Module):", "    def __init__(self, num_classes=2, load_pretrained=False):",
        "        super().__init__()",
        f"        self.{rng.choice(['backbone', 'resnet', 'net', 'model'])} = models.resnet18(",
        f"            weights={weights} if load_pretrained else None)", ""]) + rng.choice(HEADS) + "\n".join([
        "", "    def forward(self, x):", "        return self.backbone(x)", "", "", ""])
    notes = "\n".join(f"# experiment {k}: lr {rng.random() / 100:.5f}, acc {rng.random():.3f}"
                       for k in range(rng.integers(2, 10)))
    return head + mynet + finetune + rng.choice(CLASSIFY) + "\n" + notes + "\n"


class Course:
    """Item difficulties and per-item likely wrong labels shared by every student's predictions."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.labels = {k: rng.integers(0, classes, n) for k, (n, classes) in SPLITS.items()}
        self.difficulty = {k: rng.normal(0, 1.5, n) for k, (n, _) in SPLITS.items()}
        self.confusers = {k: (self.labels[k] + rng.integers(1, classes, (n, 3)).T).T % classes
                          for k, (n, classes) in SPLITS.items()}

    def predictions(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        skill = rng.normal(2.0, 0.4)
        out = {}
        for key, labels in self.labels.items():
            right = rng.random(len(labels)) < 1 / (1 + np.exp(-(skill - self.difficulty[key])))
            pick = np.minimum((rng.random(len(labels)) ** 2 * 3).astype(int), 2)  # mostly the first confuser
            wrong = self.confusers[key][np.arange(len(labels)), pick]
            out[key] = np.where(right, labels, wrong).astype(np.int8)
        return out


def state_dict(seed: int, noise_of: dict | None = None) -> dict:
    import torch

    from grader.demo import load_solution

    if noise_of is not None:
        generator = torch.Generator().manual_seed(seed)
        return {k: v + 0.02 * v.std() * torch.randn(v.shape, generator=generator)
                if v.is_floating_point() and v.numel() > 1 else v for k, v in noise_of.items()}
    torch.manual_seed(seed)
    return load_solution("pytorch_cnn").MyNet().state_dict()


def _student(args: tuple[int, int, Path]) -> tuple[str, Evidence]:
    """One student written to real files and extracted, as a grading worker would (run in a pool)."""
    import torch

    torch.set_num_threads(1)
    number, seed, root = args
    rng = np.random.default_rng(seed * 7919 + number)
    folder = root / f"s{number:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    copy_of = int(rng.integers(number)) if number > 10 and rng.random() < 0.02 else None
    if copy_of is None:
        torch.save(state_dict(seed * 100_003 + number), folder / "model.pt")
        (folder / "numpy_nn.py").write_text(numpy_nn(rng, BODIES))
        (folder / "pytorch_cnn.py").write_text(pytorch_cnn(rng))
        predictions = COURSE.predictions(rng)
        np.savez(folder / "predictions.npz", **{k.replace("/", "__"): v for k, v in predictions.items()})
    else:  # a copy: the other's weights with noise, code with names changed, the other's answers
        other = root / f"s{copy_of:04d}"
        original = torch.load(other / "model.pt", weights_only=True)
        torch.save(state_dict(number, noise_of=original), folder / "model.pt")
        for name in WANTED.code:
            text = re.sub(r"\bself\.x\b", "self.inp", (other / name).read_text())
            (folder / name).write_text(text.replace("#", "# mine:"))
        with np.load(other / "predictions.npz") as npz:
            predictions = {k.replace("__", "/"): npz[k] for k in npz.files}
        np.savez(folder / "predictions.npz", **{k.replace("/", "__"): v for k, v in predictions.items()})
    return f"s{number:04d}", extract(folder, WANTED, predictions=predictions)


BODIES = _bodies()
COURSE = Course(seed=1)


# --------------------------------------------------------------------------- measuring


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--additions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-similarity-") as tmp:
        root = Path(tmp)
        total = args.students + args.additions
        started = time.monotonic()
        with multiprocessing.Pool(max(1, min(2, os.cpu_count() or 1))) as pool:
            work = [(n, args.seed, root / "files") for n in range(args.students)]
            students = pool.map(_student, work, chunksize=8)
        print(f"{args.students} students written and extracted in {time.monotonic() - started:.0f} s "
              "(2 processes); "
              f"evidence of one: {len(students[0][1].to_bytes()) / 1024:.0f} KiB")
        config = Config(labels=COURSE.labels, template={n: (TEMPLATE / n).read_text() for n in WANTED.code})
        storage = SqliteStorage(root / "similarity.sqlite")
        index = SimilarityIndex(storage, config)
        started = time.monotonic()
        loading = []
        for sid, evidence in students:
            t0 = time.perf_counter()
            index.add(sid, evidence)
            loading.append(time.perf_counter() - t0)
        print(f"built incrementally: {args.students} add() calls in {time.monotonic() - started:.0f} s "
              f"(the last 100: median {1000 * statistics.median(loading[-100:]):.0f} ms)")

        _student((total + 1, args.seed, root / "warm-up"))  # imports and caches, as a running worker has them
        extract_s, add_s, found = [], [], []
        for n in range(args.students, total):
            t0 = time.perf_counter()
            sid, evidence = _student((n, args.seed, root / "files"))
            t1 = time.perf_counter()
            pairs = index.add(sid, evidence)
            t2 = time.perf_counter()
            extract_s.append(t1 - t0)
            add_s.append(t2 - t1)
            found.append(sum(p.flagged for p in pairs))
        both = [a + b for a, b in zip(extract_s, add_s, strict=True)]
        print(f"incremental update per new result at {args.students} students, "
              f"over {args.additions} additions:")
        print(f"  write + extract the evidence (checkpoint, two source files): "
              f"median {1000 * statistics.median(extract_s):.0f} ms, p99 {1000 * p99(extract_s):.0f} ms")
        print(f"  add() to the index (compare with all others, store evidence and pairs): "
              f"median {1000 * statistics.median(add_s):.0f} ms, p99 {1000 * p99(add_s):.0f} ms")
        print(f"  together: median {1000 * statistics.median(both):.0f} ms, p99 {1000 * p99(both):.0f} ms "
              f"(target < 1000 ms); flagged pairs found: {sum(found)}")

        started = time.monotonic()
        pairs = index.recompute()
        recompute_s = time.monotonic() - started
        pair_count = total * (total - 1) // 2
        print(f"full recomputation of all {pair_count:,} pairs: {recompute_s:.1f} s; {len(pairs)} pairs "
              f"at or above the floor, {sum(p.flagged for p in pairs)} flagged")
        storage.close()
        started = time.monotonic()
        with SqliteStorage(root / "similarity.sqlite") as again:
            reopened = SimilarityIndex(again, config)
            size = (root / "similarity.sqlite").stat().st_size / 2**20
            print(f"opening the index from SQLite ({size:.0f} MiB, {len(reopened)} submissions): "
                  f"{time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
