"""The simulated etcd's keyspace: every key, at every revision still kept (etcd's MVCC).

A request's writes are made at the next revision, ``revision + 1``, and become the
store's all at once when :meth:`KeySpace.commit` takes them, or are undone by
:meth:`KeySpace.rollback` (etcd applies a request whole or not at all). The last
``history`` events are kept, to read the keys as they were at an older revision and to
tell watches what changed; older ones are compacted away. Keys are bytes, kept in byte
order, as etcd compares them.

Plain data only: the gateway's wire forms, its errors and its checks are
:mod:`cube.replay.etcd`'s.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class KV:
    """One key at one revision, as etcd's ``mvccpb.KeyValue``."""

    key: bytes
    value: bytes
    create: int
    mod: int
    version: int
    lease: int


@dataclass(frozen=True)
class Change:
    """One event of the history: ``key`` put (``kv``) or deleted (None) at ``revision``,
    with what it was before (to read the store as it was, undoing the newer ones)."""

    revision: int
    key: bytes
    kv: KV | None
    prev: KV | None


class KeySpace:
    """The keys now, and the last ``history`` changes that led to them."""

    def __init__(self, history: int) -> None:
        self.history = max(1, history)  # events kept before the oldest are compacted away
        self.revision = 1  # etcd's store starts at 1
        self.compacted = 0  # reads and watches from before this revision fail (0: none)
        self.dirty = False  # changes made at revision + 1, until commit takes them
        self._kvs: dict[bytes, KV] = {}
        self._keys: list[bytes] = []  # the keys of _kvs, in byte order
        self._log: deque[Change] = deque()  # the events kept, oldest first

    def get(self, key: bytes) -> KV | None:
        return self._kvs.get(key)

    def view(self, start: bytes, end: bytes, revision: int) -> list[KV]:
        """The keys in [start, end) as they were at ``revision`` (0: now), in key
        order: those of now, with the newer changes undone."""
        low = bisect.bisect_left(self._keys, start)
        if not end:
            high = low + int(low < len(self._keys) and self._keys[low] == start)
        else:
            high = len(self._keys) if end == b"\0" else bisect.bisect_left(self._keys, end)
        found = {key: self._kvs[key] for key in self._keys[low:high]}
        if revision <= 0:
            return list(found.values())
        for change in reversed(self._log):
            if change.revision <= revision:
                break
            if within(change.key, start, end):
                if change.prev is None:
                    found.pop(change.key, None)
                else:
                    found[change.key] = change.prev
        return [found[key] for key in sorted(found)]

    def since(self, revision: int, start: bytes, end: bytes) -> list[Change]:
        """The changes kept of the keys in [start, end) from ``revision`` on, oldest
        first."""
        found = []
        for change in reversed(self._log):
            if change.revision < revision:
                break
            if within(change.key, start, end):
                found.append(change)
        return found[::-1]

    def first_created(self, prefix: str) -> str | None:
        """The key under ``prefix`` created first (an election's leader)."""
        start = prefix.encode()
        under = [kv for key, kv in self._kvs.items() if key.startswith(start)]
        return min(under, key=lambda kv: kv.create).key.decode() if under else None

    def leased(self, lease_id: int) -> list[bytes]:
        """The keys on lease ``lease_id``, in key order."""
        return [key for key in self._keys if self._kvs[key].lease == lease_id]

    def change(self, key: bytes, kv: KV | None) -> None:
        """Put ``kv`` at ``key`` (None: delete it) at the next revision, which
        :meth:`commit` then makes the store's."""
        self._log.append(Change(self.revision + 1, key, kv, self._kvs.get(key)))
        self._set(key, kv)
        self.dirty = True

    def rollback(self) -> None:
        """Undo the changes not committed yet (of a request that failed half-way)."""
        while self._log and self._log[-1].revision > self.revision:
            change = self._log.pop()
            self._set(change.key, change.prev)
        self.dirty = False

    def commit(self) -> None:
        """The changes made become one new revision; history past ``history`` events
        goes (whole revisions, so a watch never sees half of one)."""
        if not self.dirty:
            return
        self.dirty = False
        self.revision += 1
        excess = len(self._log) - self.history
        if excess > 0:
            self.compact(self._log[excess].revision)

    def compact(self, revision: int) -> None:
        while self._log and self._log[0].revision < revision:
            self._log.popleft()
        self.compacted = max(self.compacted, revision)

    def _set(self, key: bytes, kv: KV | None) -> None:
        if kv is None:
            if self._kvs.pop(key, None) is not None:
                self._keys.pop(bisect.bisect_left(self._keys, key))
            return
        if key not in self._kvs:
            bisect.insort(self._keys, key)
        self._kvs[key] = kv


def within(key: bytes, start: bytes, end: bytes) -> bool:
    """``key`` in etcd's range: just ``start`` when ``end`` is empty, every key from
    ``start`` when it is "\\0", else [start, end)."""
    if not end:
        return key == start
    return start <= key and (end == b"\0" or key < end)
