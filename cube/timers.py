"""A durable queue of due times: which task must be looked at again, and when.

Every delay in Cube is data here, never a variable that dies with the process: the
restart that waits out its backoff, the post retried in a second, the task waiting for
a worker with room, the stop a busy Docker daemon refused. rq keeps its scheduled jobs
the same way (a registry sorted by when each is due); Kubernetes controllers keep a work
queue of object keys. This is both: one entry per key (a task ID), holding the earliest
time something is due for it, on a :class:`~cube.store.Store`, so that a process killed
at any moment reads back on start exactly what it was waiting for.

"Do it now" is an entry due now, so the same queue is the work queue of the manager's
control loop and of the worker's. Only entries due later than ``DURABLE_AFTER`` seconds
are written to the store: what is due at once is found again on start from the records
themselves (a task that waits to be placed, a worker's order not carried out yet), so
writing it would only add a disk sync to the path every task takes. Wall-clock times
(seconds since the epoch) are stored, since a monotonic clock starts again with every
process.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Iterable
from typing import Any

from cube import clock
from cube.store import Store, StoreError, StoreFailed

log = logging.getLogger(__name__)

DURABLE_AFTER = 0.5  # seconds: sooner than this is "now", and kept in memory only


class TimerQueue:
    """Keys with due times, durable on ``store``, with a condition to wait on.

    Thread-safe. :meth:`schedule` keeps the earlier of two times for a key (asking for
    "now" while a retry in ten seconds is queued makes it now, and not the reverse);
    :meth:`set` replaces it. :meth:`pop_due` takes what is due, earliest first."""

    def __init__(self, store: Store[Any]) -> None:
        self.store = store
        self._due: dict[str, float] = {}
        self._why: dict[str, str] = {}
        self._durable: set[str] = set()  # keys with an entry in the store
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self.changed = threading.Condition(threading.RLock())
        self._load()

    # ------------------------------------------------------------------ changes

    def schedule(self, key: str, due: float | None = None, why: str = "") -> bool:
        """Make ``key`` due at ``due`` (default: now) unless it is due sooner already.
        Returns True when the queue changed."""
        due = clock.now() if due is None else due
        with self.changed:
            if key in self._due and self._due[key] <= due:
                return False
            self._put(key, due, why)
            return True

    def schedule_many(self, keys: Iterable[str], due: float | None = None, why: str = "") -> None:
        due = clock.now() if due is None else due
        with self.changed:
            for key in keys:
                self.schedule(key, due, why)

    def set(self, key: str, due: float | None, why: str = "") -> None:
        """Make ``key`` due at exactly ``due``; ``None`` removes it."""
        with self.changed:
            if due is None:
                self.remove(key)
            elif self._due.get(key) != due:
                self._put(key, due, why)

    def remove(self, key: str) -> None:
        with self.changed:
            if self._due.pop(key, None) is not None:
                self._why.pop(key, None)
            if key in self._durable:
                self._durable.discard(key)
                try:
                    self.store.delete(key)
                except KeyError:
                    pass
                except (OSError, StoreFailed) as exc:  # a next life looks at it once more
                    log.warning("the due time of %s stays in the store: %s", key, exc)

    # ------------------------------------------------------------------ reading

    def pop_due(self, now: float | None = None, limit: int | None = None) -> list[str]:
        """Remove and return the keys due by ``now``, earliest first."""
        now = clock.now() if now is None else now
        out: list[str] = []
        with self.changed:
            while self._heap and (limit is None or len(out) < limit):
                due, _, key = self._heap[0]
                if self._due.get(key) != due:
                    heapq.heappop(self._heap)  # superseded by a later change
                    continue
                if due > now:
                    break
                heapq.heappop(self._heap)
                out.append(key)
                self.remove(key)
        return out

    def next_due(self) -> float | None:
        """The earliest due time, or None when nothing waits."""
        with self.changed:
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)
            return self._heap[0][0] if self._heap else None

    def wait(self, timeout: float) -> None:
        """Sleep until something changes, ``timeout`` passes or :meth:`wake` is called
        (call with :attr:`changed` held, as with any condition variable)."""
        self.changed.wait(timeout)

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def due_at(self, key: str) -> float | None:
        with self.changed:
            return self._due.get(key)

    def why(self, key: str) -> str:
        with self.changed:
            return self._why.get(key, "")

    def items(self) -> list[tuple[str, float, str]]:
        """(key, due, why), earliest first."""
        with self.changed:
            return sorted(
                ((k, d, self._why.get(k, "")) for k, d in self._due.items()), key=lambda e: e[1]
            )

    def __contains__(self, key: object) -> bool:
        with self.changed:
            return key in self._due

    def __len__(self) -> int:
        with self.changed:
            return len(self._due)

    # ------------------------------------------------------------------ plumbing

    def _put(self, key: str, due: float, why: str) -> None:
        if due > clock.now() + DURABLE_AFTER:
            try:
                self.store.put(key, {"Due": due, "Why": why})
                self._durable.add(key)
            except (OSError, StoreError, StoreFailed) as exc:  # still due in this life
                log.warning("the due time of %s is kept in memory only: %s", key, exc)
        self._due[key], self._why[key] = due, why
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self.changed.notify_all()

    def reload(self) -> None:
        """Forget what is in memory and read the store again: a manager that starts
        leading takes over the due times its predecessor left."""
        with self.changed:
            self._due.clear()
            self._why.clear()
            self._durable.clear()
            self._heap.clear()
            self._load()
            self.changed.notify_all()

    def _load(self) -> None:
        for key in self.store:
            try:
                entry = self.store.get(key)
                due, why = float(entry["Due"]), str(entry.get("Why", ""))
            except (KeyError, TypeError, ValueError, StoreError) as exc:
                log.warning("timer %r is unreadable (%s); looking at it now instead", key, exc)
                due, why = clock.now(), "unreadable timer"
            self._due[key], self._why[key] = due, why
            self._durable.add(key)
            heapq.heappush(self._heap, (due, next(self._seq), key))


class WorkQueue(TimerQueue):
    """A :class:`TimerQueue` with the rule of Kubernetes' work queue: a key being worked
    on is never handed out twice at once; asked for again meanwhile, it goes again as
    soon as the work on it is done."""

    def __init__(self, store: Store[Any]) -> None:
        super().__init__(store)
        self._busy: set[str] = set()
        self._again: set[str] = set()

    def take(self, now: float | None = None) -> list[str]:
        """The keys due by ``now`` that nobody is working on; they are now busy."""
        ready = []
        with self.changed:
            for key in self.pop_due(now):
                if key in self._busy:
                    self._again.add(key)
                else:
                    self._busy.add(key)
                    ready.append(key)
        return ready

    def done(self, key: str, again_at: float | None = None, why: str = "") -> None:
        """Work on ``key`` is over; look at it again at ``again_at`` (if given), or at
        once if it was asked for while busy."""
        with self.changed:
            self._busy.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.schedule(key, why="changed while busy")
            elif again_at is not None:
                self.schedule(key, again_at, why)
            self.changed.notify_all()

    def busy(self, key: str) -> bool:
        with self.changed:
            return key in self._busy

    def in_hand(self) -> list[str]:
        with self.changed:
            return sorted(self._busy)
