"""Simulated machines and the runtime a simulated worker drives.

A :class:`Machine` holds the task processes of one worker's host. They outlive the
worker, as real processes and containers do: a worker that crashes and comes back finds
them by their labels (task, owner, order) and re-adopts them, and that is exactly where
double runs come from. :class:`SimRuntime` is a :class:`~cube.runtime.Runtime` over a
machine; it answers as the process runtime does, and the nemesis can crash or hang any
process at any moment.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cube.replay.world import World
from cube.runtime import (
    Capabilities,
    Managed,
    RuntimeFailure,
    Started,
    Status,
    UnknownImage,
    attempt_label,
)
from cube.task import Task

IMAGES = ("cube/busybox", "cube/echo")
CRASH_AFTER = {"bad-exit": 2.0}  # tag -> seconds until the process exits by itself


@dataclass
class Process:
    container_id: str
    task_id: str
    owner: str
    attempt: str
    port: int
    dies_at: float | None = None  # exits by itself then (virtual epoch seconds)
    running: bool = True
    healthy: bool = True
    exit_code: int | None = None
    reason: str = ""


class Machine:
    """One host's processes, kept across the lives of its worker."""

    def __init__(self, name: str, world: World) -> None:
        self.name, self.world = name, world
        self.processes: dict[str, Process] = {}
        self._ids = itertools.count(1)
        self._ports = itertools.count(20_000)

    def spawn(self, task: Task, owner: str) -> Process:
        tag = task.image.partition(":")[2]
        life = CRASH_AFTER.get(tag)
        process = Process(
            container_id=f"{self.name}-p{next(self._ids)}",
            task_id=str(task.id),
            owner=owner,
            attempt=attempt_label(task),
            port=next(self._ports),
            dies_at=self.world.now + life if life is not None else None,
        )
        self.processes[process.container_id] = process
        return process

    def settle(self) -> None:
        """Processes whose time came exit now."""
        for process in self.processes.values():
            if (
                process.running
                and process.dies_at is not None
                and self.world.now >= process.dies_at
            ):
                self.end(process, 1, "exited with code 1")

    def end(self, process: Process, code: int, reason: str) -> None:
        process.running, process.exit_code, process.reason = False, code, reason

    def live(self) -> list[Process]:
        self.settle()
        return [p for p in self.processes.values() if p.running]

    def by_port(self, port: int) -> Process | None:
        self.settle()
        return next((p for p in self.processes.values() if p.port == port), None)


class SimRuntime:
    """A :class:`~cube.runtime.Runtime` on a :class:`Machine`, owned by one worker."""

    name = "process"

    def __init__(self, machine: Machine, owner: str) -> None:
        self.machine, self.owner = machine, owner

    def check(self, task: Task) -> None:
        if task.image.partition(":")[0] not in IMAGES:
            raise UnknownImage(f"the simulated runtime cannot run {task.image!r}")

    def capabilities(self) -> Capabilities:
        return Capabilities(self.name, IMAGES, pulls=False)

    def start(self, task: Task) -> Started:
        self.check(task)
        process = self.machine.spawn(task, self.owner)
        ports = {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(process.port)}]}
        return Started(process.container_id, ports)

    def stop(self, container_id: str) -> None:
        process = self.machine.processes.get(container_id)
        if process is not None and process.running:
            self.machine.end(process, 0, "stopped")

    def forget(self, container_id: str) -> None:
        process = self.machine.processes.get(container_id)
        if process is not None and not process.running:
            del self.machine.processes[container_id]

    def kill(self, container_id: str) -> None:
        process = self.machine.processes.get(container_id)
        if process is not None and process.running:
            self.machine.end(process, 137, "killed (SIGKILL)")

    def inspect(self, container_id: str) -> Status:
        self.machine.settle()
        process = self.machine.processes.get(container_id)
        if process is None:
            return Status(container_id, running=False, state="missing", reason="no such process")
        state = "running" if process.running else "exited"
        return Status(container_id, process.running, state, process.exit_code, process.reason)

    def logs(self, container_id: str, tail: int = 200) -> str:
        if container_id not in self.machine.processes:
            raise RuntimeFailure(f"no output kept for {container_id}")
        return f"{container_id} said hello\n"

    def list_managed(self) -> list[Managed]:
        self.machine.settle()
        return [
            Managed(p.task_id, self.inspect(p.container_id), p.attempt)
            for p in self.machine.processes.values()
            if p.owner == self.owner
        ]
