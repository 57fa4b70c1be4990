"""The ``grader`` command: thin click wrappers over the library functions."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from grader import __version__
from grader.batch.cli import batch, export, regrade
from grader.config import Settings
from grader.course import ASSIGNMENT_HELP, selected
from grader.datasets.cli import build_tests, sync_tests, verify_tests
from grader.errors import GraderFault, SpecError
from grader.faults import fault_result
from grader.report import format_result
from grader.result import GradeResult
from grader.sandbox.registry import DEFAULT_BACKEND, backend_names
from grader.similarity.cli import similarity
from grader.text import dump_json

EXIT_FAULT = 3


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj.get("settings") if ctx.obj else None
    return settings if isinstance(settings, Settings) else Settings.from_env()


class _PluginGroup(click.Group):
    """Adds commands other packages declare under the ``grader.commands`` entry point
    (the leaderboard's ``worker``), loaded only when asked for: grader imports none of them."""

    def _plugins(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group="grader.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in (plugins := self._plugins()):
            command = plugins[cmd_name].load()
        return command


@click.group(cls=_PluginGroup)
@click.version_option(__version__, prog_name="grader")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Grade deep-learning assignments in a sandbox against hidden tests."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)


@main.command()
@click.argument("zips", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result JSON here (an object for one zip, a list for several).")
@click.option("--assignment", "assignment_name", metavar="NAME", help=ASSIGNMENT_HELP)
@click.option("--sandbox", type=click.Choice(backend_names()),
              help=f"Sandbox backend (default: {DEFAULT_BACKEND}, or $GRADER_SANDBOX).")
@click.option("--details/--no-details", default=False, help="Also show staff details (tracebacks).")
@click.pass_context
def grade(ctx: click.Context, zips: tuple[Path, ...], json_file: Path | None,
          assignment_name: str | None, sandbox: str | None, details: bool) -> None:
    """Grade each ZIP in the sandbox and print a summary per zip."""
    from dataclasses import replace

    from grader.pipeline import grade as grade_one
    from grader.result import Status

    settings = _settings(ctx)
    if sandbox:
        settings = replace(settings, sandbox=replace(settings.sandbox, backend=sandbox))
    try:
        assignment = selected(settings, assignment_name)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    results: list[GradeResult] = []
    faults = 0
    for path in zips:
        if not path.is_file():
            click.echo(f"{path}: no such file", err=True)
            faults += 1
            continue
        try:
            result = grade_one(path, assignment, settings)
        except GraderFault as exc:
            faults += 1
            click.secho(f"{path.name}: the grader failed: {exc.message}", fg="red", err=True)
            if exc.detail:
                click.echo(exc.detail, err=True)
            result = fault_result(assignment, exc.message, detail=exc.detail)
        results.append(result)
        click.echo(format_result(path.name, result, details=details, color=sys.stdout.isatty()))
    if json_file is not None:
        data = [r.to_dict() for r in results]
        json_file.write_text(dump_json(data[0] if len(data) == 1 else data) + "\n")
        click.echo(f"wrote {json_file}")
    if faults or any(r.status is Status.GRADER_FAULT for r in results):
        sys.exit(EXIT_FAULT)


@main.command()
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Afterwards, start the leaderboard and a grading worker on 127.0.0.1.")
@click.option("--port", type=int, default=8000, show_default=True,
              help="Port for the web app (another free one is used if it is taken; 0: any).")
@click.pass_context
def demo(ctx: click.Context, serve: bool, port: int) -> None:
    """Build each lab's demo hidden sets, grade its sample submissions, then serve the course."""
    from grader.course import load_course
    from grader.demo import ensure_hidden_data, make_samples
    from grader.pipeline import grade as grade_one

    settings = _settings(ctx)
    started = time.monotonic()
    serve_web = _demo_web() if serve else None
    graded: dict[str, dict[str, Any]] = {}
    try:
        for assignment in load_course(settings):
            click.echo(f"== {assignment.name}: {assignment.title}")
            ensure_hidden_data(settings, assignment, echo=click.echo)
            samples = make_samples(settings, assignment, echo=click.echo)
            click.echo(f"grading {len(samples)} sample submissions in the "
                       f"{settings.sandbox.backend} sandbox")
            graded[assignment.name] = {}
            for number, (name, path) in enumerate(samples.items(), start=1):
                click.echo(f"[{number}/{len(samples)}] grading {name} ...")
                result = grade_one(path, assignment, settings)
                graded[assignment.name][name] = (path, result)
                click.echo(format_result(f"{name} ({path})", result, color=sys.stdout.isatty()))
    except (GraderFault, SpecError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    click.echo(f"demo graded in {time.monotonic() - started:.0f} s")
    if serve_web is not None:
        serve_web(settings, graded, port=port, echo=click.echo)


def _demo_web() -> Callable[..., None]:
    """The web part of the demo, declared by the leaderboard under ``grader.demo``."""
    found = {ep.name: ep for ep in metadata.entry_points(group="grader.demo")}
    if "serve" not in found:
        raise click.ClickException(
            "the leaderboard is not installed, so the demo cannot serve it; "
            "run scripts/setup.sh, or pass --no-serve to only grade the samples")
    return found["serve"].load()


@main.command("render-kit")
@click.option("--check", "check_only", is_flag=True,
              help="Write nothing; exit 1 if a generated file differs from the spec.")
@click.option("--kit", "kit_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The student kit folder (default: the spec's [assignment] kit).")
@click.option("--assignment", "assignment_name", metavar="NAME", help=ASSIGNMENT_HELP)
@click.pass_context
def render_kit(ctx: click.Context, check_only: bool, kit_dir: Path | None,
               assignment_name: str | None) -> None:
    """Render the kit's numbers (README section, course_limits.json) from the spec."""
    from grader import kit

    try:
        assignment = selected(_settings(ctx), assignment_name)
        kit_dir = kit_dir or assignment.kit_dir
        if check_only:
            stale = kit.stale_files(assignment, kit_dir)
            for path in stale:
                click.echo(f"{path} is out of date with the spec; run grader render-kit", err=True)
            if stale:
                sys.exit(1)
            click.echo(f"{kit_dir}: up to date with spec {assignment.name} {assignment.version}")
            return
        changed = kit.render_kit(assignment, kit_dir)
    except (SpecError, kit.KitError) as exc:
        raise click.ClickException(str(exc)) from None
    for path in changed:
        click.echo(f"wrote {path}")
    if not changed:
        click.echo(f"{kit_dir}: already up to date")


main.add_command(build_tests)
main.add_command(sync_tests)
main.add_command(verify_tests)
main.add_command(batch)
main.add_command(regrade)
main.add_command(export)
main.add_command(similarity)
