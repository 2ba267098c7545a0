"""Sweeps: the same table from a process pool, one process and a Dask LocalCluster; rows
in grid order; means with Student's t intervals; the plot and the progress bar."""

from __future__ import annotations

import math
import pickle

import pytest
from distributed import Client, LocalCluster

from cube import sim
from cube.sim.table import Estimate, t95

GRID = sim.Grid(
    schedulers=("roundrobin", "bestfit"),
    loads=(0.8, 1.2),
    shapes=(sim.Shape("even", 12), sim.Shape("mixed", 12, {sim.SMALL: 1, sim.STANDARD: 2})),
    tasks=300,
    failures=sim.Failures(mtbf=2000, mttr=60),
)


def same(a: sim.Sweep, b: sim.Sweep) -> bool:
    """Equal tables, bar the wall-clock columns (NaN, for an empty percentile, equal too)."""
    rows_a, rows_b = a.table(wall_clock=False), b.table(wall_clock=False)
    return len(rows_a) == len(rows_b) and all(
        x.keys() == y.keys() and all(x[k] == y[k] or (x[k] != x[k] and y[k] != y[k]) for k in x)
        for x, y in zip(rows_a, rows_b, strict=True)
    )


@pytest.fixture(scope="module")
def here() -> sim.Sweep:
    return sim.sweep(GRID, seeds=2, workers=1, progress=False)


def test_a_dask_cluster_gives_the_same_table_as_the_process_pool(here):
    pooled = sim.sweep(GRID, seeds=2, workers=2, progress=False)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        on_dask = sim.sweep(GRID, seeds=2, client=client, progress=False)
    assert len(here) == 2 * 2 * 2 * 2
    assert same(pooled, here) and same(on_dask, here)


def test_rows_follow_the_grid_and_pair_schedulers_on_one_workload(here):
    keys = [(r["cluster"], r["load"], r["seed"], r["scheduler"]) for r in here.rows]
    assert keys == [
        (c, load, seed, s)
        for c in ("even", "mixed")
        for load in (0.8, 1.2)
        for seed in (0, 1)
        for s in ("roundrobin", "bestfit")
    ]
    first = here.rows[0]
    assert first["nodes"] == 12 and first["tasks"] == 300 and first["requeued"] > 0
    assert here.rows[0]["cpu_utilisation"] != here.rows[2]["cpu_utilisation"]  # seed 1


def test_summary_gives_the_mean_and_a_students_t_interval(here):
    rows = here.summary("cpu_utilisation")
    assert len(rows) == 8 and all(r["runs"] == 2 for r in rows)
    values = [r["cpu_utilisation"] for r in here.rows[:3:2]]  # even, 0.8, roundrobin
    mean = sum(values) / 2
    half = 12.706 * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)
    assert rows[0]["mean"] == pytest.approx(mean)
    assert (rows[0]["low"], rows[0]["high"]) == pytest.approx((mean - half, mean + half))


def test_estimates():
    assert t95(1) == 12.706 and t95(30) == 2.042 and t95(1000) == pytest.approx(1.962, abs=1e-3)
    one = Estimate.of([3.0])
    assert one.mean == 3 and math.isnan(one.low) and str(one) == "3"
    assert Estimate.of([math.nan]).runs == 0
    assert str(Estimate.of([1.0, 3.0])) == "2 ± 13"


def test_tables_and_the_plot(here):
    markdown = here.to_markdown().splitlines()
    assert markdown[0].startswith("| cluster | load | scheduler | runs | cpu_utilisation")
    assert len(markdown) == 2 + 8 and "±" in markdown[2]
    assert "<table>" in here._repr_html_() and repr(here) == "Sweep(16 runs, 8 combinations)"
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    figure = here.plot("wait_p99")
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) > 0


def test_progress_bar_and_shapes_travel(capsys):
    grid = sim.Grid(schedulers=("greedy",), loads=(0.9,), tasks=100)
    assert pickle.loads(pickle.dumps(GRID)) == GRID and hash(GRID.shapes[1])
    table = sim.sweep(grid, seeds=[4], progress=True)
    assert [r["seed"] for r in table.rows] == [4]
    assert "sweeping" in capsys.readouterr().err
