"""How fast does the simulator place tasks, against scoring node by node in Python,
and how does its cost grow with size?

Run: ``.venv/bin/python -m bench.bench_sim`` (``--help`` for sizes). It prints
numbers and asserts nothing about them: timings depend on the machine.

1. The full simulation: 100,000 tasks on 5,000 nodes per scheduler (``cube.sim``).
2. The same schedulers (``cube.scheduler``, vectorised with numpy) and a pure-Python
   BASELINE of the same scorers, each placing the first ``--baseline-decisions`` tasks
   of that workload onto the empty cluster (placements only), with the picks compared.
3. Scale: per scheduler, 100,000 tasks on 5,000 nodes and 1,000,000 on 10,000, each in
   a fresh process: wall time of the simulation, the process's peak memory (max RSS),
   the ratio between the two sizes, and how many decisions of the fast path were also
   put to ``cube.scheduler`` (every 500th; all must agree or the run stops). The small
   size also runs without the fast path, asking the scheduler every time, as before.
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
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
    parser.add_argument("--schedulers", nargs="*", default=["bestfit", "epvm"])
    parser.add_argument(
        "--scale",
        nargs="*",
        default=["roundrobin", "greedy", "epvm", "bestfit"],
        help="schedulers for the scale runs (none: skip them)",
    )
    parser.add_argument("--big-tasks", type=int, default=1_000_000)
    parser.add_argument("--big-nodes", type=int, default=10_000)
    # `python -m bench bench_sim` leaves the suite's name among the arguments
    args = parser.parse_args([a for a in sys.argv[1:] if not a.startswith("bench_")])
    if args.schedulers:
        compare_with_baseline(args)
    if args.scale:
        scale(args)


def compare_with_baseline(args: argparse.Namespace) -> None:
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


@dataclass(frozen=True)
class Size:
    tasks: int
    nodes: int

    def __str__(self) -> str:
        return f"{_short(self.tasks)} x {_short(self.nodes)}"


def _short(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1000)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n:,}"


def measure(name: str, size: Size, load: float, fast: bool) -> dict[str, float]:
    """In a fresh process: one simulation's wall time, the process's peak memory, and
    the decisions checked against cube.scheduler."""
    cluster = sim.nodes(size.nodes)
    work = sim.Workload.generate(size.tasks, cluster, load=load, seed=1)
    start, cpu = time.perf_counter(), time.process_time()
    result = sim.simulate(name, work, cluster, progress=False, fast=fast)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"wall": wall, "cpu": cpu, "peak": peak, "checked": result.checked, **result.metrics}


def in_fresh_process(name: str, size: Size, load: float, fast: bool) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(measure, name, size, load, fast).result()


def _run(m: dict[str, float]) -> str:
    return f"{m['wall']:.1f} s ({m['cpu']:.1f} cpu) {m['peak']:.0f} MiB"


def scale(args: argparse.Namespace) -> None:
    small, big = Size(args.tasks, args.nodes), Size(args.big_tasks, args.big_nodes)
    print(
        f"\nscale, load {args.load}: each run in a fresh process; wall (and CPU) time of "
        "the simulation alone; peak = the process's max RSS"
    )
    print(
        f"{'scheduler':10s} {'asked every time, ' + str(small):>24s} {small!s:>24s} "
        f"{big!s:>26s} {'ratio (cpu)':>12s}  checked against cube.scheduler"
    )
    for name in args.scale:
        before = in_fresh_process(name, small, args.load, fast=False)
        after = in_fresh_process(name, small, args.load, fast=True)
        large = in_fresh_process(name, big, args.load, fast=True)
        print(
            f"{name:10s} {_run(before):>24s} {_run(after):>24s} {_run(large):>26s} "
            f"{large['wall'] / after['wall']:5.1f}x ({large['cpu'] / after['cpu']:.1f}x)  "
            f"{after['checked'] + large['checked']:,} decisions, all identical "
            f"(fast path {before['wall'] / after['wall']:.1f}x at {small})"
        )
    print(
        f"(ratio: {big} over {small}, for {big.tasks / small.tasks:g}x the tasks on "
        f"{big.nodes / small.nodes:g}x the nodes)"
    )


if __name__ == "__main__":
    main()
