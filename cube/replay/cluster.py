"""A whole Cube cluster inside one simulated world: the real manager, the real workers.

Every component is the production object (:class:`~cube.manager.Manager` with its
:class:`~cube.manager.control.Control`, :class:`~cube.worker.Worker` behind its real API
app), built over stores that play the disk (they outlive a crash, as files do), a
:class:`~cube.replay.machine.Machine` per worker (its processes outlive it too) and the
simulated network. Instead of threads, the world's queue drives each component's loops
(:mod:`cube.replay.rounds`): the manager's liveness, health and prune rounds, its watch
of each worker and its work queue; each worker's work queue and its inspection pass.

A component can crash (its object is dropped; its disk and its processes stay), come
back (a new object over the same disk, which recovers as a restarted process does),
pause (it does nothing and answers nothing), be cut off by a partition, or find its
disk full (:mod:`cube.replay.disk`).

With ``Settings(managers=3)``, three managers share a simulated etcd
(:mod:`cube.replay.etcd`) instead of a disk, as ``cube manager --store etcd://`` does:
each serves clients and mirrors the shared records, one is elected and runs the
control loops, and their leases, election and office changes run as the production
loops (:mod:`cube.loops`), each round an event of the world (:mod:`cube.replay.loops`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cube.etcd import Election, EtcdError
from cube.manager.manager import Manager
from cube.manager.retention import Retention
from cube.manager.stores import Stores
from cube.proof import LeaderSecret
from cube.replay.disk import Volume, WorkerDisk, manager_stores
from cube.replay.etcd_wires import SharedEtcd, SimEtcdClient
from cube.replay.loops import SimLoops
from cube.replay.machine import Machine, SimRuntime
from cube.replay.rounds import Rounds
from cube.replay.wires import Request, SimNetwork, Wires
from cube.replay.world import World
from cube.task import RestartPolicy
from cube.worker.api import make_app
from cube.worker.stats import StatsCollector
from cube.worker.worker import Worker

MANAGER = "manager"  # the one manager's name; several are m1, m2...
PORT = 5556
PREFIX = "/cube"  # where the managers keep their state on etcd
SECRET = LeaderSecret(b"the simulation's leader secret, 32 bytes or more")


class Crash(BaseException):
    """The component running now dies here, as from SIGKILL."""


@dataclass(frozen=True)
class Settings:
    """The cluster's shape and its components' periods (seconds)."""

    workers: int = 3
    update_interval: float = 1.0
    health_interval: float = 2.0
    node_ttl: float = 3.0
    inspect_every: float = 2.0
    watch_every: tuple[float, float] = (0.05, 0.6)
    prune_every: float = 30.0
    restart: RestartPolicy = field(default_factory=lambda: RestartPolicy(3, 1.0, 8.0))
    max_events: int = 400
    managers: int = 1  # more than one: on a shared etcd, one of them elected
    lease_ttl: int = 3


class FixedStats:
    """A worker's ``/stats`` in the simulation: one machine's shape, numbers fixed, so
    that no reading of the real machine reaches a decision."""

    _shape: dict[str, Any] | None = None

    def sample(self, task_count: int) -> dict[str, Any]:
        if FixedStats._shape is None:
            shape = StatsCollector().sample(task_count=0)
            shape["MemStats"].update(mem_total=8 << 20, mem_free=6 << 20, mem_available=6 << 20)
            shape["DiskStats"].update({"all": 100 << 30, "used": 10 << 30, "free": 90 << 30})
            shape.update(CpuPercent=10.0, Cores=4)
            FixedStats._shape = shape
        return {**copy.deepcopy(FixedStats._shape), "TaskCount": task_count}


class SimCluster:
    """One manager and ``settings.workers`` workers in ``world``."""

    def __init__(self, world: World, settings: Settings | None = None) -> None:
        self.world, self.settings = world, settings or Settings()
        self.wires = Wires(world, task_health=self._task_health)
        self.names = [f"w{i + 1}" for i in range(self.settings.workers)]
        self.machines = {name: Machine(name, world) for name in self.names}
        self.volumes = {name: Volume(name) for name in (MANAGER, *self.names)}
        self.disks = {name: WorkerDisk(self.volumes[name]) for name in self.names}
        self.workers: dict[str, Worker | None] = dict.fromkeys(self.names)
        self.manager_stores = manager_stores(self.volumes[MANAGER])
        count = self.settings.managers
        self.manager_names = [MANAGER] if count == 1 else [f"m{i + 1}" for i in range(count)]
        self.managers: dict[str, Manager | None] = dict.fromkeys(self.manager_names)
        self.etcd: SharedEtcd | None = None  # several managers: the etcd they share
        self.loops = SimLoops(self)
        self.rounds = Rounds(self)
        self.order_checks: list[Callable[[str, Request], None]] = []
        self.paused: set[str] = set()
        self.running = ""  # the component whose code runs now (for crash points)
        self.armed: dict[str, str] = {}  # component -> the fault point it dies at
        self.on_boot: list[Callable[[str], None]] = []
        self.given_up: set[str] = set()
        self._lives: dict[str, int] = {}
        if self.shared:
            self.etcd = SharedEtcd(world, self.wires)
            self.wires.on_send = self._sent

    @property
    def shared(self) -> bool:
        """Several managers, on etcd."""
        return self.settings.managers > 1

    @property
    def manager(self) -> Manager | None:
        """The manager that acts: the one manager, or the leader of several (None when
        none leads now)."""
        if not self.shared:
            return self.managers[MANAGER]
        for name in self.manager_names:
            manager = self.managers[name]
            if manager is not None and manager.control is not None and manager.acting:
                return manager
        return None

    # ------------------------------------------------------------------ lifecycle

    def boot(self) -> None:
        for name in self.names:
            self.start(name)
        for name in self.manager_names:
            self.start(name)

    def start(self, name: str) -> None:
        """Start ``name`` on its disk (a first start, or a restart after a crash)."""
        life = self._lives[name] = self._lives.get(name, 0) + 1
        self.paused.discard(name)
        if name in self.managers:
            self.run_as(name, lambda: self._start_manager(name))
        else:
            self.run_as(name, lambda: self._start_worker(name))
        self.rounds.start(name, life)
        self.world.say(name, "started" if life == 1 else f"restarted (life {life})")
        for hook in self.on_boot:
            hook(name)

    def crash(self, name: str, why: str = "crashed") -> None:
        """``name`` dies now: its object is dropped; its disk and processes stay."""
        if not self.up(name):
            return
        self._lives[name] += 1  # its loops end: they belong to the life that died
        if name in self.managers:
            self.managers[name] = None
        else:
            self.workers[name] = None
            self.wires.host(name).app = None
        self.paused.discard(name)
        self.world.say(name, why)

    def pause(self, name: str) -> None:
        if self.up(name):
            self.paused.add(name)
            self.wires.host(name).paused = True
            self.world.say(name, "paused")

    def resume(self, name: str) -> None:
        if name in self.paused:
            self.paused.discard(name)
            self.wires.host(name).paused = False
            self.world.say(name, "resumed")
            self.loops.resumed(name)

    def up(self, name: str) -> bool:
        if name in self.managers:
            return self.managers[name] is not None
        return self.workers.get(name) is not None

    def acting(self, name: str) -> bool:
        return self.up(name) and name not in self.paused

    def life(self, name: str) -> int:
        return self._lives.get(name, 0)

    def address(self, worker: str) -> str:
        """Where the managers reach ``worker``: its node's name."""
        return f"{worker}:{PORT}"

    def _start_manager(self, name: str) -> None:
        options: dict[str, Any] = dict(
            update_interval=self.settings.update_interval,
            health_interval=self.settings.health_interval,
            node_ttl=self.settings.node_ttl,
            restart=self.settings.restart,
            http_timeout=1.0,
            retention=Retention(max_events=self.settings.max_events),
            network=SimNetwork(self.wires, name),
        )
        workers = [self.address(worker) for worker in self.names]
        if not self.shared:
            self.managers[name] = Manager(workers, "roundrobin", self.manager_stores, **options)
            return
        client = SimEtcdClient(self, name)
        election = Election(
            client, f"{PREFIX}/leader", name, self.settings.lease_ttl, info={"API": name}
        )
        try:
            manager = Manager(
                workers,
                "roundrobin",
                Stores.on_etcd(client, PREFIX),
                election=election,
                leader_secret=SECRET,
                series_key=f"{PREFIX}/series",
                **options,
            )
            assert manager.leadership is not None
            manager.leadership.start()
        except EtcdError as exc:  # as a process that cannot start: its supervisor retries
            self.world.say(name, f"could not start ({exc}); starting again in a second")
            self._lives[name] += 1
            self.world.after(1.0, f"start {name}", lambda: self._start_again(name))
            return
        self.managers[name] = manager

    def _start_again(self, name: str) -> None:
        if not self.up(name):
            self.start(name)

    def _start_worker(self, name: str) -> None:
        disk = self.disks[name]
        worker = Worker(
            name,
            disk.tasks,
            SimRuntime(self.machines[name], owner=name),
            timers=disk.timers,
            forgotten=disk.forgotten,
            leader=disk.leader,
            inspect_interval=self.settings.inspect_every,
            leader_secret=SECRET if self.shared else None,
        )
        worker._stats = FixedStats()  # type: ignore[assignment]
        self.workers[name] = worker
        host = self.wires.host(name)
        host.app, host.paused = make_app(worker), False
        worker.recover()

    # ------------------------------------------------------- running a component's code

    def run_as(self, name: str, body: Callable[[], None]) -> None:
        """Run ``body`` as component ``name``'s code; a crash point it reaches kills it."""
        self.running = name
        try:
            body()
        except Crash:
            self.crash(name, f"crashed at {self.armed.pop(name, 'a fault point')}")
        finally:
            self.running = ""

    def at_point(self, point: str) -> None:
        """The fault-point handler (:func:`cube.faults.simulated`)."""
        if self.running and self.armed.get(self.running) == point:
            raise Crash(point)

    # ------------------------------------------------------------------ tasks

    def _task_health(self, host: str, port: int) -> str:
        process = self.machines[host].by_port(port) if host in self.machines else None
        if process is None or not process.running:
            return f"GET {host}:{port} failed: ConnectionError"
        return "" if process.healthy else f"GET {host}:{port} answered 500"

    def copies(self) -> dict[str, list[str]]:
        """task ID -> the machines where a copy of it runs now."""
        where: dict[str, list[str]] = {}
        for name, machine in self.machines.items():
            for process in machine.live():
                where.setdefault(process.task_id, []).append(name)
        return where

    def _sent(self, source: str, request: Request) -> None:
        """Every request on the wires: an order from a manager to a worker goes to the
        checks."""
        to = urlsplit(request.url).hostname or ""
        if source in self.managers and to in self.workers and request.method != "GET":
            for check in self.order_checks:
                check(source, request)

    def leads_in_etcd(self, name: str) -> bool:
        """Whether etcd has manager ``name`` leading now (several managers)."""
        manager = self.managers.get(name)
        if manager is None or manager.leadership is None or self.etcd is None:
            return False
        return self.etcd.leads(manager.leadership.election)
