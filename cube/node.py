"""Nodes: what the manager knows about each worker, and the table schedulers read.

:class:`Node` is one worker as the manager sees it: capacity and usage from its last
``/stats`` answer, what the manager has promised to tasks placed there, and whether it
is answering at all. It serialises to the Go Cube's ``/nodes`` JSON (memory in kB, disk
in bytes) plus a few fields of ours.

:class:`NodeTable` is the same information for many nodes as numpy arrays, so a
scheduler scores every node at once. The manager builds one from its nodes for each
decision; the simulator keeps one and updates it in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from cube import tls
from cube.messages import NodeInfo, Stats
from cube.wire import ValidationError

KB = 1024


class Demand(Protocol):
    """What a scheduler needs to know about a task (a :class:`~cube.task.Task` is one)."""

    cpu: float
    memory: int
    disk: int


@dataclass
class Node:
    """One worker as the manager knows it."""

    name: str
    api: str
    state: str = "unknown"  # "up" once it answers, "down" after missing polls for a TTL
    cores: float = 0.0
    memory: int = 0  # bytes
    memory_used: int = 0
    disk: int = 0  # bytes
    disk_used: int = 0
    cpu_load: float = 0.0  # busy share of all cores, 0..1, measured between polls
    cpu_allocated: float = 0.0  # cores promised to tasks placed here
    memory_allocated: int = 0
    disk_allocated: int = 0
    task_count: int = 0
    stats: dict[str, Any] | None = None
    last_seen: datetime | None = None
    reason: str = ""
    runtime: str = ""  # "docker" or "process" as the worker reports it; "" when unknown
    images: tuple[str, ...] = ()  # what it can run: image names, or patterns like cube/*
    pulls: bool = False  # whether it can fetch an image it does not have
    _last_cpu: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def for_worker(cls, address: str) -> Node:
        """A node for a ``host:port`` given to ``--workers``."""
        api = tls.base_url(address)
        return cls(name=address.split("://")[-1].rstrip("/"), api=api.rstrip("/"))

    def observe(self, stats: dict[str, Any], seen: datetime) -> None:
        """Take in one ``/stats`` answer (from a Python or a Go worker); check it with
        :func:`stats_problem` first."""
        mem, disk = stats.get("MemStats") or {}, stats.get("DiskStats") or {}
        self.memory = int(mem.get("mem_total", 0)) * KB
        self.memory_used = max(0, self.memory - int(mem.get("mem_available", 0)) * KB)
        self.disk = int(disk.get("all", 0))
        self.disk_used = int(disk.get("used", 0))
        self.cores = float(stats.get("Cores") or self.cores or 1)
        if "CpuPercent" in stats:
            self.cpu_load = float(stats["CpuPercent"]) / 100
        elif self._last_cpu and stats.get("CpuStats"):
            self.cpu_load = busy_percent(self._last_cpu, stats["CpuStats"]) / 100
        self._last_cpu = stats.get("CpuStats")
        self.stats = stats
        self.state, self.last_seen, self.reason = "up", seen, ""

    def capable(self, health: dict[str, Any]) -> None:
        """Take in what its ``/health`` says it can run (a Go worker says nothing)."""
        self.runtime = str(health.get("Runtime") or "")
        self.images = tuple(str(i) for i in health.get("Images") or ())
        self.pulls = bool(health.get("Pulls", False))

    def to_wire(self) -> dict[str, Any]:
        return self.info().to_wire()

    def info(self) -> NodeInfo:
        """This node as the wire type (kB where the Go Cube counts kB)."""
        return NodeInfo(
            name=self.name,
            api=self.api,
            memory=self.memory // KB,
            memory_allocated=self.memory_allocated // KB,
            disk=self.disk,
            disk_allocated=self.disk_allocated,
            stats=self.stats,
            task_count=self.task_count,
            state=self.state,  # type: ignore[arg-type]
            cores=self.cores,
            cpu_allocated=self.cpu_allocated,
            cpu_percent=round(self.cpu_load * 100, 2),
            memory_used=self.memory_used // KB,
            disk_used=self.disk_used,
            last_seen=self.last_seen,
            reason=self.reason,
            runtime=self.runtime,  # type: ignore[arg-type]
            images=list(self.images),
            pulls=self.pulls,
        )

    @classmethod
    def from_wire(cls, data: Any) -> Node:
        """A node from ``/nodes`` JSON (a Go manager's, or ours)."""
        info = NodeInfo.from_wire(data, "Node")
        return cls(
            name=info.name,
            api=info.api,
            state=info.state,
            cores=info.cores,
            memory=info.memory * KB,
            memory_used=info.memory_used * KB,
            disk=info.disk,
            disk_used=info.disk_used,
            cpu_load=info.cpu_percent / 100,
            cpu_allocated=info.cpu_allocated,
            memory_allocated=info.memory_allocated * KB,
            disk_allocated=info.disk_allocated,
            task_count=info.task_count,
            stats=info.stats,
            last_seen=info.last_seen,
            reason=info.reason,
            runtime=info.runtime,
            images=tuple(info.images),
            pulls=info.pulls,
        )


def stats_problem(stats: Any) -> str:
    """What is wrong with a ``/stats`` answer ("" when it is usable), as the declared
    :class:`~cube.messages.Stats` says: a worker whose statistics cannot be read is
    marked down, saying why, rather than trusted. ``null`` (a Go worker before its first
    collection) is not wrong: it means "not yet"."""
    if stats is None:
        return ""
    if not isinstance(stats, dict):
        return f"/stats answered a JSON {type(stats).__name__}, not an object"
    try:
        Stats.from_wire(stats, "/stats")
    except ValidationError as exc:
        return str(exc)[:200]
    return ""


@dataclass
class NodeTable:
    """Many nodes as parallel arrays (index ``i`` is one node). Units: cores, bytes."""

    names: list[str]
    up: np.ndarray
    cores: np.ndarray
    memory: np.ndarray
    disk: np.ndarray
    cpu_load: np.ndarray
    memory_used: np.ndarray
    disk_used: np.ndarray
    cpu_allocated: np.ndarray
    memory_allocated: np.ndarray
    disk_allocated: np.ndarray
    task_count: np.ndarray
    # What each worker can run, as it reports it (see cube.feasibility); None in a table
    # that does not know (the simulator's), which then passes the runtime and image checks.
    runtimes: list[str] | None = None
    images: list[tuple[str, ...]] | None = None
    pulls: np.ndarray | None = None
    refusals: list[str] | None = None  # per node, why it may not take this task ("": may)

    @classmethod
    def build(
        cls,
        names: list[str],
        cores: Any,
        memory: Any,
        disk: Any,
        *,
        up: Any = True,
        cpu_load: Any = 0.0,
        memory_used: Any = 0,
        disk_used: Any = 0,
    ) -> NodeTable:
        """A table of empty nodes with the given capacities (scalars broadcast)."""
        n = len(names)

        def floats(v: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()

        return cls(
            names=list(names),
            up=np.broadcast_to(np.asarray(up, dtype=bool), (n,)).copy(),
            cores=floats(cores),
            memory=floats(memory),
            disk=floats(disk),
            cpu_load=floats(cpu_load),
            memory_used=floats(memory_used),
            disk_used=floats(disk_used),
            cpu_allocated=np.zeros(n),
            memory_allocated=np.zeros(n),
            disk_allocated=np.zeros(n),
            task_count=np.zeros(n, dtype=np.int64),
        )

    @classmethod
    def from_nodes(cls, nodes: list[Node]) -> NodeTable:
        table = cls.build(
            [n.name for n in nodes],
            [n.cores for n in nodes],
            [n.memory for n in nodes],
            [n.disk for n in nodes],
            up=[n.state == "up" for n in nodes],
            cpu_load=[n.cpu_load for n in nodes],
            memory_used=[n.memory_used for n in nodes],
            disk_used=[n.disk_used for n in nodes],
        )
        table.cpu_allocated[:] = [n.cpu_allocated for n in nodes]
        table.memory_allocated[:] = [n.memory_allocated for n in nodes]
        table.disk_allocated[:] = [n.disk_allocated for n in nodes]
        table.task_count[:] = [n.task_count for n in nodes]
        table.runtimes = [n.runtime for n in nodes]
        table.images = [n.images for n in nodes]
        table.pulls = np.array([n.pulls for n in nodes], dtype=bool)
        return table

    def __len__(self) -> int:
        return len(self.names)

    def cpu_utilisation(self) -> np.ndarray:
        """The larger of measured load and promised cores, as a share of capacity.

        A node without cores counts as idle until cores are promised on it, and then as
        hopelessly overloaded: its promise is divided by a tiny capacity, not by zero
        (one cheap operation on the tables the simulator scores, unlike a masked one)."""
        promised = self.cpu_allocated / np.maximum(self.cores, 1e-9)
        return np.maximum(self.cpu_load, promised)

    def memory_in_use(self) -> np.ndarray:
        """The larger of measured and promised memory, in bytes."""
        return np.maximum(self.memory_used, self.memory_allocated)

    def disk_in_use(self) -> np.ndarray:
        return np.maximum(self.disk_used, self.disk_allocated)

    def allocate(self, i: int, task: Demand) -> None:
        self.cpu_allocated[i] += task.cpu
        self.memory_allocated[i] += task.memory
        self.disk_allocated[i] += task.disk
        self.task_count[i] += 1

    def release(self, i: int, task: Demand) -> None:
        self.cpu_allocated[i] = max(0.0, self.cpu_allocated[i] - task.cpu)
        self.memory_allocated[i] = max(0.0, self.memory_allocated[i] - task.memory)
        self.disk_allocated[i] = max(0.0, self.disk_allocated[i] - task.disk)
        self.task_count[i] = max(0, self.task_count[i] - 1)


def busy_percent(before: Mapping[str, Any], after: Mapping[str, Any]) -> float:
    """CPU busy share, 0-100, between two snapshots of /proc/stat-style counters
    (``psutil.cpu_times()._asdict()``, or the ``CpuStats`` a Go worker reports). Idle
    and iowait count as idle, as in the book's formula; guest time is already in user."""

    def split(t: Mapping[str, Any]) -> tuple[float, float]:
        idle = float(t.get("idle", 0)) + float(t.get("iowait", 0))
        busy = sum(
            float(t.get(k, 0)) for k in ("user", "nice", "system", "irq", "softirq", "steal")
        )
        return idle, idle + busy

    idle0, total0 = split(before)
    idle1, total1 = split(after)
    total = total1 - total0
    if total <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * (total - (idle1 - idle0)) / total))


def format_size(n: float) -> str:
    """Bytes for people: ``format_size(3 << 30) == "3.0 GiB"``."""
    n = max(float(n), 0.0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
