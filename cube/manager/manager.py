"""The manager: accepts tasks and keeps each where it is wanted, by reconciling.

What a client asks changes only *desired state*: a submission stores a task wanted
Running (generation 1), a stop marks it wanted Completed (generation + 1), and either
puts the task on the durable work queue. Everything else follows from comparing that
with what the workers report (:mod:`cube.manager.reconcile`), driven by the threads of
:mod:`cube.manager.control`: placement (feasibility, then the scheduler), sending orders,
restarts with backoff, moving tasks off workers that went down, stopping stray copies.

Everything the manager knows is stored before it acts on it (:mod:`cube.manager.stores`):
the tasks with their desired state and every due time, the history of orders, the work
queue. A manager killed at any moment starts again from them and, once it has heard
from its workers again, reaches the same decisions: an accepted task is never lost, a
restart waiting out its backoff still happens, and, since workers take each order once
(by its generation), nothing is started twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, Any

from cube.client import NotFound
from cube.manager.control import Control
from cube.manager.health import RestartPolicy
from cube.manager.history import History
from cube.manager.nodes import Nodes
from cube.manager.observe import Reports
from cube.manager.reconcile import Timing, given_up
from cube.manager.retention import Retention
from cube.manager.stores import Stores
from cube.node import Node
from cube.records import Records
from cube.scheduler import Scheduler, make
from cube.store import lock_directory
from cube.task import (
    State,
    Task,
    TaskEvent,
    UnknownTask,
    ValidationError,
    check_transition,
    utcnow,
    wait_for_state,
)
from cube.timers import WorkQueue

log = logging.getLogger(__name__)

SPEC = ("name", "image", "cpu", "memory", "disk", "exposed_ports", "port_bindings")
SPEC += ("restart_policy", "health_check")


class Manager:
    """Places tasks on workers and keeps them running. A plain object: usable in a
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
        retention: Retention | None = None,
        lock: IO[str] | None = None,
    ) -> None:
        self.scheduler = make(scheduler) if isinstance(scheduler, str) else scheduler
        self.stores = stores or Stores.open("memory", None)
        self.update_interval, self.health_interval = update_interval, health_interval
        self.http_timeout = http_timeout
        self.retention = retention or Retention()
        self.timing = Timing(restart=restart or RestartPolicy(), retry=max(1.0, update_interval))
        self.cluster = Nodes(
            workers,
            self.stores.nodes,
            token=worker_token,
            timeout=http_timeout,
            probe_timeout=min(1.0, http_timeout),
            node_ttl=node_ttl,
        )
        self.reports = Reports()
        self.timers = WorkQueue(self.stores.timers)
        self.lock = self.timers.changed
        self.records = Records(self.stores.tasks)
        self.history = History(self.stores.events, self.stores.history)
        self.problems: dict[str, str] = {}  # task ID -> its latest failed health check
        self._file_lock = lock
        self._recover()
        self.control = Control(self)

    # ------------------------------------------------------------------ public API

    def submit(self, event: TaskEvent) -> Task:
        """Accept a task (or a stop request). Returns once it is durably stored. The same
        event sent again (a client's retry) gets the same answer; its ID used for
        anything else is refused."""
        self._check_event(event)
        if event.state is State.Completed:
            return self.stop(str(event.task.id), event)
        if event.state not in (State.Running, State.Scheduled):
            raise ValidationError(
                "TaskEvent.State", f"ask for Running (2) or Completed (3), not {event.state.name}"
            )
        task_id = str(event.task.id)
        with self.lock:
            existing = self.records.get(task_id)
            if existing is not None:
                if self._event(str(event.id)) is not None:
                    return existing  # the same submission again
                raise TaskExists(task_id, existing.state)
            if task_id in self.stores.tasks.unreadable():
                raise TaskExists(task_id, State.Pending, f"task {task_id}'s record is unreadable")
            task = event.task.replace(
                state=State.Pending,
                desired=State.Running,
                generation=1,
                container_id="",
                host_ports={},
                start_time=None,
                finish_time=None,
                restart_at=None,
                worker="",
                reason="waiting to be scheduled",
                restart_count=0,
                created=utcnow(),
            )
            self.record(event)  # first: a retry after a crash here is recognised
            self.save(task)
            self.timers.schedule(task_id, why="submitted")
            log.info("accepted task %s (%s, %s)", task_id, task.name, task.image)
            return task

    def stop(self, task_id: str, event: TaskEvent | None = None) -> Task:
        """Want a task stopped wherever it runs (cancelled, if it never started)."""
        with self.lock:
            task = self.get_task(task_id)
            check_transition(task.state, State.Completed)
            if task.desired is State.Completed:
                return task  # being stopped already
            stopping = task.replace(desired=State.Completed, generation=task.generation + 1)
            self.save(stopping)
            self.record(event or TaskEvent(task=stopping, state=State.Completed))
            self.timers.schedule(task_id, why="stop")
            return stopping

    def get_task(self, task_id: str) -> Task:
        with self.lock:
            task = self.records.get(task_id)
        if task is None:
            why = self.stores.tasks.unreadable().get(task_id)
            raise UnknownTask(task_id) if why is None else UnreadableTask(task_id, why)
        return task

    def list_tasks(self) -> list[Task]:
        return sorted(self.records.all(), key=lambda t: (t.created or utcnow(), t.name))

    def list_events(self, limit: int | None = None, task_id: str | None = None) -> list[TaskEvent]:
        """The newest events first (reading only as many as asked for)."""
        return self.history.newest(limit or None, task_id)

    def logs(self, task_id: str, tail: int = 200) -> str:
        task = self.get_task(task_id)
        client = self.cluster.clients.get(task.worker)
        if client is None:
            return ""
        try:
            return client.logs(task_id, tail)
        except NotFound:
            return ""  # its worker never had it (it refused the task): there is no output

    def list_nodes(self) -> list[Node]:
        """The workers, with the cores, memory and disk promised to their live tasks."""
        return self.cluster.list()

    @property
    def nodes(self) -> dict[str, Node]:
        return self.cluster.nodes

    def wait_for(self, task_id: str, *states: State, timeout: float = 10.0) -> Task:
        """Block until the task reaches one of ``states`` (woken by each change)."""
        with self.lock:
            return wait_for_state(lambda: self.get_task(task_id), states, timeout, self.lock.wait)

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> Manager:
        self.control.start()
        return self

    def step(self) -> None:
        """One round of everything, in this thread: probe the workers, read their lists,
        check health, reconcile what is due. For notebooks that show each move."""
        self.control.step()

    def check_health(self) -> None:
        self.control.check_health()

    def close(self) -> None:
        self.control.close()
        self.cluster.close()
        self.stores.close()
        if self._file_lock is not None:
            self._file_lock.close()

    # ------------------------------------------------------------ what is stored

    def save(self, task: Task, note: str = "") -> Task:
        """Store a task's record (before anything acts on it) and wake whoever waits."""
        task_id = str(task.id)
        with self.lock:
            old = self.records.get(task_id)
            self.records.put(task)
            self.cluster.account(old, task)
            if old is not None and old.generation != task.generation:
                self.problems.pop(task_id, None)  # a new order: its health is unknown
            self.lock.notify_all()
        if old is not None and old.state is not task.state:
            where = f" on {task.worker}" if task.worker else ""
            log.info("task %s (%s) is %s%s", task_id, task.name, task.state.name, where)
        elif note:
            log.info("task %s (%s): %s", task_id, task.name, note)
        return task

    def record(self, event: TaskEvent) -> None:
        self.history.record(event)

    def forget(self, task_id: str) -> None:
        """Drop a finished task (past retention) from memory and the store."""
        with self.lock:
            task = self.records.forget(task_id)
            self.cluster.account(task, None)
            self.problems.pop(task_id, None)
            self.timers.remove(task_id)

    def tasks_on(self, worker: str) -> set[str]:
        return self.records.on(worker)

    def waiting(self) -> set[str]:
        """Tasks that wait for a worker with room (or able to run them at all)."""
        placed_nowhere = (self.records.get(k) for k in self.records.on(""))
        return {str(t.id) for t in placed_nowhere if t is not None and self._active(t)}

    def _active(self, task: Task) -> bool:
        """Still something to do for it: not Completed, not given up."""
        return task.state is not State.Completed and not given_up(task, self.timing.restart)

    def _event(self, event_id: str) -> TaskEvent | None:
        return self.history.get(event_id)

    def _check_event(self, event: TaskEvent) -> None:
        """An event ID already used: fine for the same content (a retry), a 409 for
        anything else, whichever task it names."""
        earlier = self._event(str(event.id))
        if earlier is not None and not _same_order(earlier, event):
            raise TaskExists(str(event.task.id), State.Pending, f"event ID {event.id} is taken")

    def _recover(self) -> None:
        """Read back the tasks; queue those that need a look before any worker speaks."""
        for task in self.records.all():
            self.cluster.account(None, task)
            if self._active(task) and (not task.worker or task.worker not in self.cluster.nodes):
                self.timers.schedule(str(task.id), why="recovered")
        if len(self.records):
            log.info("recovered %d tasks, %d due", len(self.records), len(self.timers))


def _same_order(a: TaskEvent, b: TaskEvent) -> bool:
    return (
        a.state is b.state
        and a.task.id == b.task.id
        and all(getattr(a.task, f) == getattr(b.task, f) for f in SPEC)
    )


class TaskExists(ValueError):
    """A submission whose task or event ID is already taken (and not by a retry of
    itself)."""

    http_status = 409

    def __init__(self, task_id: str, state: State, why: str = "") -> None:
        why = why or f"task {task_id} already exists ({state.name})"
        super().__init__(f"{why}; submit with a new ID to run another")


class UnreadableTask(UnknownTask):
    """The task's record could not be read, and was set aside (not lost)."""

    def __str__(self) -> str:
        return f"task {self.args[0]}'s record could not be read and was set aside: {self.args[1]}"


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
