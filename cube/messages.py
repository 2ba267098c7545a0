"""The APIs' other wire types: the error body, machine statistics, nodes, health, logs.

Declared once here (see :mod:`cube.wire`), they give the JSON both APIs answer with, the
checks a client applies to what it reads, and the OpenAPI schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from cube.fields import HostPorts, Time
from cube.wire import Wire


class ErrorBody(Wire):
    """Every error, including unknown routes and methods: the Go Cube's ErrResponse."""

    http_status_code: Annotated[int, Meta(ge=400, le=599)]
    message: str


# ------------------------------------------------------------------- statistics


class _ProcInfo(msgspec.Struct, kw_only=True):
    """goprocinfo's structs, with its JSON names (snake_case, a Go worker adds more)."""


Count = Annotated[int, Meta(ge=0)]
Load = Annotated[float, Meta(ge=0)]


class MemStats(_ProcInfo):
    """Memory in kB, as /proc/meminfo counts it."""

    mem_total: Count = 0
    mem_free: Count = 0
    mem_available: Count = 0
    buffers: Count = 0
    cached: Count = 0
    active: Count = 0
    inactive: Count = 0
    shmem: Count = 0
    swap_total: Count = 0
    swap_free: Count = 0


class DiskStats(_ProcInfo):
    """The data disk, in bytes."""

    all: Count = 0
    used: Count = 0
    free: Count = 0
    free_inodes: Count = msgspec.field(default=0, name="freeInodes")


class CpuStats(_ProcInfo):
    """CPU time since boot, in jiffies (1/100 s), as /proc/stat's first line."""

    id: str = "cpu"
    user: Count = 0
    nice: Count = 0
    system: Count = 0
    idle: Count = 0
    iowait: Count = 0
    irq: Count = 0
    softirq: Count = 0
    steal: Count = 0
    guest: Count = 0
    guest_nice: Count = 0


class LoadStats(_ProcInfo):
    """Load averages and process counts, as /proc/loadavg."""

    last1min: Load = 0.0
    last5min: Load = 0.0
    last15min: Load = 0.0
    process_running: Count = 0
    process_total: Count = 0
    last_pid: Count = 0


class Stats(Wire):
    """A worker's ``GET /stats``: goprocinfo's names and units (memory in kB, disk in
    bytes, CPU in jiffies), so a Go manager can read them. ``CpuPercent`` (busy share
    since the previous sample) and ``Cores`` are ours; a Go worker sends neither."""

    mem_stats: MemStats
    disk_stats: DiskStats
    cpu_stats: CpuStats = msgspec.field(default_factory=CpuStats)
    load_stats: LoadStats = msgspec.field(default_factory=LoadStats)
    task_count: Count = 0
    cpu_percent: Annotated[float, Meta(ge=0, le=100)] = 0.0
    cores: Count = 0


# ----------------------------------------------------------------- small answers


class WorkerHealth(Wire):
    """A worker's ``GET /health``: alive, and what it can run."""

    status: Literal["ok"] = "ok"
    name: str
    runtime: Literal["docker", "process"]
    images: Annotated[
        list[str],
        Meta(
            description="The images it has (Docker), or the programs it runs (process "
            "runtime: cube/echo, cube/busybox, with any tag)."
        ),
    ] = msgspec.field(default_factory=list)
    pulls: Annotated[bool, Meta(description="Whether it can pull images.")] = False
    epoch: Annotated[
        int, Meta(ge=0, description="The epoch of the leader whose orders it follows (0: none).")
    ] = 0


class ManagerHealth(Wire):
    """The manager's ``GET /health``."""

    status: Literal["ok"] = "ok"
    scheduler: str
    workers: Annotated[int, Meta(ge=0)]
    store: Annotated[
        str, Meta(description="Where its state is: memory, disk, or the etcd endpoints.")
    ] = ""
    leading: Annotated[
        bool, Meta(description="Whether this manager runs the control loops now.")
    ] = True
    leader: Annotated[
        str,
        Meta(description="The API of the manager that leads (several on etcd; empty: none now)."),
    ] = ""
    epoch: Annotated[
        int, Meta(ge=0, description="The leader's epoch: it only grows (0: a single manager).")
    ] = 0


class Logs(Wire):
    """A task's last lines of output."""

    id: str
    logs: str


class RuntimeStatus(Wire):
    """What a worker's runtime says about a task's container or process right now."""

    container_id: str
    running: bool
    status: Annotated[
        str,
        Meta(
            description="The runtime's word: running, exited, missing, or unknown when the "
            "runtime cannot be asked (Reason says why)."
        ),
    ]
    exit_code: int | None
    reason: str
    host_ports: HostPorts | None = None


# ------------------------------------------------------------------------ nodes

_KB = Annotated[int, Meta(ge=0, description="kB")]
_BYTES = Annotated[int, Meta(ge=0, description="bytes")]
_SHARE = Annotated[float, Meta(ge=0)]


class NodeInfo(Wire):
    """A worker as ``GET /nodes`` shows it: the Go Cube's fields and units (memory in kB,
    disk in bytes; ``Ip`` is never set, as in the book), then ours: whether it is up,
    its cores and CPU use, what is promised on it, when it last answered, why it is
    down, and what it can run."""

    name: str
    ip: str = ""
    api: str
    memory: _KB = 0
    memory_allocated: _KB = 0
    disk: _BYTES = 0
    disk_allocated: _BYTES = 0
    stats: Annotated[
        dict[str, Any] | None,
        Meta(
            description="The worker's last /stats answer (a Go worker's has fewer fields); "
            "null before it first answered."
        ),
    ] = None
    role: Literal["worker"] = "worker"
    task_count: Annotated[int, Meta(ge=0)] = 0
    state: Literal["up", "down", "unknown"] = "unknown"
    cores: _SHARE = 0.0
    cpu_allocated: _SHARE = 0.0
    cpu_percent: Annotated[float, Meta(ge=0, le=100)] = 0.0
    memory_used: _KB = 0
    disk_used: _BYTES = 0
    last_seen: Time = None
    reason: Annotated[str, Meta(description="Why it is down.")] = ""
    runtime: Literal["docker", "process", ""] = ""
    images: list[str] = msgspec.field(default_factory=list)
    pulls: bool = False
