"""How the engine finds a node for a task: ask the scheduler, or take the fast path.

Asking a scheduler means its three steps on the whole table: about 100 us a decision on
10,000 nodes, a third of it the fit test alone. At a million decisions that is minutes.
For the four built-in schedulers the engine can instead keep, node by node, what their
scores are made of, update it only where a node changed, and find the winner with a few
cheap passes (:mod:`cube.sim.fastpath`).

The fast path must give *exactly* the scheduler's answers, not nearly: it narrows the
field, and wherever rounding could decide between near-equal nodes, or a node sits on
the edge of fitting, it asks the scheduler (or :func:`cube.scheduler.fits`) about just
those nodes. :class:`Verified` also puts every ``every``-th decision to the scheduler
on the whole table and stops the run if the answers differ, so a fast path that fell
behind a change to :mod:`cube.scheduler` cannot go unnoticed.

The fit rule itself stays in :func:`cube.scheduler.fits`. The fast path's narrowing
(:meth:`Free.mask`, :meth:`Free.bar` and the ladders of :mod:`cube.sim.ladder`) only
ever keeps *more* nodes than fit, never fewer, and a node is taken without asking
``fits`` only when it clears every limit by a margin (``EDGE``, ``BYTE_EDGE``) far wider
than rounding. These comparisons are a second, looser statement of the fit rule, kept
here because asking ``fits`` about every node is what made a decision slow.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, NamedTuple, Protocol

import numpy as np

from cube.node import Demand, NodeTable
from cube.scheduler import Scheduler, fits
from cube.sim.ladder import BARRED, CPU_RUNGS, MEMORY_RUNGS, Ladder

EDGE = 1e-6  # cores: a node this close to fitting is decided by cube.scheduler.fits
BYTE_EDGE = 0.5  # bytes: the same for memory and disk (whole numbers of bytes, as a rule)


class Placer(Protocol):
    def place(self, task: Demand) -> int | None:
        """The node the scheduler would pick for ``task`` now, or None if none fits."""
        ...

    def changed(self, node: int) -> None:
        """``node``'s row of the table was just written (a task came, went, or it failed)."""
        ...


class PlacementMismatch(RuntimeError):
    """The fast path and the scheduler disagreed: a bug, never a matter of chance."""


class AskScheduler:
    """The scheduler's three steps on the whole table, exactly as the manager runs them."""

    def __init__(self, scheduler: Scheduler, nodes: NodeTable) -> None:
        self.scheduler, self.nodes = scheduler, nodes

    def place(self, task: Demand) -> int | None:
        return ask(self.scheduler, task, self.nodes)

    def changed(self, node: int) -> None:
        pass


def ask(scheduler: Scheduler, task: Demand, nodes: NodeTable) -> int | None:
    """Select candidates, score them, pick: the winner's index in ``nodes``, or None."""
    candidates = scheduler.select_candidates(task, nodes)
    if len(candidates) == 0:
        return None
    return scheduler.pick(scheduler.score(task, nodes, candidates), candidates)


def rows(nodes: NodeTable, index: np.ndarray) -> NodeTable:
    """A table of just the nodes ``index`` (ascending), so ties still go to the first.
    Every column comes along: arrays, per-node lists, and those the table leaves out
    (None)."""
    taken: dict[str, Any] = {}
    for name in (f.name for f in fields(nodes)):
        column = getattr(nodes, name)
        if column is None or isinstance(column, np.ndarray):
            taken[name] = column if column is None else column[index]
        else:
            taken[name] = [column[i] for i in index.tolist()]
    return type(nodes)(**taken)


class Row(NamedTuple):
    """What a node has promised to tasks (and whether it is up), as the engine left it."""

    up: bool
    cpu: float
    memory: float
    disk: float
    tasks: int

    @property
    def empty(self) -> bool:
        """Up, with nothing promised: a node as fresh as when the simulation began."""
        return self.up and not (self.tasks or self.cpu or self.memory or self.disk)


class Free:
    """What each node has free (cores, memory, disk; minus infinity on a node that is
    down), kept up to date one node at a time, and the fit questions the fast paths ask.

    Capacities and measured use never change during a simulation, so they are read
    once; only what is promised to tasks is read again when a node changes."""

    def __init__(self, nodes: NodeTable, *, ladders: tuple[str, ...] = ()) -> None:
        self.nodes = nodes
        self.cores, self.memory_size, self.disk_size = (
            nodes.cores.tolist(),
            nodes.memory.tolist(),
            nodes.disk.tolist(),
        )
        self.memory_used, self.disk_used = nodes.memory_used.tolist(), nodes.disk_used.tolist()
        n = len(nodes)
        self.cpu, self.memory, self.disk = np.empty(n), np.empty(n), np.empty(n)
        self.least_disk = math.inf
        self.ladders: dict[str, Ladder] = {}
        for i in range(n):
            self.update(i)
        self.least_disk = self._least_disk()
        # ladders cost at every change: only for the resources a placer bars most often
        rungs = {"cpu": (CPU_RUNGS, self.cpu), "memory": (MEMORY_RUNGS, self.memory)}
        self.ladders = {name: Ladder(*rungs[name]) for name in ladders}
        self._bad, self._also = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
        self._penalty = np.empty(n)

    def row(self, i: int) -> Row:
        """What node ``i`` has promised to tasks now, read once from the table."""
        t = self.nodes
        return Row(
            t.up.item(i),
            t.cpu_allocated.item(i),
            t.memory_allocated.item(i),
            t.disk_allocated.item(i),
            t.task_count.item(i),
        )

    def update(self, i: int, row: Row | None = None) -> None:
        """Node ``i`` changed; ``row`` is what :meth:`row` says, if already read."""
        up, cpu_promised, memory_promised, disk_promised, _ = row or self.row(i)
        if up:
            cpu = self.cores[i] - cpu_promised
            memory = self.memory_size[i] - max(self.memory_used[i], memory_promised)
            disk = self.disk_size[i] - max(self.disk_used[i], disk_promised)
            self.least_disk = min(self.least_disk, disk)
        else:
            cpu = memory = disk = -math.inf
        self.cpu[i], self.memory[i], self.disk[i] = cpu, memory, disk
        for name, ladder in self.ladders.items():
            ladder.update(i, cpu if name == "cpu" else memory)

    def _least_disk(self) -> float:
        """The least free disk on any node that is up (a floor: it may lag, lower)."""
        up = self.disk[self.nodes.up]
        return float(up.min()) if len(up) else math.inf

    def mask(self, task: Demand, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Nodes ``start:stop`` that might fit ``task``: every node that fits, and perhaps
        a few on the edge that do not (:meth:`fits` settles those)."""
        window = slice(start, stop)
        mask = self.nodes.up[window].copy()
        if task.cpu > 0:
            mask &= self.cpu[window] >= task.cpu - EDGE
        if task.memory > 0:
            mask &= self.memory[window] >= task.memory - BYTE_EDGE
        if task.disk > 0:
            mask &= self.disk[window] >= task.disk - BYTE_EDGE
        return mask

    def bar(self, task: Demand, score: np.ndarray, resources: tuple[str, ...]) -> None:
        """Add ``BARRED`` to the ``score`` of every node surely short of what ``task``
        asks of ``resources`` (``"cpu"``, ``"memory"``, ``"disk"``; disk is compared
        only if some node might lack it). A node that is down has no room at all."""
        barred = None
        for resource in resources:
            want = getattr(task, resource)
            if want <= 0 or (resource == "disk" and not self.short_of_disk(want)):
                continue
            free, edge = getattr(self, resource), EDGE if resource == "cpu" else BYTE_EDGE
            if barred is None:
                barred = np.less(free, want - edge, out=self._bad)
            else:
                barred |= np.less(free, want - edge, out=self._also)
        if barred is not None:
            self._add_penalty(score, barred)

    def _add_penalty(self, score: np.ndarray, barred: np.ndarray) -> None:
        np.copyto(self._penalty, barred)
        self._penalty *= BARRED
        score += self._penalty

    def lowest(self, task: Demand, score: np.ndarray, stages: tuple[str, ...]) -> int | None:
        """The node with the lowest ``score`` (the first of equals) that fits ``task``,
        or None. Each time the winner turns out not to fit, the next of ``stages`` bars
        more of the nodes without room before looking again: ``"cpu"`` and ``"memory"``
        by a ladder (:mod:`cube.sim.ladder`, one pass), then ``"all"`` exactly
        (:meth:`bar`, a few passes). In the right order (what the scheduler's favourites
        usually lack first) most decisions need one stage or none."""
        stage = 0
        while True:
            w = int(score.argmin())
            if not score[w] < BARRED:
                return None
            if self.fits(task, w):
                return w
            if not self.nodes.up.item(w):
                self._add_penalty(score, np.logical_not(self.nodes.up, out=self._bad))
            elif stage < len(stages):
                self._bar_stage(task, score, stages[stage])
                stage += 1
            else:
                score[w] = math.inf  # on the edge of fitting, and not: not this one

    def _bar_stage(self, task: Demand, score: np.ndarray, stage: str) -> None:
        if stage == "all":
            self.bar(task, score, ("cpu", "memory", "disk"))
            return
        if stage not in self.ladders:
            self.bar(task, score, ("cpu",) if stage == "cpu" else ("memory", "disk"))
            return
        want = getattr(task, stage) - (EDGE if stage == "cpu" else BYTE_EDGE)
        row = self.ladders[stage].row(want)
        if row is not None:
            score += row

    def short_of_disk(self, want: float) -> bool:
        """Might some node that is up have less than ``want`` disk free?"""
        if want - BYTE_EDGE <= self.least_disk:
            return False
        self.least_disk = self._least_disk()
        return want - BYTE_EDGE > self.least_disk

    def fits(self, task: Demand, i: int) -> bool:
        """Does ``task`` fit node ``i``? Plain comparisons when the answer is clear,
        :func:`cube.scheduler.fits` itself when the node is on the edge."""
        if not self.nodes.up.item(i):
            return False
        edge = False
        if task.cpu > 0:
            room = self.cpu.item(i) - task.cpu
            if room < -EDGE:
                return False
            edge = room <= EDGE
        if task.memory > 0:
            room = self.memory.item(i) - task.memory
            if room < -BYTE_EDGE:
                return False
            edge |= room <= BYTE_EDGE
        if task.disk > 0:
            room = self.disk.item(i) - task.disk
            if room < -BYTE_EDGE:
                return False
            edge |= room <= BYTE_EDGE
        return not edge or bool(fits(task, rows(self.nodes, np.array([i])))[0])


class Verified:
    """A fast placer whose every ``every``-th answer is compared with the scheduler's."""

    def __init__(self, fast: Placer, scheduler: Scheduler, nodes: NodeTable, every: int) -> None:
        self.fast, self.scheduler, self.nodes, self.every = fast, scheduler, nodes, every
        self.decisions = self.checked = 0
        self.changed = fast.changed  # nothing to check there: straight through

    def place(self, task: Demand) -> int | None:
        self.decisions += 1
        if self.decisions % self.every:
            return self.fast.place(task)
        state = dict(vars(self.scheduler))  # round-robin's turn must not move twice
        expected = ask(self.scheduler, task, self.nodes)
        vars(self.scheduler).update(state)
        got = self.fast.place(task)
        self.checked += 1
        if got != expected:
            raise PlacementMismatch(
                f"decision {self.decisions}: the fast path placed a task "
                f"(cpu {task.cpu}, memory {task.memory}, disk {task.disk}) on node {got}, "
                f"{self.scheduler.name} on the whole table picks {expected}; "
                "simulate(..., fast=False) runs without the fast path"
            )
        return got
