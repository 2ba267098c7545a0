"""Does another WSGI server keep what cube.http.Server guarantees? Four checks, by hand.

bench_servers says how fast each server is; this says whether Cube could run on it
(issue: adopt a faster server only if all of these stay intact). Each server serves a
real worker's API (the ``probe`` app of :mod:`bench.wsgi_servers`: the worker app plus
``GET /slow``, a request that takes 2 s) in a process of its own, and is asked:

1. **blocking queries**: ``GET /tasks?index=N&wait=30s`` is held, other requests are
   answered meanwhile, and a change (a task posted) answers it at once;
2. **slow clients**: 600 connections sending a request body one byte a second, then 20
   sending their head that way, and 800 idle kept-alive connections: is ``/health``
   still answered, and what does each slow client get, when? (cube.http.Server gathers
   requests off its pool, and answers 408, or 400 for a short body, after 5 s);
3. **limits on held watches**: 600 blocking queries from one address: how many are
   refused (cube.http.Server holds 256 per address and 512 in all and answers the rest
   429 with Retry-After), and is ``/health`` still answered?
4. **graceful stop**: SIGTERM while a 2 s request and a blocking query are in flight:
   does the request finish, is the query answered at once (cube.http.Server releases
   held watches first), and how long until the process is gone?

Run: ``python -m bench.servers_guarantees [cheroot granian waitress]`` (about 2 minutes
a server). Every connection goes to loopback, and each check ends by itself.
Prints what it saw; asserts nothing. The findings are in bench/README.md.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.bench_servers import available, serving
from bench.wsgi_servers import SERVERS

BODY = b'{"Name": "slow", "Image": "cube/echo"}'
SLOW_BODIES, SLOW_HEADS, IDLE, WATCHES = 600, 20, 800, 600


@dataclass
class Conn:
    """One client connection of a crowd: what it heard first and when it was closed."""

    sock: socket.socket
    drip: bytes
    sent: int = 0
    heard: bytes = b""
    answered: float | None = None  # seconds after the start
    closed: float | None = None


@dataclass
class Crowd:
    """``n`` connections that each send ``opening`` and then ``drip`` a byte a second,
    read in one thread (so a thousand cost no thousand threads). Call :meth:`start`,
    and :meth:`stop` when done looking."""

    port: int
    n: int
    opening: bytes
    drip: bytes = b""
    conns: list[Conn] = field(default_factory=list)
    started: float = 0.0
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Crowd:
        self.started = time.monotonic()
        for _ in range(self.n):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(self.opening)
            sock.setblocking(False)
            self.conns.append(Conn(sock, self.drip))
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        for conn in self.conns:
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        next_drip = time.monotonic() + 1
        while not self._done.is_set():
            for key, _ in selector.select(timeout=0.1):
                self._read(key.data, selector)
            if time.monotonic() >= next_drip:
                next_drip += 1
                for conn in self.conns:
                    self._drip(conn)

    def _read(self, conn: Conn, selector: selectors.BaseSelector) -> None:
        now = time.monotonic() - self.started
        try:
            data = conn.sock.recv(65536)
        except OSError:
            data = b""
        if data:
            conn.heard += data
            conn.answered = conn.answered if conn.answered is not None else now
        else:
            conn.closed = now
            selector.unregister(conn.sock)

    def _drip(self, conn: Conn) -> None:
        if conn.closed is None and conn.answered is None and conn.sent < len(conn.drip):
            with contextlib.suppress(OSError):
                conn.sent += conn.sock.send(conn.drip[conn.sent : conn.sent + 1])

    def outcomes(self) -> str:
        """How many heard which status (or nothing), and over which times."""
        seen: dict[str, list[float]] = {}
        for conn in self.conns:
            if conn.answered is not None:
                what, when = f"answered {_status(conn.heard)}", conn.answered
            elif conn.closed is not None:
                what, when = "closed without an answer", conn.closed
            else:
                what, when = "still waiting", time.monotonic() - self.started
            seen.setdefault(what, []).append(when)
        return "; ".join(
            f"{len(t)} {what} ({min(t):.1f}-{max(t):.1f} s)" for what, t in sorted(seen.items())
        )

    def still_open(self) -> int:
        return sum(conn.closed is None for conn in self.conns)

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        for conn in self.conns:
            conn.sock.close()


def _until(crowd: Crowd, mark: float) -> None:
    """Sleep until ``mark`` seconds after the crowd started (checks ask at set times,
    however long the probes before took)."""
    time.sleep(max(0.0, crowd.started + mark - time.monotonic()))


def _status(head: bytes) -> str:
    parts = head.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "?"


def health(url: str, timeout: float = 3.0) -> str:
    """``/health``'s status and time, or how it failed."""
    start = time.monotonic()
    try:
        status = str(requests.get(f"{url}/health", timeout=timeout).status_code)
    except requests.RequestException as exc:
        status = type(exc).__name__
    return f"{status} in {(time.monotonic() - start) * 1000:.0f} ms"


def _index(url: str) -> str:
    return requests.get(f"{url}/tasks", timeout=5).headers["X-Cube-Index"]


def _watch(url: str, index: str, wait: str, out: dict[str, str], started: float) -> None:
    try:
        answer = requests.get(f"{url}/tasks", params={"index": index, "wait": wait}, timeout=70)
        what = f"{answer.status_code}, index {answer.headers.get('X-Cube-Index')}"
    except requests.RequestException as exc:
        what = type(exc).__name__
    out["watch"] = f"{what} after {time.monotonic() - started:.2f} s"


# ------------------------------------------------------------------ the checks


def blocking_queries(url: str) -> None:
    out: dict[str, str] = {}
    started = time.monotonic()
    watcher = threading.Thread(target=_watch, args=(url, _index(url), "30s", out, started))
    watcher.start()
    time.sleep(0.5)
    others = []
    for path in ("/health", "/tasks", "/stats"):
        start = time.monotonic()
        status = requests.get(url + path, timeout=5).status_code
        others.append(f"{path} {status} in {(time.monotonic() - start) * 1000:.0f} ms")
    held = watcher.is_alive()
    posted = time.monotonic() - started
    requests.post(f"{url}/tasks", json={"Name": "change", "Image": "cube/echo"}, timeout=5)
    watcher.join()
    print(f"  while a watch was held ({held=}): {', '.join(others)}")
    print(f"  a task posted at {posted:.2f} s; the watch answered: {out['watch']}")


def slow_clients(url: str, port: int) -> None:
    head = b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\n\r\n" % (len(BODY) + 100)
    bodies = Crowd(port, SLOW_BODIES, head + BODY[:10], b" " * 100).start()
    probes = []
    for mark in (2, 4, 6):
        _until(bodies, mark)
        probes.append(health(url))
    _until(bodies, 12)
    print(f"  {SLOW_BODIES} bodies a byte a second: /health at 2, 4, 6 s: {', '.join(probes)}")
    print(f"    at 12 s: {bodies.outcomes()}")
    bodies.stop()
    _recover(url)
    heads = Crowd(port, SLOW_HEADS, b"GET /health HTTP/1.1\r\n", b"X-Slow: " + b"a" * 60).start()
    idle = Crowd(port, IDLE, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").start()
    _until(idle, 2)
    kept = [c for c in idle.conns if c.answered is not None and b"close" not in c.heard.lower()]
    probe = health(url)
    _until(idle, 12)
    open_at_12 = idle.still_open()
    _until(idle, 35)
    print(f"  {SLOW_HEADS} heads a byte a second, and {IDLE} idle connections: /health {probe}")
    print(f"    heads at 35 s: {heads.outcomes()}")
    print(
        f"    idle: {len(kept)} answered and kept alive; still open at 12 s: {open_at_12},"
        f" at 35 s: {idle.still_open()}"
    )
    heads.stop()
    idle.stop()


def watch_limits(url: str, port: int) -> None:
    request = f"GET /tasks?index={_index(url)}&wait=15s HTTP/1.1\r\nHost: x\r\n\r\n"
    watches = Crowd(port, WATCHES, request.encode()).start()
    _until(watches, 3)
    refused = Counter(_status(c.heard) for c in watches.conns if c.answered is not None)
    probes = [health(url, timeout=5) for _ in range(2)]
    print(
        f"  {WATCHES} watches from one address: answered within 3 s: {dict(refused) or 'none'};"
        f" /health meanwhile: {', '.join(probes)}"
    )
    _until(watches, 18)
    print(f"    at 18 s: {watches.outcomes()}")
    watches.stop()


def graceful_stop(server: str, scratch: Path) -> None:
    with serving(server, "probe", scratch) as served:
        url, out = served.url, {}
        started = time.monotonic()
        watcher = threading.Thread(target=_watch, args=(url, _index(url), "30s", out, started))
        slow = threading.Thread(target=_slow, args=(url, out, started))
        watcher.start()
        slow.start()
        time.sleep(0.5)
        signalled = time.monotonic() - started
        os.kill(served.process.pid, signal.SIGTERM)  # as a supervisor stops it
        time.sleep(0.3)
        after = health(url, timeout=2)
        try:
            served.process.wait(timeout=45)
            gone = f"{time.monotonic() - started - signalled:.2f} s after"
        except subprocess.TimeoutExpired:
            gone = "still running 45 s after"
        watcher.join()
        slow.join()
    print(f"  SIGTERM at {signalled:.2f} s; 2 s request: {out['slow']}; watch: {out['watch']}")
    print(f"    a new request 0.3 s after: {after}; the process was gone {gone} the signal")


def _slow(url: str, out: dict[str, str], started: float) -> None:
    try:
        answer = requests.get(f"{url}/slow", params={"seconds": "2"}, timeout=30)
        what = f"{answer.status_code} {answer.text!r}"
    except requests.RequestException as exc:
        what = type(exc).__name__
    out["slow"] = f"{what} at {time.monotonic() - started:.2f} s"


def _recover(url: str) -> None:
    """Wait until the server answers again (what the last check held is let go)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if health(url, timeout=2).startswith("200"):
            return
        time.sleep(0.5)


def check(server: str, scratch: Path) -> None:
    print(f"\n== {server}")
    with serving(server, "probe", scratch / "a") as served:
        port = int(served.url.rsplit(":", 1)[1])
        print("1. blocking queries")
        blocking_queries(served.url)
        print("2. slow clients")
        slow_clients(served.url, port)
        _recover(served.url)
        print("3. limits on held watches")
        watch_limits(served.url, port)
    print("4. graceful stop")
    graceful_stop(server, scratch / "b")


def main() -> None:
    asked = sys.argv[1:] or ["cheroot", "granian"]
    for server in asked:
        if server not in SERVERS or not available(server):
            print(f"{server}: not one of {', '.join(SERVERS)}, or not installed; skipped")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for part in ("a", "b"):
                (Path(tmp) / part).mkdir()
            check(server, Path(tmp))


if __name__ == "__main__":
    main()
