"""The manager's tasks: their records, their history, and when to look at each again.

This is the seam between the manager's two halves. The API (:mod:`cube.manager.manager`)
writes what clients want; the control loop (:mod:`cube.manager.control`) writes what it
decided. Both go through :meth:`Tasks.save`, which stores a record before anything acts
on it, keeps the nodes' promised resources in step, and wakes whoever waits.

One lock guards it all, and it is the work queue's condition variable on purpose: a
change to a record and the wake-up of the loop that must look at it are one step, so no
change can slip between a look and a sleep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cube.etcd import CasConflict
from cube.manager.findings import Findings
from cube.manager.history import History
from cube.manager.nodes import Nodes
from cube.manager.reconcile import Timing, given_up
from cube.manager.stores import Stores
from cube.records import Records
from cube.store import Store
from cube.task import State, Task, TaskEvent
from cube.timers import WorkQueue

log = logging.getLogger(__name__)


class Tasks:
    """Every task the manager knows, and the durable queue of when to look at each."""

    def __init__(
        self,
        stores: Stores,
        nodes: Nodes,
        timing: Timing,
        fence: Callable[[], Any] | None = None,
        acting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.records = Records(stores.tasks, versioned=stores.shared)
        self.history = History(stores.events, stores.history)
        self.timers = WorkQueue(_fenced(stores.timers, fence) or stores.timers)
        self.lock = self.timers.changed
        self.findings = Findings(_fenced(stores.findings, fence) or stores.findings)
        self.timing = timing
        self._decisions = _fenced(stores.tasks, fence)
        self._nodes = nodes
        self.acting = acting  # does this manager act (lead) now? Asked, never cached
        self._stores = stores

    def durable(self) -> None:
        """Return once every write so far is on the disk (flushed in groups, never
        under :attr:`lock`): call it before anyone hears of a write."""
        self._stores.flush()

    def get(self, task_id: str) -> Task | None:
        with self.lock:
            return self.records.get(task_id)

    def save(self, task: Task, note: str = "", *, decided: bool = True) -> Task:
        """Store a task's record (before anything acts on it) and wake whoever waits.
        A decision of the control loop (``decided``) is fenced on etcd; a client's
        wish is not (any manager takes those). On etcd, raises
        :class:`~cube.etcd.CasConflict` when another manager changed the task since it
        was read here (this manager's copy is then read again)."""
        task_id = str(task.id)
        with self.lock:
            old = self.records.get(task_id)
            try:
                self.records.put(task, via=self._decisions if decided else None)
            except CasConflict:
                taken, before = self.records.refresh(task_id)
                if taken:
                    self._took(before, self.records.get(task_id))
                raise
            self._took(old, task)
        if old is not None and old.state is not task.state:
            where = f" on {task.worker}" if task.worker else ""
            log.info("task %s (%s) is %s%s", task_id, task.name, task.state.name, where)
        elif note:
            log.info("task %s (%s): %s", task_id, task.name, note)
        return task

    def record(self, event: TaskEvent) -> None:
        self.history.record(event)

    def enqueue(self, task_id: str, why: str) -> None:
        """Have the control loop look at a task now (if it runs here: else the leader
        hears of the change through its watch)."""
        if self.acting():
            self.timers.schedule(task_id, why=why)

    def reread(self, task_id: str) -> None:
        """Read one task again from etcd, taking it in if it is newer than ours."""
        with self.lock:
            taken, old = self.records.refresh(task_id)
            if taken:
                task = self.records.get(task_id)
                self._took(old, task)
                if task is not None:
                    self.enqueue(task_id, "read again from etcd")

    def take_in(self, task_id: str, task: Task | None, revision: int) -> None:
        """A change another manager wrote (or etcd holds, read again): into memory,
        and, when this manager acts, to the control loop."""
        with self.lock:
            taken, old = self.records.apply(task_id, task, revision)
            if not taken:
                return
            self._took(old, task)
            if task is not None:
                self.enqueue(task_id, "changed through another manager")

    def forget(self, task_id: str) -> None:
        """Drop a finished task (past retention) from memory and the store."""
        with self.lock:
            task = self.records.forget(task_id)
            self._nodes.account(task, None)
            self.findings.forget(task_id)
            self.timers.remove(task_id)

    def on(self, worker: str) -> set[str]:
        """The tasks whose record places them on ``worker``."""
        return self.records.on(worker)

    def waiting(self) -> set[str]:
        """Tasks that wait for a worker with room (or able to run them at all)."""
        placed_nowhere = (self.records.get(k) for k in self.records.on(""))
        return {str(t.id) for t in placed_nowhere if t is not None and self.active(t)}

    def active(self, task: Task) -> bool:
        """Still something to do for it: not Completed, not given up."""
        return task.state is not State.Completed and not given_up(task, self.timing.restart)

    def recover(self, everything: bool = False) -> None:
        """Read back the tasks; queue those that need a look before any worker speaks
        (``everything``: every unfinished one, as a new leader does)."""
        for task in self.records.all():
            if not everything:
                self._nodes.account(None, task)
            unplaced = not task.worker or task.worker not in self._nodes.by_name
            if self.active(task) and (unplaced or everything):
                self.timers.schedule(str(task.id), why="recovered")
        if len(self.records):
            log.info("recovered %d tasks, %d due", len(self.records), len(self.timers))

    def _took(self, old: Task | None, task: Task | None) -> None:
        """A record changed from ``old`` to ``task``: the nodes' promises follow."""
        self._nodes.account(old, task)
        self.lock.notify_all()


def _fenced(store: Store[Any], fence: Callable[[], Any] | None) -> Any:
    """``store`` with every write conditional on ``fence`` (on etcd), or None."""
    return store.with_guard(fence) if fence is not None else None  # type: ignore[attr-defined]
