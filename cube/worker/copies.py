"""Starting and stopping a task's copy on the runtime, as the order its record follows says.

The worker's loop hands each due task to :meth:`~cube.worker.Worker._apply`, which calls
:func:`start` or :func:`stop` here. Both write what became of the copy through
:meth:`~cube.worker.Worker._update`, which writes nothing when a newer order replaced the
one the copy was for: that order has its own work queued, so a slow start or stop never
overwrites it, and a copy started for an order replaced meanwhile is stopped at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cube import faults
from cube.runtime import RuntimeFailure
from cube.task import Task, clip_reason, new_attempt
from cube.worker import orders

if TYPE_CHECKING:
    from cube.worker.worker import Worker

log = logging.getLogger(__name__)


def start(worker: Worker, task: Task) -> None:
    """Start a new copy for the record's order (stopping an older copy first)."""
    runtime = worker.runtime
    if task.container_id:  # the copy of an older order
        runtime.stop(task.container_id)
        runtime.forget(task.container_id)
        cleared = worker._update(task, lambda t: t.replace(container_id=""))
        if cleared is None:
            return  # a newer order came in meanwhile; it has its own start
        task = cleared
    try:
        started = runtime.start(task)
    except Exception as exc:
        if not isinstance(exc, RuntimeFailure):
            log.exception("%s: starting task %s failed unexpectedly", worker.name, task.id)
        why = str(exc) if isinstance(exc, RuntimeFailure) else f"unexpected error: {exc}"
        worker._update(task, lambda t: orders.failed(t, why))
        return
    faults.point("worker-started")
    kept = worker._update(
        task, lambda t: orders.started(t, started.container_id, started.host_ports)
    )
    if kept is None:  # a newer order came in meanwhile, and has its own copy to start
        runtime.stop(started.container_id)
        return
    log.info(
        "%s: task %s (%s) is Running as %s", worker.name, task.id, task.name, kept.container_id
    )


def stop(worker: Worker, task: Task) -> bool:
    """Stop the task's copy and record it Completed. True: try again later."""
    if task.container_id:
        try:
            worker.runtime.stop(task.container_id)
        except RuntimeFailure as exc:
            why = clip_reason(f"stop failed: {exc}")
            worker._update(task, lambda t: t.replace(reason=why))
            return True
    if worker._update(task, orders.stopped) is not None:
        log.info("%s: task %s (%s) is Completed", worker.name, task.id, task.name)
    return False


def suspend(worker: Worker, task: Task) -> None:
    """Stop the copy of a worker that is closing, and queue its task to start again as
    a new attempt when the worker does (``cube up`` does this on Ctrl-C)."""
    worker.runtime.stop(task.container_id)
    worker._save(new_attempt(task).replace(reason="suspended: its worker was stopped"))
    worker.timers.schedule(str(task.id), why="suspended")
    log.info("%s: task %s (%s) suspended until it starts again", worker.name, task.id, task.name)
