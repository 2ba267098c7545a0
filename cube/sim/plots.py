"""Figures for simulation results (matplotlib, from the ``lab`` extra, loaded on use).

Each function takes one or more :class:`~cube.sim.result.Result` and returns the
matplotlib Figure, drawing into ``ax`` when given one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cube.sim.result import Result


def utilisation(results: Sequence[Result], ax: Axes | None = None) -> Figure:
    """CPU (solid) and memory (dashed) share promised over time, a colour per scheduler."""
    fig, ax = _axes(ax)
    for k, result in enumerate(results):
        t = result.timeline
        colour = f"C{k}"
        ax.plot(t.time, t.cpu, color=colour, label=f"{result.scheduler} cpu")
        ax.plot(t.time, t.memory, color=colour, linestyle="--", label=f"{result.scheduler} memory")
    ax.set(xlabel="time (s)", ylabel="share of cluster promised", ylim=(0, 1.05))
    ax.set_title("Utilisation over time")
    ax.legend(loc="best", fontsize="small")
    return fig


def waits(results: Sequence[Result], ax: Axes | None = None) -> Figure:
    """The CDF of queue waits of placed tasks; the x axis is linear below one second and
    logarithmic above it, since most waits are zero and a few are very long."""
    fig, ax = _axes(ax)
    for result in results:
        wait = np.sort(result.wait[~np.isnan(result.wait)])
        share = np.arange(1, len(wait) + 1) / max(len(wait), 1)
        ax.step(wait, share, where="post", label=result.scheduler)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(xlabel="wait from arrival to start (s)", ylabel="share of placed tasks", ylim=(0, 1.02))
    ax.set_title("Queue wait distribution")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def heatmaps(results: Sequence[Result], ax: Axes | None = None) -> Figure:
    """Each node's load (the fuller of CPU and memory) over time: a panel per scheduler."""
    if ax is not None and len(results) == 1:
        fig, axes = ax.figure, [ax]
    else:
        plt = _pyplot()
        fig, grid = plt.subplots(
            1, len(results), figsize=(5 * len(results), 4), squeeze=False, sharey=True
        )
        axes = list(grid[0])
    image = None
    for panel, result in zip(axes, results, strict=True):
        t = result.timeline
        end = t.time[-1] if len(t.time) > 1 else t.time[0] + 1
        image = panel.imshow(
            t.node_load.T,
            aspect="auto",
            origin="lower",
            interpolation="nearest",
            extent=(t.time[0], end, 0, t.node_load.shape[1]),
            vmin=0,
            vmax=1,
            cmap="viridis",
        )
        panel.set(title=result.scheduler, xlabel="time (s)")
    axes[0].set_ylabel("node")
    if image is not None:
        fig.colorbar(image, ax=axes, label="load (fuller of cpu, memory)")
    return fig


def sweep(summary: Sequence[dict[str, Any]], metric: str, ax: Axes | None = None) -> Figure:
    """A sweep's ``metric`` against load: a line per scheduler, with the 95% interval
    over seeds as error bars, and a panel per cluster shape (see :mod:`cube.sim.table`)."""
    clusters = list(dict.fromkeys(row["cluster"] for row in summary))
    if ax is not None and len(clusters) == 1:
        fig, axes = ax.figure, [ax]
    else:
        fig, grid = _pyplot().subplots(
            1, len(clusters), figsize=(5 * len(clusters), 4), squeeze=False, sharey=True
        )
        axes = list(grid[0])
    loads = sorted({row["load"] for row in summary})
    step = min(np.diff(loads)) if len(loads) > 1 else 1.0
    for panel, cluster in zip(axes, clusters, strict=True):
        rows = [row for row in summary if row["cluster"] == cluster]
        schedulers = list(dict.fromkeys(row["scheduler"] for row in rows))
        for k, scheduler in enumerate(schedulers):
            mine = sorted((r for r in rows if r["scheduler"] == scheduler), key=lambda r: r["load"])
            mean = np.array([r["mean"] for r in mine])
            below = np.nan_to_num(mean - np.array([r["low"] for r in mine]))
            above = np.nan_to_num(np.array([r["high"] for r in mine]) - mean)
            nudge = (k - (len(schedulers) - 1) / 2) * 0.04 * step  # side by side, not on top
            panel.errorbar(
                [r["load"] + nudge for r in mine], mean, yerr=[below, above], marker="o",
                capsize=3, color=f"C{k}", label=scheduler,
            )  # fmt: skip
        panel.set(title=f"{cluster} ({rows[0]['runs']} seeds)", xlabel="load")
    axes[0].set_ylabel(f"{metric} (mean, 95% interval)")
    axes[0].legend(loc="best", fontsize="small")
    return fig


def _axes(ax: Axes | None) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    return _pyplot().subplots(figsize=(8, 4))


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("cube.sim plots need matplotlib: pip install 'cube[lab]'") from None
    return plt
