"""A whole Cube cluster on one machine: a manager and N workers as real processes.

Real processes, so that "restart the manager" is a real restart and "kill a worker" is a
real SIGKILL: what a notebook shows is what happens on a real cluster. ``cube up`` is
this class behind a command line.

With ``managers=3, store="etcd"`` it runs three managers on an etcd of its own (one
member, or ``etcd_members=3``, started here on free ports, its data beside the rest):
one leads, the others take over when it dies.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from cube.client import ManagerClient, WorkerClient
from cube.etcd.local import LocalEtcd
from cube.ports import free_port
from cube.procs import process_state
from cube.proof import LeaderSecret
from cube.reaper import Reaper, reap
from cube.runtime import resolve
from cube.worker.worker import worker_runtime

if TYPE_CHECKING:
    from cube.certs import LocalTLS

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
DEMO_IMAGES = {"process": "cube/echo", "docker": "cube/busybox:latest"}


@dataclass
class Component:
    """One process of the cluster, a manager or a worker: started, waited for until it
    answers, signalled and stopped, each by its own process handle."""

    name: str
    port: int
    args: list[str]
    log: Path
    host: str = "127.0.0.1"
    scheme: str = "http"  # https with tls=True
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def state(self) -> str:
        """running, paused (SIGSTOP), or stopped."""
        return process_state(self.proc)

    def _live(self) -> subprocess.Popen[bytes] | None:
        """Its process, if it still runs."""
        return self.proc if self.proc is not None and self.proc.poll() is None else None

    def spawn(self, env: dict[str, str]) -> None:
        """Start it (in a session of its own: Ctrl-C reaches ``cube up``, which stops
        the components in order), its output appended to its log."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cube", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def wait_ready(self, verify: str | bool) -> None:
        """Wait until its ``/health`` answers; raise, with the end of its log, if it
        exits or is silent for ``START_TIMEOUT`` seconds."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._live() is None:
                raise RuntimeError(f"{self.name} exited: {_tail(self.log)}")
            try:
                if requests.get(f"{self.url}/health", timeout=1, verify=verify).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer in {START_TIMEOUT:g}s: {_tail(self.log)}")

    def send_signal(self, sig: signal.Signals) -> None:
        if (proc := self._live()) is not None:
            proc.send_signal(sig)

    def ask_to_stop(self) -> None:
        """SIGTERM, without waiting (after SIGCONT: a paused process cannot act on it)."""
        if (proc := self._live()) is not None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()

    def stop(self) -> None:
        """SIGTERM, and wait for it to exit; SIGKILL if it has not in 30 s."""
        if (proc := self._live()) is None:
            return
        self.ask_to_stop()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in 30 s; killing it", self.name)
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if (proc := self._live()) is not None:
            proc.kill()
            proc.wait()


class LocalCluster:
    """A manager and ``workers`` workers on this machine, each its own process.

    >>> with LocalCluster(workers=3, runtime="process") as cluster:
    ...     task = cluster.client.submit({"Name": "web", "Image": "cube/echo"})

    ``runtime="auto"`` picks Docker when a daemon answers and local processes otherwise
    (as on Binder); :attr:`runtime_reason` says why. Ports are free ones unless given.
    State lives in ``data_dir`` (a temporary directory, removed by :meth:`stop`, when
    none is given), so a restarted component finds its state again.

    Nothing outlives the process that started the cluster: :meth:`start` also starts a
    :class:`~cube.reaper.Reaper`, which stops every component and task (and removes the
    temporary directory) if this process dies without calling :meth:`stop`, as a
    notebook kernel that is shut down, restarted or killed does.
    """

    def __init__(
        self,
        workers: int = 3,
        runtime: str = "auto",
        scheduler: str = "epvm",
        data_dir: str | Path | None = None,
        *,
        manager_port: int = 0,
        manager_ports: list[int] | None = None,
        worker_ports: list[int] | None = None,
        token: str | None = None,
        worker_token: str | None = None,
        update_interval: float = 1.0,
        health_interval: float = 5.0,
        node_ttl: float = 5.0,
        restart_limit: int = 3,
        restart_base: float = 1.0,
        inspect_interval: float = 1.0,
        keep_tasks: bool = False,
        managers: int = 1,
        store: str | None = None,
        etcd_members: int = 1,
        lease_ttl: int = 3,
        tls: bool = False,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="cube-"))
        self.runtime, self.runtime_reason = resolve(runtime)
        self.scheduler = scheduler
        self.token, self.worker_token = token, worker_token
        self.keep_tasks = keep_tasks
        self.tls = _local_tls(self.data_dir / "tls") if tls else None
        self.verify: str | bool = str(self.tls.ca) if self.tls else True
        ports = worker_ports or [0] * workers
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.workers: dict[str, Component] = {}
        for i, port in enumerate(ports, start=1):
            name, port = f"worker-{i}", port or free_port()
            args = ["worker", *_flags(port=port, name=name, runtime=self.runtime)]
            args += _flags(data_dir=self.data_dir, inspect_interval=inspect_interval)
            if not keep_tasks:
                args.append("--stop-tasks-on-exit")
            self.workers[name] = Component(name, port, args, logs / f"{name}.log")
            self.workers[name].scheme = "https" if tls else "http"
        if managers > 1 and not store:
            raise ValueError("several managers share their state on etcd: give store='etcd'")
        self.etcd = self._etcd(store, etcd_members)
        workers_flag = ",".join(w.address for w in self.workers.values())
        common = _flags(scheduler=scheduler, workers=workers_flag, data_dir=self.data_dir)
        common += _flags(update_interval=update_interval, health_interval=health_interval)
        common += _flags(node_ttl=node_ttl, restart_limit=restart_limit)
        common += _flags(restart_base=restart_base)
        if self.etcd is not None:
            common += _flags(store=self.etcd.url if store == "etcd" else store)
            common += _flags(lease_ttl=lease_ttl)
            # the managers sign their epochs with it, the workers check them with it
            secret = _flags(leader_secret=LeaderSecret.create(self.data_dir / "leader.secret"))
            common += secret
            for worker in self.workers.values():
                worker.args += secret
        self.managers: dict[str, Component] = {}
        for i in range(1, managers + 1):
            name = "manager" if i == 1 else f"manager-{i}"
            given = manager_ports or [manager_port]
            port = (given[i - 1] if i <= len(given) else 0) or free_port()
            args = ["manager", *_flags(port=port), *common]
            self.managers[name] = Component(name, port, args, logs / f"{name}.log")
            self.managers[name].scheme = "https" if tls else "http"
        self.manager = self.managers["manager"]
        self.client = ManagerClient(self.manager.url, token=token, timeout=10)
        self.client.verify = self.verify
        self.closed = False  # True once stop() has run; start() opens it again
        self._reaper: Reaper | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> LocalCluster:
        """Start every component that is not running and wait until each answers
        (if one cannot start, the others are stopped again, and the error says why)."""
        atexit.register(self.stop)  # an interpreter that exits without stop() leaves nothing
        self.closed = False
        if self._reaper is None:  # ...and neither does one that is killed
            workers = list(self.workers)
            self._reaper = Reaper(
                self.data_dir, remove=self._own_dir, runtime=self.runtime, workers=workers
            )
        try:
            if self.etcd is not None and isinstance(self.etcd, LocalEtcd):
                self.etcd.start()
            for component in self.components():
                if component.state == "stopped":
                    component.spawn(self._env(component))
            for component in self.components():
                component.wait_ready(self.verify)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the manager, then the workers (which stop their tasks unless
        ``keep_tasks``). If this cluster made its data directory, it removes it, and
        ends any task still running from it first: nothing could adopt it later."""
        atexit.unregister(self.stop)
        for group in (self.managers.values(), self.workers.values()):
            for component in group:
                component.ask_to_stop()  # all at once, then each waited for
            for component in group:
                component.stop()
        self.client.close()
        if isinstance(self.etcd, LocalEtcd):
            self.etcd.stop()
        if self._own_dir:  # tasks kept (keep_tasks) could never be adopted again: end them
            reap(self.data_dir, remove=True, runtime=self.runtime, workers=list(self.workers))
        if self._reaper is not None:
            self._reaper.done()
            self._reaper = None
        self.closed = True

    def restart(self, name: str) -> None:
        """Stop a component gracefully (SIGTERM) and start it again with the same
        port and state; works on a killed or paused component too."""
        component = self.component(name)
        component.stop()
        component.spawn(self._env(component))
        component.wait_ready(self.verify)

    def kill(self, name: str) -> None:
        """SIGKILL a component, as a crash would; :meth:`restart` brings it back."""
        self.component(name).kill()

    def pause(self, name: str) -> None:
        """SIGSTOP: the process is alive but answers nothing (a hung machine)."""
        self.component(name).send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.component(name).send_signal(signal.SIGCONT)

    def crash_task(self, task_id: str) -> None:
        """SIGKILL a task's container or process behind Cube's back, as a crash would:
        the worker notices at its next inspection and the manager restarts it."""
        task = self.client.task(task_id)
        worker = next(c for c in self.workers.values() if c.address == task.worker)
        self.crash_container(worker.name, task.container_id)

    def crash_container(self, worker: str, container_id: str) -> None:
        """SIGKILL one container or process that worker ``worker`` (a name) runs, for
        tasks placed by another manager than the cluster's own (a notebook's)."""
        name = self.component(worker).name
        worker_runtime(self.runtime, self.data_dir, name).kill(container_id)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------- views

    def components(self) -> list[Component]:
        return [*self.workers.values(), *self.managers.values()]

    def component(self, name: str) -> Component:
        found = self.managers.get(name) or self.workers.get(name)
        if found is None:
            known = ", ".join([*self.managers, *self.workers])
            raise KeyError(f"no component {name!r}; the cluster has {known}")
        return found

    def leader(self) -> str | None:
        """The name of the manager that leads now (the only one, with a single
        manager), or None while none does (an election under way)."""
        for name, component in self.managers.items():
            if component.state != "running":
                continue
            try:
                url = f"{component.url}/health"
                health = requests.get(url, timeout=1, verify=self.verify).json()
            except (requests.RequestException, ValueError):
                continue
            if health.get("Leading"):
                return name
        return None

    def manager_client(self, name: str) -> ManagerClient:
        """A client of one manager (any of them answers the whole API)."""
        return ManagerClient(self.component(name).url, token=self.token, timeout=10)

    @property
    def image(self) -> str:
        """An image this cluster's runtime can run, for demonstrations."""
        return DEMO_IMAGES[self.runtime]

    def worker_client(self, name: str) -> WorkerClient:
        client = WorkerClient(self.component(name).url, token=self.worker_token)
        client.verify = self.verify
        return client

    def describe(self) -> str:
        """Where everything listens, for people."""
        lines = [f"runtime: {self.runtime} ({self.runtime_reason})", f"data:    {self.data_dir}"]
        if self.etcd is not None:
            lines.append(f"store:   {getattr(self.etcd, 'url', self.etcd)}")
        for c in (*self.managers.values(), *self.workers.values()):
            extra = f"  scheduler {self.scheduler}" if c is self.manager else ""
            lines.append(f"  {c.name:<10} {c.url:<24} {c.state}{extra}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LocalCluster({len(self.workers)} workers, {self.runtime}, {self.manager.url})"

    # ------------------------------------------------------------------ plumbing

    def _etcd(self, store: str | None, members: int) -> LocalEtcd | str | None:
        """The etcd the managers share: one started here (``"etcd"``), one given
        (``"etcd://..."``), or none (the manager's own disk)."""
        if not store:
            return None
        if store == "etcd":
            return LocalEtcd.on_free_ports(self.data_dir / "etcd", members)
        if store.startswith("etcd://"):
            return store
        raise ValueError(f"store is 'etcd' (started here) or etcd://HOST:PORT,..., not {store!r}")

    def _env(self, component: Component) -> dict[str, str]:
        """The environment ``component`` runs with: this one, with only the tokens this
        cluster was given (and its TLS settings)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("CUBE_TOKEN", None)
        for name in ("CUBE_WORKER_TOKEN", "CUBE_MANAGER_TOKEN", "CUBE_CLIENT_TOKEN"):
            env.pop(name, None)  # the roles' tokens too: only what this cluster was given
        if component in self.managers.values():
            env.update(
                {"CUBE_TOKEN": self.token or "", "CUBE_WORKER_TOKEN": self.worker_token or ""}
            )
        else:
            env["CUBE_TOKEN"] = self.worker_token or ""
        if self.tls is not None:
            env.update(self.tls.env())
        return env


def _local_tls(directory: Path) -> LocalTLS:
    from cube.certs import local_tls  # cryptography is loaded only when TLS is asked for

    return local_tls(directory)


def _flags(**options: object) -> list[str]:
    """``port=5555, data_dir=x`` -> ``["--port", "5555", "--data-dir", "x"]``."""
    return [part for k, v in options.items() for part in (f"--{k.replace('_', '-')}", str(v))]


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
