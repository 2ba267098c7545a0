"""Serving Cube's REST APIs: JSON errors, request limits, tokens, a real threaded server.

Both APIs (worker and manager) are Bottle apps built by :func:`json_app`, served by
:class:`Server`. The server is cheroot (CherryPy's WSGI server): a thread pool, HTTP/1.1
keep-alive, and a ``stop()`` that returns once the socket is closed, which tests and
notebooks need to start and stop servers in-process again and again. (wsgiref has no
thread pool and no keep-alive; waitress cannot be stopped from code.)

Every error, including Bottle's own 404/405 and unexpected exceptions, answers with the
Cube error body ``{"HTTPStatusCode": int, "Message": str}``, never an HTML page or a
traceback.
"""

from __future__ import annotations

import faulthandler
import hmac
import ipaddress
import json
import logging
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bottle
import msgspec

from cube.connections import GatedServer
from cube.held import HeldWatches, WatchLimits
from cube.messages import ErrorBody
from cube.task import State, parse_uuid
from cube.wire import encode

if TYPE_CHECKING:
    from cube.records import Changes
    from cube.roles import Access
    from cube.tls import ServerTLS

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
MAX_DEPTH = 32
JSON_TYPES = ("application/json", "application/x-www-form-urlencoded", "")
TRUSTED = "cube.trusted"  # set False on an open route asked without the token


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> bottle.HTTPError:
    """An error response; raise it from a route."""
    return bottle.HTTPError(status, message, headers=headers)


def json_app(name: str, token: str | Access | None = None) -> bottle.Bottle:
    """A Bottle app whose every error is JSON and which, given a token, requires
    ``Authorization: Bearer <token>`` on every route except ``/health`` (given an
    :class:`~cube.roles.Access`, the token of a role that may do what is asked)."""
    app = bottle.Bottle(catchall=True, autojson=True)
    app.config["cube.name"] = name
    app.config["cube.on_stop"] = []  # called before the server stops: end blocking queries
    app.config["cube.on_start"] = []  # called when it starts: blocking queries may wait
    app.default_error_handler = _error_handler  # type: ignore[method-assign]
    app.install(_translate_errors)
    if isinstance(token, str) and token:
        app.install(_require_token(token))
    elif token:
        app.install(token.plugin(open_route, TRUSTED))
    return app


def open_route() -> bool:
    """Whether the route asked for now is open to anyone, as its ``Doc`` says (``/health``,
    ``/openapi.json``): said once, where the route is declared, for the token check and
    the OpenAPI document alike."""
    doc = bottle.request.route.config.get("doc")
    return bool(getattr(doc, "open", False))


def _translate_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Answer an exception that carries an ``http_status`` (bad input 400, unknown
    task 404, illegal transition 409...) with that status and its message, and the
    ``http_headers`` it may carry."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception as exc:
            status = getattr(exc, "http_status", None)
            if status is None:
                raise
            raise fail(status, str(exc), getattr(exc, "http_headers", None)) from None

    return wrapper


def send_json(data: Any, status: int = 200) -> bytes:
    """A JSON response: a wire value, a list of them, plain JSON data, or bytes that
    are JSON already (a cached encoding)."""
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return data if isinstance(data, bytes) else encode(data)


class ListCache:
    """Encodes lists of wire values (tasks, say), reusing each value's bytes for as long
    as it is unchanged: answering ``GET /tasks`` again costs one comparison per task
    that did not change since, and an encoding per task that did.

    Values are keyed by ``key`` (a task's ID) and compared with a copy taken when they
    were encoded, so a value replaced or assigned a new field is encoded again. (Cube
    never changes the maps inside a stored value in place; that would go unseen.)

    It keeps what its last list held, no more: an API keeps one for whole lists and
    another for parts of one (a page, the changes since an index), so that the two
    asked by turns do not throw away each other's encodings."""

    def __init__(self, key: Callable[[Any], Any]) -> None:
        self._key = key
        self._known: dict[Any, tuple[Any, bytes]] = {}

    def encode(self, values: list[Any]) -> bytes:
        known, fresh, parts = self._known, {}, []
        for value in values:
            key = self._key(value)
            seen = known.get(key)
            if seen is None or seen[0] != value:
                seen = (msgspec.structs.replace(value), encode(value))
            fresh[key] = seen
            parts.append(seen[1])
        self._known = fresh  # what is no longer listed is forgotten
        return b"[" + b",".join(parts) + b"]"


def _error_handler(res: bottle.HTTPError) -> str:
    status = res.status_code
    if status >= 500 and res.exception is not None:
        log.error("internal error on %s %s", bottle.request.method, bottle.request.path)
        log.error("%s", res.traceback)
        message = "internal error; the server log has the details"
    elif status == 404 and res.body in ("", "Not found: " + repr(bottle.request.path)):
        message = f"no route {bottle.request.method} {bottle.request.path}"
    elif status == 405 and res.body == "Method not allowed.":
        message = f"{bottle.request.method} is not allowed on {bottle.request.path}"
    else:
        message = str(res.body)
    bottle.response.content_type = "application/json"
    return encode(ErrorBody(http_status_code=status, message=message))


def _require_token(token: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    expected = f"Bearer {token}".encode()

    def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = bottle.request.get_header("Authorization", "").encode()
            valid = hmac.compare_digest(given, expected)
            if open_route():
                bottle.request.environ[TRUSTED] = valid
            elif not valid:
                bottle.response.set_header("WWW-Authenticate", 'Bearer realm="cube"')
                raise fail(401, "missing or wrong token: send 'Authorization: Bearer <token>'")
            return callback(*args, **kwargs)

        return wrapper

    return plugin


def trusted() -> bool:
    """Whether this request came with the token (or none is required). Only an open
    route (``/health``) serves a request that did not: what such a request says must
    change nothing."""
    return bool(bottle.request.environ.get(TRUSTED, True))


def read_json() -> Any:
    """The request body as JSON, enforcing the content type, size and nesting limits.

    ``application/x-www-form-urlencoded`` is accepted because ``curl -d @task.json``
    (the book's examples) sends it; the body must still be JSON.
    """
    request = bottle.request
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise fail(415, f"send JSON with Content-Type: application/json, not {content_type!r}")
    length = request.content_length
    if length > MAX_BODY:
        raise fail(413, f"body of {length} bytes is over the {MAX_BODY}-byte limit")
    stream = request.environ["wsgi.input"]
    raw = stream.read(length) if length >= 0 else stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise fail(413, f"body is over the {MAX_BODY}-byte limit")
    if 0 <= length != len(raw):
        raise fail(400, f"the body is shorter than its Content-Length: {len(raw)} of {length}")
    if not raw.strip():
        raise fail(400, "the body is empty; send a JSON task or task event")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise fail(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise fail(
            400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise fail(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer longer than Python will convert
        raise fail(400, f"unreadable JSON: {exc}") from None
    if _depth(data) > MAX_DEPTH:
        raise fail(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    return data


def query_int(name: str, default: int, limit: int = 100_000) -> int:
    """A whole-number query parameter, or 400 saying what was wrong."""
    text = bottle.request.query.get(name, str(default))
    if not (text.isascii() and text.isdigit()) or int(text) > limit:
        raise fail(400, f"{name} must be a whole number up to {limit}, not {text!r}")
    return int(text)


MAX_WAIT = 60.0
SLOW_STOP = 10.0  # seconds: a stop taking longer logs every thread's stack
SPARE_THREADS = 4
GROW_THREADS = 16
MAX_THREADS = 1024
INDEX_HEADER = "X-Cube-Index"
FORGOTTEN_HEADER = "X-Cube-Forgotten"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def watch_query() -> tuple[int, float] | None:
    """``(index, wait)`` of a blocking query (``?index=N&wait=5s``, as Consul and Nomad
    take them), or None for an ordinary read. The wait is capped at ``MAX_WAIT`` and,
    like Consul's, gets up to 1/16 more at random, so many watchers do not all come
    back in the same instant."""
    if "index" not in bottle.request.environ.get("QUERY_STRING", ""):
        return None  # the common case, without parsing the query
    query = bottle.request.query
    if "index" not in query:
        return None
    index = query_int("index", 0, 1 << 62)
    text = query.get("wait", "30s").strip()
    number, unit = text.rstrip("mns"), text[len(text.rstrip("mns")) :] or "s"
    try:
        wait = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise fail(400, f"wait must be a duration such as 5s, 500ms or 1m, not {text!r}") from None
    if not 0 <= wait < float("inf"):
        raise fail(400, f"wait must be a duration such as 5s, 500ms or 1m, not {text!r}")
    wait = min(wait, MAX_WAIT)
    return index, wait + random.uniform(0, wait / 16)


def block(changes: Changes) -> int:
    """Answer a read as a blocking query when it is one (wait for ``changes`` to pass the
    asked index), and say the index either way (``X-Cube-Index``). A waiting request
    holds a server thread: it is counted against the server's limits (429 past them,
    :mod:`cube.held`), and the pool grows first when few threads are left for the
    others."""
    watch = watch_query()
    server = bottle.request.app.config.get("cube.server")
    if watch is None:
        index = changes.index
    elif server is None:
        index = changes.wait(*watch)
    else:
        with server.watches.hold(bottle.request.remote_addr or "?"):
            server.spare_threads()
            index = changes.wait(*watch)
    bottle.response.set_header(INDEX_HEADER, str(index))
    return index


@dataclass(frozen=True)
class ListQuery:
    """How a long task list is asked for: ``since`` an index (only what changed after
    it), of one ``state``, a page of ``limit`` after the ID ``after``. All optional: a
    plain ``GET /tasks`` is the whole list, as in the book."""

    since: int | None = None
    state: State | None = None
    after: str = ""
    limit: int = 0


def list_query() -> ListQuery:
    if not bottle.request.environ.get("QUERY_STRING"):
        return ListQuery()  # the common case, without parsing a query
    query = bottle.request.query
    since = query_int("since", 0, 1 << 62) if "since" in query else None
    state = None
    if "state" in query:
        text = query.get("state", "")
        names = {s.name.lower(): s for s in State} | {str(int(s)): s for s in State}
        state = names.get(text.strip().lower())
        if state is None:
            raise fail(400, f"state must be a state name or number (Running or 2), not {text!r}")
    after = str(parse_uuid(query["after"], "after")) if query.get("after") else ""
    return ListQuery(since, state, after, query_int("limit", 0))


def _depth(value: Any) -> int:
    stack, deepest = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return deepest


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """A WSGI app on a real threaded HTTP server, started and stopped from code.

    ``port=0`` picks a free port; :attr:`url` tells which. Binds 127.0.0.1 unless told
    otherwise; binding another address without a token logs a loud warning, because
    anyone who can reach the port could then start and stop tasks. Given ``tls``, it
    speaks HTTPS only. A request must
    arrive whole within ``request_timeout`` seconds, and no pool thread waits for one
    that is slow to (see :mod:`cube.connections`), and blocking queries held at once
    are limited (``watch_limits``, :mod:`cube.held`) so that at least half the threads
    the pool may grow to serve everything else.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        threads: int = 16,
        token_required: bool = False,
        tls: ServerTLS | None = None,
        request_timeout: float = 5.0,
        watch_limits: WatchLimits | None = None,
    ) -> None:
        if not is_loopback(host) and not token_required:
            log.warning(
                "SECURITY: serving on %s without a token: anyone who can reach port %s can "
                "run and stop tasks here. Set CUBE_TOKEN, or bind 127.0.0.1.",
                host,
                port,
            )
        self._server = GatedServer(
            (host, port),
            app,
            numthreads=threads,
            timeout=10,
            request_timeout=request_timeout,
            max_body=MAX_BODY,
        )
        if tls is not None:  # HTTPS only on this port (see cube.tls)
            self._server.ssl_adapter = tls.adapter()
        self.scheme = "https" if tls is not None else "http"
        self._thread: threading.Thread | None = None
        self._growing = threading.Lock()
        self._stopping = False
        self.watches = HeldWatches(watch_limits or WatchLimits(total=MAX_THREADS // 2))
        if hasattr(app, "config"):
            app.config["cube.server"] = self
        hooks = getattr(app, "config", {})
        self._on_stop: list[Callable[[], None]] = hooks.get("cube.on_stop", [])
        self._on_start: list[Callable[[], None]] = hooks.get("cube.on_start", [])

    @property
    def host(self) -> str:
        return self._server.bind_addr[0]

    @property
    def port(self) -> int:
        return self._server.bind_addr[1]

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"{self.scheme}://{host}:{self.port}"

    def spare_threads(self) -> None:
        """Keep ``SPARE_THREADS`` threads free for ordinary requests: a request about to
        wait (a blocking query) first grows the pool when fewer are idle."""
        pool = self._server.requests
        with self._growing:
            if self._stopping:
                return  # a pool that is being stopped must not grow under it
            if pool.idle <= SPARE_THREADS and len(pool._threads) < MAX_THREADS:
                pool.grow(GROW_THREADS)

    def start(self) -> Server:
        """Bind now (so the port is known and errors surface here), serve in a thread."""
        self._stopping = False
        for hold in self._on_start:
            hold()
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name=f"http:{self.port}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind and serve in this thread until :meth:`stop` is called."""
        for hold in self._on_start:
            hold()
        self._server.prepare()
        self._server.serve()

    def stop(self) -> None:
        with self._growing:  # no request grows the pool from now on (see spare_threads)
            self._stopping = True
        for release in self._on_stop:  # answer blocked watchers now, not at their timeout
            release()
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StopSignals:
    """SIGTERM and Ctrl-C (SIGINT) as a request to stop, which the main thread waits for
    (``with StopSignals() as stop: ... stop.wait()``).

    A Python signal handler runs on the main thread between two bytecodes, wherever that
    thread is, even inside a lock's critical section. So this handler takes no lock: it
    sets a flag, and :meth:`wait` looks at it every ``poll`` seconds. (A handler calling
    ``Event.set()`` deadlocks when a second signal lands while the first handler holds
    the Event's lock: a process asked to stop twice in a row could hang for good.)"""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, poll: float = 0.1) -> None:
        self.poll = poll
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True  # nothing more: see the class's docstring

    def wait(self) -> None:
        """Until a stop is requested."""
        while not self.requested:
            time.sleep(self.poll)


def serve_until_stopped(server: Server, on_stop: Callable[[], None]) -> None:
    """Serve in a thread until SIGTERM or Ctrl-C, then stop the server and call
    ``on_stop`` (for example, to close the worker's stores). For ``cube worker`` and
    ``cube manager`` run in the foreground."""
    with StopSignals() as stop:
        try:
            server.start()
            log.info("listening on %s", server.url)
            stop.wait()
            log.info("stopping")
        finally:
            # A stop that hangs says where: every thread's stack goes to the log.
            faulthandler.dump_traceback_later(SLOW_STOP, file=sys.stderr)
            try:
                server.stop()
                on_stop()
            finally:
                faulthandler.cancel_dump_traceback_later()
