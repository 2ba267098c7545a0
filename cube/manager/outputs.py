"""What a finished task printed, kept by the manager for as long as it keeps the task.

A worker forgets a finished task, and the output with it, once the manager's watch has
acknowledged seeing it finish (:mod:`cube.worker.retention`); the manager keeps the task
a day longer (:mod:`cube.manager.retention`). So the manager fetches the last lines of a
task that finished *before* it acknowledges, and stores them beside the task: the watch
of a worker withholds its acknowledgement until every finished task it reported has had
its output kept (:meth:`Keeper.ready`), so nothing a task wrote is forgotten before it
was read back.

Why here, and not by having workers keep output as long as the manager keeps tasks: a
worker does not know the manager's retention, and would keep stopped containers (and
their disk) around for a day for it; a worker that is lost takes the output with it;
and with several managers on etcd, any manager can then answer ``cube logs`` of a
finished task from the shared store, even when its worker is down. The cost is bounded:
the last ``KEPT_LINES`` lines, at most ``KEPT_BYTES`` bytes, per finished task, for at
most the manager's ``--max-finished`` tasks, and forgotten with the task.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cube.client import CubeError, NotFound
from cube.etcd.errors import EtcdError
from cube.store import Store, StoreError
from cube.task import State, Task

if TYPE_CHECKING:
    from cube.manager.manager import Manager

log = logging.getLogger(__name__)

KEPT_LINES = 200  # the last lines of a finished task's output that the manager keeps
KEPT_BYTES = 16 * 1024  # and at most this much of them (etcd holds them too)


def last_lines(text: str, lines: int, limit: int = 0) -> str:
    """The last ``lines`` lines of ``text``, and of those at most ``limit`` bytes (0: no
    byte limit), cut at a line's start when one is near."""
    kept = "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""
    if limit and len(kept.encode()) > limit:
        tail = kept.encode()[-limit:].decode(errors="ignore")
        newline = tail.find("\n")
        kept = tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail
    return kept


class Outputs:
    """The kept output of finished tasks, by task ID, in one of the manager's stores."""

    def __init__(self, store: Store[Any]) -> None:
        self.store = store

    def get(self, task_id: str) -> str | None:
        try:
            return str(self.store.get(task_id)["Logs"])
        except KeyError:
            return None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.store

    def put(self, task_id: str, text: str) -> None:
        self.store.put(task_id, {"Logs": last_lines(text, KEPT_LINES, KEPT_BYTES)})

    def forget(self, task_id: str) -> None:
        with contextlib.suppress(KeyError):
            self.store.delete(task_id)


class Keeper:
    """Fetches the output of the tasks a worker reports finished, before the watch of
    that worker acknowledges them (see the module doc)."""

    def __init__(self, manager: Manager) -> None:
        self.m = manager
        self._pending: dict[str, set[str]] = {}  # worker -> finished tasks not kept yet

    def ready(self, worker: str, reported: list[Task]) -> bool:
        """Keep the output of the tasks in ``reported`` that finished on ``worker`` (and
        of those that could not be kept before); True when every one is kept, and
        flushed to the disk with what this report changed, so the next request may
        acknowledge (and the worker forget)."""
        pending = self._pending.setdefault(worker, set())
        pending |= {str(t.id) for t in reported if t.state is State.Completed and t.generation}
        ended = bool(pending) or any(t.state is State.Failed for t in reported)
        for task_id in sorted(pending):
            if not self._keep(worker, task_id):
                return False  # the worker stopped answering: the rest would wait too
            pending.discard(task_id)
        if ended:  # the worker may forget them once acknowledged
            self.m.tasks.durable()
        return True

    def _keep(self, worker: str, task_id: str) -> bool:
        """Keep one task's output; False when its worker could not be asked (try again
        before acknowledging)."""
        record = self.m.tasks.records.get(task_id)
        client = self.m.nodes.clients.get(worker)
        if record is None or record.worker != worker or client is None:
            return True  # not this manager's, or a stray copy: not its output to keep
        if task_id in self.m.outputs:
            return True
        try:
            text = client.logs(task_id, KEPT_LINES)
        except NotFound:
            return True  # the worker has forgotten it already: nothing left to keep
        except CubeError as exc:
            log.info("cannot fetch the output of %s from %s yet: %s", task_id, worker, exc)
            return False
        try:
            self.m.outputs.put(task_id, text)
        except (OSError, StoreError, EtcdError) as exc:  # a full disk: keep asking, hold the ack
            log.warning("cannot keep the output of %s yet: %s", task_id, exc)
            return False
        return True
