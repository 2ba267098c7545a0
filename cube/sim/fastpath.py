"""Fast, exact placement for the four built-in schedulers (see :mod:`cube.sim.placement`).

Each keeps what its scheduler's score is made of, per node, and updates it only for the
node that just changed; a decision then costs a few passes over arrays, or a look at
the next few nodes, instead of the scheduler's full pipeline.

- :class:`FastRoundRobin`: the first node after the last pick that fits, looked for a
  window at a time.
- :class:`FastGreedy`: Greedy's score (CPU use) does not depend on the task, so it is
  kept per node and a decision is an ``argmin`` over the nodes with room.
- :class:`~cube.sim.fastscore.FastEpvm` and :class:`~cube.sim.fastscore.FastBestFit`:
  per-node factors of their scores, multiplied by the task's (see that module).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

import numpy as np

from cube.node import Demand, NodeTable
from cube.scheduler import BestFit, Epvm, Greedy, RoundRobin, Scheduler
from cube.sim.fastscore import FastBestFit, FastEpvm
from cube.sim.placement import Free, Placer


class FastRoundRobin:
    """Round-robin: the next node after ``scheduler.last`` that fits, wrapping around.

    The turn is kept on the scheduler object itself, so the fast path and the scheduler
    can take turns deciding."""

    ONE_BY_ONE = 8  # the next node usually has room: look at a few before any array
    FIRST_WINDOW = 64

    def __init__(self, scheduler: RoundRobin, nodes: NodeTable) -> None:
        self.scheduler, self.nodes, self.free = scheduler, nodes, Free(nodes)

    def changed(self, node: int) -> None:
        self.free.update(node)

    def place(self, task: Demand) -> int | None:
        n, fits = len(self.nodes), self.free.fits
        start = min(self.scheduler.last + 1, n)
        near = min(start + self.ONE_BY_ONE, n)
        found = next((j for j in range(start, near) if fits(task, j)), None)
        if found is None:
            for lo, hi in _windows(near, start, n, self.FIRST_WINDOW):
                mask = self.free.mask(task, lo, hi)
                found = next((j for j in (lo + mask.nonzero()[0]).tolist() if fits(task, j)), None)
                if found is not None:
                    break
        if found is not None:
            self.scheduler.last = found
        return found


def _windows(near: int, start: int, n: int, size: int) -> Iterator[tuple[int, int]]:
    """``near..n`` then ``0..start``, in windows that double in size (most searches end
    in the first one)."""
    for begin, end in ((near, n), (0, start)):
        lo = begin
        while lo < end:
            yield lo, min(lo + size, end)
            lo, size = min(lo + size, end), size * 2


class FastGreedy:
    """Greedy: the least busy CPU that fits.

    Greedy's score, each node's CPU use, does not depend on the task, so it is kept
    per node, computed as :meth:`cube.node.NodeTable.cpu_utilisation` computes it (the
    same division and maximum, so the same bits): the scores here *are* the
    scheduler's. A decision bars the nodes surely too full, takes the lowest score
    (the first, on a tie, as ``argmin`` does), and lets :meth:`Free.fits` settle a
    winner on the edge of fitting."""

    def __init__(self, scheduler: Greedy, nodes: NodeTable) -> None:
        self.nodes, self.free = nodes, Free(nodes, ladders=("memory",))
        self.load = nodes.cpu_load.tolist()
        self.use = nodes.cpu_utilisation()
        self.score = np.empty(len(nodes))

    def changed(self, node: int) -> None:
        row = self.free.row(node)
        self.free.update(node, row)
        self.use[node] = max(self.load[node], row.cpu / max(self.free.cores[node], 1e-9))

    def place(self, task: Demand) -> int | None:
        # the least busy CPU often has room; when not, it is most often short of memory
        w = int(self.use.argmin())
        if self.nodes.up.item(w) and self.free.fits(task, w):
            return w
        np.copyto(self.score, self.use)
        return self.free.lowest(task, self.score, ("memory", "cpu", "all"))


FAST: dict[type, type] = {
    RoundRobin: FastRoundRobin,
    Greedy: FastGreedy,
    Epvm: FastEpvm,
    BestFit: FastBestFit,
}


# What the fast path reads of a node: the fit rule's resource checks and the scores.
KNOWN = frozenset(
    {
        *("names", "up", "cores", "memory", "disk", "cpu_load", "memory_used", "disk_used"),
        *("cpu_allocated", "memory_allocated", "disk_allocated", "task_count"),
    }
)


def fast_placer(scheduler: Scheduler, nodes: NodeTable) -> Placer | None:
    """The fast path for ``scheduler``, or None when the scheduler is not one of the
    built-in four (a subclass may score differently) or the table says more about its
    nodes than the fast path reads (what a node can run, say, which the fit rule may
    check): then the scheduler is asked directly."""
    cls = FAST.get(type(scheduler))
    extra = {
        f.name for f in fields(nodes) if f.name not in KNOWN and getattr(nodes, f.name) is not None
    }
    return cls(scheduler, nodes) if cls is not None and not extra else None
