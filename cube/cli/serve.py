"""The commands that serve: ``cube worker`` and ``cube manager`` (``cube up``, in
:mod:`cube.cli.up`, runs them as child processes).

The server side (bottle, cheroot, diskcache, numpy, docker) is imported inside these
commands only, never at the top of this module: ``cube.cli`` imports it to register
the commands, and ``cube status`` and friends must start quickly.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cube.cli.options import (
    health_interval_option,
    leader_secret_option,
    restart_limit_option,
    runtime_option,
    scheduler_option,
    serve_options,
    store_option,
)
from cube.cli.tls import server_tls
from cube.text import SafeFormatter

if TYPE_CHECKING:
    from cube.http import Server


def _logging(level: str) -> None:
    """Log to stderr, each message on one line: a value logged from a request (a task's
    name, a worker's answer) cannot forge a line of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


@click.command()
@serve_options(port=5556)
@click.option(
    "-n",
    "--name",
    default=None,
    help="Worker name; its state lives under DATA_DIR/NAME. [default: worker-PORT]",
)
@runtime_option(
    help="What runs tasks: Docker containers, local processes, or Docker when a daemon answers."
)
@click.option(
    "--inspect-interval",
    "--reconcile-interval",  # its name before the glossary: scripts may still say it
    "inspect_interval",
    type=click.FloatRange(0.1),
    default=2.0,
    help="Seconds between inspections of running tasks.",
)
@click.option(
    "--retention",
    type=click.FloatRange(0),
    default=3600.0,
    help="Seconds a finished task is remembered when no manager has seen it finish.",
)
@leader_secret_option(
    help="With several managers: the file of the secret they sign their epochs with; "
    "orders must then come from the leader (env CUBE_LEADER_SECRET_FILE)."
)
@click.option(
    "--forget-leader",
    is_flag=True,
    help="Start following no leader (after etcd was restored from a backup): the next "
    "proven order is followed, whatever its epoch.",
)
@click.option(
    "--stop-tasks-on-exit",
    is_flag=True,
    help="On SIGTERM, stop this worker's tasks and start them again when it restarts "
    "(default: leave them running, to be re-adopted).",
)
def worker(
    host: str,
    port: int,
    name: str | None,
    runtime: str,
    data_dir: Path,
    dbtype: str,
    inspect_interval: float,
    retention: float,
    token: str | None,
    leader_secret: Path | None,
    forget_leader: bool,
    stop_tasks_on_exit: bool,
    log_level: str,
) -> None:
    """Run a worker: it runs tasks and answers the manager.

    \b
    Example:
      cube worker --port 5556 --name worker-1 --runtime process
    """
    from cube.http import Server
    from cube.roles import worker_access
    from cube.store import DirectoryLocked
    from cube.worker import open_worker
    from cube.worker.api import make_app

    _logging(log_level)
    name = name or f"worker-{port}"
    try:
        node = open_worker(
            name,
            data_dir,
            runtime,
            dbtype,
            inspect_interval,
            retention,
            leader_secret=_leader_secret(leader_secret),
            forget_leader=forget_leader,
        )
    except DirectoryLocked as exc:
        raise click.ClickException(str(exc)) from None
    node.start()
    secure, access = server_tls(), worker_access(token)
    server = Server(make_app(node, access), host, port, token_required=bool(access), tls=secure)
    logging.getLogger("cube").info(
        "worker %s (runtime %s, state in %s)", name, node.runtime.name, data_dir / name
    )
    _serve(server, lambda: node.close(suspend_tasks=stop_tasks_on_exit))


@click.command()
@serve_options(port=5555)
@click.option(
    "-w", "--workers", default="127.0.0.1:5556", help="Workers as host:port, comma-separated."
)
@scheduler_option()
@click.option(
    "--update-interval",
    type=click.FloatRange(0.1),
    default=1.0,
    help="Seconds between polls of the workers.",
)
@health_interval_option(help="Seconds between health checks of running tasks.")
@click.option(
    "--node-ttl",
    type=click.FloatRange(0.5),
    default=5.0,
    help="Seconds of silence before a worker is marked down.",
)
@restart_limit_option(help="Restarts of a failing task before it stays Failed.")
@click.option(
    "--restart-base",
    type=click.FloatRange(0.01),
    default=1.0,
    help="Seconds before the first restart; each next one waits twice as long (at most 30 s).",
)
@click.option(
    "--retention",
    type=click.FloatRange(0),
    default=86400.0,
    help="Seconds a finished task and an event are kept.",
)
@click.option(
    "--max-finished",
    type=click.IntRange(0),
    default=10_000,
    help="Finished tasks kept at most (the oldest go first).",
)
@click.option(
    "--max-events",
    type=click.IntRange(0),
    default=100_000,
    help="Task events kept at most (the oldest go first).",
)
@click.option(
    "--worker-token",
    envvar=["CUBE_WORKER_TOKEN", "CUBE_MANAGER_TOKEN"],
    default=None,
    help="Token to send to workers (env CUBE_WORKER_TOKEN).",
)
@store_option(
    metavar="etcd://HOST:PORT[,HOST:PORT...]",
    help="Keep state on etcd, shared with other managers, one of which leads "
    "(env CUBE_STORE). [default: DATA_DIR, per --dbtype]",
    envvar="CUBE_STORE",
)
@click.option(
    "--etcd-prefix",
    default="/cube",
    help="Where in etcd this cluster's state is (one prefix per cluster).",
)
@leader_secret_option(
    help="The file of the secret every manager signs the epochs it leads with, which "
    "workers check (give it to them too; cube up makes one) (env CUBE_LEADER_SECRET_FILE)."
)
@click.option(
    "--lease-ttl",
    type=click.IntRange(2, 60),
    default=3,
    help="Seconds a leader's etcd lease lasts unrenewed: about how long a failover takes.",
)
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
    restart_base: float,
    retention: float,
    max_finished: int,
    max_events: int,
    token: str | None,
    worker_token: str | None,
    store: str | None,
    etcd_prefix: str,
    leader_secret: Path | None,
    lease_ttl: int,
    log_level: str,
) -> None:
    """Run the manager: it places tasks on workers and keeps them running.

    With --store etcd://..., run as many managers as you like on the same etcd: each
    answers the API, one (elected) places and restarts tasks, another takes over
    within about --lease-ttl seconds when it dies.

    \b
    Example:
      cube manager --workers 127.0.0.1:5556,127.0.0.1:5557 --scheduler epvm
      cube manager -p 5555 --workers 127.0.0.1:5556 --store etcd://127.0.0.1:2379
    """
    from cube.etcd import EtcdError
    from cube.http import Server
    from cube.manager import open_manager
    from cube.manager.api import make_app
    from cube.manager.retention import Retention
    from cube.roles import manager_access
    from cube.store import DirectoryLocked
    from cube.task import RestartPolicy

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
            restart=RestartPolicy(limit=restart_limit, base=restart_base),
            retention=Retention(retention, max_finished, max_events),
            worker_token=worker_token,
            etcd=etcd_store(store),
            prefix=etcd_prefix,
            name=f"{host}:{port}",
            api=f"{'https' if server_tls() else 'http'}://{host}:{port}",
            lease_ttl=lease_ttl,
            leader_secret=_leader_secret(leader_secret),
        )
    except DirectoryLocked as exc:
        raise click.ClickException(str(exc)) from None
    except EtcdError as exc:
        raise click.ClickException(f"cannot use the etcd at {store}: {exc}") from None
    secure, access = server_tls(), manager_access(token)
    server = Server(make_app(boss, access), host, port, token_required=bool(access), tls=secure)
    boss.start()
    logging.getLogger("cube").info(
        "manager (scheduler %s, workers %s, state in %s)",
        scheduler,
        ", ".join(addresses),
        boss.stores.describe() if store else data_dir,
    )
    _serve(server, boss.close)


def _leader_secret(path: Path | None) -> Any:
    """The leader secret in ``path`` (None without one), or a clear error."""
    from cube.proof import LeaderSecret

    if path is None:
        return None
    try:
        return LeaderSecret.load(path)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--leader-secret") from None


def etcd_store(store: str | None) -> str | None:
    """``--store``'s etcd endpoints, checked (None: the local store)."""
    if not store:
        return None
    from cube.etcd import parse_endpoints

    if not store.startswith("etcd://"):
        raise click.BadParameter(
            f"use etcd://HOST:PORT[,HOST:PORT...], not {store!r}", param_hint="--store"
        )
    try:
        parse_endpoints(store)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None
    return store


def _serve(server: Server, on_stop: Callable[[], None]) -> None:
    """Serve until SIGTERM or Ctrl-C; a port that cannot be had is said in one line,
    not a traceback."""
    from cube.http import serve_until_stopped

    try:
        serve_until_stopped(server, on_stop)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}"
        ) from None
