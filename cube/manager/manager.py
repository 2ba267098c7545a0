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
from cube.clock import utcnow
from cube.etcd import CasConflict, Election, EtcdClient
from cube.manager.consistency import Catchup
from cube.manager.control import Control
from cube.manager.leadership import Leadership, Lookout
from cube.manager.network import Network
from cube.manager.nodes import Nodes
from cube.manager.observe import Reports
from cube.manager.outputs import Keeper, Outputs, last_lines
from cube.manager.reconcile import Timing
from cube.manager.retention import Retention
from cube.manager.stores import Stores
from cube.manager.tasks import Tasks
from cube.node import Node
from cube.proof import LeaderSecret
from cube.scheduler import Scheduler, make
from cube.store import lock_directory
from cube.task import (
    RestartPolicy,
    State,
    Task,
    TaskEvent,
    UnknownTask,
    ValidationError,
    check_transition,
    wait_for_state,
)

log = logging.getLogger(__name__)

SPEC = ("name", "image", "cpu", "memory", "disk", "exposed_ports", "port_bindings")
SPEC += ("restart_policy", "health_check")
LEASE_TTL = 3  # seconds a leader's lease lasts unrenewed: about the time a failover takes
ETCD_TIMEOUT = 2.0  # seconds for one etcd request to one member
CAS_TRIES = 5  # a client's write meeting other managers' writes: read and try again


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
        election: Election | None = None,
        network: Network | None = None,
        leader_secret: LeaderSecret | None = None,
        series_key: str = "",
    ) -> None:
        self.network = network or Network()
        self.scheduler = make(scheduler) if isinstance(scheduler, str) else scheduler
        self.stores = stores or Stores.open("memory", None)
        self.update_interval, self.health_interval = update_interval, health_interval
        self.http_timeout = http_timeout
        self.retention = retention or Retention()
        self.timing = Timing(restart=restart or RestartPolicy(), retry=max(1.0, update_interval))
        self.nodes = Nodes(
            workers,
            self.stores.nodes,
            token=worker_token,
            timeout=http_timeout,
            probe_timeout=min(1.0, http_timeout),
            node_ttl=node_ttl,
            network=self.network,
        )
        self.reports = Reports()
        fence = election.fence if election is not None else None
        self.tasks = Tasks(self.stores, self.nodes, self.timing, fence, lambda: self.acting)
        self.outputs = Outputs(self.stores.outputs)
        self.keeper = Keeper(self)
        self._file_lock = lock
        # several managers on etcd: the control loops run only while this one leads,
        # and their writes go through stores that hold only while its lease does
        self.leadership = None
        if election is not None:
            leadership = Leadership(self, election, leader_secret, series_key)
            self.leadership = leadership
            self.nodes.speak_for(lambda: leadership.stamp)
            if leader_secret is None:
                log.warning(
                    "no leader secret (--leader-secret): workers cannot tell this "
                    "manager's orders from a deposed leader's, or from anyone's"
                )
        self.control: Control | None = None
        self._lookout: Lookout | None = None
        self._threads = False  # started as a service: the control loops get threads
        if self.leadership is None:
            self.tasks.recover()
            self.control = Control(self)

    # ------------------------------------------------------------------ public API

    def submit(self, event: TaskEvent) -> Task:
        """Accept a task (or a stop request). Returns once it is durably stored. The same
        event sent again (a client's retry) gets the same answer; its ID used for
        anything else is refused."""
        try:
            return self._accept(event)
        finally:
            self.tasks.durable()  # flushed with whatever else was written meanwhile

    def _accept(self, event: TaskEvent) -> Task:
        self._check_event(event)
        if event.state is State.Completed:
            return self._want_stopped(str(event.task.id), event)
        if event.state not in (State.Running, State.Scheduled):
            raise ValidationError(
                "TaskEvent.State", f"ask for Running (2) or Completed (3), not {event.state.name}"
            )
        task_id = str(event.task.id)
        with self.tasks.lock:
            existing = self.tasks.records.get(task_id)
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
            self.tasks.record(event)  # first: a retry after a crash here is recognised
            try:
                self.tasks.save(task, decided=False)
            except CasConflict:  # another manager stored it first
                raise TaskExists(task_id, State.Pending) from None
            self.tasks.enqueue(task_id, "submitted")
            log.info("accepted task %s (%s, %s)", task_id, task.name, task.image)
            return task

    def stop(self, task_id: str, event: TaskEvent | None = None) -> Task:
        """Want a task stopped wherever it runs (cancelled, if it never started).
        Returns once that is durably stored."""
        try:
            return self._want_stopped(task_id, event)
        finally:
            self.tasks.durable()

    def _want_stopped(self, task_id: str, event: TaskEvent | None) -> Task:
        for _ in range(CAS_TRIES):
            with self.tasks.lock:
                task = self.get_task(task_id)
                check_transition(task.state, State.Completed)
                if task.desired is State.Completed:
                    return task  # being stopped already
                stopping = task.replace(desired=State.Completed, generation=task.generation + 1)
                try:
                    self.tasks.save(stopping, decided=False)
                except CasConflict:
                    continue  # another manager changed it meanwhile: read it again
                self.tasks.enqueue(task_id, "stop")  # before the history: stored is to be done
                self.tasks.record(event or TaskEvent(task=stopping, state=State.Completed))
                return stopping
        raise Busy(f"task {task_id} kept changing while it was being stopped; try again")

    def get_task(self, task_id: str) -> Task:
        with self.tasks.lock:
            task = self.tasks.records.get(task_id)
        if task is None:
            why = self.stores.tasks.unreadable().get(task_id)
            raise UnknownTask(task_id) if why is None else UnreadableTask(task_id, why)
        return task

    def list_tasks(self) -> list[Task]:
        return sorted(self.tasks.records.all(), key=lambda t: (t.created or utcnow(), t.name))

    def list_events(self, limit: int | None = None, task_id: str | None = None) -> list[TaskEvent]:
        """The newest events first (reading only as many as asked for)."""
        return self.tasks.history.newest(limit or None, task_id)

    def logs(self, task_id: str, tail: int = 200) -> str:
        """A task's last ``tail`` lines of output: of a finished task, what this manager
        kept (:mod:`cube.manager.outputs`), else what its worker says. Raises
        :class:`OutputGone` when the task ran but its output can be read nowhere."""
        task = self.get_task(task_id)
        kept = self.outputs.get(task_id)
        if kept is not None:
            return last_lines(kept, tail)
        client = self.nodes.clients.get(task.worker)
        if client is None:
            if task.start_time is None:
                return ""  # it never ran: there is no output
            raise OutputGone(task_id, f"its worker {task.worker or '?'} is not one of ours now")
        try:
            return client.logs(task_id, tail)
        except NotFound:
            if task.start_time is None:
                return ""  # its worker never had it (it refused the task): there is no output
            raise OutputGone(task_id, f"its worker {task.worker} has forgotten it") from None

    def list_nodes(self) -> list[Node]:
        """The workers, with the cores, memory and disk promised to their live tasks."""
        return self.nodes.list()

    def wait_for(self, task_id: str, *states: State, timeout: float = 10.0) -> Task:
        """Block until the task reaches one of ``states`` (woken by each change)."""
        lock = self.tasks.lock
        with lock:
            return wait_for_state(lambda: self.get_task(task_id), states, timeout, lock.wait)

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> Manager:
        self._threads = True
        if self.leadership is not None:
            self.leadership.start()
        elif self.control is not None:
            self.control.start()
        return self

    def step(self) -> None:
        """One round of everything, in this thread: probe the workers, read their lists,
        check health, reconcile what is due. For notebooks that show each move."""
        self._acting_control().step()

    def check_health(self) -> None:
        self._acting_control().check_health()

    def _acting_control(self) -> Control:
        if self.control is None:
            raise RuntimeError("this manager does not lead now: the leader runs the loops")
        return self.control

    def leader(self) -> tuple[str, int]:
        """Who leads: its API address and epoch (a single manager: itself, epoch 0)."""
        return self.leadership.leader() if self.leadership is not None else ("", 0)

    @property
    def acting(self) -> bool:
        """Whether this manager runs the control loops (a single one always does)."""
        return self.leadership is None or self.leadership.acting

    def close(self) -> None:
        if self.leadership is not None:
            self.leadership.close()
        if self.control is not None:
            self.control.close()
        if self._lookout is not None:
            self._lookout.close()
        self.nodes.close()
        self.stores.close()
        if self._file_lock is not None:
            self._file_lock.close()

    # ------------------------------------------------------------ what is stored

    def catch_up(self, revision: int, task_id: str | None = None) -> None:
        """Read-your-writes with several managers: before answering about ``task_id``
        (None: every task), hold every write up to ``revision``, and confirm with etcd
        that a task unknown here is unknown there (:mod:`cube.manager.consistency`).
        One manager alone holds every write already."""
        if self.leadership is not None:
            Catchup(self, self.leadership.mirror.position).reach(revision, task_id)

    def reread_all(self) -> None:
        """Read every task again from etcd (a client has seen newer writes)."""
        if self.leadership is not None:
            self.leadership.mirror.read_all()

    # --------------------------------------------------------- several managers

    def look_out(self) -> None:
        """Not acting: keep the workers' state current for ``GET /nodes`` only."""
        if self._lookout is None:
            self._lookout = Lookout(self.nodes, self.update_interval).start()

    def take_office(self, epoch: int) -> None:
        """Start leading: take over the due times in etcd, look at every unfinished
        task, and run the control loops, every order carrying ``epoch``."""
        if self._lookout is not None:
            self._lookout.close()
            self._lookout = None
        self.tasks.timers.reload()
        self.tasks.findings.load()  # what earlier leaders found
        self.tasks.recover(everything=True)
        self.control = Control(self)
        if self._threads:  # else whoever drives this manager runs the rounds
            self.control.start()
        log.info(
            "leading from epoch %d: %d tasks, %d due",
            epoch,
            len(self.tasks.records),
            len(self.tasks.timers),
        )

    def leave_office(self) -> None:
        """Stop acting at once (the loops end; what they were doing is fenced)."""
        control, self.control = self.control, None
        if control is not None:
            control.close()
        self.look_out()

    def forget(self, task_id: str) -> None:
        """Drop a finished task (past retention): its record, and the output kept of it."""
        self.tasks.forget(task_id)
        self.outputs.forget(task_id)

    def _event(self, event_id: str) -> TaskEvent | None:
        return self.tasks.history.get(event_id)

    def _check_event(self, event: TaskEvent) -> None:
        """An event ID already used: fine for the same content (a retry), a 409 for
        anything else, whichever task it names."""
        earlier = self._event(str(event.id))
        if earlier is not None and not _same_order(earlier, event):
            raise TaskExists(str(event.task.id), State.Pending, f"event ID {event.id} is taken")


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


class OutputGone(LookupError):
    """A task that ran, whose output neither this manager kept nor its worker has
    (410: it was there once, and will not be again)."""

    http_status = 410

    def __init__(self, task_id: str, why: str) -> None:
        super().__init__(f"the output of task {task_id} is gone: {why}, and it was not kept")


class Busy(RuntimeError):
    """A write that kept meeting other managers' writes (503: try again)."""

    http_status = 503


class UnreadableTask(UnknownTask):
    """The task's record could not be read, and was set aside (not lost)."""

    def __str__(self) -> str:
        return f"task {self.args[0]}'s record could not be read and was set aside: {self.args[1]}"


def open_manager(
    workers: list[str],
    scheduler: str = "epvm",
    data_dir: str | Path | None = None,
    dbtype: str = "persistent",
    *,
    etcd: str | None = None,
    prefix: str = "/cube",
    name: str = "",
    api: str = "",
    lease_ttl: int = LEASE_TTL,
    leader_secret: LeaderSecret | None = None,
    **options: Any,
) -> Manager:
    """A manager with its state under ``data_dir/manager`` (locked against a second
    manager on the same directory); or, given ``etcd`` (``etcd://host:port,...``), on
    etcd under ``prefix``, one of several managers there, campaigning as ``name`` and
    publishing ``api`` (its address) for the others to show, and signing the epochs it
    leads with by ``leader_secret``."""
    if etcd:
        client = EtcdClient(etcd, timeout=ETCD_TIMEOUT)
        election = Election(
            client, f"{prefix.rstrip('/')}/leader", name or api, lease_ttl, info={"API": api}
        )
        stores = Stores.on_etcd(client, prefix)
        return Manager(
            workers,
            scheduler,
            stores,
            election=election,
            leader_secret=leader_secret,
            series_key=f"{prefix.rstrip('/')}/series",
            **options,
        )
    home = Path(data_dir) / "manager" if data_dir else None
    lock = lock_directory(home, "manager") if dbtype == "persistent" and home else None
    return Manager(workers, scheduler, Stores.open(dbtype, home), lock=lock, **options)
