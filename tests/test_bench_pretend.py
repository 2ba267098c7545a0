"""bench_scale's stand-in worker still works: the pretend runtime under the real worker.

``bench_scale`` loads one manager with a hundred workers whose runtime starts nothing
(:mod:`bench.pretend`). If that runtime drifted from the :class:`~cube.runtime.Runtime`
protocol, the benchmark would fail, or worse, measure something else; these tests
keep it honest. They assert no timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import free_port, kill, wait_healthy

from bench.pretend import PretendRuntime
from cube.client import WorkerClient
from cube.store import MemoryStore, WireCodec
from cube.task import State, Task, parse_submission
from cube.worker import Worker


def test_a_pretend_worker_process_runs_a_task_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "bench.pretend_worker", "--port", str(port)]
    command += ["--data-dir", str(tmp_path), "--dbtype", "memory"]
    with (tmp_path / "worker.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        with WorkerClient(url, timeout=10) as client:
            assert client.health()["Runtime"] == "process"  # placement takes it for one
            task = client.submit({"Name": "pretend", "Image": "cube/echo"})
            running = client.wait_for(task.id, State.Running, timeout=10)
            assert running.container_id.startswith("pretend-")
            status = client.runtime_status(task.id)
            assert status is not None and status["Running"] is True
            client.stop(task.id)
            client.wait_for(task.id, State.Completed, timeout=10)
            status = client.runtime_status(task.id)
            assert status is not None and status["Running"] is False
    finally:
        assert kill(proc, 15) == 0  # SIGTERM: it stops as cube worker does


def test_a_killed_pretend_copy_is_reported_failed_by_the_worker() -> None:
    runtime = PretendRuntime()
    worker = Worker("w", MemoryStore(WireCodec(Task)), runtime)
    try:
        task_id = str(worker.submit(parse_submission({"Name": "t", "Image": "cube/echo"})).id)
        worker.step()  # in this thread: the order is carried out, then inspected
        running = worker.get_task(task_id)
        assert running.state is State.Running
        runtime.kill(running.container_id)
        worker.step()
        failed = worker.get_task(task_id)
        assert failed.state is State.Failed
        assert "SIGKILL" in failed.reason
        assert [m.task_id for m in runtime.list_managed()] == [task_id]
    finally:
        worker.close()
