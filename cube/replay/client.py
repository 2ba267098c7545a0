"""The workload's client: it submits and stops tasks through whichever manager answers,
as a real client behind a load balancer does, and tries again as a real one should.

A call goes to the manager's own methods, as its API would make them (the API layer's
parsing is tested elsewhere; its read-your-writes step is made here too), and is
answered as the API would answer it: an error of status 500 or more means "try
again", and a retry carries the same event, so a submission whose answer was lost after
it was taken is recognised, not made twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from cube.task import State, Task, TaskEvent

if TYPE_CHECKING:
    from cube.replay.cluster import SimCluster


class Client:
    """One client of ``cluster``'s managers."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self._submissions: dict[str, UUID] = {}  # task ID -> its submission's event ID

    def submit(self, task: Task) -> bool:
        """Submit ``task``; False when no manager took it now."""
        name = self._reachable_manager()
        manager = self.cluster.managers.get(name)
        if manager is None:
            return False
        # a retry is the same event (its answer may have been lost after it was taken)
        event_id = self._submissions.setdefault(str(task.id), self._uuid())
        event = TaskEvent(id=event_id, task=task, state=State.Running)
        return self._answered(name, lambda: manager.submit(event))

    def stop(self, task_id: str) -> bool:
        """Stop a task; False when no manager took the stop now."""
        name = self._reachable_manager()
        manager = self.cluster.managers.get(name)
        if manager is None:
            return False

        def stop() -> None:
            manager.catch_up(0, task_id)  # as the API does: maybe made through another
            task = manager.get_task(task_id)
            if task.desired is State.Completed:
                return  # stopped already: a retry, the first answer lost after it was taken
            manager.stop(task_id, TaskEvent(id=self._uuid(), task=task, state=State.Completed))

        return self._answered(name, stop)

    def _uuid(self) -> UUID:
        return UUID(int=self.cluster.world.rng.getrandbits(128), version=4)

    def _reachable_manager(self) -> str:
        """The manager a call goes to (any that is up and not paused, as behind a load
        balancer; "" when there is none)."""
        c = self.cluster
        if not c.shared:
            name = c.manager_names[0]
            return name if c.acting(name) else ""
        ready = [name for name in c.manager_names if c.acting(name)]
        return c.world.rng.choice(ready) if ready else ""

    def _answered(self, name: str, call: Callable[[], object]) -> bool:
        """Make ``call`` as manager ``name``'s code; False for an error its API answers
        with a status of 500 or more (try again); anything else is a bug of the
        simulation or of Cube, and is raised."""
        c = self.cluster
        try:
            c.run_as(name, call)
        except Exception as exc:
            if getattr(exc, "http_status", 500) < 500:
                raise
            c.world.say("client", f"{name} answered an error: {exc}")
            return False
        return c.up(name)
