"""A local etcd cluster as real processes: for ``cube up --store etcd`` and the tests.

The same layout as ``scripts/etcd-up.sh`` (which also installs Debian's ``etcd-server``
when it is missing; this module only runs the ``etcd`` it finds): member *i* listens
for clients on ``port + 2i`` and for its peers on ``port + 2i + 1``, on 127.0.0.1
only, its data in ``<directory>/member-i``. A member that already answers on its port
is left alone (and not stopped by :meth:`LocalEtcd.stop`): starting twice is safe.
Single members can be killed, paused and started again, which is what the fault tests
do to a three-member cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from cube.etcd.client import EtcdClient
from cube.ports import free_ports
from cube.procs import process_state


def etcd_binary() -> str | None:
    """The ``etcd`` program on PATH, if any (Debian: ``apt-get install etcd-server``)."""
    return shutil.which("etcd")


class Member:
    """One etcd member process."""

    def __init__(self, cluster: LocalEtcd, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"member-{index}"
        self.client_port = cluster.port + 2 * index
        self.peer_port = self.client_port + 1
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.data_dir = cluster.directory / self.name
        self.log = cluster.directory / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def healthy(self, timeout: float = 1.0) -> bool:
        with EtcdClient(self.url) as client:
            return client.healthy(self.url, timeout)

    @property
    def state(self) -> str:
        """running, paused (SIGSTOP) or stopped, from the process table (asks nothing)."""
        return process_state(self.proc)

    def leads(self, timeout: float = 1.0) -> bool | None:
        """Is this member the cluster's raft leader now? None when it cannot say (not
        running, or no answer within ``timeout``). A paused member is not asked."""
        if self.state != "running":
            return None
        try:
            answer = requests.post(f"{self.url}/v3/maintenance/status", json={}, timeout=timeout)
            status = answer.json()
            return str(status["leader"]) == str(status["header"]["member_id"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

    def start(self) -> Member:
        """Start the process (not waiting for it to answer); a member that answers
        already is left alone."""
        if self.running or self.healthy(0.5):
            return self
        binary = etcd_binary()
        if binary is None:
            raise FileNotFoundError("no etcd on PATH: run scripts/etcd-up.sh (Debian etcd-server)")
        state = "existing" if (self.data_dir / "member").is_dir() else "new"
        args = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.cluster.initial_cluster}",
            f"--initial-cluster-state={state}",
            f"--initial-cluster-token=cube-etcd-{self.cluster.port}",
            "--auto-compaction-mode=periodic",
            f"--auto-compaction-retention={self.cluster.compaction}",
            *self.cluster.extra_args,
        ]
        self.cluster.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Send ``sig`` (SIGSTOP pauses the member, SIGCONT resumes it)."""
        if self.running and self.proc is not None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL: a crash. Its data stays; :meth:`start` brings it back."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a paused member cannot stop
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None


class LocalEtcd:
    """``members`` etcd processes on 127.0.0.1, clients from ``port`` on."""

    def __init__(
        self,
        directory: str | Path,
        members: int = 1,
        port: int = 2379,
        *,
        compaction: str = "10m",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.directory = Path(directory)
        self.port = port
        self.compaction = compaction
        self.extra_args = tuple(extra_args)
        self.members = [Member(self, i) for i in range(members)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @classmethod
    def on_free_ports(cls, directory: str | Path, members: int = 1, **options: Any) -> LocalEtcd:
        """A cluster on ports nobody listens on now (for tests)."""
        return cls(directory, members, free_ports(2 * members, consecutive=True)[0], **options)

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """What ``--store`` takes: ``etcd://127.0.0.1:2379,...``."""
        return "etcd://" + ",".join(u.removeprefix("http://") for u in self.endpoints)

    def client(self, timeout: float = 5.0) -> EtcdClient:
        return EtcdClient(self.endpoints, timeout)

    def start(self, timeout: float = 30.0) -> LocalEtcd:
        """Start every member not running, and wait until all answer healthy (a
        member is healthy once the cluster has a leader)."""
        for member in self.members:
            member.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for member in members or self.members:
            while not member.healthy():
                if member.proc is not None and member.proc.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited: {_tail(member.log)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {member.name} not healthy: {_tail(member.log)}")
                time.sleep(0.1)

    def leader(self, timeout: float = 1.0) -> Member | None:
        """The member that leads the raft group now, or None (an election under way,
        or none of the running members answered within ``timeout``)."""
        return next((m for m in self.members if m.leads(timeout)), None)

    def stop(self) -> None:
        """Stop the members this object started (their data stays)."""
        for member in self.members:
            member.stop()

    def remove(self) -> None:
        """Stop, and delete the data."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
