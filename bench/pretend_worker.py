"""A real worker on the pretend runtime: ``python -m bench.pretend_worker --port 5556``.

This is ``cube worker`` (:func:`cube.cli.serve.worker`) with one thing swapped: its
runtime is :class:`bench.pretend.PretendRuntime`, which starts nothing. The worker
itself (:func:`cube.worker.open_worker`: its stores, orders, loop and inspections) and
its HTTP API (:func:`cube.worker.api.make_app` on :class:`cube.http.Server`) are the
real ones, so a manager watching, probing and ordering it does all it does with any
worker. ``bench_scale`` runs a hundred of these to load one manager; see
:mod:`bench.pretend` for why nothing is started. It takes ``cube worker``'s serving
options and stops, like it, on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from bench.pretend import PretendRuntime
from cube.cli.options import serve_options
from cube.http import Server, serve_until_stopped
from cube.roles import worker_access
from cube.text import SafeFormatter
from cube.worker import Worker, open_worker
from cube.worker.api import make_app


def open_pretend_worker(name: str, data_dir: Path, dbtype: str, inspect_interval: float) -> Worker:
    """The worker ``cube worker`` opens, on the pretend runtime. The process runtime it
    is built with is replaced before anything has used it (the worker only asks its
    runtime once started), so the stores are exactly ``cube worker``'s."""
    worker = open_worker(name, data_dir, "process", dbtype, inspect_interval)
    worker.runtime = PretendRuntime()
    return worker


@click.command()
@serve_options(port=5556)
@click.option("-n", "--name", default=None, help="Worker name. [default: worker-PORT]")
@click.option(
    "--inspect-interval",
    type=click.FloatRange(0.1),
    default=2.0,
    help="Seconds between inspections of running tasks (as cube worker's).",
)
def main(
    host: str,
    port: int,
    name: str | None,
    data_dir: Path,
    dbtype: str,
    inspect_interval: float,
    token: str | None,
    log_level: str,
) -> None:
    """Run a worker whose runtime only pretends to start tasks (for bench_scale)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    name = name or f"worker-{port}"
    worker = open_pretend_worker(name, data_dir, dbtype, inspect_interval).start()
    access = worker_access(token)
    server = Server(make_app(worker, access), host, port, token_required=bool(access))
    logging.getLogger("bench").info("worker %s on the pretend runtime: it starts nothing", name)
    serve_until_stopped(server, worker.close)


if __name__ == "__main__":
    main()
