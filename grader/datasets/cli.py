"""``grader build-tests`` builds the hidden test sets from raw data; ``sync-tests`` and
``verify-tests`` give each grading machine a checked copy."""

from __future__ import annotations

import time
from pathlib import Path

import click

from grader.config import Settings
from grader.course import ASSIGNMENT_HELP, selected
from grader.datasets.build import DEFAULT_SYNTHETIC_COUNTS, DOGS_CATS_SPLITS, build_hidden_data
from grader.datasets.errors import DataBuildError
from grader.datasets.fashion import DEFAULT_FASHION_DIR
from grader.datasets.provenance import Provenance
from grader.datasets.sync import fingerprint, sync_hidden_data, verified_copy
from grader.datasets.synthetic import MAX_CLASSES
from grader.errors import GraderFault, SpecError

NOTES = {
    Provenance.PUBLIC: "is the PUBLIC FashionMNIST set, whose labels anyone can have (a "
    "submission can carry them inside a checkpoint); every result says so. For a course, pass "
    "your own private set with --fashion-mnist DIR.",
    Provenance.SYNTHETIC: "is a SYNTHETIC STAND-IN (drawn cat and dog faces), not real photos; "
    "pass --dogs-cats DIR to build it from real image folders.",
}


_assignment_option = click.option("--assignment", "assignment", metavar="NAME", help=ASSIGNMENT_HELP
                                  + " Names the default folder.")


class BuildFailed(click.ClickException):
    """A one-line build error; exit code 2."""

    exit_code = 2


def parse_counts(text: str) -> dict[str, int]:
    """``"500"`` (every split) or ``"ORIG=500,AUG=300,NEW=200"`` -> images per synthetic split."""
    text = text.strip()
    if text.isdigit():
        return dict.fromkeys(DOGS_CATS_SPLITS, int(text))
    counts = dict(DEFAULT_SYNTHETIC_COUNTS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        split, _, number = item.partition("=")
        if split.strip() not in counts or not number.strip().isdigit():
            raise click.BadParameter(
                f"{item!r}: use N or SPLIT=N,... with SPLIT in {', '.join(DOGS_CATS_SPLITS)}"
            )
        counts[split.strip()] = int(number)
    return counts


@click.command("build-tests")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to build into (replaced as a whole). Default: <GRADER_HOME>/hidden/<assignment>.",
)
@_assignment_option
@click.option(
    "--fashion-mnist",
    "--fashion-dir",
    "fashion_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Your own private FashionMNIST-format test set: a folder with "
    "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]. Without it, the public "
    f"t10k set in {DEFAULT_FASHION_DIR} is used, and every result says so.",
)
@click.option(
    "--dogs-cats",
    "dogs_cats",
    type=click.Path(path_type=Path),
    default=None,
    help="Real dogs-and-cats photos: DIR/ORIG/<class>/* and DIR/NEW/<class>/*, or one folder "
    "per class, DIR/<class>/* (split with --seed: --new-fraction of each class becomes NEW, the "
    "rest ORIG). AUG is ORIG augmented. Without it a synthetic stand-in is drawn.",
)
@click.option(
    "--new-fraction",
    "new_fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="With one folder per class: the share of each class held out as NEW (default 0.2).",
)
@click.option(
    "--synthetic-count",
    "synthetic_counts",
    default="500",
    show_default=True,
    callback=lambda _ctx, _param, value: parse_counts(value),
    help="Synthetic images per split: N, or ORIG=500,AUG=500,NEW=500.",
)
@click.option(
    "--classes",
    "num_classes",
    type=click.IntRange(2, MAX_CLASSES),
    default=2,
    show_default=True,
    help="Number of synthetic classes (2: cat/dog; more: breeds).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=1234,
    show_default=True,
    help="Seed of the synthetic images and of AUG; use a private one for a real course.",
)
@click.pass_context
def build_tests(
    ctx: click.Context,
    out: Path | None,
    fashion_dir: Path | None,
    dogs_cats: Path | None,
    new_fraction: float | None,
    synthetic_counts: dict[str, int],
    num_classes: int,
    seed: int,
    assignment: str | None,
) -> None:
    """Build the hidden test sets (inputs, labels, manifest) from raw data."""
    if new_fraction is not None and dogs_cats is None:
        raise BuildFailed("--new-fraction needs --dogs-cats DIR (one folder per class).")
    if out is None:
        out = _default_set(ctx, assignment)
    if fashion_dir is None and not DEFAULT_FASHION_DIR.is_dir():
        raise BuildFailed(
            f"FashionMNIST folder {DEFAULT_FASHION_DIR} not found: pass your own set with "
            "--fashion-mnist DIR, or install the public one with "
            "`apt-get install dataset-fashion-mnist`."
        )
    if fashion_dir is not None and not fashion_dir.is_dir():
        raise BuildFailed(f"--fashion-mnist {fashion_dir}: no such folder.")
    start = time.monotonic()

    def progress(message: str) -> None:
        click.echo(f"[{time.monotonic() - start:5.1f}s] {message}")

    click.echo(f"Building the hidden test data into {out}")
    try:
        manifest = build_hidden_data(
            out,
            fashion_dir=fashion_dir or DEFAULT_FASHION_DIR,
            dogs_cats_dir=dogs_cats,
            new_fraction=new_fraction,
            synthetic_counts=synthetic_counts,
            seed=seed,
            num_classes=num_classes,
            progress=progress,
        )
    except (DataBuildError, ValueError) as exc:
        raise BuildFailed(str(exc)) from None
    except OSError as exc:
        raise BuildFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    for dataset in manifest.datasets.values():
        splits = ", ".join(f"{s.name} {s.count}" for s in dataset.splits.values())
        click.echo(f"  {dataset.name}: {splits} images; classes: {', '.join(dataset.classes)}")
        if dogs_cats is not None and dataset.name == "dogs_cats":
            click.echo(f"  {dataset.name} from {dataset.source}")
            if dataset.note:
                click.secho(f"NOTE: {dataset.note}", fg="yellow")
    click.echo(f"Done in {time.monotonic() - start:.1f}s: {out}")
    for dataset in manifest.datasets.values():
        if dataset.provenance in NOTES:
            click.secho(f"NOTE: {dataset.name} {NOTES[dataset.provenance]}", fg="yellow", bold=True)
        elif dataset.note:
            click.echo(f"note: {dataset.name}: {dataset.note}")


def _default_set(ctx: click.Context, assignment: str | None = None) -> Path:
    """``<GRADER_HOME>/hidden/<assignment>`` for ``--assignment NAME`` or the settings' own."""
    settings = ctx.obj.get("settings") if isinstance(ctx.obj, dict) else None
    if not isinstance(settings, Settings):
        settings = Settings.from_env()
    try:
        name = selected(settings, assignment).name
    except SpecError as exc:
        raise BuildFailed(str(exc)) from None
    return settings.data_dir / name



@click.command("sync-tests")
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="This machine's copy (replaced only once verified). Default: <GRADER_HOME>/hidden/<assignment>.",
)
@_assignment_option
@click.pass_context
def sync_tests(ctx: click.Context, source: Path, dest: Path | None, assignment: str | None) -> None:
    """Copy the hidden test data from SOURCE (a shared folder) and verify every file.

    Run it on each grading machine after `grader build-tests` (or a rebuild) on the
    machine that builds the data; workers refuse to start on data that does not verify.
    """
    dest = dest or _default_set(ctx, assignment)
    start = time.monotonic()
    try:
        report = sync_hidden_data(source, dest)
    except DataBuildError as exc:
        raise BuildFailed(str(exc)) from None
    except OSError as exc:
        raise BuildFailed(f"cannot copy {source} to {dest}: {exc.strerror or exc}") from None
    if report.up_to_date:
        click.echo(f"{dest} is up to date ({report.kept} files verified).")
    else:
        click.echo(
            f"Copied {report.copied} files ({report.bytes_copied / 2**20:.1f} MiB), kept {report.kept}, "
            f"all verified, in {time.monotonic() - start:.1f}s: {dest}"
        )
    click.echo(f"fingerprint {report.fingerprint}")


@click.command("verify-tests")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@_assignment_option
@click.pass_context
def verify_tests(ctx: click.Context, folder: Path | None, assignment: str | None) -> None:
    """Check every file of this machine's hidden test data against its manifest.

    Prints the set's fingerprint: machines that print the same one grade on the same data.
    """
    folder = folder or _default_set(ctx, assignment)
    try:
        manifest = verified_copy(folder)
    except GraderFault as exc:
        raise BuildFailed(f"{folder}: {exc.message}") from None
    click.echo(f"{folder}: {len(manifest.files)} files verified, built {manifest.built_at}")
    click.echo(f"fingerprint {fingerprint(folder)}")
