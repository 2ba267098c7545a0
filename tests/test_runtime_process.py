"""The process runtime with real processes: the echo service's routes, ports, stopping,
crashes, and re-adopting processes whose worker went away."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from helpers import free_port

from cube.runtime import RuntimeFailure, Started, UnknownImage
from cube.runtime.process import ProcessRuntime
from cube.task import Task

OWNER = "test-worker"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "processes"


@pytest.fixture
def runtime(state_dir: Path) -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(owner=OWNER, state_dir=state_dir)
    yield rt
    for managed in rt.list_managed():
        rt.stop(managed.status.container_id)


def url(started: Started, path: str = "/") -> str:
    [binding] = next(iter(started.host_ports.values()))
    return f"http://{binding['HostIp']}:{binding['HostPort']}{path}"


def pid_of(started: Started) -> int:
    return requests.get(url(started), timeout=2).json()["Pid"]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start_in_subprocess(state_dir: Path, image: str) -> dict[str, str]:
    """Start a task from a separate Python process that then exits, as a worker that
    dies would; returns what it printed."""
    code = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from cube.runtime.process import ProcessRuntime
        from cube.task import Task
        task = Task("web", {image!r})
        started = ProcessRuntime({OWNER!r}, Path({str(state_dir)!r})).start(task)
        print(json.dumps({{"id": started.container_id, "task": str(task.id)}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_echo_routes(runtime):
    started = runtime.start(Task("web", "cube/echo"))
    root = requests.get(url(started), timeout=2)
    assert root.status_code == 200 and root.json()["Service"] == "cube/echo"
    health = requests.get(url(started, "/health"), timeout=2)
    assert (health.status_code, health.text.strip()) == (200, "OK")
    fail = requests.get(url(started, "/healthfail"), timeout=2)
    assert (fail.status_code, fail.text.strip()) == (500, "Internal server error")
    echoed = requests.post(url(started), json={"Msg": "hello, Cube"}, timeout=2)
    assert (echoed.status_code, echoed.json()) == (200, {"Msg": "hello, Cube"})
    bad = requests.post(url(started), data="not json", timeout=2)
    assert bad.status_code == 400 and "not JSON" in bad.json()["Error"]
    assert requests.get(url(started, "/nope"), timeout=2).status_code == 404
    assert requests.post(url(started, "/nope"), json={}, timeout=2).status_code == 404


def test_start_returns_once_the_service_listens(runtime):
    for _ in range(3):
        started = runtime.start(Task("web", "cube/echo:latest"))
        assert requests.get(url(started, "/health"), timeout=1).status_code == 200


def test_busybox_has_no_healthfail(runtime):
    started = runtime.start(Task("web", "cube/busybox"))
    assert requests.get(url(started, "/health"), timeout=2).status_code == 200
    assert requests.get(url(started, "/healthfail"), timeout=2).status_code == 404


def test_unknown_image_names_what_it_can_run(runtime, state_dir):
    task = Task("web", "nginx:1.27")
    with pytest.raises(UnknownImage) as checked:
        runtime.check(task)
    with pytest.raises(UnknownImage) as started:
        runtime.start(task)
    for exc in (checked.value, started.value):
        assert "'nginx:1.27'" in str(exc) and "cube/echo, cube/busybox" in str(exc)
    runtime.check(Task("web", "cube/busybox:latest"))
    assert list(state_dir.iterdir()) == []


def test_port_bindings_are_honoured(runtime):
    port = free_port()
    task = Task("web", "cube/echo", exposed_ports=("80/tcp",), port_bindings={"80/tcp": str(port)})
    started = runtime.start(task)
    assert started.host_ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert runtime.inspect(started.container_id).host_ports == started.host_ports
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200


def test_default_container_port(runtime):
    started = runtime.start(Task("web", "cube/echo"))
    assert list(started.host_ports) == ["7777/tcp"]


def test_port_in_use_is_a_clear_failure(runtime, state_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        task = Task("web", "cube/echo", port_bindings={"7777/tcp": str(port)})
        with pytest.raises(RuntimeFailure, match=f"port {port} is already in use on 127.0.0.1"):
            runtime.start(task)
    assert list(state_dir.iterdir()) == []


def test_stop_is_idempotent_and_the_process_is_gone(runtime, state_dir):
    started = runtime.start(Task("web", "cube/echo"))
    pid = pid_of(started)
    runtime.stop(started.container_id)
    assert not psutil.pid_exists(pid)
    status = runtime.inspect(started.container_id)
    assert (status.running, status.state) == (False, "missing")
    assert started.container_id in status.reason
    runtime.stop(started.container_id)
    runtime.stop("proc-000000000000")
    runtime.stop("not-an-id")
    assert runtime.list_managed() == []
    assert [p.name for p in state_dir.iterdir()] == [f"{started.container_id}.log"]
    assert "listening on" in runtime.logs(started.container_id)  # its output outlives it
    runtime.forget(started.container_id)
    assert list(state_dir.iterdir()) == [] and runtime.logs(started.container_id) == ""


def test_killed_process_is_reported(runtime):
    started = runtime.start(Task("web", "cube/echo"))
    pid = pid_of(started)
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # wait, but leave reaping to the runtime
    status = runtime.inspect(started.container_id)
    assert (status.running, status.state, status.exit_code) == (False, "exited", 137)
    assert status.reason == "process was killed by SIGKILL"
    [managed] = runtime.list_managed()
    assert managed.status == status


def test_bad_exit_crashes_with_code_1(runtime):
    started = runtime.start(Task("web", "cube/echo:bad-exit"))
    pid = pid_of(started)
    assert runtime.inspect(started.container_id).running
    assert psutil.Process(pid).wait(timeout=10) == 1
    status = runtime.inspect(started.container_id)
    assert (status.running, status.state, status.exit_code) == (False, "exited", 1)
    assert status.reason == "process exited with code 1"
    assert "exiting with code 1" in runtime.logs(started.container_id)


def test_logs_have_one_line_per_request(runtime):
    started = runtime.start(Task("web", "cube/echo"))
    requests.get(url(started, "/health"), timeout=2)
    requests.get(url(started, "/nope"), timeout=2)
    lines = runtime.logs(started.container_id).splitlines()
    assert '"GET /health HTTP/1.1" 200' in lines[-2]
    assert '"GET /nope HTTP/1.1" 404' in lines[-1]
    assert runtime.logs(started.container_id, tail=1).splitlines() == lines[-1:]
    assert runtime.logs("proc-000000000000") == ""


def test_a_new_instance_readopts_running_processes(runtime, state_dir):
    task = Task("web", "cube/echo")
    started = runtime.start(task)
    pid = pid_of(started)
    again = ProcessRuntime(owner=OWNER, state_dir=state_dir)
    [managed] = again.list_managed()
    assert managed.task_id == str(task.id)
    assert managed.status.container_id == started.container_id
    assert managed.status.running and managed.status.host_ports == started.host_ports
    assert pid_of(started) == pid
    assert ProcessRuntime(owner="someone-else", state_dir=state_dir).list_managed() == []


def test_processes_survive_the_worker_and_are_adopted(runtime):
    printed = start_in_subprocess(runtime.state_dir, "cube/echo")
    [managed] = runtime.list_managed()
    assert (managed.task_id, managed.status.container_id) == (printed["task"], printed["id"])
    assert managed.status.running
    started = Started(managed.status.container_id, managed.status.host_ports)
    pid = pid_of(started)
    runtime.stop(started.container_id)
    assert gone(pid)
    assert runtime.list_managed() == []


def test_an_adopted_process_that_crashes_reports_its_code(runtime):
    printed = start_in_subprocess(runtime.state_dir, "cube/echo:bad-exit")
    pid = pid_of(Started(printed["id"], runtime.inspect(printed["id"]).host_ports))
    psutil.Process(pid).wait(timeout=10)
    status = runtime.inspect(printed["id"])
    assert (status.running, status.exit_code) == (False, 1)
    assert status.reason == "process exited with code 1"


def test_concurrent_starts(runtime):
    with ThreadPoolExecutor(4) as pool:
        started = list(pool.map(lambda _: runtime.start(Task("web", "cube/echo")), range(6)))
    assert len({s.container_id for s in started}) == 6
    assert len({url(s) for s in started}) == 6
    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(lambda s: requests.get(url(s), timeout=2).ok, started))
        list(pool.map(lambda s: runtime.stop(s.container_id), started))
    assert runtime.list_managed() == []


def test_echo_exits_with_0_on_sigterm():
    read_fd, write_fd = os.pipe()
    with open(read_fd) as ready:
        service = subprocess.Popen(
            [sys.executable, "-m", "cube.runtime.echo", "--ready-fd", str(write_fd)],
            pass_fds=(write_fd,),
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        port = int(ready.readline())
    try:
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
        service.terminate()
        assert service.wait(timeout=15) == 0
    finally:
        service.kill()
        service.wait()


def test_an_address_it_cannot_listen_on_is_a_clear_failure(state_dir):
    runtime = ProcessRuntime(owner=OWNER, state_dir=state_dir, host_ip="192.0.2.1")
    with pytest.raises(RuntimeFailure, match=re.escape("cannot listen on 192.0.2.1:0")):
        runtime.start(Task("web", "cube/echo"))
    assert list(state_dir.iterdir()) == []


def test_kill_leaves_a_record_that_says_so(runtime):
    started = runtime.start(Task("crash", "cube/echo"))
    runtime.kill(started.container_id)
    status = runtime.inspect(started.container_id)
    assert status.state == "exited" and status.reason == "process was killed by SIGKILL"
    runtime.kill(started.container_id)  # killing it again is not an error
    runtime.stop(started.container_id)


UNREAPING_PARENT = """
import sys, time
from pathlib import Path
from cube.runtime.process import ProcessRuntime
from cube.task import Task
ProcessRuntime(sys.argv[1], Path(sys.argv[2])).start(Task("web", "cube/echo"))
print("started", flush=True)
time.sleep(300)  # alive, and never reaping its child
"""


@pytest.fixture
def unreaping_parent(state_dir: Path) -> Iterator[subprocess.Popen]:
    """A process that started a task and lives on without ever reaping it: what a task
    process left by a dead worker has for a parent where the first process of a
    container reaps nothing, or while the old worker is paused."""
    parent = subprocess.Popen(
        [sys.executable, "-c", UNREAPING_PARENT, OWNER, str(state_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        yield parent
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_a_process_another_parent_never_reaps_is_stopped_by_its_sigterm(
    runtime, unreaping_parent, paused, caplog
):
    """Its exit is seen at once, zombie or not, so a restarted worker's recovery does not
    wait out two timeouts per stray before it can listen; a paused one is continued so
    that it acts on the SIGTERM."""
    [managed] = runtime.list_managed()
    pid = pid_of(Started(managed.status.container_id, managed.status.host_ports))
    if paused:
        os.kill(pid, signal.SIGSTOP)
    with caplog.at_level("INFO", logger="cube.runtime.process"):
        runtime.stop(managed.status.container_id)
    assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, never reaped
    assert psutil.Process(pid).ppid() == unreaping_parent.pid
    assert "did not exit" not in caplog.text  # no SIGKILL was needed
    assert runtime.list_managed() == []
