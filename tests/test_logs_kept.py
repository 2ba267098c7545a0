"""A stopped task's output stays readable as long as the manager keeps the task, though
its worker forgets it at once; `cube logs` says when a task printed nothing, and when
its output is gone. Real worker and manager processes, real HTTP."""

from __future__ import annotations

import signal
import uuid

import pytest
import requests
from click.testing import CliRunner
from helpers import Procs, cube_process, eventually, free_port, kill, wait_healthy

from cube.cli import cli
from cube.client import ManagerClient, NotFound, WorkerClient
from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app
from cube.manager.outputs import last_lines
from cube.task import State, Task, TaskEvent


@pytest.fixture
def procs(tmp_path):
    cluster = Procs(tmp_path)
    yield cluster
    cluster.close()


def forgotten_by(worker: WorkerClient, task_id: str) -> bool:
    try:
        worker.task(task_id)
    except NotFound:
        return True
    return False


def talk(task: Task) -> str:
    """Make a running cube/echo print a line of its own; returns what it will say."""
    marker = f"marker-{uuid.uuid4().hex}"
    (binding,) = task.host_ports.values()
    port = binding[0]["HostPort"]
    requests.get(f"http://127.0.0.1:{port}/{marker}", timeout=5)
    return marker


def cube_logs(url: str, task_id: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["logs", task_id, "--manager", url])
    return result.exit_code, result.stdout, result.stderr


def test_a_stopped_tasks_output_outlives_its_worker_forgetting_it(procs):
    procs.start_worker("w1")
    procs.start_manager()
    manager = ManagerClient(procs.url, timeout=10)
    worker = WorkerClient(procs.worker_url("w1"), timeout=5)
    task = manager.submit({"Name": "talker", "Image": "cube/echo"})
    key = str(task.id)
    marker = talk(manager.wait_for(key, State.Running, timeout=30))

    def said() -> str:
        text = manager.logs(key)
        return text if marker in text else ""

    running = eventually(said, what="the task's output while it runs")

    manager.stop(key)
    manager.wait_for(key, State.Completed, timeout=30)
    eventually(lambda: forgotten_by(worker, key), what="the worker forgetting the task")
    after = manager.logs(key)
    assert set(running.splitlines()) <= set(after.splitlines()), (running, after)
    assert last_lines(after, 1) in after and manager.logs(key, 1) == last_lines(after, 1)
    code, out, _ = cube_logs(procs.url, key)
    assert code == 0 and marker in out

    procs.signal("manager", signal.SIGTERM)  # kept, not held in memory: a restart keeps it
    procs.start_manager()
    assert marker in ManagerClient(procs.url, timeout=10).logs(key)


def test_cube_logs_says_when_a_task_printed_nothing(procs):
    procs.start_worker("w1")
    procs.start_manager()
    manager = ManagerClient(procs.url, timeout=10)
    waiting = manager.submit({"Name": "roomless", "Image": "cube/echo", "Memory": 1 << 50})
    code, out, err = cube_logs(procs.url, str(waiting.id))
    assert code == 0 and out == "" and "printed nothing yet" in err


def test_cube_logs_says_why_when_the_output_is_gone(tmp_path):
    """A worker that forgets finished tasks at once (``--retention 0``) forgets this one
    before the manager has looked: the manager could keep nothing, and says so."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["worker", "--port", str(port), "--name", "w1", "--runtime", "process"]
    args += ["--data-dir", str(tmp_path), "--inspect-interval", "0.2", "--retention", "0"]
    proc = cube_process(*args, log=tmp_path / "w1.log")
    boss = Manager([f"127.0.0.1:{port}"], "roundrobin", update_interval=0.2)
    try:
        wait_healthy(url, proc)
        with Server(make_app(boss)) as server:
            task = boss.submit(TaskEvent(task=Task(name="brief", image="cube/echo")))
            key = str(task.id)
            eventually(lambda: boss.step() or boss.get_task(key).state is State.Running)
            boss.stop(key)
            boss.step()  # sends the stop, and nothing looks again until the worker forgot
            eventually(lambda: forgotten_by(WorkerClient(url), key), what="the worker forgetting")
            boss.step()
            code, _, err = cube_logs(server.url, key)
            assert code == 1 and "is gone" in err and "forgotten" in err, err
            answer = requests.get(f"{server.url}/tasks/{key}/logs", timeout=5)
            assert answer.status_code == 410, answer.text
    finally:
        boss.close()
        kill(proc, signal.SIGTERM)
