"""Schedulers on small hand-computed clusters: every placement asserted exactly."""

from dataclasses import dataclass

import numpy as np
import pytest

from cube.node import Node, NodeTable
from cube.scheduler import (
    LIEB,
    BestFit,
    Epvm,
    Greedy,
    RoundRobin,
    explain,
    fits,
    make,
    place,
)

GIB = 1 << 30


@dataclass
class Want:
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0


def cluster(n=3, **kw):
    return NodeTable.build(
        [f"w{i}" for i in range(n)], cores=4, memory=8 * GIB, disk=100 * GIB, **kw
    )


def run(scheduler, tasks, nodes):
    picks = []
    for task in tasks:
        placement = place(scheduler, task, nodes)
        picks.append(placement.index)
        if placement.index is not None:
            nodes.allocate(placement.index, task)
    return picks


def test_round_robin_takes_turns_and_skips_down_nodes():
    assert run(RoundRobin(), [Want()] * 5, cluster()) == [0, 1, 2, 0, 1]
    assert run(RoundRobin(), [Want()] * 4, cluster(up=[True, False, True])) == [0, 2, 0, 2]


def test_round_robin_skips_full_nodes():
    nodes = cluster()
    nodes.memory_allocated[1] = 8 * GIB
    assert run(RoundRobin(), [Want(memory=GIB)] * 3, nodes) == [0, 2, 0]


def test_greedy_takes_the_least_busy_cpu():
    nodes = cluster(cpu_load=[0.5, 0.1, 0.3])
    # w1 is least busy; one core promised there makes it 0.25 busy, still least;
    # a second makes it 0.5, so w2 (0.3) wins the third task.
    assert run(Greedy(), [Want(cpu=1)] * 3, nodes) == [1, 1, 2]


def epvm_cost(m, dm, u, du, n):
    jobs = LIEB ** ((n + 1) / 4) - LIEB ** (n / 4)
    return (LIEB ** (m + dm) - LIEB**m) + (LIEB ** (u + du) - LIEB**u) + 2 * jobs


def test_epvm_scores_are_the_formula():
    nodes = cluster(2, memory_used=[4 * GIB, 1 * GIB])
    task = Want(cpu=1, memory=GIB)
    scores = Epvm().score(task, nodes, np.array([0, 1]))
    expected = [epvm_cost(0.5, 0.125, 0, 0.25, 0), epvm_cost(0.125, 0.125, 0, 0.25, 0)]
    assert scores == pytest.approx(expected)
    assert place(Epvm(), task, nodes).index == 1


def test_epvm_cpu_load_matters_unlike_the_book():
    nodes = cluster(2, cpu_load=[0.9, 0.1])
    assert place(Epvm(), Want(), nodes).index == 1
    nodes = cluster(2, cpu_load=[0.1, 0.9])
    assert place(Epvm(), Want(), nodes).index == 0


def test_epvm_spreads_by_job_count():
    assert run(Epvm(), [Want()] * 4, cluster()) == [0, 1, 2, 0]


def test_bestfit_packs_the_fullest_node_that_fits():
    nodes = cluster(3)
    nodes.memory_allocated[:] = [6 * GIB, 2 * GIB, 7.5 * GIB]
    # w2 has only 0.5 GiB promised-free: the 1 GiB task goes to w0, the fullest that fits.
    assert run(BestFit(), [Want(memory=GIB)], nodes) == [0]
    # then w0 has 7 GiB promised: still the fullest that fits 1 GiB
    assert run(BestFit(), [Want(memory=GIB)] * 2, nodes) == [0, 1]


def test_unreachable_nodes_are_never_candidates():
    nodes = cluster(up=[False, False, False])
    for name in ("roundrobin", "epvm", "greedy", "bestfit"):
        placement = place(make(name), Want(), nodes)
        assert placement.index is None
        assert placement.reason == "no worker can take it: 3 nodes: down or not answering yet"
        assert placement.possible  # they may come back


def test_memory_and_disk_are_both_checked():
    nodes = cluster(2)
    nodes.disk_allocated[0] = 100 * GIB
    nodes.memory_used[1] = 7.5 * GIB
    assert fits(Want(disk=GIB), nodes).tolist() == [False, True]
    assert fits(Want(memory=GIB), nodes).tolist() == [True, False]
    assert fits(Want(memory=GIB, disk=GIB), nodes).tolist() == [False, False]
    verdict = explain(Want(memory=GIB, disk=GIB), nodes)
    assert verdict.reason == (
        "no worker can take it: 1 node: memory 512.0 MiB free < 1.0 GiB asked; "
        "1 node: disk 0 B free < 1.0 GiB asked"
    )
    assert verdict.possible


def test_cpu_requests_are_checked():
    nodes = cluster(1)
    assert run(RoundRobin(), [Want(cpu=3), Want(cpu=2), Want(cpu=1)], nodes) == [0, None, 0]


def test_unknown_scheduler_name():
    with pytest.raises(ValueError, match="choose one of roundrobin, epvm, greedy, bestfit"):
        make("random")


def test_table_from_nodes_uses_observed_stats():
    node = Node.for_worker("127.0.0.1:5556")
    stats = {
        "MemStats": {"mem_total": 8 * 1024 * 1024, "mem_available": 6 * 1024 * 1024},
        "DiskStats": {"all": 100 * GIB, "used": 10 * GIB},
        "CpuPercent": 25.0,
        "Cores": 4,
    }
    node.observe(stats, seen=None)
    table = NodeTable.from_nodes([node])
    assert table.up.tolist() == [True]
    assert table.memory.tolist() == [8 * GIB] and table.memory_used.tolist() == [2 * GIB]
    assert table.cpu_load.tolist() == [0.25] and table.cores.tolist() == [4]


def test_go_worker_stats_give_cpu_load_from_jiffies():
    node = Node.for_worker("127.0.0.1:5556")
    base = {"MemStats": {"mem_total": 1024, "mem_available": 512}, "DiskStats": {}}
    node.observe({**base, "CpuStats": {"user": 100, "idle": 900}}, seen=None)
    node.observe({**base, "CpuStats": {"user": 150, "idle": 950}}, seen=None)
    assert node.cpu_load == pytest.approx(0.5)
