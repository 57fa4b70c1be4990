"""``grader similarity STORE_OR_INSTANCE``: ranked pairs of similar submissions of a batch results
store, or of the web app's instance folder (its database and uploads; the same index the worker
updates after each result)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click

from grader.config import Assignment, Settings
from grader.course import ASSIGNMENT_HELP, selected
from grader.errors import SpecError
from grader.similarity.sources import CSV_NAME, INDEX_NAME


def _assignment(settings: Settings, spec: str | None) -> Assignment:
    """The spec: its name in the course, or a folder or TOML file (grader.course)."""
    try:
        return selected(settings, spec)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None


def _pairs_of(option: tuple[str, ...], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for item in option:
        slot, sep, file = item.partition("=")
        if not sep or not slot or not file:
            raise click.BadParameter(
                f"{item!r}: give SLOT=FILE, e.g. model.pt=resnet18-start.pt", param_hint=what
            )
        found[slot] = Path(file)
    return found


@click.command()
@click.argument("store_path", metavar="STORE_OR_INSTANCE", type=click.Path(path_type=Path))
@click.option(
    "--assignment",
    "spec",
    metavar="NAME",
    help=ASSIGNMENT_HELP,
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Write every pair found here; default: STORE/{CSV_NAME} (INSTANCE/similarity/SPEC.csv).",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Pairs to print (the CSV has all above the floor).",
)
@click.option(
    "--best", is_flag=True, help="Also compare each student's best-scoring zip when it is not their newest "
    "(always, for an instance: as the web app does)."
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    metavar="SLOT=FILE",
    help="The known starting checkpoint of a slot (e.g. model.pt=resnet18-imagenet.pt): "
    "its changes are compared, and raw weights count as weak evidence. Repeatable.",
)
@click.option(
    "--shared-start",
    "shared",
    multiple=True,
    metavar="SLOT",
    help="Models of this slot share a start whose file you do not have: raw weights are weak.",
)
@click.option(
    "--index",
    "index_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The evidence cache (SQLite); default: STORE/{INDEX_NAME} (INSTANCE/similarity/SPEC.sqlite, "
    "the web app's index). Only new zips are read.",
)
@click.pass_context
def similarity(
    ctx: click.Context,
    store_path: Path,
    spec: str | None,
    csv_path: Path | None,
    top: int,
    best: bool,
    references: tuple[str, ...],
    shared: tuple[str, ...],
    index_path: Path | None,
) -> None:
    """Rank pairs of students of a results STORE or a web app INSTANCE by similar weights,
    predictions and code.

    For staff: every flag is evidence for a person to judge; nothing changes a score.
    """
    from grader.similarity import course, fromstore, sources
    from grader.similarity.checkpoints import CheckpointUnreadable, load_tensors, read_bounded
    from grader.similarity.index import Config, Reference, SimilarityIndex
    from grader.similarity.report import legend, pair_lines, write_csv
    from grader.similarity.storage import SqliteStorage

    settings = ctx.obj.get("settings") if ctx.obj else None
    settings = settings if isinstance(settings, Settings) else Settings.from_env()
    assignment = _assignment(settings, spec)
    if spec:
        settings = replace(settings, assignment_path=assignment.spec_dir)
    try:
        source = sources.open_source(store_path, assignment)
    except sources.NotASource as exc:
        raise click.ClickException(exc.message) from None
    what = course.wanted(assignment)
    starting: dict[str, Reference] = {}
    for slot, file in _pairs_of(references, "--reference").items():
        if slot not in what.checkpoints:
            raise click.BadParameter(
                f"{slot}: not a checkpoint of {assignment.name} ({', '.join(what.checkpoints)})",
                param_hint="--reference",
            )
        try:
            tensors = load_tensors(read_bounded(file, what.max_checkpoint_bytes), file.name)
        except CheckpointUnreadable as exc:
            raise click.ClickException(f"--reference {slot}={file}: {exc.message}") from None
        starting[slot] = Reference.of(tensors)
    for slot in shared:
        if slot not in what.checkpoints:
            raise click.BadParameter(
                f"{slot}: not a checkpoint of {assignment.name}", param_hint="--shared-start"
            )

    found = source.candidates(best=best)
    students = len({c.owner for c in found})
    if students < 2:
        raise click.ClickException(
            f"the {source.what} {store_path} has {students} student(s) with a graded {assignment.name} "
            "submission; similarity needs at least two"
        )
    labels, no_labels = course.labels(settings, assignment)
    csv_path = csv_path or source.csv_path
    with source.lock(), SqliteStorage(index_path or source.index_path) as storage:
        started = time.monotonic()
        fromstore.refresh(
            storage, found, source, assignment, what, echo=lambda line: click.echo(line, err=True)
        )
        extracted_s = time.monotonic() - started
        config = Config(
            labels=labels,
            template=course.template(assignment),
            references=starting,
            shared_start=dict.fromkeys(shared, True),
        )
        index = SimilarityIndex(storage, config, tensors=fromstore.ArchiveTensors(found, what))
        started = time.monotonic()
        pairs = index.recompute()
        compared_s = time.monotonic() - started
        with_predictions = sum(bool(found.predictions) for _sid, found in index.submissions())
    try:
        write_csv(csv_path, pairs)
    except OSError as exc:
        raise click.ClickException(f"cannot write the CSV at {csv_path}: {exc.strerror}") from None
    flagged = sum(p.flagged for p in pairs)
    click.echo(
        f"{students} students, {len(found)} submissions: {len(pairs)} pairs at or above the floor "
        f"{config.lines.floor:g}, {flagged} flagged; evidence read in {extracted_s:.1f} s, "
        f"compared in {compared_s:.1f} s"
    )
    if no_labels:
        click.echo(f"note: no prediction evidence: {no_labels}", err=True)
    elif with_predictions < len(found):
        click.echo(
            f"note: {len(found) - with_predictions} of {len(found)} submissions have no stored predictions "
            "(graded before they were kept); `grader regrade STORE` keeps them",
            err=True,
        )
    for rank, pair in enumerate(pairs[:top], start=1):
        click.echo("\n".join(pair_lines(rank, pair)))
    click.echo("\n".join(legend(config.lines)))
    click.echo(f"wrote {csv_path}")
