"""Runtimes: what actually runs a task, as a Docker container or as a local process.

The worker talks to a runtime only through :class:`Runtime`, so nothing above this
package knows which one it drives. A runtime labels everything it starts with the task
ID and its owner (the worker's name), so that a restarted worker can find and re-adopt
what is still running instead of starting duplicates, and so that several workers can
share one Docker engine without adopting each other's containers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cube.task import Task

log = logging.getLogger(__name__)

PortMap = dict[str, list[dict[str, str]]]


class RuntimeFailure(Exception):
    """A task could not be started or handled. The message is the reason a person
    reads on the failed task, so it says what went wrong and what to do."""


class UnknownImage(RuntimeFailure):
    """The runtime cannot run this image (ProcessRuntime: not one of its programs;
    Docker: not present and not pullable)."""

    http_status = 400


class RuntimeUnavailable(RuntimeFailure):
    """The runtime itself is not reachable (for example the Docker daemon is down)."""


@dataclass(frozen=True)
class Started:
    """What :meth:`Runtime.start` reports: the ID it gave the container or process,
    and the host ports the task's ports were published on (Docker's port-map shape)."""

    container_id: str
    host_ports: PortMap = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """What :meth:`Runtime.inspect` finds. ``running`` is the one bit the worker acts on;
    ``state`` is the runtime's own word (``running``, ``exited``, ``missing``...)."""

    container_id: str
    running: bool
    state: str
    exit_code: int | None = None
    reason: str = ""
    host_ports: PortMap = field(default_factory=dict)

    def to_wire(self) -> dict[str, object]:
        return {
            "ContainerID": self.container_id,
            "Running": self.running,
            "Status": self.state,
            "ExitCode": self.exit_code,
            "Reason": self.reason,
            "HostPorts": self.host_ports or None,
        }


@dataclass(frozen=True)
class Managed:
    """One container or process this runtime's owner started, found by its label.
    ``attempt`` is the label of the order it was started for (see :func:`attempt_label`;
    "" on what an older Cube started)."""

    task_id: str
    status: Status
    attempt: str = ""


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can run, as a worker reports it to the manager's placement
    (:mod:`cube.feasibility`): its kind, the images it has (or, for the process runtime,
    the program names it knows), and whether it can fetch an image it lacks."""

    runtime: str
    images: tuple[str, ...] = ()
    pulls: bool = False

    def to_wire(self) -> dict[str, object]:
        return {"Runtime": self.runtime, "Images": list(self.images), "Pulls": self.pulls}


def attempt_label(task: Task) -> str:
    """The order a copy is started for, ``"<generation>.<restart count>"``: kept on the
    container or process, so that a worker restarted at any moment adopts only a copy of
    the order it follows, and stops one left from an older order."""
    return f"{task.generation}.{task.restart_count}"


class Runtime(Protocol):
    """What a worker needs from whatever runs its tasks."""

    name: str

    def check(self, task: Task) -> None:
        """Raise :class:`UnknownImage` early when this runtime surely cannot run ``task``
        (so an API can answer 400 before accepting it). Cheap; no pulls."""

    def capabilities(self) -> Capabilities:
        """What it can run (cheap: cached where asking is not)."""

    def start(self, task: Task) -> Started:
        """Start ``task``, labelled with its ID, this runtime's owner and
        :func:`attempt_label` *as it is created* (so a crash at any later instant leaves a
        copy that :meth:`list_managed` finds); raise :class:`RuntimeFailure` with a
        readable reason."""

    def stop(self, container_id: str) -> None:
        """Stop and remove; stopping something already gone is not an error. What it
        printed is kept for :meth:`logs` until :meth:`forget`."""

    def forget(self, container_id: str) -> None:
        """Drop the output kept of a stopped container or process."""

    def kill(self, container_id: str) -> None:
        """Crash it on purpose: SIGKILL, leaving the remains for inspect to report (for
        demonstrations and chaos tests)."""

    def inspect(self, container_id: str) -> Status:
        """Report on one container or process (``state="missing"`` when gone)."""

    def logs(self, container_id: str, tail: int = 200) -> str:
        """The last ``tail`` lines of output, also after it stopped."""

    def list_managed(self) -> list[Managed]:
        """Everything this runtime's owner started that still exists, running or not."""


def docker_available(timeout: float = 1.0) -> tuple[bool, str]:
    """Does a Docker daemon answer within ``timeout`` seconds? Returns (yes, why)."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            version = client.version()
        finally:
            client.close()
    except Exception as exc:
        return False, f"no Docker daemon answered ({_first_line(exc)})"
    return True, f"Docker {version.get('Version', '?')} answered (API {version.get('ApiVersion')})"


def resolve(kind: str) -> tuple[str, str]:
    """Turn ``"auto"`` into ``"docker"`` or ``"process"``, saying why."""
    if kind == "auto":
        ok, why = docker_available()
        return ("docker" if ok else "process"), why
    if kind not in ("docker", "process"):
        raise ValueError(f"unknown runtime {kind!r}: use 'auto', 'docker' or 'process'")
    return kind, "asked for by name"


def choose(kind: str = "auto", *, owner: str, state_dir: str | Path) -> Runtime:
    """Build a runtime: ``"docker"``, ``"process"`` or ``"auto"`` (Docker when a daemon
    answers within a second, else processes). Logs which one and why."""
    kind, why = resolve(kind)
    log.info("runtime: %s (%s)", kind, why)
    if kind == "docker":
        from cube.runtime.docker import DockerRuntime

        return DockerRuntime(owner=owner, state_dir=Path(state_dir))
    from cube.runtime.process import ProcessRuntime

    return ProcessRuntime(owner=owner, state_dir=Path(state_dir))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
