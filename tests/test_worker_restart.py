"""A worker as a real process: SIGKILL it with tasks running, restart, nothing is lost."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from helpers import all_in_state, cube_process, eventually, free_port, kill, wait_healthy

from cube.client import WorkerClient
from cube.http import StopSignals
from cube.task import State, Task
from cube.worker.worker import worker_runtime

IMAGES = {"process": "cube/echo", "docker": "cube/busybox:latest"}


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def kind(request):
    return request.param


def start_worker(tmp_path, kind, port, name):
    args = ["worker", "--port", str(port), "--name", name, "--runtime", kind]
    args += ["--data-dir", str(tmp_path), "--inspect-interval", "0.3"]
    proc = cube_process(*args, log=tmp_path / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def test_sigkill_then_restart_readopts_with_same_ids(tmp_path, kind):
    port, name = free_port(), f"w-{tmp_path.name[-12:]}"
    proc, url = start_worker(tmp_path, kind, port, name)
    client = WorkerClient(url)
    try:
        ids = [client.submit(Task(f"t{i}", IMAGES[kind])).id for i in range(3)]

        before = eventually(lambda: all_in_state(client, State.Running), what="3 Running")
        containers = {t.id: t.container_id for t in before}

        assert kill(proc) == -signal.SIGKILL
        proc, url = start_worker(tmp_path, kind, port, name)
        after = {t.id: t for t in WorkerClient(url).tasks()}
        assert set(after) == set(ids)
        for task_id in ids:
            assert after[task_id].state is State.Running
            assert after[task_id].container_id == containers[task_id]
            assert after[task_id].restart_count == 0
        runtime = worker_runtime(kind, tmp_path, name)
        assert sorted(m.status.container_id for m in runtime.list_managed()) == sorted(
            containers.values()
        )

        assert kill(proc, signal.SIGTERM) == 0  # a clean stop...
        proc, url = start_worker(tmp_path, kind, port, name)
        assert {t.container_id for t in WorkerClient(url).tasks()} == set(containers.values())
    finally:
        for task in client.tasks():
            client.stop(task.id)
        eventually(lambda: all(t.state is State.Completed for t in client.tasks()))
        kill(proc, signal.SIGTERM)


def test_a_second_worker_with_the_same_name_is_refused(tmp_path):
    port, name = free_port(), "twin"
    proc, _ = start_worker(tmp_path, "process", port, name)
    try:
        twin = cube_process(
            "worker",
            "--port",
            str(free_port()),
            "--name",
            name,
            "--data-dir",
            str(tmp_path),
            log=tmp_path / "twin.log",
        )
        assert twin.wait(timeout=30) == 1
        assert "is in use by pid" in (tmp_path / "twin.log").read_text()
    finally:
        kill(proc, signal.SIGTERM)


def test_a_burst_of_sigterms_still_stops_the_worker(tmp_path):
    """Asked to stop again and again (a cluster that stops its components signals each
    twice), a worker stops all the same: its handler takes no lock that a second signal
    could find held by the first, which once hung a process for good."""
    for i in range(3):
        proc, _ = start_worker(tmp_path, "process", free_port(), f"burst-{i}")
        try:
            end = time.monotonic() + 1
            while proc.poll() is None and time.monotonic() < end:
                proc.send_signal(signal.SIGTERM)
                spaced = time.perf_counter() + random.uniform(0.00002, 0.0003)
                while time.perf_counter() < spaced:  # closer than a sleep can wait
                    pass
            assert proc.wait(timeout=10) is not None
        finally:
            if proc.poll() is None:
                kill(proc, signal.SIGKILL)


def test_stop_signals_wait_for_the_first_of_many():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(poll=0.01) as stop:
        burst = threading.Thread(
            target=lambda: [os.kill(os.getpid(), signal.SIGTERM) for _ in range(200)]
        )
        burst.start()
        stop.wait()
        burst.join(5)
    assert stop.requested and not burst.is_alive()
    assert signal.getsignal(signal.SIGTERM) is before  # put back as it was
