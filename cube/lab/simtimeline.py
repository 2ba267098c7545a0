"""A simulation run as a timeline, and what it did wrong.

The simulator (:mod:`cube.sim`) records every run of every task on a node. Drawn as a
:class:`~cube.lab.timeline.Timeline` (a band per node, a bar per run, the runs a node
failure cut short in red, each outage shaded) it shows a scheduler's habits at a
glance: packing fills a few nodes, spreading paints them all. :func:`violations` finds
what a scheduler must never do: start a task on a node that is down, or promise a node
more cores or memory than it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cube.lab.timeline import Fault, Span, Timeline
from cube.node import NodeTable
from cube.sim import Outage, Workload


def sim_timeline(result: Any, outages: Sequence[Outage], title: str = "") -> Timeline:
    """Each node's runs, in as many rows (slots) as it ran tasks at once."""
    timeline = Timeline(title, origin=0.0, row_labels=False)
    names = result.node_names
    free_at: dict[int, list[float]] = {}
    for run in np.sort(result.placements, order="start"):
        node, start, end = int(run["node"]), float(run["start"]), float(run["end"])
        slots = free_at.setdefault(node, [])
        slot = next((i for i, t in enumerate(slots) if t <= start), len(slots))
        if slot == len(slots):
            slots.append(end)
        slots[slot] = end
        state = "Running" if run["done"] else "cut short"
        timeline.spans.append(Span(names[node], f"slot {slot}", state, start, end))
    for outage in outages:
        end = outage.back if outage.back is not None else max(s.end for s in timeline.spans)
        timeline.faults.append(
            Fault(f"{names[outage.node]} down", outage.at, end, names[outage.node])
        )
    return timeline


def violations(
    result: Any, work: Workload, nodes: NodeTable, outages: Sequence[Outage]
) -> list[str]:
    """Starts on a node that was down, and moments a node held more than it has."""
    found = []
    names = result.node_names
    for run in result.placements:
        node, start = int(run["node"]), float(run["start"])
        for outage in outages:
            back = outage.back if outage.back is not None else float("inf")
            if outage.node == node and outage.at <= start < back:
                found.append(
                    f"task {int(run['task'])} was started on {names[node]} at "
                    f"t={start:.0f} s, while {names[node]} was down"
                )
                break
    for node in range(len(nodes)):
        over = _over(result.placements, work, node, nodes)
        if over:
            found.append(f"{names[node]} was promised {over}")
    return found


def _over(placements: np.ndarray, work: Workload, node: int, nodes: NodeTable) -> str:
    """The first excess on ``node``, in words ("" when it never held too much)."""
    runs = placements[placements["node"] == node]
    events = sorted(
        [(float(r["start"]), 1, int(r["task"])) for r in runs]
        + [(float(r["end"]), -1, int(r["task"])) for r in runs],
        key=lambda e: (e[0], e[1]),
    )
    cpu = memory = 0.0
    for at, sign, task in events:
        cpu += sign * float(work.cpu[task])
        memory += sign * float(work.memory[task])
        if cpu > nodes.cores[node] + 1e-6:
            return f"{cpu:g} of its {nodes.cores[node]:g} cores at t={at:.0f} s"
        if memory > nodes.memory[node]:
            gib, has = memory / 2**30, nodes.memory[node] / 2**30
            return f"{gib:.1f} GiB of its {has:.0f} GiB of memory at t={at:.0f} s"
    return ""
