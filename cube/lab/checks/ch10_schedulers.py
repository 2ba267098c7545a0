"""Chapter 10: a packing scheduler, written by the learner, on paper and at scale.

``Packer`` has all three steps. On paper the checker holds it to what every scheduler
owes (no node that is down or full among the candidates; a pick among them) and to what
packing is for: after eight one-core tasks on three empty eight-core nodes, a task
wanting a whole node must still find one; and between a node with room to spare and
one the task fills exactly, the task goes where it fits best, so the next, bigger task
still finds room. Then the simulator runs it on eight nodes and 300 tasks while the
nemesis takes a node down for a while: no task may start on it then, and no node may
be promised more than it has. The picture is that run: a band per node, a bar per task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cube import sim
from cube.lab.checks.core import Check
from cube.lab.simtimeline import sim_timeline, violations
from cube.lab.verdict import Verdict
from cube.node import NodeTable
from cube.scheduler import fits, place
from cube.task import Task

GIB = 1 << 30
HINTS = (
    (
        "packing means putting a task where it leaves the least room behind, so that big "
        "tasks still find a whole node"
    ),
    (
        "offer only nodes that are up and fit the task; score each by the room it would have "
        "left (lower is better); pick the lowest"
    ),
    (
        "select: np.flatnonzero(fits(task, nodes)); score: how much room each candidate "
        "would have left after the task (cores and memory, as shares), lower is better; "
        "pick: the candidate with the lowest score"
    ),
)


def check_packer(scheduler_class: type) -> Verdict:
    """Paper scenarios, then a simulation with an outage."""
    check = Check("10 · a packing scheduler", HINTS, "")
    result = outages = None
    with check:
        scheduler = check.call(scheduler_class, f"{scheduler_class.__name__}()")
        _duties(check, scheduler)
        _whole_node_kept(check, scheduler_class)
        _best_not_first(check, scheduler_class)
        result, work, nodes, outages = _simulate(check, scheduler_class)
        for problem in violations(result, work, nodes, outages)[:4]:
            check.fail(problem, "the candidates must be nodes that are up and have room")
    if result is not None:
        title = "your scheduler in the simulator: a bar per task, on the node it ran on"
        check.timeline = sim_timeline(result, outages, title)
    return check.verdict("it packs, keeps whole nodes free, and never oversteps")


def _table(
    free: list[float], memory_free: list[float] | None = None, up: list[bool] | None = None
) -> NodeTable:
    """Nodes of 8 cores and 32 GiB with ``free`` cores (and GiB) left."""
    names = [f"n{i}" for i in range(len(free))]
    table = NodeTable.build(names, cores=8, memory=32 * GIB, disk=100 * GIB, up=up or True)
    table.cpu_allocated[:] = [8 - f for f in free]
    if memory_free is not None:
        table.memory_allocated[:] = [int((32 - m) * GIB) for m in memory_free]
    return table


def _duties(check: Check, scheduler: Any) -> None:
    """What every scheduler owes: only nodes that are up and have room; a pick among them."""
    task = Task(name="t", image="cube/echo", cpu=2)
    nodes = _table([8, 8, 1, 8], up=[False, True, True, True])
    candidates = np.asarray(
        check.call(scheduler.select_candidates, "select_candidates", task, nodes)
    )
    wrong = sorted(set(candidates.tolist()) - set(np.flatnonzero(fits(task, nodes)).tolist()))
    if wrong:
        why = {0: "n0 is down", 2: "n2 has 1 core free, the task wants 2"}
        check.fail("select_candidates offered " + ", ".join(why.get(i, f"n{i}") for i in wrong))
    if not len(candidates):
        check.stop("select_candidates offered nothing, though n1 and n3 are up and empty")
    scores = check.call(scheduler.score, "score", task, nodes, candidates)
    check.require(len(scores) == len(candidates), "score must return one number per candidate")
    picked = check.call(scheduler.pick, "pick", np.asarray(scores), candidates)
    if int(picked) not in candidates.tolist():
        check.fail(
            f"pick returned {picked}, which is not one of the candidates "
            f"{candidates.tolist()}: return a node index from candidates"
        )


def _run(scheduler: Any, nodes: NodeTable, tasks: list[Task]) -> list[int | None]:
    out = []
    for task in tasks:
        spot = place(scheduler, task, nodes).index
        if spot is not None:
            nodes.allocate(spot, task)
        out.append(spot)
    return out


def _whole_node_kept(check: Check, scheduler_class: type) -> None:
    nodes = _table([8, 8, 8])
    small = [Task(name=f"s{i}", image="cube/echo", cpu=1) for i in range(8)]
    spots = check.call(_run, "your scheduler", scheduler_class(), nodes, small)
    big = Task(name="big", image="cube/echo", cpu=8)
    if check.call(_run, "your scheduler", scheduler_class(), nodes, [big])[0] is None:
        spread = [spots.count(i) for i in range(3)]
        check.fail(
            f"eight 1-core tasks on three empty 8-core nodes went {spread[0]}, "
            f"{spread[1]}, {spread[2]}: then an 8-core task found no node with room; "
            "packing fills one node before starting the next"
        )


def _best_not_first(check: Check, scheduler_class: type) -> None:
    for what, free, memory, first, then in [
        (
            "cores",
            [6, 2],
            None,
            Task(name="two", image="x", cpu=2),
            Task(name="six", image="x", cpu=6),
        ),
        (
            "memory",
            [8, 8],
            [20, 4],
            Task(name="m4", image="x", memory=4 * GIB),
            Task(name="m20", image="x", memory=20 * GIB),
        ),
    ]:
        nodes = _table(free, memory)
        spots = check.call(_run, "your scheduler", scheduler_class(), nodes, [first, then])
        if spots[1] is None:
            check.fail(
                f"{what}: n0 had room to spare, n1 just enough for the first task; you put "
                f"it on n{spots[0]}, so the bigger one after it found no room: put a task "
                "where it fills the most"
            )


def _simulate(check: Check, scheduler_class: type) -> tuple[Any, Any, NodeTable, list[sim.Outage]]:
    nodes = sim.nodes(8, {sim.STANDARD: 3, sim.HIGHMEM: 1})
    work = sim.Workload.generate(300, nodes, load=0.9, seed=3, durations=sim.Lognormal(60, 0.5))
    span = float(work.arrival.max())
    outages = [sim.Outage(0, 0.3 * span, 0.6 * span)]
    result = check.call(
        sim.simulate,
        "the simulation",
        scheduler_class(),
        work,
        nodes,
        failures=outages,
        progress=False,
    )
    return result, work, nodes, outages
