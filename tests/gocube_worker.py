"""A stand-in for the book's Go Cube worker (its chapter 12 code), for tests.

This is a test double, and the only one in the suite: no Go toolchain runs in CI, so
the real Go worker cannot be built here. It answers as that worker does, byte for byte
where the samples captured from it show the bytes (``fixtures/gocube``):

- ``GET /tasks`` with no task: ``null`` and a newline, ``application/json``; with
  tasks: Go's compact JSON of its 16 task fields, in random order;
- ``POST /tasks``: 201 and the task, indented as the sample shows it, labelled
  ``text/plain; charset=utf-8``; fields Go does not know are dropped (its decoder
  ignores them); a task posted again is restarted (a new container);
- ``GET /tasks/{id}`` of a task it holds, and ``DELETE /tasks/{id}`` of one it does
  not: the connection is closed without an answer (the handlers crash);
- ``GET /stats``: ``null`` until its first sample, then the captured sample;
- no ``/health``: Go's plain-text 404.

A task it is given goes Running shortly after, with a container ID and its port
published on ``host_port`` (where the test serves the task's health check); its
StartTime stays unset, as the book's worker never sets it.
"""

from __future__ import annotations

import json
import random
import socketserver
import threading
import time
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent / "fixtures" / "gocube"
GO_FIELDS = [
    "ID", "ContainerID", "Name", "State", "Image", "Cpu", "Memory", "Disk", "ExposedPorts",
    "HostPorts", "PortBindings", "RestartPolicy", "StartTime", "FinishTime", "HealthCheck",
    "RestartCount",
]  # fmt: skip
ZERO = "0001-01-01T00:00:00Z"
RUNNING, COMPLETED = 2, 3


class GoWorker:
    """The double: ``start()`` it, give its ``address`` to a manager, ``stop()`` it."""

    def __init__(self, host_port: int, *, null_stats: int = 2, start_delay: float = 0.2):
        self.host_port, self.start_delay = host_port, start_delay
        self.tasks: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []
        self.stats_asked = 0
        self.null_stats = null_stats
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.double = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timers: list[threading.Timer] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> GoWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------ its behaviour

    def post(self, body: bytes) -> dict[str, Any]:
        event = _go_keys(json.loads(body))
        task = {name: _go_keys(event.get("Task") or {}).get(name) for name in GO_FIELDS}
        task = {**_zero_task(), **{k: v for k, v in task.items() if v is not None}}
        with self.lock:
            self.posts.append(event)
            self.tasks[task["ID"]] = task
        self._later(self.start_delay, self._run, task["ID"], task["Name"])
        return task

    def _run(self, task_id: str, name: str) -> None:
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None or task["State"] == COMPLETED:
                return
            port = str(self.host_port)
            bindings = [{"HostIp": ip, "HostPort": port} for ip in ("0.0.0.0", "::")]
            task.update(
                State=RUNNING,
                ContainerID=uuid.uuid4().hex + uuid.uuid4().hex,
                HostPorts={key: bindings for key in task["ExposedPorts"] or {"8080/tcp": {}}},
            )

    def delete(self, task_id: str) -> bool:
        with self.lock:
            if task_id not in self.tasks:
                return False
        self._later(self.start_delay, self._complete, task_id)
        return True

    def _complete(self, task_id: str) -> None:
        with self.lock:
            task = self.tasks[task_id]
            task.update(State=COMPLETED, FinishTime=_now())

    def listing(self) -> bytes:
        with self.lock:
            tasks = list(self.tasks.values())
        if not tasks:
            return (SAMPLES / "worker_tasks_empty.json").read_bytes()
        random.shuffle(tasks)
        return json.dumps(tasks, separators=(",", ":")).encode() + b"\n"

    def stats(self) -> bytes:
        with self.lock:
            self.stats_asked += 1
            first = self.stats_asked <= self.null_stats
        return b"null\n" if first else (SAMPLES / "worker_stats.json").read_bytes()

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        timer = threading.Timer(delay, fn, args)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()


def answer_to_post(task: dict[str, Any]) -> bytes:
    """The body of a 201, formatted as the captured sample is."""
    return json.dumps(task, indent=1).encode() + b"\n"


def _zero_task() -> dict[str, Any]:
    return {
        "ID": str(uuid.uuid4()), "ContainerID": "", "Name": "", "State": 0, "Image": "",
        "Cpu": 0, "Memory": 0, "Disk": 0, "ExposedPorts": None, "HostPorts": None,
        "PortBindings": None, "RestartPolicy": "", "StartTime": ZERO, "FinishTime": ZERO,
        "HealthCheck": "", "RestartCount": 0,
    }  # fmt: skip


def _go_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Keys as Go's decoder matches them: case-insensitively, unknown ones ignored."""
    known = {name.lower(): name for name in [*GO_FIELDS, "Task", "Timestamp"]}
    return {known[k.lower()]: v for k, v in data.items() if k.lower() in known}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    double: GoWorker


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive, written out by hand so every byte is the double's."""

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, path, _ = line.decode().split(" ", 2)
            headers = {}
            while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", 0)))
            if not self._answer(method, path, body):
                return  # the handler "crashed": the connection closes unanswered

    def _answer(self, method: str, path: str, body: bytes) -> bool:
        double: GoWorker = self.server.double  # type: ignore[attr-defined]
        path = path.split("?", 1)[0]  # chi routes on the path alone (Go ignores ?generation=)
        parts = path.strip("/").split("/")
        json_type = "application/json"
        if (method, path) == ("GET", "/tasks"):
            self._send(200, "OK", double.listing(), json_type)
        elif (method, path) == ("POST", "/tasks"):
            task = double.post(body)
            self._send(201, "Created", answer_to_post(task), "text/plain; charset=utf-8")
        elif (method, path) == ("GET", "/stats"):
            self._send(200, "OK", double.stats(), json_type)
        elif method == "GET" and parts[0] == "tasks" and len(parts) == 2:
            if parts[1] in double.tasks:
                return False
            self._send(404, "Not Found", b"", None)
        elif method == "DELETE" and parts[0] == "tasks" and len(parts) == 2:
            if not double.delete(parts[1]):
                return False
            self._send(204, "No Content", b"", None)
        else:
            self._send(404, "Not Found", b"404 page not found\n", "text/plain; charset=utf-8")
        return True

    def _send(self, status: int, reason: str, body: bytes, content_type: str | None) -> None:
        head = [f"HTTP/1.1 {status} {reason}"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        head.append(f"Date: {formatdate(usegmt=True)}")
        if status != 204:
            head.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.wfile.flush()
