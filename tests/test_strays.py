"""Stray copies, with real processes: a worker SIGKILLed leaves its task processes
running (as real ones do), its tasks move elsewhere, and when it comes back it re-adopts
its old copies. The manager must stop those, so that every task runs exactly once.

Each round checks the rule the way a person would see it: in the process table, every
task has exactly one live process within 15 s of the worker's restart.
"""

from __future__ import annotations

import signal
from pathlib import Path

from helpers import Procs, eventually, settled

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


def running(
    cluster: Procs, tmp: Path, workers: tuple[str, ...], tasks: int
) -> tuple[ManagerClient, set[str]]:
    """Workers and a round-robin manager, with ``tasks`` echo tasks each running once."""
    for name in workers:
        cluster.start_worker(name)
    cluster.start_manager("--scheduler", "roundrobin")
    client = ManagerClient(cluster.url, timeout=10)
    ids = {str(client.submit(Task(f"t{i}", "cube/echo")).id) for i in range(tasks)}
    settled(tmp, ids, 60, "at first")
    return client, ids


def busiest(client: ManagerClient) -> str:
    """The worker the manager has placed the most tasks on."""
    placed = [t.worker for t in client.tasks() if t.worker]
    return max(set(placed), key=placed.count)


def test_a_worker_back_with_its_old_copies_has_them_stopped_every_round(tmp_path):
    cluster = Procs(tmp_path)
    try:
        client, ids = running(cluster, tmp_path, ("w1", "w2"), 6)
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


def test_a_worker_dropped_from_the_configuration_has_its_copies_stopped(tmp_path):
    """The manager restarts without one of its workers: that worker's tasks move, and
    its copies, and the copy of a task stopped meanwhile, are stopped through it."""
    cluster = Procs(tmp_path)
    try:
        client, ids = running(cluster, tmp_path, ("w1", "w2", "w3"), 6)
        dropped = cluster.address("w3")
        on_dropped = [t for t in client.tasks() if t.worker == dropped]
        assert on_dropped, "round-robin puts two of six tasks on each worker"

        cluster.signal("manager", signal.SIGTERM)
        workers = cluster.manager_args.index("--workers") + 1
        cluster.manager_args[workers] = f"{cluster.address('w1')},{cluster.address('w2')}"
        cluster.start_manager()
        stopped = str(on_dropped[0].id)
        client.stop(stopped)  # its only copy is on the dropped worker
        settled(tmp_path, ids - {stopped}, SETTLE, "without w3")
        assert client.task(stopped).state is State.Completed
        assert {t.worker for t in client.tasks() if t.state is State.Running} <= {
            cluster.address("w1"),
            cluster.address("w2"),
        }
    finally:
        cluster.close()


def test_a_worker_given_under_another_address_is_not_drained(tmp_path):
    """The same worker, once as 127.0.0.1 and now as localhost, answers with the same
    name as a configured worker: it is not drained, so its tasks are not taken for
    strays of themselves and stopped."""
    cluster = Procs(tmp_path)
    try:
        client, ids = running(cluster, tmp_path, ("w1", "w2"), 4)

        cluster.signal("manager", signal.SIGTERM)
        workers = cluster.manager_args.index("--workers") + 1
        alias = cluster.address("w1").replace("127.0.0.1", "localhost")
        cluster.manager_args[workers] = f"{alias},{cluster.address('w2')}"
        cluster.start_manager()
        log = tmp_path / "manager.log"
        said = f"no longer draining worker {cluster.address('w1')}: it may be a configured"
        eventually(lambda: said in log.read_text(), 30, "the alias told apart")
        eventually(lambda: all(t.state is State.Running for t in client.tasks()), 30, "all Running")
        settled(tmp_path, ids, SETTLE, "under the new addresses")
    finally:
        cluster.close()
