"""/health under a siege of blocking queries: 1,500 held against a worker and its manager.

A LocalCluster (one worker, process runtime) is asked ``GET /health`` 200 times on each
of its two servers while quiet, then again while 1,500 connections from 15 loopback
addresses each hold ``GET /tasks?index=CUR&wait=60s`` against each server (the servers
hold 512 and answer the rest 429). Prints the latencies and the ratio siege / quiet of
the medians; the acceptance figure is /health within 100 ms under the siege.

Run: ``python -m bench bench_siege``. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import time

import requests

from bench.common import header, summary
from cube.cluster import LocalCluster

WATCHES, SOURCES, ASKS = 1500, 15, 200


def latencies(url: str, asks: int = ASKS) -> list[float]:
    with requests.Session() as session:
        out = []
        for _ in range(asks):
            began = time.perf_counter()
            session.get(f"{url}/health", timeout=10).raise_for_status()
            out.append(time.perf_counter() - began)
        return out


def hold(url: str, watches: int = WATCHES) -> list[socket.socket]:
    """Open ``watches`` blocking queries against ``url`` from several loopback sources."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    index = requests.get(f"{url}/tasks", timeout=5).headers["X-Cube-Index"]
    request = f"GET /tasks?index={index}&wait=60s HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    socks = []
    for n in range(watches):
        sock = socket.socket()
        sock.bind((f"127.0.0.{2 + n % SOURCES}", 0))
        sock.connect((host, int(port)))
        sock.sendall(request)
        socks.append(sock)
    return socks


def main() -> None:
    header(f"/health with {WATCHES} blocking queries held against a worker and its manager")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    with LocalCluster(workers=1, runtime="process") as cluster:
        urls = {"worker": next(iter(cluster.workers.values())).url, "manager": cluster.manager.url}
        quiet = {name: latencies(url) for name, url in urls.items()}
        socks = [sock for url in urls.values() for sock in hold(url)]
        try:
            time.sleep(2)  # the burst answered: what is measured is the siege held
            held = {name: latencies(url) for name, url in urls.items()}
            state = cluster.client.nodes()[0]["State"]
        finally:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.close()
    for name in urls:
        ratio = statistics.median(held[name]) / statistics.median(quiet[name])
        print(f"{name:<8} quiet   {summary(quiet[name])}")
        print(f"{name:<8} siege   {summary(held[name])}  (median x{ratio:.1f} of quiet)")
    print(f"the worker, as its manager sees it under the siege: {state}")


if __name__ == "__main__":
    main()
