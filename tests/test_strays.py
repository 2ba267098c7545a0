"""Stray copies, with real processes: a worker SIGKILLed leaves its task processes
running (as real ones do), its tasks move elsewhere, and when it comes back it re-adopts
its old copies. The manager must stop those, so that every task runs exactly once.

Each round checks the rule the way a person would see it: in the process table, every
task has exactly one live process within 15 s of the worker's restart.
"""

from __future__ import annotations

import signal
from pathlib import Path

from helpers import Procs, eventually, live_processes, one_process_each

from cube.client import ManagerClient
from cube.task import State, Task

ROUNDS = 5
SETTLE = 15.0  # seconds after a restart by which every task runs exactly once
MOVE = 60.0  # seconds for the manager to see a worker down and move its tasks


def running_on(client: ManagerClient, worker: str, count: int) -> bool:
    """The manager reports ``count`` tasks, all Running on ``worker``."""
    tasks = client.tasks()
    return len(tasks) == count and all(
        t.state is State.Running and t.worker == worker for t in tasks
    )


def busiest(client: ManagerClient) -> str:
    """The worker the manager has placed the most tasks on."""
    placed = [t.worker for t in client.tasks() if t.worker]
    return max(set(placed), key=placed.count)


def settled(data_dir: Path, ids: set[str], timeout: float, when: str) -> None:
    """Wait until every task runs as exactly one live process; say what runs if not."""
    try:
        eventually(lambda: one_process_each(data_dir, ids), timeout, f"{when}: one per task")
    except AssertionError as exc:
        counts = live_processes(data_dir)
        raise AssertionError(f"{exc}; live processes per task: {counts}") from None


def test_a_worker_back_with_its_old_copies_has_them_stopped_every_round(tmp_path):
    cluster = Procs(tmp_path)
    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name)
        cluster.start_manager("--scheduler", "roundrobin")
        client = ManagerClient(cluster.url, timeout=10)
        ids = {str(client.submit(Task(f"t{i}", "cube/echo")).id) for i in range(6)}
        settled(tmp_path, ids, 60, "at first")
        names = {cluster.address(n): n for n in cluster.workers}
        for round_ in range(ROUNDS):
            victim = names[busiest(client)]
            other = next(n for n in cluster.workers if n != victim)
            cluster.signal(victim, signal.SIGKILL)  # its task processes live on
            eventually(
                lambda o=other: running_on(client, cluster.address(o), len(ids)),
                MOVE,
                f"round {round_ + 1}: every task Running on {other}",
            )
            cluster.start_worker(victim)  # it re-adopts its old copies
            settled(tmp_path, ids, SETTLE, f"round {round_ + 1}")
    finally:
        cluster.close()
