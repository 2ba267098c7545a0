"""Several managers on one etcd: every one answers, one acts.

Every manager serves the whole API. It reads from its records, which a watch on the
shared task store keeps current with what any manager writes (:class:`Mirror`), and it
writes desired state (a submission, a stop) into etcd itself, each write conditional
on the revision it last saw of the task, as every Kubernetes API server does.

One of them, elected with an etcd lease (:class:`~cube.etcd.election.Election`), runs
the control loops (:class:`~cube.manager.control.Control`): placement, orders,
restarts, moves. Its decisions are written through **fenced** stores (every write holds
only while its lease does), and its orders to workers carry its **epoch**, signed
(:mod:`cube.proof`), so that a worker refuses a deposed leader's orders. A leader whose
order a worker refuses because it follows a proven newer leader steps down. A leader
learns it lost by its own clock, before etcd says anything, and stops acting at once;
the next in line takes over the due times its predecessor left in etcd, looks at every
unfinished task (as a manager started again does), and goes on. The others only watch,
and probe the workers so that ``GET /nodes`` answers everywhere.

Terms change in a loop of their own (:class:`Leadership`, a :mod:`cube.loops` step): the
election's callbacks only wake it, so taking and leaving office never run on etcd's
threads, and never two at once.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from cube import loops
from cube.etcd import Election, EtcdError, StoreEvent, Watch
from cube.etcd.series import series
from cube.manager.consistency import Position
from cube.proof import LeaderSecret, Stamp
from cube.task import Task

if TYPE_CHECKING:
    from cube.manager.manager import Manager
    from cube.manager.nodes import Nodes

log = logging.getLogger(__name__)

STEP_DOWN_REST = 3  # lease TTLs a manager that stepped down waits before standing again
IDLE = 3600.0  # seconds the office loop sleeps when nothing wakes it


class Mirror:
    """Keeps a manager's records and history current with the shared stores."""

    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self._watches: list[Watch] = []
        self.position = Position(manager.tasks.records.revision)  # what reads catch up to

    def start(self) -> None:
        records, stores = self.m.tasks.records, self.m.stores
        self._watches = [
            stores.tasks.watch(  # type: ignore[attr-defined]
                self._task_changed,
                from_revision=records.revision + 1,
                on_compacted=self._reload,
                name="mirror tasks",
            ),
            stores.history.watch(  # type: ignore[attr-defined]
                lambda _: self.m.tasks.history.changes.bump(), name="mirror history"
            ),
        ]

    def close(self) -> None:
        for watch in self._watches:
            watch.close()

    def _task_changed(self, event: StoreEvent[Task]) -> None:
        if event.kind == "unreadable":
            log.warning("task %s was written unreadable: %s", event.key, event.error)
            return
        self.m.tasks.take_in(event.key, event.value, event.revision)
        self.position.advance(event.revision)

    def read_all(self) -> int:
        """Read every task again from etcd (one linearizable range); returns the
        revision read at."""
        snapshot = self.m.stores.tasks.snapshot()  # type: ignore[attr-defined]
        for key, versioned in snapshot.entries.items():
            self.m.tasks.take_in(key, versioned.value, versioned.mod_revision)
        for key in {str(t.id) for t in self.m.tasks.records.all()} - set(snapshot.entries):
            self.m.tasks.take_in(key, None, snapshot.revision)
        self.position.advance(snapshot.revision)
        return int(snapshot.revision)

    def _reload(self, oldest: int) -> int:
        """etcd no longer has the history this mirror needs: read every task again."""
        revision = self.read_all()
        log.warning("the task watch lost history before %d; read every task again", oldest)
        return revision + 1


class Leadership:
    """Runs the manager's control loops only while ``election`` says it leads."""

    def __init__(
        self,
        manager: Manager,
        election: Election,
        secret: LeaderSecret | None = None,
        series_key: str = "",
    ) -> None:
        self.m = manager
        self.election = election
        self.secret = secret
        self.series_key = series_key or f"{election.prefix}-series"
        self.mirror = Mirror(manager)
        self.term = 0  # the epoch of the term being served (0: not acting)
        self.last_term = 0  # the latest term served, what orders say
        self._stamp: Stamp | None = None  # last_term, signed
        self._closed = threading.Event()
        self._office: loops.Loop | None = None
        election.on_elected = lambda _epoch: self._wake()
        election.on_lost = self._lost

    @property
    def acting(self) -> bool:
        """This manager runs the control loops, and its lease surely holds."""
        return self.term != 0 and self.election.is_leader

    @property
    def epoch(self) -> int:
        """The epoch of the latest term this manager served (0: it never led)."""
        return self.last_term

    @property
    def stamp(self) -> Stamp | None:
        """What every order to a worker carries: the latest term this manager served,
        signed (None: it never led, or it has no secret to sign with). Still sent once
        the term is over: an order decided in that term and sent late (the process froze
        past its last check) must still say how old it is, so that the worker refuses
        it."""
        return self._stamp

    def newer(self, stamp: Stamp | None) -> bool:
        """Whether ``stamp`` (what a worker says it follows) proves that a newer leader
        than this one exists: signed with the managers' secret, and newer."""
        own = self._stamp
        if stamp is None or self.secret is None or own is None:
            return False
        return self.secret.proves(stamp) and own < stamp

    def step_down(self, why: str) -> None:
        """A newer leader exists: stop acting now, and stand again only after a pause
        (another candidate leads meanwhile, if there is one)."""
        if not self.term:
            return
        log.warning("stepping down: %s", why)
        self.election.resign(rest=STEP_DOWN_REST * self.election.ttl)

    def leader(self) -> tuple[str, int]:
        """The leading manager's API address and epoch, as etcd has them ("", 0: none
        now, or etcd cannot say)."""
        try:
            found = self.election.leader()
        except EtcdError:
            return "", 0
        if found is None:
            return "", 0
        return str(found.info.get("API") or found.name), found.epoch

    def start(self) -> None:
        self.mirror.start()
        self.m.look_out()
        self._office = loops.start("manager-office", self._change)
        self.election.start()

    def close(self) -> None:
        self._closed.set()
        office, self._office = self._office, None
        if office is not None:
            office.stop()
        if isinstance(office, loops.ThreadLoop):
            office.join(timeout=15)
        if self.term:
            self.term = 0
            self.m.leave_office()
        self.election.close()
        self.mirror.close()

    def _wake(self) -> None:
        office = self._office
        if office is not None:
            office.wake()

    def _lost(self, reason: str) -> None:
        log.warning("this manager no longer leads: %s", reason)
        self._wake()

    def _change(self) -> float | None:
        """Take or leave office as the election says now (one change at a time: the
        office loop's step; the election's callbacks wake it)."""
        if self._closed.is_set():
            return None
        leading, epoch = self.election.is_leader, self.election.epoch
        if self.term and (not leading or epoch != self.term):
            over, self.term = self.term, 0
            self.m.leave_office()
            log.warning("stopped acting: epoch %d is over, its control loops closed", over)
        if leading and not self.term:
            try:
                self._sign(epoch)
                self.term = self.last_term = epoch
                self.m.take_office(epoch)
            except (EtcdError, OSError) as exc:
                log.warning("could not take office (%s); resigning", exc)
                self.term = 0
                self.m.leave_office()
                self.election.resign()
        return IDLE

    def _sign(self, epoch: int) -> None:
        """The stamp of a term starting at ``epoch``, in the series of the etcd it is
        won on (read or made now: etcd may have been replaced since the last term)."""
        if self.secret is None:
            self._stamp = None
            return
        found = series(self.election.client, self.series_key)
        self._stamp = self.secret.sign(found.born, found.id, epoch)


class Lookout:
    """A manager that does not act still probes the workers (reads only), so that
    ``GET /nodes`` answers the same on every manager."""

    def __init__(self, nodes: Nodes, interval: float) -> None:
        self.nodes, self.interval = nodes, interval
        self._loop: loops.Loop | None = None
        self._closed = False

    def start(self) -> Lookout:
        self._loop = loops.start("manager-lookout", self.look)
        return self

    def close(self) -> None:
        self._closed = True
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        if isinstance(loop, loops.ThreadLoop):
            loop.join(timeout=10)

    def look(self) -> float | None:
        """Probe every worker once; the seconds until the next round."""
        for name in list(self.nodes.by_name):
            if self._closed:
                return None
            try:
                self.nodes.take(name, self.nodes.ask(name))
            except Exception:
                log.exception("probing %s failed; carrying on", name)
        return None if self._closed else self.interval
