"""Tasks, task events, the state machine, and their JSON wire format.

A *task* is one container (or local process) that should run somewhere. A *task event*
asks for a task to be put into a state: "run this", "stop that". Clients post events;
workers and managers keep tasks.

The wire format is the Go Cube's: PascalCase keys, states as integers, RFC 3339 times
with ``0001-01-01T00:00:00Z`` as "not set", ``ExposedPorts`` as ``{"80/tcp": {}}`` and
``HostPorts`` as Docker's port map. Keys are matched case-insensitively, as Go's JSON
decoder does, but unknown keys are an error: a typo must not silently become a default.

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

import dataclasses
import fnmatch
import functools
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


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


class ValidationError(ValueError):
    """Bad input: the message names the field and says why."""

    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason = field, reason


# ---------------------------------------------------------------------------- times

ZERO_TIME = "0001-01-01T00:00:00Z"
_ZERO = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time: "not set", read as None
# All patterns are ASCII-only and matched whole (fullmatch): "\d" would otherwise take
# any Unicode digit, and "$" would let a trailing newline through.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime | None) -> str:
    """RFC 3339 in UTC; ``None`` is Go's zero time. Trailing zero digits are dropped."""
    if value is None:
        return ZERO_TIME
    value = value.astimezone(UTC)
    text = value.replace(microsecond=0, tzinfo=None).isoformat()  # years < 1000 padded too
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(text: Any, where: str) -> datetime | None:
    """Parse RFC 3339 (Go emits up to nanoseconds; we keep microseconds)."""
    if text == ZERO_TIME:
        return None  # most times in a store are unset: skip the parsing
    if not isinstance(text, str):
        raise ValidationError(where, f"expected an RFC 3339 time string, got {_kind(text)}")
    match = _RFC3339.fullmatch(text)
    if not match:
        raise ValidationError(where, f"{text!r} is not an RFC 3339 time like {ZERO_TIME!r}")
    date, clock, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if zone in "Zz" else zone
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}.{micro}{zone}").astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValidationError(where, f"{text!r} is not a valid time: {exc}") from None
    return None if moment == _ZERO else moment


# ---------------------------------------------------------------------- field checks


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _uuid(value: Any, where: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a UUID string, got {_kind(value)}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValidationError(where, f"{value!r} is not a UUID") from None
    if parsed.int == 0:
        raise ValidationError(where, "the nil UUID is not a task ID; omit it to get one")
    return parsed


def parse_uuid(value: Any, where: str = "ID") -> uuid.UUID:
    """Parse a task or event ID, raising :class:`ValidationError` when it is not one."""
    return _uuid(value, where)


def _str(value: Any, where: str, *, limit: int = 256) -> str:
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a string, got {_kind(value)}")
    if len(value) > limit:
        raise ValidationError(where, f"longer than {limit} characters")
    return value


# Upper bounds keep arithmetic sane and reject typos like a memory size in bits.
MAX_CPU = 1024.0  # cores
MAX_BYTES = 1 << 50  # 1 PiB, for Memory and Disk
MAX_COUNT = 1 << 31
MAX_GENERATION = (1 << 53) - 1  # exact in every JSON reader, JavaScript's included


def _int(value: Any, where: str, limit: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, f"expected an integer, got {_kind(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise ValidationError(where, f"expected an integer, got {value}")
    if value < 0:
        raise ValidationError(where, f"must not be negative, got {value}")
    if value > limit:
        raise ValidationError(where, f"must be at most {limit}, got {value}")
    return int(value)


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, f"expected a number, got {_kind(value)}")
    if not math.isfinite(value) or not 0 <= value <= MAX_CPU:
        raise ValidationError(where, f"must be a number from 0 to {MAX_CPU:g}, got {value}")
    return float(value)


def _state(value: Any, where: str) -> State:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(where, f"expected a state number 0-4, got {_kind(value)}")
    try:
        return State(value)
    except ValueError:
        names = ", ".join(f"{s.value} {s.name}" for s in State)
        raise ValidationError(where, f"unknown state {value}; states are {names}") from None


DESIRED = (State.Running, State.Completed)


def _desired(value: Any, where: str) -> State:
    state = _state(value, where)
    if state not in DESIRED:
        raise ValidationError(
            where, f"a task is wanted Running (2) or Completed (3), not {state.name}"
        )
    return state


# Docker's reference grammar (distribution/reference): an optional registry (it has a dot
# or a port, or is "localhost"), lowercase path components, an optional tag and digest.
_DOMAIN = re.compile(r"localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::\d+)?", re.ASCII)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(
    rf"{_COMPONENT}(?:/{_COMPONENT})*(?::\w[\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?",
    re.ASCII,
)


def _is_registry(part: str) -> bool:
    return ("." in part or ":" in part or part == "localhost") and bool(_DOMAIN.fullmatch(part))


def check_image(value: Any, where: str = "Image") -> str:
    """An image reference Docker would accept, such as ``cube/echo`` or ``nginx:1.27``."""
    image = _str(value, where)
    if not _is_reference(image):
        if not image:
            raise ValidationError(where, "an image is required, e.g. 'cube/echo'")
        raise ValidationError(
            where, f"{image!r} is not an image reference like 'name', 'name:tag' or 'repo/name:tag'"
        )
    return image


@functools.lru_cache(maxsize=1024)
def _is_reference(image: str) -> bool:
    """Remembered: a cluster runs a handful of images, and every stored task is checked
    again when a store is read."""
    first, _, rest = image.partition("/")
    path = rest if rest and _is_registry(first) else image
    return bool(_PATH.fullmatch(path))


def check_allowed(image: str, where: str = "Image") -> str:
    """``image``, when ``CUBE_ALLOWED_IMAGES`` (comma-separated patterns such as
    ``cube/*,nginx:*``) is unset or allows it. Checked when work is accepted, never when
    a store is read: tightening the list later must not make stored tasks unreadable."""
    allowed = os.environ.get("CUBE_ALLOWED_IMAGES", "").strip()
    if allowed and not any(fnmatch.fnmatchcase(image, p.strip()) for p in allowed.split(",")):
        raise ValidationError(
            where, f"{image!r} is not allowed here (CUBE_ALLOWED_IMAGES={allowed})"
        )
    return image


_PORT = re.compile(r"(\d{1,5})(?:/(tcp|udp|sctp))?", re.ASCII)


def check_port(value: Any, where: str) -> str:
    """A container port such as ``80/tcp``; a bare ``80`` means TCP, as in Docker."""
    text = _str(value, where)
    match = _PORT.fullmatch(text)
    if not match or not 0 < int(match[1]) < 65536:
        raise ValidationError(where, f"{text!r} is not a port like '80/tcp'")
    return f"{int(match[1])}/{match[2] or 'tcp'}"


def _host_port(value: Any, where: str) -> str:
    text = _str(value, where)
    if text and not (text.isascii() and text.isdigit() and int(text) < 65536):
        raise ValidationError(where, f"{text!r} is not a host port number")
    return text


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(where, f"expected an object, got {_kind(value)}")
    return value


def _exposed_ports(value: Any, where: str) -> tuple[str, ...]:
    ports = []
    for key, inner in _mapping(value, where).items():
        if inner not in ({}, None):
            raise ValidationError(f"{where}[{key!r}]", "values must be {} as in Docker's port set")
        ports.append(check_port(key, f"{where}[{key!r}]"))
    return tuple(sorted(set(ports)))


def _host_ports(value: Any, where: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for key, bindings in _mapping(value, where).items():
        at = f"{where}[{key!r}]"
        port = check_port(key, at)
        if bindings is None:
            out[port] = []
            continue
        if not isinstance(bindings, list):
            raise ValidationError(at, f"expected a list of bindings, got {_kind(bindings)}")
        out[port] = []
        for i, binding in enumerate(bindings):
            b = _mapping(binding, f"{at}[{i}]")
            if set(b) - {"HostIp", "HostPort"}:
                raise ValidationError(f"{at}[{i}]", "bindings have only HostIp and HostPort")
            out[port].append(
                {
                    "HostIp": _str(b.get("HostIp", ""), f"{at}[{i}].HostIp"),
                    "HostPort": _host_port(b.get("HostPort", ""), f"{at}[{i}].HostPort"),
                }
            )
    return out


def _port_bindings(value: Any, where: str) -> dict[str, str]:
    return {
        check_port(key, f"{where}[{key!r}]"): _host_port(host, f"{where}[{key!r}]")
        for key, host in _mapping(value, where).items()
    }


RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")


def _restart_policy(value: Any, where: str) -> str:
    policy = _str(value, where)
    if policy not in RESTART_POLICIES:
        raise ValidationError(where, f"{policy!r} is not one of {RESTART_POLICIES[1:]} (or '')")
    return policy


def _health_check(value: Any, where: str) -> str:
    path = _str(value, where, limit=1024)
    if path and not path.startswith("/"):
        raise ValidationError(where, f"{path!r} must be a path starting with '/', like '/health'")
    return path


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name(value: Any, where: str) -> str:
    name = _str(value, where, limit=128)
    if not name.strip():
        raise ValidationError(where, "a task needs a name")
    if _CONTROL.search(name):
        raise ValidationError(where, "must not contain control characters")
    return name


class _Fields(dict[str, str]):
    """A type's JSON keys: lowercased -> as spelled on the wire, and the spellings."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        super().__init__((name.lower(), name) for name in self.names)


def _keys(data: Any, known: _Fields, where: str) -> dict[str, Any]:
    """Match keys case-insensitively (as Go does) and reject unknown ones."""
    if not isinstance(data, dict):
        raise ValidationError(where, f"expected a JSON object, got {_kind(data)}")
    if data.keys() <= known.names:
        return data  # spelled as Cube writes them (every stored value): nothing to match
    out: dict[str, Any] = {}
    for key, value in data.items():
        canonical = known.get(key.lower()) if isinstance(key, str) else None
        if canonical is None:
            hint = ", ".join(sorted(known.values()))
            raise ValidationError(f"{where}.{key}", f"unknown field; known fields are {hint}")
        if canonical in out:
            raise ValidationError(f"{where}.{canonical}", "given twice")
        out[canonical] = value
    return out


REASON_LIMIT = 4096
_CUT = " [...cut]"


def clip_reason(text: str) -> str:
    """``text`` cut to fit a task's Reason, with a marker: what Cube builds from other
    texts (a worker's reason inside "gave up after...") must stay readable back."""
    if len(text) <= REASON_LIMIT:
        return text
    return text[: REASON_LIMIT - len(_CUT)] + _CUT


# ---------------------------------------------------------------------------- types


@dataclass
class Task:
    """One unit of work: an image to run, its resources, and what became of it."""

    name: str
    image: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    state: State = State.Pending
    container_id: str = ""
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0
    exposed_ports: tuple[str, ...] = ()
    host_ports: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    port_bindings: dict[str, str] = field(default_factory=dict)
    restart_policy: str = ""
    start_time: datetime | None = None
    finish_time: datetime | None = None
    health_check: str = ""
    restart_count: int = 0
    reason: str = ""
    worker: str = ""
    created: datetime | None = None
    desired: State = State.Running
    generation: int = 0
    restart_at: datetime | None = None

    def to_wire(self) -> dict[str, Any]:
        """The Go Cube's JSON shape, field order included. ``Reason`` (why a task is
        Pending or Failed) and ``Worker`` (where it was placed) are ours, and are left
        out when empty, so a Go Cube sees exactly the shape it knows. So are ``Created``
        (when the manager accepted it), ``Desired`` (what is wanted of the task: Running,
        or Completed once someone asked for it to stop; left out when Running),
        ``Generation`` (the number of the manager's latest order for it: bumped by every
        change of what is wanted, a restart or a move, so a worker can refuse an older
        order) and ``RestartAt`` (when a restart that waits out its backoff is due)."""
        wire = {
            "ID": str(self.id),
            "ContainerID": self.container_id,
            "Name": self.name,
            "State": int(self.state),
            "Image": self.image,
            "Cpu": int(self.cpu) if float(self.cpu).is_integer() else self.cpu,
            "Memory": self.memory,
            "Disk": self.disk,
            "ExposedPorts": {port: {} for port in self.exposed_ports} or None,
            "HostPorts": self.host_ports or None,
            "PortBindings": self.port_bindings or None,
            "RestartPolicy": self.restart_policy,
            "StartTime": format_time(self.start_time),
            "FinishTime": format_time(self.finish_time),
            "HealthCheck": self.health_check,
            "RestartCount": self.restart_count,
        }
        if self.reason:
            wire["Reason"] = self.reason
        if self.worker:
            wire["Worker"] = self.worker
        if self.created:
            wire["Created"] = format_time(self.created)
        if self.desired is not State.Running:
            wire["Desired"] = int(self.desired)
        if self.generation:
            wire["Generation"] = self.generation
        if self.restart_at:
            wire["RestartAt"] = format_time(self.restart_at)
        return wire

    @classmethod
    def from_wire(cls, data: Any, where: str = "Task") -> Task:
        """Parse and validate; missing fields take their zero values, IDs are generated."""
        d = _keys(data, _TASK_KEYS, where)
        at = f"{where}."
        return cls(
            id=_uuid(d["ID"], at + "ID") if "ID" in d else uuid.uuid4(),
            container_id=_str(d.get("ContainerID", ""), at + "ContainerID"),
            name=_name(d.get("Name", ""), at + "Name"),
            state=_state(d.get("State", 0), at + "State"),
            image=check_image(d.get("Image", ""), at + "Image"),
            cpu=_float(d.get("Cpu", 0), at + "Cpu"),
            memory=_int(d.get("Memory", 0), at + "Memory", MAX_BYTES),
            disk=_int(d.get("Disk", 0), at + "Disk", MAX_BYTES),
            exposed_ports=_exposed_ports(d.get("ExposedPorts"), at + "ExposedPorts"),
            host_ports=_host_ports(d.get("HostPorts"), at + "HostPorts"),
            port_bindings=_port_bindings(d.get("PortBindings"), at + "PortBindings"),
            restart_policy=_restart_policy(d.get("RestartPolicy", ""), at + "RestartPolicy"),
            start_time=parse_time(d.get("StartTime", ZERO_TIME), at + "StartTime"),
            finish_time=parse_time(d.get("FinishTime", ZERO_TIME), at + "FinishTime"),
            health_check=_health_check(d.get("HealthCheck", ""), at + "HealthCheck"),
            restart_count=_int(d.get("RestartCount", 0), at + "RestartCount"),
            reason=_str(d.get("Reason", ""), at + "Reason", limit=REASON_LIMIT),
            worker=_str(d.get("Worker", ""), at + "Worker"),
            created=parse_time(d.get("Created", ZERO_TIME), at + "Created"),
            desired=_desired(d.get("Desired", State.Running), at + "Desired"),
            generation=_int(d.get("Generation", 0), at + "Generation", MAX_GENERATION),
            restart_at=parse_time(d.get("RestartAt", ZERO_TIME), at + "RestartAt"),
        )

    def replace(self, **changes: Any) -> Task:
        """A copy with some fields changed (tasks in stores are never shared objects)."""
        return dataclasses.replace(self, **changes)

    def host_port(self) -> int | None:
        """The first published host port, in port order (the book picked one at random)."""
        for port in sorted(self.host_ports):
            for binding in self.host_ports[port]:
                if binding.get("HostPort"):
                    return int(binding["HostPort"])
        return None


@dataclass
class TaskEvent:
    """A request to put ``task`` into ``state`` (the desired state)."""

    task: Task
    state: State = State.Running
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    timestamp: datetime | None = field(default_factory=utcnow)

    def to_wire(self) -> dict[str, Any]:
        return {
            "ID": str(self.id),
            "State": int(self.state),
            "Timestamp": format_time(self.timestamp),
            "Task": self.task.to_wire(),
        }

    @classmethod
    def from_wire(cls, data: Any, where: str = "TaskEvent") -> TaskEvent:
        d = _keys(data, _EVENT_KEYS, where)
        if "Task" not in d:
            raise ValidationError(f"{where}.Task", "a task event needs a Task")
        return cls(
            id=_uuid(d["ID"], f"{where}.ID") if "ID" in d else uuid.uuid4(),
            state=_state(d.get("State", State.Running), f"{where}.State"),
            timestamp=parse_time(d.get("Timestamp", ZERO_TIME), f"{where}.Timestamp"),
            task=Task.from_wire(d["Task"], f"{where}.Task"),
        )


_TASK_KEYS = _Fields(
    Task(
        "x",
        "x",
        reason="x",
        worker="x",
        created=utcnow(),
        desired=State.Completed,
        generation=1,
        restart_at=utcnow(),
    ).to_wire()
)
_EVENT_KEYS = _Fields(("ID", "State", "Timestamp", "Task"))


def parse_submission(data: Any) -> TaskEvent:
    """Accept what clients post: a TaskEvent, or a bare task spec such as
    ``{"Name": "web", "Image": "cube/echo"}``, which becomes "run this task" with
    generated IDs. A request to run an image ``CUBE_ALLOWED_IMAGES`` does not allow is
    refused here; a request to stop one is not."""
    event_only = {"task", "timestamp"}
    if isinstance(data, dict) and any(str(k).lower() in event_only for k in data):
        event = TaskEvent.from_wire(data)
    else:
        event = TaskEvent(task=Task.from_wire(data))
    if event.timestamp is None:
        event.timestamp = utcnow()
    if event.state is not State.Completed:
        check_allowed(event.task.image, "Task.Image")
    return event


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
    return {"HTTPStatusCode": status, "Message": message}
