"""What the manager found out about a task that neither its record nor any worker's list
says, kept in a store so that a manager started again (or a new leader) knows it too:

- **its health**: the latest failed health check of the task's current order. Without
  it, a manager started again would leave an unhealthy task running until its first
  health round, up to ``--health-interval`` later.
- **its refusals**: each worker that refused the task, and what it said (it has no such
  image, say). Without them, a task would be sent once more to a worker that cannot run
  it after every restart.

Both change rarely (a verdict that changes, a refusal), so each change is one write. A
problem names the generation it was found at: a new order starts with its health
unknown, without a write to say so. A write that fails (a full disk, etcd away) keeps
what was found in memory and says so in the log: the next round finds it again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cube.store import Store, StoreFailed
from cube.task import Task, clip_reason

log = logging.getLogger(__name__)


class Findings:
    """Task ID -> its latest health problem and the workers that refused it."""

    def __init__(self, store: Store[Any]) -> None:
        self.store = store
        self._found: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.load()

    def load(self) -> None:
        """Read every finding back (a manager starting, or taking office)."""
        found = {key: value for key, value in self.store.items() if isinstance(value, dict)}
        with self._lock:
            self._found = found

    def problem(self, task: Task) -> str:
        """The task's failed health check at its current generation ("" when healthy or
        not checked yet)."""
        with self._lock:
            found = self._found.get(str(task.id), {})
        if found.get("Generation") != task.generation:
            return ""
        return str(found.get("Problem", ""))

    def set_problem(self, task: Task, problem: str) -> bool:
        """Keep the latest verdict of ``task``'s health; True when it changed."""
        if self.problem(task) == problem:
            return False
        self._change(str(task.id), Problem=problem, Generation=task.generation)
        return True

    def refusals(self, task_id: str) -> dict[str, str]:
        """Worker -> what it said when it refused the task."""
        with self._lock:
            return dict(self._found.get(task_id, {}).get("Refused", {}))

    def refuse(self, task_id: str, worker: str, why: str) -> None:
        refused = self.refusals(task_id) | {worker: clip_reason(why)[:500]}
        self._change(task_id, Refused=refused)

    def forget(self, task_id: str) -> None:
        """The task is forgotten: so is everything found about it."""
        with self._lock:
            had = self._found.pop(task_id, None)
        if had is not None:
            self._write(task_id, None)

    def _change(self, task_id: str, **fields: Any) -> None:
        with self._lock:
            found = self._found[task_id] = self._found.get(task_id, {}) | fields
        self._write(task_id, found)

    def _write(self, task_id: str, found: dict[str, Any] | None) -> None:
        try:
            if found is None:
                self.store.delete(task_id)
            else:
                self.store.put(task_id, found)
        except KeyError:
            pass  # nothing was stored for it
        except (OSError, StoreFailed) as exc:  # a full disk, etcd away, no longer leading
            log.warning("kept what was found of task %s in memory only: %s", task_id, exc)
