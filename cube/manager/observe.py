"""Observed state: what each worker says it holds, kept current by watching it.

The manager never assumes an order took effect; it believes what workers report. Each
worker is watched by one thread: with a *blocking query* (``GET /tasks?index=N&wait=30s``,
answered as soon as anything changed there, the way Consul and Nomad clients watch) when
the worker answers with an ``X-Cube-Index`` header, or by asking every ``interval``
seconds when it does not (the book's Go worker). What changed is handed to ``on_change``
(the task IDs), so only those tasks are looked at again.

A list of a worker counts only once it has been fetched since the worker was last heard
from: until then reconcile waits rather than guess ("does it still run my task?").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cube.client import CubeError, WorkerClient
from cube.http import INDEX_HEADER
from cube.task import Task

log = logging.getLogger(__name__)

WATCH_WAIT = 30.0


class Reports:
    """worker -> {task ID: its copy}, for the workers whose list is known."""

    def __init__(self) -> None:
        self._lists: dict[str, dict[str, Task]] = {}
        self._lock = threading.Lock()

    def replace(self, worker: str, tasks: list[Task]) -> tuple[set[str], bool]:
        """Take a whole list; returns the IDs whose copy changed (appeared, changed or
        went) and whether this is the first list since the worker was unknown."""
        fresh = {str(t.id): t for t in tasks}
        with self._lock:
            old = self._lists.get(worker)
            self._lists[worker] = fresh
        if old is None:
            return set(fresh), True
        changed = {k for k in fresh.keys() | old.keys() if fresh.get(k) != old.get(k)}
        return changed, False

    def put(self, worker: str, task: Task) -> bool:
        """One copy, as a worker just answered it (to a post); True when it changed."""
        with self._lock:
            known = self._lists.get(worker)
            if known is None or known.get(str(task.id)) == task:
                return False
            known[str(task.id)] = task
            return True

    def drop(self, worker: str, task_id: str) -> None:
        with self._lock:
            known = self._lists.get(worker)
            if known is not None:
                known.pop(task_id, None)

    def forget(self, worker: str) -> None:
        """Its list is not known any more (it went down): wait for a fresh one."""
        with self._lock:
            self._lists.pop(worker, None)

    def known(self, worker: str) -> bool:
        with self._lock:
            return worker in self._lists

    def copies(self, task_id: str) -> dict[str, Task | None]:
        with self._lock:
            return {w: tasks.get(task_id) for w, tasks in self._lists.items()}


def fetch(client: WorkerClient, index: int, wait: float) -> tuple[list[Task], int | None]:
    """A worker's tasks, waiting up to ``wait`` seconds for a change after ``index``
    (index 0: at once). Returns the tasks and the worker's index (None when the worker
    does not keep one). A Go worker's ``null`` for "no tasks" is an empty list."""
    params = {"index": index, "wait": f"{wait:g}s"} if index else None
    response = client.get_raw("/tasks", params=params, timeout=client.timeout + wait)
    data: Any = response.json()
    tasks = [Task.from_wire(item) for item in data or ()]
    header = response.headers.get(INDEX_HEADER, "")
    return tasks, int(header) if header.isdigit() else None


class Watcher:
    """One thread per worker keeping :class:`Reports` current."""

    def __init__(
        self,
        name: str,
        client: WorkerClient,
        reports: Reports,
        on_change: Callable[[str, set[str], bool], None],
        interval: float,
    ) -> None:
        self.name, self.client, self.reports = name, client, reports
        self.on_change, self.interval = on_change, interval
        self._index = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def once(self, wait: float = 0.0) -> bool:
        """Fetch once (blocking up to ``wait`` for a change); False when it failed."""
        try:
            tasks, index = fetch(self.client, self._index if wait else 0, wait)
        except (CubeError, ValueError) as exc:
            log.debug("cannot list the tasks of %s: %s", self.name, exc)
            self._index = 0
            return False
        self._index = index or 0
        changed, first = self.reports.replace(self.name, tasks)
        if changed or first:
            self.on_change(self.name, changed, first)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.once(WATCH_WAIT if self._index else 0.0)
            if not ok or not self._index:
                self._stop.wait(self.interval)  # no watch here (or no answer): ask later
