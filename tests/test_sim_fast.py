"""The simulator's fast path gives the scheduler's very placements: compared decision by
decision with cube.scheduler (failures, queueing, node mixes, measured use, tasks on
the edge of fitting, ties), and a fast path that disagrees is caught."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cube import sim
from cube.node import NodeTable
from cube.scheduler import Epvm, fits, make
from cube.sim import engine
from cube.sim.engine import SimTask
from cube.sim.fastpath import FAST, fast_placer
from cube.sim.placement import AskScheduler, Free, PlacementMismatch, Verified, rows

GIB = 1 << 30
SCHEDULERS = ["roundrobin", "greedy", "epvm", "bestfit"]


def both(name, work, nodes, **options):
    """The run with the fast path (every decision checked) and without it."""
    fast = sim.simulate(name, work, nodes, fast=True, verify=1, check=True, **options)
    slow = sim.simulate(name, work, nodes, fast=False, **options)
    return fast, slow


def same(fast, slow) -> None:
    assert np.array_equal(fast.placements, slow.placements)
    assert np.array_equal(fast.wait, slow.wait, equal_nan=True)
    assert fast.metrics["decisions"] == slow.metrics["decisions"]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_same_placements_with_failures_queueing_and_a_node_mix(name):
    nodes = sim.nodes(24, {sim.SMALL: 1, sim.STANDARD: 2, sim.HIGHMEM: 1}, seed=2)
    work = sim.Workload.generate(2500, nodes, load=1.3, seed=2)
    fast, slow = both(name, work, nodes, failures=sim.Failures(mtbf=1500, mttr=60, seed=2))
    same(fast, slow)
    assert slow.metrics["requeued"] > 0 and slow.metrics["decisions"] > 2500


@pytest.mark.parametrize("name", SCHEDULERS)
def test_same_placements_with_measured_use_and_tasks_asking_nothing(name):
    """Measured load and memory (what a manager's table holds) take best-fit off its
    simulated-cluster shortcut; tasks that ask for nothing fit even full nodes."""
    rng = np.random.default_rng(1)
    nodes = NodeTable.build(
        [f"n{i}" for i in range(16)],
        cores=4,
        memory=8 * GIB,
        disk=50 * GIB,
        cpu_load=rng.uniform(0, 0.5, 16),
        memory_used=rng.integers(0, 3, 16) * GIB,
    )
    work = sim.Workload.generate(800, nodes, load=1.1, seed=3)
    zero = np.arange(0, 800, 7)
    work.cpu[zero], work.memory[zero], work.disk[zero] = 0, 0, 0
    fast, slow = both(name, work, nodes, failures=[sim.Outage(3, at=50, back=400)])
    same(fast, slow)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_ties_on_an_empty_cluster_go_to_the_first_node(name):
    nodes = sim.nodes(300)  # every node alike: only the index tells them apart
    work = sim.Workload.generate(600, nodes, load=0.5, seed=4)
    same(*both(name, work, nodes))


def test_fit_on_the_edge_is_settled_by_the_scheduler_fit_rule():
    nodes = NodeTable.build(["a", "b", "c"], cores=4, memory=8 * GIB, disk=10 * GIB)
    nodes.cpu_allocated[:] = [3.5, 3.5 + 5e-10, 3.5 + 3e-9]  # 0.5 free, within 1e-9, not
    nodes.memory_allocated[:] = [7 * GIB, 7 * GIB + 1, 0]
    free = Free(nodes)
    for task in (SimTask(0.5, 0, 0), SimTask(0.5, GIB, 0), SimTask(0, GIB, 0)):
        assert [free.fits(task, i) for i in range(3)] == fits(task, nodes).tolist()
    nodes.up[0] = False
    free.update(0)
    assert not free.fits(SimTask(0, 0, 0), 0)


def test_only_the_built_in_schedulers_take_the_fast_path():
    class Mine(Epvm):
        def score(self, task, nodes, candidates):
            return -super().score(task, nodes, candidates)

    nodes = sim.nodes(4)
    assert set(FAST) == {type(make(name)) for name in SCHEDULERS}
    assert fast_placer(Mine(), nodes) is None
    assert isinstance(engine._placer(Mine(), nodes, True, 100), AskScheduler)
    assert isinstance(engine._placer(make("epvm"), nodes, True, 100), Verified)
    work = sim.Workload.generate(200, nodes, load=0.9, seed=5)
    mine = sim.simulate(Mine(), work, nodes)
    assert mine.scheduler == "epvm" and mine.metrics["finished"] == 200


def test_a_fast_path_that_disagrees_with_the_scheduler_stops_the_run(monkeypatch):
    nodes = sim.nodes(8)
    work = sim.Workload.generate(300, nodes, load=0.8, seed=6)
    real = FAST[type(make("greedy"))]

    class Off(real):  # picks the node after the right one
        def place(self, task):
            node = super().place(task)
            return None if node is None else (node + 1) % len(self.nodes)

    monkeypatch.setitem(FAST, type(make("greedy")), Off)
    with pytest.raises(PlacementMismatch, match=r"decision 7: .* greedy on the whole table"):
        sim.simulate("greedy", work, nodes, verify=7)


@pytest.mark.parametrize("ladders", [(), ("cpu",), ("memory",), ("cpu", "memory")])
def test_lowest_fitting_node_whatever_the_barring(ladders):
    """Staged barring, by ladder rows or exactly, finds what a plain search finds: the
    lowest score among the nodes that fit, the first of equals."""
    rng = np.random.default_rng(8)
    nodes = sim.nodes(200, {sim.SMALL: 1, sim.STANDARD: 1})
    nodes.cpu_allocated[:] = np.minimum(np.round(rng.uniform(0, 16, 200), 2), nodes.cores)
    nodes.memory_allocated[:] = np.minimum(rng.integers(0, 64, 200) * GIB, nodes.memory)
    nodes.up[::17] = False
    free = Free(nodes, ladders=ladders)
    for _ in range(200):
        task = SimTask(float(rng.choice([0, 0.5, 2, 7.5])), int(rng.choice([0, 1, 20])) * GIB, 0)
        score = rng.integers(0, 5, 200).astype(float)  # many ties
        ok = fits(task, nodes)
        expected = int(np.flatnonzero(ok)[np.argmin(score[ok])]) if ok.any() else None
        stages = ("memory", "cpu", "all") if rng.random() < 0.5 else ("cpu", "memory", "all")
        assert free.lowest(task, score.copy(), stages) == expected


def test_a_table_that_says_more_than_the_fast_path_reads_is_asked_directly():
    """A table may carry what its nodes can run (the fit rule may check it); the fast
    path reads only resources, so such a table goes to the scheduler, and a table of a
    few rows keeps every column."""

    plain = sim.nodes(4)
    assert fast_placer(make("epvm"), plain) is not None
    knowing = dataclasses.replace(plain, runtimes=["docker", "process", "docker", "process"])
    assert fast_placer(make("epvm"), knowing) is None
    two = rows(knowing, np.array([1, 3]))
    assert two.runtimes == ["process", "process"] and two.names == ["standard-1", "standard-3"]
    assert two.cores.tolist() == [16, 16]
