"""How fast does the simulator place tasks, against scoring node by node in Python?

Run: ``.venv/bin/python -m bench.bench_sim`` (``--help`` for sizes). It prints
numbers and asserts nothing about them: timings depend on the machine.

1. The full simulation: 100,000 tasks on 5,000 nodes per scheduler (``cube.sim``).
2. The same schedulers (``cube.scheduler``, vectorised with numpy) and a pure-Python
   BASELINE of the same scorers, each placing the first ``--baseline-decisions`` tasks
   of that workload onto the empty cluster (placements only), with the picks compared.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass

from cube import sim
from cube.node import NodeTable
from cube.scheduler import LIEB, MAX_JOBS, make, place
from cube.sim.engine import SimTask


@dataclass
class Baseline:
    """BASELINE, not used by Cube: E-PVM or BestFit written the straightforward way,
    one node at a time with Python floats, the fit test and the formula as documented
    in ``cube.scheduler``. Ties go to the lower index, as there."""

    name: str
    nodes: NodeTable

    def __post_init__(self) -> None:
        t = self.nodes
        self.up, self.cores, self.memory, self.disk = (
            t.up.tolist(),
            t.cores.tolist(),
            t.memory.tolist(),
            t.disk.tolist(),
        )
        self.cpu_load, self.memory_used, self.disk_used = (
            t.cpu_load.tolist(),
            t.memory_used.tolist(),
            t.disk_used.tolist(),
        )
        self.cpu_allocated = t.cpu_allocated.tolist()
        self.memory_allocated = t.memory_allocated.tolist()
        self.disk_allocated = t.disk_allocated.tolist()
        self.task_count = t.task_count.tolist()

    def place(self, task: SimTask) -> int | None:
        best, best_score = None, math.inf
        for i in range(len(self.cores)):
            if not self.fits(task, i):
                continue
            score = self.epvm(task, i) if self.name == "epvm" else self.bestfit(task, i)
            if score < best_score:
                best, best_score = i, score
        if best is not None:
            self.cpu_allocated[best] += task.cpu
            self.memory_allocated[best] += task.memory
            self.disk_allocated[best] += task.disk
            self.task_count[best] += 1
        return best

    def fits(self, task: SimTask, i: int) -> bool:
        if not self.up[i]:
            return False
        if task.cpu > 0 and self.cpu_allocated[i] + task.cpu > self.cores[i] + 1e-9:
            return False
        for want, capacity, promised, used in (
            (task.memory, self.memory[i], self.memory_allocated[i], self.memory_used[i]),
            (task.disk, self.disk[i], self.disk_allocated[i], self.disk_used[i]),
        ):
            if want > 0 and (promised + want > capacity or capacity - used < want):
                return False
        return True

    def shares(self, i: int) -> tuple[float, float, float, float]:
        cores, memory = max(self.cores[i], 1e-9), max(self.memory[i], 1.0)
        promised = self.cpu_allocated[i] / self.cores[i] if self.cores[i] > 0 else 0.0
        u = max(self.cpu_load[i], promised)
        m = max(self.memory_used[i], self.memory_allocated[i]) / memory
        return u, m, cores, memory

    def epvm(self, task: SimTask, i: int) -> float:
        u, m, cores, memory = self.shares(i)
        du = (task.cpu if task.cpu > 0 else 1.0) / cores
        dm = task.memory / memory
        n = self.task_count[i]
        jobs = LIEB ** ((n + 1) / MAX_JOBS) - LIEB ** (n / MAX_JOBS)
        return (LIEB ** (m + dm) - LIEB**m) + (LIEB ** (u + du) - LIEB**u) + 2 * jobs

    def bestfit(self, task: SimTask, i: int) -> float:
        u, m, cores, memory = self.shares(i)
        free_cpu = min(max(1 - u - task.cpu / cores, 0.0), 1.0)
        free_memory = min(max(1 - m - task.memory / memory, 0.0), 1.0)
        return 10**free_cpu + 10**free_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=5_000)
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--baseline-decisions", type=int, default=1_000)
    parser.add_argument("--schedulers", nargs="+", default=["bestfit", "epvm"])
    args = parser.parse_args()

    cluster = sim.nodes(args.nodes)
    work = sim.Workload.generate(args.tasks, cluster, load=args.load, seed=1)
    print(f"workload: {args.tasks:,} tasks, {args.nodes:,} nodes, load {args.load}")
    for name in args.schedulers:
        result = sim.simulate(name, work, cluster, progress=False)
        m = result.metrics
        print(
            f"simulate {name:8s} {m['wall_seconds']:6.2f} s wall, {m['decisions']:,} decisions, "
            f"{m['decisions_per_second']:,.0f} decisions/s "
            f"({1e6 / m['decisions_per_second']:.0f} us each, engine included)"
        )
        vectorised, picks = time_numpy(name, work, cluster, args.baseline_decisions)
        baseline, expected = time_baseline(name, work, cluster, args.baseline_decisions)
        same = sum(a == b for a, b in zip(picks, expected, strict=True))
        print(
            f"  first {args.baseline_decisions:,} placements: cube.scheduler "
            f"{vectorised:,.0f} decisions/s, pure-Python BASELINE {baseline:,.0f} decisions/s, "
            f"ratio {vectorised / baseline:,.0f}x (simulation vs baseline "
            f"{m['decisions_per_second'] / baseline:,.0f}x); same picks {same}/{len(picks)}"
        )


def _tasks(work: sim.Workload, n: int) -> list[SimTask]:
    head = work.head(n)
    return [
        SimTask(*row)
        for row in zip(head.cpu.tolist(), head.memory.tolist(), head.disk.tolist(), strict=True)
    ]


def time_numpy(
    name: str, work: sim.Workload, cluster: NodeTable, n: int
) -> tuple[float, list[int | None]]:
    """Decisions per second of the real scheduler, placing only (no finishes)."""
    scheduler, nodes, picks = make(name), copy.deepcopy(cluster), []
    tasks = _tasks(work, n)
    start = time.perf_counter()
    for task in tasks:
        index = place(scheduler, task, nodes).index
        if index is not None:
            nodes.allocate(index, task)
        picks.append(index)
    return len(tasks) / (time.perf_counter() - start), picks


def time_baseline(
    name: str, work: sim.Workload, cluster: NodeTable, n: int
) -> tuple[float, list[int | None]]:
    """Decisions per second of the BASELINE on the same placements."""
    baseline, tasks = Baseline(name, copy.deepcopy(cluster)), _tasks(work, n)
    start = time.perf_counter()
    picks = [baseline.place(task) for task in tasks]
    return len(tasks) / (time.perf_counter() - start), picks


if __name__ == "__main__":
    main()
