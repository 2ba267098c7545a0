"""A learner's piece inside a live system: in-notebook managers and workers.

The manager and workers of a LocalCluster are separate processes, which cannot run
code written in a notebook. So a checker that needs a learner's scheduler or restart
policy in a manager builds one here, in the kernel, through the manager's public
constructor, and points it at the cluster's real worker processes: real HTTP, real
tasks, real faults. (The cluster's own manager ignores tasks it did not create.) A
learner's runtime or store goes into a worker made here the same way.

Every such object is made and torn down in this one module, so the checkers do not
depend on how the manager or the worker is built.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cube.client import CubeError, WorkerClient
from cube.cluster import LocalCluster
from cube.lab.scratch import remove_scratch, scratch_dir
from cube.store import MemoryStore, Store, WireCodec
from cube.task import Task

# Short intervals, so that a check under a nemesis takes seconds.
FAST = {"update_interval": 0.2, "health_interval": 0.3, "node_ttl": 1.0, "http_timeout": 0.5}


@contextlib.contextmanager
def notebook_manager(
    cluster: LocalCluster, scheduler: Any = "roundrobin", restart: Any = None
) -> Iterator[Any]:
    """A manager in this kernel, with ``scheduler`` (an object or a name) and
    ``restart`` (a :class:`~cube.manager.health.RestartPolicy`), managing the
    cluster's workers. On the way out its tasks are stopped on every worker."""
    from cube.manager.manager import Manager

    addresses = [w.address for w in cluster.workers.values()]
    options: dict[str, Any] = dict(FAST)
    if restart is not None:
        options["restart"] = restart
    manager = Manager(addresses, scheduler, **options).start()
    try:
        _wait_up(manager)
        yield manager
    finally:
        ids = [str(t.id) for t in manager.list_tasks()]
        manager.close()
        _stop_everywhere(cluster, ids)


def _wait_up(manager: Any, timeout: float = 10.0) -> None:
    """Until the manager has heard from every worker: on a busy machine its first probe
    may time out, and a checker must not mistake that for the learner's doing."""
    changes = manager.nodes.changes
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        index = changes.index  # the nodes' own lock is never taken under this one's
        if all(node.state == "up" for node in manager.list_nodes()):
            return
        changes.wait(index, min(0.2, left))


def _stop_everywhere(cluster: LocalCluster, task_ids: list[str]) -> None:
    """Ask every worker that is up to stop these tasks (unknown ones are skipped)."""
    for component in cluster.workers.values():
        if component.state != "running":
            continue
        with WorkerClient(component.url, timeout=2) as worker:
            known = {str(t.id): t for t in _tasks(worker)}
            for task_id in task_ids:
                if task_id in known and known[task_id].state.name in ("Scheduled", "Running"):
                    with contextlib.suppress(CubeError):
                        worker.stop(task_id)


def _tasks(worker: WorkerClient) -> list[Task]:
    try:
        return worker.tasks()
    except CubeError:
        return []


@contextlib.contextmanager
def notebook_worker(
    name: str,
    runtime: Any = "process",
    store: Store[Task] | None = None,
    state_dir: Path | None = None,
    inspect_interval: float = 0.1,
    loop: bool = True,
    keep_tasks: bool = False,
) -> Iterator[Any]:
    """A worker in this kernel: ``runtime`` is a runtime object or a kind ("process",
    "docker"), ``store`` the store for its tasks (memory by default). Its loop runs
    unless ``loop=False`` (then the checker turns the crank with ``step()``). On the
    way out every task it still runs is stopped and its scratch folder removed, unless
    ``keep_tasks``: then it is only closed, as a worker that restarts would be, and a
    worker opened next on the same ``state_dir`` finds its tasks."""
    from cube.lab.show import shut_down
    from cube.runtime import choose
    from cube.worker.worker import Worker

    folder = state_dir or scratch_dir(f"cube-{name}-")
    if isinstance(runtime, str):
        runtime = choose(runtime, owner=name, state_dir=folder / "processes")
    tasks = store if store is not None else MemoryStore(WireCodec(Task))
    worker = Worker(name, tasks, runtime, inspect_interval=inspect_interval)
    if loop:
        worker.start()
    try:
        yield worker
    finally:
        with contextlib.suppress(Exception):
            worker.close() if keep_tasks else shut_down(worker)
        if state_dir is None:
            remove_scratch(folder)
