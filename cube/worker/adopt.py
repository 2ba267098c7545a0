"""What a worker does when it starts: take over what its previous life left running.

The store says what each task should be; the runtime says what actually exists, each
copy labelled with its task and the order (attempt) it was started for. For each task:

- a running copy of the order the record follows is adopted (same container ID, no
  restart), whether the record says Running or still Scheduled (killed between "the
  runtime started it" and "the worker wrote that down");
- every other copy is stopped: a copy of an older order, a second copy, the copy of a
  task that is to be stopped, and anything of a task the store does not know;
- a task recorded Running with no copy left is Failed, saying so;
- whatever is still to do (a start, a stop) goes on the timer queue.

The book's worker did none of this: a restart orphaned every container it had started.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cube.runtime import Managed, RuntimeFailure, attempt_label
from cube.task import LIVE, State, Task
from cube.worker import orders

if TYPE_CHECKING:
    from cube.worker.worker import Worker

log = logging.getLogger(__name__)


def recover(worker: Worker) -> None:
    """Adopt, stop strays, fail the lost, and queue what is left (see module doc)."""
    try:
        copies: dict[str, list[Managed]] | None = {}
        for managed in worker.runtime.list_managed():
            copies.setdefault(managed.task_id, []).append(managed)  # type: ignore[union-attr]
    except RuntimeFailure as exc:
        log.warning(
            "%s: cannot list what the runtime runs (%s); adoption skipped", worker.name, exc
        )
        copies = None
    for task in worker.records.all():
        if copies is not None:
            worker._guard(_settle, worker, task, copies.pop(str(task.id), []))
        current = worker.records.get(str(task.id))
        if current is not None and orders.next_step(current) != "none":
            worker.timers.schedule(str(task.id), why="recovered")
    for task_id, strays in (copies or {}).items():
        for stray in (copy.status.container_id for copy in strays):
            log.warning("%s: stopping %s of unknown task %s", worker.name, stray, task_id)
            worker._guard(worker.runtime.stop, stray)


def _settle(worker: Worker, task: Task, copies: list[Managed]) -> None:
    keep = _keeper(task, copies)
    for copy in copies:
        if copy is not keep and (
            copy.status.running or copy.status.container_id != task.container_id
        ):
            worker._guard(worker.runtime.stop, copy.status.container_id)
    if keep is not None:
        status = keep.status
        log.info("%s: re-adopted task %s (%s)", worker.name, task.id, status.container_id)
        worker._save(
            orders.started(task, status.container_id, status.host_ports or task.host_ports)
        )
    elif task.state is State.Running and task.desired is State.Running:
        worker._save(
            orders.failed(task, "its container or process was gone when the worker restarted")
        )


def _keeper(task: Task, copies: list[Managed]) -> Managed | None:
    """The running copy to adopt, if the task is to run: one of the order the record
    follows (or unlabelled, from an older Cube), preferring the one it names."""
    if task.desired is not State.Running or task.state not in LIVE:
        return None
    label = attempt_label(task)
    running = [c for c in copies if c.status.running and c.attempt in (label, "")]
    running.sort(key=lambda c: c.status.container_id != task.container_id)
    return running[0] if running else None
