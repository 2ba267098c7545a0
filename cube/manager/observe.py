"""Observed state: what each worker says it holds, kept current by watching it.

The manager never assumes an order took effect; it believes what workers report. Each
worker is watched by one thread. The first request takes the whole list; after that, a
*blocking query* asks only for what changed (``GET /tasks?index=N&since=N&wait=30s``,
answered the moment anything changes there, the way Consul and Nomad clients watch),
and acknowledges that everything up to N was seen (``ack=1``), so the worker may forget
its finished tasks. A worker that cannot resume from N (it restarted, or has forgotten
that far back) answers 410 Gone, and the whole list is fetched again at once, so a task
it forgot meanwhile is seen gone. A worker that keeps no index (the book's Go worker) is
asked for its whole list every ``interval`` seconds instead. What changed is handed to ``on_change``
(the task IDs), so only those tasks are looked at again.

A list of a worker counts only once it has been fetched since the worker was last heard
from: until then reconcile waits rather than guess ("does it still run my task?").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cube.client import CubeError, Gone, WorkerClient
from cube.http import FORGOTTEN_HEADER, INDEX_HEADER
from cube.task import State, Task

log = logging.getLogger(__name__)

WATCH_WAIT = 30.0


class Reports:
    """worker -> {task ID: its copy}, for the workers whose list is known."""

    def __init__(self) -> None:
        self._lists: dict[str, dict[str, Task]] = {}
        self._lock = threading.Lock()

    def merge(self, worker: str, tasks: list[Task], forgotten: list[str]) -> set[str]:
        """Take what changed on a worker; returns the IDs that changed here."""
        changed = set()
        with self._lock:
            known = self._lists.setdefault(worker, {})
            for key in forgotten:  # first: a task forgotten, then ordered anew, is held
                if known.pop(key, None) is not None:
                    changed.add(key)
            for task in tasks:
                key = str(task.id)
                if known.get(key) != task:
                    known[key] = task
                    changed.add(key)
        return changed

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

    def ids(self, worker: str) -> set[str]:
        """The tasks a worker's known list mentions (none while it is not known)."""
        with self._lock:
            return set(self._lists.get(worker, ()))

    def live(self, worker: str) -> set[str]:
        """The tasks of which a worker's known list holds a live copy."""
        with self._lock:
            listed = self._lists.get(worker, {})
            return {k for k, t in listed.items() if t.state in (State.Scheduled, State.Running)}

    def copies(self, task_id: str) -> dict[str, Task | None]:
        with self._lock:
            return {w: tasks.get(task_id) for w, tasks in self._lists.items()}


@dataclass
class Answer:
    """One answer of a worker's task list: the tasks (all, or what changed), the IDs it
    forgot, and its index (None when it keeps none)."""

    tasks: list[Task]
    forgotten: list[str]
    index: int | None


def fetch(client: WorkerClient, index: int, wait: float, ack: bool = True) -> Answer:
    """A worker's tasks: all of them (``index`` 0), or what changed after ``index``,
    waiting up to ``wait`` seconds for something to, and saying (``ack``) that
    everything up to ``index`` was seen. A Go worker's ``null`` for "no tasks" is an
    empty list."""
    params = {"index": index, "since": index, "wait": f"{wait:g}s"} if index else None
    if params and ack:
        params["ack"] = 1
    response = client.get_raw("/tasks", params=params, timeout=client.timeout + wait)
    data: Any = response.json()
    tasks = [Task.from_wire(item) for item in data or ()]
    header = response.headers.get(INDEX_HEADER, "")
    forgotten = [k for k in response.headers.get(FORGOTTEN_HEADER, "").split(",") if k]
    return Answer(tasks, forgotten, int(header) if header.isdigit() else None)


class Watcher:
    """One thread per worker keeping :class:`Reports` current."""

    def __init__(
        self,
        name: str,
        client: WorkerClient,
        reports: Reports,
        on_change: Callable[[str, set[str], bool], None],
        interval: float,
        ready: Callable[[str, list[Task]], bool] | None = None,
    ) -> None:
        self.name, self.client, self.reports = name, client, reports
        self.on_change, self.interval = on_change, interval
        self.ready = ready  # may what was reported be acknowledged? (outputs kept first)
        self._ack = True
        self._index = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    @property
    def index(self) -> int:
        """The worker's index its list is known up to (0: the next fetch is a whole list)."""
        return self._index

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def once(self, wait: float = 0.0) -> bool:
        """Fetch once: the whole list (``wait`` 0), or the changes, blocking up to
        ``wait`` for some. False when it failed (the next fetch is a whole list)."""
        if self._stop.is_set():
            return False  # closed: this worker is not watched any more
        asked = self._index if wait else 0
        try:
            answer = fetch(self.client, asked, wait, self._ack)
        except Gone:  # it restarted, or forgot what we missed: list it all again now
            self._index = 0
            return self.once(0.0)
        except (CubeError, ValueError) as exc:
            log.debug("cannot list the tasks of %s: %s", self.name, exc)
            self._index = 0
            return False
        if asked and (answer.index is None or answer.index < asked):
            self._index = 0  # it restarted with an older clock: start over with a list
            return True
        self._index = answer.index or 0
        if asked:
            changed, first = self.reports.merge(self.name, answer.tasks, answer.forgotten), False
        else:
            changed, first = self.reports.replace(self.name, answer.tasks)
        if changed or first:
            self.on_change(self.name, changed, first)
        if self.ready is not None:
            self._ack = self.ready(self.name, answer.tasks)
        return True

    def look(self, wait: float) -> bool:
        """One fetch as the watch's loop takes it: a failure of any kind is logged, and
        the next fetch lists everything again (the watch of a worker must outlive any
        one answer)."""
        try:
            return self.once(wait)
        except Exception:
            log.exception("watching %s failed; listing it again shortly", self.name)
            self._index = 0
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            asked, began = self._index, time.monotonic()
            ok = self.look(WATCH_WAIT if asked else 0.0)
            early = asked and self._index == asked and time.monotonic() - began < WATCH_WAIT / 2
            if not ok or not self._index or early:  # no watch here, no answer, or a worker
                self._stop.wait(self.interval)  # answering at once as it stops: ask later
