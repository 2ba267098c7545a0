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


def task_rows(
    tasks: Iterable[Task],
    name_of: Callable[[str], str] = lambda address: address,
    only: Callable[[Task], bool] = lambda task: True,
) -> list[Observation]:
    """Tasks as observations: the worker's name (``name_of`` its address), the task's
    name and its state."""
    return [
        (name_of(t.worker) if t.worker else UNPLACED, t.name, t.state.name)
        for t in tasks
        if only(t)
    ]


def of_client(
    client: Any, name_of: Callable[[str], str], only: Callable[[Task], bool] = lambda t: True
) -> Sampler:
    """A sampler asking a manager (or worker) API for its tasks."""
    return lambda: task_rows(client.tasks(), name_of, only)


def of_worker(worker: Any, lane: str, only: Callable[[Task], bool] = lambda t: True) -> Sampler:
    """A sampler reading an in-process worker's tasks (all on one lane)."""
    return lambda: [(lane, t.name, t.state.name) for t in worker.tasks() if only(t)]


def of_manager(
    manager: Any, name_of: Callable[[str], str], only: Callable[[Task], bool] = lambda t: True
) -> Sampler:
    """A sampler reading an in-process manager's tasks."""
    return lambda: task_rows(manager.list_tasks(), name_of, only)
