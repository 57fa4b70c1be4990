"""Entry point of the in-sandbox runner: ``python -I runner.py PLAN --submission S --out O ...``.

Runs the parts named in the plan in order, writing one progress event per step and the
outputs as plain ``.npy`` / ``.npz`` files. One part's failure never stops the others.
"""

from __future__ import annotations

import sys

# Started with -I: make this folder's parent importable, and never write bytecode
# into the read-only submission.
sys.dont_write_bytecode = True
sys.path.insert(0, __file__.rsplit("/", 2)[0])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import errno  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from runner.common import Progress, describe, flush_std, student_traceback, where  # noqa: E402


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.plan: dict[str, Any] = json.loads(Path(args.plan).read_text(encoding="utf-8"))
        self.submission = args.submission
        self.inputs = Path(args.inputs)
        self.job = Path(args.job)
        self.out = Path(args.out)
        self.progress = Progress(self.out)
        self.modules: dict[str, Any] = {}

    def module(self, filename: str) -> Any:
        """Import a student module once; later parts reuse it."""
        name = filename.removesuffix(".py")
        if name not in self.modules:
            self.modules[name] = importlib.import_module(name)
        return self.modules[name]

    def run(self, names: list[str]) -> None:
        if self.submission not in sys.path:
            # Last, so a student's numpy.py or torch.py cannot shadow the real libraries.
            sys.path.append(self.submission)
        parts = {p["name"]: p for p in self.plan["parts"]}
        finished: set[str] = set()
        for name in names:
            part = parts[name]
            self.tidy(keep=finished)
            self.progress.event("start", name)
            try:
                self.run_part(part)
            except BaseException as exc:  # SystemExit and KeyboardInterrupt too: it is their code
                self.progress.event(
                    "failed",
                    name,
                    message=self.failure_message(part, exc),
                    traceback=student_traceback(exc, self.submission),
                )
            else:
                self.progress.event("done", name)
            finished.add(name)
            self.prune(part)
            flush_std()

    def tidy(self, keep: set[str]) -> None:
        """Remove whatever the student left in /out, so one part cannot starve the next."""
        for entry in os.scandir(self.out):
            if entry.name == "progress.jsonl" or (entry.name in keep and entry.is_dir(
                    follow_symlinks=False)):
                continue
            _remove(entry)

    def prune(self, part: dict[str, Any]) -> None:
        """Keep only the files a part is meant to write in its own folder (its plan's ``outputs``)."""
        wanted = set(part["outputs"])
        folder = self.out / part["name"]
        if folder.is_symlink() or not folder.is_dir():
            return
        for entry in os.scandir(folder):
            if entry.name in wanted and entry.is_file(follow_symlinks=False):
                continue
            _remove(entry)

    def failure_message(self, part: dict[str, Any], exc: BaseException) -> str:
        from runner.models import PartFailed

        network = _network_error(exc)
        if network is not None:
            return (f"{part['title']}: your code tried to use the network ({describe(network)}"
                    f"{where(exc, self.submission)}), "
                    "perhaps to download pretrained weights; the grader has no network, so build "
                    "the model without downloads (weights=None) and ship what you trained in "
                    "the checkpoint.")
        if isinstance(exc, PartFailed):
            return str(exc)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return (f"{part['title']}: your code filled the output folder or /tmp "
                    f"({describe(exc)}); write nothing big to disk while grading.")
        if isinstance(exc, SystemExit):
            return f"Your code called exit({exc.code!r}) while grading {part['title']}."
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in {
            p["module"].removesuffix(".py") for p in self.plan["parts"]
        }:
            return f"{exc.name}.py could not be imported: {describe(exc)}."
        return f"{describe(exc)}{where(exc, self.submission)}"

    def run_part(self, part: dict[str, Any]) -> None:
        """The part's kind picks how it runs (the host's ``grader.parts`` names the same kinds)."""
        kinds = {"layers": self.run_layers, "classifier": self.run_classifier}
        kinds[part["kind"]](part)

    def run_layers(self, part: dict[str, Any]) -> None:
        import importlib.util

        from runner.layers import run_cases

        spec = importlib.util.spec_from_file_location("_layer_ops", self.job / part["ops"])
        if spec is None or spec.loader is None:
            raise RuntimeError(f"the grader's layer ops {part['ops']} cannot be loaded")
        ops = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ops)
        module = self.module(part["module"])
        run_cases(module, ops.OPS, part["cases"], self.job / part["probes"], self.out / part["name"],
                  self.submission)

    def run_classifier(self, part: dict[str, Any]) -> None:
        import torch
        from runner import models

        set_threads(max(1, int(self.plan.get("threads", 1))))
        module = self.module(part["module"])
        cls = getattr(module, part["model_class"], None)
        if cls is None:
            raise models.PartFailed(f"{part['module']} has no class {part['model_class']}.")
        try:
            model = cls()
        except Exception as exc:
            raise models.PartFailed(
                f"{part['model_class']}() raised {describe(exc)}{where(exc, self.submission)}"
            ) from exc
        if not isinstance(model, torch.nn.Module):
            raise models.PartFailed(f"{part['model_class']}() is not a torch.nn.Module.")
        state = models.load_state_dict(
            Path(self.submission) / part["checkpoint"], int(part["checkpoint_max_bytes"])
        )
        models.load_into(model, state, part["checkpoint"], part["model_class"])
        model = model.to("cpu")
        out = self.out / part["name"]
        out.mkdir(parents=True, exist_ok=True)
        for split in part["splits"]:
            self.progress.event("split", part["name"], split=split["name"])
            models.classify_split(
                module, model, self.inputs / split["inputs"], out / f"{split['name']}.npy",
                int(part["batch_size"]), split["name"],
            )


def _remove(entry: os.DirEntry[str]) -> None:
    """Remove a file or folder the student left in /out (never following a link)."""
    try:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            os.unlink(entry.path)
    except OSError:
        pass


def _network_error(exc: BaseException) -> BaseException | None:
    """The failed network access that caused ``exc`` (or is it), if any."""
    import socket
    import urllib.error

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib.error.URLError | socket.gaierror | ConnectionError
                      | socket.timeout):
            return current
        if isinstance(current, OSError) and current.errno in (
            errno.ENETUNREACH, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.EHOSTUNREACH
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def set_threads(threads: int) -> None:
    """torch's intra-op threads: the sandbox's CPU share (OMP_NUM_THREADS says it before import)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def prepare(inputs: Path) -> None:
    """Everything a job needs that does not depend on the submission: torch and torchvision
    imported, threads set, the hidden inputs memory-mapped (a pre-started sandbox does this
    before its submission arrives)."""
    import torch  # noqa: F401  (the import is the work)
    from runner.models import open_inputs

    set_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    with contextlib.suppress(ImportError):
        importlib.import_module("torchvision")  # what students' models import
    for path in sorted(inputs.rglob("*.npy")):
        open_inputs(path)


def wait_for(go: Path, max_s: float, poll_s: float = 0.005) -> bool:
    """Block until the host creates ``go`` (it writes the plan and the submission first);
    False after ``max_s``: a host killed without ending us must not leave us waiting forever."""
    deadline = time.monotonic() + max_s
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner")
    parser.add_argument("plan")
    parser.add_argument("--submission", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--parts", required=True, help="comma-separated part names, in order")
    parser.add_argument("--wait", help="pre-started: prepare, then wait for this file to appear")
    parser.add_argument("--wait-max-s", type=float, default=900.0, help="then give up and exit")
    args = parser.parse_args(argv)
    if args.wait:
        prepare(Path(args.inputs))
        Progress(Path(args.out)).event("ready", "")  # the host only notes that the file exists
        if not wait_for(Path(args.wait), args.wait_max_s):
            return 0
    os.chdir(args.submission)
    Runner(args).run(args.parts.split(","))
    Progress(Path(args.out)).event("finished", "")
    flush_std()
    return 0


if __name__ == "__main__":
    # os._exit: skip interpreter teardown, where a student's atexit hook or thread could still run.
    os._exit(main())
