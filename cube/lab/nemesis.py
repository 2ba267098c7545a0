"""The nemesis: faults injected into a live LocalCluster, each marked on a timeline.

Jepsen's nemesis breaks a system on purpose while a workload runs, so a checker can
see whether it still keeps its promises. Cube's breaks the things chapter 9 lists:
it pauses a worker (SIGSTOP: alive but silent, like a hung machine), kills a worker or
a manager (SIGKILL, like a crash), and crashes one task's container or process.
Each fault lands on the checker's :class:`~cube.lab.timeline.Timeline`, so the
picture shows what was broken, where and when.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cube.cluster import LocalCluster
from cube.lab.timeline import Fault, Timeline


class Nemesis:
    def __init__(self, cluster: LocalCluster, timeline: Timeline) -> None:
        self.cluster, self.timeline = cluster, timeline

    @contextmanager
    def paused(self, name: str) -> Iterator[Fault]:
        """``name`` (a worker, or the manager) is paused for the ``with`` block."""
        fault = self.timeline.fault(f"{name} paused", lane=self._lane(name))
        self.cluster.pause(name)
        try:
            yield fault
        finally:
            self.cluster.resume(name)
            self.timeline.end(fault)

    @contextmanager
    def killed(self, name: str) -> Iterator[Fault]:
        """``name`` is killed (SIGKILL) and, after the ``with`` block, restarted."""
        fault = self.timeline.fault(f"{name} killed", lane=self._lane(name))
        self.cluster.kill(name)
        try:
            yield fault
        finally:
            self.cluster.restart(name)
            self.timeline.end(fault)

    def kill(self, name: str) -> Fault:
        """Kill ``name`` for good (the check restarts it, or the cluster's stop ends it)."""
        fault = self.timeline.fault(f"{name} killed", lane=self._lane(name))
        self.cluster.kill(name)
        return fault

    def crash(self, worker: str, container_id: str, task: str) -> Fault:
        """Kill one task's container or process on ``worker``, as a crash would."""
        fault = self.timeline.fault("crash", lane=worker, row=task, instant=True)
        self.cluster.crash_container(worker, container_id)
        return fault

    def _lane(self, name: str) -> str | None:
        """A worker's lane; the whole cluster for its one manager (one of several
        managers has a lane of its own)."""
        return None if name == "manager" and len(self.cluster.managers) == 1 else name
