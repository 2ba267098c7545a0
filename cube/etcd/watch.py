"""Watches: every change under a key or prefix, in order, on a thread, across failures.

etcd streams a watch's events over one long HTTP response (``POST /v3/watch``, one JSON
message a line). A connection breaks (a member killed, restarted, a network blip): the
watch opens a new one, on the next endpoint, *from the revision after the last one it
delivered*, so nothing is missed and nothing is delivered twice. etcd keeps history
only until it is compacted; a watch asked to resume from before that is cancelled by
etcd with the oldest revision it still has, and :class:`Watch` tells its caller
(``on_compacted``), who must read afresh (list, then watch from the list's revision:
what Kubernetes' informers do) and says where to resume.

A member that loses its cluster ends the watch itself (the watch asks for etcd's
"require leader"), and TCP keepalives find a connection whose peer vanished (a machine
down, a network cut): either way the watch moves on. ``idle`` adds a limit on silence
(off by default: a quiet prefix is not a fault, and a watch that reconnects from an old
revision may find its history compacted).

The stream is read with the standard library's ``http.client`` rather than
``requests``: the watch owns its socket, so :meth:`Watch.close` can shut it down and
the reading thread stops at once, without waiting for etcd to say something.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cube.etcd.client import CONNECT_TIMEOUT, HEADERS, EtcdClient, KeyValue, b64, prefix_end

log = logging.getLogger(__name__)

KEEPALIVE = (10, 3, 3)  # TCP: first probe after 10 s idle, every 3 s, 3 unanswered: gone
RETRY_MAX = 1.0  # seconds: the longest pause between two attempts to reconnect


@dataclass(frozen=True)
class Event:
    """A put or a delete, at ``kv.mod_revision`` (a delete's ``kv`` has no value)."""

    kind: str  # "put" or "delete"
    kv: KeyValue

    @property
    def key(self) -> str:
        return self.kv.key

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class _Reconnect(Exception):
    """The stream ended or failed: open another one."""


class _Compacted(_Reconnect):
    """etcd no longer has the history asked for: resume where ``on_compacted`` says."""


class Watch:
    """Calls ``callback(event)`` for each change of ``key`` (or of the range up to
    ``end``) from ``from_revision`` on (0: from now), on its own thread.

    ``on_compacted(oldest)`` is called when etcd no longer has the history the watch
    needs; it returns the revision to go on from (typically the revision of a fresh
    read, plus one). Without it, the watch logs a warning and goes on from ``oldest``:
    what changed before is lost to it. A callback that raises is logged; the watch
    goes on."""

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        callback: Callable[[Event], None],
        *,
        end: str | None = None,
        from_revision: int = 0,
        on_compacted: Callable[[int], int | None] | None = None,
        idle: float | None = None,
        name: str = "etcd-watch",
    ) -> None:
        self.client = client
        self.key, self.end = key, end
        self.callback = callback
        self.on_compacted = on_compacted
        self.idle = idle
        self.name = name
        self.next_revision = from_revision  # the first revision not delivered yet
        self.ready = threading.Event()  # set once etcd has confirmed the watch
        self.reconnects = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None
        self._endpoint = client.endpoints.index(client.current)

    @property
    def revision(self) -> int:
        """The last revision delivered (or known to have nothing for this watch)."""
        return self.next_revision - 1

    def start(self) -> Watch:
        """Start the thread (once: a started watch is returned as it is)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop now: the stream's socket is shut, the thread ends."""
        self._stopping.set()
        with self._lock:
            if self._conn is not None and self._conn.sock is not None:
                with contextlib.suppress(OSError):
                    self._conn.sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Watch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        pause = 0.05
        while not self._stopping.is_set():
            endpoint = self.client.endpoints[self._endpoint % len(self.client.endpoints)]
            try:
                self._stream(endpoint)
            except (OSError, http.client.HTTPException, ValueError, _Reconnect) as exc:
                if self._stopping.is_set():
                    break
                if isinstance(exc, _Compacted):
                    continue  # resume at once, from where on_compacted said
                log.info(
                    "%s: watch on %s broke (%s); resuming from revision %d",
                    self.name,
                    endpoint,
                    exc or type(exc).__name__,
                    self.next_revision,
                )
            self.reconnects += 1
            if self.ready.is_set():
                pause = 0.05  # it worked for a while: try again soon
            self.ready.clear()
            self._endpoint += 1  # the next member, in case this one is the trouble
            self._stopping.wait(pause)
            pause = min(pause * 2, RETRY_MAX)

    def _stream(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        https = parts.scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT)
        with self._lock:
            if self._stopping.is_set():
                return
            self._conn = conn
        try:
            conn.connect()
            conn.sock.settimeout(self.idle)
            _keepalive(conn.sock)
            body = json.dumps(self._create_request())
            conn.request("POST", "/v3/watch", body=body, headers=HEADERS)
            response = conn.getresponse()
            if response.status != 200:
                raise _Reconnect(f"HTTP {response.status}: {response.read(200)!r}")
            while not self._stopping.is_set():
                line = response.readline()
                if not line:
                    raise _Reconnect("the stream ended")
                if line.strip():
                    self._handle(json.loads(line))
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    def _create_request(self) -> dict[str, Any]:
        create: dict[str, Any] = {"key": b64(self.key), "progress_notify": True}
        if self.end is not None:
            create["range_end"] = b64(self.end)
        if self.next_revision:
            create["start_revision"] = str(self.next_revision)
        return {"create_request": create}

    def _handle(self, message: dict[str, Any]) -> None:
        if "error" in message:
            raise _Reconnect(str(message["error"].get("message", message["error"])))
        result = message.get("result", {})
        header = int(result.get("header", {}).get("revision", 0))
        if result.get("canceled"):
            oldest = int(result.get("compact_revision", 0))
            if oldest:
                self._compacted(oldest)
                raise _Compacted(oldest)
            raise _Reconnect(f"cancelled by etcd: {result.get('cancel_reason', 'no reason')}")
        if result.get("created"):
            if not self.next_revision:
                self.next_revision = header + 1  # "from now": after what etcd had then
            self.client.prefer(self.client.endpoints[self._endpoint % len(self.client.endpoints)])
            self.ready.set()
            return
        events = result.get("events", [])
        if not events:  # a progress notice: everything up to ``header`` has been sent
            self.next_revision = max(self.next_revision, header + 1)
            return
        for raw in events:
            kind = "delete" if raw.get("type") == "DELETE" else "put"
            event = Event(kind, KeyValue.from_wire(raw["kv"]))
            if self._stopping.is_set():
                return
            try:
                self.callback(event)
            except Exception:
                log.exception("%s: the callback failed on %s %s", self.name, kind, event.key)
            self.next_revision = event.revision + 1

    def _compacted(self, oldest: int) -> None:
        resume: int | None = None
        if self.on_compacted is not None:
            try:
                resume = self.on_compacted(oldest)
            except Exception:
                log.exception("%s: on_compacted failed; going on from %d", self.name, oldest)
        else:
            log.warning(
                "%s: etcd compacted the history from revision %d to %d; changes in between "
                "are lost to this watch",
                self.name,
                self.next_revision,
                oldest,
            )
        self.next_revision = resume or oldest


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalives, so a peer that vanished without closing is noticed (Linux)."""
    idle, interval, count = KEEPALIVE
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def watch(
    client: EtcdClient,
    prefix: str,
    callback: Callable[[Event], None],
    from_revision: int = 0,
    on_compacted: Callable[[int], int | None] | None = None,
    **options: Any,
) -> Watch:
    """A started :class:`Watch` of every key under ``prefix``."""
    return client.watch(
        prefix,
        callback,
        end=prefix_end(prefix),
        from_revision=from_revision,
        on_compacted=on_compacted,
        **options,
    )
