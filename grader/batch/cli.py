"""``grader batch``, ``grader regrade`` and ``grader export``: thin wrappers over grader.batch."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grader.batch import BatchError
from grader.config import Assignment, Settings, load_assignment
from grader.course import ASSIGNMENT_HELP, find_assignment
from grader.datasets.manifest import Manifest
from grader.errors import GraderFault, SpecError
from grader.sandbox.registry import DEFAULT_BACKEND, backend_names

if TYPE_CHECKING:
    from grader.batch.csvout import Row

EXIT_FAULT = 3  # as `grader grade`: the grader itself failed on some submission
EXIT_INTERRUPTED = 130


def _settings(ctx: click.Context, sandbox: str | None, assignment_name: str | None) -> Settings:
    """The settings, with ``--assignment NAME`` (found in the course) as their assignment."""
    settings = ctx.obj.get("settings") if ctx.obj else None
    settings = settings if isinstance(settings, Settings) else Settings.from_env()
    if sandbox:
        settings = replace(settings, sandbox=replace(settings.sandbox, backend=sandbox))
    if assignment_name:
        try:
            folder = find_assignment(assignment_name, settings.course_dir)
        except SpecError as exc:
            raise click.ClickException(str(exc)) from None
        settings = replace(settings, assignment_path=folder)
    return settings


def _assignment(settings: Settings) -> Assignment:
    try:
        return load_assignment(settings.assignment_path)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """BatchError and GraderFault as one clear line each, never a traceback."""
    try:
        yield
    except BatchError as exc:
        raise click.ClickException(exc.message) from None
    except GraderFault as exc:
        click.secho(f"the grader failed: {exc.message}", fg="red", err=True)
        if exc.detail:
            click.echo(exc.detail, err=True)
        sys.exit(EXIT_FAULT)


def _check_csv(path: Path) -> None:
    """Fail before grading, not after, when the CSV cannot be written."""
    if path.is_dir():
        raise click.ClickException(f"--csv {path} is a folder; give a file name, such as "
                                   f"{path / 'grades.csv'}")
    parent = path.parent
    if not parent.is_dir():
        raise click.ClickException(f"cannot write the CSV at {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.ClickException(f"cannot write the CSV at {path}: permission denied")


def _load_manifest(settings: Settings, assignment: Assignment) -> Manifest:
    from grader.datasets.manifest import load_manifest

    return load_manifest(settings.data_dir / assignment.name)


_jobs = click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Sandboxes run at the same time; each gets max(1, cores // N) CPUs "
                          "(at most the spec's limits.cpus).")
_spec = click.option("--assignment", "assignment_name", metavar="NAME", help=ASSIGNMENT_HELP)
_sandbox = click.option("--sandbox", type=click.Choice(backend_names()),
                        help=f"Sandbox backend (default: {DEFAULT_BACKEND}, or $GRADER_SANDBOX).")


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@_jobs
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True,
              help="Write one row per student here.")
@click.option("--json-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The results store (one JSON per zip); default: <csv stem>.results/ beside the CSV.")
@click.option("--force", is_flag=True, help="Grade again what the store already has for this spec version.")
@click.option("--publish", is_flag=True,
              help="Also record each result in the leaderboard for that student (LEADERBOARD_* settings).")
@click.option("--id-pattern", metavar="REGEX",
              help="Take the student id from the named group 'id' of REGEX searched in each zip stem "
                   "or folder name, e.g. '_(?P<id>\\d+)_assignsubmission'; default: the whole name.")
@click.option("--max-unpacked-gib", type=click.FloatRange(min=0, min_open=True), default=20.0,
              show_default=True, help="Refuse a zip SOURCE that unpacks to more than this.")
@_spec
@_sandbox
@click.pass_context
def batch(ctx: click.Context, source: Path, jobs: int, csv_path: Path, json_dir: Path | None,
          force: bool, publish: bool, id_pattern: str | None, max_unpacked_gib: float,
          assignment_name: str | None, sandbox: str | None) -> None:
    """Grade every submission in SOURCE (a folder of zips, a folder per student, or a zip of either).

    Resumable: each result is stored as soon as it is ready, and a zip already graded under
    the same spec version is skipped. Progress goes to stderr, the summary to stdout.
    """
    from grader.batch.csvout import write_csv
    from grader.batch.discover import UnpackCaps, compile_id_pattern, discover
    from grader.batch.grading import batch_grade, load_publisher
    from grader.batch.store import ResultsStore

    settings = _settings(ctx, sandbox, assignment_name)
    assignment = _assignment(settings)
    _check_csv(csv_path)
    store_root = json_dir or csv_path.with_name(f"{csv_path.stem}.results")
    with _user_errors():
        pattern = compile_id_pattern(id_pattern)
        publisher = load_publisher() if publish else None
        if not source.exists():
            raise BatchError(f"{source}: no such file or folder")
        made = not store_root.exists()
        store = ResultsStore.create(store_root)
        try:
            with store.locked():
                scratch = store.scratch()
                try:
                    caps = UnpackCaps.for_limits(assignment.limits,
                                                 total_bytes=int(max_unpacked_gib * 2**30))
                    found = discover(source, work_dir=scratch, limits=assignment.limits,
                                     id_pattern=pattern, exclude=(store_root, csv_path), caps=caps)
                    for note in found.notes:
                        click.echo(f"note: {note}", err=True)
                    report = batch_grade(found.found, store=store, assignment=assignment,
                                         settings=settings, jobs=jobs, force=force,
                                         manifest=lambda: _load_manifest(settings, assignment),
                                         publisher=publisher, stream=sys.stderr,
                                         echo=lambda line: click.echo(line, err=True))
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted; what finished is kept in {store_root}. Run the same command "
                       "again to grade the rest.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BatchError:
            if made and not store.shas():  # nothing found, or the zip refused: leave no empty store
                shutil.rmtree(store_root, ignore_errors=True)
            raise
    if report.interrupted:
        click.echo(f"interrupted: {report.graded_now} submissions graded in this run are kept in "
                   f"{store_root}; run the same command again to grade the rest.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    try:
        write_csv(csv_path, report.rows, assignment)
    except OSError as exc:
        raise click.ClickException(f"cannot write the CSV at {csv_path}: {exc.strerror}") from None
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(report.statuses.items()))
    published = (f"; published {report.published}, not published {report.not_published}"
                 if publish else "")
    click.echo(f"{len(report.rows)} students, {report.submissions} submissions ({statuses}): "
               f"{report.graded_now} graded now, {report.skipped} already graded; "
               f"{report.faults} grader faults{published}; wrote {csv_path}, results in {store_root}")
    _staff_notes(report.rows)
    if report.faults:
        sys.exit(EXIT_FAULT)


def _staff_notes(rows: Sequence[Row]) -> None:
    """After the summary: the students whose result is flagged, and what the hidden data is."""
    from grader.datasets.provenance import data_notes

    results = [row.entry.result for row in rows if row.entry.result is not None]
    flagged = [row.entry.student for row in rows if row.entry.result and row.entry.result.flags]
    if flagged:
        click.secho(f"flagged for staff: {len(flagged)} students ({', '.join(flagged[:20])}"
                    f"{', …' if len(flagged) > 20 else ''}); the reasons are in the CSV's flags "
                    "column", fg="yellow")
    for note in sorted({note for r in results for note in data_notes(r.environment)}):
        click.echo(f"note: {note}")


@click.command()
@click.argument("store_path", metavar="STORE", type=click.Path(path_type=Path))
@_jobs
@click.option("--csv", "csv_path", type=click.Path(path_type=Path),
              help="Also write the CSV of the regraded results (one row per student).")
@_spec
@_sandbox
@click.pass_context
def regrade(ctx: click.Context, store_path: Path, jobs: int, csv_path: Path | None,
            assignment_name: str | None, sandbox: str | None) -> None:
    """Grade every zip of a results STORE again under the current spec and hidden tests.

    Prints each student's old and new score and how many changed; the store keeps both.
    """
    from grader.batch.csvout import newest_per_student, write_csv
    from grader.batch.grading import regrade_store, store_entries
    from grader.batch.store import ResultsStore

    settings = _settings(ctx, sandbox, assignment_name)
    assignment = _assignment(settings)
    if csv_path is not None:
        _check_csv(csv_path)
    with _user_errors():
        store = ResultsStore.existing(store_path)
        try:
            with store.locked():
                report = regrade_store(store, assignment=assignment, settings=settings,
                                       manifest=lambda: _load_manifest(settings, assignment),
                                       jobs=jobs, stream=sys.stderr,
                                       echo=lambda line: click.echo(line, err=True))
        except KeyboardInterrupt:
            click.echo(f"\ninterrupted; what finished is kept in {store_path}.", err=True)
            sys.exit(EXIT_INTERRUPTED)
    for line in report.lines:
        click.echo(line)
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if report.interrupted:
        click.echo(f"interrupted after {report.graded_now} zips; the rest keep their old results.",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    rows, _ = newest_per_student(store_entries(store, prefer_version=assignment.version))
    if csv_path is not None:
        write_csv(csv_path, rows, assignment)
    click.echo(f"{report.changes} of {len(report.lines)} students changed; {report.graded_now} zips "
               f"regraded under spec {assignment.version}, {report.faults} grader faults; "
               f"store {store_path} updated" + (f"; wrote {csv_path}" if csv_path else ""))
    _staff_notes(rows)
    if report.faults:
        sys.exit(EXIT_FAULT)


@click.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["gradescope"]), default="gradescope",
              show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The file to write for one result; the folder to write one file per student "
                   "into for a results store.")
@_spec
@click.pass_context
def export(ctx: click.Context, results: Path, fmt: str, output: Path, assignment_name: str | None) -> None:
    """Export RESULTS (a result JSON of `grader grade --json`, or a results store) for Gradescope.

    Only what students may see goes out: no staff details, and while the spec keeps part of
    the hidden splits private, the ranked part's public numbers only.
    """
    from grader.batch.csvout import newest_per_student
    from grader.batch.grading import store_entries
    from grader.batch.store import ResultsStore
    from grader.export import ExportError, gradescope, read_result_json, safe_filename, write_json

    assignment = _assignment(_settings(ctx, None, assignment_name))
    try:
        if results.is_file():
            result = read_result_json(results)
            target = output / "results.json" if output.is_dir() else output
            if not target.parent.is_dir():
                raise ExportError(f"cannot write {target}: the folder {target.parent} does not exist")
            write_json(target, gradescope(result, assignment))
            click.echo(f"wrote {target}")
            return
        if not ResultsStore.is_store(results):
            raise ExportError(f"{results} is neither a result JSON nor a results store"
                              if results.exists() else f"{results}: no such file or folder")
        if output.exists() and not output.is_dir():
            raise ExportError(f"-o {output} is a file; exporting a store writes one file per student "
                              "into a folder")
        output.mkdir(parents=True, exist_ok=True)
        store = ResultsStore.existing(results)
        rows, _ = newest_per_student(store_entries(store, prefer_version=assignment.version))
        taken: set[str] = set()
        for row in rows:
            assert row.entry.result is not None
            name = safe_filename(row.entry.student, taken)
            write_json(output / f"{name}.json", gradescope(row.entry.result, assignment))
        click.echo(f"wrote {len(rows)} files ({fmt}) to {output}")
    except (ExportError, BatchError) as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
