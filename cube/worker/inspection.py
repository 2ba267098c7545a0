"""The inspection pass: how a worker notices a copy that died behind its back.

Every ``inspect_interval`` seconds the worker's loop asks the runtime about each task
recorded Running that no order is being carried out for. A copy that is gone is recorded
Failed with the runtime's reason, and the manager, which watches the worker's task list,
decides what to do about it. A runtime that cannot be asked fails nothing (the copy may
well be running): the record only says why it could not be inspected. This is not
"reconcile": in Cube that word is the manager's alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cube.runtime import RuntimeUnavailable
from cube.task import State, Task, clip_reason
from cube.worker import orders

if TYPE_CHECKING:
    from cube.worker.worker import Worker

log = logging.getLogger(__name__)


def inspect_running(worker: Worker) -> None:
    """Inspect every running task not being worked on; one bad record never stops
    the pass."""
    for task_id in worker.records.ids(State.Running):
        task = worker.records.get(task_id)
        if task is not None and not worker.timers.busy(task_id):
            worker._guard(_inspect_one, worker, task)


def _inspect_one(worker: Worker, task: Task) -> None:
    try:
        status = worker.runtime.inspect(task.container_id)
    except RuntimeUnavailable as exc:
        reason = f"cannot inspect: {exc}"
        if task.reason != reason:
            log.warning("%s: task %s: %s", worker.name, task.id, reason)
            worker._update(task, lambda t: t.replace(reason=clip_reason(reason)))
        return
    with worker._cond:  # the runtime answered outside the lock: an order may have come
        if worker.timers.busy(str(task.id)):
            return
        current = worker.records.get(str(task.id))
        if current is None or current.state is not State.Running:
            return
        if not status.running:
            reason = status.reason or f"container is {status.state}"
            log.warning("%s: task %s (%s) Failed: %s", worker.name, task.id, task.name, reason)
            worker._save(orders.failed(current, reason))
        elif (status.host_ports and status.host_ports != current.host_ports) or current.reason:
            # running as recorded: note ports the runtime moved, drop a "cannot inspect"
            ports = status.host_ports or current.host_ports
            worker._save(current.replace(host_ports=ports, reason=""))
