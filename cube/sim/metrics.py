"""What a simulation measures: a timeline on a fixed time grid, and totals.

Shares are of the whole cluster's capacity (a node that is down still counts, as lost
capacity), using what is *promised* to running tasks, since that is what the schedulers
pack against. Total utilisation and stranding are averages over the *arrival window*,
from the first arrival to the last: that is where the load knob applies, while the
ramp-down after it (the long tail of durations finishing) says little about scheduling.

Totals (``Result.metrics``): ``tasks``; ``finished``; ``unplaced`` (still waiting at
the end: they fit no node that was up); ``rejected`` (bigger than every node, never
tried); ``requeued`` (runs cut short by node failures); ``decisions`` (scheduler
calls, failed ones included); ``cpu_utilisation``, ``memory_utilisation``,
``stranded_cpu``, ``stranded_memory`` (shares, 0..1); ``wait_p50``, ``wait_p99``
(seconds from arrival to first start, placed tasks only); ``makespan`` (first arrival
to last finish, seconds); ``wall_seconds`` and ``decisions_per_second`` (wall clock).

**Stranded** resources are free but unusable by a typical task because the node has
run out of the other resource: stranded CPU is the free cores on up nodes whose free
memory is less than the workload's median memory demand; stranded memory is the free
memory on up nodes whose free cores are fewer than the median CPU demand. Both are
shares of the cluster's total. A packing scheduler that mixes memory-heavy and
CPU-heavy tasks well strands little.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cube.node import NodeTable

WALL_CLOCK = ("wall_seconds", "decisions_per_second")
"""Metrics that depend on the machine; all others repeat exactly for the same inputs."""


@dataclass(frozen=True, eq=False)
class Timeline:
    """The cluster sampled on a fixed time grid (row ``k`` is the state at ``time[k]``)."""

    time: np.ndarray
    cpu: np.ndarray  # share of all cores promised to running tasks
    memory: np.ndarray
    stranded_cpu: np.ndarray
    stranded_memory: np.ndarray
    running: np.ndarray
    waiting: np.ndarray
    up: np.ndarray  # nodes up
    node_load: np.ndarray  # (samples, nodes): the fuller of each node's CPU and memory


@dataclass
class Recorder:
    """Takes samples on the grid ``start, start + interval, ...`` as the clock passes it.

    A run that goes on far longer than planned (failures, overload) would pile up
    samples of every node; past ``limit`` samples, every other one is dropped and the
    interval doubled, so the grid stays regular and the memory bounded."""

    nodes: NodeTable
    start: float
    interval: float
    limit: int
    typical_cpu: float
    typical_memory: float
    rows: list[tuple[float, ...]] = field(default_factory=list)
    loads: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next = self.start
        self.total_cores = max(float(self.nodes.cores.sum()), 1e-9)
        self.total_memory = max(float(self.nodes.memory.sum()), 1.0)

    def until(self, now: float, running: int, waiting: int) -> None:
        """Record every grid point before ``now`` (the state has not changed since)."""
        while self.next < now:
            self.sample(running, waiting)

    def sample(self, running: int, waiting: int) -> None:
        t = self.nodes
        free_cpu = np.maximum(t.cores - t.cpu_allocated, 0)
        free_memory = np.maximum(t.memory - t.memory_in_use(), 0)
        stuck_cpu = t.up & (free_memory < self.typical_memory)
        stuck_memory = t.up & (free_cpu < self.typical_cpu)
        self.rows.append(
            (
                self.next,
                t.cpu_allocated.sum() / self.total_cores,
                t.memory_allocated.sum() / self.total_memory,
                free_cpu[stuck_cpu].sum() / self.total_cores,
                free_memory[stuck_memory].sum() / self.total_memory,
                running,
                waiting,
                int(t.up.sum()),
            )
        )
        cores, memory = np.maximum(t.cores, 1e-9), np.maximum(t.memory, 1.0)
        load = np.maximum(t.cpu_allocated / cores, t.memory_allocated / memory)
        self.loads.append(load.astype(np.float32))
        if len(self.rows) >= max(self.limit, 2):
            self.rows, self.loads = self.rows[::2], self.loads[::2]
            self.interval *= 2
        self.next = self.start + len(self.rows) * self.interval

    def timeline(self) -> Timeline:
        columns = np.array(self.rows, dtype=float).reshape(-1, 8).T
        counts = columns[5:].astype(np.int64)
        load = np.stack(self.loads) if self.loads else np.zeros((0, len(self.nodes)))
        return Timeline(*columns[:5], *counts, node_load=load)


def percentile(values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile, or NaN when there is nothing to measure."""
    return float(np.percentile(values, q)) if len(values) else float("nan")
