"""The queue of tasks that fit nowhere yet, oldest first.

Demands are kept in arrays beside the task ids, so when capacity frees up one
vectorised comparison finds the few waiting tasks small enough to use it; with tens of
thousands waiting, asking the scheduler about each of them would dominate a run.
"""

from __future__ import annotations

import numpy as np


class WaitQueue:
    """FIFO of task ids with their demands; removal from the middle leaves a hole that
    is squeezed out later, keeping positions stable during a retry pass."""

    def __init__(self, capacity: int = 1024) -> None:
        self.task = np.empty(capacity, dtype=np.int64)
        self.demand = np.empty((3, capacity))
        self.live = np.zeros(capacity, dtype=bool)
        self.end = 0  # slots in use, live or holes
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def push(self, task: int, cpu: float, memory: float, disk: float) -> None:
        if self.end == len(self.task):
            self._compact(grow=self.count * 2 > len(self.task))
        self.task[self.end] = task
        self.demand[:, self.end] = cpu, memory, disk
        self.live[self.end] = True
        self.end += 1
        self.count += 1

    def fitting(self, cpu: float, memory: float, disk: float) -> np.ndarray:
        """Positions (oldest first) of waiting tasks asking for at most this much."""
        if self.end > 2 * self.count + 64:
            self._compact(grow=False)
        n = self.end
        ok = self.live[:n] & (self.demand[0, :n] <= cpu)
        ok &= self.demand[1, :n] <= memory
        ok &= self.demand[2, :n] <= disk
        return np.flatnonzero(ok)

    def remove(self, position: int) -> int:
        """Take the task at ``position`` out of the queue; its id."""
        self.live[position] = False
        self.count -= 1
        return int(self.task[position])

    def tasks(self) -> list[int]:
        """Waiting task ids, oldest first."""
        return self.task[: self.end][self.live[: self.end]].tolist()

    def _compact(self, *, grow: bool) -> None:
        keep = np.flatnonzero(self.live[: self.end])
        size = len(self.task) * (2 if grow else 1)
        task, demand = np.empty(size, dtype=np.int64), np.empty((3, size))
        task[: len(keep)], demand[:, : len(keep)] = self.task[keep], self.demand[:, keep]
        self.task, self.demand = task, demand
        self.live = np.zeros(size, dtype=bool)
        self.live[: len(keep)] = True
        self.end = len(keep)
