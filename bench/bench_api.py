"""The worker's and the manager's APIs, against a bare "hello" app on the same server.

Two ways of asking, each reported against the hello app asked the same way:

- **one client, one request after another** on one kept-alive connection
  (``http.client``): how the book's Go worker was measured (about 5,000 requests/s for
  ``GET /tasks`` and ``GET /stats`` on a 2-core machine), and what a manager polling a
  worker looks like;
- **load**: generators in their own processes (threads, one requests.Session each).

The servers, each in its own process:

- a "hello" Bottle app on cube.http.Server, and the same app on the standard library's
  wsgiref with ThreadingMixIn (the numbers behind choosing cheroot);
- a real ``cube worker`` (process runtime, no task): ``GET /tasks``, ``GET /stats``;
- a real ``cube manager`` with 100 tasks stored on disk, under reads only, an 80/20
  mix of reads (GET /tasks and GET /tasks/{id}, half each) and writes (POST of a bare
  task), and writes only (its writes are flushed in groups, cube.groupcommit). A list
  read is the first page of 100, so that tasks added meanwhile do not lengthen it. Its
  workers are down on purpose, so tasks stay Pending and no process is started: what
  is measured is the API and the store, not task start-up.

Run: ``python -m bench bench_api``. Prints numbers and ratios; asserts nothing.
"""

from __future__ import annotations

import http.client
import multiprocessing
import random
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle
import requests

from bench.common import header, percentile
from cube.http import Server
from cube.ports import free_port

DURATION = 5.0
SEQUENTIAL = 1.5  # seconds of one client asking one request after another, per round
ROUNDS = 3  # of the sequential client: the best counts (the machine is shared)
GENERATORS = 3  # load generator processes
THREADS = 2  # client threads in each
STORED = 100
WRITE_SHARE = 0.2
_MERGE = threading.Lock()  # client threads add their numbers to one Result


@dataclass
class Result:
    """What one load run measured."""

    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    @property
    def rate(self) -> float:
        return sum(len(v) for v in self.latencies.values()) / self.seconds

    def line(self, kind: str | None = None) -> str:
        """Requests per second and latency percentiles, of one kind or all."""
        picked = [x for k, v in self.latencies.items() if kind in (None, k) for x in v]
        errors = f", {self.errors} errors" if kind is None else ""
        return (
            f"{len(picked) / self.seconds:>7,.0f} req/s, p50 {percentile(picked, 50) * 1000:5.1f}"
            f" ms, p99 {percentile(picked, 99) * 1000:5.1f} ms{errors}"
        )


# ------------------------------------------------------------------ the servers


def hello_app() -> bottle.Bottle:
    app = bottle.Bottle()
    app.route("/hello", callback=lambda: "hello")
    return app


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        """No line per request on stderr."""


def _serve_hello(kind: str, ports: multiprocessing.Queue) -> None:
    """Child process: serve the hello app until terminated."""
    if kind == "cheroot":
        server = Server(hello_app()).start()
        ports.put(server.port)
        threading.Event().wait()
    else:
        wsgiref = make_server(
            "127.0.0.1", 0, hello_app(), _ThreadingWSGIServer, handler_class=_QuietHandler
        )
        ports.put(wsgiref.server_port)
        wsgiref.serve_forever()


@contextmanager
def hello_server(kind: str) -> Iterator[str]:
    context = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = context.Queue()
    child = context.Process(target=_serve_hello, args=(kind, ports), daemon=True)
    child.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        child.terminate()
        child.join()


@contextmanager
def manager_server(data_dir: Path) -> Iterator[str]:
    """A real ``cube manager`` whose only worker address has nobody listening."""
    port = free_port()
    command = [sys.executable, "-m", "cube", "manager", "--port", str(port)]
    command += ["--workers", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir)]
    command += ["--log-level", "warning"]
    with (data_dir / "manager.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def worker_server(data_dir: Path) -> Iterator[str]:
    """A real ``cube worker`` on the process runtime, holding no task."""
    port = free_port()
    command = [sys.executable, "-m", "cube", "worker", "--port", str(port), "--name", "bench"]
    command += ["--runtime", "process", "--data-dir", str(data_dir), "--log-level", "warning"]
    with (data_dir / "worker.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


# ------------------------------------------------------------- the sequential client


def sequential(url: str, path: str, rounds: int = ROUNDS, seconds: float = SEQUENTIAL) -> float:
    """Requests per second of one client sending ``GET path`` one after another on one
    kept-alive connection, each answer read whole before the next: the best of
    ``rounds`` runs of ``seconds``."""
    return max(_sequential_run(url, path, seconds) for _ in range(rounds))


def _sequential_run(url: str, path: str, seconds: float) -> float:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    done, deadline = 0, time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"GET {path} answered {answer.status}")
            done += 1
    finally:
        connection.close()
    return done / seconds


# -------------------------------------------------------------- the load generator


def _pick(rng: random.Random, ids: list[str], write_share: float) -> tuple[str, str, str]:
    """One request of the manager mix: (kind, method, path)."""
    if rng.random() < write_share:
        return "write", "POST", "/tasks"
    if rng.random() < 0.5:  # a page of the size stored at the start: writes that add
        return "list", "GET", f"/tasks?limit={STORED}"  # tasks don't make lists longer
    return "get", "GET", f"/tasks/{rng.choice(ids)}"


def _client_thread(
    url: str, ids: list[str], write_share: float | str, deadline: float, out: Result
) -> None:
    """Send requests until the deadline: ``GET write_share`` when it is a path (such
    as ``/hello``), else the manager mix with that share of writes."""
    rng = random.Random(threading.get_ident())
    session = requests.Session()
    mine: dict[str, list[float]] = {}
    errors = 0
    while time.monotonic() < deadline:
        if isinstance(write_share, str):
            kind, method, path = write_share, "GET", write_share
        else:
            kind, method, path = _pick(rng, ids, write_share)
        body = {"Name": "bench", "Image": "cube/echo"} if method == "POST" else None
        start = time.perf_counter()
        try:
            ok = session.request(method, url + path, json=body, timeout=10).status_code < 300
        except requests.RequestException:
            ok = False
        mine.setdefault(kind, []).append(time.perf_counter() - start)
        errors += not ok
    with _MERGE:
        for kind, values in mine.items():
            out.latencies.setdefault(kind, []).extend(values)
        out.errors += errors


def _generate(
    url: str,
    ids: list[str],
    write_share: float | str,
    results: multiprocessing.Queue,
    seconds: float,
) -> None:
    """Child process: THREADS clients for ``seconds``; puts their Result."""
    out = Result(seconds)
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client_thread, args=(url, ids, write_share, deadline, out))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(out)


def load(
    url: str,
    ids: list[str] | None = None,
    write_share: float | str = "/hello",
    seconds: float = DURATION,
) -> Result:
    """Drive ``url`` from GENERATORS separate processes for ``seconds``: one path, or
    the manager mix.
    (One Python process tops out near 500 requests/s on its own: requests and the GIL
    cost more than the server does, so one would measure the client.)"""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    children = [
        context.Process(target=_generate, args=(url, ids or [], write_share, results, seconds))
        for _ in range(GENERATORS)
    ]
    for child in children:
        child.start()
    merged = Result(seconds)
    for _ in children:
        part = results.get(timeout=seconds + 120)
        for kind, values in part.latencies.items():
            merged.latencies.setdefault(kind, []).extend(values)
        merged.errors += part.errors
    for child in children:
        child.join()
    return merged


def _seed(url: str) -> list[str]:
    with requests.Session() as session:
        return [
            session.post(f"{url}/tasks", json={"Name": f"t{i}", "Image": "cube/echo"}).json()["ID"]
            for i in range(STORED)
        ]


def main() -> None:
    header(
        f"API: one sequential client (best of {ROUNDS} x {SEQUENTIAL:g} s), and load from "
        f"{GENERATORS} generator processes x {THREADS} threads ({DURATION:g} s per run)"
    )
    with hello_server("cheroot") as url:
        hello_seq = sequential(url, "/hello")
        cheroot = load(url)
    with hello_server("wsgiref") as url:
        wsgiref = load(url)
    print(f"hello on cheroot (cube.http.Server): {hello_seq:>7,.0f} req/s sequential")
    print(f"  under load:                          {cheroot.line()}")
    print(f"hello on wsgiref + ThreadingMixIn:     {wsgiref.line()}")
    print(f"  cheroot / wsgiref throughput:        {cheroot.rate / wsgiref.rate:.2f}x")

    with tempfile.TemporaryDirectory() as tmp, worker_server(Path(tmp)) as url:
        worker = {path: sequential(url, path) for path in ("/tasks", "/stats")}
        worker_load = {path: load(url, write_share=path) for path in ("/tasks", "/stats")}
    print("worker (cube worker, no task), sequential and under load, and / hello:")
    for path, rate in worker.items():
        print(f"  GET {path:<7} {rate:>7,.0f} req/s sequential ({rate / hello_seq:.2f}x)")
        under = worker_load[path]
        print(f"  {'':12}{under.line()} ({under.rate / cheroot.rate:.2f}x)")

    with tempfile.TemporaryDirectory() as tmp, manager_server(Path(tmp)) as url:
        ids = _seed(url)
        listing = sequential(url, "/tasks")
        reads = load(url, ids, write_share=0.0)
        mixed = load(url, ids, write_share=WRITE_SHARE)
        writes = load(url, ids, write_share=1.0)
        stored = len(requests.get(f"{url}/tasks", timeout=30).json())
    print(
        "manager, tasks on disk (its workers are down on purpose: tasks stay Pending, "
        "nothing is started)"
    )
    print(
        f"  GET /tasks ({STORED} tasks), sequential: {listing:>7,.0f} req/s "
        f"({listing / hello_seq:.2f}x hello)"
    )
    print(f"  reads only (GET /tasks/{{id}}, a page): {reads.line()}")
    print(f"  {1 - WRITE_SHARE:.0%} reads / {WRITE_SHARE:.0%} writes:             {mixed.line()}")
    for kind, label in (
        ("get", "GET /tasks/{id}"),
        ("list", "GET /tasks?limit=100"),
        ("write", "POST"),
    ):
        print(f"    {label:<34} {mixed.line(kind)}")
    print(f"  writes only (POST /tasks):              {writes.line()}")
    print(f"  tasks stored: {STORED} at the start, {stored} at the end")
    print(f"  manager writes / hello (cheroot) throughput: {writes.rate / cheroot.rate:.2f}x")
    print(f"  manager mix / hello (cheroot) throughput:   {mixed.rate / cheroot.rate:.2f}x")
    print(f"  manager mix / manager reads throughput:     {mixed.rate / reads.rate:.2f}x")


if __name__ == "__main__":
    main()
