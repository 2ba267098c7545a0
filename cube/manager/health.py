"""Health checks (the restart policy they lead to is the task's: :class:`cube.task.RestartPolicy`).

A task with a ``HealthCheck`` path is probed at ``http://<worker host>:<host port><path>``;
anything but a 2xx answer within the timeout is a failure. The book probed every 60 s
with no timeout, counted only status 200, and left a task that stayed unhealthy after
its restarts running forever. Here a failed or unhealthy task is restarted after an
exponentially growing wait, and after ``limit`` restarts it is Failed for good.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from typing import TYPE_CHECKING

import requests

from cube.task import State, Task

if TYPE_CHECKING:
    from cube.manager.network import Network
    from cube.manager.nodes import Nodes
    from cube.manager.tasks import Tasks

log = logging.getLogger(__name__)


def probe(host: str, port: int, path: str, timeout: float) -> str:
    """Probe one task; returns "" when healthy, else what went wrong."""
    url = f"http://{host}:{port}{path}"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return f"GET {url} failed: {type(exc).__name__}"
    if not 200 <= response.status_code < 300:
        return f"GET {url} answered {response.status_code}"
    return ""


class Health:
    """The health round: probes every running task that has a health check, and queues
    each task whose verdict changed (reconcile restarts an unhealthy one)."""

    def __init__(self, tasks: Tasks, nodes: Nodes, network: Network, timeout: float) -> None:
        self.tasks, self.nodes, self.network = tasks, nodes, network
        self.timeout = timeout

    def round(self, pool: Executor) -> None:
        """Probe every running task with a health check, at once; queue those whose
        verdict changed."""
        tasks = self.tasks
        with tasks.lock:
            running = (tasks.records.get(k) for k in tasks.records.ids(State.Running))
            due = [t for t in running if t is not None and _checked(t)]
        verdicts = [(t, pool.submit(self._probe, t)) for t in due]
        for task, future in verdicts:  # each verdict is of the order that was probed
            problem = future.result()
            with tasks.lock:
                if tasks.findings.set_problem(task, problem):
                    if problem:
                        log.warning("task %s is unhealthy: %s", task.id, problem)
                    tasks.timers.schedule(str(task.id), why="health")

    def _probe(self, task: Task) -> str:
        node = self.nodes.by_name.get(task.worker)
        if node is None:
            return ""
        host = node.api.split("://")[-1].rsplit(":", 1)[0]
        port = task.host_port() or 0
        return self.network.probe_task(host, port, task.health_check, self.timeout)


def _checked(task: Task) -> bool:
    """A task to probe: wanted and running, with a health check and a port to ask."""
    return (
        task.desired is State.Running
        and bool(task.health_check)
        and task.host_port() is not None
        and task.restart_at is None
    )
