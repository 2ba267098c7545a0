"""``cube up``: a whole cluster here, a manager (or several, on etcd) and workers as
child processes, in the foreground until Ctrl-C.

It runs the same ``cube manager`` and ``cube worker`` (see :mod:`cube.cli.serve`) and
takes the options it shares with them from the same declarations
(:mod:`cube.cli.options`), said for a cluster where they differ. Like them, it imports
the server side only when it runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from cube.cli.options import (
    DEFAULT_DATA_DIR,
    data_dir_option,
    port_option,
    runtime_option,
    scheduler_option,
    store_option,
)
from cube.cli.serve import etcd_store


@click.command()
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=3, help="How many workers.")
# The options up shares with worker and manager, said for a whole cluster: its runtime
# and port may also come from the environment (CUBE_RUNTIME, as the notebooks read it;
# CUBE_PORT), its port is the first of several (so not 0), its data directory holds
# every component's, and its scheduler has never had a help line (kept as it was).
@runtime_option(
    help="What runs tasks: Docker when a daemon answers (auto), or say which.",
    envvar="CUBE_RUNTIME",
)
@scheduler_option(help=None)
@data_dir_option(
    default=DEFAULT_DATA_DIR / "cluster",
    help="Where the cluster keeps its state; run again on the same one to resume.",
)
@port_option(
    5555,
    lowest=1,
    help="The manager's port; workers take the next ones.",
    envvar="CUBE_PORT",
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
@store_option(  # up also takes "etcd" (start one here); it has never read CUBE_STORE
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
        etcd_store(store)
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
