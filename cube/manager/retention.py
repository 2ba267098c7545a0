"""How long the manager remembers finished tasks and the history of orders.

A manager that never forgets slows down with age: every task ever run stays in its
lists and in memory. Completed tasks are forgotten ``retention`` seconds after they
finished, or sooner, oldest first, when more than ``max_finished`` have piled up; the
history of orders keeps at most ``max_events`` events, and none older than
``retention``. Running, waiting and failed tasks are never forgotten: someone still
cares what becomes of them. (A worker forgets its own finished tasks by itself, once the
manager has seen them: :mod:`cube.worker.retention`.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cube.clock import utcnow
from cube.task import State

if TYPE_CHECKING:
    from cube.manager.manager import Manager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """How much the manager keeps (see the module doc)."""

    retention: float = 24 * 3600.0
    max_finished: int = 10_000
    max_events: int = 100_000


def prune(manager: Manager) -> int:
    """Forget what is past retention; returns how many tasks went."""
    keep = manager.retention
    now = utcnow()
    records = manager.tasks.records
    finished = [t for k in records.ids(State.Completed) if (t := records.get(k)) is not None]
    finished.sort(key=lambda t: t.finish_time or now)
    excess = len(finished) - keep.max_finished
    gone = 0
    for i, task in enumerate(finished):
        old = (now - (task.finish_time or now)).total_seconds() > keep.retention
        if not (old or i < excess) or str(task.id) in manager.tasks.timers:
            continue
        manager.forget(str(task.id))
        gone += 1
    if gone:
        log.info("forgot %d finished task(s)", gone)
    manager.tasks.history.prune(keep.max_events, keep.retention)
    return gone
