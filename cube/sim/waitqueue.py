"""The queue of tasks that fit nowhere yet, oldest first.

Demands are kept in arrays beside the task ids, so when capacity frees up one
vectorised comparison finds the few waiting tasks small enough to use it; with
thousands waiting, asking the scheduler about each of them would dominate a run.
"""

from __future__ import annotations

import numpy as np

GONE = np.nan  # a removed task's demand: compares false with any bound, so never found


class WaitQueue:
    """FIFO of task ids with their demands; removal from the middle leaves a hole that
    is squeezed out later, keeping positions stable during a retry pass."""

    def __init__(self, capacity: int = 1024) -> None:
        self.task = np.full(capacity, -1, dtype=np.int64)
        self.demand = np.full((3, capacity), GONE)
        self.end = 0  # slots in use, waiting or holes
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def push(self, task: int, cpu: float, memory: float, disk: float) -> None:
        if self.end == len(self.task):
            self._compact(grow=self.count * 2 > len(self.task))
        self.task[self.end] = task
        self.demand[:, self.end] = cpu, memory, disk
        self.end += 1
        self.count += 1

    def fitting(self, cpu: float, memory: float, disk: float) -> np.ndarray:
        """Positions (oldest first) of waiting tasks asking for at most this much."""
        if self.end > 2 * self.count + 64:
            self._compact(grow=False)
        n = self.end
        ok = self.demand[0, :n] <= cpu
        ok &= self.demand[1, :n] <= memory
        ok &= self.demand[2, :n] <= disk
        return ok.nonzero()[0]

    def remove(self, position: int) -> None:
        """Take the task at ``position`` out of the queue."""
        self.task[position] = -1
        self.demand[:, position] = GONE
        self.count -= 1

    def tasks(self) -> list[int]:
        """Waiting task ids, oldest first."""
        ids = self.task[: self.end]
        return ids[ids >= 0].tolist()

    def _compact(self, *, grow: bool) -> None:
        keep = (self.task[: self.end] >= 0).nonzero()[0]
        size = len(self.task) * (2 if grow else 1)
        task, demand = np.full(size, -1, dtype=np.int64), np.full((3, size), GONE)
        task[: len(keep)], demand[:, : len(keep)] = self.task[keep], self.demand[:, keep]
        self.task, self.demand, self.end = task, demand, len(keep)
