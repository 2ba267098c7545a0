"""DockerRuntime against the real engine: ports, labels, limits, failures, adoption."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
import requests
from docker.errors import NotFound

from cube.ports import free_port
from cube.runtime import RuntimeFailure, RuntimeUnavailable, UnknownImage
from cube.runtime.docker import LABEL_OWNER, DockerRuntime, container_name
from cube.task import Task

pytestmark = pytest.mark.docker

IMAGE = "cube/busybox:latest"


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env(version="auto")
    yield c
    c.close()


@pytest.fixture
def owner(client: docker.DockerClient) -> Iterator[str]:
    """A fresh owner per test; every container labelled with it is removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={name}"}):
        c.remove(v=True, force=True)


@pytest.fixture
def runtime(owner: str) -> DockerRuntime:
    return DockerRuntime(owner=owner)


@pytest.fixture(scope="module")
def failing_image(client: docker.DockerClient) -> Iterator[str]:
    """cube/busybox whose command writes to stderr and exits 3 (a Task has no command)."""
    base = client.containers.create(IMAGE)
    tag = f"cube/test-failing:{uuid.uuid4().hex[:8]}"
    repo, version = tag.split(":")
    base.commit(repo, version, changes=['CMD ["sh", "-c", "echo boom >&2; exit 3"]'])
    base.remove()
    yield tag
    client.images.remove(tag, force=True)


def wait_for(check: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll ``check`` with a small backoff; httpd and state changes take a moment."""
    end, delay = time.monotonic() + deadline, 0.02
    while not check():
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def get(port: str | int, path: str) -> requests.Response:
    """GET from the published port, waiting until httpd accepts connections."""
    result: list[requests.Response] = []

    def answered() -> bool:
        try:
            result.append(requests.get(f"http://127.0.0.1:{port}{path}", timeout=1))
        except requests.ConnectionError:
            return False
        return True

    wait_for(answered)
    return result[-1]


def test_start_serves_http_on_localhost_only(runtime, client, owner):
    task = Task("web", IMAGE)
    started = runtime.start(task)

    assert len(started.container_id) == 64
    bindings = started.host_ports["8080/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    port = bindings[0]["HostPort"]
    assert get(port, "/health").status_code == 200
    assert get(port, "/healthfail").status_code == 404

    status = runtime.inspect(started.container_id)
    assert (status.running, status.state, status.reason) == (True, "running", "")
    assert status.host_ports == started.host_ports

    attrs = client.containers.get(started.container_id).attrs
    assert attrs["Name"] == f"/cube-{owner}-{task.id}" == "/" + container_name(owner, task)
    assert attrs["Config"]["Labels"] == {
        "cube.task-id": str(task.id),
        "cube.owner": owner,
        "cube.task-name": "web",
        "cube.attempt": "0.0",
    }
    host = attrs["HostConfig"]
    assert not host["Privileged"] and not host["PublishAllPorts"] and not host["Binds"]
    assert host["NetworkMode"] in ("default", "bridge")


def test_port_bindings_and_task_ports_are_published(runtime):
    port = free_port()
    task = Task("web", IMAGE, exposed_ports=("9000/tcp",), port_bindings={"8080/tcp": str(port)})
    started = runtime.start(task)

    assert started.host_ports["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert started.host_ports["9000/tcp"][0]["HostIp"] == "127.0.0.1"
    assert get(port, "/health").status_code == 200


def test_taken_host_port_fails_cleanly(runtime, client, owner):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(RuntimeFailure, match=f"host port {port} .* already in use"):
            runtime.start(Task("web", IMAGE, port_bindings={"8080/tcp": str(port)}))
    assert client.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={owner}"}) == []


def test_limits_and_restart_policy_are_applied(runtime, client):
    task = Task("web", IMAGE, cpu=0.5, memory=64 * 2**20, restart_policy="on-failure")
    host = client.containers.get(runtime.start(task).container_id).attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 2**20
    assert host["RestartPolicy"]["Name"] == "on-failure"

    plain = client.containers.get(runtime.start(Task("p", IMAGE)).container_id)
    host = plain.attrs["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["RestartPolicy"]["Name"]) == (0, 0, "")


def test_tasks_with_the_same_name_both_start(runtime):
    a, b = runtime.start(Task("web", IMAGE)), runtime.start(Task("web", IMAGE))
    assert a.container_id != b.container_id
    assert runtime.inspect(a.container_id).running and runtime.inspect(b.container_id).running


def test_starting_a_task_again_replaces_its_container(runtime):
    task = Task("web", IMAGE)
    first = runtime.start(task)
    second = runtime.start(task)
    assert runtime.inspect(first.container_id).state == "missing"
    assert runtime.inspect(second.container_id).running


def test_stop_removes_and_is_idempotent(runtime, client):
    started = runtime.start(Task("web", IMAGE))
    runtime.stop(started.container_id)
    with pytest.raises(NotFound):
        client.containers.get(started.container_id)
    runtime.stop(started.container_id)
    assert runtime.inspect(started.container_id).state == "missing"


def test_killed_container_is_exited(runtime, client):
    started = runtime.start(Task("web", IMAGE))
    client.containers.get(started.container_id).kill()
    wait_for(lambda: not runtime.inspect(started.container_id).running)

    status = runtime.inspect(started.container_id)
    assert (status.state, status.exit_code) == ("exited", 137)
    assert status.reason == "container exited with code 137"


def test_failing_command_is_exited_with_logs(runtime, failing_image):
    started = runtime.start(Task("fails", failing_image))
    wait_for(lambda: runtime.inspect(started.container_id).state == "exited")

    status = runtime.inspect(started.container_id)
    assert (status.running, status.exit_code) == (False, 3)
    assert status.reason == "container exited with code 3"
    assert runtime.logs(started.container_id) == "boom\n"


def test_removed_out_of_band_is_missing(runtime, client):
    started = runtime.start(Task("web", IMAGE))
    client.containers.get(started.container_id).remove(force=True)

    status = runtime.inspect(started.container_id)
    assert (status.running, status.state) == (False, "missing")
    assert status.reason == f"container {started.container_id[:12]} no longer exists"
    with pytest.raises(RuntimeFailure, match="no longer exists"):
        runtime.logs(started.container_id)


def test_list_managed_finds_only_the_owners_containers(runtime, owner):
    task = Task("web", IMAGE)
    started = runtime.start(task)

    [found] = DockerRuntime(owner=owner).list_managed()
    assert found.task_id == str(task.id)
    assert found.status.container_id == started.container_id and found.status.running
    assert DockerRuntime(owner=f"{owner}-other").list_managed() == []


def test_unknown_image_leaves_nothing_behind(runtime, client, owner):
    with pytest.raises(UnknownImage) as caught:
        runtime.start(Task("web", "cube/does-not-exist:1"))
    message = str(caught.value)
    assert message.startswith(
        "image 'cube/does-not-exist:1' is not on this machine and could not be pulled: "
    )
    assert "\n" not in message
    assert client.containers.list(all=True, filters={"label": f"{LABEL_OWNER}={owner}"}) == []


def test_unreachable_daemon_then_recovery(owner, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    runtime = DockerRuntime(owner=owner)
    task = Task("web", IMAGE)
    runtime.check(task)

    with pytest.raises(RuntimeUnavailable) as caught:
        runtime.start(task)
    message = str(caught.value)
    assert message.startswith("cannot reach the Docker daemon at unix:///nonexistent.sock: ")
    assert "dockerd" in message and "Traceback" not in message and "\n" not in message
    with pytest.raises(RuntimeUnavailable):
        runtime.list_managed()

    monkeypatch.undo()
    assert runtime.list_managed() == []
    assert runtime.inspect(runtime.start(task).container_id).running


class DockerdStandIn:
    """A unix socket relaying to the real dockerd, which a test can take down and bring
    back: a daemon restart, seen from the client, without touching the shared engine."""

    def __init__(self, path: str, target: str) -> None:
        self.path, self.target = path, target
        self.open: list[socket.socket] = []

    def up(self) -> None:
        stand_in = self

        class Relay(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(stand_in.target)
                stand_in.open += [self.request, upstream]
                threading.Thread(target=_pump, args=(upstream, self.request), daemon=True).start()
                _pump(self.request, upstream)

        self.server = socketserver.ThreadingUnixStreamServer(self.path, Relay)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.open.clear()
        os.unlink(self.path)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass


def test_recovers_when_the_daemon_comes_back(owner, monkeypatch, tmp_path):
    real = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not real.startswith("unix://"):
        pytest.skip("the stand-in relays to a unix socket only")
    daemon = DockerdStandIn(str(tmp_path / "docker.sock"), real.removeprefix("unix://"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{daemon.path}")
    runtime = DockerRuntime(owner=owner)

    daemon.up()
    started = runtime.start(Task("web", IMAGE))
    daemon.down()
    with pytest.raises(RuntimeUnavailable, match="No such file or directory; is dockerd running"):
        runtime.inspect(started.container_id)
    daemon.up()
    try:
        assert runtime.inspect(started.container_id).running
    finally:
        daemon.down()


def test_concurrent_starts_from_threads(runtime):
    results: list[str] = []

    def start(i: int) -> None:
        results.append(runtime.start(Task(f"t{i}", IMAGE)).container_id)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 4
    assert sorted(m.status.container_id for m in runtime.list_managed()) == sorted(results)


@pytest.mark.docker
def test_kill_leaves_an_exited_container(runtime):
    started = runtime.start(Task("crash", IMAGE))
    runtime.kill(started.container_id)
    status = runtime.inspect(started.container_id)
    assert status.state == "exited" and status.running is False
    runtime.kill(started.container_id)  # killing it again is not an error
    runtime.stop(started.container_id)
