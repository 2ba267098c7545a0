"""``cube lab``: the commands for teaching with the notebooks (kept out of cube/cli/,
which is about running a cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cube.text import printable


@click.group()
def lab() -> None:
    """The notebooks: grade learners' work."""


@lab.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--chapter",
    "chapters",
    multiple=True,
    help="Only this chapter (two digits, e.g. 07); repeat for several.",
)
@click.option("--timeout", type=click.FloatRange(1), default=300.0, help="Seconds per cell.")
@click.option("--json", "as_json", is_flag=True, help="nbgrader-style JSON instead of a table.")
def grade(
    paths: tuple[Path, ...], chapters: tuple[str, ...], timeout: float, as_json: bool
) -> None:
    """Run every chapter's check on learners' notebooks, headless, and say how each went.

    PATHS are notebooks, a folder of them (one learner), or a folder of such folders (a
    class: one row per student and chapter). Exits 1 unless every check passed. It runs
    the learners' code, as Jupyter would: do it where that is safe."""
    from cube.lab import grade as grading

    for chapter in chapters:
        if not (len(chapter) == 2 and chapter.isdigit()):
            why = f"two digits, e.g. 07, not {chapter!r}"
            raise click.BadParameter(why, param_hint="--chapter")
    grades = []
    for one in grading.grade(list(paths), set(chapters) or None, timeout):
        grades.append(one)
        if not as_json:
            click.echo(printable(f"{one.student}/{one.notebook}: {one.verdict}"), err=True)
    if not grades:
        raise click.ClickException("no chapter notebook with a check was found there")
    if as_json:
        click.echo(json.dumps(grading.as_json(grades), indent=2))
    else:
        from cube.cli.tables import table  # the same columns as `cube status`

        table(grading.headers(grades), grading.table(grades))
    if any(g.verdict != "pass" for g in grades):
        raise SystemExit(1)
