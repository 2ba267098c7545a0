"""The same WSGI apps on several servers, measured in the same run: would a faster server
than cheroot bring Cube's worker API past the book's Go worker?

The apps (:mod:`bench.wsgi_servers`): a bare "hello" Bottle app (the server's ceiling),
and a real worker's API (``cube.worker.api.make_app``, process runtime, 20 tasks, half
finished and half running), asked ``GET /tasks`` and ``GET /stats``. The servers, each in
a process of its own, started and stopped by the suite:

- ``cube.http.Server`` (cheroot with Cube's gate in front of its pool): the baseline;
- granian in WSGI mode (Rust, hyper), one worker process: a Cube worker's state lives in
  one process;
- waitress (pure Python, a thread pool behind an asyncore loop), as another mainstream
  choice. (bjoern, in C, needs libev's headers to build and did not install.)

Two ways of asking, as bench_api asks: one sequential keep-alive ``http.client`` client
(the best of 3 runs of 1.5 s; the servers take turns in each run, so a busy moment on
the machine does not land on one of them only), and bench_api's load generators (3
processes x 2 threads, 5 s per cell). Printed: requests/s, and ratios against cheroot on
the same route, against the hello app on cheroot, and against the book's Go worker
(about 5,000 sequential requests/s on this kind of machine; there is no Go toolchain
here, so that figure is not from the same run).

Finding (2026-12-05): granian answers one sequential client 1.06-1.27x faster than
cheroot, which still leaves the worker's routes short of the Go worker (0.78-0.94x), and
it does not keep what cube.http.Server guarantees, so Cube stays on cheroot. Each
guarantee was checked by hand, out of the timing, with ``python -m
bench.servers_guarantees`` (bench/README.md has what it printed):

- **blocking queries: kept.** A held ``GET /tasks?index=N&wait=30s`` takes one of
  granian's blocking threads (512 by default); other requests are answered meanwhile,
  and a posted task answers the watch at once.
- **slow clients: not kept.** granian reads a request head in Rust, without a Python
  thread, but keeps a slow one for 30 s (``--http1-header-read-timeout``) and then
  closes without an answer (no 408). A body is worse: the app is called once the head
  is in, and reading ``wsgi.input`` holds a blocking thread for as long as the body
  trickles, with no timeout at all. 600 clients sending a body a byte a second took
  every thread: ``/health`` timed out throughout. Nothing in the app can bound this:
  granian's ``wsgi.input`` takes no timeout.
- **limits on held watches: not kept as is.** ``cube.http.block`` counts watches on the
  ``cube.http.Server`` it finds in the app's config; under granian there is none, so no
  429: 600 watches from one address took all 512 threads, and ``/health`` waited for
  them. An adapter of a few lines (an object there with ``HeldWatches`` sized to half of
  granian's fixed pool) brings the 429s back (tried by hand). Idle connections: granian
  keeps every one for 30 s (cheroot at most 256, for 10 s); neither spends a thread on
  them.
- **graceful stop: half kept.** SIGTERM lets an in-flight request finish and refuses new
  connections, but granian calls none of the app's ``cube.on_stop`` hooks, so a held
  watch is not released: the process lived on for as long as the watch's wait (31 s
  for ``wait=30s``; up to 64 s for Cube's longest). granian's shutdown hooks run in its
  main process, not in the worker process that holds the tasks.

granian also serves from one worker process here: a Cube worker keeps its tasks, its
change index and its held watches in memory, so more processes would be several Cube
workers behind one port.

Run: ``python -m bench bench_servers [--quick] [--no-load]`` (``--quick``: one run of
0.5 s per cell; not in ``make bench``). granian and waitress come with
``pip install -e '.[compare-servers]'``; a server whose package is missing is skipped
with a message. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.bench_api import DURATION, ROUNDS, SEQUENTIAL, Result, load, sequential
from bench.common import header
from bench.wsgi_servers import SERVERS
from cube.ports import free_port

BASELINE = "cheroot"
CELLS = (("hello", "/hello"), ("worker", "/tasks"), ("worker", "/stats"))
GO_WORKER = 5_000  # sequential requests/s of the book's Go worker here (bench/README.md)
QUICK = 0.5  # seconds per cell, one run, with --quick
INSTALL = {name: "pip install -e '.[compare-servers]'" for name in ("granian", "waitress")}


@dataclass(frozen=True)
class Plan:
    """How long each cell is measured."""

    rounds: int
    seconds: float
    load_seconds: float  # 0: no load runs


@dataclass
class Served:
    """One app on one server, in a process group of its own."""

    server: str
    app: str
    url: str
    process: subprocess.Popen


# ------------------------------------------------------------------ the servers


def _wait_up(served: Served, path: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            break
        with contextlib.suppress(requests.RequestException):
            if requests.get(served.url + path, timeout=1).ok:
                return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{served.app} on {served.server} did not come up:\n{tail}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group (granian's worker included), SIGKILL to what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def serving(server: str, app: str, scratch: Path) -> Iterator[Served]:
    """``app`` on ``server`` in a new session (so Ctrl-C reaches the suite, which stops
    it), on a free loopback port; stopped however the block ends."""
    state = scratch / f"{server}-{app}"
    state.mkdir()
    log = state / "server.log"
    port = free_port()
    command = [sys.executable, "-m", "bench.wsgi_servers", server, app, str(port), str(state)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = Served(server, app, f"http://127.0.0.1:{port}", process)
    try:
        _wait_up(served, "/hello" if app == "hello" else "/health", log)
        yield served
    finally:
        _stop(process)


def available(server: str) -> bool:
    """cheroot is Cube's own; the others are optional packages of the same name."""
    return server not in INSTALL or importlib.util.find_spec(server) is not None


# ------------------------------------------------------------------ measuring


def measure_sequential(
    urls: dict[tuple[str, str], str], servers: list[str], plan: Plan
) -> dict[tuple[str, str], float]:
    """Best requests/s per (server, path): the servers take turns in each round. The
    canned answer (the client's own ceiling) is asked ``/hello`` once a round too."""
    best: dict[tuple[str, str], float] = {}
    cells = [("canned", ("hello", "/hello")), *itertools.product(servers, CELLS)]
    for _ in range(plan.rounds):
        for server, (app, path) in cells:
            rate = sequential(urls[server, app], path, rounds=1, seconds=plan.seconds)
            best[server, path] = max(best.get((server, path), 0.0), rate)
    return best


def measure_load(
    urls: dict[tuple[str, str], str], servers: list[str], plan: Plan
) -> dict[tuple[str, str], Result]:
    return {
        (server, path): load(urls[server, app], write_share=path, seconds=plan.load_seconds)
        for server, (app, path) in itertools.product(servers, CELLS)
    }


# ------------------------------------------------------------------ reporting


def report_sequential(rates: dict[tuple[str, str], float], servers: list[str]) -> None:
    hello = rates[BASELINE, "/hello"]
    print(
        f"{'server':<9} {'route':<13} {'req/s':>7}  {'/ cheroot':>9}  {'/ hello on cheroot':>18}"
        f"  {'/ Go worker':>11}"
    )
    for server, (app, path) in itertools.product(servers, CELLS):
        rate = rates[server, path]
        print(
            f"{server:<9} {app + ' ' + path:<13} {rate:>7,.0f}  "
            f"{rate / rates[BASELINE, path]:>8.2f}x  {rate / hello:>17.2f}x"
            f"  {rate / GO_WORKER:>10.2f}x"
        )
    ceiling = rates["canned", "/hello"]
    print(
        f"  the client's own ceiling (a socket answering canned bytes, no WSGI): "
        f"{ceiling:,.0f} req/s; hello on cheroot is {hello / ceiling:.2f}x of it"
    )
    print(
        f"  Go worker: the book's worker answers about {GO_WORKER:,} sequential requests/s "
        "on GET /tasks and GET /stats on this kind of machine, measured before and quiet; "
        "not from this run (no Go toolchain here)."
    )


def report_load(results: dict[tuple[str, str], Result], servers: list[str]) -> None:
    for server, (app, path) in itertools.product(servers, CELLS):
        result = results[server, path]
        ratio = result.rate / results[BASELINE, path].rate
        print(f"{server:<9} {app + ' ' + path:<13} {result.line()} ({ratio:.2f}x cheroot)")


def _plan(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="bench_servers", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of 0.5 s per cell")
    parser.add_argument("--no-load", action="store_true", help="the sequential client only")
    args = parser.parse_args(argv)
    plan = Plan(1, QUICK, QUICK) if args.quick else Plan(ROUNDS, SEQUENTIAL, DURATION)
    return Plan(plan.rounds, plan.seconds, 0.0) if args.no_load else plan


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # `python -m bench bench_servers --quick`: from the first flag on
        argv = list(itertools.dropwhile(lambda a: not a.startswith("-"), sys.argv[1:]))
    plan = _plan(argv)
    servers = [s for s in SERVERS if available(s)]
    for missing in sorted(set(SERVERS) - set(servers)):
        print(f"  {missing} is not installed: skipped ({INSTALL[missing]})")
    header(
        f"WSGI servers: one sequential client (best of {plan.rounds} x {plan.seconds:g} s), "
        + (f"and load ({plan.load_seconds:g} s per cell)" if plan.load_seconds else "no load")
    )
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = {
            (server, app): stack.enter_context(serving(server, app, Path(tmp))).url
            for server in servers
            for app in ("hello", "worker")
        }
        urls["canned", "hello"] = stack.enter_context(serving("canned", "hello", Path(tmp))).url
        report_sequential(measure_sequential(urls, servers, plan), servers)
        if plan.load_seconds:
            print("under load (bench_api's generators: 3 processes x 2 threads):")
            report_load(measure_load(urls, servers, plan), servers)


if __name__ == "__main__":
    main()
