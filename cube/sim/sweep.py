"""Sweeps: many simulations at once, on a pool of processes or on a Dask cluster.

One simulation says how a scheduler did on one workload; a comparison you can trust
needs many: each scheduler at several loads, on several cluster shapes, with several
seeds so that the spread between runs shows (as error bars). :func:`sweep` runs every
combination of a :class:`Grid` and returns a tidy table, one row per run
(:class:`~cube.sim.table.Sweep`)::

    from cube import sim

    grid = sim.Grid(
        schedulers=("epvm", "bestfit"),
        loads=(0.7, 0.9, 1.1),
        shapes=(sim.Shape("even", 50), sim.Shape("mixed", 50, {sim.STANDARD: 3, sim.HIGHMEM: 1})),
        tasks=2000,
    )
    table = sim.sweep(grid, seeds=5)            # a local pool, one process per core
    table.plot("wait_p99")                      # mean and 95% interval over the seeds

Past one machine, hand it a ``dask.distributed.Client``: ``sim.sweep(grid, seeds=5,
client=Client("scheduler-address:8786"))``. Each run is a pure function of its
scheduler, load, shape and seed (the workload and the nodes are made from the seed,
where the run happens), so the table is the same wherever it runs, bar the wall-clock
columns. The workers need Cube installed, at the same version.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cube.node import NodeTable
from cube.procs import die_with_parent
from cube.sim.engine import simulate
from cube.sim.failures import Failures
from cube.sim.sizes import STANDARD, NodeSize, nodes
from cube.sim.table import Sweep
from cube.sim.workload import Lognormal, Pareto, Workload

if TYPE_CHECKING:
    from distributed import Client

SAMPLES = 20  # timeline samples per run: a sweep keeps only the totals


@dataclass(frozen=True)
class Shape:
    """A cluster shape: ``nodes`` nodes, all of one size or a mix (as :func:`nodes`)."""

    name: str
    nodes: int
    mix: NodeSize | Mapping[NodeSize, float] | tuple[tuple[NodeSize, float], ...] = STANDARD

    def __post_init__(self) -> None:
        # a mapping is kept as pairs, so that a shape can be hashed and sent to a worker
        if isinstance(self.mix, Mapping):
            object.__setattr__(self, "mix", tuple(self.mix.items()))

    def build(self, seed: int) -> NodeTable:
        mix = self.mix if isinstance(self.mix, NodeSize) else dict(self.mix)
        return nodes(self.nodes, mix, seed=seed)


@dataclass(frozen=True)
class Grid:
    """What to vary (schedulers, loads, shapes) and what to hold fixed (the number of
    tasks, their durations, node failures) across a sweep."""

    schedulers: tuple[str, ...] = ("roundrobin", "greedy", "epvm", "bestfit")
    loads: tuple[float, ...] = (0.7, 0.9, 1.1)
    shapes: tuple[Shape, ...] = field(default_factory=lambda: (Shape("standard", 50),))
    tasks: int = 2000
    durations: Lognormal | Pareto = field(default_factory=Lognormal)
    failures: Failures | None = None

    def runs(self, seeds: Iterable[int]) -> list[Run]:
        """Every combination, shape by shape, load by load, seed by seed, scheduler by
        scheduler: the order of the table's rows."""
        return [
            Run(scheduler, load, shape, seed)
            for shape in self.shapes
            for load in self.loads
            for seed in seeds
            for scheduler in self.schedulers
        ]


@dataclass(frozen=True)
class Run:
    """One simulation of a sweep."""

    scheduler: str
    load: float
    shape: Shape
    seed: int


def run(one: Run, grid: Grid) -> dict[str, Any]:
    """Simulate ``one`` and return its row: what was varied, then every metric.

    The nodes and the workload are made here from the seed, so only these small
    records travel to a worker and back. Schedulers with the same shape, load and seed
    see the very same workload and nodes, so they are compared pairwise."""
    cluster = one.shape.build(one.seed)
    work = Workload.generate(
        grid.tasks, cluster, load=one.load, seed=one.seed, durations=grid.durations
    )
    failures = replace(grid.failures, seed=one.seed) if grid.failures else None
    result = simulate(
        one.scheduler, work, cluster, failures=failures, samples=SAMPLES, progress=False
    )
    varied = {"scheduler": one.scheduler, "load": one.load, "cluster": one.shape.name}
    return {**varied, "nodes": one.shape.nodes, "seed": one.seed, **result.metrics}


def sweep(
    grid: Grid,
    seeds: int | Iterable[int] = 3,
    client: Client | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> Sweep:
    """Run every combination of ``grid`` for each seed (``seeds=5`` is seeds 0-4).

    Without a ``client`` the runs go to a pool of ``workers`` processes (default: one
    per core; ``workers=1`` runs them here, one after another). With a
    ``dask.distributed.Client`` they go to its cluster instead. ``progress`` shows a
    bar while they run."""
    seeds = range(seeds) if isinstance(seeds, int) else list(seeds)
    runs = grid.runs(seeds)
    with _Bar(len(runs), progress) as tick:
        if client is not None:
            rows = _on_dask(client, runs, grid, tick)
        elif (workers or os.cpu_count() or 1) == 1 or len(runs) == 1:
            rows = [_ticked(run(one, grid), tick) for one in runs]
        else:
            rows = _on_pool(runs, grid, workers, tick)
    return Sweep(rows)


def _on_pool(
    runs: list[Run], grid: Grid, workers: int | None, tick: Callable[[], None]
) -> list[dict[str, Any]]:
    """A process per core ("spawn": safe in a notebook, and the same on every OS)."""
    context = multiprocessing.get_context("spawn")
    size = min(workers or os.cpu_count() or 1, len(runs))
    parent = (os.getpid(),)
    with ProcessPoolExecutor(size, context, initializer=die_with_parent, initargs=parent) as pool:
        futures = {pool.submit(run, one, grid): k for k, one in enumerate(runs)}
        return _in_order(((futures[f], f.result()) for f in as_completed(futures)), tick)


def _on_dask(
    client: Client, runs: list[Run], grid: Grid, tick: Callable[[], None]
) -> list[dict[str, Any]]:
    from distributed import as_completed as dask_completed

    futures = client.map(run, runs, grid=grid, pure=False)
    index = {future.key: k for k, future in enumerate(futures)}
    try:
        done = ((index[f.key], f.result()) for f in dask_completed(futures))
        return _in_order(done, tick)
    finally:
        client.cancel(futures)


def _in_order(
    done: Iterable[tuple[int, dict[str, Any]]], tick: Callable[[], None]
) -> list[dict[str, Any]]:
    """Rows in the order of the runs, whatever order they finished in."""
    rows: dict[int, dict[str, Any]] = {}
    for k, row in done:
        rows[k] = row
        tick()
    return [rows[k] for k in sorted(rows)]


def _ticked(row: dict[str, Any], tick: Callable[[], None]) -> dict[str, Any]:
    tick()
    return row


class _Bar:
    """A tqdm bar over the runs (nothing when tqdm is missing or not wanted)."""

    def __init__(self, total: int, wanted: bool) -> None:
        self.bar = None
        if wanted:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, unit="run", desc="sweeping")

    def __enter__(self) -> Callable[[], None]:
        return self.tick

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.close()
