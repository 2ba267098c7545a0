"""Real processes: SIGKILL the manager mid-submission; SIGSTOP and SIGCONT a worker."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest
import requests
from helpers import all_in_state, cube_process, eventually, free_port, kill, wait_healthy

from cube.client import ManagerClient, WorkerClient
from cube.task import State, Task


class ProcessCluster:
    """``cube worker`` x3 and ``cube manager`` as real child processes."""

    def __init__(self, tmp_path, scheduler="roundrobin", ttl="2"):
        self.tmp = tmp_path
        self.worker_ports = [free_port() for _ in range(3)]
        self.workers = [self._worker(i) for i in range(3)]
        self.addresses = [f"127.0.0.1:{p}" for p in self.worker_ports]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.manager_args = [
            "manager", "--port", str(self.port), "--workers", ",".join(self.addresses),
            "--scheduler", scheduler, "--data-dir", str(tmp_path), "--update-interval", "0.3",
            "--node-ttl", ttl, "--health-interval", "1",
        ]  # fmt: skip
        self.manager = self.start_manager()
        self.client = ManagerClient(self.url, timeout=10)
        eventually(
            lambda: all(n["State"] == "up" for n in self.client.nodes()), timeout=30, what="up"
        )

    def _worker(self, i):
        port = self.worker_ports[i]
        proc = cube_process(
            "worker", "--port", str(port), "--name", f"w{i}", "--runtime", "process",
            "--data-dir", str(self.tmp), "--inspect-interval", "0.3",
            log=self.tmp / f"w{i}.log",
        )  # fmt: skip
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        return proc

    def start_manager(self):
        proc = cube_process(*self.manager_args, log=self.tmp / "manager.log")
        wait_healthy(self.url, proc)
        return proc

    def live_copies(self):
        """task id -> number of workers running it (asking the workers directly)."""
        copies = {}
        for port in self.worker_ports:
            for task in WorkerClient(f"127.0.0.1:{port}").tasks():
                if task.state is State.Running:
                    copies[str(task.id)] = copies.get(str(task.id), 0) + 1
        return copies

    def close(self):
        kill(self.manager, signal.SIGTERM)
        for port, proc in zip(self.worker_ports, self.workers, strict=True):
            if proc.poll() is None:
                with_client = WorkerClient(f"127.0.0.1:{port}")
                for task in with_client.tasks():
                    if task.state in (State.Scheduled, State.Running):
                        with_client.stop(task.id)
        for proc in self.workers:
            eventually(lambda p=proc: _no_live_children(p), timeout=15, what="tasks stopped")
            kill(proc, signal.SIGTERM)


def _no_live_children(proc):
    import psutil

    return True if proc.poll() is not None else not psutil.Process(proc.pid).children()


@pytest.fixture
def cluster(tmp_path):
    c = ProcessCluster(tmp_path)
    yield c
    c.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_mid_submission_loses_nothing_and_duplicates_nothing(tmp_path, seed):
    c = ProcessCluster(tmp_path)
    try:
        accepted: list[str] = []
        rng = random.Random(seed)
        kill_after = rng.uniform(0.3, 1.5)

        def storm():
            session = requests.Session()
            for i in range(200):
                task = Task(f"storm-{i}", "cube/echo")
                try:
                    r = session.post(
                        f"{c.url}/tasks",
                        json={"Name": task.name, "Image": task.image, "ID": str(task.id)},
                        timeout=5,
                    )
                except requests.RequestException:
                    return
                if r.status_code == 201:
                    accepted.append(r.json()["ID"])

        sender = threading.Thread(target=storm)
        sender.start()
        time.sleep(kill_after)
        kill(c.manager)
        sender.join()
        assert 0 < len(accepted) < 200, f"the kill should land mid-storm ({len(accepted)} accepted)"

        c.manager = c.start_manager()
        known = {str(t.id) for t in c.client.tasks()}
        assert set(accepted) <= known  # nothing accepted was lost
        eventually(
            lambda: all_in_state(c.client, State.Running),
            timeout=90,
            what="every task Running after the restart",
        )
        copies = c.live_copies()
        assert set(copies) == known
        assert set(copies.values()) == {1}  # exactly one live copy of each
    finally:
        c.close()


def test_a_silent_worker_is_marked_down_and_its_tasks_move(cluster):
    ids = [cluster.client.submit({"Name": f"t{i}", "Image": "cube/echo"}).id for i in range(3)]
    tasks = eventually(lambda: all_in_state(cluster.client, State.Running), what="Running")
    victim = cluster.addresses.index(tasks[0].worker)
    moved = {str(t.id) for t in tasks if t.worker == cluster.addresses[victim]}

    cluster.workers[victim].send_signal(signal.SIGSTOP)
    started = time.monotonic()
    try:

        def rescheduled():
            now = {str(t.id): t for t in cluster.client.tasks()}
            return all(
                now[i].state is State.Running and now[i].worker != cluster.addresses[victim]
                for i in moved
            )

        eventually(rescheduled, timeout=10, what="tasks moved off the stopped worker")
        assert time.monotonic() - started < 10
        nodes = {n["Name"]: n for n in cluster.client.nodes()}
        assert nodes[cluster.addresses[victim]]["State"] == "down"
    finally:
        cluster.workers[victim].send_signal(signal.SIGCONT)

    eventually(lambda: set(cluster.live_copies().values()) == {1}, timeout=10, what="one copy")
    assert set(cluster.live_copies()) == {str(i) for i in ids}
    eventually(
        lambda: {n["State"] for n in cluster.client.nodes()} == {"up"}, what="worker back up"
    )
