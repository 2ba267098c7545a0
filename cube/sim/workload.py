"""Workloads: when tasks arrive, how long they run, and what they ask for.

A :class:`Workload` is five aligned arrays sorted by arrival time (seconds, seconds,
cores, bytes, bytes). Make one with :meth:`Workload.generate` (seeded, synthetic) or
load your own with :meth:`Workload.from_csv`.

The generator draws Poisson arrivals, heavy-tailed durations and demands from a mix of
task classes, and picks the arrival rate so the cluster's bottleneck resource would be
``load`` busy on average: ``load=0.7`` leaves slack, ``load=1.2`` builds a queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cube.node import NodeTable
from cube.sim.sizes import GIB
from cube.sim.trace import COLUMNS, read_trace, write_trace

MIB = 1 << 20


@dataclass(frozen=True)
class TaskClass:
    """A kind of task and how common it is; each draw scales its demands by 0.5-1.5x."""

    name: str
    weight: float
    cpu: float
    memory: int
    disk: int


# Mostly small tasks, with memory-heavy and CPU-heavy minorities that strand resources.
DEFAULT_MIX: tuple[TaskClass, ...] = (
    TaskClass("small", 0.55, 0.5, 1 * GIB, 1 * GIB),
    TaskClass("medium", 0.30, 2.0, 4 * GIB, 10 * GIB),
    TaskClass("memory-heavy", 0.10, 2.0, 24 * GIB, 20 * GIB),
    TaskClass("cpu-heavy", 0.05, 8.0, 8 * GIB, 20 * GIB),
)


@dataclass(frozen=True)
class Lognormal:
    """Durations with the given mean; ``sigma`` sets the tail (1 is moderate, 2 heavy)."""

    mean: float = 60.0
    sigma: float = 1.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(np.log(self.mean) - self.sigma**2 / 2, self.sigma, n)


@dataclass(frozen=True)
class Pareto:
    """Durations with the given mean and a power-law tail (``alpha`` > 1; lower is heavier)."""

    mean: float = 60.0
    alpha: float = 1.5

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.alpha <= 1:
            raise ValueError(f"Pareto alpha must be > 1 for a finite mean, not {self.alpha}")
        return (rng.pareto(self.alpha, n) + 1) * self.mean * (self.alpha - 1) / self.alpha


@dataclass(frozen=True, eq=False)
class Workload:
    """Tasks as aligned arrays, in arrival order (task ``i`` is row ``i``)."""

    arrival: np.ndarray
    duration: np.ndarray
    cpu: np.ndarray
    memory: np.ndarray
    disk: np.ndarray

    def __post_init__(self) -> None:
        columns = [np.asarray(getattr(self, name)) for name in COLUMNS]
        if len({len(c) for c in columns}) > 1:
            raise ValueError("workload columns must all have the same length")
        order = np.argsort(columns[0], kind="stable")
        types = (np.float64, np.float64, np.float64, np.int64, np.int64)
        for name, column, kind in zip(COLUMNS, columns, types, strict=True):
            object.__setattr__(self, name, np.ascontiguousarray(column[order], dtype=kind))

    def __len__(self) -> int:
        return len(self.arrival)

    def __repr__(self) -> str:
        span = float(self.arrival[-1] - self.arrival[0]) if len(self) else 0.0
        return f"Workload({len(self)} tasks over {span:.0f} s)"

    @classmethod
    def generate(
        cls,
        n_tasks: int,
        nodes: NodeTable,
        *,
        load: float = 0.7,
        seed: int = 0,
        mix: Sequence[TaskClass] = DEFAULT_MIX,
        durations: Lognormal | Pareto = Lognormal(),
    ) -> Workload:
        """``n_tasks`` synthetic tasks that keep ``nodes`` about ``load`` busy.

        The rate is set from the drawn tasks' own mean demand and duration, on whichever
        of CPU and memory the mix runs out of first. A steady state (and a queue, above
        ``load=1``) needs many more tasks than the cluster runs at once, about
        ``load * cores / 1.5`` with the default mix; fewer is mostly ramp-up and drain.
        Times are rounded to milliseconds so a saved trace reads well and loads back
        identically."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, not {n_tasks}")
        if load <= 0:
            raise ValueError(f"load must be positive, not {load}")
        rng = np.random.default_rng(seed)
        weights = np.array([c.weight for c in mix], dtype=float)
        kind = rng.choice(len(mix), size=n_tasks, p=weights / weights.sum())
        scale = rng.uniform(0.5, 1.5, size=(3, n_tasks))
        cpu = np.maximum(np.round(np.array([c.cpu for c in mix])[kind] * scale[0], 2), 0.01)
        memory = _mib(np.array([c.memory for c in mix])[kind] * scale[1])
        disk = _mib(np.array([c.disk for c in mix])[kind] * scale[2])
        duration = np.maximum(np.round(durations.sample(rng, n_tasks), 3), 0.001)
        busy = max(cpu.mean() / nodes.cores.sum(), memory.mean() / nodes.memory.sum())
        rate = load / (busy * duration.mean())
        arrival = np.round(np.cumsum(rng.exponential(1 / rate, n_tasks)), 3)
        return cls(arrival, duration, cpu, memory, disk)

    @classmethod
    def from_csv(cls, path: str | Path) -> Workload:
        """Replay a trace with columns ``arrival,duration,cpu,memory,disk`` (seconds,
        seconds, cores, bytes, bytes); bad rows raise :class:`~cube.sim.trace.TraceError`."""
        return cls(*read_trace(path))

    def to_csv(self, path: str | Path) -> None:
        write_trace(path, [getattr(self, name) for name in COLUMNS])

    def head(self, n: int) -> Workload:
        """The first ``n`` tasks to arrive (a quick slice for trying things out)."""
        return Workload(*(getattr(self, name)[:n] for name in COLUMNS))


def _mib(values: np.ndarray) -> np.ndarray:
    """Bytes rounded to whole MiB (at least one), as containers are sized."""
    return np.maximum(np.round(values / MIB), 1).astype(np.int64) * MIB
