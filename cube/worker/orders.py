"""What an order means to a worker: pure rules, no I/O, every state change checked.

An order is a task event: "run this task" or "stop it". A worker keeps one record per
task, holding both what is *wanted* of it (``desired``, the latest order) and what
*is* (``state``, the container it runs as). Orders are fenced by their **attempt**,
``(generation, restart count)``: the manager bumps the generation with every new order
(run, stop, restart, move) and the restart count with every restart, so

- an order older than the record's attempt is refused (:class:`StaleOrder`): a manager
  that was cut off, or a request that arrived late, cannot undo a newer order;
- the same attempt again is a repeat, and changes nothing (a client's retry);
- a newer run order is a new attempt: its record replaces the old one (a copy still
  running is stopped first). Completed stays final for the attempt that completed; a
  newer order starts a new attempt rather than reviving it.

The book's Go manager sends no generation: its orders are told apart by restart count
alone, as in the book.
"""

from __future__ import annotations

from cube.clock import utcnow
from cube.task import (
    LIVE,
    State,
    Task,
    TaskEvent,
    UnknownTask,
    ValidationError,
    check_transition,
    clip_reason,
    new_attempt,
)


class StaleOrder(ValueError):
    """An order older than the one the worker already follows (409)."""

    http_status = 409

    def __init__(self, task_id: str, order: tuple[int, int], held: tuple[int, int]) -> None:
        super().__init__(
            f"task {task_id}: this order (generation {order[0]}, restart {order[1]}) is older "
            f"than the one this worker follows (generation {held[0]}, restart {held[1]})"
        )
        self.held = held


def attempt(task: Task) -> tuple[int, int]:
    """What orders are ranked by: (generation, restart count)."""
    return (task.generation, task.restart_count)


def wanted(event: TaskEvent) -> State:
    """The state an event asks for: Running (sent as 1 or 2) or Completed."""
    if event.state in LIVE:
        return State.Running
    if event.state is State.Completed:
        return State.Completed
    raise ValidationError(
        "TaskEvent.State",
        f"a worker can be asked to run (2) or stop (3) a task, not {event.state.name}",
    )


def accept(stored: Task | None, event: TaskEvent) -> Task | None:
    """The record to store for ``event``, given what is stored; ``None`` when the order
    changes nothing (a repeat). Raises :class:`StaleOrder`, :class:`UnknownTask` (a stop
    for a task never had) or :class:`~cube.task.TransitionError`."""
    want, order = wanted(event), event.task
    if stored is None:
        if want is State.Completed:
            raise UnknownTask(str(order.id))
        check_transition(order.state, State.Scheduled)
        return new_attempt(order)
    if attempt(order) < attempt(stored):
        raise StaleOrder(str(order.id), attempt(order), attempt(stored))
    newer = attempt(order) > attempt(stored)
    if want is State.Completed:
        check_transition(stored.state, State.Completed)
        if stored.desired is State.Completed and not newer:
            return None
        return stored.replace(desired=State.Completed, generation=order.generation)
    if not newer:
        if stored.desired is State.Completed or stored.state is State.Completed:
            check_transition(stored.state, State.Scheduled)  # Completed is final: says so
            raise ValidationError("TaskEvent.State", "the task is being stopped")
        return None
    if stored.state is State.Completed:
        return new_attempt(order)  # a new attempt; the completed one stays completed
    check_transition(stored.state, State.Scheduled)
    return new_attempt(order).replace(container_id=stored.container_id)  # the old copy goes first


def check_forgotten(event: TaskEvent, last: tuple[int, int] | None) -> None:
    """An order for a task the worker has forgotten (pruned): one no newer than the last
    order it followed is stale, not a new task."""
    if last is not None and attempt(event.task) <= last:
        if wanted(event) is State.Completed:
            raise UnknownTask(str(event.task.id))
        raise StaleOrder(str(event.task.id), attempt(event.task), last)


def next_step(task: Task) -> str:
    """What the worker's loop should do for a record: "start", "stop" or "none"."""
    if task.desired is State.Completed:
        return "none" if task.state is State.Completed else "stop"
    return "start" if task.state is State.Scheduled else "none"


def started(task: Task, container_id: str, host_ports: dict[str, list[dict[str, str]]]) -> Task:
    check_transition(task.state, State.Running)
    return task.replace(
        state=State.Running,
        container_id=container_id,
        host_ports=host_ports,
        start_time=task.start_time or utcnow(),
        finish_time=None,
        reason="",
    )


def failed(task: Task, reason: str) -> Task:
    check_transition(task.state, State.Failed)
    return task.replace(
        state=State.Failed, finish_time=utcnow(), reason=clip_reason(reason), host_ports={}
    )


def stopped(task: Task) -> Task:
    """The record once a stop is done: Completed, saying why."""
    check_transition(task.state, State.Completed)
    if task.state is State.Running:
        reason = "stopped on request"
    elif task.state is State.Scheduled:
        reason = "cancelled before it started"
    else:
        reason = task.reason
    return task.replace(state=State.Completed, finish_time=utcnow(), reason=reason, host_ports={})
