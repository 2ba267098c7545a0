"""Scheduling simulator: the real schedulers on a simulated cluster of any size.

The schedulers in :mod:`cube.scheduler` are the ones the manager runs; here they place a
seeded synthetic workload (or your own CSV trace) on thousands of simulated nodes, so
you can see how they pack, strand and queue before trusting them with a real cluster::

    from cube import sim

    cluster = sim.nodes(300, {sim.STANDARD: 3, sim.HIGHMEM: 1})
    work = sim.Workload.generate(50_000, cluster, load=1.1, seed=1)
    table = sim.compare(["bestfit", "epvm", "greedy", "roundrobin"], work, cluster)
    table                      # a table in Jupyter; table.to_markdown() elsewhere
    table.plot_utilisation(); table.plot_waits(); table.plot_heatmaps()

    result = sim.simulate("epvm", work, cluster, failures=sim.Failures(mtbf=3600, mttr=300))
    result.metrics["wait_p99"], result.placements[:5]

    grid = sim.Grid(schedulers=("epvm", "bestfit"), loads=(0.7, 0.9, 1.1))
    table = sim.sweep(grid, seeds=5)   # every combination, on a process pool (or Dask)
    table.plot("wait_p99")             # means with 95% intervals over the seeds

Everything is deterministic: the same seeds give the same metrics (bar wall-clock ones).
For the four built-in schedulers the engine takes a fast path that makes the very same
placements at a fraction of the cost (a million tasks on ten thousand nodes in half a
minute to a minute; see :mod:`cube.sim.placement`), checked against the scheduler as it
runs.
The sample trace was made with
``Workload.generate(300, nodes(20), load=0.8, seed=7).to_csv(SAMPLE_TRACE)``.
"""

from importlib.resources import files
from pathlib import Path

from cube.sim.compare import Comparison, compare
from cube.sim.engine import simulate
from cube.sim.failures import Failures, Outage
from cube.sim.metrics import WALL_CLOCK, Timeline
from cube.sim.result import Result
from cube.sim.sizes import HIGHMEM, LARGE, SMALL, STANDARD, NodeSize, nodes
from cube.sim.sweep import Grid, Run, Shape, sweep
from cube.sim.table import Sweep
from cube.sim.trace import TraceError
from cube.sim.workload import DEFAULT_MIX, Lognormal, Pareto, TaskClass, Workload

SAMPLE_TRACE = Path(str(files("cube.sim") / "data" / "sample-trace.csv"))

__all__ = [
    "DEFAULT_MIX",
    "HIGHMEM",
    "LARGE",
    "SAMPLE_TRACE",
    "SMALL",
    "STANDARD",
    "WALL_CLOCK",
    "Comparison",
    "Failures",
    "Grid",
    "Lognormal",
    "NodeSize",
    "Outage",
    "Pareto",
    "Result",
    "Run",
    "Shape",
    "Sweep",
    "TaskClass",
    "Timeline",
    "TraceError",
    "Workload",
    "compare",
    "nodes",
    "simulate",
    "sweep",
]
