"""Tasks, task events, the state machine, and their JSON wire format.

A *task* is one container (or local process) that should run somewhere. A *task event*
asks for a task to be put into a state: "run this", "stop that". Clients post events;
workers and managers keep tasks.

Task and TaskEvent are wire types (:mod:`cube.wire`): each field is declared once, with
its type from :mod:`cube.fields`, and that declaration gives the validation, the Go
Cube's JSON (PascalCase keys, states as integers, RFC 3339 times with
``0001-01-01T00:00:00Z`` as "not set", ``ExposedPorts`` as ``{"80/tcp": {}}``,
``HostPorts`` as Docker's port map) and the OpenAPI schemas. Adding a field is one line.
Keys are matched case-insensitively, as Go's JSON decoder does, but unknown keys are an
error: a typo must not silently become a default. What clients submit
(:func:`parse_submission`) meets stricter rules than what is read back from a store.

The state machine
-----------------
Every state change anywhere in Cube goes through :func:`check_transition`, which reads
the one table below. It is the book's final table plus cancellation (a task that has not
started can be stopped) and stopping a failed task (so it is not restarted)::

    from \\ to   Pending  Scheduled  Running  Completed  Failed
    Pending        .         yes        .       cancel   no node
    Scheduled      .         yes       yes      cancel     yes
    Running        .       restart     yes       yes       yes
    Completed      .          .         .         .         .      (terminal)
    Failed         .       restart      .       stop        .

- Scheduled -> Scheduled and Running -> Running are refreshes (a re-sent event, a new
  inspection): allowed, they change nothing.
- Running -> Scheduled and Failed -> Scheduled are restarts: the manager sends the task
  to a worker again.
- Pending/Scheduled -> Completed cancels a task that never started (in the book such
  a stop request was accepted and then silently dropped).
- Pending -> Failed: no worker could ever run it (its image exists nowhere), which is
  worth saying at once rather than after restarts, as Kubernetes' ErrImagePull does.
- Failed -> Completed records that a person stopped a failed task, so it is not
  restarted again.
- Nothing leaves Completed, and nothing goes back to Pending.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from cube.clock import utcnow
from cube.fields import (
    ID,
    MAX_BYTES,
    MAX_COUNT,
    MAX_CPU,
    MAX_GENERATION,
    REASON_LIMIT,
    RESTART_POLICIES,
    ZERO_TIME,
    Bindings,
    Bytes,
    Cores,
    Count,
    DockerRestartPolicy,
    Generation,
    HealthCheck,
    HostPorts,
    Image,
    LongText,
    Name,
    PortBindings,
    PortMap,
    Ports,
    PortSet,
    Text,
    Time,
    check_allowed,
    check_image,
    check_port,
    format_time,
    parse_time,
    parse_uuid,
)
from cube.messages import ErrorBody
from cube.wire import OURS, Rule, ValidationError, Wire, decode, from_strict, strict_variant

__all__ = [
    "MAX_BYTES",
    "MAX_COUNT",
    "MAX_CPU",
    "MAX_GENERATION",
    "REASON_LIMIT",
    "RESTART_POLICIES",
    "TRANSITIONS",
    "ZERO_TIME",
    "State",
    "Task",
    "TaskEvent",
    "TransitionError",
    "UnknownTask",
    "ValidationError",
    "can_transition",
    "check_allowed",
    "check_image",
    "check_port",
    "check_transition",
    "clip_reason",
    "error_body",
    "format_time",
    "parse_submission",
    "parse_time",
    "parse_uuid",
    "wait_for_state",
]


class State(IntEnum):
    """Where a task is in its life. The integers are the wire values."""

    Pending = 0
    Scheduled = 1
    Running = 2
    Completed = 3
    Failed = 4

    def __str__(self) -> str:
        return self.name


TRANSITIONS: dict[State, frozenset[State]] = {
    State.Pending: frozenset({State.Scheduled, State.Completed, State.Failed}),
    State.Scheduled: frozenset({State.Scheduled, State.Running, State.Completed, State.Failed}),
    State.Running: frozenset({State.Running, State.Completed, State.Failed, State.Scheduled}),
    State.Completed: frozenset(),
    State.Failed: frozenset({State.Scheduled, State.Completed}),
}


LIVE = (State.Scheduled, State.Running)  # a copy in these states is (about to be) running


class TransitionError(ValueError):
    """A state change the table does not allow. Names both states."""

    http_status = 409

    def __init__(self, src: State, dst: State) -> None:
        allowed = ", ".join(s.name for s in sorted(TRANSITIONS[src]))
        why = f"{src.name} may go to {allowed}" if allowed else f"{src.name} is final"
        super().__init__(f"cannot go from {src.name} to {dst.name}: {why}")
        self.src, self.dst = src, dst


def can_transition(src: State, dst: State) -> bool:
    """True when the table allows ``src -> dst``."""
    return dst in TRANSITIONS[src]


def check_transition(src: State, dst: State) -> None:
    """Raise :class:`TransitionError` unless the table allows ``src -> dst``."""
    if not can_transition(src, dst):
        raise TransitionError(State(src), State(dst))


class UnknownTask(KeyError):
    """No task with this ID here."""

    http_status = 404

    def __str__(self) -> str:
        return f"no task with ID {self.args[0]}"


_CUT = " [...cut]"


def clip_reason(text: str) -> str:
    """``text`` cut to fit a task's Reason, with a marker: what Cube builds from other
    texts (a worker's reason inside "gave up after...") must stay readable back."""
    if len(text) <= REASON_LIMIT:
        return text
    return text[: REASON_LIMIT - len(_CUT)] + _CUT


# ---------------------------------------------------------------------------- types

_STATES = ", ".join(f"{s.value} {s.name}" for s in State)
Phase = Annotated[
    State,
    Meta(extra_json_schema={"description": _STATES}),
    Rule(type="expected a state number 0-4", enum=f"unknown state {{value}}; states are {_STATES}"),
]
DESIRED = (State.Running, State.Completed)


def _desired(state: State) -> State:
    if state not in DESIRED:
        raise ValueError(f"a task is wanted Running (2) or Completed (3), not {state.name}")
    return state


Desired = Annotated[
    State,
    Meta(
        extra_json_schema={
            "enum": [int(s) for s in DESIRED],
            "description": "What is wanted of the task (left out when Running).",
        }
    ),
    Rule(check=_desired, type="expected a state number 2 or 3"),
    OURS,
]


class Task(Wire):
    """One unit of work: an image to run, its resources, and what became of it.

    The fields up to ``restart_count`` are the Go Cube's, in its order. The rest are
    ours and are left out of the JSON while unset: ``reason`` (why a task is Pending or
    Failed), ``worker`` (where it was placed), ``created`` (when the manager accepted
    it), ``desired`` (Running, or Completed once someone asked for it to stop),
    ``generation`` (the number of the manager's latest order for it: bumped by every
    change of what is wanted, a restart or a move, so a worker can refuse an older
    order) and ``restart_at`` (when a restart that waits out its backoff is due)."""

    __positional__ = ("name", "image")

    id: ID = msgspec.field(default_factory=uuid.uuid4)
    container_id: Text = ""
    name: Name
    state: Phase = State.Pending
    image: Image
    cpu: Cores = 0.0
    memory: Bytes = 0
    disk: Bytes = 0
    exposed_ports: Ports = PortSet()
    host_ports: HostPorts = msgspec.field(default_factory=PortMap)
    port_bindings: Bindings = msgspec.field(default_factory=PortBindings)
    restart_policy: DockerRestartPolicy = ""
    start_time: Time = None
    finish_time: Time = None
    health_check: HealthCheck = ""
    restart_count: Count = 0
    reason: Annotated[LongText, OURS] = ""
    worker: Annotated[Text, OURS] = ""
    created: Annotated[Time, OURS] = None
    desired: Desired = State.Running
    generation: Annotated[Generation, OURS] = 0
    restart_at: Annotated[Time, OURS] = None

    def host_port(self) -> int | None:
        """The first published host port, in port order (the book picked one at random)."""
        for port in sorted(self.host_ports):
            for binding in self.host_ports[port]:
                if binding.get("HostPort"):
                    return int(binding["HostPort"])
        return None


class TaskEvent(Wire):
    """A request to put ``task`` into ``state`` (the desired state)."""

    __positional__ = ("task", "state", "id", "timestamp")

    id: ID = msgspec.field(default_factory=uuid.uuid4)
    state: Phase = State.Running
    timestamp: Time = msgspec.field(default_factory=utcnow)
    task: Annotated[Task, Rule(empty="a task event needs a Task")]


Task.__strict__ = strict_variant(Task, "TaskSpec")  # type: ignore[attr-defined]
TaskEvent.__strict__ = strict_variant(TaskEvent, "TaskEventSpec")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RestartPolicy:
    """Restart up to ``limit`` times, waiting ``base * 2**n`` seconds (at most ``cap``)
    before restart ``n + 1``."""

    limit: int = 3
    base: float = 1.0
    cap: float = 30.0

    def backoff(self, restarts_so_far: int) -> float:
        return min(self.cap, self.base * 2**restarts_so_far)


def new_attempt(task: Task) -> Task:
    """``task`` as an order for a new attempt: wanted Running, and nothing yet known of
    how it went (no container, ports, times, reason or due restart). What the manager
    sends, and what a worker starts a record from."""
    return task.replace(
        state=State.Scheduled,
        desired=State.Running,
        container_id="",
        host_ports={},
        start_time=None,
        finish_time=None,
        reason="",
        restart_at=None,
    )


def parse_submission(data: Any) -> TaskEvent:
    """Accept what clients post: a TaskEvent, or a bare task spec such as
    ``{"Name": "web", "Image": "cube/echo"}``, which becomes "run this task" with
    generated IDs. Submissions meet the strict rules (see :mod:`cube.fields`). A request
    to run an image ``CUBE_ALLOWED_IMAGES`` does not allow is refused here; a request to
    stop one is not."""
    event_only = {"task", "timestamp"}
    if isinstance(data, dict) and any(str(k).lower() in event_only for k in data):
        event = _strict(TaskEvent, data, "TaskEvent")
    else:
        event = TaskEvent(task=_strict(Task, data, "Task"))
    if event.timestamp is None:
        event.timestamp = utcnow()
    if event.state is not State.Completed:
        check_allowed(event.task.image, "Task.Image")
    return event


def _strict(cls: type[Any], data: Any, where: str) -> Any:
    return from_strict(cls, decode(cls.__strict__, data, where))


def wait_for_state(
    get: Callable[[], Task],
    states: tuple[State, ...],
    timeout: float,
    pause: Callable[[float], Any],
) -> Task:
    """Call ``get`` until the task is in one of ``states``; in between, ``pause(left)``:
    a condition variable's ``wait`` (woken by each change) in-process, a short sleep
    over an API. Raises TimeoutError naming the state it got stuck in."""
    deadline = time.monotonic() + timeout
    while True:
        task = get()
        if task.state in states:
            return task
        left = deadline - time.monotonic()
        if left <= 0:
            wanted = " or ".join(s.name for s in states)
            raise TimeoutError(
                f"task {task.id} is {task.state.name}, not {wanted}, after {timeout}s"
            )
        pause(left)


def error_body(status: int, message: str) -> dict[str, Any]:
    """The error JSON every Cube API answers with."""
    return ErrorBody(http_status_code=status, message=message).to_wire()
