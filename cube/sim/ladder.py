"""Penalty rows on a ladder of sizes, so that barring nodes short of room is one addition.

For each rung of a ladder (a quarter of a core, then twice that, and so on), a row holds
``BARRED`` for every node with less free than the rung and 0 for the others; a node's
entries change only when its free amount crosses a rung. A task that asks for ``want``
adds the row of the highest rung at or below ``want``: every node it bars surely lacks
room, and few that lack room slip through (those between the rung and ``want``;
:meth:`cube.sim.placement.Free.lowest` bars them exactly if one of them comes out on
top). That costs one pass over the table instead of four.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

BARRED = 1e300  # added to the score of a node that cannot take the task
GIB = 1 << 30


def rungs(lowest: float, highest: float) -> tuple[float, ...]:
    """Sizes from ``lowest`` to ``highest``, each twice the one below (few rows keep
    the ladder small enough to stay in the processor's cache)."""
    count = math.ceil(math.log2(highest / lowest)) + 1
    return tuple(lowest * 2**k for k in range(count))


CPU_RUNGS = rungs(0.25, 128)  # cores
MEMORY_RUNGS = rungs(GIB / 8, 4096 * GIB)  # bytes


class Ladder:
    """The penalty rows of one resource, for every node."""

    def __init__(self, steps: tuple[float, ...], free: np.ndarray) -> None:
        self.steps = steps
        self.rows = np.full((len(steps), len(free)), BARRED)
        self.level = [0] * len(free)  # how many rungs each node reaches
        for i, amount in enumerate(free.tolist()):
            self.update(i, amount)

    def update(self, i: int, free: float) -> None:
        """Node ``i`` now has ``free`` of the resource."""
        level, old = bisect_right(self.steps, free), self.level[i]
        if level > old:
            self.rows[old:level, i] = 0.0
        elif level < old:
            self.rows[level:old, i] = BARRED
        self.level[i] = level

    def row(self, want: float) -> np.ndarray | None:
        """The row to add for a task that asks ``want``, or None below the first rung."""
        k = bisect_right(self.steps, want) - 1
        return self.rows[k] if k >= 0 else None
