"""One simulated run: a workload, a nemesis, invariants; and the search for a short
schedule that still fails.

A run is fixed by its seed: the tasks submitted (and stopped) and when, the faults and
when, and every choice the network and the loops make. It goes in three parts: tasks
arrive and faults strike; every fault ends; then the cluster is left alone for
``quiet`` seconds, and must have converged. The invariants (:mod:`cube.replay.check`)
are watched all along and checked once quiet.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

from cube import clock, faults, loops, text
from cube.replay import check
from cube.replay.client import Client
from cube.replay.cluster import Settings, SimCluster
from cube.replay.nemesis import Fault, heal_all, schedule, strike
from cube.replay.world import World
from cube.task import Task

BUSY = 20_000  # events at one instant that make a busy loop


@dataclass(frozen=True)
class Scenario:
    """The shape of a run (seconds of virtual time)."""

    tasks: int = 40
    arrive_within: float = 20.0
    stop_share: float = 0.2  # the share of tasks a client stops again
    bad_share: float = 0.1  # the share of tasks that crash by themselves
    faults_from: float = 3.0
    faults_until: float = 60.0
    quiet: float = 60.0
    managers: int = 1  # several: on a simulated etcd, one elected


@dataclass
class Outcome:
    """What a run did and found."""

    seed: int
    faults: list[Fault]
    violations: list[str]
    log: list[str]
    simulated: float
    wall: float
    steps: int
    samples: list[tuple[float, dict[str, list[str]]]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # task ID -> name
    final: dict[str, Task] = field(default_factory=dict)  # name -> the manager's record
    workers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def run(
    seed: int,
    scenario: Scenario | None = None,
    fault_list: list[Fault] | None = None,
    *,
    sample_every: float = 0.0,
    verbose: bool = False,
) -> Outcome:
    """Run seed ``seed`` (with ``fault_list`` instead of its own schedule, when given).
    ``sample_every`` > 0 records where each task's copies run, for the picture;
    ``verbose`` puts what the components log into the story too."""
    scenario = scenario or Scenario()
    world = World(seed)
    cluster = SimCluster(world, Settings(managers=scenario.managers))
    if fault_list is None:
        several = cluster.manager_names if cluster.shared else None
        fault_list = schedule(
            seed, cluster.names, scenario.faults_from, scenario.faults_until, managers=several
        )
    watch = check.Watch(cluster)
    samples: list[tuple[float, dict[str, list[str]]]] = []
    began = time.perf_counter()
    with _simulated(world, cluster, verbose):
        cluster.on_boot.append(watch.booted)
        cluster.boot()
        names = _workload(world, Client(cluster), watch, scenario)
        for fault in fault_list:
            world.at(fault.at, str(fault), lambda f=fault: strike(cluster, f))
        world.at(scenario.faults_until, "heal", lambda: heal_all(cluster))
        if sample_every:
            _sample(world, cluster, samples, sample_every)
        end = scenario.faults_until + scenario.quiet
        try:
            _drive(world, cluster, end)
            violations = watch.violations + check.quiet(cluster, watch)
        except Exception as exc:  # what escapes a component's loops: a finding too
            where = cluster.running or "the simulation"
            what = f"{type(exc).__name__} escaped {where}: {text.printable(exc)}"
            watch.fail(what)
            for line in traceback.format_exception(exc)[-12:]:
                world.say("traceback", text.printable(line.rstrip()))
            violations = watch.violations
    final = {}
    if cluster.manager is not None:
        final = {t.name: t for t in cluster.manager.tasks.records.all() if str(t.id) in names}
    return Outcome(
        seed,
        fault_list,
        violations,
        world.log,
        world.elapsed,
        time.perf_counter() - began,
        world.steps,
        samples,
        names,
        final,
        cluster.names,
    )


def _drive(world: World, cluster: SimCluster, end: float) -> None:
    """Run the world's events up to ``end`` seconds, each followed by what it made due.
    A component that keeps asking to run again at the same instant is a busy loop: a
    finding, not a hang."""
    instant, same = world.elapsed, 0
    while (at := world.next_at()) is not None and at <= end:
        event = world.step()
        assert event is not None
        same = same + 1 if world.elapsed == instant else 0
        instant = world.elapsed
        if same > BUSY:
            raise BusyLoop(f"{same} events at t={instant:.3f}s, the last: {event.what}")
        event.action()
        cluster.rounds.settle()
    world.advance(end)


class BusyLoop(RuntimeError):
    """Events queued again and again at one instant: time would never move on."""


def shrink(seed: int, outcome: Outcome, scenario: Scenario | None = None) -> list[Fault]:
    """The shortest prefix of ``outcome``'s faults that still fails, then with every
    fault that is not needed left out."""
    faults_ = outcome.faults
    for length in range(len(faults_) + 1):
        if not run(seed, scenario, faults_[:length]).ok:
            faults_ = faults_[:length]
            break
    for fault in list(faults_):
        fewer = [f for f in faults_ if f is not fault]
        if not run(seed, scenario, fewer).ok:
            faults_ = fewer
    return faults_


def _workload(
    world: World, client: Client, watch: check.Watch, scenario: Scenario
) -> dict[str, str]:
    """Queue the client's submissions and stops; returns task ID -> name."""
    rng = world.rng
    names = {}
    for i in range(scenario.tasks):
        image = "cube/echo:bad-exit" if rng.random() < scenario.bad_share else "cube/echo"
        task = Task(id=check.uuid_from(rng), name=f"t{i:02d}", image=image, health_check="/health")
        names[str(task.id)] = task.name
        at = rng.uniform(0.0, scenario.arrive_within)
        world.at(at, f"submit {task.name}", lambda t=task: _submit(world, client, watch, t))
        if rng.random() < scenario.stop_share:
            later = at + rng.uniform(1.0, scenario.faults_until)
            world.at(later, f"stop {task.name}", lambda t=task: _stop(world, client, watch, t))
    return names


def _submit(world: World, client: Client, watch: check.Watch, task: Task) -> None:
    if client.submit(task):
        watch.accepted[str(task.id)] = task.name
        world.say("client", f"{task.name} accepted")
    else:
        world.after(1.0, f"submit {task.name} again", lambda: _submit(world, client, watch, task))


def _stop(world: World, client: Client, watch: check.Watch, task: Task) -> None:
    key = str(task.id)
    if key not in watch.accepted:
        world.after(1.0, f"stop {task.name} again", lambda: _stop(world, client, watch, task))
    elif client.stop(key):
        watch.stopped.add(key)
        world.say("client", f"{task.name} stop accepted")
    else:
        world.after(1.0, f"stop {task.name} again", lambda: _stop(world, client, watch, task))


def _sample(world: World, cluster: SimCluster, samples: list, every: float) -> None:
    def look() -> None:
        samples.append((world.elapsed, cluster.copies()))
        world.after(every, "sample", look)

    world.at(0.0, "sample", look)


@contextlib.contextmanager
def _simulated(world: World, cluster: SimCluster, verbose: bool) -> Iterator[None]:
    """Virtual time and crash points for the run. What the components log goes into the
    run's story (``verbose``) or nowhere: never to the terminal of whoever runs it."""
    cube_log = logging.getLogger("cube")
    saved = cube_log.level, cube_log.propagate, list(cube_log.handlers)
    cube_log.handlers = [_Story(world, cluster)] if verbose else []
    cube_log.setLevel(logging.INFO if verbose else logging.CRITICAL + 1)
    cube_log.propagate = False
    try:
        with (
            clock.simulated(world),
            faults.simulated(cluster.at_point),
            loops.simulated(cluster.loops),
        ):
            yield
    finally:
        cube_log.level, cube_log.propagate, cube_log.handlers = saved


class _Story(logging.Handler):
    """Log records as lines of the run's story, stamped with virtual time."""

    def __init__(self, world: World, cluster: SimCluster) -> None:
        super().__init__(logging.INFO)
        self.world, self.cluster = world, cluster

    def emit(self, record: logging.LogRecord) -> None:
        self.world.say(self.cluster.running or "-", text.printable(record.getMessage()))
