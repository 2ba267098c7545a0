"""What the client commands print for a person: aligned tables, ages ("3 minutes ago"),
one task described a field a line, and JSON for programs.

Kept apart from the commands so that other commands print the same way (``cube lab
grade`` prints its grades with :func:`table`, in the columns of ``cube status``). Every
cell goes through :func:`cube.text.printable`: names, images and reasons come from
whoever submitted the task, and must not drive the terminal.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from cube.clock import utcnow
from cube.task import State, Task, TaskEvent, format_time
from cube.text import printable

EVENT_HEADERS = ["WHEN", "TASK", "NAME", "ASKED", "RESTARTS"]


def table(headers: list[str], rows: list[list[str]]) -> None:
    """Print ``rows`` under ``headers``, each column as wide as its widest cell."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    for line in [headers, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _ago(moment: datetime | None, now: datetime) -> str:
    """ "3 minutes ago" (the book's CREATED was always "less than a second ago")."""
    if moment is None:
        return "-"
    seconds = int((now - moment).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' * (count != 1)} ago"
    return "just now"


def _ports(task: Task) -> str:
    return ", ".join(
        f"{b['HostIp'] or '*'}:{b['HostPort']}->{port}"
        for port, bindings in sorted(task.host_ports.items())
        for b in bindings[:1]
        if b.get("HostPort")
    )


def task_table(tasks: list[Task], whole_ids: bool) -> None:
    now = utcnow()
    rows = [
        [
            str(t.id) if whole_ids else str(t.id)[:8],
            t.name,
            _ago(t.created, now),
            t.state.name,
            t.worker or "-",
            t.image,
            _ports(t) or "-",
            str(t.restart_count),
        ]
        for t in tasks
    ]
    table(["ID", "NAME", "CREATED", "STATE", "WORKER", "IMAGE", "PORTS", "RESTARTS"], rows)


def describe(task: Task) -> None:
    """One task, a field a line, for a person wondering what became of it."""
    from cube.node import format_size

    now = utcnow()
    sizes = [(task.memory, "memory"), (task.disk, "disk")]
    resources = [f"{task.cpu:g} cores"] if task.cpu else []
    resources += [f"{format_size(n)} {what}" for n, what in sizes if n]
    fields = {
        "ID": str(task.id),
        "Name": task.name,
        "Image": task.image,
        "State": task.state.name,
        "Reason": task.reason or "-",
        "Worker": task.worker or "-",
        "Ports": _ports(task) or "-",
        "Health check": task.health_check or "-",
        "Restarts": str(task.restart_count),
        "Resources": ", ".join(resources) or "none asked for",
        "Created": _when(task.created, now),
        "Started": _when(task.start_time, now),
        "Finished": _when(task.finish_time, now),
        "Container": task.container_id or "-",
    }
    for label, value in fields.items():
        click.echo(f"{label + ':':<14}{printable(value)}")


def _when(moment: datetime | None, now: datetime) -> str:
    return f"{format_time(moment)} ({_ago(moment, now)})" if moment else "-"


def event_row(event: TaskEvent, now: datetime) -> list[str]:
    """One task event under :data:`EVENT_HEADERS`."""
    asked = "stop" if event.state is State.Completed else "run"
    return [
        _ago(event.timestamp, now),
        str(event.task.id)[:8],
        event.task.name,
        asked,
        str(event.task.restart_count),
    ]
