"""The commands that talk to a running manager: ``cube run``, ``stop``, ``status``,
``node``, ``logs`` and ``events``.

They are what a person types most, so they import only the client side (requests,
click, the task types): ``cube status`` answers without loading the server.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cube.cli.connection import find_task, manager_client, talking_to
from cube.cli.options import manager_options
from cube.cli.tables import EVENT_HEADERS, describe, echo_json, event_row, table, task_table
from cube.client import CubeError, ManagerClient
from cube.clock import utcnow
from cube.task import State, Task, TaskEvent, format_time
from cube.text import printable


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "-f", "--filename", type=click.Path(path_type=Path), help="The task file (as in the book)."
)
@click.option("--name", help="Run a task with this name (instead of a file).")
@click.option("--image", help="...and this image, e.g. cube/echo or nginx:1.27.")
@click.option("--health-check", default="", help="Path to probe, e.g. /health.")
@click.option(
    "--port", "ports", multiple=True, help="Container port to publish, e.g. 7777/tcp (repeatable)."
)
@click.option("--cpu", type=click.FloatRange(0), default=0.0, help="Cores to reserve.")
@click.option("--memory", type=click.IntRange(0), default=0, help="Bytes of memory to reserve.")
@click.option(
    "--restart-policy",
    type=click.Choice(["", "no", "always", "unless-stopped", "on-failure"]),
    default="",
)
@manager_options
def run(
    file: Path | None,
    filename: Path | None,
    name: str | None,
    image: str | None,
    health_check: str,
    ports: tuple[str, ...],
    cpu: float,
    memory: int,
    restart_policy: str,
    manager: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Run a task: from a JSON file (a task event or a bare task) or from flags.

    \b
    Examples:
      cube run task.json
      cube run --filename task.json
      cube run --name web --image cube/echo --health-check /health
    """
    path = file or filename
    if path is None and not (name and image):
        raise click.UsageError("give a task file, or both --name and --image")
    if path is not None:
        body = read_task_file(path)
    else:
        body = {"Name": name, "Image": image, "HealthCheck": health_check, "Cpu": cpu}
        body |= {"Memory": memory, "RestartPolicy": restart_policy}
        body["ExposedPorts"] = {port: {} for port in ports}
    with talking_to(manager):
        task = manager_client(manager, token).submit(body)
    if as_json:
        echo_json(task.to_wire())
    else:
        click.echo(printable(f"{task.id}  {task.name}  {task.state.name}: {task.reason}"))


def read_task_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise click.ClickException(f"file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


@click.command()
@click.argument("task_id")
@manager_options
def stop(task_id: str, manager: str, token: str | None, as_json: bool) -> None:
    """Stop a task (cancel it, if it has not started). A unique ID prefix will do.

    \b
    Example:
      cube stop 21b23589
    """
    client = manager_client(manager, token)
    with talking_to(manager):
        task = find_task(client, task_id)
        client.stop(task.id)
    if as_json:
        echo_json({"ID": str(task.id), "Stopping": True})
    else:
        pending = task.state is State.Pending
        done = "was cancelled: it had not been placed" if pending else "is being stopped"
        click.echo(printable(f"Task {task.id} ({task.name}) {done}."))


@click.command()
@click.argument("task_id", required=False)
@click.option("--no-trunc", is_flag=True, help="Show whole IDs.")
@click.option("-w", "--watch", is_flag=True, help="Redraw as tasks change, until Ctrl-C.")
@manager_options
def status(
    task_id: str | None,
    no_trunc: bool,
    watch: bool,
    manager: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List tasks: where they run and how they are doing. Given a task's ID (a unique
    prefix will do), show all there is to know about that one, such as why it waits.

    \b
    Examples:
      cube status --manager localhost:5555
      cube status 21b23589
      cube status --watch
    """
    client = manager_client(manager, token)
    if watch:
        _watch_tasks(client, manager, task_id, no_trunc)
        return
    with talking_to(manager):
        tasks = [find_task(client, task_id)] if task_id else client.tasks()
    if as_json:
        echo_json(tasks[0].to_wire() if task_id else [t.to_wire() for t in tasks])
    elif task_id:
        describe(tasks[0])
    else:
        task_table(tasks, no_trunc)


def _watch_tasks(client: ManagerClient, manager: str, task_id: str | None, whole: bool) -> None:
    """Redraw the table (or one task) each time the manager's tasks change: one blocking
    query at a time, no polling. Ctrl-C ends it."""
    with talking_to(manager), _until_interrupted():
        wanted = str(find_task(client, task_id).id) if task_id else None
        index = 0
        while True:
            data, index = client.watch("/tasks", index)
            tasks = [Task.from_wire(t) for t in data or ()]
            if sys.stdout.isatty():
                click.echo("\033[H\033[2J", nl=False)  # clear the screen, as `watch` does
            click.echo(f"{format_time(utcnow())}  (Ctrl-C to stop)")
            if wanted:
                describe(next(t for t in tasks if str(t.id) == wanted))
            else:
                task_table(tasks, whole)


@contextlib.contextmanager
def _until_interrupted() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        click.echo("")


@click.command()
@manager_options
def node(manager: str, token: str | None, as_json: bool) -> None:
    """List workers: up or down, memory, disk, tasks and CPU.

    \b
    Example:
      cube node
    """
    from cube.node import format_size

    with talking_to(manager):
        client = manager_client(manager, token)
        nodes = client.nodes()
        health = _health(client)
    if as_json:
        echo_json(nodes)
        return
    if health.get("Epoch"):  # several managers: say who leads
        this = "this manager" if health.get("Leading") else "not this manager"
        leader = health.get("Leader") or "none right now (an election is under way)"
        click.echo(printable(f"leader: {leader} (epoch {health['Epoch']}; {this})"))
    rows = [
        [
            n["Name"],
            n["State"],
            f"{format_size(n['MemoryUsed'] * 1024)} / {format_size(n['Memory'] * 1024)}",
            f"{format_size(n['DiskUsed'])} / {format_size(n['Disk'])}",
            str(n["TaskCount"]),
            f"{n['CpuPercent']:.0f}%",
        ]
        for n in nodes
    ]
    table(["NAME", "STATE", "MEMORY (USED / TOTAL)", "DISK (USED / TOTAL)", "TASKS", "CPU"], rows)


@click.command()
@click.argument("task_id")
@click.option("--tail", type=click.IntRange(1, 100_000), default=200, help="How many lines.")
@manager_options
def logs(task_id: str, tail: int, manager: str, token: str | None, as_json: bool) -> None:
    """Print what a task's container or process wrote. A task that printed nothing says
    so (on stderr); one whose output is gone says why, and exits with 1.

    \b
    Example:
      cube logs 21b23589 --tail 20
    """
    client = manager_client(manager, token)
    with talking_to(manager):
        task = find_task(client, task_id)
        text = client.logs(task.id, tail)
    if as_json:
        echo_json({"ID": str(task.id), "Logs": text})
    elif not text:
        yet = "" if task.state in (State.Completed, State.Failed) else " yet"
        click.echo(f"task {task.name} ({str(task.id)[:8]}) has printed nothing{yet}", err=True)
    else:
        click.echo(printable(text, keep="\n\t"), nl=not text.endswith("\n"))


@click.command()
@click.option("--limit", type=click.IntRange(1), default=50, help="How many, newest first.")
@click.option("-f", "--follow", is_flag=True, help="Then print new events as they come.")
@manager_options
def events(limit: int, follow: bool, manager: str, token: str | None, as_json: bool) -> None:
    """List task events (requests to run, stop, restart), newest first; with --follow,
    then each new one as it happens (oldest first), until Ctrl-C.

    \b
    Examples:
      cube events --limit 10
      cube events --follow
    """
    client = manager_client(manager, token)
    if follow:
        with talking_to(manager), _until_interrupted():
            _follow_events(client, limit, as_json)
        return
    with talking_to(manager):
        history = client.events(limit)
    if as_json:
        echo_json([e.to_wire() for e in history])
    else:
        table(EVENT_HEADERS, [event_row(e, utcnow()) for e in history])


def _follow_events(client: ManagerClient, limit: int, as_json: bool) -> None:
    """Print the newest ``limit`` events (oldest first), then every new one as the manager
    records it: blocking queries, one at a time."""
    data, index = client.watch("/events", 0, limit=limit)
    backlog = [TaskEvent.from_wire(e) for e in reversed(data or [])]
    seen = {e.id for e in backlog}
    while True:
        for event in backlog:
            if as_json:
                click.echo(json.dumps(event.to_wire()))
            else:
                row = event_row(event, utcnow())
                click.echo(f"{format_time(event.timestamp)}  {'  '.join(row[1:])}")
        data, index = client.watch("/events", index, limit=200)
        fresh = [TaskEvent.from_wire(e) for e in data or ()]
        backlog = [e for e in reversed(fresh) if e.id not in seen]
        seen |= {e.id for e in backlog}


def _health(client: Any) -> dict[str, Any]:
    """A manager's /health, or {} from one that has none (the book's Go manager)."""
    try:
        found = client.health()
    except CubeError:
        return {}
    return found if isinstance(found, dict) else {}
