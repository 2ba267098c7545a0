"""What one simulation run produced: totals, a timeline, and every placement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cube.sim import plots
from cube.sim.metrics import Timeline

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


@dataclass(eq=False)
class Result:
    """A run of one scheduler.

    ``metrics`` holds the totals (see :mod:`cube.sim.metrics` for definitions);
    ``placements`` has one row per time a task ran on a node (``task``, ``node``,
    ``start``, ``end``, ``done`` - false when a node failure cut it short); ``wait`` is
    each task's time from arrival to first start (NaN if never placed); ``waiting``
    lists the tasks still queued at the end; ``checked`` counts the decisions of the
    fast path that were also put to the scheduler itself (all agreed, or the run would
    have stopped; see :mod:`cube.sim.placement`)."""

    scheduler: str
    metrics: dict[str, Any]
    timeline: Timeline
    placements: np.ndarray
    wait: np.ndarray
    waiting: np.ndarray
    node_names: list[str]
    checked: int = 0

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"Result({self.scheduler}: {m['finished']}/{m['tasks']} finished, "
            f"cpu {m['cpu_utilisation']:.0%}, wait p99 {m['wait_p99']:.3g} s, "
            f"{m['decisions_per_second']:,.0f} decisions/s)"
        )

    def plot_utilisation(self, ax: Axes | None = None) -> Figure:
        """CPU (solid) and memory (dashed) promised over time."""
        return plots.utilisation([self], ax)

    def plot_waits(self, ax: Axes | None = None) -> Figure:
        """The distribution (CDF) of queue waits."""
        return plots.waits([self], ax)

    def plot_heatmap(self, ax: Axes | None = None) -> Figure:
        """Each node's load (the fuller of CPU and memory) over time."""
        return plots.heatmaps([self], ax)
