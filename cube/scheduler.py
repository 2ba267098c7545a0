"""Schedulers: which node should run this task?

Every scheduler answers in the book's three steps, each working on all nodes at once
(numpy arrays from a :class:`~cube.node.NodeTable`), so the same objects serve the live
manager (three nodes) and the simulator (thousands):

1. ``select_candidates(task, nodes)`` - indices of nodes that are up and have room;
2. ``score(task, nodes, candidates)`` - one number per candidate, **lower is better**;
3. ``pick(scores, candidates)`` - the winner (ties go to the lower index).

What "has room" means is the same for all of them: the node is up, and after placing
the task, neither the cores nor the memory nor the disk promised to tasks exceeds the
node's capacity, and the task's memory and disk fit in what is measured free. (The book
checked disk only, and let nodes it could not reach win.)

- :class:`RoundRobin` takes candidates in turn.
- :class:`Greedy` takes the least-loaded CPU.
- :class:`Epvm` is the book's E-PVM (Amir et al.'s opportunity cost): the marginal cost
  of adding the task to each node, with cost growing exponentially (base LIEB) in
  memory use, CPU use and job count. Unlike the book, the CPU term really uses load.
- :class:`BestFit` packs tasks tightly, like Nomad's bin-packing score, keeping whole
  nodes free for large tasks.

:class:`Epvm` and :class:`BestFit` remember per-node values between calls (what only
changes when a node's load does), which makes scoring thousands of nodes in the
simulator several times faster; like :class:`RoundRobin`'s turn, that state means one
instance serves one caller at a time (the manager decides under its lock).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cube.feasibility import explain, fits
from cube.node import Demand, NodeTable

LIEB = 1.53960071783900203869  # Lieb's square ice constant, as in the book
MAX_JOBS = 4.0


class Scheduler(Protocol):
    name: str

    def select_candidates(self, task: Demand, nodes: NodeTable) -> np.ndarray: ...

    def score(self, task: Demand, nodes: NodeTable, candidates: np.ndarray) -> np.ndarray: ...

    def pick(self, scores: np.ndarray, candidates: np.ndarray) -> int: ...


@dataclass(frozen=True)
class Placement:
    """Where a task goes (``index`` into the table, ``None`` when nowhere) and why not;
    ``possible`` is False when no node could ever run it (see :mod:`cube.feasibility`)."""

    index: int | None
    reason: str = ""
    possible: bool = True


def _only(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``values`` of the candidates; the array itself when every node is one (the usual
    case on a cluster with room, where copying thousands of scores would be waste)."""
    return values if len(candidates) == len(values) else values[candidates]


class _Powers:
    """``base ** x`` for a whole table, remembering each node's last answer.

    Between two decisions only the nodes that gained or lost a task change, so
    recomputing just those skips most of the exponentials, which dominate scoring
    thousands of nodes. The returned array is shared: read it, never write to it."""

    def __init__(self, base: float) -> None:
        self.log_base = math.log(base)
        self.x = np.empty(0)
        self.value = np.empty(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.x.shape != x.shape:
            self.x, self.value = np.full(x.shape, np.nan), np.empty(x.shape)
        stale = (self.x != x).nonzero()[0]
        if len(stale):
            self.x[stale] = x[stale]
            self.value[stale] = np.exp(x[stale] * self.log_base)
        return self.value


class _Sizes:
    """A table's capacities, at least ``floor`` (never dividing by zero), with their
    distinct values remembered until the capacities change.

    A cluster has a few node sizes, so a per-task exponential is taken once per size
    (:meth:`each`) instead of once per node, and only once on a homogeneous cluster."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.seen = np.empty(0)
        self.distinct = np.empty(0)
        self.inverse = np.empty(0, dtype=np.intp)
        self.floored: np.ndarray | float = self.distinct

    def of(self, values: np.ndarray) -> _Sizes:
        """Itself, brought up to date with ``values`` (a cheap check when unchanged)."""
        if self.seen.shape != values.shape or not (self.seen == values).all():
            self.seen = values.copy()
            distinct, self.inverse = np.unique(values, return_inverse=True)
            self.distinct = np.maximum(distinct, self.floor)
            self.floored = self.each(lambda size: size)
        return self

    def each(self, f: Callable[[Any], Any]) -> np.ndarray | float:
        """``f`` of every node's capacity, computed once per distinct capacity (on a plain
        float when there is just one: numpy's overhead would dwarf the arithmetic)."""
        if len(self.distinct) == 1:
            return float(f(float(self.distinct[0])))
        return f(self.distinct)[self.inverse]


class _FitFilter:
    """The candidate step and the pick step every scheduler here shares."""

    name = "base"

    def select_candidates(self, task: Demand, nodes: NodeTable) -> np.ndarray:
        return fits(task, nodes).nonzero()[0]

    def pick(self, scores: np.ndarray, candidates: np.ndarray) -> int:
        return int(candidates[int(np.argmin(scores))])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RoundRobin(_FitFilter):
    """Each task goes to the next candidate after the previous pick, wrapping around.

    It keeps one piece of state, the last node picked, as the book's did; unlike the
    book's it skips nodes that are down or full instead of sending work to them."""

    name = "roundrobin"

    def __init__(self) -> None:
        self.last = -1

    def score(self, task: Demand, nodes: NodeTable, candidates: np.ndarray) -> np.ndarray:
        later = candidates > self.last
        turn = int(np.argmax(later)) if later.any() else 0
        scores = np.ones(len(candidates))
        scores[turn] = 0.1
        return scores

    def pick(self, scores: np.ndarray, candidates: np.ndarray) -> int:
        self.last = super().pick(scores, candidates)
        return self.last


class Greedy(_FitFilter):
    """The candidate whose CPU is least busy (measured load or promised cores)."""

    name = "greedy"

    def score(self, task: Demand, nodes: NodeTable, candidates: np.ndarray) -> np.ndarray:
        return _only(nodes.cpu_utilisation(), candidates)


class Epvm(_FitFilter):
    """Enhanced PVM: the marginal opportunity cost of adding the task to each node.

    For a node running ``n`` tasks, with CPU share ``u`` and memory share ``m`` in use
    (the larger of measured and promised), and the task adding ``du`` and ``dm``::

        cost = LIEB**(m+dm) - LIEB**m  +  LIEB**(u+du) - LIEB**u
             + 2 * (LIEB**((n+1)/MAX_JOBS) - LIEB**(n/MAX_JOBS))

    A task that asks for no CPU is counted as one core's worth of a share of the node
    (``1/cores``), since it will use some. In the book the two CPU terms cancelled, so
    load never mattered.

    It is computed as ``LIEB**m * (LIEB**dm - 1) + ...``: ``LIEB**m`` depends only on
    the node, so it is remembered between decisions (see :class:`_Powers`)."""

    name = "epvm"

    def __init__(self) -> None:
        self._cpu, self._memory = _Powers(LIEB), _Powers(LIEB)
        self._cores, self._memory_sizes = _Sizes(1e-9), _Sizes(1.0)
        self._jobs = np.empty(0)

    def score(self, task: Demand, nodes: NodeTable, candidates: np.ndarray) -> np.ndarray:
        cores, memory = self._cores.of(nodes.cores), self._memory_sizes.of(nodes.memory)
        cpu = task.cpu if task.cpu > 0 else 1.0
        cost = self._memory(nodes.memory_in_use() / memory.floored)
        cost = cost * memory.each(lambda size: np.expm1(math.log(LIEB) * task.memory / size))
        cost += self._cpu(nodes.cpu_utilisation()) * cores.each(
            lambda size: np.expm1(math.log(LIEB) * cpu / size)
        )
        cost += self._job_costs(nodes.task_count)
        return _only(cost, candidates)

    def _job_costs(self, n: np.ndarray) -> np.ndarray:
        """``2 * (LIEB**((n+1)/MAX_JOBS) - LIEB**(n/MAX_JOBS))``, looked up by job count."""
        if len(self._jobs) <= n.max(initial=0) + 1:
            k = np.arange(2 * int(n.max(initial=0)) + 16)
            self._jobs = 2 * (LIEB ** ((k + 1) / MAX_JOBS) - LIEB ** (k / MAX_JOBS))
        return self._jobs[n]


class BestFit(_FitFilter):
    """Bin packing: prefer the node the task fills most (Nomad's fit score).

    Score ``10**free_cpu + 10**free_memory`` after placement, where ``free_*`` is the
    share left free (0..1); 2 is a perfectly full node, 20 an empty one.

    ``10**(1 - used - task)`` is computed as ``10**-used * 10**(1 - task)``: the first
    factor depends only on the node, so it is remembered between decisions."""

    name = "bestfit"

    def __init__(self) -> None:
        self._cpu, self._memory = _Powers(0.1), _Powers(0.1)
        self._cores, self._memory_sizes = _Sizes(1e-9), _Sizes(1.0)

    def score(self, task: Demand, nodes: NodeTable, candidates: np.ndarray) -> np.ndarray:
        cores, memory = self._cores.of(nodes.cores), self._memory_sizes.of(nodes.memory)
        ln10 = math.log(10)
        cpu = self._cpu(nodes.cpu_utilisation())
        cpu = cpu * cores.each(lambda size: np.exp(ln10 * (1 - task.cpu / size)))
        mem = self._memory(nodes.memory_in_use() / memory.floored)
        mem = mem * memory.each(lambda size: np.exp(ln10 * (1 - task.memory / size)))
        # free shares never exceed 1 (nothing is negative), so only the floor needs clipping
        score = np.maximum(cpu, 1, out=cpu)
        score += np.maximum(mem, 1, out=mem)
        return _only(score, candidates)


SCHEDULERS: dict[str, type[_FitFilter]] = {
    cls.name: cls for cls in (RoundRobin, Epvm, Greedy, BestFit)
}


def make(name: str) -> Scheduler:
    """A scheduler by its CLI name: roundrobin, epvm, greedy or bestfit."""
    try:
        return SCHEDULERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}"
        ) from None


def place(scheduler: Scheduler, task: Demand, nodes: NodeTable) -> Placement:
    """Run the three steps; when no node qualifies, say why in words."""
    candidates = scheduler.select_candidates(task, nodes)
    if len(candidates) == 0:
        verdict = explain(task, nodes)
        return Placement(None, verdict.reason, verdict.possible)
    scores = scheduler.score(task, nodes, candidates)
    return Placement(scheduler.pick(scores, candidates))
