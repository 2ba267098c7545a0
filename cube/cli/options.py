"""The options several ``cube`` commands share, each declared once.

An option that means the same thing in two commands (``--runtime`` of ``cube worker``
and ``cube up``, ``--restart-limit`` of ``cube manager`` and ``cube export``) is built
here, so its flags, type, choices and default cannot drift apart between them. Where a
command rightly says it differently (``cube up``'s port is the first of several, its
data directory holds a whole cluster), the difference is a parameter, visible where the
command uses it.

Options that share only a name are declared where they are used, as they are different
settings: ``--retention`` (how long a worker remembers a finished task; how long a
manager keeps tasks and events), ``--token`` (what a server requires; what a client
sends), ``-w/--workers`` (a count for ``cube up``; addresses for ``cube manager``).

Nothing here imports the server side: every command's options are built when
``cube.cli`` is imported, by ``cube status`` too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Any], Any]
"""What ``click.option`` returns: it adds the option to the command it decorates."""

DEFAULT_DATA_DIR = Path(os.environ.get("CUBE_DATA_DIR", Path.home() / ".cube"))
RUNTIMES = ["auto", "docker", "process"]
SCHEDULERS = ["roundrobin", "epvm", "greedy", "bestfit"]


def _compose(*decorators: Decorator) -> Decorator:
    """Apply click options in the order they are listed (as in --help)."""

    def apply(command: Any) -> Any:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def port_option(
    default: int, *, lowest: int = 0, help: str = "Port.", envvar: str | None = None
) -> Decorator:
    """``-p/--port``. A server may take 0 (any free port); ``cube up`` may not, as its
    workers take the ports after it."""
    return click.option(
        "-p",
        "--port",
        type=click.IntRange(lowest, 65535),
        default=default,
        envvar=envvar,
        show_envvar=envvar is not None,
        help=help,
    )


def data_dir_option(
    default: Path = DEFAULT_DATA_DIR, help: str = "Where state is kept (env CUBE_DATA_DIR)."
) -> Decorator:
    """``-d/--data-dir``: a worker's or a manager's state, or a whole cluster's
    (``cube up`` keeps its own under DEFAULT_DATA_DIR/cluster)."""
    return click.option(
        "-d", "--data-dir", type=click.Path(path_type=Path), default=default, help=help
    )


def runtime_option(help: str, envvar: str | None = None) -> Decorator:
    """``--runtime``: what runs a worker's tasks (``cube up`` passes it to its workers,
    and says so in fewer words)."""
    return click.option(
        "--runtime",
        type=click.Choice(RUNTIMES),
        default="auto",
        envvar=envvar,
        show_envvar=envvar is not None,
        help=help,
    )


def scheduler_option(help: str | None = "How tasks are placed.") -> Decorator:
    """``-s/--scheduler``: how the manager places tasks. ``cube up`` has always shown
    no help for it, only its choices; it passes ``help=None`` to keep that."""
    return click.option(
        "-s", "--scheduler", type=click.Choice(SCHEDULERS), default="epvm", help=help
    )


def store_option(metavar: str, help: str, envvar: str | None = None) -> Decorator:
    """``--store``: where managers keep their state. ``cube manager`` takes etcd
    endpoints (or CUBE_STORE); ``cube up`` also takes ``etcd``, to start one itself."""
    return click.option("--store", envvar=envvar, default=None, metavar=metavar, help=help)


def leader_secret_option(help: str) -> Decorator:
    """``--leader-secret``: the file managers sign their epochs with, which workers
    check; each side says what it does with it."""
    return click.option(
        "--leader-secret",
        envvar="CUBE_LEADER_SECRET_FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help=help,
    )


def restart_limit_option(help: str) -> Decorator:
    """``--restart-limit``: the manager's, and ``cube export``'s copy of it (the same
    default, so an export of a default cluster needs no flag)."""
    return click.option("--restart-limit", type=click.IntRange(0), default=3, help=help)


def health_interval_option(help: str) -> Decorator:
    """``--health-interval``: the manager's, and ``cube export``'s copy of it."""
    return click.option("--health-interval", type=click.FloatRange(0.1), default=5.0, help=help)


def serve_options(port: int) -> Decorator:
    """What `cube worker` and `cube manager` share: where to listen, where to keep
    state, the token to require, and how much to log."""
    return _compose(
        click.option("-H", "--host", default="127.0.0.1", help="Address to listen on."),
        port_option(port),
        data_dir_option(),
        click.option(
            "--dbtype",
            type=click.Choice(["memory", "persistent"]),
            default="persistent",
            help="Keep state on disk (survives restarts) or in memory.",
        ),
        click.option(
            "--token",
            envvar="CUBE_TOKEN",
            default=None,
            help="Require 'Authorization: Bearer TOKEN' from clients (env CUBE_TOKEN).",
        ),
        click.option(
            "--log-level", type=click.Choice(["debug", "info", "warning"]), default="info"
        ),
    )


manager_options = _compose(
    click.option(
        "-m",
        "--manager",
        envvar="CUBE_MANAGER",
        default="localhost:5555",
        help="The manager's host:port (env CUBE_MANAGER).",
    ),
    click.option(
        "--token",
        envvar=["CUBE_TOKEN", "CUBE_CLIENT_TOKEN"],
        default=None,
        help="Bearer token (env CUBE_TOKEN, else CUBE_CLIENT_TOKEN).",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print JSON for programs."),
)
"""--manager, --token and --json, shared by every command that asks the manager."""
