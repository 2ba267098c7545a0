"""Manager recovery time with many stored tasks, and placement decisions per second."""

from __future__ import annotations

import random
import tempfile
import time

from bench.common import header, ms
from cube.manager.manager import Manager
from cube.manager.stores import Stores
from cube.node import NodeTable
from cube.scheduler import SCHEDULERS, place
from cube.task import State, Task, TaskEvent

STORED = 10_000
WORKERS = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
GIB = 1 << 30


def _fill(directory: str) -> None:
    stores = Stores.open("persistent", directory)
    rng = random.Random(1)
    for i in range(STORED):
        state = rng.choice([State.Running, State.Running, State.Completed, State.Failed])
        task = Task(f"t{i}", "cube/echo", state=state, worker=rng.choice(WORKERS))
        stores.tasks.put(str(task.id), task)
        event = TaskEvent(task=task)
        stores.events.put(str(event.id), event)
    stores.close()


def recovery() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _fill(tmp)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            manager = Manager(WORKERS, "epvm", Stores.open("persistent", tmp))
            times.append(time.perf_counter() - start)
            assert len(manager.tasks.records) == STORED
            manager.close()
    print(f"recovery with {STORED:,} stored tasks: best {ms(min(times))} (goal < 1 s)")


def decisions(nodes: int, seconds: float = 1.0) -> dict[str, float]:
    rates = {}
    for name, cls in SCHEDULERS.items():
        rng = random.Random(0)
        names = [f"n{i}" for i in range(nodes)]
        load = [rng.random() * 0.5 for _ in names]
        table = NodeTable.build(names, cores=8, memory=32 * GIB, disk=500 * GIB, cpu_load=load)
        scheduler, placed, count = cls(), [], 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            task = Task(
                "x", "cube/echo", cpu=rng.choice([0.25, 0.5, 1]), memory=rng.choice([1, 2, 4]) * GIB
            )
            where = place(scheduler, task, table).index
            if where is not None:
                table.allocate(where, task)
                placed.append((where, task))
            if len(placed) > nodes * 4:  # keep the cluster about half full
                table.release(*placed.pop(0))
            count += 1
        rates[name] = count / (time.perf_counter() - start)
    return rates


def main() -> None:
    header("manager")
    recovery()
    for nodes in (3, 1000):
        rates = decisions(nodes)
        shown = ", ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items())
        print(f"placement decisions at {nodes:>4} nodes: {shown}")


if __name__ == "__main__":
    main()
