"""``grader build-tests`` builds the hidden test sets from raw data; ``sync-tests`` and
``verify-tests`` give each grading machine a checked copy."""

from __future__ import annotations

import time
from pathlib import Path

import click

from grader.config import Assignment, Settings
from grader.course import ASSIGNMENT_HELP, selected
from grader.datasets.build import EVERY_SYNTHETIC, build_sets
from grader.datasets.errors import DataBuildError
from grader.datasets.provenance import Provenance
from grader.datasets.sync import fingerprint, sync_hidden_data, verified_copy
from grader.datasets.synthetic import MAX_CLASSES
from grader.errors import GraderFault, SpecError

NOTES = {
    Provenance.PUBLIC: "is a PUBLIC data set, whose labels anyone can have (a submission can "
    "carry them inside a checkpoint); every result says so. For a course, pass your own "
    "private set with --source {name}=DIR.",
    Provenance.SYNTHETIC: "is a SYNTHETIC STAND-IN, not real data; pass --source {name}=DIR to "
    "build it from real files.",
}
# The first lab's option names, kept as aliases: option -> the dataset it names.
SOURCE_ALIASES = {"fashion_dir": "fashion_mnist", "dogs_cats": "dogs_cats"}


_assignment_option = click.option("--assignment", "assignment", metavar="NAME", help=ASSIGNMENT_HELP
                                  + " Names the default folder.")


class BuildFailed(click.ClickException):
    """A one-line build error; exit code 2."""

    exit_code = 2


def parse_counts(text: str) -> dict[str, int]:
    """``"500"`` (every synthetic split) or ``"SPLIT=N,DATASET.SPLIT=N,..."`` -> counts."""
    text = text.strip()
    if text.isdigit():
        return {EVERY_SYNTHETIC: int(text)}
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        split, _, number = item.partition("=")
        if not split.strip() or not number.strip().isdigit():
            raise click.BadParameter(f"{item!r}: use N or SPLIT=N,... (or DATASET.SPLIT=N)")
        counts[split.strip()] = int(number)
    return counts


def parse_sources(values: tuple[str, ...]) -> dict[str, Path]:
    """``("DATASET=DIR", ...)`` -> {dataset: folder}."""
    sources: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise click.BadParameter(f"{value!r}: use DATASET=DIR", param_hint="'--source'")
        sources[name.strip()] = Path(folder.strip())
    return sources


def resolve_assignment(ctx: click.Context, name: str | None) -> Assignment:
    """A spec by name (a folder of the course) or path; None: the one the settings name."""
    settings = ctx.obj.get("settings") if isinstance(ctx.obj, dict) else None
    if not isinstance(settings, Settings):
        settings = Settings.from_env()
    try:
        return selected(settings, name)
    except SpecError as exc:
        raise BuildFailed(str(exc)) from None


@click.command("build-tests")
@click.argument("assignment_arg", metavar="[ASSIGNMENT]", required=False)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to build into (replaced as a whole). Default: <GRADER_HOME>/hidden/<assignment>.",
)
@_assignment_option
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="DATASET=DIR",
    help="Read DATASET's files from DIR (your own private data): its IDX files, or its image "
    "folders (DIR/<split>/<class>/* or one folder per class, DIR/<class>/*). Without it a "
    "dataset is read from the spec's `dir`, or drawn from its synthetic stand-in. Repeatable.",
)
@click.option("--fashion-mnist", "--fashion-dir", "fashion_dir", type=click.Path(path_type=Path),
              default=None, hidden=True, help="Old spelling of --source fashion_mnist=DIR.")
@click.option("--dogs-cats", "dogs_cats", type=click.Path(path_type=Path), default=None,
              hidden=True, help="Old spelling of --source dogs_cats=DIR.")
@click.option(
    "--held-out",
    "--new-fraction",
    "held_out",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="With one folder per class: the share of each class held out (replaces the spec's "
    "`held_out`).",
)
@click.option(
    "--count",
    "--synthetic-count",
    "counts",
    default="",
    callback=lambda _ctx, _param, value: parse_counts(value) if value else {},
    help="Images per split: N (every synthetic split), or SPLIT=N,... (also the first N of an "
    "IDX split). Default: as the spec declares.",
)
@click.option(
    "--synthetic-classes",
    "--classes",
    "num_classes",
    type=click.IntRange(2, MAX_CLASSES),
    default=None,
    help="Number of synthetic classes (2: cat/dog; more: breeds). Default: as the spec declares.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Replaces every seed the spec declares; use a private one for a real course.",
)
@click.option("--only", multiple=True, metavar="DATASET", help="Build only these datasets.")
@click.pass_context
def build_tests(
    ctx: click.Context,
    assignment_arg: str | None,
    assignment: str | None,
    out: Path | None,
    sources: tuple[str, ...],
    fashion_dir: Path | None,
    dogs_cats: Path | None,
    held_out: float | None,
    counts: dict[str, int],
    num_classes: int | None,
    seed: int | None,
    only: tuple[str, ...],
) -> None:
    """Build the hidden test sets of ASSIGNMENT (a name under hidden_tests/ or a spec folder;
    default: the configured one) as its [datasets.*] tables declare."""
    spec = resolve_assignment(ctx, assignment_arg or assignment)
    folders = parse_sources(sources)
    for option, folder in (("fashion_dir", fashion_dir), ("dogs_cats", dogs_cats)):
        if folder is not None:
            folders[SOURCE_ALIASES[option]] = folder
    if out is None:
        settings = ctx.obj.get("settings") if isinstance(ctx.obj, dict) else None
        if not isinstance(settings, Settings):
            settings = Settings.from_env()
        out = settings.data_dir / spec.name
    for name, folder in folders.items():
        if not folder.is_dir():
            raise BuildFailed(f"--source {name}={folder}: no such folder.")
    if held_out is not None and not folders:
        raise BuildFailed("--held-out needs image folders: --source DATASET=DIR.")
    for declared in spec.datasets.values():
        if declared.name not in folders and declared.folder is not None \
                and not declared.folder.is_dir() and (not only or declared.name in only):
            raise BuildFailed(
                f"{declared.name}: folder {declared.folder} not found: pass your own set with "
                f"--source {declared.name}=DIR (or install the files the spec's `dir` names)."
            )
    start = time.monotonic()

    def progress(message: str) -> None:
        click.echo(f"[{time.monotonic() - start:5.1f}s] {message}")

    click.echo(f"Building the hidden test data of {spec.name} into {out}")
    try:
        manifest = build_sets(spec.datasets, out, sources=folders, counts=counts, seed=seed,
                              synthetic_classes=num_classes, held_out=held_out,
                              only=only or None, progress=progress)
    except (DataBuildError, ValueError) as exc:
        raise BuildFailed(str(exc)) from None
    except OSError as exc:
        raise BuildFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    for dataset in manifest.datasets.values():
        splits = ", ".join(f"{s.name} {s.count}" for s in dataset.splits.values())
        click.echo(f"  {dataset.name}: {splits} images; classes: {', '.join(dataset.classes)}")
        if dataset.name in folders:
            click.echo(f"  {dataset.name} from {dataset.source}")
            if dataset.note and dataset.provenance is Provenance.PRIVATE:
                click.secho(f"NOTE: {dataset.note}", fg="yellow")
    click.echo(f"Done in {time.monotonic() - start:.1f}s: {out}")
    for dataset in manifest.datasets.values():
        if dataset.provenance in NOTES:
            text = NOTES[dataset.provenance].format(name=dataset.name)
            click.secho(f"NOTE: {dataset.name} {text}", fg="yellow", bold=True)
        elif dataset.note and dataset.name not in folders:
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
