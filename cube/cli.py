"""The ``cube`` command: run a worker or a manager, and talk to a running cluster."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cube.client import CubeError, ManagerClient, Revision, Unauthorized, Unreachable
from cube.lab.commands import lab
from cube.roles import manager_access, worker_access
from cube.task import State, Task, TaskEvent, format_time, utcnow
from cube.text import SafeFormatter, printable
from cube.tls_cli import server_tls
from cube.tls_cli import tls as tls_commands

if TYPE_CHECKING:
    from cube.http import Server

# The server side (bottle, cheroot, diskcache, numpy, docker) is imported inside the
# commands that serve, so `cube status` and friends start quickly.

DEFAULT_DATA_DIR = Path(os.environ.get("CUBE_DATA_DIR", Path.home() / ".cube"))
RUNTIMES = ["auto", "docker", "process"]
SCHEDULERS = ["roundrobin", "epvm", "greedy", "bestfit"]


def _logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="cube", prog_name="cube")
def cli() -> None:
    """Cube: a small container orchestrator you can read, run and break."""


def _compose(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Apply click options in the order they are listed (as in --help)."""

    def apply(command: Any) -> Any:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def serve_options(port: int) -> Callable[[Any], Any]:
    """What `cube worker` and `cube manager` share: where to listen, where to keep
    state, the token to require, and how much to log."""
    return _compose(
        click.option("-H", "--host", default="127.0.0.1", help="Address to listen on."),
        click.option("-p", "--port", default=port, type=click.IntRange(0, 65535), help="Port."),
        click.option(
            "-d",
            "--data-dir",
            type=click.Path(path_type=Path),
            default=DEFAULT_DATA_DIR,
            help="Where state is kept (env CUBE_DATA_DIR).",
        ),
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


@cli.command()
@serve_options(port=5556)
@click.option(
    "-n",
    "--name",
    default=None,
    help="Worker name; its state lives under DATA_DIR/NAME. [default: worker-PORT]",
)
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default="auto",
    help="What runs tasks: Docker containers, local processes, or Docker when a daemon answers.",
)
@click.option(
    "--reconcile-interval",
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
@click.option(
    "--leader-secret",
    envvar="CUBE_LEADER_SECRET_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With several managers: the file of the secret they sign their epochs with; "
    "orders must then come from the leader (env CUBE_LEADER_SECRET_FILE).",
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
    reconcile_interval: float,
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
            reconcile_interval,
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


@cli.command()
@serve_options(port=5555)
@click.option(
    "-w", "--workers", default="127.0.0.1:5556", help="Workers as host:port, comma-separated."
)
@click.option(
    "-s",
    "--scheduler",
    type=click.Choice(SCHEDULERS),
    default="epvm",
    help="How tasks are placed.",
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
@click.option(
    "--store",
    envvar="CUBE_STORE",
    default=None,
    metavar="etcd://HOST:PORT[,HOST:PORT...]",
    help="Keep state on etcd, shared with other managers, one of which leads "
    "(env CUBE_STORE). [default: DATA_DIR, per --dbtype]",
)
@click.option(
    "--etcd-prefix",
    default="/cube",
    help="Where in etcd this cluster's state is (one prefix per cluster).",
)
@click.option(
    "--leader-secret",
    envvar="CUBE_LEADER_SECRET_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The file of the secret every manager signs the epochs it leads with, which "
    "workers check (give it to them too; cube up makes one) (env CUBE_LEADER_SECRET_FILE).",
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
            etcd=_etcd_store(store),
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


def _health(client: Any) -> dict[str, Any]:
    """A manager's /health, or {} from one that has none (the book's Go manager)."""
    from cube.client import CubeError

    try:
        found = client.health()
    except CubeError:
        return {}
    return found if isinstance(found, dict) else {}


def _etcd_store(store: str | None) -> str | None:
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
    from cube.http import serve_until_stopped

    try:
        serve_until_stopped(server, on_stop)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}"
        ) from None


# ------------------------------------------------------------------ talking to a cluster


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


@contextlib.contextmanager
def _talking_to(manager: str) -> Iterator[None]:
    """Turn client errors into messages a person can act on (exit code 1)."""
    try:
        yield
    except Unreachable:
        raise click.ClickException(
            f"cannot reach the manager at {manager}: is `cube manager` running on {manager}?"
            " (set --manager or CUBE_MANAGER to point elsewhere)"
        ) from None
    except Unauthorized:
        raise click.ClickException(
            f"the manager at {manager} wants a token: pass --token or set CUBE_TOKEN"
        ) from None
    except CubeError as exc:
        raise click.ClickException(exc.message) from None


def _client(manager: str, token: str | None) -> ManagerClient:
    """A client for ``manager`` that reads what earlier commands wrote, whichever manager
    they asked (several managers on etcd): it starts from the revision they were
    answered with, and leaves the highest it is answered with for the next command."""
    revision = Revision(_remembered())
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(lambda: _remember(revision.value))
    return ManagerClient(manager, token=token, timeout=10, revision=revision)


def _revision_file() -> Path:
    """Where the CLI keeps the highest ``X-Cube-Revision`` it was answered with:
    ``CUBE_STATE_DIR``, else the user's state directory (``XDG_STATE_HOME``)."""
    given = os.environ.get("CUBE_STATE_DIR")
    if given:
        return Path(given) / "revision"
    state = os.environ.get("XDG_STATE_HOME")
    return (Path(state) if state else Path.home() / ".local" / "state") / "cube" / "revision"


def _remembered() -> int:
    try:
        text = _revision_file().read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isascii() and text.isdigit() else 0


def _remember(revision: int) -> None:
    """Keep ``revision`` for the next command, if it is newer (a failure to write only
    costs that command a catch-up read)."""
    if revision <= _remembered():
        return
    path = _revision_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".revision-{os.getpid()}")
        scratch.write_text(f"{revision}\n")
        scratch.replace(path)
    except OSError as exc:
        logging.getLogger("cube").debug("could not keep the revision in %s: %s", path, exc)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@cli.command()
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
        body = _read_task_file(path)
    else:
        body = {"Name": name, "Image": image, "HealthCheck": health_check, "Cpu": cpu}
        body |= {"Memory": memory, "RestartPolicy": restart_policy}
        body["ExposedPorts"] = {port: {} for port in ports}
    with _talking_to(manager):
        task = _client(manager, token).submit(body)
    if as_json:
        _echo_json(task.to_wire())
    else:
        click.echo(printable(f"{task.id}  {task.name}  {task.state.name}: {task.reason}"))


def _read_task_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise click.ClickException(f"file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


@cli.command()
@click.argument("task_id")
@manager_options
def stop(task_id: str, manager: str, token: str | None, as_json: bool) -> None:
    """Stop a task (cancel it, if it has not started). A unique ID prefix will do.

    \b
    Example:
      cube stop 21b23589
    """
    client = _client(manager, token)
    with _talking_to(manager):
        task = _find(client, task_id)
        client.stop(task.id)
    if as_json:
        _echo_json({"ID": str(task.id), "Stopping": True})
    else:
        pending = task.state is State.Pending
        done = "was cancelled: it had not been placed" if pending else "is being stopped"
        click.echo(printable(f"Task {task.id} ({task.name}) {done}."))


def _find(client: ManagerClient, prefix: str) -> Task:
    matches = [t for t in client.tasks() if str(t.id).startswith(prefix.lower())]
    if not matches:
        raise click.ClickException(
            f"no task has an ID starting with {prefix!r} (see `cube status`)"
        )
    if len(matches) > 1:
        names = printable(", ".join(f"{t.id} ({t.name})" for t in matches[:5]))
        raise click.ClickException(
            f"{prefix!r} matches {len(matches)} tasks: {names}; give more of the ID"
        )
    return matches[0]


@cli.command()
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
    client = _client(manager, token)
    if watch:
        _watch_tasks(client, manager, task_id, no_trunc)
        return
    with _talking_to(manager):
        tasks = [_find(client, task_id)] if task_id else client.tasks()
    if as_json:
        _echo_json(tasks[0].to_wire() if task_id else [t.to_wire() for t in tasks])
    elif task_id:
        _describe(tasks[0])
    else:
        _task_table(tasks, no_trunc)


def _watch_tasks(client: ManagerClient, manager: str, task_id: str | None, whole: bool) -> None:
    """Redraw the table (or one task) each time the manager's tasks change: one blocking
    query at a time, no polling. Ctrl-C ends it."""
    with _talking_to(manager), _until_interrupted():
        wanted = str(_find(client, task_id).id) if task_id else None
        index = 0
        while True:
            data, index = client.watch("/tasks", index)
            tasks = [Task.from_wire(t) for t in data or ()]
            if sys.stdout.isatty():
                click.echo("\033[H\033[2J", nl=False)  # clear the screen, as `watch` does
            click.echo(f"{format_time(utcnow())}  (Ctrl-C to stop)")
            if wanted:
                _describe(next(t for t in tasks if str(t.id) == wanted))
            else:
                _task_table(tasks, whole)


@contextlib.contextmanager
def _until_interrupted() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        click.echo("")


def _task_table(tasks: list[Task], whole_ids: bool) -> None:
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
    _table(["ID", "NAME", "CREATED", "STATE", "WORKER", "IMAGE", "PORTS", "RESTARTS"], rows)


def _describe(task: Task) -> None:
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


@cli.command()
@manager_options
def node(manager: str, token: str | None, as_json: bool) -> None:
    """List workers: up or down, memory, disk, tasks and CPU.

    \b
    Example:
      cube node
    """
    from cube.node import format_size

    with _talking_to(manager):
        client = _client(manager, token)
        nodes = client.nodes()
        health = _health(client)
    if as_json:
        _echo_json(nodes)
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
    _table(["NAME", "STATE", "MEMORY (USED / TOTAL)", "DISK (USED / TOTAL)", "TASKS", "CPU"], rows)


@cli.command()
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
    client = _client(manager, token)
    with _talking_to(manager):
        task = _find(client, task_id)
        text = client.logs(task.id, tail)
    if as_json:
        _echo_json({"ID": str(task.id), "Logs": text})
    elif not text:
        yet = "" if task.state in (State.Completed, State.Failed) else " yet"
        click.echo(f"task {task.name} ({str(task.id)[:8]}) has printed nothing{yet}", err=True)
    else:
        click.echo(printable(text, keep="\n\t"), nl=not text.endswith("\n"))


@cli.command()
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
    client = _client(manager, token)
    if follow:
        with _talking_to(manager), _until_interrupted():
            _follow_events(client, limit, as_json)
        return
    with _talking_to(manager):
        history = client.events(limit)
    if as_json:
        _echo_json([e.to_wire() for e in history])
    else:
        _table(EVENT_HEADERS, [_event_row(e, utcnow()) for e in history])


EVENT_HEADERS = ["WHEN", "TASK", "NAME", "ASKED", "RESTARTS"]


def _event_row(event: TaskEvent, now: datetime) -> list[str]:
    asked = "stop" if event.state is State.Completed else "run"
    return [
        _ago(event.timestamp, now),
        str(event.task.id)[:8],
        event.task.name,
        asked,
        str(event.task.restart_count),
    ]


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
                row = _event_row(event, utcnow())
                click.echo(f"{format_time(event.timestamp)}  {'  '.join(row[1:])}")
        data, index = client.watch("/events", index, limit=200)
        fresh = [TaskEvent.from_wire(e) for e in data or ()]
        backlog = [e for e in reversed(fresh) if e.id not in seen]
        seen |= {e.id for e in backlog}


@cli.command("export")
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
@click.option(
    "--restart-limit",
    type=click.IntRange(0),
    default=3,
    help="The cluster's `cube manager --restart-limit`.",
)
@click.option(
    "--health-interval",
    type=click.FloatRange(0.1),
    default=5.0,
    help="The cluster's `cube manager --health-interval`.",
)
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
        data = _read_task_file(filename)
        try:
            return [parse_submission(item).task for item in _as_list(data)]
        except ValidationError as exc:
            raise click.ClickException(f"{filename}: {exc}") from None
    client = _client(manager, token)
    with _talking_to(manager):
        if task_id is not None:
            return [_find(client, task_id)]
        tasks = client.tasks()
    live = [t for t in tasks if t.state is not State.Completed and t.desired is State.Running]
    if len(live) < len(tasks):
        click.echo(f"note: left out {len(tasks) - len(live)} stopped task(s)", err=True)
    if not live:
        raise click.ClickException(f"the manager at {manager} has no task to export")
    return live


def _as_list(data: Any) -> list[Any]:
    return data if isinstance(data, list) else [data]


# ----------------------------------------------------------------------------- output


def _table(headers: list[str], rows: list[list[str]]) -> None:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    for line in [headers, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


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


@cli.command()
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=3, help="How many workers.")
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default="auto",
    envvar="CUBE_RUNTIME",
    show_envvar=True,
    help="What runs tasks: Docker when a daemon answers (auto), or say which.",
)
@click.option(
    "-s",
    "--scheduler",
    type=click.Choice(SCHEDULERS),
    default="epvm",
)
@click.option(
    "-d",
    "--data-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_DIR / "cluster",
    help="Where the cluster keeps its state; run again on the same one to resume.",
)
@click.option(
    "-p",
    "--port",
    type=click.IntRange(1, 65535),
    default=5555,
    envvar="CUBE_PORT",
    show_envvar=True,
    help="The manager's port; workers take the next ones.",
)
@click.option(
    "--keep-tasks",
    is_flag=True,
    help="On Ctrl-C, leave tasks running (to be re-adopted next time).",
)
@click.option(
    "--managers",
    type=click.IntRange(1, 9),
    default=1,
    help="How many managers; more than one share their state on etcd (--store).",
)
@click.option(
    "--store",
    default=None,
    metavar="etcd | etcd://HOST:PORT,...",
    help="Keep the managers' state on etcd: 'etcd' starts one here (Debian's etcd-server "
    "must be installed), or give a running one. [default: etcd with --managers > 1, "
    "else DATA_DIR]",
)
@click.option(
    "--etcd-members",
    type=click.IntRange(1, 5),
    default=1,
    help="Members of the etcd started here (3 tolerate one down).",
)
@click.option("--tls", is_flag=True, help="HTTPS between all components (a CA in DATA_DIR/tls).")
def up(
    workers: int,
    runtime: str,
    scheduler: str,
    data_dir: Path,
    port: int,
    keep_tasks: bool,
    managers: int,
    store: str | None,
    etcd_members: int,
    tls: bool,
) -> None:
    """Run a whole cluster here: a manager and WORKERS workers, as child processes.

    Stays in the foreground; Ctrl-C stops everything (tasks too, unless --keep-tasks).
    Run it again with the same --data-dir and the cluster comes back as it was.

    \b
    Example:
      cube up --workers 3 --runtime process
      cube up --managers 3 --store etcd      (kill the leader: another takes over)
    """
    from cube.cluster import LocalCluster
    from cube.http import StopSignals

    if managers > 1 and store is None:
        store = "etcd"
    if store is not None and store != "etcd":
        _etcd_store(store)
    try:
        cluster = LocalCluster(
            workers,
            runtime,
            scheduler,
            data_dir,
            manager_ports=[port] + [port + workers + i for i in range(1, managers)],
            worker_ports=[port + 1 + i for i in range(workers)],
            keep_tasks=keep_tasks,
            managers=managers,
            store=store,
            etcd_members=etcd_members,
            tls=tls,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None
    with StopSignals() as stopping:
        try:
            cluster.start()
        except (RuntimeError, FileNotFoundError, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"Cube is up.\n{cluster.describe()}")
        click.echo(f"  logs       {data_dir / 'logs'}")
        try_run = f"cube run --name web --image {cluster.image} --manager {cluster.manager.address}"
        if cluster.tls is not None:  # the CLI's commands trust the cluster's CA
            click.echo(f"\nFirst: export CUBE_CACERT={cluster.tls.ca}")
        click.echo(f"\nTry:  {try_run}")
        click.echo(f"      cube status --manager {cluster.manager.address}")
        click.echo("Press Ctrl-C to stop the cluster.")
        stopping.wait()
        click.echo("Stopping the manager and the workers...")
        cluster.stop()
        click.echo("Stopped." + (" Tasks were left running." if keep_tasks else ""))


cli.add_command(lab)
cli.add_command(tls_commands)


def main() -> None:
    cli(prog_name="cube")
