"""Blocking queries held at once are limited, per client address and in all.

On main, ~1,100 connections each holding ``GET /tasks?index=CUR&wait=60s`` took every
thread the pool could grow to: a worker's /health timed out and its manager marked it
down; a manager stopped answering anything. Here the watches come from several loopback
addresses (all of 127.0.0.0/8 reaches this machine), as from several clients.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from helpers import Procs, eventually

from cube.client import ManagerClient
from cube.held import TOTAL, WatchLimits
from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app as manager_app
from cube.task import State, Task, TaskEvent

ANSWER_WITHIN = 0.1  # seconds: the acceptance figure for /health under the siege


class Watches:
    """Raw connections, each holding one blocking query, from chosen source addresses.
    Raw sockets, so that thousands cost the test little, and any source can be bound."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.answers: dict[socket.socket, bytes] = {}
        self._selector = selectors.DefaultSelector()

    def open(self, url: str, path: str, source: str, count: int) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        index = int(requests.get(url + path, timeout=5).headers["X-Cube-Index"])
        request = f"GET {path}?index={index}&wait=60s HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        for _ in range(count):
            sock = socket.socket()
            sock.bind((source, 0))
            sock.connect((host, int(port)))
            sock.sendall(request)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
            self.socks.append(sock)

    def answered(self) -> int:
        """How many have had an answer (read without waiting)."""
        for key, _ in self._selector.select(timeout=0):
            sock = key.fileobj
            with contextlib.suppress(BlockingIOError):
                data = sock.recv(65536)  # type: ignore[union-attr]
                self.answers[sock] = self.answers.get(sock, b"") + data  # type: ignore[index]
                if not data:
                    self._selector.unregister(sock)
        return len(self.answers)

    def close(self) -> None:
        self._selector.close()
        for sock in self.socks:
            sock.close()


@pytest.fixture
def watches() -> Iterator[Watches]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
    held = Watches()
    yield held
    held.close()


def refusals_say_when_to_ask_again(watches: Watches) -> None:
    for answer in watches.answers.values():
        head = answer.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 429"), answer[:200]
        assert b"retry-after: 2" in head, answer[:300]


def quick_health(url: str) -> bool:
    began = time.perf_counter()
    ok = requests.get(f"{url}/health", timeout=5).status_code == 200
    return ok and time.perf_counter() - began < ANSWER_WITHIN


def test_past_a_limit_a_watch_is_a_429_that_changes_nothing(watches):
    boss = Manager([], "roundrobin")
    server = Server(manager_app(boss), watch_limits=WatchLimits(per_client=3, total=5))
    try:
        with server:
            url = server.url
            watches.open(url, "/tasks", "127.0.0.1", 4)  # one over the per-client limit
            eventually(lambda: watches.answered() == 1, what="the fourth refused")
            refusals_say_when_to_ask_again(watches)
            assert b"from 127.0.0.1" in next(iter(watches.answers.values()))
            watches.open(url, "/tasks", "127.0.0.2", 3)  # two held; then the total is reached
            eventually(lambda: watches.answered() == 2, what="one over the total refused")
            refusals_say_when_to_ask_again(watches)
            assert server.watches.total == 5
            assert requests.get(f"{url}/tasks", timeout=5).json() == []  # plain reads go on
            index = int(requests.get(f"{url}/tasks", timeout=5).headers["X-Cube-Index"])
            # our client, refused, waits the Retry-After it is told, then reads plainly
            assert ManagerClient(url).watch("/tasks", index, wait=30) == ([], index)
            boss.submit(TaskEvent(task=Task("wakes-them", "cube/echo")))
            eventually(lambda: watches.answered() == 7, what="every held watch answered")
            eventually(lambda: server.watches.total == 0, what="none held")
            assert len(boss.list_tasks()) == 1
    finally:
        boss.close()


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    cluster = Procs(tmp_path)
    yield cluster
    cluster.close()


def test_1500_held_watches_leave_health_quick_and_the_worker_up(procs, watches):
    procs.start_worker("w1")
    procs.start_manager("--node-ttl", "2")
    worker, manager = procs.worker_url("w1"), procs.url
    client = ManagerClient(manager, timeout=10)
    eventually(lambda: client.nodes()[0]["State"] == "up", 15, "the worker up")

    for url in (worker, manager):
        for n in range(2, 17):  # 15 clients, 100 watches each: 1,500
            watches.open(url, "/tasks", f"127.0.0.{n}", 100)
    # the manager's own watch of the worker may hold one of the worker's places
    refused = 2 * (1500 - TOTAL)
    eventually(lambda: watches.answered() >= refused, 60, "the watches past the limit refused")
    refusals_say_when_to_ask_again(watches)

    for url in (worker, manager):
        eventually(lambda u=url: quick_health(u), 30, f"{url}/health within 100 ms")
    assert watches.answered() <= refused + 1  # the others are still held
    task = client.submit(Task("under-siege", "cube/echo"))  # the manager's own calls go on
    eventually(lambda: client.task(task.id).state is State.Running, 30, "the task running")
    node = client.nodes()[0]
    assert node["State"] == "up", node
    assert "is down" not in (procs.tmp / "manager.log").read_text()
    client.stop(task.id)
