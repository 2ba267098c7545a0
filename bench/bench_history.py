"""What a long history costs: a worker's task list, and the manager's newest events.

1. A worker holding 0, 2,000 and 30,000 finished tasks (as a busy worker would after a
   day, if it never forgot): ``GET /tasks`` in full (the book's request), one page
   (``?limit=100``), the changes since the last look (``?since=N``), and in full again
   once a manager has seen them all finish and the worker forgot them. Then a manager
   watches that worker for 10 s: how often it is marked down (must be never).
2. The manager's ``GET /events?limit=20`` with 100,000 events stored on disk, against
   the baseline of decoding every event and sorting (what it did before the index).

Run: ``python -m bench bench_history``. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import requests

from bench.common import header, ms
from cube.clock import utcnow
from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app as manager_app
from cube.manager.stores import Stores
from cube.runtime import choose
from cube.store import JsonCodec, MemoryStore, WireCodec
from cube.task import State, Task, TaskEvent
from cube.worker import Worker, retention
from cube.worker.api import make_app as worker_app

SIZES = (0, 2_000, 30_000)
EVENTS = 100_000


def timed(url: str, params: dict | None = None, repeats: int = 5) -> float:
    with requests.Session() as session:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.get(url, params=params, timeout=60).raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def finished_worker(count: int, state_dir: Path) -> Worker:
    worker = Worker(
        f"hist-{count}",
        MemoryStore(WireCodec(Task)),
        choose("process", owner=f"hist-{count}", state_dir=state_dir),
        timers=MemoryStore(JsonCodec()),
        inspect_interval=0.5,
    )
    done = utcnow()
    for i in range(count):
        task = Task(f"old-{i}", "cube/echo", state=State.Completed, finish_time=done)
        worker.records.put(task.replace(desired=State.Completed))
    return worker


def worker_history() -> None:
    print("worker GET /tasks (median of 5) by finished tasks held:")
    for count in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            worker = finished_worker(count, Path(tmp))
            with Server(worker_app(worker)) as server:
                url = f"{server.url}/tasks"
                index = worker.index
                whole = timed(url)
                page = timed(url, {"limit": 100})
                delta = timed(url, {"since": index})
                down = watched_by_a_manager(server.url, worker)
                worker.acknowledge(worker.index)
                retention.prune(worker)
                pruned = timed(url)
            worker.close()
        print(
            f"  {count:>6,}: whole {ms(whole)}, page of 100 {ms(page)}, since N {ms(delta)}; "
            f"once seen and forgotten {ms(pruned)}; marked down {down} times in 10 s"
        )


def watched_by_a_manager(url: str, worker: Worker, seconds: float = 10.0) -> int:
    """A manager watching the worker for ``seconds``: how many times it went down."""
    manager = Manager([url.removeprefix("http://")], "roundrobin", node_ttl=3.0).start()
    downs, was = 0, "unknown"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = manager.list_nodes()[0].state
        downs += state == "down" and was != "down"
        was = state
        time.sleep(0.1)
    manager.close()
    return downs


def event_history() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stores = Stores.open("persistent", tmp)
        manager = Manager([], "roundrobin", stores)
        task = Task("e", "cube/echo")
        for _ in range(EVENTS):
            manager.tasks.record(TaskEvent(task=task))
        with Server(manager_app(manager)) as server:
            newest = timed(f"{server.url}/events", {"limit": 20})
        start = time.perf_counter()
        everything = sorted(stores.events.list(), key=lambda e: e.timestamp, reverse=True)[:20]
        baseline = time.perf_counter() - start
        manager.close()
    print(
        f"manager GET /events?limit=20 with {EVENTS:,} events: {ms(newest)} "
        f"(decoding all and sorting, as before: {ms(baseline)}; {baseline / newest:.0f}x)"
    )
    assert len(everything) == 20


def main() -> None:
    header("history: long task lists and event histories")
    worker_history()
    event_history()


if __name__ == "__main__":
    main()
