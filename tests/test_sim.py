"""The simulator: hand-computed runs per scheduler, conservation, determinism, failures,
and the CSV trace loader's errors."""

from dataclasses import fields

import numpy as np
import pytest

from cube import sim
from cube.node import NodeTable
from cube.scheduler import Epvm, make
from cube.sim.engine import SimTask
from cube.sim.waitqueue import WaitQueue

GIB = 1 << 30


def workload(*rows):
    """Tasks from ``(arrival, duration, cpu, memory GiB)`` rows; 1 GiB disk each."""
    columns = np.array(rows, dtype=float).T
    return sim.Workload(
        columns[0], columns[1], columns[2], (columns[3] * GIB).astype(int), np.full(len(rows), GIB)
    )


def small_cluster(n=3):
    return NodeTable.build([f"w{i}" for i in range(n)], cores=4, memory=8 * GIB, disk=100 * GIB)


# (arrival, duration, cpu, memory GiB). Worked by hand in the test below.
FIVE = workload(
    (0, 10, 2, 1),
    (1, 10, 0.5, 6),
    (2, 10, 1, 1),
    (3, 10, 1, 1),
    (4, 5, 4, 4),
)


@pytest.mark.parametrize(
    ("name", "nodes", "last_start"),
    [
        # in turn; the 4-core task waits for w1 to empty when task 1 ends at 11
        ("roundrobin", [0, 1, 2, 0, 1], 11),
        # least CPU: task 3 goes to w1 (0.5 of 4 cores busy) although its memory is 6/8 full
        ("greedy", [0, 1, 2, 1, 0], 10),
        # opportunity cost: task 3 avoids w1's full memory and w0's busier CPU
        ("epvm", [0, 1, 2, 2, 0], 10),
        # packing: w0 takes tasks 0-2 (cores 3.5/4, memory 8/8), keeping w2 empty for task 4
        ("bestfit", [0, 0, 0, 1, 2], 4),
    ],
)
def test_hand_computed_placements(name, nodes, last_start):
    result = sim.simulate(name, FIVE, small_cluster(), check=True)
    log = np.sort(result.placements, order="task")
    assert log["node"].tolist() == nodes
    assert log["start"].tolist() == [0, 1, 2, 3, last_start]
    assert result.wait.tolist() == [0, 0, 0, 0, last_start - 4]
    assert result.metrics["finished"] == 5 and result.metrics["unplaced"] == 0


def test_a_scheduler_object_works_and_the_callers_table_is_untouched():
    nodes = small_cluster()
    result = sim.simulate(Epvm(), FIVE, nodes)
    assert result.scheduler == "epvm"
    assert nodes.cpu_allocated.tolist() == [0, 0, 0] and nodes.task_count.sum() == 0


def busy_run(name="bestfit", failures=None, seed=3):
    nodes = sim.nodes(12, {sim.SMALL: 1, sim.STANDARD: 2}, seed=seed)
    work = sim.Workload.generate(1500, nodes, load=1.4, seed=seed)
    return sim.simulate(name, work, nodes, failures=failures, check=True), work, nodes


def test_same_seed_same_metrics():
    failures = sim.Failures(mtbf=3000, mttr=60, seed=5)
    (a, _, _), (b, _, _) = busy_run(failures=failures), busy_run(failures=failures)
    deterministic = {k: v for k, v in a.metrics.items() if k not in sim.WALL_CLOCK}
    assert deterministic == {k: v for k, v in b.metrics.items() if k not in sim.WALL_CLOCK}
    assert np.array_equal(a.placements, b.placements)
    for field in fields(a.timeline):
        assert np.array_equal(getattr(a.timeline, field.name), getattr(b.timeline, field.name))
    other, _, _ = busy_run(failures=sim.Failures(mtbf=3000, mttr=60, seed=6))
    assert not np.array_equal(a.placements, other.placements)


@pytest.mark.parametrize("name", ["roundrobin", "epvm", "greedy", "bestfit"])
def test_no_node_is_ever_over_capacity_and_every_task_is_accounted_for(name):
    result, work, nodes = busy_run(name, failures=sim.Failures(mtbf=3000, mttr=50, seed=1))
    m = result.metrics
    assert m["requeued"] > 0 and m["decisions"] > m["tasks"]  # failures and queueing happened
    assert m["finished"] + m["unplaced"] + m["rejected"] == m["tasks"] == len(work)
    log = result.placements
    # replay: at each node, runs end before runs start at the same instant
    for node in range(len(nodes)):
        runs = log[log["node"] == node]
        events = sorted(
            [(e, 0, -1, t) for t, e in zip(runs["task"], runs["end"], strict=True)]
            + [(s, 1, 1, t) for t, s in zip(runs["task"], runs["start"], strict=True)]
        )
        used = np.zeros(3)
        for _, _, sign, task in events:
            used += sign * np.array([work.cpu[task], work.memory[task], work.disk[task]])
            assert used[0] <= nodes.cores[node] + 1e-6
            assert used[1] <= nodes.memory[node] and used[2] <= nodes.disk[node]
    done = log[log["done"]]
    assert sorted(done["task"]) == sorted(set(done["task"].tolist()))  # each finishes once
    assert np.allclose(done["end"] - done["start"], work.duration[done["task"]])


def test_smart_retries_place_exactly_what_retrying_everything_would(monkeypatch):
    failures = sim.Failures(mtbf=3000, mttr=50, seed=2)
    smart, _, _ = busy_run("roundrobin", failures=failures)

    def retry_everything(engine):
        engine.freed.clear()
        for position in engine.queue.fitting(np.inf, np.inf, np.inf):
            if engine._place(int(engine.queue.task[position])) is not None:
                engine.queue.remove(position)

    monkeypatch.setattr(sim.engine._Engine, "_retry", retry_everything)
    brute, _, _ = busy_run("roundrobin", failures=failures)
    assert np.array_equal(smart.placements, brute.placements)
    assert smart.metrics["decisions"] < brute.metrics["decisions"] / 2


def test_a_failed_node_requeues_its_tasks_until_it_comes_back():
    work = workload((0, 10, 2, 1), (1, 10, 2, 1), (2, 10, 3, 1))
    result = sim.simulate(
        "bestfit", work, small_cluster(2), failures=[sim.Outage(node=0, at=5, back=8)]
    )
    assert result.placements.tolist() == [  # in the order runs ended
        (0, 0, 0.0, 5.0, False),  # w0 fails at 5; w1 (3 of 4 cores busy) has no room
        (1, 0, 1.0, 5.0, False),
        (2, 1, 2.0, 12.0, True),
        (0, 0, 8.0, 18.0, True),  # back at 8: both start again from scratch
        (1, 0, 8.0, 18.0, True),
    ]
    assert result.metrics["requeued"] == 2 and result.metrics["makespan"] == 18
    assert result.wait.tolist() == [0, 0, 0]


def test_a_node_down_for_good_leaves_what_only_it_could_run_unplaced():
    nodes = small_cluster(2)
    nodes.cores[1] = 1
    work = workload((0, 10, 1, 1), (1, 10, 3, 1))
    result = sim.simulate("epvm", work, nodes, failures=[sim.Outage(node=0, at=0.5)])
    assert result.metrics["unplaced"] == 1 and result.waiting.tolist() == [1]
    assert result.metrics["finished"] == 1 and result.metrics["requeued"] == 1


def test_tasks_bigger_than_every_node_are_rejected_not_queued():
    work = workload((0, 1, 5, 1), (1, 1, 1, 9), (2, 1, 1, 1))
    result = sim.simulate("greedy", work, small_cluster())
    assert result.metrics["rejected"] == 2 and result.metrics["finished"] == 1
    assert result.metrics["decisions"] == 1 and len(result.waiting) == 0


def test_timeline_is_on_a_fixed_grid():
    result, _, nodes = busy_run("greedy")
    t = result.timeline
    assert np.allclose(np.diff(t.time), t.time[1] - t.time[0])
    assert len(t.time) <= 400  # at most twice the 200 samples asked for
    assert t.node_load.shape == (len(t.time), len(nodes))
    assert (t.cpu <= 1 + 1e-9).all() and t.waiting.max() > 0 and t.running.max() > 0
    assert 0 < result.metrics["cpu_utilisation"] <= 1
    assert result.metrics["wait_p99"] >= result.metrics["wait_p50"] >= 0


def test_generated_load_matches_the_knob():
    nodes = sim.nodes(50)
    work = sim.Workload.generate(20_000, nodes, load=0.6, seed=2)
    span = work.arrival[-1] - work.arrival[0]
    offered = (work.cpu * work.duration).sum() / (span * nodes.cores.sum())
    assert offered == pytest.approx(0.6, rel=0.05)
    assert (np.diff(work.arrival) >= 0).all()


def test_node_mixes_have_exact_counts():
    nodes = sim.nodes(8, {sim.SMALL: 3, sim.LARGE: 1}, seed=1)
    assert sorted(nodes.cores.tolist()) == [4] * 6 + [64] * 2
    assert nodes.names[0].split("-")[0] in {"small", "large"}


def test_compare_tabulates_every_scheduler():
    table = sim.compare(["roundrobin", "bestfit"], FIVE, small_cluster())
    assert [row["scheduler"] for row in table.rows()] == ["roundrobin", "bestfit"]
    markdown = table.to_markdown().splitlines()
    assert markdown[0].startswith("| scheduler | cpu |") and markdown[2].startswith("| roundrobin")
    assert "<td>bestfit</td>" in table._repr_html_()


def test_plots_draw():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    table = sim.compare(["epvm", "greedy"], FIVE, small_cluster())
    for figure in (table.plot_utilisation(), table.plot_waits(), table.plot_heatmaps()):
        assert figure.axes
    assert table.results[0].plot_heatmap().axes


def test_csv_round_trip_and_the_sample_trace(tmp_path):
    work = sim.Workload.from_csv(sim.SAMPLE_TRACE)
    assert 200 <= len(work) <= 1000 and work.memory.dtype == np.int64
    work.to_csv(tmp_path / "again.csv")
    again = sim.Workload.from_csv(tmp_path / "again.csv")
    for name in ("arrival", "duration", "cpu", "memory", "disk"):
        assert np.array_equal(getattr(work, name), getattr(again, name))


def test_csv_columns_may_come_in_any_order_and_rows_are_sorted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("cpu,arrival,duration,memory,disk\n1,5,2,100,0\n\n2,1,3,200,0\n")
    work = sim.Workload.from_csv(path)
    assert work.arrival.tolist() == [1, 5] and work.cpu.tolist() == [2, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "arrival,duration,cpu,memory,disk\n0,1,1,10,0\n1,1,1,abc,0\n",
            "trace.csv line 3, column 'memory': 'abc' is not a number",
        ),
        (
            "arrival,duration,cpu,memory,disk\n0,1,-1,10,0\n",
            "trace.csv line 2, column 'cpu': -1 is negative",
        ),
        (
            "arrival,duration,cpu,memory,disk\n0,inf,1,10,0\n",
            "trace.csv line 2, column 'duration': 'inf' is not a finite number",
        ),
        (
            "arrival,duration,cpu,memory,disk\n0,1,1,10.5,0\n",
            "trace.csv line 2, column 'memory': 10.5 is not a whole number of bytes",
        ),
        (
            "arrival,duration,cpu,memory,disk\n0,1,1,10\n",
            "trace.csv line 2: expected 5 values, found 4",
        ),
        ("arrival,duration,cpu,memory\n0,1,1,10\n", "trace.csv line 1: missing column(s) 'disk'"),
        (
            "arrival,duration,cpu,memory,disk,gpu\n0,1,1,10,0,1\n",
            "trace.csv line 1: unexpected column(s) 'gpu'",
        ),
        ("arrival,duration,cpu,memory,disk\n", "trace.csv: no tasks after the header"),
    ],
)
def test_csv_errors_name_line_and_column(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(sim.TraceError) as error:
        sim.Workload.from_csv(path)
    assert str(error.value).replace(f"{tmp_path}/", "").startswith(message)


@pytest.mark.parametrize("name", ["epvm", "bestfit"])
def test_remembered_node_values_never_go_stale(name):
    """The schedulers keep per-node values between calls for speed; a long-lived one must
    score exactly like a fresh one whatever is written to the table in between."""
    rng = np.random.default_rng(0)
    nodes, kept = sim.nodes(40, {sim.SMALL: 1, sim.STANDARD: 1}), make(name)
    for step in range(30):
        column = ["cpu_allocated", "memory_allocated", "cpu_load", "memory_used", "cores"][step % 5]
        values = getattr(nodes, column)
        values[rng.integers(40, size=5)] = rng.uniform(0, 0.5) * values.max() + (column == "cores")
        nodes.task_count[:] = rng.integers(0, 6, size=40)
        task = SimTask(float(rng.uniform(0, 2)), int(rng.integers(0, 4 * GIB)), 0)
        candidates = np.arange(0, 40, 2)
        fresh = make(name).score(task, nodes, candidates)
        assert np.array_equal(kept.score(task, nodes, candidates), fresh)


def test_wait_queue_keeps_fifo_order_through_holes_and_growth():
    queue = WaitQueue(capacity=4)
    for task in range(10):
        queue.push(task, task, 0, 0)
    for position in queue.fitting(9, 0, 0)[::2]:
        queue.remove(position)
    for task in range(10, 14):
        queue.push(task, 1, 0, 0)
    assert queue.tasks() == [1, 3, 5, 7, 9, 10, 11, 12, 13]
    assert [int(queue.task[p]) for p in queue.fitting(3, 0, 0)] == [1, 3, 10, 11, 12, 13]
    assert len(queue) == 9
