"""Watching a live system for a timeline: a thread that samples, and the samplers.

A checker wraps what it does in ``with Watch(sample, timeline):``; meanwhile a thread
calls ``sample()`` every ``interval`` seconds and feeds the answer to the timeline. A
sampler returns ``(lane, row, state)`` triples: the worker, the task, its state. A
sample that fails (the manager is down, say) is skipped: the gap shows in the picture.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cube.lab.timeline import UNPLACED, Timeline
from cube.task import Task

Observation = tuple[str, str, str]
Sampler = Callable[[], Iterable[Observation]]


class Watch:
    """Sample ``sample`` into ``timeline`` on a thread while the ``with`` block runs."""

    def __init__(self, sample: Sampler, timeline: Timeline, interval: float = 0.05) -> None:
        self.sample, self.timeline, self.interval = sample, timeline, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cube-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._once()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._once()
        self.timeline.finish()

    def now(self) -> None:
        """Sample at once (for changes made faster than the sampling interval)."""
        self._once()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._once()

    def _once(self) -> None:
        with contextlib.suppress(Exception):
            self.timeline.observe(list(self.sample()))


class Names:
    """A row name per task: its own name, or "name (2)" for a second task of that name
    (names need not be unique; a picture's rows must be)."""

    def __init__(self) -> None:
        self._by_id: dict[str, str] = {}
        self._count: dict[str, int] = {}

    def __call__(self, task: Task) -> str:
        key = str(task.id)
        if key not in self._by_id:
            n = self._count[task.name] = self._count.get(task.name, 0) + 1
            self._by_id[key] = task.name if n == 1 else f"{task.name} ({n})"
        return self._by_id[key]


def task_rows(
    tasks: Iterable[Task],
    name_of: Callable[[str], str] = lambda address: address,
    only: Callable[[Task], bool] = lambda task: True,
    rows: Callable[[Task], str] = lambda task: task.name,
) -> list[Observation]:
    """Tasks as observations: the worker's name (``name_of`` its address), the task's
    row name and its state."""
    return [
        (name_of(t.worker) if t.worker else UNPLACED, rows(t), t.state.name)
        for t in tasks
        if only(t)
    ]


def of_client(
    client: Any, name_of: Callable[[str], str], only: Callable[[Task], bool] = lambda t: True
) -> Sampler:
    """A sampler asking a manager (or worker) API for its tasks."""
    rows = Names()
    return lambda: task_rows(client.tasks(), name_of, only, rows)


def of_worker(worker: Any, lane: str, only: Callable[[Task], bool] = lambda t: True) -> Sampler:
    """A sampler reading an in-process worker's tasks (all on one lane)."""
    rows = Names()
    return lambda: [(lane, rows(t), t.state.name) for t in worker.tasks() if only(t)]


def of_manager(
    manager: Any, name_of: Callable[[str], str], only: Callable[[Task], bool] = lambda t: True
) -> Sampler:
    """A sampler reading an in-process manager's tasks."""
    rows = Names()
    return lambda: task_rows(manager.list_tasks(), name_of, only, rows)
