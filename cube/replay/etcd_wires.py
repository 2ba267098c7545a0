"""The managers' etcd in the simulation: the real client, its calls and watches carried
over the simulated network to :class:`~cube.replay.etcd.SimEtcd`.

:class:`SimEtcdClient` is the production :class:`~cube.etcd.EtcdClient` with two things
swapped: its HTTP session (each call goes over :class:`~cube.replay.wires.Wires`, where
it can be lost, or meet a partition or a paused etcd) and its watches
(:class:`SimWatch`). Everything above it is the real code: the stores and their
compare-and-swap, transactions and fences, leases, the election.

A client here never waits for etcd to come back within a call (its patience is 0): time
moves only between events, so a call either gets through now or fails now, and the
caller's own retries (its next round) do the waiting, as they would in production.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cube.etcd import Election, EtcdClient
from cube.etcd.client import KeyValue
from cube.etcd.watch import Event
from cube.replay.etcd import HistoryCompacted, SimEtcd
from cube.replay.wires import SimSession, Wires
from cube.replay.world import World

if TYPE_CHECKING:
    from cube.replay.cluster import SimCluster

log = logging.getLogger(__name__)

ETCD = "etcd"  # the simulated etcd's host name
URL = f"http://{ETCD}:2379"
LATENCY = (0.001, 0.02)  # seconds before a watch hears of a change
RETRY = 0.5  # seconds before a watch cut off from etcd tries again


class SharedEtcd:
    """The etcd several managers share: a host on the wires, whose leases run out on the
    world's clock (each expiry is an event), and whose changes reach the open watches."""

    def __init__(self, world: World, wires: Wires) -> None:
        self.world = world
        self.etcd = SimEtcd(world.monotonic, on_change=self._changed)
        self.watches: list[SimWatch] = []
        self._expiry_at: float | None = None
        wires.host(ETCD).app = self._app

    @property
    def revision(self) -> int:
        return self.etcd.revision

    def leads(self, election: Election) -> bool:
        """Whether etcd has ``election``'s candidate leading now: the first key in line
        under its prefix is its own, on a lease etcd still has."""
        lease = election._lease
        first = self.etcd.first_created(f"{election.prefix}/")
        return (
            lease is not None
            and first is not None
            and first == election._key
            and self.etcd.lease_alive(lease.id)
        )

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """etcd answering one call; then its next lease expiry is on the world's queue."""
        answer = self.etcd.app(environ, start_response)
        self._arm_expiry()
        return answer

    def _arm_expiry(self) -> None:
        due = self.etcd.next_expiry()
        if due is None:
            return
        world = self.world
        at = due - world.monotonic() + world.elapsed
        if self._expiry_at is None or at < self._expiry_at or self._expiry_at < world.elapsed:
            self._expiry_at = at
            world.at(max(at, world.elapsed), "etcd lease expiry", self._expire)

    def _expire(self) -> None:
        self._expiry_at = None
        self.etcd.expire()
        self._arm_expiry()

    def _changed(self) -> None:
        self.watches = [watch for watch in self.watches if watch.alive]
        for watch in self.watches:
            watch.changed()


class SimEtcdClient(EtcdClient):
    """The real client, over the simulated network, from component ``source``."""

    def __init__(self, cluster: SimCluster, source: str) -> None:
        super().__init__(URL, timeout=1.0, patience=0.0)
        self.cluster, self.source = cluster, source
        self._sim_session = SimSession(cluster.wires, source)

    def _session(self) -> Any:
        return self._sim_session

    def call(
        self, path: str, body: dict[str, Any], *, retry: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """One try, whatever the caller's patience: see the module's docstring."""
        return super().call(path, body, retry=retry, timeout=0.0)

    def watch(  # type: ignore[override]
        self,
        key: str,
        callback: Callable[[Event], None],
        *,
        end: str | None = None,
        from_revision: int = 0,
        on_compacted: Callable[[int], int | None] | None = None,
        **options: Any,
    ) -> SimWatch:
        return SimWatch(self.cluster, key, callback, end, from_revision, on_compacted).start()


class SimWatch:
    """A watch stream from etcd to the component that opened it. Each change reaches it
    a moment later, in order, unless it is cut off, paused or down: then it catches up
    from where it was once it can (a real watch reconnects and resumes likewise), or is
    told of a compaction (:class:`~cube.etcd.Watch`'s ``on_compacted``)."""

    def __init__(
        self,
        cluster: SimCluster,
        key: str,
        callback: Callable[[Event], None],
        end: str | None,
        from_revision: int,
        on_compacted: Callable[[int], int | None] | None,
    ) -> None:
        self.cluster, self.key, self.end = cluster, key, end
        self.callback, self.on_compacted = callback, on_compacted
        self.owner = cluster.running
        self.life = cluster.life(self.owner)
        self.next_revision = from_revision or self._etcd.revision + 1
        self.closed = False
        self._queued = False

    @property
    def revision(self) -> int:
        return self.next_revision - 1

    @property
    def _etcd(self) -> SharedEtcd:
        assert self.cluster.etcd is not None, "a watch of etcd with no etcd"
        return self.cluster.etcd

    def start(self) -> SimWatch:
        self._etcd.watches.append(self)
        self.changed()
        return self

    def close(self, timeout: float = 0.0) -> None:
        self.closed = True

    def __enter__(self) -> SimWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return not self.closed and self.cluster.life(self.owner) == self.life

    def changed(self) -> None:
        """etcd has a new revision: deliver it soon (once per batch)."""
        if self._queued or not self.alive:
            return
        self._queued = True
        world = self.cluster.world
        world.after(world.rng.uniform(*LATENCY), "etcd watch", self._deliver)

    def _deliver(self) -> None:
        self._queued = False
        if not self.alive:
            return
        c = self.cluster
        if self.owner in c.paused or not c.wires.reaches(self.owner, ETCD):
            self._queued = True
            c.world.after(RETRY, "etcd watch again", self._deliver)
            return
        c.run_as(self.owner, self._catch_up)

    def _catch_up(self) -> None:
        etcd = self._etcd.etcd
        try:
            events = etcd.events(self.key, self.end, self.next_revision)
        except HistoryCompacted as exc:
            resume = self.on_compacted(exc.oldest) if self.on_compacted is not None else None
            self.next_revision = resume or exc.oldest
            events = etcd.events(self.key, self.end, self.next_revision)
        for raw in events:
            if not self.alive:
                return
            kind = "delete" if raw.get("type") == "DELETE" else "put"
            event = Event(kind, KeyValue.from_wire(raw["kv"]))
            self.next_revision = event.revision + 1
            try:
                self.callback(event)
            except Exception:  # as the real watch: logged, and the stream goes on
                log.exception("a watch callback failed on %s %s", kind, event.key)
        self.next_revision = max(self.next_revision, etcd.revision + 1)
