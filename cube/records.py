"""Task records in memory, backed by a store, each stamped with the change that last
touched it: what blocking queries, deltas and paging read.

Every write goes to the store first (it is the durable truth) and then to memory, and
bumps a counter, the **index**, as Consul's and Nomad's do: a reader that saw index N
asks for what changed after N and gets exactly that, or waits until there is some
(:meth:`Records.wait`). The index starts from the clock in milliseconds when the process
starts, so it keeps growing across restarts.

A watch can be resumed only from an index this process handed out and still has the
history for. One from before a restart (what was forgotten then is not known here), from
beyond the index now (another run's), or older than the oldest tombstone still kept is
answered **410 Gone** (:class:`IndexGone`), as a Kubernetes watch says "too old": the
client lists everything again (index 0) and watches from there. Index 0 is always a
fresh start, never gone.

A record that is forgotten (pruned once nobody needs it) leaves a tombstone with the
last order it followed, so an old order arriving late cannot start it again, and the
forgetting is itself a change a watcher hears of (:meth:`Records.forgotten_since`).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cube import clock
from cube.store import Store
from cube.task import State, Task

if TYPE_CHECKING:
    from cube.http import ListQuery

FORGOTTEN_KEPT = 100_000  # tombstones remembered in memory for watchers (ids only)


class IndexGone(LookupError):
    """A watch resumed from an index this server cannot answer for: it restarted since,
    or the index is older than the history it keeps. List again, from index 0."""

    http_status = 410

    def __init__(self, index: int, first: int, now: int) -> None:
        super().__init__(
            f"index {index} is gone: this server keeps changes from {first} to {now} "
            "(it restarted, or that is older than it remembers); list again from index 0"
        )


class Changes:
    """A change counter to wait on: what one blocking query watches (the tasks, the
    nodes, the events each have their own, so a watcher wakes only for what it reads)."""

    def __init__(self) -> None:
        self.index = int(clock.now() * 1000)
        self.cond = threading.Condition(threading.RLock())
        self._released = False
        self.first = self.index  # a watch from before this is from another run

    def bump(self) -> int:
        with self.cond:
            self.index += 1
            self.cond.notify_all()
            return self.index

    def wait(self, index: int, timeout: float, stop: Callable[[], bool] = lambda: False) -> int:
        """Block until the index passes ``index`` (or ``timeout``, or :meth:`release`);
        returns the index now. An ``index`` not from this run raises :class:`IndexGone`."""
        self.check(index)
        with self.cond:
            self.cond.wait_for(lambda: self.index != index or self._released or stop(), timeout)
            return self.index

    def check(self, index: int, floor: int = 0) -> None:
        """Raise :class:`IndexGone` unless ``index`` is 0 or one this run handed out
        (at ``floor`` or later, when older history is gone)."""
        if index and not max(self.first, floor) <= index <= self.index:
            raise IndexGone(index, max(self.first, floor), self.index)

    def release(self) -> None:
        """Answer every blocked :meth:`wait` now, and every later one at once, until
        :meth:`hold`: its server is stopping, and a watcher asking again at once must
        not keep the server from stopping."""
        with self.cond:
            self._released = True
            self.cond.notify_all()

    def hold(self) -> None:
        """Let :meth:`wait` block again (its server started)."""
        with self.cond:
            self._released = False


class Records:
    """The tasks of one worker or manager, with their change indexes."""

    def __init__(
        self,
        store: Store[Task],
        tombstones: Store[Any] | None = None,
        *,
        versioned: bool = False,
    ) -> None:
        self.store = store
        self.tombstones = tombstones
        self.changes = Changes()
        self.cond = self.changes.cond
        # a store shared with other managers (etcd): each record's revision, and every
        # write conditional on it, so that no manager overwrites what it has not seen
        self._revisions: dict[str, int] | None = None
        if versioned:
            snapshot = store.snapshot()  # type: ignore[attr-defined]
            self.revision = snapshot.revision  # what a mirror watches from, plus one
            self._revisions = {k: v.mod_revision for k, v in snapshot.entries.items()}
            self._tasks: dict[str, Task] = {k: v.value for k, v in snapshot.entries.items()}
        else:
            self._tasks = {str(t.id): t for t in store.list()}
        self._changed: OrderedDict[str, int] = OrderedDict(
            (k, self.changes.index) for k in self._tasks
        )
        self._forgotten: deque[tuple[int, str]] = deque(maxlen=FORGOTTEN_KEPT)
        self._floor = 0  # a delta from before this would miss tombstones no longer kept
        self._by_state: dict[State, set[str]] = {s: set() for s in State}
        self._by_worker: dict[str, set[str]] = {}
        for key, task in self._tasks.items():
            self._index(key, None, task)

    @property
    def index(self) -> int:
        return self.changes.index

    # ------------------------------------------------------------------ reading

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def all(self) -> list[Task]:
        with self.cond:
            return list(self._tasks.values())

    def ids(self, state: State) -> set[str]:
        with self.cond:
            return set(self._by_state[state])

    def count(self, state: State) -> int:
        return len(self._by_state[state])

    def on(self, worker: str) -> set[str]:
        """The IDs of the tasks placed on ``worker`` ("": placed nowhere)."""
        with self.cond:
            return set(self._by_worker.get(worker, ()))

    def since(self, index: int) -> list[Task]:
        """The records changed after ``index``, oldest change first (O(changes))."""
        with self.cond:
            out = []
            for key in reversed(self._changed):
                if self._changed[key] <= index:
                    break
                out.append(self._tasks[key])
            return out[::-1]

    def forgotten_since(self, index: int) -> list[str]:
        """The IDs forgotten after ``index`` and not held again since (a task forgotten,
        then ordered anew, is in the list, not gone)."""
        self.changes.check(index, self._floor)
        with self.cond:
            return [key for at, key in self._forgotten if at > index and key not in self._tasks]

    def page(self, after: str = "", limit: int = 0, state: State | None = None) -> list[Task]:
        """Records in ID order, after the ID ``after``, at most ``limit`` (0: all)."""
        with self.cond:
            keys = sorted(self._by_state[state] if state is not None else self._tasks)
        if after:
            keys = [k for k in keys if k > after]
        if limit:
            keys = keys[:limit]
        return [self._tasks[k] for k in keys if k in self._tasks]

    def select(self, query: ListQuery) -> list[Task]:
        """The records a :class:`~cube.http.ListQuery` asks for."""
        if query.since is None:
            return self.page(query.after, query.limit, query.state)
        self.changes.check(query.since, self._floor)
        changed = self.since(query.since)
        if query.state is not None:
            changed = [t for t in changed if t.state is query.state]
        return changed[: query.limit] if query.limit else changed

    def revision_of(self, task_id: str) -> int:
        """The shared store's revision of the record as known here (0: not shared)."""
        return self._revisions.get(task_id, 0) if self._revisions is not None else 0

    def changed_at(self, task_id: str) -> int | None:
        return self._changed.get(task_id)

    # ------------------------------------------------------------------ writing

    def put(self, task: Task, via: Store[Task] | None = None) -> int:
        """Store ``task`` (through ``via``, a fenced view of the store, when given),
        then remember it; returns the new index. On a shared store the write holds only
        if the record is still as last seen here (else
        :class:`~cube.etcd.errors.CasConflict`, and nothing changed)."""
        key = str(task.id)
        store = via or self.store
        with self.cond:
            if self._revisions is None:
                store.put(key, task)
            else:
                seen = self._revisions.get(key, 0)
                self._revisions[key] = store.put_if(key, task, seen)  # type: ignore[attr-defined]
            self._index(key, self._tasks.get(key), task)
            self._tasks[key] = task
            return self._bump(key)

    def apply(self, key: str, task: Task | None, revision: int) -> tuple[bool, Task | None]:
        """Take in a change another process wrote to the shared store (``None``: the
        record was deleted), unless this one knows that revision already. Returns
        whether it was taken, and the record it replaced."""
        with self.cond:
            assert self._revisions is not None, "only records on a shared store"
            if revision <= self._revisions.get(key, 0):
                return False, None
            old = self._tasks.get(key)
            if task is None and old is None:
                self._revisions.pop(key, None)  # forgotten here first: now etcd agrees
                return False, None
            self._index(key, old, task)
            if task is None:
                self._tasks.pop(key, None)
                self._revisions.pop(key, None)
                self._changed.pop(key, None)
                self._tombstone(key)
            else:
                self._tasks[key] = task
                self._revisions[key] = revision
                self._bump(key)
            return True, old

    def refresh(self, key: str) -> tuple[bool, Task | None]:
        """Read one record again from the shared store (after a conditional write found
        it changed): as :meth:`apply`."""
        try:
            found = self.store.get_versioned(key)  # type: ignore[attr-defined]
        except KeyError:
            with self.cond:
                seen = self._revisions.get(key, 0) if self._revisions else 0
            return self.apply(key, None, seen + 1) if seen else (False, None)
        return self.apply(key, found.value, found.mod_revision)

    def forget(self, task_id: str) -> Task | None:
        """Drop a record (store and memory), leaving a tombstone with its last order."""
        with self.cond:
            task = self._tasks.pop(task_id, None)
            if task is None:
                return None
            if self.tombstones is not None:
                self.tombstones.put(
                    task_id, {"Generation": task.generation, "Restarts": task.restart_count}
                )
            with contextlib.suppress(KeyError):
                self.store.delete(task_id)
            self._index(task_id, task, None)
            self._changed.pop(task_id, None)
            self._tombstone(task_id)
            return task

    def tombstone(self, task_id: str) -> tuple[int, int] | None:
        """The last order of a forgotten task, (generation, restart count), if any."""
        if self.tombstones is None:
            return None
        try:
            entry = self.tombstones.get(task_id)
        except KeyError:
            return None
        return int(entry.get("Generation", 0)), int(entry.get("Restarts", 0))

    # ------------------------------------------------------------------ waiting

    def wait(self, index: int, timeout: float, stop: Callable[[], bool] = lambda: False) -> int:
        return self.changes.wait(index, timeout, stop)

    def release(self) -> None:
        self.changes.release()

    def hold(self) -> None:
        self.changes.hold()

    def _index(self, key: str, old: Task | None, new: Task | None) -> None:
        if old is not None:
            self._by_state[old.state].discard(key)
            self._by_worker.get(old.worker, set()).discard(key)
        if new is not None:
            self._by_state[new.state].add(key)
            self._by_worker.setdefault(new.worker, set()).add(key)

    def _tombstone(self, key: str) -> None:
        """Remember that ``key`` went, for deltas; the oldest kept sets how far back a
        delta can be asked for."""
        if len(self._forgotten) == self._forgotten.maxlen:
            self._floor = self._forgotten[0][0]
        self._forgotten.append((self.changes.bump(), key))

    def _bump(self, key: str) -> int:
        index = self.changes.bump()
        self._changed[key] = index
        self._changed.move_to_end(key)
        return index
