"""Serve one of bench_servers' WSGI apps on one server, in this process, until stopped.

``python -m bench.wsgi_servers SERVER APP PORT STATE_DIR``. SERVER is ``cheroot``
(cube.http.Server, as ``cube worker`` runs it: SIGTERM stops it gracefully), ``granian``
(WSGI mode, one worker process of its own), ``waitress``, or ``canned`` (no WSGI at all:
see :func:`serve_canned`); APP is ``hello``, ``worker`` or ``probe``. Kept apart from
the suite so that each server is a process of its own, started and stopped the same way,
and so that granian, which imports its app by name in its worker process, finds the
factories here.

The worker app is a real worker's API (``cube.worker.api.make_app``) over a worker on
the process runtime holding ``TASKS`` tasks, half finished and half running. Its loop is
not started: the records say Running but no process is started, so what is measured is
the API and the server, as in bench_api.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bottle

from cube.clock import utcnow
from cube.http import Server, serve_until_stopped
from cube.runtime import choose
from cube.store import JsonCodec, MemoryStore, WireCodec
from cube.task import State, Task
from cube.worker import Worker
from cube.worker.api import make_app

SERVERS = ("cheroot", "granian", "waitress")
TASKS = 20
STATE_ENV = "CUBE_BENCH_STATE"  # where the worker app's runtime keeps its state


def hello_app() -> bottle.Bottle:
    """The server's ceiling: a route that does nothing."""
    app = bottle.Bottle()
    app.route("/hello", callback=lambda: "hello")
    return app


def worker_app() -> bottle.Bottle:
    """A real worker's API over ``TASKS`` tasks (no argument: granian calls it by name)."""
    runtime = choose("process", owner="bench-servers", state_dir=Path(os.environ[STATE_ENV]))
    worker = Worker("bench", MemoryStore(WireCodec(Task)), runtime, timers=MemoryStore(JsonCodec()))
    now = utcnow()
    for i in range(TASKS):
        if i % 2:
            task = Task(f"done-{i}", "cube/echo", state=State.Completed, finish_time=now)
            worker.records.put(task.replace(desired=State.Completed))
        else:
            worker.records.put(Task(f"run-{i}", "cube/echo", state=State.Running, start_time=now))
    return make_app(worker)


def probe_app() -> bottle.Bottle:
    """The worker app plus ``GET /slow?seconds=S``, a request that takes S seconds: what
    a graceful stop must let finish (bench.servers_guarantees; not timed)."""
    app = worker_app()

    @app.get("/slow")
    def slow() -> str:
        time.sleep(float(bottle.request.query.get("seconds", "2")))
        return "done"

    return app


APPS: dict[str, Callable[[], bottle.Bottle]] = {
    "hello": hello_app,
    "worker": worker_app,
    "probe": probe_app,
}


CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def serve_canned(port: int) -> None:
    """No WSGI and no parsing: the same bytes for every request head, one connection at a
    time. What one sequential client reaches against it is the client's own ceiling."""
    with socket.create_server(("127.0.0.1", port)) as listener:
        while True:
            conn, _ = listener.accept()
            with conn:
                pending = b""
                while data := conn.recv(65536):
                    pending += data
                    while b"\r\n\r\n" in pending:
                        pending = pending.split(b"\r\n\r\n", 1)[1]
                        conn.sendall(CANNED)


def serve(server: str, app: str, port: int) -> None:
    """Serve until SIGTERM (or Ctrl-C)."""
    if server == "canned":
        serve_canned(port)
    elif server == "cheroot":
        serve_until_stopped(Server(APPS[app](), port=port), on_stop=lambda: None)
    elif server == "granian":
        _granian(app, port)
    elif server == "waitress":
        import waitress

        waitress.serve(APPS[app](), host="127.0.0.1", port=port, threads=16, _quiet=True)
    else:
        raise SystemExit(f"unknown server {server!r}: one of {', '.join(SERVERS)}")


def _granian(app: str, port: int) -> None:
    """One worker process: a Cube worker's state (its tasks, its change index, the held
    watches) lives in one process, so more workers would be several Cube workers on one
    port. Blocking threads and backpressure keep granian's defaults for WSGI."""
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server import Server as Granian

    Granian(
        f"bench.wsgi_servers:{APPS[app].__name__}",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.WSGI,
        workers=1,
        http=HTTPModes.http1,
        factory=True,
        log_level=LogLevels.warning,
    ).serve()


if __name__ == "__main__":
    name, which, number, state = sys.argv[1:5]
    os.environ[STATE_ENV] = state
    serve(name, which, int(number))
