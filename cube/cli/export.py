"""``cube export``: tasks written down for Kubernetes or Nomad, from a running manager or
from a task file.

The translation itself is :mod:`cube.export`; this is its command line. It takes the
cluster's restart limit and health interval with the manager's own declarations of
them (:mod:`cube.cli.options`), so an export of a cluster run with the defaults needs
neither flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cube.cli.client import read_task_file
from cube.cli.connection import find_task, manager_client, talking_to
from cube.cli.options import health_interval_option, manager_options, restart_limit_option
from cube.task import State, Task


@click.command("export")
@click.argument("task_id", required=False)
@click.option(
    "--to",
    "target",
    type=click.Choice(["kubernetes", "k8s", "nomad"]),
    required=True,
    help="Kubernetes manifests (YAML) or a Nomad job (JSON).",
)
@click.option("--all", "every", is_flag=True, help="Every task of the cluster not stopped.")
@click.option(
    "-f",
    "--filename",
    type=click.Path(path_type=Path),
    help="A task file instead: a task event or a bare task (or a JSON list of them).",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write here, not to stdout.")
@click.option("--job", default="cube", help="The Nomad job's name, for several tasks.")
@restart_limit_option(help="The cluster's `cube manager --restart-limit`.")
@health_interval_option(help="The cluster's `cube manager --health-interval`.")
@click.option(
    "--mhz-per-core", type=click.IntRange(1), default=1000, help="Nomad counts CPU in MHz."
)
@manager_options
def export_(
    task_id: str | None,
    target: str,
    every: bool,
    filename: Path | None,
    output: Path | None,
    job: str,
    restart_limit: int,
    health_interval: float,
    mhz_per_core: int,
    manager: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Write tasks down for Kubernetes or Nomad: one task (a unique ID prefix will do),
    every task of the cluster (--all), or a task file (-f). What does not carry over
    is said on stderr (and as comments in the YAML), never dropped silently.

    \b
    Examples:
      cube export --to kubernetes 21b23589 | kubectl apply -f -
      cube export --to nomad --all -o cube.json && nomad job run -json cube.json
      cube export --to k8s -f task.json
    """
    from cube.export import Options, export
    from cube.task import RestartPolicy

    if sum((task_id is not None, every, filename is not None)) != 1:
        raise click.UsageError("give one of: a task ID, --all, or --filename FILE")
    tasks = _tasks_to_export(task_id, every, filename, manager, token)
    options = Options(
        restart=RestartPolicy(limit=restart_limit),
        health_interval=health_interval,
        mhz_per_core=mhz_per_core,
        job=job,
    )
    out = export(tasks, target, options)
    for caveat in out.caveats:
        click.echo(f"warning: {caveat}", err=True)
    click.echo(f"note: {out.note}", err=True)
    text = out.text
    if as_json:
        caveats = [vars(c) for c in out.caveats]
        text = json.dumps({"Target": out.target, "Documents": out.documents, "Caveats": caveats})
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n")
        click.echo(f"wrote {len(tasks)} task(s) for {out.target} to {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


def _tasks_to_export(
    task_id: str | None, every: bool, filename: Path | None, manager: str, token: str | None
) -> list[Task]:
    """The tasks named on the command line: from a file, or from the manager."""
    from cube.task import ValidationError, parse_submission

    if filename is not None:
        data = read_task_file(filename)
        try:
            return [parse_submission(item).task for item in _as_list(data)]
        except ValidationError as exc:
            raise click.ClickException(f"{filename}: {exc}") from None
    client = manager_client(manager, token)
    with talking_to(manager):
        if task_id is not None:
            return [find_task(client, task_id)]
        tasks = client.tasks()
    live = [t for t in tasks if t.state is not State.Completed and t.desired is State.Running]
    if len(live) < len(tasks):
        click.echo(f"note: left out {len(tasks) - len(live)} stopped task(s)", err=True)
    if not live:
        raise click.ClickException(f"the manager at {manager} has no task to export")
    return live


def _as_list(data: Any) -> list[Any]:
    return data if isinstance(data, list) else [data]
