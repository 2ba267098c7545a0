"""What a simulation measures: a timeline on a fixed time grid, and totals.

Shares are of the whole cluster's capacity (a node that is down still counts, as lost
capacity), using what is *promised* to running tasks, since that is what the schedulers
pack against.

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
    """The cluster sampled every ``interval`` seconds (row ``k`` is time ``time[k]``)."""

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
    """Takes samples on the grid ``start, start + interval, ...`` as the clock passes it."""

    nodes: NodeTable
    start: float
    interval: float
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
        self.next = self.start + len(self.rows) * self.interval

    def timeline(self) -> Timeline:
        columns = np.array(self.rows, dtype=float).reshape(-1, 8).T
        counts = columns[5:].astype(np.int64)
        load = np.stack(self.loads) if self.loads else np.zeros((0, len(self.nodes)))
        return Timeline(*columns[:5], *counts, node_load=load)


def percentile(values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile, or NaN when there is nothing to measure."""
    return float(np.percentile(values, q)) if len(values) else float("nan")
