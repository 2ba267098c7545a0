"""The worker: turns desired states (a queue of task events) into running tasks.

The queue holds what was *asked* ("run this", "stop that"); the store holds what *is*.
A loop thread sleeps on a condition variable and wakes the moment work arrives (the
book polled every 10 s, one task per tick). Each event is checked against the *stored*
state with :func:`cube.task.check_transition` before anything happens: the book wrote
the desired state into the store first and then compared it with itself.

Events for different tasks run in parallel on a small thread pool; events for the same
task run one at a time, in order. A reconcile pass (every ``reconcile_interval``
seconds) inspects running tasks, so a container that died is reported Failed with the
reason, and host ports stay current.

Restarts lose nothing: the queue and the tasks live in stores (DiskStore for a real
worker), and on start the worker re-adopts the containers or processes still running
for its tasks (same container ID, no restart) and marks the others Failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cube.runtime import Runtime, RuntimeFailure, RuntimeUnavailable, Status, choose
from cube.store import Store, WireCodec, lock_directory, open_store
from cube.task import (
    State,
    Task,
    TaskEvent,
    TransitionError,
    UnknownTask,
    ValidationError,
    check_transition,
    utcnow,
    wait_for_state,
)
from cube.worker.stats import StatsCollector

log = logging.getLogger(__name__)

RUN_STATES = (State.Scheduled, State.Running)


@dataclass
class _Queued:
    key: str
    event: TaskEvent
    not_before: float = 0.0


class Worker:
    """Runs tasks on one machine through a :class:`~cube.runtime.Runtime`.

    Usable without threads (call :meth:`step` to apply queued events in the caller's
    thread, as a notebook does to show each move) or as a service (:meth:`start`).
    """

    def __init__(
        self,
        name: str,
        store: Store[Task],
        runtime: Runtime,
        *,
        queue: Store[TaskEvent] | None = None,
        reconcile_interval: float = 2.0,
        parallel: int = 4,
        lock: IO[str] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.runtime = runtime
        self.queue_store = queue
        self.reconcile_interval = reconcile_interval
        self._queue: deque[_Queued] = deque()
        self._inflight: set[str] = set()
        self._cond = threading.Condition(threading.RLock())
        self._seq = itertools.count()
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix=f"{name}-task")
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stats = StatsCollector()
        self._recovered = False
        self._lock = lock

    # ------------------------------------------------------------------ public API

    def submit(self, event: TaskEvent) -> Task:
        """Queue a desired state for a task and return the task as stored now.

        Raises :class:`ValidationError` for a request a worker cannot act on,
        :class:`~cube.runtime.UnknownImage` when the runtime surely cannot run the
        image, :class:`UnknownTask` for a stop of a task it never had, and
        :class:`~cube.task.TransitionError` when the stored state forbids it."""
        if event.state not in (*RUN_STATES, State.Completed):
            raise ValidationError(
                "TaskEvent.State",
                f"a worker can be asked to run (2) or stop (3) a task, not {event.state.name}",
            )
        with self._cond:
            stored = self._stored(str(event.task.id))
            if stored is None:
                if event.state is State.Completed:
                    raise UnknownTask(str(event.task.id))
                self.runtime.check(event.task)
                check_transition(event.task.state, State.Scheduled)
                stored = self._fresh(event.task)
                self.store.put(str(stored.id), stored)
            elif self._plan(stored, event) == "stop" and self._cancellable(stored):
                return self._cancel(stored)
            elif event.state is not State.Completed:
                self.runtime.check(event.task)
            self._enqueue(event)
            return stored

    def stop_task(self, task_id: str) -> Task:
        """Ask for a task to be stopped (or cancelled, if it has not started)."""
        stored = self.get_task(task_id)
        return self.submit(TaskEvent(task=stored, state=State.Completed))

    def get_task(self, task_id: str) -> Task:
        task = self._stored(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task

    def tasks(self) -> list[Task]:
        return self.store.list()

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

    def running_count(self) -> int:
        return sum(1 for t in self.store.list() if t.state is State.Running)

    def pending_events(self) -> list[TaskEvent]:
        with self._cond:
            return [q.event for q in self._queue]

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
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)
        if suspend_tasks:
            for task in self.store.list():
                if task.state is State.Running:
                    self._guard(self._suspend, task)
        for closable in (self.store, self.queue_store, self._lock):
            if closable is not None:
                closable.close()

    def _suspend(self, task: Task) -> None:
        self.runtime.stop(task.container_id)
        check_transition(task.state, State.Scheduled)
        self._save(self._fresh(task).replace(reason="suspended: its worker was stopped"))
        self._enqueue(TaskEvent(task=task, state=State.Running))
        log.info(
            "%s: task %s (%s) suspended until the worker starts again",
            self.name,
            task.id,
            task.name,
        )

    def step(self) -> None:
        """Apply every queued event now, in this thread, then reconcile once."""
        self.recover()
        while True:
            with self._cond:
                ready = self._take_ready(time.monotonic())
            if not ready:
                break
            for item in ready:
                self._apply(item)
        self.reconcile()

    # ------------------------------------------------------------------- recovery

    def recover(self) -> None:
        """Adopt running containers of stored tasks; fail tasks whose container is
        gone; stop copies nobody owns; reload the persisted queue. Runs once."""
        if self._recovered:
            return
        self._recovered = True
        try:
            live: dict[str, list[Status]] = {}
            for managed in self.runtime.list_managed():
                live.setdefault(managed.task_id, []).append(managed.status)
        except RuntimeFailure as exc:
            log.warning(
                "%s: cannot list what the runtime runs (%s); adoption skipped", self.name, exc
            )
            live = {}
        else:
            for task in self.store.list():
                self._guard(self._adopt, task, live.pop(str(task.id), []))
            for task_id, statuses in live.items():
                for status in statuses:
                    log.warning(
                        "%s: stopping %s of unknown task %s",
                        self.name,
                        status.container_id,
                        task_id,
                    )
                    self._guard(self.runtime.stop, status.container_id)
        self._load_queue()

    def _adopt(self, task: Task, statuses: list[Status]) -> None:
        running = sorted(
            (s for s in statuses if s.running), key=lambda s: s.container_id != task.container_id
        )
        keep = running[0] if running and task.state in RUN_STATES else None
        for status in statuses:
            if status is not keep:
                self._guard(self.runtime.stop, status.container_id)
        if keep is not None:
            log.info("%s: re-adopted task %s (%s)", self.name, task.id, keep.container_id)
            self._save(
                task.replace(
                    state=State.Running,
                    container_id=keep.container_id,
                    host_ports=keep.host_ports or task.host_ports,
                    start_time=task.start_time or utcnow(),
                    reason="",
                )
            )
        elif task.state is State.Running:
            self._fail(task, "its container or process was gone when the worker restarted")

    def _load_queue(self) -> None:
        if self.queue_store is None:
            return
        queued = {key: event for key, event in self.queue_store.items()}
        with self._cond:
            known = {q.key for q in self._queue}
            for key in sorted(queued):
                if key not in known:
                    self._queue.append(_Queued(key, queued[key]))
            waiting = {str(q.event.task.id) for q in self._queue}
            for task in self.store.list():
                if task.state is State.Scheduled and str(task.id) not in waiting:
                    self._enqueue(TaskEvent(task=task, state=State.Running))
            self._cond.notify_all()

    # -------------------------------------------------------------------- the loop

    def _loop(self) -> None:
        next_reconcile = time.monotonic() + self.reconcile_interval
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    ready = self._take_ready(now)
                    if ready or now >= next_reconcile:
                        break
                    self._cond.wait(self._next_wake(now, next_reconcile) - now)
                if self._stopping:
                    return
            for item in ready:
                self._pool.submit(self._guard, self._apply, item)
            if time.monotonic() >= next_reconcile:
                self._guard(self.reconcile)
                next_reconcile = time.monotonic() + self.reconcile_interval

    def _next_wake(self, now: float, next_reconcile: float) -> float:
        delayed = [q.not_before for q in self._queue if q.not_before > now]
        return min([next_reconcile, *delayed])

    def _take_ready(self, now: float) -> list[_Queued]:
        """Queued events whose task has nothing in flight, oldest first, one per task."""
        ready, blocked = [], set(self._inflight)
        for item in list(self._queue):
            task_id = str(item.event.task.id)
            if task_id in blocked:
                continue
            blocked.add(task_id)
            if item.not_before <= now:
                self._queue.remove(item)
                self._inflight.add(task_id)
                ready.append(item)
        return ready

    def _apply(self, item: _Queued) -> None:
        task_id = str(item.event.task.id)
        retry = False
        try:
            retry = self._apply_event(item.event)
        finally:
            with self._cond:
                self._inflight.discard(task_id)
                if retry and not self._stopping:
                    item.not_before = time.monotonic() + self.reconcile_interval
                    self._queue.appendleft(item)
                elif self.queue_store is not None:
                    self._forget(item.key)
                self._cond.notify_all()

    def _apply_event(self, event: TaskEvent) -> bool:
        """Carry out one event. Returns True when it should be retried later."""
        stored = self._stored(str(event.task.id))
        if stored is None:
            log.warning(
                "%s: event %s for unknown task %s dropped", self.name, event.id, event.task.id
            )
            return False
        try:
            action = self._plan(stored, event)
        except TransitionError as exc:
            log.warning("%s: task %s: event dropped: %s", self.name, stored.id, exc)
            return False
        if action == "start":
            self._start(stored)
        elif action == "restart":
            self._restart(stored, event.task)
        elif action == "stop":
            return self._stop(stored)
        return False

    @staticmethod
    def _plan(stored: Task, event: TaskEvent) -> str:
        """Decide what an event means for a task in its stored state, checking every
        state change it implies against the transition table (raises if illegal)."""
        if event.state is State.Completed:
            check_transition(stored.state, State.Completed)
            return "stop"
        if stored.state is State.Scheduled:
            check_transition(State.Scheduled, State.Running)
            return "start"
        if stored.state is State.Running and event.task.restart_count <= stored.restart_count:
            check_transition(State.Running, State.Running)
            return "noop"
        check_transition(stored.state, State.Scheduled)
        return "restart"

    def _start(self, task: Task) -> None:
        try:
            started = self.runtime.start(task)
        except RuntimeFailure as exc:
            self._fail(task, str(exc))
            return
        except Exception as exc:
            log.exception("%s: starting task %s failed unexpectedly", self.name, task.id)
            self._fail(task, f"unexpected error while starting: {exc}")
            return
        self._save(
            task.replace(
                state=State.Running,
                container_id=started.container_id,
                host_ports=started.host_ports,
                start_time=utcnow(),
                finish_time=None,
                reason="",
            )
        )
        log.info(
            "%s: task %s (%s) is Running as %s", self.name, task.id, task.name, started.container_id
        )

    def _restart(self, stored: Task, wanted: Task) -> None:
        if stored.container_id:
            self._guard(self.runtime.stop, stored.container_id)
        fresh = self._fresh(wanted).replace(
            restart_count=max(wanted.restart_count, stored.restart_count)
        )
        self._save(fresh)
        self._start(fresh)

    def _stop(self, task: Task) -> bool:
        if task.container_id and task.state in (State.Running, State.Failed):
            try:
                self.runtime.stop(task.container_id)
            except RuntimeFailure as exc:
                self._save(task.replace(reason=f"stop failed, will retry: {exc}"))
                return True
            reason = "stopped on request" if task.state is State.Running else task.reason
        else:
            reason = "cancelled before it started" if task.state in RUN_STATES else task.reason
        self._save(
            task.replace(state=State.Completed, finish_time=utcnow(), reason=reason, host_ports={})
        )
        log.info("%s: task %s (%s) is Completed", self.name, task.id, task.name)
        return False

    # ------------------------------------------------------------------- reconcile

    def reconcile(self) -> None:
        """Inspect every running task not being worked on; one bad record never stops
        the pass."""
        with self._cond:
            busy = set(self._inflight)
        for task in self.store.list():
            if task.state is State.Running and str(task.id) not in busy:
                self._guard(self._reconcile_one, task)

    def _reconcile_one(self, task: Task) -> None:
        try:
            status = self.runtime.inspect(task.container_id)
        except RuntimeUnavailable as exc:
            reason = f"cannot inspect: {exc}"
            if task.reason != reason:
                log.warning("%s: task %s: %s", self.name, task.id, reason)
                self._save(task.replace(reason=reason))
            return
        with self._cond:
            current = self._stored(str(task.id))
            if (
                current is None
                or current.state is not State.Running
                or str(task.id) in self._inflight
            ):
                return
            if not status.running:
                self._fail(current, status.reason or f"container is {status.state}")
            elif (status.host_ports and status.host_ports != current.host_ports) or current.reason:
                self._save(
                    current.replace(host_ports=status.host_ports or current.host_ports, reason="")
                )

    # ------------------------------------------------------------------- helpers

    def _cancellable(self, task: Task) -> bool:
        return task.state is State.Scheduled and str(task.id) not in self._inflight

    def _cancel(self, task: Task) -> Task:
        """Drop a not-yet-started task's queued events and mark it Completed."""
        task_id = str(task.id)
        for item in [q for q in self._queue if str(q.event.task.id) == task_id]:
            self._queue.remove(item)
            if self.queue_store is not None:
                self._forget(item.key)
        cancelled = task.replace(
            state=State.Completed, finish_time=utcnow(), reason="cancelled before it started"
        )
        self._save(cancelled)
        return cancelled

    def _fresh(self, task: Task) -> Task:
        return task.replace(
            state=State.Scheduled,
            container_id="",
            host_ports={},
            start_time=None,
            finish_time=None,
            reason="",
            worker=task.worker,
        )

    def _fail(self, task: Task, reason: str) -> None:
        log.warning("%s: task %s (%s) Failed: %s", self.name, task.id, task.name, reason)
        check_transition(task.state, State.Failed)
        self._save(
            task.replace(state=State.Failed, finish_time=utcnow(), reason=reason, host_ports={})
        )

    def _save(self, task: Task) -> None:
        with self._cond:
            self.store.put(str(task.id), task)
            self._cond.notify_all()

    def _stored(self, task_id: str) -> Task | None:
        try:
            return self.store.get(task_id)
        except KeyError:
            return None

    def _enqueue(self, event: TaskEvent) -> None:
        key = f"{time.time_ns():020d}-{next(self._seq):06d}"
        if self.queue_store is not None:
            self.queue_store.put(key, event)
        self._queue.append(_Queued(key, event))
        self._cond.notify_all()

    def _forget(self, key: str) -> None:
        with contextlib.suppress(KeyError):
            self.queue_store.delete(key)  # type: ignore[union-attr]

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run one unit of work; log and survive whatever it raises."""
        try:
            fn(*args)
        except Exception:
            log.exception("%s: %s failed; carrying on", self.name, getattr(fn, "__name__", fn))


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
    reconcile_interval: float = 2.0,
) -> Worker:
    """A worker with its state under ``data_dir/name`` (locked against a second process
    with the same name), on the runtime chosen by :func:`cube.runtime.choose`."""
    home = Path(data_dir) / name
    lock = lock_directory(home, f"worker {name}") if dbtype == "persistent" else None
    return Worker(
        name,
        open_store(dbtype, home / "tasks", WireCodec(Task)),
        worker_runtime(runtime, data_dir, name),
        queue=open_store(dbtype, home / "queue", WireCodec(TaskEvent)),
        reconcile_interval=reconcile_interval,
        lock=lock,
    )
