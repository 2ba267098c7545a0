"""Our manager drives the book's Go worker (a double of it: see gocube_worker.py), and
our worker answers what a Go manager sends in a shape it reads."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from gocube_worker import GoWorker, answer_to_post
from helpers import eventually
from test_worker import build_worker, cleanup

from cube.client import NotFound, WorkerClient
from cube.http import Server
from cube.manager import Manager
from cube.task import RestartPolicy, State, Task, TaskEvent, parse_submission
from cube.worker.api import make_app

SAMPLES = Path(__file__).parent / "fixtures" / "gocube"


class HealthEndpoint:
    """Where the double's "container" publishes its port: answers the health check."""

    def __init__(self) -> None:
        self.status, self.probes = 200, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.probes += 1
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def endpoint() -> Iterator[HealthEndpoint]:
    health = HealthEndpoint()
    yield health
    health.close()


@pytest.fixture
def go_worker(endpoint: HealthEndpoint) -> Iterator[GoWorker]:
    double = GoWorker(endpoint.port).start()
    yield double
    double.stop()


# ------------------------------------------------------- the double is the Go worker


def test_the_double_answers_as_the_samples_show(go_worker: GoWorker) -> None:
    url = f"http://{go_worker.address}"
    empty = requests.get(f"{url}/tasks", timeout=5)
    assert empty.content == (SAMPLES / "worker_tasks_empty.json").read_bytes() == b"null\n"
    assert empty.headers["Content-Type"] == "application/json"
    posted = requests.post(
        f"{url}/tasks", data=(SAMPLES / "manager_to_worker_post_tasks.json").read_bytes()
    )
    assert posted.status_code == 201
    assert posted.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert posted.content == (SAMPLES / "worker_post_tasks_response.json").read_bytes()
    assert requests.get(f"{url}/stats", timeout=5).content == b"null\n"
    assert requests.get(f"{url}/health", timeout=5).status_code == 404
    task_id = posted.json()["ID"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/tasks/{task_id}", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.delete(f"{url}/tasks/{Task('x', 'x').id}", timeout=5)


# ------------------------------------------------------ our client tolerates all that


def test_our_worker_client_reads_the_go_worker(go_worker: GoWorker) -> None:
    client = WorkerClient(go_worker.address)
    assert client.tasks() == []
    assert client.stats() is None  # null: no figures yet
    assert client.alive()  # no /health: /stats answers instead
    sample = (SAMPLES / "manager_to_worker_post_tasks.json").read_text()
    event = TaskEvent.from_wire(json.loads(sample))
    assert client.submit(event) == event.task  # text/plain JSON is JSON
    assert client.task(event.task.id).id == event.task.id  # the crash falls back to the list
    assert client.runtime_status(event.task.id) is None
    with pytest.raises(NotFound):
        client.stop(Task("x", "x").id)  # the crash on an unknown task means "not there"
    with pytest.raises(NotFound):
        client.task(Task("x", "x").id)
    client.stop(event.task.id)
    eventually(lambda: client.task(event.task.id).state is State.Completed, what="Completed")
    assert client.stats()["TaskCount"] == 0
    client.close()


def test_a_null_list_and_a_shuffled_one_are_read(go_worker: GoWorker) -> None:
    client = WorkerClient(go_worker.address)
    for i in range(5):
        client.submit(Task(f"t{i}", "cube/busybox"))
    assert sorted(t.name for t in client.tasks()) == [f"t{i}" for i in range(5)]
    client.close()


# ------------------------------------------------ our manager drives the Go worker


def test_our_manager_places_watches_health_checks_and_stops_a_task_on_it(
    go_worker: GoWorker, endpoint: HealthEndpoint
) -> None:
    manager = Manager(
        [go_worker.address],
        "roundrobin",
        update_interval=0.2,
        health_interval=0.2,
        node_ttl=5,
        restart=RestartPolicy(limit=3, base=0.1, cap=0.2),
    ).start()
    try:
        eventually(lambda: manager.list_nodes()[0].state == "up", what="the Go worker up")
        spec = {"Name": "web", "Image": "cube/busybox:latest", "HealthCheck": "/health"}
        task = manager.submit(parse_submission({**spec, "ExposedPorts": {"8080/tcp": {}}}))
        running = manager.wait_for(str(task.id), State.Running, timeout=10)
        assert running.host_port() == endpoint.port and running.container_id
        posted = go_worker.posts[0]["Task"]
        assert set(posted) >= {"ID", "Name", "Image", "State"}  # what Go reads of our post
        eventually(lambda: endpoint.probes >= 2, what="health checks of the task")
        assert manager.get_task(str(task.id)).restart_count == 0

        endpoint.status = 500  # the task turns unhealthy: the manager restarts it there
        eventually(lambda: manager.get_task(str(task.id)).restart_count == 1, what="a restart")
        endpoint.status = 200
        restarted = manager.wait_for(str(task.id), State.Running, timeout=10)
        assert restarted.container_id != running.container_id
        # two orders: the first and the restart (either may have been sent again, as a
        # retry is when the worker's list is slow to show it: the same order, harmless)
        orders = {(p["Task"]["ID"], p["Task"].get("RestartCount", 0)) for p in go_worker.posts}
        assert orders == {(str(task.id), 0), (str(task.id), 1)}

        manager.stop(str(task.id))
        done = manager.wait_for(str(task.id), State.Completed, timeout=10)
        assert done.state is State.Completed
        assert manager.logs(str(task.id)) == ""  # the Go worker has no logs route
    finally:
        manager.close()


# --------------------------------------------- and a Go manager can drive our worker


def test_our_worker_answers_a_go_managers_post_as_go_reads_it(tmp_path: Path) -> None:
    worker = build_worker(tmp_path, "process").start()
    try:
        with Server(make_app(worker)) as server:
            body = (SAMPLES / "manager_to_worker_post_tasks.json").read_bytes()
            answer = requests.post(f"{server.url}/tasks", data=body, timeout=5)
            assert answer.status_code == 201
            sample = json.loads((SAMPLES / "worker_post_tasks_response.json").read_text())
            assert list(answer.json()) == list(sample)  # Go's fields, in Go's order
            assert answer.json() == sample  # zero times, null maps, PascalCase
            assert answer_to_post(answer.json()) == answer_to_post(sample)
    finally:
        cleanup(worker)
