"""Sending orders: what the control loop decided, carried to the workers.

An order is sent and forgotten: the worker's answer is not taken for what happened (its
watch says that, in order). Only what the answer teaches is kept: a worker that cannot
run a task says so once (the task then goes elsewhere), a stop of a copy the worker no
longer has is done, and a worker that follows a newer leader proves this one deposed.
Each returns whether the task is worth another look now.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from cube import faults
from cube.client import BadRequest, Conflict, CubeError, DeposedLeader, NotFound, Unreachable
from cube.manager.reconcile import Action, Post, Stop
from cube.task import State, TaskEvent

if TYPE_CHECKING:
    from cube.manager.leadership import Leadership
    from cube.manager.nodes import Nodes
    from cube.manager.observe import Reports
    from cube.manager.tasks import Tasks

log = logging.getLogger(__name__)


class Orders:
    """Carries the control loop's orders to the workers, and hears what they refuse."""

    def __init__(
        self,
        tasks: Tasks,
        nodes: Nodes,
        reports: Reports,
        leadership: Leadership | None,
    ) -> None:
        self.tasks, self.nodes, self.reports = tasks, nodes, reports
        self.leadership = leadership
        self._deposed: set[tuple[str, int]] = set()  # (worker, epoch) already warned of
        self._deposed_lock = threading.Lock()

    def send(self, action: Action) -> bool:
        """Carry out one order; True when what it learned is worth another look now."""
        client = self.nodes.clients.get(action.worker)
        if client is None or not self.tasks.acting():  # a leader that lost its lease: not any more
            return False
        self.tasks.durable()  # the decision the order follows from, first
        faults.point("manager-sending")  # past the check: only the worker's fence is left
        if isinstance(action, Post):
            return self._post(client, action)
        return self._stop(client, action)

    def _post(self, client: Any, action: Post) -> bool:
        task = action.task
        try:
            client.submit(TaskEvent(task=task, state=State.Running))
        except Unreachable as exc:
            log.info("cannot reach %s to send task %s (%s)", action.worker, task.id, exc.message)
            return False
        except DeposedLeader as exc:
            return self.deposed_by(action.worker, exc)
        except (BadRequest, Conflict) as exc:
            if "older than" in exc.message:
                return False  # it follows a newer order: its list will say which
            log.warning("worker %s refused task %s: %s", action.worker, task.id, exc.message)
            self.tasks.findings.refuse(str(task.id), action.worker, exc.message)
            return True
        except CubeError as exc:
            log.warning("worker %s failed to take task %s: %s", action.worker, task.id, exc)
            return False
        # What the worker answers is not taken in: its watch may have said more already
        # (the task started while the answer travelled), and only the watch keeps order.
        log.info("task %s (%s) sent to %s", task.id, task.name, action.worker)
        return False

    def _stop(self, client: Any, action: Stop) -> bool:
        try:
            client.stop(action.task_id, action.generation)
        except NotFound:
            self.reports.drop(action.worker, action.task_id)
            return True
        except DeposedLeader as exc:
            return self.deposed_by(action.worker, exc)
        except Conflict:
            return False  # already completed there, or a newer order holds
        except CubeError as exc:
            log.info("cannot stop task %s on %s: %s", action.task_id, action.worker, exc.message)
            return False
        log.info("asked %s to stop task %s", action.worker, action.task_id)
        return False

    def deposed_by(self, worker: str, exc: DeposedLeader) -> bool:
        """A worker follows a newer leader: the order was not carried out. Said once per
        worker and epoch (every order after it meets the same refusal). When the worker
        proves it (the stamp it follows is signed with the managers' secret), this
        manager steps down; a claim it cannot check changes nothing."""
        leadership = self.leadership
        proven = leadership is not None and leadership.newer(exc.stamp)
        with self._deposed_lock:
            first = (worker, exc.epoch) not in self._deposed
            self._deposed.add((worker, exc.epoch))
        if first:
            log.warning(
                "worker %s follows a newer leader (epoch %s)%s",
                worker,
                exc.epoch,
                ": this manager no longer leads" if proven else ", which it cannot prove",
            )
        if proven and leadership is not None and exc.stamp is not None:
            leadership.step_down(
                f"worker {worker} follows {exc.stamp.describe()}, newer than this manager's; "
                "if no newer leader exists (etcd restored from a backup), restart that worker "
                "with --forget-leader"
            )
        return False

    def announce(self, name: str, answer: Any) -> None:
        """Tell a worker this manager leads when it follows another epoch (it came back,
        it forgot, or this term just began), so that it refuses the orders of any older
        leader from now on, even before this one has an order for it."""
        leadership = self.leadership
        stamp = leadership.stamp if leadership is not None else None
        health = answer.health if isinstance(answer.health, dict) else None
        if stamp is None or health is None or health.get("Epoch") == stamp.epoch:
            return
        client = self.nodes.clients.get(name)
        if client is None or not self.tasks.acting():
            return
        try:
            client.follow()
        except DeposedLeader as exc:
            self.deposed_by(name, exc)
        except CubeError as exc:
            log.info("cannot tell %s this manager leads: %s", name, exc.message)
