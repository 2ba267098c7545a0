"""A client for etcd v3 through its JSON gateway, on ``requests`` (already a dependency).

etcd serves its v3 API as JSON over HTTP next to gRPC (the "grpc-gateway": ``POST
/v3/kv/range``, ``/v3/kv/put``, ``/v3/kv/txn``, ``/v3/lease/grant``, ``/v3/watch``...;
keys and values base64, 64-bit numbers as strings, fields at their default left out).
This module speaks that, and nothing else: the store, transactions, leases, elections
and watches are built on it in their own modules.

Why not a library. Tried against Debian's etcd 3.4.23:

- ``etcd3`` (gRPC; last release 2020) does not import with today's protobuf, and its
  generated code would pin protobuf below 4 for everyone installing Cube.
- ``etcd-sdk-python`` (gRPC, 0.0.x) installs without the protobuf it imports.
- ``etcd3gw`` (2.7, maintained, the same JSON gateway) works for put, get, leases and
  simple watches, but: it talks to one host only, so ``etcd://h1,h2,h3`` would need
  failover written around it anyway; its transactions take the raw JSON this module
  writes anyway; and its watch ignores etcd's "canceled, compacted" answer, so a watch
  from a revision that was compacted away waits forever and delivers nothing (seen
  here), with no way to resume after a lost connection and a stop that closes a
  socket it found by file number. It would add four dependencies (futurist,
  debtcollector, pbr, wrapt) for what is a few dozen lines below.

So the gateway, directly: one small class, every call visible, and no new dependency
(``requests`` is one already), so no ``etcd`` extra is needed: what ``--store etcd``
needs beyond Cube's core is an etcd server.

Several endpoints: requests go to the member that answered last; one that cannot be
reached, or says it has no leader, is skipped for the next. A read is tried on every
member. A write whose answer was lost after it was sent is not sent again blindly (it
may have been applied): :class:`~cube.etcd.errors.OutcomeUnknown` says so, and the
caller reads back. Reads are linearizable (etcd's default), and every request asks for
a member with a leader (etcd's "require leader"), so a member cut off from its cluster
answers "no leader" at once, rather than old data or a timeout, and is skipped.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3

from cube import clock
from cube.etcd.errors import Compacted, EtcdError, EtcdUnavailable, OutcomeUnknown
from cube.store import StoreFull

if TYPE_CHECKING:
    from collections.abc import Callable

    from cube.etcd.watch import Event, Watch

CONNECT_TIMEOUT = 1.0  # seconds to open a connection: a member that is down is skipped fast
# etcd's "require leader" (gRPC metadata, which the gateway takes from this header): a
# member cut off from its cluster answers "no leader" at once instead of waiting out its
# request timeout, and ends a watch it can no longer serve, so the next member is tried
HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
# what a member answers when it cannot serve now but another member may (gRPC codes)
UNAVAILABLE, RESOURCE_EXHAUSTED = 14, 8
AMBIGUOUS = ("request timed out",)  # etcd's words for "proposed, outcome unknown"


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd holds it. Revisions are etcd's global counters: ``mod_revision``
    changes with every write of the key, ``create_revision`` only when it is created."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int = 1
    lease: int = 0

    @classmethod
    def from_wire(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(
            key=unb64(kv["key"]).decode("utf-8", "surrogateescape"),
            value=unb64(kv.get("value", "")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
            lease=int(kv.get("lease", 0)),
        )


@dataclass(frozen=True)
class Range:
    """What a range read returned, at ``revision`` (the store's revision when read)."""

    kvs: list[KeyValue]
    count: int
    more: bool
    revision: int


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]


def b64(data: str | bytes) -> str:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (etcd's range_end for a
    prefix): its last byte plus one."""
    raw = bytearray(prefix.encode("utf-8", "surrogateescape"))
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return "\0"  # etcd: from the key to the end of the keyspace
    raw[-1] += 1
    return bytes(raw).decode("utf-8", "surrogateescape")


def parse_endpoints(spec: str | Sequence[str]) -> list[str]:
    """``etcd://h1:p1,h2:p2`` (the CLI's ``--store``), ``http://h:p,http://h2:p2`` or a
    list of either, as base URLs (``http://h1:p1``). A missing port is etcd's 2379."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    scheme = "http"
    for item in (i.strip() for i in items):
        if not item:
            continue
        if "://" in item:
            given = item.split("://", 1)[0]
            scheme = "http" if given == "etcd" else given
        else:
            item = f"{scheme}://{item}"
        parts = urlsplit(item.replace("etcd://", "http://", 1))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an etcd endpoint: {item!r} (use etcd://host:port,...)")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        out.append(f"{parts.scheme}://{host}:{parts.port or 2379}")
    if not out:
        raise ValueError(f"no etcd endpoint in {spec!r}")
    return out


class EtcdClient:
    """etcd's v3 API over HTTP, on one or several endpoints. Thread-safe.

    ``timeout`` bounds one request to one member; ``patience`` one call, across members
    and retries (default: the same)."""

    def __init__(
        self, endpoints: str | Sequence[str], timeout: float = 5.0, patience: float | None = None
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.timeout = timeout  # seconds for one request to one member
        self.patience = timeout if patience is None else patience  # for one call, in all
        self._current = 0
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EtcdClient({','.join(self.endpoints)!r})"

    @property
    def current(self) -> str:
        """The endpoint tried first (the one that answered last)."""
        return self.endpoints[self._current]

    def prefer(self, endpoint: str) -> None:
        """Try ``endpoint`` first from now on (it just answered, say, a watch)."""
        if endpoint in self.endpoints:
            self._current = self.endpoints.index(endpoint)

    # ------------------------------------------------------------------ the calls

    def call(
        self, path: str, body: dict[str, Any], *, retry: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` on the first endpoint that can answer, trying
        them all again (briefly pausing) while none can, for up to ``timeout`` (default:
        the client's ``patience``): an etcd cluster electing a new leader answers "no
        leader" for a second or two.

        ``retry=False`` for writes that must not be applied twice (transactions,
        deletes): once one may have reached etcd, it is not sent again.
        Raises :class:`EtcdUnavailable`, :class:`OutcomeUnknown`,
        :class:`~cube.store.StoreFull`, :class:`Compacted` or :class:`EtcdError`."""
        deadline = clock.monotonic() + (timeout if timeout is not None else self.patience)
        pause = 0.05
        while True:
            tried: list[str] = []
            answer = self._round(path, body, retry, deadline, tried)
            if answer is not None:
                return answer
            if clock.monotonic() + pause >= deadline:
                raise EtcdUnavailable(f"no etcd endpoint answered {path}: {'; '.join(tried)}")
            clock.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _round(
        self, path: str, body: dict[str, Any], retry: bool, deadline: float, tried: list[str]
    ) -> dict[str, Any] | None:
        """One try on each endpoint, from the current one; None when none could answer
        (why each could not is added to ``tried``)."""
        first = self._current
        for step in range(len(self.endpoints)):
            index = (first + step) % len(self.endpoints)
            endpoint = self.endpoints[index]
            wait = max(0.05, min(self.timeout, deadline - clock.monotonic()))
            try:
                response = self._session().post(
                    f"{endpoint}/v3/{path}",
                    data=json.dumps(body),
                    timeout=(min(CONNECT_TIMEOUT, wait), wait),
                )
            except requests.RequestException as exc:
                if not retry and not _not_sent(exc):
                    raise OutcomeUnknown(f"etcd {endpoint}: no answer to {path}: {exc}") from None
                tried.append(f"{endpoint}: {_short(exc)}")
                continue
            if response.status_code == 200:
                self._current = index
                return _json(response)
            message, code = _error(response)
            if "database space exceeded" in message:
                raise StoreFull(f"etcd is full ({message}); compact and defragment it")
            if code in (UNAVAILABLE, RESOURCE_EXHAUSTED) or response.status_code in (502, 503):
                if not retry and any(words in message for words in AMBIGUOUS):
                    raise OutcomeUnknown(f"etcd {endpoint}: {message}")
                tried.append(f"{endpoint}: {message}")
                continue
            if "compacted" in message:
                raise Compacted(message)
            raise EtcdError(f"etcd {endpoint}: {message}", code)
        return None

    # ------------------------------------------------------------------ keys

    def range(
        self,
        key: str,
        end: str | None = None,
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        descending: bool = False,
        by_create: bool = False,
        max_create_revision: int = 0,
    ) -> Range:
        """Keys from ``key`` up to ``end`` (just ``key`` when None), in key order (or by
        create revision), at ``revision`` (0: now)."""
        body: dict[str, Any] = {"key": b64(key)}
        if end is not None:
            body["range_end"] = b64(end)
        numbers = {"limit": limit, "revision": revision, "max_create_revision": max_create_revision}
        body.update({name: str(n) for name, n in numbers.items() if n})  # int64s are strings
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        if descending or by_create:
            body["sort_order"] = "DESCEND" if descending else "ASCEND"
            body["sort_target"] = "CREATE" if by_create else "KEY"
        data = self.call("kv/range", body)
        return Range(
            kvs=[KeyValue.from_wire(kv) for kv in data.get("kvs", [])],
            count=int(data.get("count", 0)),
            more=bool(data.get("more", False)),
            revision=_revision(data),
        )

    def get(self, key: str) -> KeyValue | None:
        found = self.range(key).kvs
        return found[0] if found else None

    def put(self, key: str, value: str | bytes, lease: int = 0) -> int:
        """Write ``key`` unconditionally; returns the revision of the write."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return _revision(self.call("kv/put", body))

    def delete(self, key: str, end: str | None = None) -> tuple[int, int]:
        """Delete ``key`` (or the range up to ``end``): (how many, revision)."""
        body = {"key": b64(key)} | ({"range_end": b64(end)} if end is not None else {})
        data = self.call("kv/deleterange", body, retry=False)
        return int(data.get("deleted", 0)), _revision(data)

    def txn(
        self,
        compare: Sequence[dict[str, Any]],
        success: Sequence[dict[str, Any]],
        failure: Sequence[dict[str, Any]] = (),
    ) -> TxnResult:
        """One etcd transaction, in its wire form (see :mod:`cube.etcd.txn` to build it)."""
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        data = self.call("kv/txn", body, retry=False)
        return TxnResult(
            succeeded=bool(data.get("succeeded", False)),
            revision=_revision(data),
            responses=list(data.get("responses", [])),
        )

    def compact(self, revision: int) -> None:
        """Forget history before ``revision`` (what etcd's auto-compaction does)."""
        self.call("kv/compaction", {"revision": str(revision), "physical": True})

    # ------------------------------------------------------------------ leases

    def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (ID, the TTL etcd granted, which may be more than asked)."""
        data = self.call("lease/grant", {"TTL": str(int(ttl))})
        return int(data["ID"]), int(data["TTL"])

    def keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew a lease; its TTL again, or 0 when etcd no longer has it."""
        data = self.call("lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        return int(data.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> bool:
        """End a lease now (its keys go); False when etcd had no such lease."""
        try:
            self.call("lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if "lease not found" in str(exc):
                return False
            raise
        return True

    def time_to_live(self, lease: int) -> int:
        """Seconds the lease has left by etcd's clock; -1 when it is gone."""
        return int(self.call("lease/timetolive", {"ID": str(lease)}).get("TTL", -1))

    # ------------------------------------------------------------------ watches

    def watch(
        self,
        key: str,
        callback: Callable[[Event], None],
        *,
        end: str | None = None,
        from_revision: int = 0,
        on_compacted: Callable[[int], int | None] | None = None,
        **options: Any,
    ) -> Watch:
        """A started watch of ``key`` (or of the range up to ``end``): see
        :class:`~cube.etcd.watch.Watch`. Every watch is made here, so that what carries
        the calls (sockets, or a simulation's network) carries the watches too."""
        from cube.etcd.watch import Watch

        return Watch(
            self,
            key,
            callback,
            end=end,
            from_revision=from_revision,
            on_compacted=on_compacted,
            **options,
        ).start()

    # ------------------------------------------------------------------ members

    def healthy(self, endpoint: str | None = None, timeout: float = 1.0) -> bool:
        """Does the member answer ``/health`` as part of a cluster with a leader?"""
        try:
            url = f"{endpoint or self.current}/health"
            return self._session().get(url, timeout=timeout).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self) -> requests.Session:
        """One session per thread: its pooled connections are its own."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(HEADERS)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session


def _revision(data: dict[str, Any]) -> int:
    return int(data.get("header", {}).get("revision", 0))


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise EtcdError(f"etcd answered something not JSON: {response.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise EtcdError(f"etcd answered {type(data).__name__}, not an object")
    if "error" in data and isinstance(data["error"], dict):  # a streamed call that failed
        error = data["error"]
        raise EtcdError(str(error.get("message", error)), int(error.get("grpc_code", 0)))
    return data


def _error(response: requests.Response) -> tuple[str, int]:
    """etcd's message and gRPC code from an error answer."""
    try:
        data = response.json()
        return str(data.get("message") or data.get("error")), int(data.get("code", 0))
    except (ValueError, AttributeError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}", 0


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request never reached etcd (no connection could be opened)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _short(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    return type(reason).__name__ if isinstance(reason, Exception) else str(reason)[:120]
