"""A :class:`~cube.store.Store` on etcd, with revisions for compare-and-swap.

Each value sits under ``<prefix>/<key>`` as the very JSON text a
:class:`~cube.store.DiskStore` keeps (``{"ID":"...","State":2,...}``), so what an
operator reads with ``etcdctl get --prefix /cube/tasks/`` is the wire format. Listings
come in key order, as DiskStore's, one snapshot read a page at a time. A value that
cannot be read is moved, with its text and the reason, to
``<prefix>.unreadable/<key>`` in one transaction (only if it has not changed since it
was read), as DiskStore moves it to its ``.unreadable`` directory; a value that is not
even text stays where it is and is listed as unreadable (as a pickle stays in a
DiskStore). A full etcd ("database space exceeded") is :class:`~cube.store.StoreFull`.

Beyond the Store interface, every write can be made conditional:

- on the revision read (:meth:`EtcdStore.get_versioned`, :meth:`put_if`,
  :meth:`delete_if`; :meth:`unchanged` for a :class:`~cube.etcd.txn.Txn` spanning
  stores): :class:`~cube.etcd.errors.CasConflict` when someone wrote first;
- on a **guard**, compares added to every write of the store: a leader's view of a
  store (:meth:`with_guard` with :meth:`Election.fence
  <cube.etcd.election.Election.fence>`) writes only while it leads, even through the
  plain :meth:`put` the manager already calls.

The client is the caller's: :meth:`close` leaves it open for the other stores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cube.etcd.client import EtcdClient, KeyValue, prefix_end
from cube.etcd.errors import CasConflict, Compacted, EtcdError
from cube.etcd.txn import Compare, Txn, mod_is
from cube.etcd.watch import Event, Watch
from cube.store import Codec, JsonCodec, Store, StoreError
from cube.text import printable

log = logging.getLogger(__name__)

T = TypeVar("T")
PAGE = 500  # keys per range request when listing


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A value with the revisions a conditional write compares against."""

    value: T
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """Every readable value at one ``revision``: watch from ``revision + 1`` to stay
    current without missing a change."""

    revision: int
    entries: dict[str, Versioned[T]]


@dataclass(frozen=True)
class StoreEvent(Generic[T]):
    """A change seen by :meth:`EtcdStore.watch`: ``put`` (``value`` decoded),
    ``delete`` (no value) or ``unreadable`` (a put whose value cannot be read,
    ``error`` says why)."""

    kind: str
    key: str
    value: T | None
    revision: int
    error: str = ""


class EtcdStore(Store[T]):
    """The values under ``<prefix>/`` in etcd, as a Cube store."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        codec: Codec[T] | None = None,
        *,
        guard: Callable[[], Sequence[Compare]] | None = None,
    ) -> None:
        prefix = prefix.rstrip("/")
        if not prefix or "\0" in prefix:
            raise ValueError(f"an etcd store needs a prefix such as /cube/tasks, not {prefix!r}")
        self.client = client
        self.prefix = prefix
        self.codec = codec or JsonCodec()  # type: ignore[assignment]
        self.name = f"etcd {prefix}"
        self._guard = guard
        self._start, self._aside_start = f"{prefix}/", f"{prefix}.unreadable/"

    def __repr__(self) -> str:
        return f"EtcdStore({self.client!r}, {self.prefix!r})"

    # ------------------------------------------------------------ for transactions

    def path(self, key: str) -> str:
        """The etcd key that holds ``key``."""
        return self._start + str(key)

    def encode(self, value: T) -> str:
        """``value`` as stored: the same JSON text :meth:`put` writes."""
        return json.dumps(self.codec.encode(value), separators=(",", ":"))

    def guard(self) -> list[Compare]:
        """The compares every write of this store carries (may raise
        :class:`~cube.etcd.errors.NotLeader` at once)."""
        return list(self._guard()) if self._guard is not None else []

    def with_guard(self, guard: Callable[[], Sequence[Compare]] | None) -> EtcdStore[T]:
        """The same store, every write of which is conditional on ``guard()``."""
        return EtcdStore(self.client, self.prefix, self.codec, guard=guard)

    def unchanged(self, key: str, revision: int) -> Compare:
        """Holds while ``key`` is as read at ``revision`` (0: still absent)."""
        why = f"{self.name}: {key} changed since revision {revision}"
        return mod_is(self.path(key), revision, why)

    # ------------------------------------------------------------ revision-aware

    def get_versioned(self, key: str) -> Versioned[T]:
        """The value with its revisions; KeyError when absent."""
        kv = self.client.get(self.path(key))
        if kv is None:
            raise KeyError(key)
        value = self._decode(key, self._text(key, kv))
        return Versioned(value, kv.mod_revision, kv.create_revision)

    def put_if(self, key: str, value: T, revision: int) -> int:
        """Write only if ``key`` is still as read at ``revision`` (0: only if absent);
        returns the new revision. :class:`CasConflict` when it changed."""
        txn = Txn(self.client).require(self.unchanged(key, revision))
        return txn.put(self, key, value).commit()

    def delete_if(self, key: str, revision: int) -> int:
        """Delete only if ``key`` is still as read at ``revision``."""
        return Txn(self.client).require(self.unchanged(key, revision)).delete(self, key).commit()

    def snapshot(self) -> Snapshot[T]:
        """Every readable value at one revision (the unreadable set aside)."""
        revision, kvs = self._scan(self._start)
        entries = {
            key: Versioned(value, kv.mod_revision, kv.create_revision)
            for key, value, kv in self._readable(kvs)
        }
        return Snapshot(revision, entries)

    def watch(
        self,
        callback: Callable[[StoreEvent[T]], None],
        from_revision: int = 0,
        on_compacted: Callable[[int], int | None] | None = None,
        **options: Any,
    ) -> Watch:
        """Every change to this store from ``from_revision`` (0: from now), decoded, on
        a thread (:class:`~cube.etcd.watch.Watch`; close it when done)."""

        def deliver(event: Event) -> None:
            key = event.key[len(self._start) :]
            if event.kind == "delete":
                callback(StoreEvent("delete", key, None, event.revision))
                return
            try:
                value = self._decode(key, self._text(key, event.kv))
            except StoreError as exc:
                callback(StoreEvent("unreadable", key, None, event.revision, str(exc)))
                return
            callback(StoreEvent("put", key, value, event.revision))

        options.setdefault("name", f"watch {self.prefix}")
        return self.client.watch(
            self._start,
            deliver,
            end=prefix_end(self._start),
            from_revision=from_revision,
            on_compacted=on_compacted,
            **options,
        )

    # ------------------------------------------------------------ the Store interface

    def items(self) -> list[tuple[str, T]]:
        """Every readable (key, value) in key order, from one snapshot."""
        _, kvs = self._scan(self._start)
        return [(key, value) for key, value, _ in self._readable(kvs)]

    def count(self) -> int:
        return self.client.range(self._start, prefix_end(self._start), count_only=True).count

    def _raw_put(self, key: str, text: str) -> None:
        guard = self.guard()
        if guard:
            Txn(self.client).require(*guard).put_raw(self.path(key), text).commit()
        else:
            self.client.put(self.path(key), text)

    def _raw_get(self, key: str) -> str:
        kv = self.client.get(self.path(key))
        if kv is None:
            raise KeyError(key)
        return self._text(key, kv)

    def _raw_delete(self, key: str) -> None:
        guard = self.guard()
        if not guard:
            deleted, _ = self.client.delete(self.path(key))
            if not deleted:
                raise KeyError(key)
            return
        exists = Compare(self.path(key), "CREATE", "GREATER", 0, f"{key} is absent")
        try:
            Txn(self.client).require(*guard, exists).delete_raw(self.path(key)).commit()
        except CasConflict:
            raise KeyError(key) from None  # the fence held (else NotLeader): it was absent

    def _raw_keys(self) -> list[str]:
        _, kvs = self._scan(self._start, keys_only=True)
        return [kv.key[len(self._start) :] for kv in kvs]

    def _raw_contains(self, key: str) -> bool:
        return self.client.range(self.path(key), count_only=True).count > 0

    def _raw_first_keys(self, limit: int, newest: bool) -> list[str]:
        if limit <= 0:
            return []
        found = self.client.range(
            self._start, prefix_end(self._start), limit=limit, keys_only=True, descending=newest
        )
        return [kv.key[len(self._start) :] for kv in found.kvs]

    def _aside_put(self, key: str, entry: dict[str, Any]) -> None:
        self.client.put(self._aside_start + key, json.dumps(entry))

    def _aside_items(self) -> list[tuple[str, dict[str, Any]]]:
        _, kvs = self._scan(self._aside_start)
        out = []
        for kv in kvs:
            try:
                entry = json.loads(kv.value)
            except ValueError:
                entry = {"Error": "the set-aside entry itself is unreadable", "Raw": None}
            out.append((kv.key[len(self._aside_start) :], entry))
        return out

    def _set_aside(self, key: str, why: str) -> None:
        kv = self.client.get(self.path(key))
        if kv is not None:
            self._set_aside_kv(key, kv, why)

    # ------------------------------------------------------------ plumbing

    def _text(self, key: str, kv: KeyValue) -> str:
        try:
            return kv.value.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError(f"{self.name}: key {key!r} holds bytes that are not text") from None

    def _readable(self, kvs: list[KeyValue]) -> list[tuple[str, T, KeyValue]]:
        """(key, value, kv) for each value that decodes; the others set aside once."""
        out: list[tuple[str, T, KeyValue]] = []
        aside: set[str] | None = None
        for kv in kvs:
            key = kv.key[len(self._start) :]
            try:
                out.append((key, self._decode(key, self._text(key, kv)), kv))
            except StoreError as exc:
                aside = set(self.unreadable()) if aside is None else aside
                if key not in aside:
                    self._set_aside_kv(key, kv, str(exc))
                    aside.add(key)
        return out

    def _set_aside_kv(self, key: str, kv: KeyValue, why: str) -> None:
        """Move an unreadable value aside with its text, in one transaction that holds
        only if it is unchanged; bytes that are not text stay where they are."""
        try:
            raw: str | None = kv.value.decode("utf-8")
        except UnicodeDecodeError:
            raw = None
        entry = json.dumps({"Error": why, "Raw": raw})
        try:
            if raw is None:
                self.client.put(self._aside_start + key, entry)
            else:
                txn = Txn(self.client).require(*self.guard(), mod_is(kv.key, kv.mod_revision))
                txn.put_raw(self._aside_start + key, entry).delete_raw(kv.key).commit()
        except EtcdError as exc:  # changed meanwhile, or not ours to move: next time
            log.info("%s: not set aside now (%s)", printable(why), exc)
            return
        log.warning("%s; set aside%s", printable(why), "" if raw is None else " with its text")

    def _scan(self, start: str, keys_only: bool = False) -> tuple[int, list[KeyValue]]:
        """Every key under ``start``, in key order, at one revision, a page at a time."""
        end = prefix_end(start)
        for attempt in range(3):
            revision, key, out = 0, start, []
            try:
                while True:
                    found = self.client.range(
                        key, end, limit=PAGE, revision=revision, keys_only=keys_only
                    )
                    revision = revision or found.revision
                    out.extend(found.kvs)
                    if not found.more or not found.kvs:
                        return revision, out
                    key = found.kvs[-1].key + "\0"
            except Compacted:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
