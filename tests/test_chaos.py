"""Chaos with real processes: SIGKILL workers, the manager and a store writer over and
over, and take the Docker daemon away from a worker, then check nothing was lost,
duplicated or left behind."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from helpers import all_in_state, cube_process, eventually, free_port, kill, wait_healthy

from cube.client import ManagerClient, WorkerClient
from cube.runtime import Runtime
from cube.store import DiskStore
from cube.task import State, Task, TaskEvent
from cube.worker.worker import worker_runtime

IMAGES = {"process": "cube/echo", "docker": "cube/busybox:latest"}
LIVE = (State.Scheduled, State.Running)


def start_worker(
    tmp: Path,
    kind: str,
    port: int,
    name: str,
    env: dict[str, str] | None = None,
    reconcile: float = 0.3,
) -> tuple[subprocess.Popen, str]:
    args = ["worker", "--port", str(port), "--name", name, "--runtime", kind]
    args += ["--data-dir", str(tmp), "--inspect-interval", str(reconcile)]
    proc = cube_process(*args, log=tmp / f"{name}.log", env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, timeout=30)
    return proc, url


def stop_everything(runtime: Runtime) -> None:
    """Stop whatever the runtime still runs for its owner, whatever the test left."""
    managed = runtime.list_managed()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(runtime.stop, [m.status.container_id for m in managed]))


# ------------------------------------------------------------------ worker SIGKILL x10


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def kind(request) -> str:
    return request.param


def test_a_worker_killed_ten_times_keeps_its_twenty_tasks(tmp_path, kind):
    port, name = free_port(), f"chaos-{tmp_path.name[-12:]}"
    runtime = worker_runtime(kind, tmp_path, name)
    proc, url = start_worker(tmp_path, kind, port, name)
    client = WorkerClient(url, timeout=30)
    try:
        for i in range(20):
            client.submit(Task(f"t{i}", IMAGES[kind]))
        first = eventually(
            lambda: len(tasks := all_in_state(client, State.Running)) == 20 and tasks,
            timeout=120,
            what="20 tasks Running",
        )
        containers = {t.id: t.container_id for t in first}

        for _ in range(10):
            assert kill(proc) == -signal.SIGKILL
            proc, url = start_worker(tmp_path, kind, port, name)
            after = {t.id: t for t in client.tasks()}
            assert set(after) == set(containers)
            for task_id, container_id in containers.items():
                task = after[task_id]
                assert (task.state, task.container_id, task.restart_count) == (
                    State.Running,
                    container_id,
                    0,
                )
            managed = sorted(m.status.container_id for m in runtime.list_managed())
            assert managed == sorted(containers.values())
    finally:
        if proc.poll() is None:
            for task in client.tasks():
                if task.state in LIVE:
                    client.stop(task.id)
            eventually(
                lambda: all(t.state is State.Completed for t in client.tasks()),
                timeout=120,
                what="every task stopped",
            )
            kill(proc, signal.SIGTERM)
        stop_everything(runtime)
    assert runtime.list_managed() == []


# ------------------------------------------------------- manager SIGKILL in a 500 storm


class StormCluster:
    """Three ``cube worker`` processes (ProcessRuntime) and a ``cube manager`` with its
    state on disk, all real child processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.names = [f"sw{i}" for i in range(3)]
        self.worker_urls = []
        self.workers = []
        for name in self.names:  # inspecting ~170 processes each is work: not too often
            proc, url = start_worker(tmp, "process", free_port(), name, reconcile=2.0)
            self.workers.append(proc)
            self.worker_urls.append(url)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        addresses = ",".join(u.removeprefix("http://") for u in self.worker_urls)
        self.manager_args = [
            "manager", "--port", str(self.port), "--workers", addresses,
            "--scheduler", "roundrobin", "--data-dir", str(tmp), "--update-interval", "1",
            "--node-ttl", "5",
        ]  # fmt: skip
        self.manager = self.start_manager()

    def start_manager(self) -> subprocess.Popen:
        proc = cube_process(*self.manager_args, log=self.tmp / "manager.log")
        wait_healthy(self.url, proc, timeout=30)
        return proc

    def worker_tasks(self) -> list[Task]:
        return [t for url in self.worker_urls for t in WorkerClient(url, timeout=30).tasks()]

    def close(self) -> None:
        """Stop the manager (so it restarts nothing), the tasks through their workers
        (which reap their own children fast), the workers, and then anything left."""
        try:
            kill(self.manager, signal.SIGTERM)
            self._stop_tasks()
        finally:
            for proc in self.workers:
                kill(proc, signal.SIGTERM)
            for name in self.names:
                stop_everything(worker_runtime("process", self.tmp, name))

    def _stop_tasks(self) -> None:
        live = [
            f"{url}/tasks/{t.id}"
            for url, proc in zip(self.worker_urls, self.workers, strict=True)
            if proc.poll() is None
            for t in WorkerClient(url, timeout=30).tasks()
            if t.state in LIVE
        ]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda task_url: requests.delete(task_url, timeout=30), live))
        eventually(
            lambda: not any(t.state in LIVE for t in self.worker_tasks()),
            timeout=120,
            what="every task stopped",
        )


class Storm:
    """500 submissions from four threads, each a TaskEvent with fixed IDs so that one
    whose answer was lost can be sent again as the very same submission."""

    def __init__(self, url: str, count: int, kill_after: int) -> None:
        self.url = url
        self.bodies = [
            TaskEvent(task=Task(f"storm-{i}", "cube/echo")).to_wire() for i in range(count)
        ]
        self.accepted: list[str] = []
        self.unanswered: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.kill_after = kill_after
        self.reached = threading.Event()
        self._next = iter(self.bodies)
        self._lock = threading.Lock()

    def run(self, threads: int = 4) -> None:
        senders = [threading.Thread(target=self._send) for _ in range(threads)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        self.reached.set()

    def _send(self) -> None:
        session = requests.Session()
        while True:
            with self._lock:
                body = next(self._next, None)
            if body is None:
                return
            try:
                response = session.post(f"{self.url}/tasks", json=body, timeout=10)
            except requests.RequestException:
                with self._lock:
                    self.unanswered.append(body)
                continue
            with self._lock:
                if response.status_code != 201:
                    self.refused.append(response.text)
                    continue
                self.accepted.append(body["Task"]["ID"])
                if len(self.accepted) >= self.kill_after:
                    self.reached.set()


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_manager_killed_mid_storm_loses_and_duplicates_nothing(tmp_path, seed):
    cluster = StormCluster(tmp_path)
    try:
        storm = Storm(cluster.url, 500, kill_after=random.Random(seed).randint(25, 475))
        sender = threading.Thread(target=storm.run)
        sender.start()
        storm.reached.wait(timeout=120)
        kill(cluster.manager)
        sender.join()
        assert storm.refused == []
        assert 0 < len(storm.accepted) < 500, "the kill should land mid-storm"

        cluster.manager = cluster.start_manager()
        client = ManagerClient(cluster.url, timeout=30)
        known = [str(t.id) for t in client.tasks()]
        assert len(known) == len(set(known))  # no task twice
        assert set(storm.accepted) <= set(known)  # nothing accepted was lost

        session = requests.Session()
        for body in storm.unanswered:  # the client retries what it got no answer for
            response = session.post(f"{cluster.url}/tasks", json=body, timeout=10)
            assert response.status_code == 201, response.text
        every_id = {body["Task"]["ID"] for body in storm.bodies}
        known = [str(t.id) for t in client.tasks()]
        assert sorted(known) == sorted(every_id)

        eventually(
            lambda: len(all_in_state(client, State.Running)) == 500,
            timeout=240,
            what="all 500 tasks Running",
        )
        live = Counter(str(t.id) for t in cluster.worker_tasks() if t.state in LIVE)
        assert set(live) == every_id
        assert set(live.values()) == {1}  # exactly one live copy of each, on one worker
    finally:
        cluster.close()


# ------------------------------------------------------------- store writer SIGKILL x20

WRITER = """
import sys
from cube.store import DiskStore
store = DiskStore(sys.argv[1])
round_ = sys.argv[2]
for i in range(1_000_000):
    store.put(f"{round_}-{i}", {"round": round_, "i": i, "pad": "x" * 200})
    print(i, flush=True)
"""


def test_a_disk_store_killed_mid_write_twenty_times_keeps_every_acknowledged_write(tmp_path):
    rng = random.Random(7)
    acknowledged: dict[str, int] = {}  # round -> last i the writer said was stored
    for round_ in map(str, range(20)):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "store"), round_],
            stdout=subprocess.PIPE,
            text=True,
        )
        wanted = rng.randint(1, 300)
        last = -1
        for line in writer.stdout:  # type: ignore[union-attr]
            last = int(line)
            if last + 1 >= wanted:
                break
        assert last + 1 == wanted, "the writer stopped by itself"
        writer.kill()  # most likely in the middle of the next put
        writer.wait()
        writer.stdout.close()  # type: ignore[union-attr]
        acknowledged[round_] = last

        store = DiskStore(tmp_path / "store")
        try:
            for done, last_i in acknowledged.items():
                for i in range(last_i + 1):
                    assert store.get(f"{done}-{i}") == {"round": done, "i": i, "pad": "x" * 200}
            assert len(store) >= sum(n + 1 for n in acknowledged.values())
        finally:
            store.close()


# ------------------------------------------------------------ Docker daemon goes away


class PrivateDockerd:
    """A dockerd of this test's own, started the way scripts/docker-up.sh starts the
    shared one (``nohup dockerd --storage-driver=vfs > log 2>&1 &``) but with its own
    socket, data, bridge and pid file, so that stopping it cannot break the shared engine
    the rest of the suite uses, whatever happens to this test. ``live_restore``: its
    containers outlive it (Docker's --live-restore); without, SIGTERM stops them first."""

    BRIDGE_NET = "172.29.77.1/24"

    def __init__(self, live_restore: bool) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="cdd-", dir="/tmp"))  # short socket paths
        self.host = f"unix://{self.home}/docker.sock"
        self.bridge = f"cubechaos{os.getpid() % 100_000}"
        self.live_restore = live_restore
        self.proc: subprocess.Popen | None = None

    def setup(self) -> None:
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", self.BRIDGE_NET, "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)

    def start(self) -> None:
        command = [
            "nohup", "dockerd", "--storage-driver=vfs", "--host", self.host,
            "--data-root", str(self.home / "root"), "--exec-root", str(self.home / "exec"),
            "--pidfile", str(self.home / "docker.pid"), "--bridge", self.bridge,
            "--iptables=false", "--ip-masq=false",
        ]  # fmt: skip
        if self.live_restore:
            command.append("--live-restore")
        with (self.home / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        eventually(self._answers, timeout=60, what="the private dockerd answering")

    def stop(self) -> None:
        """SIGTERM, and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=30)

    def teardown(self) -> None:
        """Remove its containers (starting it again if a test left it stopped: a
        live-restore daemon's containers outlive it), stop it, and remove its bridge and
        files, each step done even if an earlier one failed."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            with closing(self.client()) as client:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
        finally:
            try:
                self.stop()
            finally:
                subprocess.run(["ip", "link", "del", self.bridge], check=False)
                root = self.home / "root"
                while _mounted(root):  # dockerd bind-mounts its root and may leave it
                    subprocess.run(["umount", str(root)], check=True)
                shutil.rmtree(self.home, ignore_errors=True)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"dockerd exited: {(self.home / 'dockerd.log').read_text()}")
        with closing(self.client()) as client:
            return bool(client.ping())


def _mounted(path: Path) -> bool:
    """Is something mounted on ``path``? (os.path.ismount misses a bind mount from the
    same file system.)"""
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(path) for line in mounts)


@pytest.fixture(params=[False, True], ids=["containers-die", "live-restore"])
def private_dockerd(request) -> Iterator[PrivateDockerd]:
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("dockerd")):
        reason = "a private dockerd needs root, `ip` and `dockerd`"
        if os.environ.get("CUBE_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    daemon = PrivateDockerd(live_restore=request.param)
    try:
        daemon.setup()
        daemon.start()
        with closing(docker.from_env()) as shared, closing(daemon.client()) as private:
            private.images.load(b"".join(shared.images.get(IMAGES["docker"]).save(named=True)))
        yield daemon
    finally:
        daemon.teardown()


def _task_with_runtime(url: str, task_id: str) -> dict[str, Any]:
    return requests.get(f"{url}/tasks/{task_id}", timeout=30).json()


def _blind_to_the_daemon(url: str, task_id: str) -> dict[str, Any] | None:
    """GET /tasks/{id} once the worker says its runtime cannot be asked."""
    answer = _task_with_runtime(url, task_id)
    runtime = answer["Runtime"] or {}
    return answer if runtime.get("Status") == "unknown" else None


@pytest.mark.docker
def test_a_worker_rides_out_its_docker_daemon_going_away(tmp_path, private_dockerd):
    name = f"dd-{tmp_path.name[-12:]}"
    env = {"DOCKER_HOST": private_dockerd.host}
    proc, url = start_worker(tmp_path, "docker", free_port(), name, env=env)
    client = WorkerClient(url, timeout=30)
    try:
        task = client.submit(Task("web", IMAGES["docker"]))
        container_id = client.wait_for(task.id, State.Running, timeout=60).container_id

        private_dockerd.stop()
        honest = eventually(
            lambda: _blind_to_the_daemon(url, str(task.id)),
            timeout=30,
            what="the worker saying it cannot ask the daemon",
        )
        assert "Docker daemon" in honest["Runtime"]["Reason"]
        if private_dockerd.live_restore or honest["State"] == State.Running:
            honest = eventually(
                lambda: (
                    (t := _task_with_runtime(url, str(task.id)))["Reason"].startswith(
                        "cannot inspect"
                    )
                    and t
                ),
                what="the task's Reason saying it cannot be inspected",
            )
            assert honest["State"] == State.Running  # nobody can know better now
        else:  # the daemon stopped the container before it went, and the worker saw it
            assert honest["State"] == State.Failed
            assert honest["Reason"].startswith("container exited")
        assert proc.poll() is None, "the worker must not crash"
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        assert requests.get(f"{url}/stats", timeout=5).status_code == 200
        blind = client.submit(Task("during", IMAGES["docker"]))
        failed = client.wait_for(blind.id, State.Failed, timeout=60)
        assert "Docker daemon" in failed.reason

        private_dockerd.start()
        after = eventually(
            lambda: _informed(client.task(task.id)),
            timeout=60,
            what="the task Failed, or Running and inspected again",
        )
        if private_dockerd.live_restore:  # the container survived: re-inspected, same one
            assert (after.state, after.container_id) == (State.Running, container_id)
        else:
            assert after.state is State.Failed
            assert after.reason and not after.reason.startswith("cannot inspect")
        fresh = client.submit(Task("after", IMAGES["docker"]))
        assert client.wait_for(fresh.id, State.Running, timeout=60).container_id
    finally:
        kill(proc, signal.SIGTERM)  # the fixture removes every container the daemon has


def _informed(task: Task) -> Task | None:
    """The task once the worker knows again what became of it."""
    return task if task.state is State.Failed or not task.reason else None
