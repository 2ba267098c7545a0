"""The discrete-event engine: arrivals, placements, finishes, failures, on one clock.

Each task arrives, is placed by the scheduler (the same objects the manager uses,
called through their three steps) and runs for its duration on the node it got; when
it finishes, its resources go back. A task that fits nowhere waits in a FIFO queue; a
task bigger than every node is *rejected* and never tried.

Waiting tasks are retried only after something frees capacity (a finish or a node
coming back), and only those that could fit in what was freed. This is exact, not a
heuristic: when a retry pass ends, every task still waiting fits on no node, and
until capacity frees up again nodes only fill up, so the freed nodes are the only
places a waiting task could now fit. Among simultaneous events, finishes and
recoveries come first, then the retry pass, then failures, then arrivals.
"""

from __future__ import annotations

import copy
import heapq
import math
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cube.node import NodeTable
from cube.scheduler import Scheduler, make
from cube.sim.failures import Failures, Outage
from cube.sim.fastpath import fast_placer
from cube.sim.metrics import Recorder, percentile
from cube.sim.placement import AskScheduler, Placer, Verified
from cube.sim.result import Result
from cube.sim.waitqueue import WaitQueue
from cube.sim.workload import Workload

FINISH, RECOVER, FAIL = 0, 1, 2  # event kinds, in the order they happen at one instant
SLACK = 1e-6  # CPU tolerance of the retry filter, above the schedulers' own 1e-9
PLACEMENT = np.dtype(
    [("task", np.int64), ("node", np.int64), ("start", float), ("end", float), ("done", bool)]
)


@dataclass(slots=True)
class SimTask:
    """A task's demand, in the shape schedulers read (:class:`~cube.node.Demand`)."""

    cpu: float
    memory: int
    disk: int


def simulate(
    scheduler: Scheduler | str,
    workload: Workload,
    nodes: NodeTable,
    *,
    failures: Failures | Iterable[Outage] | None = None,
    samples: int = 200,
    progress: bool | None = None,
    check: bool = False,
    fast: bool = True,
    verify: int = 500,
) -> Result:
    """Run ``workload`` on a copy of ``nodes`` with ``scheduler`` (an object or a name).

    The timeline is sampled about ``samples`` times over the workload's span (up to
    twice that if queueing or failures stretch the run). ``progress`` shows a tqdm bar
    (default: for runs of 20,000 tasks or more, when tqdm is installed). ``check``
    verifies after every placement that the node is up and within capacity. The same
    inputs give the same result, bar the wall-clock metrics in
    :data:`cube.sim.metrics.WALL_CLOCK`.

    The built-in schedulers take a fast path (``fast``) that gives the very placements
    the scheduler would, in a fraction of the time on large tables; every ``verify``-th
    decision (0: none) is also put to the scheduler itself, and a difference raises
    :class:`~cube.sim.placement.PlacementMismatch`. See :mod:`cube.sim.placement`."""
    if isinstance(scheduler, str):
        scheduler = make(scheduler)
    # a private table, so a run never changes the caller's (or the next run's) nodes
    table = copy.deepcopy(nodes)
    engine = _Engine(scheduler, workload, table, failures, samples, check)
    engine.placer = _placer(scheduler, table, fast, verify)
    wall = time.perf_counter()
    with _progress_bar(len(workload), progress) as bar:
        engine.run(bar)
    return engine.result(time.perf_counter() - wall)


def _placer(scheduler: Scheduler, nodes: NodeTable, fast: bool, verify: int) -> Placer:
    shortcut = fast_placer(scheduler, nodes) if fast else None
    if shortcut is None:
        return AskScheduler(scheduler, nodes)
    return Verified(shortcut, scheduler, nodes, verify) if verify > 0 else shortcut


class _Engine:
    def __init__(
        self,
        scheduler: Scheduler,
        workload: Workload,
        nodes: NodeTable,
        failures: Failures | Iterable[Outage] | None,
        samples: int,
        check: bool,
    ) -> None:
        self.scheduler, self.workload, self.nodes, self.check = scheduler, workload, nodes, check
        self.placer: Placer = AskScheduler(scheduler, nodes)
        n = len(workload)
        self.tasks = [
            SimTask(c, m, d)
            for c, m, d in zip(
                workload.cpu.tolist(), workload.memory.tolist(), workload.disk.tolist(), strict=True
            )
        ]
        self.duration = workload.duration.tolist()
        self.possible = _fits_some_node(workload, nodes).tolist()
        self.node_of = [-1] * n
        self.attempt = [0] * n
        self.started = [0.0] * n
        self.arrival = workload.arrival.tolist()
        self.wait = [math.nan] * n
        # which tasks run where matters only when a node can fail
        self.running_on: list[set[int]] | None = (
            [set() for _ in range(len(nodes))] if failures is not None else None
        )
        self.queue = WaitQueue()
        self.events: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.freed: set[int] = set()
        self.log = _Log()
        self.now = float(workload.arrival[0]) if n else 0.0
        self.arrived = self.running = self.rejected = self.requeued = self.decisions = 0
        self.recovering = 0
        self.random = failures if isinstance(failures, Failures) else None
        self.rng = np.random.default_rng(self.random.seed if self.random else 0)
        self._plan_failures(failures)
        span = float((workload.arrival + workload.duration).max()) - self.now if n else 0.0
        self.recorder = Recorder(
            nodes,
            start=self.now,
            interval=span / max(samples, 1) if span > 0 else 1.0,
            limit=2 * samples,
            typical_cpu=float(np.median(workload.cpu)) if n else 0.0,
            typical_memory=float(np.median(workload.memory)) if n else 0.0,
        )

    def run(self, bar: _Bar) -> None:
        arrivals, n, events = self.arrival, len(self.workload), self.events
        while True:
            if self.freed and not (events and events[0][0] == self.now and events[0][1] <= RECOVER):
                self._retry()
                continue
            if self.arrived == n and not self.running and not (len(self.queue) and self.recovering):
                break
            at = arrivals[self.arrived] if self.arrived < n else float("inf")
            if events and events[0][0] <= at:
                at, kind, _, a, b = heapq.heappop(events)
                self._advance(at)
                if kind == FINISH:
                    self._finish(a, b)
                elif kind == RECOVER:
                    self._recover(a)
                else:
                    self._fail(a)
            else:
                self._advance(at)
                self._arrive(self.arrived)
                self.arrived += 1
                bar.tick()
        self.recorder.until(self.now, self.running, len(self.queue))
        self.recorder.sample(self.running, len(self.queue))

    def _advance(self, now: float) -> None:
        if now > self.recorder.next:
            self.recorder.until(now, self.running, len(self.queue))
        self.now = now

    def _arrive(self, i: int) -> None:
        if not self.possible[i]:
            self.rejected += 1
        elif self._place(i) is None:
            task = self.tasks[i]
            self.queue.push(i, task.cpu, task.memory, task.disk)

    def _place(self, i: int) -> int | None:
        """Ask the scheduler; start the task where it says. The node, or None."""
        task, nodes = self.tasks[i], self.nodes
        self.decisions += 1
        node = self.placer.place(task)
        if node is None:
            return None
        nodes.allocate(node, task)
        self.placer.changed(node)
        if self.check:
            self._check(node)
        if self.running_on is not None:
            self.running_on[node].add(i)
        self.node_of[i], self.started[i] = node, self.now
        if math.isnan(self.wait[i]):  # first start
            self.wait[i] = self.now - self.arrival[i]
        self.running += 1
        self._push(self.now + self.duration[i], FINISH, i, self.attempt[i])
        return node

    def _finish(self, i: int, attempt: int) -> None:
        if attempt != self.attempt[i]:
            return  # this run was cut short by a node failure
        node = self.node_of[i]
        self._stop(i, node, done=True)
        if len(self.queue):  # a task that queues later has seen this room already
            self.freed.add(node)

    def _stop(self, i: int, node: int, *, done: bool) -> None:
        self.nodes.release(node, self.tasks[i])
        self.placer.changed(node)
        if self.running_on is not None:
            self.running_on[node].discard(i)
        self.running -= 1
        self.log.append(i, node, self.started[i], self.now, done)

    def _retry(self) -> None:
        """Place waiting tasks, oldest first, into what the freed nodes have room for."""
        up = [j for j in self.freed if self.nodes.up[j]] if len(self.queue) else []
        self.freed.clear()
        if not up:
            return
        freed = sorted(up)
        column = {node: k for k, node in enumerate(freed)}
        rooms = [self._room(node) for node in freed]
        most = _most(rooms)
        todo = self.queue.fitting(*most)  # the rest of the queue cannot fit: never looked at
        for position, (cpu, memory, disk) in zip(
            todo.tolist(), self.queue.demand[:, todo].T.tolist(), strict=True
        ):
            if cpu > most[0] or memory > most[1] or disk > most[2]:
                continue  # the freed room has shrunk since the queue was filtered
            if not any(cpu <= c and memory <= m and disk <= d for c, m, d in rooms):
                continue
            node = self._place(int(self.queue.task[position]))
            if node is not None:
                self.queue.remove(position)
                if node in column:
                    rooms[column[node]] = self._room(node)
                    most = _most(rooms)

    def _room(self, node: int) -> tuple[float, float, float]:
        """Free cores, memory and disk on ``node``, as the schedulers count them."""
        t = self.nodes
        return (
            max(t.cores[node] - t.cpu_allocated[node] + SLACK, 0.0),
            max(t.memory[node] - max(t.memory_allocated[node], t.memory_used[node]), 0.0),
            max(t.disk[node] - max(t.disk_allocated[node], t.disk_used[node]), 0.0),
        )

    def _fail(self, node: int) -> None:
        if self._drained() or not self.nodes.up[node]:
            return
        self.nodes.up[node] = False
        assert self.running_on is not None  # kept whenever failures are planned
        lost = sorted(self.running_on[node])
        for i in lost:
            self._stop(i, node, done=False)
            self.attempt[i] += 1
        self.requeued += len(lost)
        for column in ("cpu_allocated", "memory_allocated", "disk_allocated", "task_count"):
            getattr(self.nodes, column)[node] = 0  # an empty node, without float residue
        self.placer.changed(node)
        if self.random:
            self._push(self.now + self.rng.exponential(self.random.mttr), RECOVER, node)
        for i in lost:
            if self._place(i) is None:
                task = self.tasks[i]
                self.queue.push(i, task.cpu, task.memory, task.disk)

    def _recover(self, node: int) -> None:
        self.recovering -= 1
        if self.nodes.up[node]:
            return
        self.nodes.up[node] = True
        self.placer.changed(node)
        self.freed.add(node)
        if self.random and not self._drained():
            self._push(self.now + self.rng.exponential(self.random.mtbf), FAIL, node)

    def _drained(self) -> bool:
        return self.arrived == len(self.workload) and not self.running

    def _push(self, at: float, kind: int, a: int, b: int = 0) -> None:
        self.seq += 1
        self.recovering += kind == RECOVER
        heapq.heappush(self.events, (at, kind, self.seq, a, b))

    def _plan_failures(self, failures: Failures | Iterable[Outage] | None) -> None:
        if self.random:
            for node, at in enumerate(self.rng.exponential(self.random.mtbf, len(self.nodes))):
                self._push(self.now + at, FAIL, node)
        elif failures is not None:
            for outage in failures:
                if not 0 <= outage.node < len(self.nodes):
                    raise ValueError(f"outage names node {outage.node}, not in the table")
                self._push(outage.at, FAIL, outage.node)
                if outage.back is not None:
                    self._push(outage.back, RECOVER, outage.node)

    def _check(self, node: int) -> None:
        t = self.nodes
        over = [
            what
            for what, used, capacity in (
                ("cores", t.cpu_allocated[node], t.cores[node] + 1e-9),
                ("memory", t.memory_allocated[node], t.memory[node]),
                ("disk", t.disk_allocated[node], t.disk[node]),
            )
            if used > capacity
        ]
        if over or not t.up[node]:
            why = f"over capacity in {', '.join(over)}" if over else "down"
            raise RuntimeError(f"t={self.now}: placed a task on node {t.names[node]}, {why}")

    def result(self, wall: float) -> Result:
        log = self.log.to_array()
        done = log[log["done"]]
        w, timeline, waiting = self.workload, self.recorder.timeline(), self.queue.tasks()
        start = float(w.arrival[0]) if len(w) else 0.0
        makespan = float(done["end"].max()) - start if len(done) else 0.0
        # averages cover the arrival window, where the load knob applies (see metrics)
        end = float(w.arrival[-1]) if len(w) and w.arrival[-1] > start else start + makespan
        busy = np.clip(log["end"], start, end) - np.clip(log["start"], start, end)
        window = (timeline.time >= start) & (timeline.time <= end)
        wait = np.array(self.wait)
        placed = wait[~np.isnan(wait)]
        metrics = {
            "tasks": len(w),
            "finished": len(done),
            "unplaced": len(waiting),
            "rejected": self.rejected,
            "requeued": self.requeued,
            "decisions": self.decisions,
            "cpu_utilisation": _share(w.cpu[log["task"]] @ busy, self.nodes.cores, end - start),
            "memory_utilisation": _share(
                w.memory[log["task"]] @ busy, self.nodes.memory, end - start
            ),
            "stranded_cpu": _mean(timeline.stranded_cpu[window]),
            "stranded_memory": _mean(timeline.stranded_memory[window]),
            "wait_p50": percentile(placed, 50),
            "wait_p99": percentile(placed, 99),
            "makespan": makespan,
            "wall_seconds": wall,
            "decisions_per_second": self.decisions / wall if wall > 0 else float("nan"),
        }
        return Result(
            scheduler=getattr(self.scheduler, "name", type(self.scheduler).__name__),
            metrics=metrics,
            timeline=timeline,
            placements=log,
            wait=wait,
            waiting=np.array(waiting, dtype=np.int64),
            node_names=list(self.nodes.names),
            checked=self.placer.checked if isinstance(self.placer, Verified) else 0,
        )


class _Log:
    """Every run of a task on a node, one column each (compact: a million runs take
    33 MB here, against some 150 MB as a list of tuples)."""

    def __init__(self) -> None:
        self.task, self.node = array("q"), array("q")
        self.start, self.end, self.done = array("d"), array("d"), array("b")

    def append(self, task: int, node: int, start: float, end: float, done: bool) -> None:
        self.task.append(task)
        self.node.append(node)
        self.start.append(start)
        self.end.append(end)
        self.done.append(done)

    def to_array(self) -> np.ndarray:
        log = np.empty(len(self.task), dtype=PLACEMENT)
        for name in PLACEMENT.names:
            log[name] = np.frombuffer(getattr(self, name), dtype=log.dtype[name].base)
        return log


def _share(work: float, capacity: np.ndarray, span: float) -> float:
    """Average share of ``capacity`` busy over ``span`` seconds, from resource-seconds."""
    total = float(capacity.sum()) * span
    return float(work) / total if total > 0 else 0.0


def _most(rooms: list[tuple[float, float, float]]) -> tuple[float, ...]:
    """The most free of each resource on any one of the nodes."""
    return rooms[0] if len(rooms) == 1 else tuple(map(max, zip(*rooms, strict=True)))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def _fits_some_node(workload: Workload, nodes: NodeTable) -> np.ndarray:
    """Per task: is some node big enough, empty? Checked once per distinct node size."""
    sizes = np.unique(np.stack([nodes.cores + 1e-9, nodes.memory, nodes.disk], axis=1), axis=0)
    ok = np.zeros(len(workload), dtype=bool)
    for cores, memory, disk in sizes:
        ok |= (workload.cpu <= cores) & (workload.memory <= memory) & (workload.disk <= disk)
    return ok


class _Bar:
    """A tqdm bar ticked in batches (a tick per task would cost more than the scheduler)."""

    def __init__(self, bar: Any) -> None:
        self.bar, self.pending = bar, 0

    def tick(self) -> None:
        if self.bar is None:
            return
        self.pending += 1
        if self.pending == 1000:
            self.bar.update(self.pending)
            self.pending = 0

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.update(self.pending)
            self.bar.close()


def _progress_bar(total: int, wanted: bool | None) -> _Bar:
    if wanted is False or (wanted is None and total < 20_000):
        return _Bar(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Bar(None)
    return _Bar(tqdm(total=total, unit="task", desc="simulating"))
