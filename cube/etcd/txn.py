"""Conditional writes: etcd transactions, built from compares and operations.

etcd's one multi-key primitive is the transaction: *if* every compare holds, *then* do
these puts and deletes, all at one revision, *else* nothing (here: read the compared
keys, to say which compare failed). Everything Cube needs to be safe with several
managers is a compare:

- :func:`mod_is` (a key unchanged since it was read at that revision; 0: still
  absent) for compare-and-swap;
- :func:`created_is` and :func:`lease_is` for fencing: the leader's key still exists,
  as created when it won, on its lease (:meth:`cube.etcd.election.Election.fence`).

A compare made by a fence is marked ``fence=True``, so a failed transaction tells
"someone else wrote first" (:class:`~cube.etcd.errors.CasConflict`) from "you no longer
lead" (:class:`~cube.etcd.errors.NotLeader`).

etcd refuses two operations on one key in a transaction, and more than 128 of each
kind (``--max-txn-ops``); it answers with an error, and nothing is applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cube.etcd.client import EtcdClient, KeyValue, b64
from cube.etcd.errors import CasConflict, NotLeader

if TYPE_CHECKING:
    from cube.etcd.client import TxnResult

_FIELD = {"MOD": "mod_revision", "CREATE": "create_revision", "VERSION": "version"}
_FIELD |= {"LEASE": "lease", "VALUE": "value"}


@dataclass(frozen=True)
class Compare:
    """``target`` of ``key`` (``MOD``, ``CREATE``, ``VERSION``, ``LEASE``, ``VALUE``)
    compared (``EQUAL``, ``NOT_EQUAL``, ``GREATER``, ``LESS``) with ``value``. An
    absent key has every revision, version and lease 0."""

    key: str
    target: str
    result: str
    value: int | bytes
    why: str = ""
    fence: bool = False

    def wire(self) -> dict[str, Any]:
        field = _FIELD[self.target]
        value = b64(self.value) if isinstance(self.value, bytes) else str(self.value)
        return {"key": b64(self.key), "target": self.target, "result": self.result, field: value}

    def holds(self, kv: KeyValue | None) -> bool:
        """Whether the compare holds for ``kv`` (None: the key is absent), as etcd
        judges it: to say which compare failed."""
        if self.target == "VALUE":
            if kv is None:
                return False  # etcd: a value compare on an absent key fails
            have: int | bytes = kv.value
        else:
            have = getattr(kv, _FIELD[self.target], 0) if kv is not None else 0
        want = self.value
        if self.result == "EQUAL":
            return have == want
        if self.result == "NOT_EQUAL":
            return have != want
        if self.result == "GREATER":
            return have > want  # type: ignore[operator]
        return have < want  # type: ignore[operator]


def mod_is(key: str, revision: int, why: str = "") -> Compare:
    """``key`` was last written at ``revision`` (0: it does not exist)."""
    if revision == 0:
        return absent(key, why)
    return Compare(key, "MOD", "EQUAL", revision, why or f"{key} changed since {revision}")


def absent(key: str, why: str = "") -> Compare:
    return Compare(key, "CREATE", "EQUAL", 0, why or f"{key} exists")


def created_is(key: str, revision: int, why: str = "", fence: bool = False) -> Compare:
    return Compare(key, "CREATE", "EQUAL", revision, why or f"{key} recreated", fence)


def lease_is(key: str, lease: int, why: str = "", fence: bool = False) -> Compare:
    return Compare(key, "LEASE", "EQUAL", lease, why or f"{key} not on lease {lease:x}", fence)


class Keyed(Protocol):
    """What a transaction needs of a store (:class:`~cube.etcd.store.EtcdStore`)."""

    def path(self, key: str) -> str: ...

    def encode(self, value: Any) -> str: ...

    def guard(self) -> list[Compare]: ...


class Txn:
    """Puts and deletes, across stores, applied all together or not at all::

        Txn(client).require(tasks.unchanged(key, rev), *election.fence()).put(
            tasks, key, task
        ).delete(timers, key).commit()

    A store with a guard (a fenced view, :meth:`EtcdStore.with_guard`) adds its
    compares by itself, so a leader's write cannot forget its fence."""

    def __init__(self, client: EtcdClient) -> None:
        self.client = client
        self.compares: list[Compare] = []
        self.ops: list[dict[str, Any]] = []

    def require(self, *compares: Compare) -> Txn:
        for compare in compares:
            if compare not in self.compares:
                self.compares.append(compare)
        return self

    def put(self, store: Keyed, key: str, value: Any, lease: int = 0) -> Txn:
        self.require(*store.guard())
        return self.put_raw(store.path(key), store.encode(value), lease)

    def delete(self, store: Keyed, key: str) -> Txn:
        self.require(*store.guard())
        return self.delete_raw(store.path(key))

    def put_raw(self, key: str, value: str | bytes, lease: int = 0) -> Txn:
        put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = str(lease)
        self.ops.append({"request_put": put})
        return self

    def delete_raw(self, key: str, end: str | None = None) -> Txn:
        delete = {"key": b64(key)} | ({"range_end": b64(end)} if end is not None else {})
        self.ops.append({"request_delete_range": delete})
        return self

    def commit(self) -> int:
        """Apply; the revision of the write. Raises :class:`NotLeader` when a fence
        failed, :class:`CasConflict` when another compare did (nothing written), or
        :class:`~cube.etcd.errors.OutcomeUnknown` when the answer was lost."""
        keys = list(dict.fromkeys(c.key for c in self.compares))
        reads = [{"request_range": {"key": b64(k)}} for k in keys]
        result = self.client.txn([c.wire() for c in self.compares], self.ops, reads)
        if result.succeeded:
            return result.revision
        raise failure(self.compares, keys, result)


def failure(compares: Iterable[Compare], keys: list[str], result: TxnResult) -> Exception:
    """The error for a failed transaction, naming the compares that failed (judged on
    the keys read in its else-branch, at the same revision)."""
    found: dict[str, KeyValue | None] = dict.fromkeys(keys)
    for response in result.responses:
        for kv in response.get("response_range", {}).get("kvs", []):
            value = KeyValue.from_wire(kv)
            found[value.key] = value
    failed = [c for c in compares if not c.holds(found.get(c.key))]
    fences = [c for c in failed if c.fence]
    if fences:
        return NotLeader(f"no longer the leader: {fences[0].why}")
    return CasConflict(failed or list(compares))
