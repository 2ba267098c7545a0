"""A real ``cube manager`` and many pretend workers, each its own process, for bench_scale.

:class:`~cube.cluster.LocalCluster` runs real ``cube worker`` processes, whose tasks
are real processes too; a hundred workers running 10,000 tasks would bury a 2-core
machine under the tasks, not the control plane. So :class:`Fleet` starts the manager as
``cube manager`` does (its state on disk, on loopback, its defaults but the two named
here) and each worker as ``python -m bench.pretend_worker`` (:mod:`bench.pretend`: the
real worker and API, a runtime that starts nothing), with their state in memory: on a
real cluster each worker writes to its own disk, and a hundred of them fsyncing to this
machine's one disk would slow the manager's own writes.

Everything is in one temporary folder, named on every command line, and nothing
outlives the fleet: :meth:`Fleet.stop` (also on Ctrl-C or an error, as a context
manager) stops the manager, then the workers, and removes the folder; a
:class:`~cube.reaper.Reaper` does the same if the benchmark itself is killed; and
:meth:`Fleet.leftovers` looks for anything left (a process naming the folder, or
carrying the fleet's mark in its environment, or the folder itself).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from cube.client import ManagerClient
from cube.ports import free_ports
from cube.reaper import Reaper

MARK = "CUBE_BENCH_SCALE"  # in the environment of every process the fleet starts
NODE_TTL = 5.0  # the manager's --node-ttl: seconds of silence before a worker is down
UPDATE_INTERVAL = 1.0  # the manager's --update-interval: seconds between liveness probes
STOP_TIMEOUT = 30.0
EPHEMERAL = "/proc/sys/net/ipv4/ip_local_port_range"
POLL = 0.1  # seconds between two looks while waiting for processes to answer
# Variables a caller's shell may set that would change what the fleet's processes do.
UNSET = ("CUBE_TOKEN", "CUBE_WORKER_TOKEN", "CUBE_MANAGER_TOKEN", "CUBE_CLIENT_TOKEN")
UNSET += ("CUBE_STORE", "CUBE_LEADER_SECRET_FILE", "CUBE_DATA_DIR", "CUBE_ALLOWED_IMAGES")


@dataclass
class Member:
    """One process of the fleet: the manager or a worker."""

    name: str
    port: int
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Fleet:
    """``cube manager`` and ``workers`` pretend workers on free loopback ports.

    >>> with Fleet(workers=10) as fleet:
    ...     fleet.client.submit({"Name": "t", "Image": "cube/echo"})
    """

    def __init__(self, workers: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="cube-bench-scale-"))
        self.mark = uuid.uuid4().hex
        logs = self.folder / "logs"
        logs.mkdir()
        self.workers: dict[str, Member] = {}
        ports = free_ports(workers + 1)
        for i, port in enumerate(ports[1:], start=1):
            name = f"worker-{i}"
            args = ["-m", "bench.pretend_worker", "--port", str(port), "--name", name]
            args += ["--data-dir", str(self.folder), "--dbtype", "memory"]
            args += ["--log-level", "warning"]  # a line per task start, times 10,000
            self.workers[name] = Member(name, port, args, logs / f"{name}.log")
        port = ports[0]
        args = ["-m", "cube", "manager", "--port", str(port), "--data-dir", str(self.folder)]
        args += ["--workers", ",".join(w.address for w in self.workers.values())]
        args += ["--node-ttl", f"{NODE_TTL:g}", "--update-interval", f"{UPDATE_INTERVAL:g}"]
        self.manager = Member("manager", port, args, logs / "manager.log")
        self.client = ManagerClient(self.manager.url, timeout=60)
        self._reaper: Reaper | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float) -> Fleet:
        """Start the workers, then the manager; return once the manager says every
        worker is up (or stop everything again and raise, saying why)."""
        self._reaper = Reaper(self.folder, remove=True)  # if this process is killed
        try:
            deadline = time.monotonic() + timeout
            for worker in self.workers.values():
                self._spawn(worker)
            for worker in self.workers.values():
                self._wait_healthy(worker, deadline)
            self._spawn(self.manager)
            self._wait_healthy(self.manager, deadline)
            self._wait_all_up(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str) -> None:
        """SIGKILL one worker, as a crashed machine would go."""
        proc = self.workers[name].proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, keep_logs: Path | None = None) -> None:
        """Stop the manager, then every worker (SIGTERM; SIGKILL past STOP_TIMEOUT);
        copy the logs to ``keep_logs`` if given; remove the folder."""
        self.client.close()
        _terminate([self.manager])
        _terminate(list(self.workers.values()))
        if keep_logs is not None:
            shutil.copytree(self.folder / "logs", keep_logs, dirs_exist_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.done()
            self._reaper = None

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------- views

    def worker_at(self, address: str) -> Member:
        """The worker the manager calls ``address`` (its nodes are named host:port)."""
        return next(w for w in self.workers.values() if w.address == address)

    def pids(self) -> tuple[int, list[int]]:
        """The manager's pid, and the live workers'."""
        assert self.manager.proc is not None
        workers = [w.proc.pid for w in self.workers.values() if w.proc and w.alive]
        return self.manager.proc.pid, workers

    def tail(self, name: str, lines: int = 8) -> str:
        member = self.manager if name == "manager" else self.workers[name]
        try:
            text = member.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line[:200]}" for line in text)

    def leftovers(self) -> list[str]:
        """Anything of this fleet still there: the folder, or a process."""
        found = [f"folder {self.folder}"] if self.folder.exists() else []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == os.getpid():
                continue
            try:
                command = " ".join(proc.info["cmdline"] or ())
                ours = str(self.folder) in command or proc.environ().get(MARK) == self.mark
            except (psutil.Error, OSError):
                continue
            if ours:
                found.append(f"process {proc.pid}: {command[:120]}")
        return found

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, member: Member) -> None:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update({"PYTHONUNBUFFERED": "1", MARK: self.mark})
        with member.log.open("ab") as out:
            member.proc = subprocess.Popen(
                [sys.executable, *member.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the benchmark, which stops us
            )

    def _wait_healthy(self, member: Member, deadline: float) -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if not member.alive:
                    raise RuntimeError(f"{member.name} exited:\n{self.tail(member.name)}")
                try:
                    if session.get(f"{member.url}/health", timeout=2).ok:
                        return
                except requests.RequestException:
                    pass
                time.sleep(POLL)
        raise TimeoutError(f"{member.name} did not answer in time:\n{self.tail(member.name)}")

    def _wait_all_up(self, deadline: float) -> None:
        """Until ``GET /nodes`` says every worker is up. Polled: its index moves with
        every probe answer, so a blocking query on it would answer at once anyway."""
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {n["Name"]: n["State"] for n in self.client.nodes()}
            if len(states) == len(self.workers) and set(states.values()) == {"up"}:
                return
            time.sleep(POLL)
        down = sorted(n for n, s in states.items() if s != "up")
        raise TimeoutError(f"workers not up in time: {', '.join(down[:10])}")


def _terminate(members: list[Member]) -> None:
    """SIGTERM them all at once, then wait for each; SIGKILL what outlives the wait."""
    live = [m for m in members if m.alive]
    for member in live:
        assert member.proc is not None
        member.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for member in live:
        assert member.proc is not None
        try:
            member.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            member.proc.kill()
            member.proc.wait()
