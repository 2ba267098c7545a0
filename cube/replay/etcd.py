"""A simulated etcd: the part of etcd's v3 JSON gateway Cube's client uses, in memory, on
the simulator's virtual clock.

With several managers on etcd, the simulator (:mod:`cube.replay`) runs the real
:class:`~cube.etcd.EtcdClient`, :class:`~cube.etcd.EtcdStore`, transactions, leases and
elections. A real etcd cannot be part of a replayable run: it has its own clock (leases
expire by it), its own IDs and its own threads. :class:`SimEtcd` answers the same
requests with the same JSON as etcd 3.4's gateway (``tests/test_replay_etcd.py`` checks
it against a real one, answer for answer), so the code above cannot tell, except that:

- time is ``now()``, the simulator's: a lease expires exactly when its TTL has run out by
  it (:meth:`SimEtcd.expire`, which the simulator schedules at
  :meth:`SimEtcd.next_expiry`, and which every call runs first);
- watches are not served over HTTP (a stream does not fit a one-thread simulation):
  :meth:`SimEtcd.events` gives what a watch would deliver, in its wire form, and
  ``on_change`` says when there is something new;
- the history kept, for reads at older revisions and for watches, is the last
  ``history`` events: older ones are compacted away by themselves (etcd's
  auto-compaction, counted in events rather than hours);
- one member, always with a leader: no "no leader", no timeouts (the simulated network
  adds those), no auth, no nested transactions.

Everything is deterministic: no wall clock, no randomness, keys in byte order (as etcd
compares them, whatever Python's hashing), lease IDs counted from a fixed number. The
keys and their history are a :class:`~cube.replay.etcd_keys.KeySpace`; here are the
requests, their checks and answers, and the leases.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from cube.replay.etcd_keys import KV, Change, KeySpace

CLUSTER_ID, MEMBER_ID, RAFT_TERM = "14841639068965178418", "10276657743932975437", "2"
FIRST_LEASE_ID = 0x694D_5E7C_0000_1000  # any fixed number: etcd's IDs are int64s this big
MIN_TTL = 2  # etcd raises a shorter TTL to this (1.5 election timeouts, rounded up)
MAX_TTL = 9_000_000_000  # etcd's MaxLeaseTTL
MAX_TXN_OPS = 128  # etcd's --max-txn-ops default, per branch

# the gRPC codes etcd answers with, and the HTTP status etcd 3.4's gateway gives each
INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED = 3, 5, 9, 11, 12
HTTP_STATUS = {INVALID_ARGUMENT: 400, NOT_FOUND: 404, FAILED_PRECONDITION: 412, OUT_OF_RANGE: 400}
HTTP_STATUS |= {UNIMPLEMENTED: 501}
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE = "etcdserver: mvcc: required revision is a future revision"
LEASE_NOT_FOUND = "etcdserver: requested lease not found"
LEASE_EXISTS = "etcdserver: lease already exists"
TTL_TOO_LARGE = "etcdserver: too large lease TTL"
NO_KEY = "etcdserver: key is not provided"
DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
TOO_MANY_OPS = "etcdserver: too many operations in txn request"

# etcd's enums, in their numbering (the gateway takes a name or a number; the first is 0)
SORT_ORDERS = ("NONE", "ASCEND", "DESCEND")
SORT_TARGETS = ("KEY", "VERSION", "CREATE", "MOD", "VALUE")
TARGETS = ("VERSION", "CREATE", "MOD", "VALUE", "LEASE")
RESULTS = ("EQUAL", "GREATER", "LESS", "NOT_EQUAL")
COMPARED = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision"}
COMPARED |= {"VALUE": "value", "LEASE": "lease"}  # the field of a compare that holds its value

# what each path of the gateway is served by (the kv/lease/... ones are etcd's aliases)
HANDLERS = {"kv/range": "_range", "kv/put": "_put", "kv/deleterange": "_deleterange"}
HANDLERS |= {"kv/txn": "_txn", "kv/compaction": "_compaction", "lease/grant": "_grant"}
HANDLERS |= {"lease/keepalive": "_keepalive", "lease/revoke": "_revoke_lease"}
HANDLERS |= {"lease/timetolive": "_timetolive", "kv/lease/revoke": "_revoke_lease"}
HANDLERS |= {"kv/lease/timetolive": "_timetolive"}
IN_TXN = {"request_range": "_range", "request_put": "_put"}
IN_TXN |= {"request_delete_range": "_deleterange"}
TXN_PARTS = ("compare", "success", "failure")


class SimEtcdError(Exception):
    """An error answer as etcd gives it: the gateway's HTTP status, etcd's own message and
    its gRPC code (what :class:`~cube.etcd.EtcdClient` tells its errors apart by)."""

    def __init__(self, http_status: int, message: str, grpc_code: int) -> None:
        super().__init__(message)
        self.http_status, self.message, self.grpc_code = http_status, message, grpc_code

    def wire(self) -> dict[str, Any]:
        """The body the gateway answers with."""
        return {"error": self.message, "message": self.message, "code": self.grpc_code}


class HistoryCompacted(SimEtcdError):
    """A read or a watch from before ``oldest``, the oldest revision still kept (what a
    real watch is told as its ``compact_revision``, and resumes from)."""

    def __init__(self, oldest: int) -> None:
        super().__init__(HTTP_STATUS[OUT_OF_RANGE], COMPACTED, OUT_OF_RANGE)
        self.oldest = oldest


@dataclass
class _Lease:
    id: int
    ttl: int
    expiry: float  # now() at which it is gone: granted or last renewed, plus ttl


class SimEtcd:
    """One etcd member in memory: keys with their revisions and history, and leases that
    run out on the virtual clock ``now()``. Not thread-safe: the simulator is one thread.

    ``on_change()`` is called after every new revision (a write, a delete, a lease that
    expired with keys), once the store is in its new state, so the simulator can deliver
    the watches' events (:meth:`events`)."""

    def __init__(
        self,
        now: Callable[[], float],
        on_change: Callable[[], None] | None = None,
        history: int = 10_000,
    ) -> None:
        self.now = now
        self.on_change = on_change
        self.keys = KeySpace(history)
        self._leases: dict[int, _Lease] = {}
        self._next_lease = FIRST_LEASE_ID

    @property
    def revision(self) -> int:
        return self.keys.revision

    @property
    def compacted(self) -> int:
        """Reads and watches from before this revision fail (0: none)."""
        return self.keys.compacted

    # ------------------------------------------------------------------ the API

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer ``POST /v3/<path>`` with ``body`` as etcd would (leases due expire
        first); raises :class:`SimEtcdError` for an error answer."""
        path = path.strip("/").removeprefix("v3/")
        if path not in HANDLERS:
            raise SimEtcdError(404, f"Not Found: /v3/{path}", NOT_FOUND)
        self.expire()
        before = self.revision
        try:
            answer = getattr(self, HANDLERS[path])(body)
        except Exception:
            self.keys.rollback()  # etcd applies a request whole or not at all
            raise
        self.keys.commit()
        header = {"cluster_id": CLUSTER_ID, "member_id": MEMBER_ID}
        header |= {"revision": str(self.revision), "raft_term": RAFT_TERM}
        result = {"header": header, **answer}
        if path == "lease/keepalive":  # a stream: each answer in a "result"
            result = {"result": result}
        if self.revision != before:
            self._said()
        return result

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The gateway as a WSGI app: ``POST /v3/<path>`` (JSON in, JSON out, errors as
        the gateway gives them) and ``GET /health``."""
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        if method == "GET" and path == "/health":
            return _respond(start_response, 200, b'{"health":"true"}', "text/plain; charset=utf-8")
        name = path.removeprefix("/v3/")
        if method != "POST" or not path.startswith("/v3/") or name not in HANDLERS:
            return _respond(start_response, 404, b"Not Found\n", "text/plain; charset=utf-8")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size > 0 else b""
        try:
            answer = self.call(name, _parse(raw))
        except SimEtcdError as exc:
            return _respond(start_response, exc.http_status, _dumps(exc.wire()), "application/json")
        stream = b"\n" if name == "lease/keepalive" else b""  # a streamed answer ends a line
        return _respond(start_response, 200, _dumps(answer) + stream, "application/json")

    def expire(self) -> None:
        """Revoke the leases whose TTL has run out by ``now()`` (their keys deleted, one
        revision for each lease's), earliest first."""
        now = self.now()
        due = sorted((lease.expiry, lease.id) for lease in self._leases.values())
        for expiry, lease_id in due:
            if expiry > now:
                break
            if lease_id in self._leases:  # on_change may have revoked it meanwhile
                before = self.revision
                self._revoke(lease_id)
                if self.revision != before:
                    self._said()

    def next_expiry(self) -> float | None:
        """When the next lease runs out (None: no lease), to schedule :meth:`expire`."""
        return min((lease.expiry for lease in self._leases.values()), default=None)

    def lease_alive(self, lease_id: int) -> bool:
        """Granted, not revoked, and not run out by ``now()``."""
        lease = self._leases.get(lease_id)
        return lease is not None and self.now() < lease.expiry

    def first_created(self, prefix: str) -> str | None:
        """The key under ``prefix`` created first (an election's leader), read without
        touching anything: for the simulation's checks, not for the components."""
        return self.keys.first_created(prefix)

    def events(self, key: str, end: str | None, from_revision: int) -> list[dict[str, Any]]:
        """What a watch of ``key`` (or of [key, end); end "\\0": every key from ``key``)
        from ``from_revision`` delivers, in its wire form, in revision order. Raises
        :class:`HistoryCompacted` when that history is gone (as etcd: from before the
        compacted revision; 0 means from the oldest kept)."""
        if 0 < from_revision < self.compacted:
            raise HistoryCompacted(self.compacted)
        start, stop = _raw(key), b"" if end is None else _raw(end)
        return [_event(change) for change in self.keys.since(from_revision, start, stop)]

    # ------------------------------------------------------------------ kv

    def _range(self, body: dict[str, Any]) -> dict[str, Any]:
        """etcd's order: the range read (``count`` is all of it), then the revision
        filters, the sort, the limit (``more`` when it cut)."""
        kvs = self._view(_key(body), _bytes(body, "range_end"), _int(body, "revision"))
        count = len(kvs)
        if body.get("count_only"):
            return _drop({"count": count})
        kvs = _filtered(kvs, body)
        order = _enum(body, "sort_order", SORT_ORDERS)
        target = _enum(body, "sort_target", SORT_TARGETS)
        if order == "NONE" and target != "KEY":
            order = "ASCEND"  # etcd: a target other than the key sorts, ascending
        if order != "NONE":  # stable: ties stay in key order, as etcd's (small) sorts keep them
            kvs.sort(key=lambda kv: _sort_key(kv, target), reverse=order == "DESCEND")
        limit = _int(body, "limit")
        more = 0 < limit < len(kvs)
        keys_only = bool(body.get("keys_only"))
        found = [_wire(kv, keys_only) for kv in (kvs[:limit] if more else kvs)]
        return _drop({"kvs": found, "more": more, "count": count})

    def _put(self, body: dict[str, Any]) -> dict[str, Any]:
        key, lease = _key(body), _int(body, "lease")
        self._check_lease(lease)
        prev = self.keys.get(key)
        rev = self.revision + 1
        create, version = (prev.create, prev.version + 1) if prev else (rev, 1)
        self.keys.change(key, KV(key, _bytes(body, "value"), create, rev, version, lease))
        return {"prev_kv": _wire(prev)} if prev is not None and body.get("prev_kv") else {}

    def _deleterange(self, body: dict[str, Any]) -> dict[str, Any]:
        """Deleting nothing makes no revision."""
        gone = self._view(_key(body), _bytes(body, "range_end"), 0)
        for kv in gone:
            self.keys.change(kv.key, None)
        prev = [_wire(kv) for kv in gone] if body.get("prev_kv") else []
        return _drop({"deleted": len(gone), "prev_kvs": prev})

    def _txn(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every write of the branch taken at one revision (none if it changes nothing);
        each response's header has the revision as of that operation."""
        compares, success, failure = (list(body.get(name) or []) for name in TXN_PARTS)
        if max(len(compares), len(success), len(failure)) > MAX_TXN_OPS:
            raise _error(INVALID_ARGUMENT, TOO_MANY_OPS)
        _check_branch(success)
        _check_branch(failure)
        succeeded = all([self._compare(compare) for compare in compares])
        ops = [_op(op) for op in (success if succeeded else failure)]
        for kind, request in ops:  # etcd checks the branch taken before changing anything
            if kind == "request_put":
                self._check_lease(_int(request, "lease"))
            elif kind == "request_range":
                self._check_revision(_int(request, "revision"))
        responses = []
        for kind, request in ops:
            answer = getattr(self, IN_TXN[kind])(request)
            header = {"revision": str(self.revision + int(self.keys.dirty))}
            responses.append({kind.replace("request", "response", 1): {"header": header, **answer}})
        return _drop({"succeeded": succeeded, "responses": responses})

    def _compare(self, compare: dict[str, Any]) -> bool:
        """As etcd: every key in the range must satisfy it; an absent key has revisions,
        version and lease 0, and no value (a value compare with it fails)."""
        target = _enum(compare, "target", TARGETS)
        result = _enum(compare, "result", RESULTS)
        kvs = self._view(_key(compare), _bytes(compare, "range_end"), 0)
        want = _bytes(compare, "value") if target == "VALUE" else _int(compare, COMPARED[target])
        if not kvs:
            return target != "VALUE" and _holds(None, target, result, want)
        return all(_holds(kv, target, result, want) for kv in kvs)

    def _compaction(self, body: dict[str, Any]) -> dict[str, Any]:
        revision = _int(body, "revision")
        if self.compacted and revision <= self.compacted:
            raise HistoryCompacted(self.compacted)
        self._check_revision(revision)
        self.keys.compact(revision)
        return {}

    # ------------------------------------------------------------------ leases

    def _grant(self, body: dict[str, Any]) -> dict[str, Any]:
        ttl, lease_id = _int(body, "TTL"), _int(body, "ID")
        if ttl > MAX_TTL:
            raise _error(OUT_OF_RANGE, TTL_TOO_LARGE)
        if lease_id in self._leases:
            raise _error(FAILED_PRECONDITION, LEASE_EXISTS)
        while not lease_id or lease_id in self._leases:  # 0: etcd chooses
            lease_id, self._next_lease = self._next_lease, self._next_lease + 1
        ttl = max(ttl, MIN_TTL)
        self._leases[lease_id] = _Lease(lease_id, ttl, self.now() + ttl)
        return {"ID": str(lease_id), "TTL": str(ttl)}

    def _keepalive(self, body: dict[str, Any]) -> dict[str, Any]:
        """Renewed for its whole TTL from now; a lease that is gone has no TTL (0)."""
        lease_id = _int(body, "ID")
        lease = self._leases.get(lease_id)
        if lease is None:
            return _drop({"ID": lease_id})
        lease.expiry = self.now() + lease.ttl
        return {"ID": str(lease_id), "TTL": str(lease.ttl)}

    def _revoke_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        lease_id = _int(body, "ID")
        if lease_id not in self._leases:
            raise _error(NOT_FOUND, LEASE_NOT_FOUND)
        self._revoke(lease_id)
        return {}

    def _timetolive(self, body: dict[str, Any]) -> dict[str, Any]:
        """Whole seconds left (etcd truncates); -1 when the lease is gone."""
        lease_id = _int(body, "ID")
        lease = self._leases.get(lease_id)
        if lease is None:
            return _drop({"ID": lease_id, "TTL": -1})
        left = round((lease.expiry - self.now()) * 1e9) // 1_000_000_000  # in ns, as etcd
        keys = [_b64(key) for key in self.keys.leased(lease_id)] if body.get("keys") else []
        return _drop({"ID": lease_id, "TTL": left, "grantedTTL": lease.ttl, "keys": keys})

    # ------------------------------------------------------------------ plumbing

    def _view(self, start: bytes, end: bytes, revision: int) -> list[KV]:
        """The keys in [start, end) as they were at ``revision`` (0: now), in key
        order, from a revision still kept and not in the future."""
        self._check_revision(revision)
        return self.keys.view(start, end, revision)

    def _check_revision(self, revision: int) -> None:
        if revision > self.revision:
            raise _error(OUT_OF_RANGE, FUTURE)
        if 0 < revision < self.compacted:
            raise HistoryCompacted(self.compacted)

    def _check_lease(self, lease_id: int) -> None:
        if lease_id and lease_id not in self._leases:
            raise _error(NOT_FOUND, LEASE_NOT_FOUND)

    def _revoke(self, lease_id: int) -> None:
        """The lease goes, and its keys with it, in key order at one revision (etcd
        sorts them, so that every member deletes them alike)."""
        del self._leases[lease_id]
        for key in self.keys.leased(lease_id):
            self.keys.change(key, None)
        self.keys.commit()

    def _said(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _wire(kv: KV, keys_only: bool = False) -> dict[str, Any]:
    """A key as the gateway sends it (``mvccpb.KeyValue``)."""
    value = "" if keys_only else _b64(kv.value)
    fields = {"key": _b64(kv.key), "create_revision": kv.create, "mod_revision": kv.mod}
    return _drop(fields | {"version": kv.version, "value": value, "lease": kv.lease})


def _event(change: Change) -> dict[str, Any]:
    """A change as a watch sends it: a delete's kv has only its key and revision."""
    if change.kv is not None:
        return {"kv": _wire(change.kv)}
    return {
        "type": "DELETE",
        "kv": _drop({"key": _b64(change.key), "mod_revision": change.revision}),
    }


def _error(code: int, message: str) -> SimEtcdError:
    return SimEtcdError(HTTP_STATUS.get(code, 500), message, code)


def _drop(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as the gateway writes them: int64s as strings, zero values left out."""
    out = {}
    for name, value in fields.items():
        if value is None or value is False or value in (0, "", [], {}):
            continue
        out[name] = str(value) if type(value) is int else value
    return out


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _raw(text: str) -> bytes:
    """A key as etcd has it (as :func:`cube.etcd.client.b64` encodes it)."""
    return text.encode("utf-8", "surrogateescape")


def _bytes(body: dict[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(body.get(name) or "")
    except (ValueError, TypeError) as exc:
        raise _error(INVALID_ARGUMENT, f"bad base64 in {name}: {exc}") from None


def _key(body: dict[str, Any]) -> bytes:
    key = _bytes(body, "key")
    if not key:
        raise _error(INVALID_ARGUMENT, NO_KEY)
    return key


def _int(body: dict[str, Any], name: str) -> int:
    """An int64 field: a string on the wire (a number is taken too)."""
    try:
        return int(body.get(name) or 0)
    except (ValueError, TypeError):
        raise _error(INVALID_ARGUMENT, f"bad {name}: {body.get(name)!r}") from None


def _enum(body: dict[str, Any], name: str, names: tuple[str, ...]) -> str:
    value = body.get(name)
    if value is None or value == "":
        return names[0]
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        if 0 <= int(value) < len(names):
            return names[int(value)]
    elif value in names:
        return str(value)
    raise _error(INVALID_ARGUMENT, f"invalid value for enum {name}: {value!r}")


def _filtered(kvs: list[KV], body: dict[str, Any]) -> list[KV]:
    """The range's min/max create and mod revision filters (0: none)."""
    low_mod, high_mod = _int(body, "min_mod_revision"), _int(body, "max_mod_revision")
    low_create, high_create = _int(body, "min_create_revision"), _int(body, "max_create_revision")
    return [
        kv
        for kv in kvs
        if (not low_mod or kv.mod >= low_mod)
        and (not high_mod or kv.mod <= high_mod)
        and (not low_create or kv.create >= low_create)
        and (not high_create or kv.create <= high_create)
    ]


def _sort_key(kv: KV, target: str) -> bytes | int:
    if target == "KEY":
        return kv.key
    if target == "VALUE":
        return kv.value
    return {"VERSION": kv.version, "CREATE": kv.create, "MOD": kv.mod}[target]


def _holds(kv: KV | None, target: str, result: str, want: int | bytes) -> bool:
    have: int | bytes
    if target == "VALUE":
        have = kv.value if kv is not None else b""
    elif kv is None:
        have = 0
    else:
        have = {"VERSION": kv.version, "CREATE": kv.create, "MOD": kv.mod, "LEASE": kv.lease}[
            target
        ]
    if result == "EQUAL":
        return have == want
    if result == "NOT_EQUAL":
        return have != want
    return have > want if result == "GREATER" else have < want  # type: ignore[operator]


def _op(op: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for kind in IN_TXN:
        if kind in op:
            return kind, op[kind] or {}
    raise _error(UNIMPLEMENTED, f"SimEtcd has no such operation in a txn: {sorted(op)}")


def _check_branch(ops: list[dict[str, Any]]) -> None:
    """etcd's checks of a branch, before anything is compared: every key given, and no
    key put twice, or put and deleted (two deletes may overlap). A delete to "\\0" is
    an empty interval to etcd's check (its quirk), so it is here too."""
    parsed = [(kind, request, _key(request)) for kind, request in map(_op, ops)]
    deletes = [
        (key, _bytes(request, "range_end"))
        for kind, request, key in parsed
        if kind == "request_delete_range"
    ]
    puts: set[bytes] = set()
    for kind, _, key in parsed:
        if kind != "request_put":
            continue
        if key in puts or any(key == s if not e else s <= key < e for s, e in deletes):
            raise _error(INVALID_ARGUMENT, DUPLICATE_KEY)
        puts.add(key)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise _error(INVALID_ARGUMENT, str(exc)) from None
    if not isinstance(body, dict):
        raise _error(INVALID_ARGUMENT, f"a request is a JSON object, not {type(body).__name__}")
    return body


def _dumps(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode()


def _respond(
    start_response: Callable[..., Any], status: int, body: bytes, content_type: str
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]
