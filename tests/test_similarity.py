"""Similarity evidence (issue 16) on real models and real files: copies on top, honest pairs below the line.

The models are the course's own classes: MyNet (the reference solution's) trained briefly on
real FashionMNIST, an honest student's MyNet of another design, and FinetuneNet (ResNet-18)
fine-tuned for a few steps from a seeded stand-in for the pretrained backbone. The code is
the reference numpy_nn.py, a copy of it with identifiers renamed and comments rewritten, and
an honest, differently written solution; the starter kit is the boilerplate.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grader.cli import main
from grader.config import Settings
from grader.demo import load_solution
from grader.similarity import code as codesim
from grader.similarity import predictions as agreement
from grader.similarity.checkpoints import evidence_of, float_arrays, read_checkpoint
from grader.similarity.evidence import Evidence, Wanted, extract
from grader.similarity.index import Config, Reference, SimilarityIndex
from grader.similarity.signals import Kind, Pair
from grader.similarity.storage import MemoryStorage, SqliteStorage
from tests.conftest import ROOT, SOLUTION
from tests.factories import make_zip

FIXTURES = ROOT / "tests" / "fixtures" / "similarity"
TEMPLATE = ROOT / "student_template"
MYNET = Wanted(code=(), checkpoints={"model.pt": ("model.pt", "model.safetensors")})
LAYERS = Wanted(code=("numpy_nn.py",), checkpoints={"model.pt": ("model.pt",)})
RENAMES = {"dL_wrt_output": "upstream_grad", "g": "grad_out", "scale": "init_std", "mask": "active",
           "s": "squashed", "diff": "residual", "input_dimension": "fan_in", "output_dimension": "fan_out",
           "two_classes": "keep_pair", "plt": "pyplot_mod", "images": "pictures", "fig": "figure"}


# --------------------------------------------------------------------------- real models and files


def fashion_test() -> tuple[np.ndarray, np.ndarray]:
    from grader.datasets.fashion import load_fashion_test

    return load_fashion_test()


def train_mynet(net_class: type, *, seed: int, start: int, images: int = 1000) -> dict[str, torch.Tensor]:
    """``net_class`` trained one pass over ``images`` real FashionMNIST images from ``start``."""
    from grader.datasets.fashion import load_fashion_train

    torch.manual_seed(seed)
    x, y = load_fashion_train()
    xs = torch.from_numpy(x[start:start + images, None]).float() / 255
    ys = torch.from_numpy(y[start:start + images])
    net = net_class()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for i in range(0, images, 50):
        loss = torch.nn.functional.nll_loss(net(xs[i:i + 50]), ys[i:i + 50])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def predict(net_class: type, state: dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
    net = net_class()
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(x[:, None]).float() / 255).argmax(1).numpy()


def noisy(state: dict[str, torch.Tensor], relative: float, seed: int) -> dict[str, torch.Tensor]:
    """Weights plus Gaussian noise of ``relative`` times each tensor's deviation (counters untouched)."""
    generator = torch.Generator().manual_seed(seed)
    return {k: v + relative * v.std() * torch.randn(v.shape, generator=generator)
            if v.is_floating_point() and v.numel() > 1 and "running" not in k else v.clone()
            for k, v in state.items()}


def rescaled(state: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    return {k: v * factor if v.is_floating_point() else v.clone() for k, v in state.items()}


def resaved(state: dict[str, torch.Tensor]) -> collections.OrderedDict:
    """The same tensors as new storages, in reverse key order (saved, the file bytes differ)."""
    return collections.OrderedDict((k, state[k].clone()) for k in reversed(list(state)))


def renamed(text: str) -> str:
    """A copy with local names changed and every comment rewritten: what a copier does."""
    for old, new in RENAMES.items():
        text = re.sub(rf"\b{old}\b", new, text)
    return re.sub(r"#[^\n]*", "# my own note", text)


def write(folder: Path, **files: object) -> Path:
    """A submission folder; a dict value is saved with torch.save, text and bytes as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        name = key.replace("__", ".")
        if isinstance(value, dict):
            torch.save(value, folder / name)
        else:
            (folder / name).write_bytes(value.encode() if isinstance(value, str) else value)
    return folder


def by_pair(pairs: list[Pair]) -> dict[frozenset[str], Pair]:
    return {frozenset((p.a, p.b)): p for p in pairs}


def signal(pair: Pair, kind: Kind, subject: str | None = None):
    found = [s for s in pair.signals if s.kind is kind and (subject is None or s.subject == subject)]
    assert len(found) == 1, f"{pair.a}-{pair.b}: {kind} {subject}: {[s.kind for s in pair.signals]}"
    return found[0]


@pytest.fixture(scope="module")
def mynets() -> dict[str, object]:
    """Two MyNets of the reference class, trained apart (seed, images), and their real predictions."""
    torch.set_num_threads(2)
    net = load_solution("pytorch_cnn").MyNet
    x, labels = fashion_test()
    a = train_mynet(net, seed=1, start=0)
    b = train_mynet(net, seed=2, start=20_000)
    return {"class": net, "a": a, "b": b, "labels": labels, "x": x,
            "pred_a": predict(net, a, x), "pred_b": predict(net, b, x)}


# --------------------------------------------------------------------------- checkpoints


def test_digest_is_of_the_tensors_not_the_file_bytes(tmp_path: Path, mynets: dict) -> None:
    from safetensors.torch import save_file

    state = mynets["a"]
    torch.save(state, tmp_path / "model.pt")
    torch.save(resaved(state), tmp_path / "resaved.pt", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    torch.save(noisy(state, 0.01, seed=3), tmp_path / "noisy.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "half.pt")
    files = ["model.pt", "resaved.pt", "model.safetensors", "noisy.pt", "half.pt"]
    sha = {f: hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in files}
    assert len(set(sha.values())) == len(files)  # every file's bytes differ
    found = {f: read_checkpoint(tmp_path / f, max_bytes=2**30) for f in files}
    assert found["model.pt"].digest == found["resaved.pt"].digest == found["model.safetensors"].digest
    assert found["noisy.pt"].digest != found["model.pt"].digest
    assert found["half.pt"].digest != found["model.pt"].digest  # another dtype is other tensors...
    assert found["half.pt"].arch == found["model.pt"].arch  # ... of the same architecture
    assert "features.1.running_var" not in found["model.pt"].keys  # data statistics are not compared


class _Planted:
    """A pickle that would create a file if unpickled without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("case", ["whole_module", "code_in_pickle", "garbage", "too_large", "link",
                                  "not_a_dict"])
def test_a_checkpoint_that_does_not_load_is_no_weights_evidence(tmp_path: Path, mynets: dict,
                                                                case: str) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    marker = tmp_path / "pwned"
    target = folder / "model.pt"
    if case == "whole_module":  # the model object pickled, not its state_dict
        torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2)), target)
    elif case == "code_in_pickle":
        torch.save({"weight": torch.zeros(2), "extra": _Planted(marker)}, target)
    elif case == "garbage":
        target.write_bytes(os.urandom(4096))
    elif case == "too_large":
        torch.save(mynets["a"], target)
    elif case == "link":
        torch.save(mynets["a"], tmp_path / "elsewhere.pt")
        target.symlink_to(tmp_path / "elsewhere.pt")
    else:
        torch.save([torch.zeros(3)], target)
    wanted = Wanted(code=(), checkpoints={"model.pt": ("model.pt",)},
                    max_checkpoint_bytes=1000 if case == "too_large" else 2**30)
    found = extract(folder, wanted)
    assert found.checkpoints == {}
    assert len(found.notes) == 1
    assert found.notes[0].startswith("model.pt: ")
    assert found.notes[0].endswith("no weights evidence")
    assert not marker.exists()  # nothing in the file ran


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("exact", [False, True], ids=["sketches", "exact"])
def test_copied_weights_rank_above_an_independent_model(tmp_path: Path, mynets: dict, exact: bool) -> None:
    states = {"orig": mynets["a"], "resaved": resaved(mynets["a"]), "noisy": noisy(mynets["a"], 0.02, seed=4),
              "scaled": rescaled(mynets["a"], 2.5), "indep": mynets["b"]}
    found = {sid: extract(write(tmp_path / sid, model__pt=state), MYNET) for sid, state in states.items()}
    tensors = {sid: float_arrays(state) for sid, state in states.items()}
    index = SimilarityIndex(MemoryStorage(), Config(lines=_floor(0.0)),
                            tensors=(lambda sid, _slot: tensors[sid]) if exact else None)
    for sid, evidence in found.items():
        index.add(sid, evidence)
    pairs = by_pair(index.recompute())
    assert len(pairs) == 10
    copies = [p for key, p in pairs.items() if "indep" not in key]
    honest = [p for key, p in pairs.items() if "indep" in key]
    for pair in copies:
        raw = signal(pair, Kind.WEIGHTS_RAW)
        assert pair.flagged, raw.detail
        assert raw.strong, raw.detail
        assert raw.value > 0.999, raw.detail
        identical = any(s.kind is Kind.WEIGHTS_IDENTICAL for s in pair.signals)
        assert raw.data["exact"] is (exact and not identical)  # identical tensors need no loading
    assert signal(pairs[frozenset(("orig", "resaved"))], Kind.WEIGHTS_IDENTICAL).strong
    assert not [s for s in pairs[frozenset(("orig", "noisy"))].signals if s.kind is Kind.WEIGHTS_IDENTICAL]
    for pair in honest:
        raw = signal(pair, Kind.WEIGHTS_RAW)
        assert not pair.flagged, raw.detail
        assert not raw.flagged, raw.detail
        assert abs(raw.value) < 0.3, raw.detail
    assert min(p.score for p in copies) > 0.5 > max(p.score for p in honest)
    if exact:  # the top pairs got exact cosines; the estimates agree with them
        estimated = SimilarityIndex(MemoryStorage(), Config(lines=_floor(0.0)))
        for sid, evidence in found.items():
            estimated.add(sid, evidence)
        for key, pair in by_pair(estimated.recompute()).items():
            estimate = signal(pair, Kind.WEIGHTS_RAW).value
            assert abs(estimate - signal(pairs[key], Kind.WEIGHTS_RAW).value) < 0.1


def _floor(floor: float):
    from grader.similarity.signals import FlagLines

    return FlagLines(floor=floor)


def _finetune(start: dict[str, torch.Tensor], *, seed: int, steps: int = 2) -> dict[str, torch.Tensor]:
    """FinetuneNet from ``start`` (torchvision keys, 1000-class head), layer4 and a new head trained."""
    torch.manual_seed(seed)
    net = load_solution("pytorch_cnn").FinetuneNet(num_classes=2)
    net.backbone.load_state_dict({k: v for k, v in start.items() if not k.startswith("fc.")}, strict=False)
    trained = [p for n, p in net.named_parameters() if n.startswith(("backbone.layer4", "backbone.fc"))]
    optimiser = torch.optim.SGD(trained, lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        x, y = torch.rand(8, 3, 96, 96, generator=generator), torch.randint(0, 2, (8,), generator=generator)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def backbone() -> dict[str, torch.Tensor]:
    """A seeded ResNet-18: the stand-in for the pretrained backbone (no weights can be downloaded here)."""
    import torchvision

    torch.manual_seed(123)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_fine_tuned_models_are_compared_by_their_changes(tmp_path: Path, backbone: dict) -> None:
    torch.set_num_threads(2)
    a, b = _finetune(backbone, seed=1), _finetune(backbone, seed=2)
    states = {"ann": a, "ben": b, "copy": noisy(a, 0.001, seed=5)}
    wanted = Wanted(code=(), checkpoints={"finetuned.pt": ("finetuned.pt",)})
    found = {sid: extract(write(tmp_path / sid, finetuned__pt=s), wanted) for sid, s in states.items()}
    tensors = {sid: float_arrays(s) for sid, s in states.items()}
    known = Config(references={"finetuned.pt": Reference.of(backbone)}, lines=_floor(0.0))
    index = SimilarityIndex(MemoryStorage(), known, tensors=lambda sid, _slot: tensors[sid])
    for sid, evidence in found.items():
        index.add(sid, evidence)
    pairs = by_pair(index.recompute())
    honest = pairs[frozenset(("ann", "ben"))]
    raw = signal(honest, Kind.WEIGHTS_RAW)
    assert raw.value > 0.99  # the backbone, shared by design
    assert raw.flagged
    assert not raw.strong
    assert not honest.flagged
    assert signal(honest, Kind.WEIGHTS_DELTA).value < 0.5
    copied = pairs[frozenset(("ann", "copy"))]
    delta = signal(copied, Kind.WEIGHTS_DELTA)
    assert copied.flagged, delta.detail
    assert delta.strong, delta.detail
    assert delta.value > 0.9, delta.detail
    assert delta.data["drivers"][0]["key"] == "backbone.fc.weight"  # the trained head drives it
    assert "from the starting checkpoint" in delta.detail
    # Told only that they share a start: raw weights are weak evidence, so nothing is flagged
    # on weights alone (the predictions would have to carry a copy then).
    told = SimilarityIndex(MemoryStorage(), Config(shared_start={"finetuned.pt": True}, lines=_floor(0.0)))
    for sid, evidence in found.items():
        told.add(sid, evidence)
    assert not any(p.flagged for p in told.recompute())


def test_the_cohort_mean_stands_in_for_an_unknown_start(backbone: dict) -> None:
    """Ten fine-tuned models, start unknown: the cohort shows the shared start, its mean the changes."""
    base = load_solution("pytorch_cnn").FinetuneNet(num_classes=2).state_dict()
    start = {k: backbone[k[9:]] if k[9:] in backbone and backbone[k[9:]].shape == v.shape else v
             for k, v in base.items()}
    students = {}
    for seed in range(10):
        generator = torch.Generator().manual_seed(seed)
        students[f"s{seed}"] = {  # a new head, layer4 moved a little, the rest as it started
            k: (torch.randn(v.shape, generator=generator) * 0.05 if k.startswith("backbone.fc")
                else v + 0.02 * v.std() * torch.randn(v.shape, generator=generator)
                if k.startswith("backbone.layer4") and v.is_floating_point() and v.numel() > 1 else v.clone())
            for k, v in start.items()}
    students["copy"] = noisy(students["s0"], 0.002, seed=99)
    index = SimilarityIndex(MemoryStorage(), Config(lines=_floor(0.0)))
    for sid, state in students.items():
        index.add(sid, Evidence(checkpoints={"finetuned.pt": evidence_of(state, "finetuned.pt")}))
    pairs = by_pair(index.recompute())
    for key, pair in pairs.items():
        raw = signal(pair, Kind.WEIGHTS_RAW)
        assert raw.value > 0.99
        assert not raw.strong
        assert "share a start" in raw.detail
        delta = signal(pair, Kind.WEIGHTS_DELTA)
        assert "the mean of the 9 other submissions" in delta.detail
        if key == frozenset(("s0", "copy")):
            assert pair.flagged, delta.detail
            assert delta.value > 0.9, delta.detail
        else:
            assert not pair.flagged, delta.detail
            assert delta.value < 0.5, delta.detail


# --------------------------------------------------------------------------- code


def test_a_renamed_copy_of_the_layers_is_found_and_the_starter_kit_does_not_count() -> None:
    reference = (SOLUTION / "numpy_nn.py").read_text()
    honest = (FIXTURES / "numpy_nn_honest.py").read_text()
    copy = renamed(reference)
    assert copy != reference
    assert "upstream_grad" in copy
    assert "# my own note" in copy
    fps = {n: codesim.fingerprint("numpy_nn.py", t) for n, t in
           {"ref": reference, "copy": copy, "honest": honest}.items()}
    kit = codesim.boilerplate([codesim.fingerprint("numpy_nn.py", (TEMPLATE / "numpy_nn.py").read_text())])
    copied = codesim.compare(fps["ref"], fps["copy"], kit)
    own = codesim.compare(fps["ref"], fps["honest"], kit)
    assert copied.similarity > 0.95
    assert min(copied.own_chars) > 500
    assert own.similarity < 0.5
    # The shared passage is the code the student wrote, Linear through SE, give or take the
    # one k-gram (25 filtered characters) that reaches over into the helpers' first lines.
    lines = reference.splitlines()
    first = lines.index("class Linear(Layer):") + 1
    helpers = lines.index("# " + "-" * 75 + " helpers") + 1
    assert len(copied.lines_a) == 1, copied.lines_a
    (a, b), = copied.lines_a
    assert first <= a <= first + 25, (a, b, first, helpers)
    assert helpers - 5 <= b <= helpers + 6, (a, b, first, helpers)
    # Without the starter kit as boilerplate, the two honest files look alike: the kit counts then.
    assert codesim.compare(fps["ref"], fps["honest"], np.zeros(0, np.int64)).similarity > 0.8


def test_our_stored_fingerprints_give_copydetects_own_numbers() -> None:
    """Only the k-gram hash differs (copydetect's changes in every process, so its own numbers
    vary by a few hundredths from run to run); the template is left out separately."""
    import io

    from copydetect import CodeFingerprint, compare_files

    texts = {"ref": (SOLUTION / "numpy_nn.py").read_text(), "kit": (TEMPLATE / "numpy_nn.py").read_text(),
             "honest": (FIXTURES / "numpy_nn_honest.py").read_text()}
    texts["copy"] = renamed(texts["ref"])
    theirs = {n: CodeFingerprint("numpy_nn.py", codesim.NOISE_CHARS, codesim.WINDOW, fp=io.StringIO(t))
              for n, t in texts.items()}
    ours = {n: codesim.fingerprint("numpy_nn.py", t) for n, t in texts.items()}
    for a, b in [("ref", "copy"), ("ref", "honest"), ("kit", "honest")]:
        _overlap, expected, _slices = compare_files(theirs[a], theirs[b])
        got = codesim.compare(ours[a], ours[b], np.zeros(0, np.int64))
        assert got.shares == pytest.approx(expected, abs=0.04), (a, b)
    # The template's fingerprints are left out wherever they occur, and only they.
    template = codesim.boilerplate([ours["kit"]])
    own = codesim.own_hashes(ours["honest"], template)
    assert not np.isin(own, template).any()
    assert set(own) == set(ours["honest"].hashes.tolist()) - set(template.tolist())


def test_code_most_of_the_course_shares_is_an_idiom_not_a_copy() -> None:
    """Twelve students paste one tutorial's helper; two of them also share their own layers."""
    tutorial = "\n".join(f"def helper_{i}(batch, size={i + 2}):\n    return [batch[j:j + size] for j in "
                         f"range(0, len(batch), size)]\n" for i in range(12))
    template = (TEMPLATE / "numpy_nn.py").read_text()

    def own(seed: int) -> str:
        local = np.random.default_rng(seed)
        return "\n".join(f"CONSTANT_{k} = {local.random():.8f} * {local.integers(1000)} + "
                         f"{local.integers(1000)}  # {local.integers(10**6)}" for k in range(25))

    texts = {f"s{i:02d}": template + "\n" + tutorial + "\n" + own(i) for i in range(12)}
    texts["s11"] = template + "\n" + tutorial + "\n" + own(0)  # s11 copied s00's own code
    fingerprints = {sid: codesim.fingerprint("numpy_nn.py", text) for sid, text in texts.items()}
    index = SimilarityIndex(MemoryStorage(), Config(template={"numpy_nn.py": template}))
    for sid, fp in fingerprints.items():
        index.add(sid, Evidence(code={"numpy_nn.py": fp}))
    pairs = index.recompute()
    assert [(p.a, p.b) for p in pairs if p.flagged] == [("s00", "s11")]
    assert signal(pairs[0], Kind.CODE).value > 0.95
    assert len(pairs) == 1, [(p.a, p.b, p.score) for p in pairs]  # the tutorial alone is below the floor
    config = Config(template={"numpy_nn.py": template}, lines=_floor(0.0))
    everything = SimilarityIndex(MemoryStorage(), config)
    for sid, fp in fingerprints.items():
        everything.add(sid, Evidence(code={"numpy_nn.py": fp}))
    others = [signal(p, Kind.CODE).value for p in everything.recompute() if (p.a, p.b) != ("s00", "s11")]
    assert len(others) == 65
    assert max(others) < 0.1  # with the tutorial counted, each pair would share half its code
    # Among fewer students than the limit (10), the same tutorial is not yet "common": it counts.
    few = SimilarityIndex(MemoryStorage(), Config(template={"numpy_nn.py": template}))
    for sid in ("s01", "s02"):
        few.add(sid, Evidence(code={"numpy_nn.py": codesim.fingerprint("numpy_nn.py", texts[sid])}))
    assert signal(few.recompute()[0], Kind.CODE).value > 0.3


# --------------------------------------------------------------------------- predictions


def _model(labels: np.ndarray, accuracy: float, confusion: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Predictions right with probability ``accuracy``, else a wrong label drawn from ``confusion[y]``."""
    wrong = np.flatnonzero(rng.random(len(labels)) >= accuracy)
    out = labels.copy()
    cumulative = confusion.cumsum(axis=1)[labels[wrong]]
    out[wrong] = np.minimum((rng.random(len(wrong))[:, None] > cumulative).sum(axis=1), len(confusion) - 1)
    return out


def test_identical_wrong_answers_are_measured_against_chance() -> None:
    rng = np.random.default_rng(0)
    classes = 10
    labels = rng.integers(0, classes, 10_000)
    confusion = rng.random((classes, classes)) ** 3  # uneven confusions, as real ones are
    np.fill_diagonal(confusion, 0)
    confusion /= confusion.sum(1, keepdims=True)
    counts, kappas = [], []
    for _ in range(60):  # independent pairs of the same accuracy: S averages E, kappa 0
        a, b = _model(labels, 0.85, confusion, rng), _model(labels, 0.85, confusion, rng)
        one = agreement.one_vs_many(a, agreement.confusion(a, labels, classes), b[None],
                                    agreement.confusion(b, labels, classes)[None],
                                    np.array([(b != labels).sum()]), labels).at(0)
        counts.append((float(one.same_wrong), float(one.expected), float(one.variance)))
        kappas.append(float(one.kappa))
    same, expected, variance = np.array(counts).mean(0)
    assert same == pytest.approx(expected, rel=0.05)
    assert np.array(counts)[:, 0].var() == pytest.approx(variance, rel=0.5)
    assert abs(np.mean(kappas)) < 0.02
    # A model that repeats 90 % of another's wrong answers, and is itself as accurate.
    a = _model(labels, 0.85, confusion, rng)
    b = _model(labels, 0.85, confusion, rng)
    repeat = (a != labels) & (rng.random(len(labels)) < 0.9)
    b[repeat] = a[repeat]
    index = SimilarityIndex(MemoryStorage(), Config(labels={"mynet/test": labels}))
    for sid, values in {"a": a, "b": b, "c": _model(labels, 0.85, confusion, rng)}.items():
        index.add(sid, Evidence(predictions={"mynet/test": values}))
    pairs = by_pair(index.recompute())
    copied = signal(pairs[frozenset("ab")], Kind.PREDICTIONS_WRONG)
    assert copied.strong
    assert copied.flagged
    assert copied.value > 0.85
    assert copied.data["z"] > 20
    assert set(pairs) == {frozenset("ab")}  # the independent pairs are below the floor


def test_splits_add_up_per_group_and_few_errors_are_weak() -> None:
    rng = np.random.default_rng(1)
    labels = {"finetune/ORIG": rng.integers(0, 2, 500), "finetune/AUG": rng.integers(0, 2, 500),
              "finetune/NEW": rng.integers(0, 2, 500)}
    near_perfect = {k: np.where(np.arange(len(v)) < 2, 1 - v, v) for k, v in labels.items()}  # 2 wrong each
    index = SimilarityIndex(MemoryStorage(), Config(labels=labels, lines=_floor(0.0)))
    index.add("a", Evidence(predictions=near_perfect))
    index.add("b", Evidence(predictions=dict(near_perfect)))
    (pair,) = index.recompute()
    wrong = signal(pair, Kind.PREDICTIONS_WRONG, "finetune")
    assert wrong.data["items"] == 1500
    assert wrong.data["same_wrong"] == 6
    assert wrong.flagged  # 6 shared errors: too few to tell
    assert not wrong.strong
    assert not pair.flagged


def test_real_models_share_hard_items_but_a_copy_shares_all_its_errors(mynets: dict) -> None:
    labels, net = mynets["labels"], mynets["class"]
    copy = predict(net, noisy(mynets["a"], 0.02, seed=6), mynets["x"])
    index = SimilarityIndex(MemoryStorage(), Config(labels={"mynet/test": labels}, lines=_floor(0.0)))
    for sid, values in {"a": mynets["pred_a"], "b": mynets["pred_b"], "copy": copy}.items():
        index.add(sid, Evidence(predictions={"mynet/test": values}))
    pairs = by_pair(index.recompute())
    honest = signal(pairs[frozenset(("a", "b"))], Kind.PREDICTIONS_WRONG)
    copied = signal(pairs[frozenset(("a", "copy"))], Kind.PREDICTIONS_WRONG)
    assert honest.data["ratio"] > 2  # far above independence: both stumble over the same hard items
    assert not honest.flagged
    assert honest.value < 0.8
    assert copied.flagged
    assert copied.strong
    assert copied.value > 0.9
    accuracy = [(v == labels).mean() for v in (mynets["pred_a"], mynets["pred_b"], copy)]
    assert max(accuracy) - min(accuracy) < 0.05
    assert min(accuracy) > 0.65


# --------------------------------------------------------------------------- a whole course, incrementally


@pytest.fixture(scope="module")
def honest_mynet() -> tuple[type, dict[str, torch.Tensor]]:
    net = load_solution("pytorch_cnn_honest", FIXTURES).MyNet
    return net, train_mynet(net, seed=7, start=40_000)


def test_copies_rank_on_top_on_every_signal_and_the_index_is_incremental(
        tmp_path: Path, mynets: dict, honest_mynet: tuple) -> None:
    labels = {"mynet/test": mynets["labels"]}
    honest_net, honest_state = honest_mynet
    reference = (SOLUTION / "numpy_nn.py").read_text()
    honest_code = (FIXTURES / "numpy_nn_honest.py").read_text()
    noisy_state = noisy(honest_state, 0.02, seed=8)
    course = {  # student -> files and predictions
        "alice": (dict(numpy_nn__py=reference, model__pt=mynets["a"]), mynets["pred_a"]),
        "bob": (dict(numpy_nn__py=renamed(reference), model__pt=resaved(mynets["a"])), mynets["pred_a"]),
        "carol": (dict(numpy_nn__py=honest_code, model__pt=honest_state),
                  predict(honest_net, honest_state, mynets["x"])),
        "dave": (dict(numpy_nn__py=renamed(honest_code), model__pt=noisy_state),
                 predict(honest_net, noisy_state, mynets["x"])),
        # Erin skipped part 1 (the kit's numpy_nn.py: no code of her own) and trained her own MyNet.
        "erin": (dict(numpy_nn__py=(TEMPLATE / "numpy_nn.py").read_text(), model__pt=mynets["b"]),
                 mynets["pred_b"]),
    }
    config = Config(labels=labels, template={"numpy_nn.py": (TEMPLATE / "numpy_nn.py").read_text()})
    storage = SqliteStorage(tmp_path / "similarity.sqlite")
    index = SimilarityIndex(storage, config)
    added: dict[str, list[Pair]] = {}
    for sid, (files, values) in course.items():
        added[sid] = index.add(sid, extract(write(tmp_path / sid, **files), LAYERS,
                                            predictions={"mynet/test": values}), tag=f"{sid}-zip")
    assert [f"{p.a}-{p.b}" for p in added["bob"] if p.flagged] == ["alice-bob"]
    assert [f"{p.a}-{p.b}" for p in added["dave"] if p.flagged] == ["carol-dave"]
    copies = {frozenset(("alice", "bob")), frozenset(("carol", "dave"))}
    pairs = index.recompute()
    stored = index.pairs()
    assert [(p.a, p.b) for p in stored] == [(p.a, p.b) for p in pairs]
    assert {frozenset((p.a, p.b)) for p in pairs if p.flagged} == copies
    assert {frozenset((p.a, p.b)) for p in pairs[:2]} == copies  # copies on top
    ranked = by_pair(pairs)
    alice_bob, carol_dave = ranked[frozenset(("alice", "bob"))], ranked[frozenset(("carol", "dave"))]
    for pair, weights in [(alice_bob, Kind.WEIGHTS_IDENTICAL), (carol_dave, Kind.WEIGHTS_RAW)]:
        for kind, subject in [(weights, "model.pt"), (Kind.PREDICTIONS_WRONG, "mynet"),
                              (Kind.CODE, "numpy_nn.py")]:
            assert signal(pair, kind, subject).flagged, (pair.a, pair.b, kind)
            assert signal(pair, kind, subject).strong, (pair.a, pair.b, kind)
    alice_erin = ranked.get(frozenset(("alice", "erin")))  # one architecture, trained apart
    assert alice_erin is None or abs(signal(alice_erin, Kind.WEIGHTS_RAW).value) < 0.3
    for key, pair in ranked.items():
        if key not in copies:
            assert not pair.flagged, pair.to_dict()
            assert pair.score < 0.5, pair.to_dict()
    # Stored: a fresh index over the same file has the evidence and the pairs, tags included.
    storage.close()
    with SqliteStorage(tmp_path / "similarity.sqlite") as again:
        reopened = SimilarityIndex(again, config)
        assert len(reopened) == 5
        assert again.tags()["bob"] == "bob-zip"
        assert [p.to_dict() for p in reopened.pairs()] == [p.to_dict() for p in stored]
        # A new upload of bob replaces his evidence and his pairs; removing him drops them.
        fresh = reopened.add("bob", extract(write(tmp_path / "bob2", numpy_nn__py=honest_code,
                                                  model__pt=mynets["b"]), LAYERS), owner="bob")
        assert not any(p.flagged for p in fresh if {p.a, p.b} == {"alice", "bob"})
        reopened.remove("bob")
        assert all("bob" not in (p.a, p.b) for p in reopened.pairs())
        # Two uploads of one student are never paired.
        reopened.add("alice-2", extract(tmp_path / "alice", LAYERS), owner="alice")
        assert all({p.a, p.b} != {"alice", "alice-2"} for p in reopened.pairs())


def test_stored_evidence_that_no_longer_reads_is_dropped(tmp_path: Path) -> None:
    labels = np.arange(20) % 2
    with SqliteStorage(tmp_path / "s.sqlite") as storage:
        for sid in ("a", "b"):
            storage.put(sid, sid, Evidence(predictions={"x/y": labels}), tag=f"{sid}-zip")
        storage._db.execute("UPDATE evidence SET data = ? WHERE id = 'b'", (b"SIMPACK1" + b"\xff" * 40,))
        storage._db.commit()
        index = SimilarityIndex(storage, Config(labels={"x/y": labels}))
        assert len(index) == 1
        assert storage.tags() == {"a": "a-zip"}  # so `grader similarity` reads b's zip again
    assert Evidence.from_bytes(Evidence(predictions={"x/y": labels}).to_bytes()).predictions["x/y"].tolist() \
        == labels.tolist()


# --------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_batch_keeps_predictions_and_grader_similarity_ranks_the_store(
        tmp_path: Path, settings: Settings, mynets: dict, honest_mynet: tuple, backbone: dict) -> None:
    _honest_net, honest_state = honest_mynet
    reference = {n: (SOLUTION / n).read_text() for n in ("numpy_nn.py", "pytorch_cnn.py")}
    torch.manual_seed(11)
    alice_finetune = load_solution("pytorch_cnn").FinetuneNet().state_dict()
    torch.manual_seed(12)
    carol_finetune = load_solution("pytorch_cnn_honest", FIXTURES).FinetuneNet().state_dict()
    folders = {
        "alice": write(tmp_path / "files" / "alice", model__pt=mynets["a"], finetuned__pt=alice_finetune,
                       **{k.replace(".", "__"): v for k, v in reference.items()}),
        "bob": write(tmp_path / "files" / "bob", model__pt=resaved(mynets["a"]),
                     finetuned__pt=resaved(alice_finetune), numpy_nn__py=renamed(reference["numpy_nn.py"]),
                     pytorch_cnn__py=renamed(reference["pytorch_cnn.py"])),
        "carol": write(tmp_path / "files" / "carol", model__pt=honest_state, finetuned__pt=carol_finetune,
                       numpy_nn__py=(FIXTURES / "numpy_nn_honest.py").read_text(),
                       pytorch_cnn__py=(FIXTURES / "pytorch_cnn_honest.py").read_text()),
    }
    inbox = tmp_path / "inbox"
    for sid, folder in folders.items():
        make_zip(inbox / f"{sid}.zip", {p.name: p.read_bytes() for p in sorted(folder.iterdir())})
    runner = CliRunner()
    res = runner.invoke(main, ["batch", str(inbox), "--csv", str(tmp_path / "grades.csv")],
                        obj={"settings": settings})
    assert res.exit_code == 0, res.output
    store = tmp_path / "grades.results"
    kept = sorted(store.glob("results/*/v*.predictions.npz"))
    assert len(kept) == 3
    with np.load(kept[0], allow_pickle=False) as npz:
        assert set(npz.files) == {"mynet/test", "finetune/ORIG", "finetune/AUG", "finetune/NEW"}
        assert npz["mynet/test"].shape == (10_000,)
        assert npz["mynet/test"].dtype == np.int8

    out = tmp_path / "pairs.csv"
    res = runner.invoke(main, ["similarity", str(store), "--csv", str(out)], obj={"settings": settings})
    assert res.exit_code == 0, res.output
    assert "3 students, 3 submissions" in res.stdout
    assert "1 flagged" in res.stdout
    first = res.stdout.index("  1. alice  <->  bob")
    assert "FLAGGED" in res.stdout[first:first + 200]
    for kind, words in [(Kind.WEIGHTS_IDENTICAL, "model.pt: the same tensors"),
                        (Kind.WEIGHTS_IDENTICAL, "finetuned.pt: the same tensors"),
                        (Kind.PREDICTIONS_WRONG, "mynet: "), (Kind.CODE, "numpy_nn.py: 100%"),
                        (Kind.CODE, "pytorch_cnn.py: 100%")]:
        assert f"! strong {kind:<18} {words}" in res.stdout[first:], words
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert (rows[0]["a"], rows[0]["b"], rows[0]["flagged"]) == ("alice", "bob", "yes")
    assert all(r["flagged"] == "no" for r in rows[1:])
    assert float(rows[0]["predictions_wrong:mynet"]) > 0.99
    # A second run reads no zip again: the evidence is cached in the store.
    again = runner.invoke(main, ["similarity", str(store), "--csv", str(out), "--top", "0"],
                          obj={"settings": settings})
    assert again.exit_code == 0
    assert "reading the evidence" not in again.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["similarity", "{tmp}/nowhere"], "no such folder"),
    (["similarity", "{tmp}/empty"], "is not a results store"),
    (["similarity", "{tmp}/store"], "has 0 student(s) with a graded cnn submission"),
    (["similarity", "{tmp}/store", "--reference", "model.pt"], "give SLOT=FILE"),
    (["similarity", "{tmp}/store", "--reference", "nope.pt={tmp}/x.pt"], "nope.pt: not a checkpoint of cnn"),
    (["similarity", "{tmp}/store", "--reference", "model.pt={tmp}/empty"],
     "model.pt={tmp}/empty: empty is not"),
])
def test_similarity_user_errors_are_one_clear_line(settings: Settings, tmp_path: Path, args: list[str],
                                                   words: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "store" / "results").mkdir(parents=True)
    res = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args], obj={"settings": settings})
    assert res.exit_code in (1, 2), res.output
    assert words.format(tmp=tmp_path) in res.output
    assert "Traceback" not in res.output
