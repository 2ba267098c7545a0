"""Fast, exact E-PVM and best-fit placement (see :mod:`cube.sim.placement`).

Both scores are a sum of terms, each a per-node factor (a power of the node's use) times
a per-task factor (a power of what the task adds); see their docstrings in
:mod:`cube.scheduler`. Keeping the per-node factors, updated only for the node that
changed, makes a decision a multiply-add over the table and an ``argmin``: a handful of
passes where the scheduler makes thirty.

The factors are computed in another order than the scheduler's, so a score may differ
from the scheduler's in its last bits. That never decides a placement: the lowest score
wins outright only when no other comes within a relative ``TIE`` of it (far wider than
any such difference); otherwise the scheduler itself decides among the close ones.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from cube.node import Demand, NodeTable
from cube.scheduler import LIEB, MAX_JOBS, BestFit, Epvm, Scheduler
from cube.sim.placement import Free, Row, ask, rows

LN_LIEB, LN10 = math.log(LIEB), math.log(10)
TIE = 1e-8  # relative; the factors are good to about 1e-15, best-fit's unclipped edge to 3e-9
FEW = 256  # close calls among more nodes than this go to the scheduler on the whole table
STAGES = ("cpu", "memory", "all")  # what E-PVM's favourites lack first, then the rest


class _Scored:
    """What FastEpvm and FastBestFit share: per-node factors (rows of ``factors``),
    scratch arrays, the decision, and handing close calls to the scheduler."""

    factors: np.ndarray

    ladders: tuple[str, ...] = ()  # penalty rows by resource (cube.sim.ladder)

    def __init__(self, scheduler: Scheduler, nodes: NodeTable) -> None:
        self.scheduler, self.nodes = scheduler, nodes
        self.free = Free(nodes, ladders=self.ladders)
        self.judge = type(scheduler)()  # decides close calls on a few rows
        self.cores, self.cores_of = _sizes(nodes.cores, 1e-9)
        self.memory, self.memory_of = _sizes(nodes.memory, 1.0)
        n = len(nodes)
        self.score, self.term = np.empty(n), np.empty(n)
        self.size_cpu, self.size_memory = self.free.cores, self.free.memory_size
        self.load, self.memory_used = nodes.cpu_load.tolist(), self.free.memory_used
        fixed = [nodes.cores, nodes.memory, nodes.disk, nodes.cpu_load, nodes.memory_used]
        fixed.append(nodes.disk_used)
        self.kind = np.unique(np.stack(fixed, axis=1), axis=0, return_inverse=True)[1].ravel()
        self.empty = np.zeros(n, dtype=bool)  # up, and nothing promised: a fresh node
        for i in range(n):
            self.changed(i)

    def changed(self, node: int) -> None:
        row = self.free.row(node)
        self.free.update(node, row)
        self._factors(node, row)
        self.empty[node] = row.empty

    def _factors(self, i: int, row: Row) -> None:
        raise NotImplementedError

    def _use(self, i: int, row: Row) -> tuple[float, float]:
        """Node ``i``'s CPU and memory shares in use, as the schedulers compute them."""
        cpu = max(self.load[i], row.cpu / max(self.size_cpu[i], 1e-9))
        memory = max(self.memory_used[i], row.memory)
        return cpu, memory / max(self.size_memory[i], 1.0)

    def _per_size(
        self, f: Callable[[float], float], sizes: list[float], of: np.ndarray
    ) -> np.ndarray | float:
        """``f`` of each node's size: one number when all nodes are one size."""
        if len(sizes) == 1:
            return f(sizes[0])
        return np.array([f(size) for size in sizes])[of]

    def _weighted(self, weights: list[np.ndarray | float]) -> np.ndarray:
        """``self.score`` = the sum of each row of ``self.factors`` times its weight: one
        matrix-vector product when every weight is a number (all nodes one size)."""
        score = self.score
        if all(isinstance(w, float) for w in weights):
            return np.matmul(np.array(weights), self.factors, out=score)
        np.multiply(self.factors[0], weights[0], out=score)
        for row, weight in zip(self.factors[1:], weights[1:], strict=True):
            np.multiply(row, weight, out=self.term)
            score += self.term
        return score

    def decide(self, task: Demand, stages: tuple[str, ...]) -> int | None:
        """The winner, given ``self.score`` for every node, barring those without room
        in ``stages`` as needed (see :meth:`Free.lowest`)."""
        score = self.score
        w = self.free.lowest(task, score, stages)
        if w is None:
            return None
        best = float(score[w])
        margin = TIE * abs(best) + 1e-12
        score[w] = math.inf
        runner_up = float(score.min())
        score[w] = best
        if runner_up > best + margin:
            return w
        close = (score <= best + margin).nonzero()[0]
        if len(close) > FEW:
            if self._twins(close) and self.free.fits(task, int(close[0])):
                return int(close[0])  # identical rows score alike: the first wins the tie
            return ask(self.scheduler, task, self.nodes)  # as cheap as asking about `close`
        pick = ask(self.judge, task, rows(self.nodes, close))
        if pick is not None and score[close[pick]] <= best + margin / 2:
            return int(close[pick])
        return ask(self.scheduler, task, self.nodes)  # the winner may lie outside `close`

    def _twins(self, close: np.ndarray) -> bool:
        """Are the nodes ``close`` all fresh and of one kind, hence identical rows?"""
        kind = self.kind[close]
        return bool(self.empty[close].all() and (kind == kind[0]).all())


@functools.cache
def _jobs(n: int) -> float:
    """E-PVM's cost of one more task on a node running ``n``."""
    return 2 * (LIEB ** ((n + 1) / MAX_JOBS) - LIEB ** (n / MAX_JOBS))


def _sizes(capacity: np.ndarray, floor: float) -> tuple[list[float], np.ndarray]:
    """The distinct node sizes (at least ``floor``) and which one each node has."""
    values, of = np.unique(np.maximum(capacity, floor), return_inverse=True)
    return values.tolist(), of


class FastEpvm(_Scored):
    """E-PVM's cost, ``L**m * (L**dm - 1) + L**u * (L**du - 1) + jobs(n)``, with each
    node's ``L**m``, ``L**u`` and ``jobs(n)`` kept (``jobs`` is infinite on a node that
    is down, so it never wins).

    E-PVM prefers the node with the fewest tasks and the least use, which often has
    room, so the scores are first compared as they are; nodes too full for the task
    are barred only when that winner turns out not to fit."""

    ladders = ("cpu",)  # a node with few tasks but no cores left: E-PVM's usual miss

    def __init__(self, scheduler: Epvm, nodes: NodeTable) -> None:
        self.factors = np.empty((3, len(nodes)))
        self.memory_power, self.cpu_power, self.jobs = self.factors  # row views
        super().__init__(scheduler, nodes)

    def _factors(self, i: int, row: Row) -> None:
        cpu, memory = self._use(i, row)
        self.cpu_power[i] = math.exp(cpu * LN_LIEB)
        self.memory_power[i] = math.exp(memory * LN_LIEB)
        self.jobs[i] = _jobs(row.tasks) if row.up else math.inf

    def place(self, task: Demand) -> int | None:
        cpu, memory = (task.cpu if task.cpu > 0 else 1.0), task.memory
        per_memory = self._per_size(
            lambda size: math.expm1(LN_LIEB * memory / size), self.memory, self.memory_of
        )
        per_cpu = self._per_size(
            lambda size: math.expm1(LN_LIEB * cpu / size), self.cores, self.cores_of
        )
        self._weighted([per_memory, per_cpu, 1.0])
        return self.decide(task, STAGES)


class FastBestFit(_Scored):
    """Best-fit's score, ``10**-u * 10**(1 - du) + 10**-m * 10**(1 - dm)`` (each term at
    least 1), with each node's ``10**-u`` and ``10**-m`` kept (zero on a node that is
    down). Best-fit prefers the fullest node, which rarely has room, so nodes short of
    anything the task asks are always barred first.

    On a table without measured use (a simulated cluster) a term falls below 1 only on
    a node without room, or by rounding on one exactly full (by at most 3e-9, well
    inside ``TIE``), so the clipping at 1 is left out."""

    def __init__(self, scheduler: BestFit, nodes: NodeTable) -> None:
        self.factors = np.empty((2, len(nodes)))
        self.cpu_power, self.memory_power = self.factors  # row views
        # whole cores and at least a MiB keep the unclipped terms within 3e-9 of the real
        self.unmeasured = not (nodes.cpu_load.any() or nodes.memory_used.any())
        self.unmeasured &= bool(nodes.cores.min() >= 1 and nodes.memory.min() >= 1 << 20)
        super().__init__(scheduler, nodes)

    def _factors(self, i: int, row: Row) -> None:
        if not row.up:
            self.cpu_power[i] = self.memory_power[i] = 0.0
            return
        cpu, memory = self._use(i, row)
        self.cpu_power[i] = math.exp(-cpu * LN10)
        self.memory_power[i] = math.exp(-memory * LN10)

    def place(self, task: Demand) -> int | None:
        cpu, memory = task.cpu, task.memory
        per_cpu = self._per_size(
            lambda size: math.exp(LN10 * (1 - cpu / size)), self.cores, self.cores_of
        )
        per_memory = self._per_size(
            lambda size: math.exp(LN10 * (1 - memory / size)), self.memory, self.memory_of
        )
        if self.unmeasured:
            score = self._weighted([per_cpu, per_memory])
        else:
            score, term = self.score, self.term
            np.maximum(np.multiply(self.cpu_power, per_cpu, out=score), 1, out=score)
            np.maximum(np.multiply(self.memory_power, per_memory, out=term), 1, out=term)
            score += term
        self.free.bar(task, score, ("cpu", "memory", "disk"))
        return self.decide(task, ())
