"""The simulated network: every call between components, in-process, with faults.

The manager's clients are the real :class:`~cube.client.WorkerClient`, and a worker's
API is its real Bottle app: only what is between them is swapped. The client's session
(:class:`SimSession`) hands each request to the addressed host's WSGI app, in the
calling thread, unless the seed says otherwise:

- the host is down: the connection is refused;
- the host is paused, or cut off by a partition: the call times out;
- the request is lost, or its answer is: the call times out (in the second case the
  request *was* carried out, which a caller cannot tell apart);
- the request is late: the call times out now, and the request arrives later, after
  whatever happened meanwhile (this is how an old order overtakes a newer one).

Blocking queries answer at once here (their ``wait`` is made 0): time only moves
between events, so a request must never wait inside one.
"""

from __future__ import annotations

import io
import json as _json
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from cube.client import CubeError, WorkerClient
from cube.manager.network import Network
from cube.replay.world import World

App = Callable[..., Any]


@dataclass
class Host:
    """One addressable component: its app while it is up, and whether it is paused."""

    name: str
    app: App | None = None
    paused: bool = False


@dataclass
class Wires:
    """Who can reach whom, and what each call meets on the way."""

    world: World
    hosts: dict[str, Host] = field(default_factory=dict)
    cut_off: set[str] = field(default_factory=set)  # hosts partitioned from the rest
    loss: float = 0.0  # chance a request, or its answer, is lost
    late: float = 0.0  # chance a request arrives later than asked
    task_health: Callable[[str, int], str] | None = None  # (host, port) -> problem
    on_send: Callable[[str, Request], None] | None = None  # sees every request sent

    def host(self, name: str) -> Host:
        return self.hosts.setdefault(name, Host(name))

    def deliver(self, source: str, request: Request) -> requests.Response:
        if self.on_send is not None:
            self.on_send(source, request)
        name = urlsplit(request.url).hostname or ""
        host = self.hosts.get(name)
        if host is None or host.app is None:
            raise requests.ConnectionError(f"connection to {name} refused")
        if not self.reaches(source, name):
            raise requests.ReadTimeout(f"{name} did not answer")
        rng = self.world.rng
        if self.late and rng.random() < self.late:
            delay = rng.uniform(0.5, 5.0)
            self.world.after(delay, f"late {request.method} to {name}", lambda: self._late(request))
            raise requests.ReadTimeout(f"{name} did not answer (the request is on its way)")
        if self.loss and rng.random() < self.loss:
            raise requests.ReadTimeout(f"{name} did not answer (the request was lost)")
        response = call_wsgi(host.app, request)
        if self.loss and rng.random() < self.loss:
            raise requests.ReadTimeout(f"{name} did not answer (the answer was lost)")
        return response

    def reaches(self, source: str, name: str) -> bool:
        """Whether a call from ``source`` gets to ``name`` and back now (both up is
        asked elsewhere): neither is cut off, and ``name`` is not paused."""
        host = self.hosts.get(name)
        paused = host is not None and host.paused
        return not paused and name not in self.cut_off and source not in self.cut_off

    def _late(self, request: Request) -> None:
        host = self.hosts.get(urlsplit(request.url).hostname or "")
        if host is not None and host.app is not None and not host.paused:
            call_wsgi(host.app, request)
            self.world.say("network", f"a late {request.method} {urlsplit(request.url).path}")

    def probe_task(self, source: str, host: str, port: int) -> str:
        """A task's health check, from ``source`` to ``host:port``."""
        if host in self.cut_off or source in self.cut_off:
            return f"GET {host}:{port} failed: ReadTimeout"
        return self.task_health(host, port) if self.task_health else ""


@dataclass
class Request:
    """What a client sends: enough of an HTTP request for a WSGI app."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""


class SimSession:
    """What :class:`~cube.client.Client` needs of a ``requests.Session`` (``headers``,
    ``request``, ``close``), carried over :class:`Wires` instead of sockets. The client
    code above it is the real one: its errors, timeouts and headers."""

    def __init__(self, wires: Wires, source: str) -> None:
        self.wires, self.source = wires, source
        self.headers: dict[str, str] = {}

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        data: str | bytes | None = None,
        **_: Any,
    ) -> requests.Response:
        if params:
            url = f"{url}?{urlencode(params)}"
        body = data.encode() if isinstance(data, str) else (data or b"")
        if json is not None:
            body = _json.dumps(json).encode()
        merged = {**self.headers, **(headers or {})}
        if json is not None:
            merged["Content-Type"] = "application/json"
        return self.wires.deliver(self.source, Request(method, url, merged, body))

    def get(self, url: str, **options: Any) -> requests.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> requests.Response:
        return self.request("POST", url, **options)

    def close(self) -> None:
        pass


def call_wsgi(app: App, request: Request) -> requests.Response:
    """Run one request through a WSGI app, in this thread."""
    parts = urlsplit(request.url)
    query = parts.query
    if "wait=" in query:  # a blocking query is answered at once: the world waits for it
        query = urlencode([(k, "0s" if k == "wait" else v) for k, v in parse_qsl(query)])
    body = request.body
    environ = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": parts.path,
        "QUERY_STRING": query,
        "SERVER_NAME": parts.hostname or "",
        "SERVER_PORT": str(parts.port or 80),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for key, value in request.headers.items():
        name = key.upper().replace("-", "_")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif name != "CONTENT_LENGTH":
            environ[f"HTTP_{name}"] = value
    said: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        said["status"], said["headers"] = status, headers
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    response = requests.Response()
    response.status_code = int(said["status"].split()[0])
    response.reason = said["status"].partition(" ")[2]
    response.headers = CaseInsensitiveDict(said["headers"])
    response._content = content
    response.url = request.url
    response.encoding = "utf-8"
    return response


class InlineExecutor(Executor):
    """Runs each call at once, in the caller's thread: one thread, one order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class ClientProber:
    """The liveness probe (``get(path)``) over a simulated client."""

    def __init__(self, client: WorkerClient) -> None:
        self.client = client

    @property
    def epoch(self) -> Any:
        return self.client.epoch

    @epoch.setter
    def epoch(self, value: Any) -> None:
        self.client.epoch = value

    def get(self, path: str) -> Any:
        return self.client._call("GET", path)

    def close(self) -> None:
        self.client.close()


class SimNetwork(Network):
    """The manager's :class:`~cube.manager.network.Network`, over :class:`Wires`."""

    def __init__(self, wires: Wires, source: str) -> None:
        self.wires, self.source = wires, source

    def client(self, api: str, token: str | None, timeout: float) -> WorkerClient:
        client = WorkerClient(api, token, timeout)
        session = SimSession(self.wires, self.source)
        session.headers.update(client._session.headers)
        client._session = session  # type: ignore[assignment]
        return client

    def prober(self, api: str, token: str | None, timeout: float) -> Any:
        return ClientProber(self.client(api, token, timeout))

    def probe_task(self, host: str, port: int, path: str, timeout: float) -> str:
        return self.wires.probe_task(self.source, host, port)

    def pool(self, name: str, size: int) -> Executor:
        return InlineExecutor()


__all__ = ["CubeError", "InlineExecutor", "SimNetwork", "SimSession", "Wires"]
