"""The ``cube`` command: run a worker or a manager, and talk to a running cluster."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

import cube
from cube.http import Server, serve_until_stopped
from cube.store import DirectoryLocked

DEFAULT_DATA_DIR = Path(os.environ.get("CUBE_DATA_DIR", Path.home() / ".cube"))


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(cube.__version__, prog_name="cube")
def cli() -> None:
    """Cube: a small container orchestrator you can read, run and break."""


@cli.command()
@click.option("-H", "--host", default="127.0.0.1", help="Address to listen on.")
@click.option(
    "-p", "--port", default=5556, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "-n",
    "--name",
    default=None,
    help="Worker name; its state lives under DATA_DIR/NAME. [default: worker-PORT]",
)
@click.option(
    "--runtime",
    type=click.Choice(["auto", "docker", "process"]),
    default="auto",
    help="What runs tasks: Docker containers, local processes, or Docker when a daemon answers.",
)
@click.option(
    "-d",
    "--data-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_DIR,
    help="Where state is kept (env CUBE_DATA_DIR).",
)
@click.option(
    "--dbtype",
    type=click.Choice(["memory", "persistent"]),
    default="persistent",
    help="Keep state on disk (survives restarts) or in memory.",
)
@click.option(
    "--reconcile-interval",
    type=click.FloatRange(0.1),
    default=2.0,
    help="Seconds between inspections of running tasks.",
)
@click.option(
    "--token",
    envvar="CUBE_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' (env CUBE_TOKEN).",
)
@click.option(
    "--stop-tasks-on-exit",
    is_flag=True,
    help="On SIGTERM, stop this worker's tasks and start them again when it restarts "
    "(default: leave them running, to be re-adopted).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
def worker(
    host: str,
    port: int,
    name: str | None,
    runtime: str,
    data_dir: Path,
    dbtype: str,
    reconcile_interval: float,
    token: str | None,
    stop_tasks_on_exit: bool,
    log_level: str,
) -> None:
    """Run a worker: it runs tasks and answers the manager.

    \b
    Example:
      cube worker --port 5556 --name worker-1 --runtime process
    """
    from cube.worker import open_worker
    from cube.worker.api import make_app

    _logging(log_level)
    name = name or f"worker-{port}"
    try:
        node = open_worker(name, data_dir, runtime, dbtype, reconcile_interval)
    except DirectoryLocked as exc:
        raise click.ClickException(str(exc)) from None
    node.start()
    server = Server(make_app(node, token), host, port, token_required=bool(token))
    logging.getLogger("cube").info(
        "worker %s (runtime %s, state in %s)", name, node.runtime.name, data_dir / name
    )
    serve_until_stopped(server, lambda: node.close(suspend_tasks=stop_tasks_on_exit))


@cli.command()
@click.option("-H", "--host", default="127.0.0.1", help="Address to listen on.")
@click.option(
    "-p", "--port", default=5555, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "-w", "--workers", default="127.0.0.1:5556", help="Workers as host:port, comma-separated."
)
@click.option(
    "-s",
    "--scheduler",
    type=click.Choice(["roundrobin", "epvm", "greedy", "bestfit"]),
    default="epvm",
    help="How tasks are placed.",
)
@click.option(
    "-d",
    "--data-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_DIR,
    help="Where state is kept (env CUBE_DATA_DIR).",
)
@click.option(
    "--dbtype",
    type=click.Choice(["memory", "persistent"]),
    default="persistent",
    help="Keep state on disk (survives restarts) or in memory.",
)
@click.option(
    "--update-interval",
    type=click.FloatRange(0.1),
    default=1.0,
    help="Seconds between polls of the workers.",
)
@click.option(
    "--health-interval",
    type=click.FloatRange(0.1),
    default=5.0,
    help="Seconds between health checks of running tasks.",
)
@click.option(
    "--node-ttl",
    type=click.FloatRange(0.5),
    default=5.0,
    help="Seconds of silence before a worker is marked down.",
)
@click.option(
    "--restart-limit",
    type=click.IntRange(0),
    default=3,
    help="Restarts of a failing task before it stays Failed.",
)
@click.option(
    "--token",
    envvar="CUBE_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' from clients (env CUBE_TOKEN).",
)
@click.option(
    "--worker-token",
    envvar="CUBE_WORKER_TOKEN",
    default=None,
    help="Token to send to workers (env CUBE_WORKER_TOKEN).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
def manager(
    host: str,
    port: int,
    workers: str,
    scheduler: str,
    data_dir: Path,
    dbtype: str,
    update_interval: float,
    health_interval: float,
    node_ttl: float,
    restart_limit: int,
    token: str | None,
    worker_token: str | None,
    log_level: str,
) -> None:
    """Run the manager: it places tasks on workers and keeps them running.

    \b
    Example:
      cube manager --workers 127.0.0.1:5556,127.0.0.1:5557 --scheduler epvm
    """
    from cube.manager import open_manager
    from cube.manager.api import make_app
    from cube.manager.health import RestartPolicy

    _logging(log_level)
    addresses = [w.strip() for w in workers.split(",") if w.strip()]
    try:
        boss = open_manager(
            addresses,
            scheduler,
            data_dir,
            dbtype,
            update_interval=update_interval,
            health_interval=health_interval,
            node_ttl=node_ttl,
            restart=RestartPolicy(limit=restart_limit),
            worker_token=worker_token,
        )
    except DirectoryLocked as exc:
        raise click.ClickException(str(exc)) from None
    boss.start()
    server = Server(make_app(boss, token), host, port, token_required=bool(token))
    logging.getLogger("cube").info(
        "manager (scheduler %s, workers %s, state in %s)", scheduler, ", ".join(addresses), data_dir
    )
    serve_until_stopped(server, boss.close)


def main() -> None:
    cli(prog_name="cube")
