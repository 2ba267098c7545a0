"""The worker: makes what is asked of its tasks come true on a runtime.

Each task has one record in the worker's store holding both halves: what is *wanted*
(``desired``: Running or Completed, from the latest order) and what *is* (``state``, the
container or process it runs as). An order is checked against the stored record
(:mod:`cube.worker.orders`) and, if it changes anything, stored before anything is done:
that record is the worker's intent. The task's ID then goes on a durable timer queue
(:mod:`cube.timers`) and the loop, which sleeps on a condition variable, wakes at once to
carry it out (the book polled every 10 s, one task per tick). Work for different tasks
runs in parallel on a small pool; one task's work runs one step at a time.

Because the intent is stored first, and the runtime labels what it starts with the
order's attempt as it creates it, a worker killed at *any* instant loses nothing: on
start it re-adopts the copy of the order it follows, stops any other copy, and carries
on with what is still to do (:mod:`cube.worker.adopt`). The loop carries out an order
by starting or stopping its copy (:mod:`cube.worker.copies`), and every
``inspect_interval`` seconds inspects the running copies, to report one that died as
Failed, with the reason (:mod:`cube.worker.inspection`).
The newest leader's proven epoch that came with an order is kept beside the tasks, so an
order from a deposed one is refused even after a restart (:mod:`cube.worker.epoch`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from cube import clock
from cube.proof import LeaderSecret
from cube.records import Records
from cube.runtime import Capabilities, Runtime, RuntimeFailure, Status, choose
from cube.store import JsonCodec, MemoryStore, Store, WireCodec, lock_directory, open_store
from cube.task import State, Task, TaskEvent, UnknownTask, wait_for_state
from cube.timers import WorkQueue
from cube.worker import adopt, copies, inspection, orders, retention
from cube.worker.epoch import LeaderEpoch
from cube.worker.stats import StatsCollector

log = logging.getLogger(__name__)


class Worker:
    """Runs tasks on one machine through a :class:`~cube.runtime.Runtime`.

    Usable without threads (call :meth:`step` to do what is due in the caller's thread,
    as a notebook does to show each move) or as a service (:meth:`start`).
    """

    def __init__(
        self,
        name: str,
        store: Store[Task],
        runtime: Runtime,
        *,
        timers: Store[Any] | None = None,
        forgotten: Store[Any] | None = None,
        leader: Store[Any] | None = None,
        leader_secret: LeaderSecret | None = None,
        forget_leader: bool = False,
        inspect_interval: float = 2.0,
        retention: float = 3600.0,
        parallel: int = 4,
        lock: IO[str] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.records = Records(store, _in_memory(forgotten, f"{name}-forgotten"))
        leader = _in_memory(leader, f"{name}-leader")
        self.epoch = LeaderEpoch(leader, leader_secret, forget=forget_leader)
        self.runtime = runtime
        self.retention = retention
        self.acked = 0  # the manager has seen every change up to this index
        self.timers = WorkQueue(_in_memory(timers, f"{name}-timers"))
        self.inspect_interval = inspect_interval
        self._cond = self.timers.changed
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix=f"{name}-task")
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stats = StatsCollector()
        self._recovered = False
        self._lock = lock

    # ------------------------------------------------------------------ public API

    def submit(self, event: TaskEvent) -> Task:
        """Take an order and return the task as stored now.

        Raises :class:`~cube.task.ValidationError` for an order a worker cannot act on,
        :class:`~cube.runtime.UnknownImage` when the runtime surely cannot run the image,
        :class:`~cube.task.UnknownTask` for a stop of a task it never had,
        :class:`~cube.worker.orders.StaleOrder` for an order older than the one it
        follows, and :class:`~cube.task.TransitionError` when the stored state forbids it."""
        task_id = str(event.task.id)
        with self._cond:
            stored = self.records.get(task_id)
            if orders.wanted(event) is State.Running:
                self.runtime.check(event.task)
            if stored is None:
                orders.check_forgotten(event, self.records.tombstone(task_id))
            record = orders.accept(stored, event)
            if record is None:
                return stored  # type: ignore[return-value]  # a repeat: stored exists
            unstarted = record.state is State.Scheduled and not record.container_id
            if orders.next_step(record) == "stop" and unstarted and not self.timers.busy(task_id):
                record = orders.stopped(record)  # nothing started, nor starting: cancelled
            self._save(record)
            if orders.next_step(record) != "none":
                self.timers.schedule(task_id, why="order")
            else:
                self.timers.remove(task_id)  # nothing left to do for it
            return record

    def stop_task(self, task_id: str, generation: int | None = None) -> Task:
        """Ask for a task to be stopped (cancelled, if it has not started). A
        ``generation`` older than the stored one is refused, like any stale order."""
        stored = self.get_task(task_id)
        order = stored if generation is None else stored.replace(generation=generation)
        return self.submit(TaskEvent(task=order, state=State.Completed))

    def get_task(self, task_id: str) -> Task:
        task = self.records.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task

    def tasks(self) -> list[Task]:
        return self.records.all()

    @property
    def index(self) -> int:
        """Bumped by every change of a record: what blocking queries wait on."""
        return self.records.index

    def inspect(self, task_id: str) -> Status | None:
        """What the runtime says about a task's container or process right now."""
        task = self.get_task(task_id)
        if not task.container_id:
            return None
        try:
            return self.runtime.inspect(task.container_id)
        except RuntimeFailure as exc:
            return Status(task.container_id, running=False, state="unknown", reason=str(exc))

    def logs(self, task_id: str, tail: int = 200) -> str:
        """What the task printed; a note instead when its container is gone."""
        task = self.get_task(task_id)
        if not task.container_id:
            return ""
        try:
            return self.runtime.logs(task.container_id, tail)
        except RuntimeFailure as exc:
            return f"(no output: {exc})\n"

    def stats(self) -> dict[str, Any]:
        return self._stats.sample(task_count=self.running_count())

    def capabilities(self) -> Capabilities:
        return self.runtime.capabilities()

    def running_count(self) -> int:
        return self.records.count(State.Running)

    def pending_events(self) -> list[TaskEvent]:
        """What is asked and not done yet, as task events (oldest order first)."""
        with self._cond:
            waiting = [k for k, _, _ in self.timers.items()] + self.timers.in_hand()
            due = [(self.timers.due_at(k) or 0.0, k) for k in waiting]
            tasks = [self.records.get(key) for _, key in sorted(due)]
        return [
            TaskEvent(task=t, state=t.desired)
            for t in tasks
            if t is not None and orders.next_step(t) != "none"
        ]

    def acknowledge(self, index: int) -> None:
        """The manager has seen every change up to ``index``: what finished before it may
        be forgotten (see :mod:`cube.worker.retention`). An index from another run (before
        a restart) says nothing about what the manager saw of this one."""
        changes = self.records.changes
        if not changes.first <= index <= changes.index:
            return  # not an index of this run: the watch is told it is gone, nothing more
        with self._cond:
            self.acked = max(self.acked, index)

    def wait_for(self, task_id: str, *states: State, timeout: float = 10.0) -> Task:
        """Block until the task reaches one of ``states`` (woken by each change)."""
        with self._cond:
            return wait_for_state(lambda: self.get_task(task_id), states, timeout, self._cond.wait)

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> Worker:
        """Re-adopt what survived a restart, then run the loop in a thread."""
        self.recover()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-loop", daemon=True)
        self._thread.start()
        return self

    def close(self, suspend_tasks: bool = False) -> None:
        """Stop the loop. Tasks keep running, to be re-adopted by the next start, unless
        ``suspend_tasks``: then their containers are stopped now and the tasks are queued
        to start again when the worker does (``cube up`` uses this on Ctrl-C)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.records.release()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)  # queued work is redone on start
        if suspend_tasks:
            for task_id in self.records.ids(State.Running):
                self._guard(copies.suspend, self, self.records.get(task_id))
        closables = (self.store, self.timers.store, self.records.tombstones, self.epoch, self._lock)
        for closable in closables:
            if closable is not None:
                closable.close()

    def step(self) -> None:
        """Do everything that is due now, in this thread, then inspect once."""
        self.recover()
        self.work_due()
        inspection.inspect_running(self)

    def work_due(self) -> int:
        """Carry out every order that is due now, in this thread; returns how many."""
        done = 0
        while ready := self.timers.take():
            for key in ready:
                self._guard(self._apply, key)
            done += len(ready)
        return done

    def inspect_round(self) -> None:
        """What the loop does every ``inspect_interval``: inspect every running task,
        then forget what is past retention; a failure of one never stops the other."""
        self._guard(inspection.inspect_running, self)
        self._guard(retention.prune, self)

    def recover(self) -> None:
        """Adopt what still runs, stop what nobody owns, queue what is left to do.
        Runs once."""
        if not self._recovered:
            self._recovered = True
            adopt.recover(self)

    # -------------------------------------------------------------------- the loop

    def _loop(self) -> None:
        next_inspection = clock.monotonic() + self.inspect_interval
        while True:
            with self._cond:
                while not self._stopping:
                    ready = self.timers.take()
                    if ready or clock.monotonic() >= next_inspection:
                        break
                    self.timers.wait(self._pause(next_inspection))
                if self._stopping:
                    return
            for key in ready:
                self._pool.submit(self._guard, self._apply, key)
            if clock.monotonic() >= next_inspection:
                self.inspect_round()
                next_inspection = clock.monotonic() + self.inspect_interval

    def _pause(self, next_inspection: float) -> float:
        due = self.timers.next_due()
        until_due = due - clock.now() if due is not None else self.inspect_interval
        return max(0.005, min(until_due, next_inspection - clock.monotonic()))

    def _apply(self, task_id: str) -> None:
        """Carry out what the task's record asks now; a stop that failed is tried again
        after ``inspect_interval``."""
        retry = False
        try:
            task = self.records.get(task_id)
            step = orders.next_step(task) if task is not None else "none"
            if step == "start":
                copies.start(self, task)  # type: ignore[arg-type]
            elif step == "stop":
                retry = copies.stop(self, task)  # type: ignore[arg-type]
        finally:
            again = clock.now() + self.inspect_interval if retry and not self._stopping else None
            self.timers.done(task_id, again, "retry")

    def _update(self, seen: Task, change: Any) -> Task | None:
        """Apply ``change`` to the record as stored now, unless a newer order replaced
        the one ``seen`` was for (then None, and nothing is written)."""
        with self._cond:
            current = self.records.get(str(seen.id))
            if current is None or orders.attempt(current) != orders.attempt(seen):
                return None
            updated = change(current)
            self._save(updated)
            return updated

    # ------------------------------------------------------------------- helpers

    def _save(self, task: Task) -> None:
        with self._cond:
            self.records.put(task)
            self._cond.notify_all()

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run one unit of work; log and survive whatever it raises."""
        try:
            fn(*args)
        except Exception:
            log.exception("%s: %s failed; carrying on", self.name, getattr(fn, "__name__", fn))


def _in_memory(store: Store[Any] | None, name: str) -> Store[Any]:
    """``store``, or one in memory for a worker without a disk. ("is None", not "or": a
    store is falsy while it is empty, as on a first start.)"""
    return store if store is not None else MemoryStore(JsonCodec(), name)


def worker_runtime(kind: str, data_dir: str | Path, name: str) -> Runtime:
    """The runtime of worker ``name`` whose state is in ``data_dir``, as that worker
    builds it: so anyone can find what it started. Its owner label includes the data
    directory, so two clusters with a "worker-1" each can share a Docker engine."""
    home = Path(data_dir).resolve()
    owner = f"{name}-{hashlib.sha1(str(home).encode()).hexdigest()[:8]}"
    return choose(kind, owner=owner, state_dir=home / name / "processes")


def open_worker(
    name: str,
    data_dir: str | Path,
    runtime: str = "auto",
    dbtype: str = "persistent",
    inspect_interval: float = 2.0,
    retention: float = 3600.0,
    *,
    leader_secret: LeaderSecret | None = None,
    forget_leader: bool = False,
) -> Worker:
    """A worker with its state under ``data_dir/name`` (locked against a second process
    with the same name), on the runtime chosen by :func:`cube.runtime.choose`; given a
    ``leader_secret``, it takes orders only from a leading manager
    (:mod:`cube.worker.epoch`)."""
    home = Path(data_dir) / name
    lock = lock_directory(home, f"worker {name}") if dbtype == "persistent" else None
    return Worker(
        name,
        open_store(dbtype, home / "tasks", WireCodec(Task)),
        worker_runtime(runtime, data_dir, name),
        timers=open_store(dbtype, home / "timers", JsonCodec()),
        forgotten=open_store(dbtype, home / "forgotten", JsonCodec()),
        leader=open_store(dbtype, home / "leader", JsonCodec()),
        leader_secret=leader_secret,
        forget_leader=forget_leader,
        inspect_interval=inspect_interval,
        retention=retention,
        lock=lock,
    )
