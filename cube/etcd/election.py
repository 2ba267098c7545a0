"""Leader election on etcd, by etcd's own recipe (its ``concurrency`` package), small.

Each candidate writes a key ``<prefix>/<lease ID>`` on a lease of its own; the key with
the lowest create revision leads. Every other candidate waits for the deletion of the
key just before its own (not the leader's, so a resignation wakes one candidate, not
all). A leader that dies stops renewing its lease; etcd deletes its key when the TTL
runs out, and the next in line leads: failover takes about one TTL.

The leader's **epoch** is its key's create revision: etcd's revisions only grow, and a
new leader's key was created after its predecessor's, so every new leader has a higher
epoch. A worker that remembers the highest epoch it was sent can refuse the orders of a
deposed leader.

**Fencing.** :meth:`Election.fence` gives the compares to add to every write of the
leader: "my key still exists, created at my epoch, on my lease". Once the lease is gone
(expired while the process was paused, say), etcd deletes the key and refuses every
such write, whatever the process believes. And the process learns it first, by its
own clock (:mod:`cube.etcd.lease`): :attr:`Election.is_leader` turns false when the
lease may be gone, before etcd has said anything, and ``on_lost`` is called.

Anyone can read who leads (:func:`current_leader`): the candidate with the lowest key,
its name and epoch, from etcd.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cube import clock, loops
from cube.etcd.client import EtcdClient, KeyValue, prefix_end
from cube.etcd.errors import EtcdError, NotLeader
from cube.etcd.lease import Lease
from cube.etcd.txn import Compare, created_is, lease_is
from cube.etcd.watch import Event, Watch

log = logging.getLogger(__name__)

PAUSE = 0.1  # seconds before campaigning again, the first time
RETRY_MAX = 2.0  # seconds between campaigns while etcd cannot be reached


@dataclass(frozen=True)
class Leader:
    """Who leads: the name it campaigned with, its epoch, its key and what else it
    published (``info``, e.g. its API address)."""

    name: str
    epoch: int
    key: str
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kv(cls, kv: KeyValue) -> Leader:
        try:
            data = json.loads(kv.value)
        except ValueError:
            data = {"Name": kv.value.decode("utf-8", "replace")}
        if not isinstance(data, dict):
            data = {"Name": str(data)}
        name = str(data.pop("Name", ""))
        return cls(name, kv.create_revision, kv.key, data)


def current_leader(client: EtcdClient, prefix: str) -> Leader | None:
    """The leader under ``prefix`` as etcd has it now, or None."""
    start = prefix.rstrip("/") + "/"
    found = client.range(start, prefix_end(start), limit=1, by_create=True)
    return Leader.from_kv(found.kvs[0]) if found.kvs else None


class Election:
    """One candidate, ``name``, for leading under ``prefix``, on leases of ``ttl`` s.

    :meth:`campaign` waits until it leads; :meth:`start` campaigns in a loop
    (:mod:`cube.loops`), again after every loss, until :meth:`close`. Both take the same
    steps (:meth:`_step`). ``on_elected(epoch)`` and ``on_lost(reason)`` are called from
    the election's threads (keep them short)."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        name: str,
        ttl: int = 5,
        *,
        info: dict[str, Any] | None = None,
        on_elected: Callable[[int], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.name = name
        self.ttl = ttl
        self.info = dict(info or {})
        self.on_elected, self.on_lost = on_elected, on_lost
        self.lost_reason = ""
        self._lease: Lease | None = None
        self._key = ""
        self._revision = 0  # our key's create revision (the epoch, once we lead)
        self._leading = False
        self._own: Watch | None = None  # watches our key while we lead
        self._before: tuple[str, Watch] | None = None  # the key just before ours, watched
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._elected = threading.Event()
        self._closed = threading.Event()
        self._loop: loops.Loop | None = None
        self._pause = PAUSE  # seconds before campaigning again after a failed campaign
        self._rest_until = 0.0  # no campaign before then (clock.monotonic(); a resignation)

    # ------------------------------------------------------------------ reading

    @property
    def is_leader(self) -> bool:
        """True only while this candidate leads and its lease surely holds."""
        lease = self._lease
        return self._leading and lease is not None and lease.alive

    @property
    def epoch(self) -> int:
        """This leader's epoch (0 when not leading): send it with every order."""
        return self._revision if self.is_leader else 0

    def leader(self) -> Leader | None:
        """Who leads now, as etcd has it (maybe another process)."""
        return current_leader(self.client, self.prefix)

    def fence(self) -> list[Compare]:
        """The compares that hold only while this candidate leads; add them to every
        write (:class:`~cube.etcd.txn.Txn`, or a store's guard). Raises
        :class:`NotLeader` at once when it does not lead."""
        with self._lock:
            lease, key, epoch = self._lease, self._key, self._revision
            if not self.is_leader or lease is None:
                raise NotLeader(f"{self.name} does not lead ({self.lost_reason or 'not elected'})")
        why = f"{self.name} no longer leads (epoch {epoch})"
        return [created_is(key, epoch, why, fence=True), lease_is(key, lease.id, why, fence=True)]

    def wait_leading(self, timeout: float | None = None) -> bool:
        """Block until this candidate leads (True) or ``timeout`` passes."""
        return self._elected.wait(timeout) and self.is_leader

    # ------------------------------------------------------------------ campaigning

    def campaign(self, timeout: float | None = None) -> bool:
        """Wait until this candidate leads (True), or ``timeout`` passes, or it is
        closed (False; its candidacy is then withdrawn). In the caller's thread; the
        same steps as :meth:`start`'s loop."""
        deadline = None if timeout is None else clock.monotonic() + timeout
        while not self._closed.is_set():
            self._wake.clear()
            wait = self._step()
            if self.is_leader:
                return True
            left = None if deadline is None else deadline - clock.monotonic()
            if wait is None or (left is not None and left <= 0):
                break
            self._wake.wait(max(0.01, wait if left is None else min(wait, left)))
        self._withdraw()
        return False

    def start(self) -> Election:
        """Campaign in a loop, again after every loss, until :meth:`close`."""
        if self._loop is None:
            self._loop = loops.start(f"election-{self.name}", self._step)
        return self

    def resign(self, rest: float = 0.0) -> None:
        """Stop leading (or waiting to): the key goes now, and the next candidate leads
        without waiting for a TTL. Started with :meth:`start`, the candidate then
        campaigns again, at the back of the line, after ``rest`` seconds (:meth:`close`
        to stop)."""
        self._rest_until = clock.monotonic() + rest
        self._lose("resigned")
        self._withdraw()

    def close(self) -> None:
        self._closed.set()
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        self.resign()
        if isinstance(loop, loops.ThreadLoop):
            loop.join(timeout=10)

    def __enter__(self) -> Election:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _step(self) -> float | None:
        """One look at the candidacy, acting on what it finds: the seconds until the
        next look (a deletion before ours, a lost lease or a resignation wakes it
        sooner); None once closed."""
        if self._closed.is_set():
            return None
        if self._leading:
            if self.is_leader:
                lease = self._lease
                return max(0.01, lease.remaining()) if lease is not None else 0.01
            self._lose(self._by_the_clock())
            self._withdraw()
        resting = self._rest_until - clock.monotonic()
        if resting > 0:
            return resting
        if self._lease is not None and not self._candidate():
            self._withdraw()  # a lease lost while waiting in line: a new candidacy
        try:
            self._enter()
            if self._first_in_line() and self._take_office():
                self._pause = PAUSE
                return self._step()
        except (EtcdError, OSError) as exc:
            log.warning("election %s: %s; campaigning again shortly", self.prefix, exc)
            self._withdraw()
            return self._backoff()
        if not self._candidate():
            return self._backoff()
        lease = self._lease
        return max(0.01, lease.remaining()) if lease is not None else 0.01

    def _backoff(self) -> float:
        """The pause before the next campaign, doubling up to :data:`RETRY_MAX`."""
        pause, self._pause = self._pause, min(self._pause * 2, RETRY_MAX)
        return pause

    def _poke(self) -> None:
        """Look again now (whoever is taking the steps: the loop, or :meth:`campaign`)."""
        self._wake.set()
        loop = self._loop
        if loop is not None:
            loop.wake()

    def _by_the_clock(self) -> str:
        """Why leading ended when the loop saw it end (the lease's own reason when it has
        one; otherwise its deadline passed before a renewal got through)."""
        lease = self._lease
        if lease is None:
            return "its candidacy was withdrawn"
        return lease.lost_reason or f"lease {lease.id:x} not renewed within its {lease.ttl} s"

    def _enter(self) -> None:
        """Take a lease and put our key on it (once per candidacy)."""
        if self._candidate():
            return
        lease = Lease(self.client, self.ttl, on_lost=self._lease_lost).grant()
        key = f"{self.prefix}/{lease.id:x}"
        value = json.dumps({"Name": self.name, **self.info})
        try:
            self.client.put(key, value, lease=lease.id)
            kv = self.client.get(key)  # its create revision (a put retried would hide it)
        except Exception:
            lease.revoke()
            raise
        if kv is None:
            lease.revoke()
            raise NotLeader(f"{self.name}'s candidacy vanished at once (lease {lease.id:x})")
        with self._lock:
            self._lease, self._key, self._revision = lease, key, kv.create_revision

    def _candidate(self) -> bool:
        lease = self._lease
        return lease is not None and lease.alive and bool(self._key)

    def _first_in_line(self) -> bool:
        """Whether no candidate's key was created before ours; if one was, its
        deletion is watched (it wakes this candidate)."""
        before = self.client.range(
            self.prefix + "/",
            prefix_end(self.prefix + "/"),
            limit=1,
            by_create=True,
            descending=True,
            max_create_revision=self._revision - 1,
        )
        if not before.kvs:
            self._unwatch_before()
            return True
        key = before.kvs[0].key
        if self._before is None or self._before[0] != key:
            self._unwatch_before()

            def deleted(event: Event) -> None:
                if event.kind == "delete":
                    self._poke()

            watch = self.client.watch(
                key, deleted, from_revision=before.revision + 1, name="election-wait"
            )
            self._before = (key, watch)
        return False

    def _unwatch_before(self) -> None:
        before, self._before = self._before, None
        if before is not None:
            before[1].close()

    def _take_office(self) -> bool:
        """Confirm our key is still ours, then lead."""
        kv = self.client.get(self._key)
        with self._lock:
            if kv is None or kv.create_revision != self._revision or not self._candidate():
                self._withdraw()
                return False
            self._leading = True
            self.lost_reason = ""
            self._own = self.client.watch(
                self._key,
                self._own_key_changed,
                from_revision=kv.mod_revision + 1,
                name="election-own",
            )
            self._elected.set()
        log.info("%s leads %s (epoch %d)", self.name, self.prefix, self._revision)
        _call(self.on_elected, self._revision)
        return True

    def _own_key_changed(self, event: Event) -> None:
        if event.kind == "delete":
            self._lose("its leader key was deleted")
            self._withdraw()

    def _lease_lost(self, reason: str) -> None:
        self._poke()
        self._lose(reason)

    def _lose(self, reason: str) -> None:
        with self._lock:
            if not self._leading:
                return
            self._leading = False
            self._elected.clear()
            self.lost_reason = reason
            self._rest_until = max(self._rest_until, clock.monotonic() + self._backoff())
            own, self._own = self._own, None
        self._poke()
        log.warning("%s no longer leads %s: %s", self.name, self.prefix, reason)
        if own is not None:
            own.close()
        _call(self.on_lost, reason)

    def _withdraw(self) -> None:
        """Give up the candidacy: revoke the lease (etcd deletes our key with it)."""
        with self._lock:
            lease, self._lease, self._key = self._lease, None, ""
        self._unwatch_before()
        if lease is not None:
            lease.revoke()


def _call(callback: Callable[[Any], None] | None, arg: Any) -> None:
    if callback is None:
        return
    try:
        callback(arg)
    except Exception:
        log.exception("an election callback failed")
