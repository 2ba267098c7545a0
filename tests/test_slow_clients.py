"""Slow and short clients against a real worker API: none of them holds a thread of the
pool, each gets its answer (408, 400, 411) within the request timeout, and liveness
probes keep answering at once. The timeout is 1 s here (5 s by default)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_worker import build_worker, cleanup

from cube.client import WorkerClient
from cube.http import Server
from cube.worker.api import make_app

TOKEN = "s3cret"
TIMEOUT = 1.0
THREADS = 16
BODY = b'{"Name": "web", "Image": "cube/echo"}'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    worker = build_worker(tmp_path, "process").start()
    with Server(
        make_app(worker, TOKEN), token_required=True, threads=THREADS, request_timeout=TIMEOUT
    ) as running:
        yield running
    cleanup(worker)


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.settimeout(5)
    return sock


def _head(method: str, path: str, length: int | None = None, extra: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: cube", f"Authorization: Bearer {TOKEN}"]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _answer(sock: socket.socket) -> bytes:
    """All the server sends until it closes (or 5 s pass)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_slow_headers_hold_no_thread_and_liveness_stays_quick(server: Server) -> None:
    outcomes: list[tuple[float, int]] = []
    lock = threading.Lock()

    def slow_client() -> None:
        sock, start = _connect(server), time.monotonic()
        try:
            for byte in _head("GET", "/tasks"):
                sock.send(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            pass  # the server gave up on us: what it said is read below
        status = _status(_answer(sock))
        with lock:
            outcomes.append((time.monotonic() - start, status))
        sock.close()

    clients = [threading.Thread(target=slow_client) for _ in range(20)]
    for client in clients:
        client.start()
    probe = WorkerClient(server.url, TOKEN)
    try:
        time.sleep(0.3)
        for _ in range(10):
            start = time.monotonic()
            assert probe.alive(timeout=0.5)
            assert probe.tasks() == []  # the task routes answer too
            assert time.monotonic() - start < 0.5
            assert server._server.requests.idle >= THREADS - 1  # none waits on them (one may
            # still be finishing with the probe)
            time.sleep(0.1)
    finally:
        probe.close()
        for client in clients:
            client.join(timeout=15)
    assert len(outcomes) == 20
    for took, status in outcomes:
        assert status in (408, 0), status  # 408, or closed
        assert took < TIMEOUT + 2


def test_a_body_shorter_than_its_content_length_is_a_400(server: Server) -> None:
    sock, start = _connect(server), time.monotonic()
    sock.sendall(_head("POST", "/tasks", 100) + BODY)
    answer = _answer(sock)
    assert _status(answer) == 400
    assert b"shorter than its Content-Length: 37 of 100 bytes" in answer
    assert time.monotonic() - start < TIMEOUT + 1.5
    sock.close()
    assert requests.get(f"{server.url}/tasks", headers=_auth(), timeout=5).json() == []


def test_a_short_body_is_a_400_at_once_when_the_client_stops_sending(server: Server) -> None:
    sock, start = _connect(server), time.monotonic()
    sock.sendall(_head("POST", "/tasks", 100) + BODY)
    sock.shutdown(socket.SHUT_WR)
    assert _status(_answer(sock)) == 400
    assert time.monotonic() - start < TIMEOUT / 2
    sock.close()


def test_a_body_still_trickling_at_the_timeout_is_a_408(server: Server) -> None:
    sock, start = _connect(server), time.monotonic()
    sock.sendall(_head("POST", "/tasks", len(BODY)))
    try:
        for byte in BODY:
            sock.send(bytes([byte]))
            time.sleep(0.1)
    except OSError:
        pass
    assert _status(_answer(sock)) == 408
    assert time.monotonic() - start < TIMEOUT + 1.5
    sock.close()


def test_a_chunked_body_is_refused_with_411(server: Server) -> None:
    sock = _connect(server)
    sock.sendall(_head("POST", "/tasks", extra="Transfer-Encoding: chunked\r\n"))
    assert _status(_answer(sock)) == 411
    sock.close()


def test_expect_100_continue_then_the_body(server: Server) -> None:
    sock = _connect(server)
    sock.sendall(_head("POST", "/tasks", len(BODY), extra="Expect: 100-continue\r\n"))
    assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(BODY + _head("GET", "/tasks")[:-2] + b"Connection: close\r\n\r\n")
    answers = _answer(sock)
    assert answers.count(b"HTTP/1.1 100") == 0  # said once, not again
    assert answers.startswith(b"HTTP/1.1 201") and answers.count(b"HTTP/1.1 200") == 1
    sock.close()


def test_pipelined_and_kept_alive_requests_all_answer(server: Server) -> None:
    sock = _connect(server)
    sock.sendall(_head("GET", "/tasks") * 3)
    data = b""
    while data.count(b"HTTP/1.1 200") < 3:
        data += sock.recv(65536)
    sock.close()
    with requests.Session() as session:
        for _ in range(20):
            assert session.get(f"{server.url}/stats", headers=_auth(), timeout=5).ok


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
