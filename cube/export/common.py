"""What both targets share: options, caveats, names, ports, and the one entry point.

Every field of a Cube task either maps to something in the target or is named in a
:class:`Caveat`; nothing is dropped without a word. The exception is *runtime state*
(``State``, ``ContainerID``, ``HostPorts``, times, ``RestartCount``, ``Worker``,
``Reason``, ``Created``): it describes one run, not what should run, so it is left out
with a single note (:data:`RUNTIME_NOTE`) rather than a caveat per task.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cube.runtime.process import DEFAULT_PORT, PROGRAMS
from cube.task import RestartPolicy, Task

RUNTIME_NOTE = (
    "Runtime state (State, ContainerID, HostPorts, StartTime, FinishTime, RestartCount, "
    "Worker, Reason, Created) describes a run, not a wish, and is left out."
)
MIB = 1 << 20


@dataclass(frozen=True)
class Options:
    """How the Cube cluster the tasks come from is set up, and target details.

    ``restart`` is the manager's restart policy (``cube manager --restart-limit``; its
    backoff starts at 1 s and doubles up to 30 s); ``health_interval`` and
    ``health_timeout`` are how often and how patiently it probes a task's HealthCheck
    (``--health-interval``; the timeout is the manager's HTTP timeout). Nomad counts CPU
    in MHz, so a core is taken to be ``mhz_per_core``. ``job`` names the Nomad job when
    several tasks go into one (one task's job takes the task's name)."""

    restart: RestartPolicy = field(default_factory=RestartPolicy)
    health_interval: float = 5.0
    health_timeout: float = 3.0
    mhz_per_core: int = 1000
    job: str = "cube"


@dataclass(frozen=True)
class Caveat:
    """Something about a task that the target cannot say, or says differently."""

    task: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.task}: {self.field}: {self.message}"


@dataclass
class Exported:
    """The result: the ``text`` to save or apply, the same as ``documents`` (dicts),
    the ``caveats``, and the ``note`` on what is never exported."""

    target: str
    text: str
    documents: list[dict[str, Any]]
    caveats: list[Caveat]
    note: str = RUNTIME_NOTE

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Port:
    """One container port of a task: ``7777/tcp`` is ``Port(7777, "tcp")``."""

    number: int
    protocol: str

    @classmethod
    def parse(cls, text: str) -> Port:
        number, _, protocol = text.partition("/")
        return cls(int(number), protocol or "tcp")

    @property
    def label(self) -> str:
        """A name for the port that both targets accept (``tcp7777``: a Kubernetes port
        name, and a Nomad port label that makes a clean environment variable)."""
        return f"{self.protocol}{self.number}"


def ports(task: Task, caveats: list[Caveat]) -> list[Port]:
    """The ports the task listens on, in the order Cube sorts them (its health check
    probes the first). The Docker runtime publishes ExposedPorts and PortBindings; the
    process runtime serves its programs on 7777/tcp when the task names no port."""
    names = sorted(set(task.exposed_ports) | set(task.port_bindings))
    if not names and is_process_image(task.image):
        names = [DEFAULT_PORT]
        caveats.append(
            Caveat(
                task.name,
                "ExposedPorts",
                f"none given; Cube's process runtime serves {task.image} on "
                f"{DEFAULT_PORT}, so that port is exported",
            )
        )
    return [Port.parse(name) for name in names]


def health_port(task: Task, found: list[Port], caveats: list[Caveat]) -> Port | None:
    """The port Cube probes (the first), or None (with a caveat) when it cannot."""
    if not task.health_check:
        return None
    if not found:
        caveats.append(
            Caveat(
                task.name,
                "HealthCheck",
                f"{task.health_check} is not exported: the task has no port to probe",
            )
        )
        return None
    if found[0].protocol != "tcp":
        caveats.append(
            Caveat(
                task.name,
                "HealthCheck",
                f"Cube probes the first port, {found[0].number}/{found[0].protocol}, "
                "over HTTP, which cannot work; the probe is not exported",
            )
        )
        return None
    return found[0]


def is_process_image(image: str) -> bool:
    """Is ``image`` one of the programs Cube's process runtime stands in for?"""
    return image.partition(":")[0] in PROGRAMS


def image_caveats(task: Task, caveats: list[Caveat]) -> None:
    if is_process_image(task.image):
        caveats.append(
            Caveat(
                task.name,
                "Image",
                f"{task.image} is a program Cube's process runtime runs, not an image "
                "in a registry: build it into an image (cube/runtime/echo.py is the "
                "program), push it, and put its name here",
            )
        )


def restart_field_caveat(task: Task, target: str, caveats: list[Caveat]) -> None:
    """A task's RestartPolicy is Docker's, applied by the worker; the target restarts
    containers itself instead."""
    if task.restart_policy:
        caveats.append(
            Caveat(
                task.name,
                "RestartPolicy",
                f"Docker's restart policy {task.restart_policy!r} is not passed on: "
                f"{target} restarts the container itself",
            )
        )


_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def dns_label(name: str, limit: int = 63) -> str:
    """``name`` as a DNS label (RFC 1035: lowercase letters, digits and '-', starting
    with a letter, at most 63 characters), which every name in both targets accepts."""
    label = _LABEL_CHARS.sub("-", name.lower()).strip("-")
    if not label or not label[0].isalpha():
        label = f"task-{label}".rstrip("-")
    return label[:limit].rstrip("-")


def names(tasks: list[Task], caveats: list[Caveat]) -> list[str]:
    """A distinct DNS label per task, saying so when a name had to change.

    Two tasks may share a name, or differ only in what a DNS label cannot hold (``Web``
    and ``web``); the later one then takes a suffix of its ID, longer until it is free.
    Every candidate is checked against every name already given in this export, the
    fallbacks too: an object that took another's name would replace it when applied."""
    taken: set[str] = set()
    out: list[str] = []
    for task in tasks:
        wanted = dns_label(task.name)
        label = wanted if wanted not in taken else _free(wanted, task, taken)
        if label != wanted:
            caveats.append(
                Caveat(
                    task.name,
                    "Name",
                    f"exported as {label!r}: {wanted!r} is another task's in this export",
                )
            )
        elif label != task.name:
            caveats.append(Caveat(task.name, "Name", f"exported as {label!r} (a DNS label)"))
        taken.add(label)
        out.append(label)
    return out


def _free(label: str, task: Task, taken: set[str]) -> str:
    """``label`` with the shortest suffix of the task's ID (8 hex digits, then more)
    that no name in ``taken`` has, and a counter past the whole ID."""
    digits = task.id.hex
    for width in range(8, len(digits) + 1, 4):
        suffix = digits[:width]
        candidate = dns_label(f"{label[: 62 - width]}-{suffix}")
        if candidate not in taken:
            return candidate
    count = 2
    while (candidate := dns_label(f"{label[:40]}-{digits[:8]}-{count}")) in taken:
        count += 1
    return candidate


def mebibytes(task: Task, what: str, value: int, caveats: list[Caveat]) -> int:
    """Bytes as whole MiB, rounded up, saying so when that changes the amount."""
    mib = math.ceil(value / MIB)
    if mib * MIB != value:
        caveats.append(Caveat(task.name, what, f"{value} bytes rounded up to {mib} MiB"))
    return mib


def seconds(value: float) -> int:
    """Whole seconds, at least one."""
    return max(1, math.ceil(value))


def export(tasks: Iterable[Task], to: str, options: Options | None = None) -> Exported:
    """Kubernetes manifests (``to="kubernetes"``) or a Nomad job (``to="nomad"``) for
    ``tasks``."""
    from cube.export import kubernetes, nomad

    targets = {"kubernetes": kubernetes.export, "k8s": kubernetes.export, "nomad": nomad.export}
    if to not in targets:
        raise ValueError(f"unknown target {to!r}: choose kubernetes or nomad")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("nothing to export: no tasks given")
    return targets[to](tasks, options or Options())
