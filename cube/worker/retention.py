"""How long a worker remembers a finished task.

A worker that never forgets grows its task list forever: with 30,000 finished tasks a
plain ``GET /tasks`` took seconds, long enough for the manager to think the worker dead.
A worker forgets a Completed task:

- once the manager that ordered it has seen it Completed (the manager's watch
  acknowledges the index it has read up to, and the record's last change is at or
  before it; a task posted to the worker by hand, without a generation, is not the
  manager's to acknowledge), or
- ``retention`` seconds after it finished, for a worker nobody manages.

Forgetting keeps a tombstone with the task's last order (so a late, older order cannot
start it again) and the output the task printed is dropped with it (until then, its logs
outlive it: ``cube logs`` of a stopped task still shows what it printed). A Failed task
is kept: the manager decides whether to restart it, which replaces the record.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cube.clock import utcnow
from cube.runtime import RuntimeFailure
from cube.task import State

if TYPE_CHECKING:
    from cube.worker.worker import Worker

log = logging.getLogger(__name__)


def prune(worker: Worker) -> int:
    """Forget the finished tasks nobody needs any more; returns how many."""
    now = utcnow()
    records = worker.records
    gone = 0
    for task_id in records.ids(State.Completed):
        task = records.get(task_id)
        if task is None or worker.timers.busy(task_id) or task_id in worker.timers:
            continue
        ordered = task.generation > 0  # by a manager (a person's own posts carry none)
        seen = ordered and (records.changed_at(task_id) or 0) <= worker.acked
        finished = task.finish_time
        old = finished is not None and (now - finished).total_seconds() > worker.retention
        if not (seen or old):
            continue
        with worker._cond:
            current = records.get(task_id)
            if current is None or current.state is not State.Completed:
                continue
            records.forget(task_id)
        if current.container_id:
            try:
                worker.runtime.forget(current.container_id)
            except RuntimeFailure as exc:
                log.info("%s: could not drop the output of %s: %s", worker.name, task_id, exc)
        gone += 1
    if gone:
        log.info("%s: forgot %d finished task(s)", worker.name, gone)
    return gone
