"""The manager: accepts tasks, places them on workers, and keeps them where they belong.

Three threads do the work, each waking on an event or a short period, never sleeping
the book's 10-15 s:

- **dispatch** takes entries from the pending queue: places new tasks with the
  scheduler and posts them to their worker, or sends stop requests. A task that fits
  nowhere stays Pending with the reason, and is tried again when capacity changes.
- **monitor** polls every worker (``/stats`` and ``/tasks``) each ``update_interval``,
  copies task states back (checked against the transition table), marks a worker that
  has not answered for ``node_ttl`` seconds as down and reschedules its tasks, and stops
  stray copies a returning worker still runs.
- **health** probes each running task's ``HealthCheck`` path and restarts failed or
  unhealthy tasks with exponential backoff, up to a limit (see :mod:`.health`).

Everything the manager knows is in stores, written *before* it acts on it: tasks (whose
``Worker`` field is the task-to-worker assignment), the event history, the pending
queue, the tasks being stopped, and the node table. A manager killed at any moment
resumes from them: an accepted task is never lost, and because a task's assignment is
stored before it is posted and workers ignore a repeated post of the same task, it is
never started twice.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cube.client import Conflict, CubeError, NotFound, Unreachable, WorkerClient
from cube.manager.health import RestartPolicy, probe
from cube.node import Node, NodeTable
from cube.scheduler import Scheduler, make, place
from cube.store import JsonCodec, Store, WireCodec, lock_directory, open_store
from cube.task import (
    State,
    Task,
    TaskEvent,
    UnknownTask,
    ValidationError,
    can_transition,
    check_transition,
    utcnow,
    wait_for_state,
)

log = logging.getLogger(__name__)

LIVE = (State.Scheduled, State.Running)
FAST_POLL = 0.1  # seconds between polls while a task is on its way to a worker


@dataclass
class Stores:
    """Where a manager keeps everything it knows."""

    tasks: Store[Task]
    events: Store[TaskEvent]
    queue: Store[Any]  # key -> {"Action": "run" | "stop", "TaskID": id}
    stopping: Store[Any]  # task id -> stop event id
    nodes: Store[Any]  # node name -> Node wire

    @classmethod
    def open(cls, kind: str, directory: str | Path | None) -> Stores:
        def sub(name: str, codec: Any) -> Store[Any]:
            return open_store(kind, Path(directory) / name if directory else None, codec)

        return cls(
            tasks=sub("tasks", WireCodec(Task)),
            events=sub("events", WireCodec(TaskEvent)),
            queue=sub("queue", JsonCodec()),
            stopping=sub("stopping", JsonCodec()),
            nodes=sub("nodes", JsonCodec()),
        )

    def close(self) -> None:
        for store in (self.tasks, self.events, self.queue, self.stopping, self.nodes):
            store.close()


class Manager:
    """Places tasks on workers and keeps them running. Plain object: usable in a
    notebook without threads (:meth:`step`) or as a service (:meth:`start`)."""

    def __init__(
        self,
        workers: list[str],
        scheduler: Scheduler | str = "epvm",
        stores: Stores | None = None,
        *,
        update_interval: float = 1.0,
        health_interval: float = 5.0,
        node_ttl: float = 5.0,
        restart: RestartPolicy | None = None,
        worker_token: str | None = None,
        http_timeout: float = 3.0,
        lock: IO[str] | None = None,
    ) -> None:
        self.scheduler = make(scheduler) if isinstance(scheduler, str) else scheduler
        self.stores = stores or Stores.open("memory", None)
        self.update_interval = update_interval
        self.health_interval = health_interval
        self.node_ttl = node_ttl
        self.restart = restart or RestartPolicy()
        self.http_timeout = http_timeout
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._seq = itertools.count()
        self._file_lock = lock
        self._retry_at: dict[str, float] = {}  # queue key -> monotonic time of next try
        self._restart_at: dict[str, float] = {}  # task id -> monotonic time of restart
        self._unplaced: set[str] = set()  # queue keys waiting for capacity
        self._capacity_changed = False
        self._next_probe = 0.0
        self._update_due = 0.0
        self._polled = False
        self._started = utcnow()
        self.nodes: dict[str, Node] = {}
        self._clients: dict[str, WorkerClient] = {}
        for address in workers:
            node = self._load_node(address)
            self.nodes[node.name] = node
            self._clients[node.name] = WorkerClient(node.api, worker_token, http_timeout)
        self._pool = ThreadPoolExecutor(max(4, len(self.nodes)), thread_name_prefix="manager-io")
        self.tasks: dict[str, Task] = {}
        self._recover()

    # ------------------------------------------------------------------ public API

    def submit(self, event: TaskEvent) -> Task:
        """Accept a task (or a stop request). Returns once it is durably stored."""
        if event.state is State.Completed:
            self.stop(str(event.task.id), event)
            return self.get_task(str(event.task.id))
        if event.state not in (State.Running, State.Scheduled):
            raise ValidationError(
                "TaskEvent.State", f"ask for Running (2) or Completed (3), not {event.state.name}"
            )
        task_id = str(event.task.id)
        with self._lock:
            existing = self.tasks.get(task_id)
            earlier = self._event(str(event.id))
            if earlier is not None and str(earlier.task.id) != task_id:
                raise TaskExists(task_id, State.Pending, f"event ID {event.id} is taken")
            if existing is not None:
                if earlier is not None:
                    return existing  # the same submission again (a client retry)
                raise TaskExists(task_id, existing.state)
            task = event.task.replace(
                state=State.Pending,
                container_id="",
                host_ports={},
                start_time=None,
                finish_time=None,
                worker="",
                reason="waiting to be scheduled",
                restart_count=0,
                created=utcnow(),
            )
            self._record(event)
            self._save(task)
            self._enqueue("run", task_id)
            log.info("accepted task %s (%s, %s)", task_id, task.name, task.image)
            return task

    def stop(self, task_id: str, event: TaskEvent | None = None) -> Task:
        """Stop a task wherever it runs, or cancel it if it was never started."""
        with self._lock:
            task = self.get_task(task_id)
            check_transition(task.state, State.Completed)
            event = event or TaskEvent(task=task, state=State.Completed)
            self._record(event)
            if task.state is State.Pending or not task.worker:
                self._drop_queued(task_id)
                return self._save(
                    task.replace(
                        state=State.Completed,
                        finish_time=utcnow(),
                        reason="cancelled before it was placed",
                    )
                )
            self.stores.stopping.put(task_id, str(event.id))
            self._restart_at.pop(task_id, None)
            self._enqueue("stop", task_id)
            return task

    def get_task(self, task_id: str) -> Task:
        with self._lock:
            task = self.tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id)
        return task

    def list_tasks(self) -> list[Task]:
        with self._lock:
            tasks = list(self.tasks.values())
        return sorted(tasks, key=lambda t: (t.created or utcnow(), t.name))

    def list_events(self, limit: int | None = None, task_id: str | None = None) -> list[TaskEvent]:
        events = self.stores.events.list()
        if task_id:
            events = [e for e in events if str(e.task.id) == task_id]
        events.sort(key=lambda e: e.timestamp or utcnow(), reverse=True)
        return events[:limit] if limit else events

    def logs(self, task_id: str, tail: int = 200) -> str:
        task = self.get_task(task_id)
        if not task.worker or task.worker not in self._clients:
            return ""
        try:
            return self._clients[task.worker].logs(task_id, tail)
        except NotFound:
            return ""  # its worker never had it (it refused the task): there is no output

    def wait_for(self, task_id: str, *states: State, timeout: float = 10.0) -> Task:
        """Block until the task reaches one of ``states`` (woken by each change)."""
        with self._wake:
            return wait_for_state(lambda: self.get_task(task_id), states, timeout, self._wake.wait)

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> Manager:
        for name, target in (
            ("dispatch", self._dispatch_loop),
            ("monitor", self._monitor_loop),
            ("health", self._health_loop),
        ):
            thread = threading.Thread(target=target, name=f"manager-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=True)
        for client in self._clients.values():
            client.close()
        self.stores.close()
        if self._file_lock is not None:
            self._file_lock.close()

    def step(self) -> None:
        """One round of everything, in this thread: poll workers, dispatch what is
        queued, check health. For notebooks that want to show each move."""
        self.update()
        self.dispatch()
        self.check_health()

    # ------------------------------------------------------------------- recovery

    def _recover(self) -> None:
        """Rebuild memory from the stores: tasks, and any work a crash interrupted."""
        self.tasks = {str(t.id): t for t in self.stores.tasks.list()}
        queued = {entry["TaskID"] for entry in self.stores.queue.list()}
        for task in self.tasks.values():
            task_id = str(task.id)
            if task_id in queued:
                continue
            if task.state is State.Pending or (task.state is State.Scheduled and task.worker):
                self._enqueue("run", task_id)
        if self.tasks:
            log.info("recovered %d tasks, %d queued", len(self.tasks), self.stores.queue.count())

    def _load_node(self, address: str) -> Node:
        node = Node.for_worker(address)
        with contextlib.suppress(KeyError, ValueError, TypeError):
            saved = Node.from_wire(self.stores.nodes.get(node.name))
            saved.state, saved.api = "unknown", node.api
            return saved
        return node

    # -------------------------------------------------------------------- dispatch

    def _dispatch_loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._due():
                    self._wake.wait(self._next_due())
                if self._stopping:
                    return
            self._guard(self.dispatch)

    def _due(self) -> bool:
        if not self._polled:
            return False  # place nothing before knowing which workers are up
        now = time.monotonic()
        if self._capacity_changed and self._unplaced:
            return True
        return any(
            key not in self._unplaced and self._retry_at.get(key, 0) <= now
            for key in self.stores.queue
        )

    def _next_due(self) -> float:
        now = time.monotonic()
        waits = [t - now for k, t in self._retry_at.items() if k not in self._unplaced]
        return max(0.01, min(waits, default=self.update_interval))

    def dispatch(self) -> None:
        """Act on every queue entry that is due, oldest first."""
        with self._lock:
            if self._capacity_changed:
                self._unplaced.clear()
                self._capacity_changed = False
            now = time.monotonic()
            due = [
                (key, entry)
                for key, entry in sorted(self.stores.queue.items())
                if key not in self._unplaced and self._retry_at.get(key, 0) <= now
            ]
        table = None
        for key, entry in due:
            if entry["Action"] == "stop":
                self._guard(self._send_stop, key, entry["TaskID"])
                continue
            if table is None:
                table = self._node_table()
            self._guard(self._send_run, key, entry["TaskID"], table)

    def _send_run(self, key: str, task_id: str, table: NodeTable) -> None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.state not in (State.Pending, State.Scheduled):
                self._done(key)
                return
            if not task.worker:
                placement = place(self.scheduler, task, table)
                if placement.index is None:
                    self._unplaced.add(key)
                    if task.reason != placement.reason:
                        self._save(task.replace(reason=placement.reason))
                        log.info("task %s waits: %s", task_id, placement.reason)
                    return
                table.allocate(placement.index, task)
                task = self._save(
                    task.replace(
                        state=State.Scheduled, worker=table.names[placement.index], reason=""
                    )
                )
        self._post(key, task)

    def _post(self, key: str, task: Task) -> None:
        client = self._clients.get(task.worker)
        if client is None:
            self._reschedule(task, f"worker {task.worker} is not configured any more")
            return
        event = TaskEvent(task=task, state=State.Running)
        try:
            client.submit(event)
        except Unreachable as exc:
            self._retry(key, f"cannot reach {task.worker} ({exc}); will retry")
            return
        except Conflict as exc:
            log.warning("worker %s refused task %s: %s", task.worker, task.id, exc)
        except CubeError as exc:
            failed = self._mark_failed(task, f"worker {task.worker} refused it: {exc.message}")
            self._plan_restart(failed, failed.reason)
        self._done(key)
        self._poll_soon()
        log.info("task %s (%s) sent to %s", task.id, task.name, task.worker)

    def _send_stop(self, key: str, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.state is State.Completed:
            self._done(key)
            return
        client = self._clients.get(task.worker)
        try:
            if client is not None:
                client.stop(task_id)
                self._done(key)  # the worker stops it; the next poll reports Completed
                self._poll_soon()
                return
        except Unreachable as exc:
            if self.nodes[task.worker].state != "down":
                self._retry(key, f"cannot reach {task.worker} to stop {task_id} ({exc})")
                return
        except (NotFound, Conflict):
            pass
        # The worker does not have it (or is down, or gone): it is stopped as far as
        # anyone can tell; a copy that turns up later is stopped as a stray.
        self._finish_stop(task, "stopped on request")
        self._done(key)

    def _retry(self, key: str, why: str) -> None:
        log.warning("%s", why)
        with self._lock:
            self._retry_at[key] = time.monotonic() + self.update_interval

    # --------------------------------------------------------------------- monitor

    def _monitor_loop(self) -> None:
        """Poll at once, then every ``update_interval``; while a task is on its way to
        a worker (or being stopped), poll every ``FAST_POLL`` s so the change shows
        up quickly."""
        while True:
            with self._wake:
                while not self._stopping and time.monotonic() < self._update_due:
                    self._wake.wait(self._update_due - time.monotonic())
                if self._stopping:
                    return
                in_flight = self.stores.stopping.count() > 0 or any(
                    t.state is State.Scheduled and t.worker for t in self.tasks.values()
                )
                pause = FAST_POLL if in_flight else self.update_interval
                self._update_due = time.monotonic() + pause
            self._guard(self.update)

    def _poll_soon(self) -> None:
        with self._wake:
            self._update_due = min(self._update_due, time.monotonic() + FAST_POLL)
            self._wake.notify_all()

    def update(self) -> None:
        """Poll every worker at once; copy what they report; handle silent workers.
        Tasks waiting for room are tried again after each round, since usage moved."""
        polls = {self._pool.submit(self._poll, name): name for name in self.nodes}
        for future in as_completed(polls):  # a hung worker holds up no one else
            self._guard(self._absorb, polls[future], *future.result())
        with self._wake:
            self._polled = True
            if self._unplaced:
                self._capacity_changed = True
                self._wake.notify_all()

    def _poll(self, name: str) -> tuple[dict[str, Any] | None, list[Task] | None, str]:
        client = self._clients[name]
        try:
            return client.stats(), client.tasks(), ""
        except (CubeError, ValueError) as exc:
            return None, None, str(exc)

    def _absorb(
        self, name: str, stats: dict[str, Any] | None, reported: list[Task] | None, error: str
    ) -> None:
        node = self.nodes[name]
        if stats is None or reported is None:
            self._silent(node, error)
            return
        was = node.state
        with self._lock:
            node.observe(stats, utcnow())
            if was != "up":
                log.info("worker %s is up", name)
                self._capacity_changed = True
                self._wake.notify_all()
            self.stores.nodes.put(name, node.to_wire())
        seen = set()
        for remote in reported:
            seen.add(str(remote.id))
            self._guard(self._reconcile, node, remote)
        self._check_missing(node, seen)

    def _silent(self, node: Node, error: str) -> None:
        with self._lock:
            since = max(node.last_seen or self._started, self._started)
            if node.state == "down" or (utcnow() - since).total_seconds() < self.node_ttl:
                return
            node.state = "down"
            node.reason = f"no answer for {self.node_ttl:g} s: {error}"
            self.stores.nodes.put(node.name, node.to_wire())
            log.warning("worker %s is down (%s)", node.name, error)
            for task in list(self.tasks.values()):
                if task.worker != node.name or task.state not in LIVE:
                    continue
                if str(task.id) in self.stores.stopping:
                    # It was being stopped: done, as far as anyone can tell; a copy
                    # that turns up when the worker returns is stopped as a stray.
                    self._finish_stop(task, f"stopped on request (worker {node.name} is down)")
                else:
                    self._reschedule(task, f"worker {node.name} is down")

    def _reconcile(self, node: Node, remote: Task) -> None:
        """Bring one task a worker reported into the manager's view."""
        task_id = str(remote.id)
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                return  # not ours (another manager's, or from before a reset)
            stray = task.worker != node.name or task.state is State.Completed or self._gave_up(task)
            if stray:
                if remote.state in LIVE:
                    self._pool.submit(self._stop_stray, node.name, task_id)
                return
            if task_id in self.stores.stopping:
                if remote.state is State.Completed:
                    self._finish_stop(task, remote.reason or "stopped on request", remote)
                return
            if remote.restart_count < task.restart_count:
                return  # the worker has not applied the restart yet
            self._copy(task, remote)

    def _copy(self, task: Task, remote: Task) -> None:
        if (remote.state, remote.container_id, remote.host_ports) == (
            task.state,
            task.container_id,
            task.host_ports,
        ):
            return
        if remote.state != task.state and not can_transition(task.state, remote.state):
            log.debug("ignoring %s -> %s for %s", task.state.name, remote.state.name, task.id)
            return
        updated = self._save(
            task.replace(
                state=remote.state,
                container_id=remote.container_id,
                host_ports=remote.host_ports,
                start_time=remote.start_time,
                finish_time=remote.finish_time,
                reason=remote.reason if remote.state != task.state else task.reason,
            )
        )
        if remote.state != task.state:
            log.info("task %s (%s) is %s on %s", task.id, task.name, remote.state.name, task.worker)
            if remote.state in (State.Completed, State.Failed):
                self._capacity_changed = True
                self._wake.notify_all()
            if remote.state is State.Failed:
                self._plan_restart(updated, remote.reason or "it failed")

    def _check_missing(self, node: Node, seen: set[str]) -> None:
        """Tasks this node should have but does not report."""
        with self._lock:
            queued = {e["TaskID"] for e in self.stores.queue.list()}
            for task in list(self.tasks.values()):
                task_id = str(task.id)
                if task.worker != node.name or task_id in seen or task_id in queued:
                    continue
                if task.state is State.Scheduled:
                    self._enqueue("run", task_id)
                elif task.state is State.Running:
                    failed = self._mark_failed(task, f"worker {node.name} no longer has this task")
                    self._plan_restart(failed, failed.reason)

    def _stop_stray(self, worker: str, task_id: str) -> None:
        log.warning("stopping a stray copy of task %s on %s", task_id, worker)
        with contextlib.suppress(CubeError):
            self._clients[worker].stop(task_id)

    # ---------------------------------------------------------------------- health

    def _health_loop(self) -> None:
        while not self._sleep(min(self.health_interval, self.update_interval)):
            self._guard(self.check_health)

    def check_health(self) -> None:
        """Probe running tasks that are due; restart failed ones whose backoff is over."""
        now = time.monotonic()
        with self._lock:
            due = [
                t
                for t in self.tasks.values()
                if t.state is State.Running
                and t.health_check
                and t.host_port() is not None
                and str(t.id) not in self.stores.stopping
            ]
            restarts = [tid for tid, at in self._restart_at.items() if at <= now]
        if now >= self._next_probe:
            self._next_probe = now + self.health_interval
            results = {t.id: self._pool.submit(self._probe, t) for t in due}
            for task in due:
                problem = results[task.id].result()
                if problem:
                    self._guard(self._unhealthy, str(task.id), problem)
        for task_id in restarts:
            self._guard(self._do_restart, task_id)

    def _probe(self, task: Task) -> str:
        node = self.nodes.get(task.worker)
        if node is None:
            return ""
        host = node.api.split("://")[-1].rsplit(":", 1)[0]
        return probe(host, task.host_port() or 0, task.health_check, self.http_timeout)

    def _unhealthy(self, task_id: str, problem: str) -> None:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or task.state is not State.Running or task_id in self._restart_at:
                return
            log.warning("task %s (%s) is unhealthy: %s", task_id, task.name, problem)
            self._plan_restart(task, f"health check failed: {problem}")

    def _plan_restart(self, task: Task, why: str) -> None:
        """Schedule a restart after the backoff, or give up at the limit."""
        task_id = str(task.id)
        if task_id in self.stores.stopping:
            return
        if task.restart_count >= self.restart.limit:
            reason = f"gave up after {task.restart_count} restarts; last problem: {why}"
            if task.state is State.Running:
                self._pool.submit(self._stop_stray, task.worker, task_id)
            self._mark_failed(task, reason)
            self._restart_at.pop(task_id, None)
            log.warning("task %s (%s): %s", task_id, task.name, reason)
            return
        delay = self.restart.backoff(task.restart_count)
        self._restart_at[task_id] = time.monotonic() + delay
        self._save(task.replace(reason=f"{why}; restart {task.restart_count + 1} in {delay:g} s"))

    def _do_restart(self, task_id: str) -> None:
        with self._lock:
            self._restart_at.pop(task_id, None)
            task = self.tasks.get(task_id)
            if task is None or task.state not in (State.Running, State.Failed):
                return
            if task_id in self.stores.stopping or self._gave_up(task):
                return
            node = self.nodes.get(task.worker)
            worker = task.worker if node is not None and node.state == "up" else ""
            restarted = self._save(
                task.replace(
                    state=State.Scheduled,
                    restart_count=task.restart_count + 1,
                    worker=worker,
                    reason=f"restart {task.restart_count + 1} of {self.restart.limit}",
                )
            )
            self._record(TaskEvent(task=restarted))
            self._enqueue("run", task_id)
            log.info(
                "restarting task %s (%s), attempt %d", task_id, task.name, restarted.restart_count
            )

    def _gave_up(self, task: Task) -> bool:
        return (
            task.state is State.Failed
            and task.restart_count >= self.restart.limit
            and (str(task.id) not in self._restart_at)
        )

    # --------------------------------------------------------------------- helpers

    def _node_table(self) -> NodeTable:
        """The nodes, with what is promised to tasks placed on them, for a decision."""
        return NodeTable.from_nodes(self.list_nodes())

    def list_nodes(self) -> list[Node]:
        """The workers, with the cores, memory and disk promised to their live tasks."""
        with self._lock:
            nodes = list(self.nodes.values())
            for node in nodes:
                node.cpu_allocated, node.memory_allocated, node.disk_allocated = 0.0, 0, 0
                node.task_count = 0
            for task in self.tasks.values():
                node = self.nodes.get(task.worker)
                if node is not None and task.state in LIVE:
                    node.cpu_allocated += task.cpu
                    node.memory_allocated += task.memory
                    node.disk_allocated += task.disk
                    node.task_count += 1
            return nodes

    def _reschedule(self, task: Task, why: str) -> None:
        """Move a task off its worker: it will be placed again (restart count +1)."""
        with self._lock:
            moved = self._save(
                task.replace(
                    state=State.Scheduled,
                    worker="",
                    container_id="",
                    host_ports={},
                    restart_count=task.restart_count + 1,
                    reason=f"{why}; rescheduling",
                )
            )
            self._record(TaskEvent(task=moved))
            self._drop_queued(str(task.id))
            self._enqueue("run", str(task.id))

    def _mark_failed(self, task: Task, reason: str) -> Task:
        with self._lock:
            if task.state is State.Failed:
                return self._save(task.replace(reason=reason))
            check_transition(task.state, State.Failed)
            return self._save(task.replace(state=State.Failed, finish_time=utcnow(), reason=reason))

    def _finish_stop(self, task: Task, reason: str, remote: Task | None = None) -> None:
        with self._lock:
            done = task.replace(
                state=State.Completed,
                finish_time=(remote.finish_time if remote else None) or utcnow(),
                reason=reason,
                host_ports={},
            )
            self._save(done)
            with contextlib.suppress(KeyError):
                self.stores.stopping.delete(str(task.id))
            self._capacity_changed = True
            self._wake.notify_all()

    def _event(self, event_id: str) -> TaskEvent | None:
        try:
            return self.stores.events.get(event_id)
        except KeyError:
            return None

    def _record(self, event: TaskEvent) -> None:
        self.stores.events.put(str(event.id), event)

    def _save(self, task: Task) -> Task:
        with self._wake:
            self.stores.tasks.put(str(task.id), task)
            self.tasks[str(task.id)] = task
            self._wake.notify_all()
        return task

    def _enqueue(self, action: str, task_id: str) -> None:
        key = f"{time.time_ns():020d}-{next(self._seq):06d}"
        with self._wake:
            self.stores.queue.put(key, {"Action": action, "TaskID": task_id})
            self._wake.notify_all()

    def _done(self, key: str) -> None:
        with self._lock:
            with contextlib.suppress(KeyError):
                self.stores.queue.delete(key)
            self._retry_at.pop(key, None)
            self._unplaced.discard(key)

    def _drop_queued(self, task_id: str) -> None:
        for key, entry in self.stores.queue.items():
            if entry["TaskID"] == task_id:
                self._done(key)

    def _sleep(self, seconds: float) -> bool:
        """Wait, waking early on close. True when the manager is closing."""
        with self._wake:
            if not self._stopping:
                self._wake.wait_for(lambda: self._stopping, timeout=seconds)
            return self._stopping

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s failed; carrying on", getattr(fn, "__name__", fn))


class TaskExists(ValueError):
    """A submission whose task or event ID is already taken (and not by a retry of
    itself)."""

    http_status = 409

    def __init__(self, task_id: str, state: State, why: str = "") -> None:
        why = why or f"task {task_id} already exists ({state.name})"
        super().__init__(f"{why}; submit with a new ID to run another")


def open_manager(
    workers: list[str],
    scheduler: str = "epvm",
    data_dir: str | Path | None = None,
    dbtype: str = "persistent",
    **options: Any,
) -> Manager:
    """A manager with its state under ``data_dir/manager`` (locked against a second
    manager on the same directory)."""
    home = Path(data_dir) / "manager" if data_dir else None
    lock = lock_directory(home, "manager") if dbtype == "persistent" and home else None
    return Manager(workers, scheduler, Stores.open(dbtype, home), lock=lock, **options)
