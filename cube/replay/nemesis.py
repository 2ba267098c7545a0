"""The nemesis: a seeded schedule of faults, as data.

A schedule is a list of :class:`Fault`, each at a time into the run, on one component
(or the network), lasting a while. It is made from the seed alone, before the run, so
it can be printed, cut down (:func:`cube.replay.run.shrink` looks for the shortest
prefix that still fails) and replayed. What a fault picks at the moment it strikes (which
process to kill) comes from the run's own random source, which the seed fixes too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cube.replay.cluster import MANAGER, SimCluster
from cube.replay.etcd_wires import ETCD

KINDS = (
    "crash",  # the component dies (SIGKILL); it comes back after `lasts`
    "crash at point",  # it dies at the next fault point it reaches (`point`)
    "pause",  # it freezes (SIGSTOP) for `lasts`
    "partition",  # it is cut off from everyone for `lasts`
    "kill task",  # one of the worker's task processes dies
    "hang task",  # one of the worker's task processes stops answering its health check
    "lossy network",  # requests and answers are lost for `lasts`
    "late requests",  # requests arrive late (after later ones) for `lasts`
)
DISK_FULL = "disk full"  # every write to the component's disk fails for `lasts`
# A manager's crash that lasts longer than this is its machine's (a power cut): its disk
# loses what was not flushed. A shorter one is the process's, whose committed writes stay.
POWER_CUT_OVER = 6.0
POINTS = {MANAGER: ("manager-saved", "manager-sending"), "worker": ("worker-started",)}
ETCD_KINDS = ("pause", "partition")  # etcd itself is not killed: its durability is its own


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    target: str = ""
    lasts: float = 0.0
    point: str = ""

    def __str__(self) -> str:
        what = f"{self.kind} {self.target}".strip()
        if self.point:
            what += f" ({self.point})"
        return f"t={self.at:.2f}s {what}" + (f" for {self.lasts:.1f}s" if self.lasts else "")


def schedule(
    seed: int,
    workers: list[str],
    start: float,
    end: float,
    count: tuple[int, int] = (3, 12),
    managers: list[str] | None = None,
) -> list[Fault]:
    """The faults of run ``seed``, between ``start`` and ``end`` seconds (``managers``:
    several, on etcd, which the nemesis strikes too)."""
    several = bool(managers)
    if several:  # the managers (above all the leader) struck as often as the workers
        mix = Mix(f"nemesis-managers-{seed}", (4, 2, 8, 4, 2, 1, 1, 2), 0.5, etcd=True)
    else:
        mix = Mix(f"nemesis-{seed}", (6, 3, 3, 3, 3, 2, 1, 2), 0.25, etcd=False)
    faults = _draw(mix, workers, managers or [MANAGER], start, end, count)
    if not several:
        # Full disks come from a stream of their own: added later, they leave every
        # other fault of a seed where it was, so a seed that failed before still means
        # that run. (Managers on etcd have no disk of their own.)
        disks = random.Random(f"disks-{seed}")
        for _ in range(disks.choice((0, 0, 1, 2))):
            at, lasts = round(disks.uniform(start, end), 3), round(disks.uniform(0.5, 10.0), 3)
            faults.append(Fault(at, DISK_FULL, disks.choice([MANAGER, *workers]), lasts))
    return sorted(faults, key=lambda f: f.at)


@dataclass(frozen=True)
class Mix:
    """How a nemesis draws: its random stream, the weight of each of :data:`KINDS`, the
    share of faults that strike a manager, and whether etcd is struck too."""

    stream: str
    weights: tuple[int, ...]
    manager_share: float
    etcd: bool


def _draw(
    mix: Mix,
    workers: list[str],
    managers: list[str],
    start: float,
    end: float,
    count: tuple[int, int],
) -> list[Fault]:
    rng = random.Random(mix.stream)
    faults = []
    for _ in range(rng.randint(*count)):
        at = round(rng.uniform(start, end), 3)
        kind = rng.choices(KINDS, weights=mix.weights)[0]
        roll = rng.random()
        target = _pick(rng, managers) if roll < mix.manager_share else rng.choice(workers)
        if mix.etcd and kind in ETCD_KINDS and roll > 0.9:
            target = ETCD
        if kind in ("kill task", "hang task"):
            target = rng.choice(workers)
        if kind in ("lossy network", "late requests"):
            target = ""
        point = ""
        if kind == "crash at point":
            point = rng.choice(POINTS[MANAGER if target in managers else "worker"])
        lasts = round(rng.uniform(0.5, 12.0), 3)
        faults.append(Fault(at, kind, target, lasts, point))
    return faults


def _pick(rng: random.Random, names: list[str]) -> str:
    """One of ``names``; a choice of one draws nothing (so one manager's seeds keep the
    runs they always had)."""
    return names[0] if len(names) == 1 else rng.choice(names)


def strike(cluster: SimCluster, fault: Fault) -> None:
    """Do ``fault`` now (and undo it when it lasts no longer)."""
    world, name = cluster.world, fault.target
    world.say("nemesis", str(fault))
    if fault.kind == "crash":
        cluster.crash(name)
        if fault.lasts > POWER_CUT_OVER and name == MANAGER:  # on etcd, no disk of its own
            lost = cluster.volumes[name].power_cut()
            world.say("nemesis", f"{name}'s machine lost its power: {lost} unflushed writes lost")
        world.after(fault.lasts, f"restart {name}", lambda: _restart(cluster, name))
    elif fault.kind == "crash at point":
        cluster.armed[name] = fault.point
        world.after(fault.lasts, f"restart {name}", lambda: _restart(cluster, name))
    elif fault.kind == "pause" and name == ETCD:
        cluster.wires.host(ETCD).paused = True
        world.after(
            fault.lasts, "resume etcd", lambda: setattr(cluster.wires.host(ETCD), "paused", False)
        )
    elif fault.kind == "pause":
        cluster.pause(name)
        world.after(fault.lasts, f"resume {name}", lambda: cluster.resume(name))
    elif fault.kind == "partition":
        cluster.wires.cut_off.add(name)
        world.after(fault.lasts, f"heal {name}", lambda: _heal(cluster, name))
    elif fault.kind in ("kill task", "hang task"):
        live = cluster.machines[name].live()
        if live:
            process = world.rng.choice(live)
            if fault.kind == "kill task":
                cluster.machines[name].end(process, 137, "killed (SIGKILL)")
            else:
                process.healthy = False
            world.say("nemesis", f"{fault.kind}: {process.container_id} of {process.task_id[:8]}")
    elif fault.kind == DISK_FULL:
        volume = cluster.volumes[name]
        volume.full = True
        world.after(fault.lasts, f"room on {name}", lambda: setattr(volume, "full", False))
    elif fault.kind == "lossy network":
        cluster.wires.loss = 0.2
        world.after(fault.lasts, "network heals", lambda: setattr(cluster.wires, "loss", 0.0))
    elif fault.kind == "late requests":
        cluster.wires.late = 0.2
        world.after(fault.lasts, "network heals", lambda: setattr(cluster.wires, "late", 0.0))


def heal_all(cluster: SimCluster) -> None:
    """The end of the faults: every component back, the network whole."""
    cluster.world.say("nemesis", "every fault ends")
    cluster.wires.loss = cluster.wires.late = 0.0
    for name in list(cluster.wires.cut_off):
        _heal(cluster, name)
    cluster.armed.clear()
    for volume in cluster.volumes.values():
        volume.full = False
    if cluster.shared:
        cluster.wires.host(ETCD).paused = False
    for name in [*cluster.manager_names, *cluster.names]:
        cluster.resume(name)
        if not cluster.up(name):
            cluster.start(name)


def _restart(cluster: SimCluster, name: str) -> None:
    cluster.armed.pop(name, None)
    if not cluster.up(name):
        cluster.start(name)


def _heal(cluster: SimCluster, name: str) -> None:
    if name in cluster.wires.cut_off:
        cluster.wires.cut_off.discard(name)
        cluster.world.say(name, "partition healed")
