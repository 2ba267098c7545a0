"""The worker over real HTTP, on both runtimes: post, list, inspect, stop, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from helpers import eventually

from cube.client import Conflict, NotFound, Unauthorized, WorkerClient
from cube.http import Server
from cube.runtime import choose
from cube.store import DiskStore, JsonCodec, MemoryStore, WireCodec
from cube.task import State, Task, TaskEvent
from cube.worker import Worker, open_worker
from cube.worker.api import make_app

FIXTURES = Path(__file__).parent / "fixtures"
IMAGES = {"process": "cube/echo", "docker": "cube/busybox:latest"}


def build_worker(tmp_path: Path, kind: str, name: str = "w-test", disk: bool = False) -> Worker:
    def store(sub: str, cls: type | None) -> object:
        codec = WireCodec(cls) if cls else JsonCodec()
        return DiskStore(tmp_path / name / sub, codec) if disk else MemoryStore(codec)

    return Worker(
        name,
        store("tasks", Task),
        choose(kind, owner=f"{name}-{tmp_path.name}", state_dir=tmp_path / name / "proc"),
        timers=store("timers", None),
        inspect_interval=0.2,
    )


def cleanup(worker: Worker) -> None:
    worker.close()
    for managed in worker.runtime.list_managed():
        worker.runtime.stop(managed.status.container_id)


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def kind(request):
    return request.param


@pytest.fixture
def served(tmp_path, kind):
    worker = build_worker(tmp_path, kind).start()
    server = Server(make_app(worker)).start()
    yield worker, WorkerClient(server.url), server.url
    server.stop()
    cleanup(worker)


def spec(kind: str, name: str = "web", **extra: object) -> dict:
    return {"Name": name, "Image": IMAGES[kind], **extra}


def running(client: WorkerClient, task_id) -> Task:
    return eventually(
        lambda: (t := client.task(task_id)).state is State.Running and t, what="Running"
    )


def test_post_list_inspect_stop(served, kind):
    worker, client, url = served
    assert requests.get(f"{url}/tasks").json() == []

    response = requests.post(f"{url}/tasks", json=spec(kind, HealthCheck="/health"))
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    accepted = Task.from_wire(response.json())
    assert accepted.state is State.Scheduled

    task = running(client, accepted.id)
    assert task.start_time is not None and task.container_id
    assert [t.id for t in client.tasks()] == [task.id]
    runtime = client.runtime_status(task.id)
    assert runtime["Running"] is True and runtime["ContainerID"] == task.container_id

    port = task.host_port()
    eventually(
        lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok,
        what="the task's service",
    )
    assert worker.stats()["TaskCount"] == 1

    assert requests.delete(f"{url}/tasks/{task.id}").status_code == 204
    done = eventually(lambda: (t := client.task(task.id)).state is State.Completed and t)
    assert done.finish_time is not None and done.reason == "stopped on request"
    assert worker.runtime.inspect(task.container_id).running is False
    with pytest.raises(Conflict, match="cannot go from Completed to Completed"):
        client.stop(task.id)


def test_go_manager_post_is_accepted_verbatim(served, kind):
    _, client, url = served
    body = json.loads((FIXTURES / "gocube/manager_to_worker_post_tasks.json").read_text())
    body["Task"]["Image"] = IMAGES[kind]
    response = requests.post(f"{url}/tasks", data=json.dumps(body))
    assert response.status_code == 201
    reply = response.json()
    go_reply = json.loads((FIXTURES / "gocube/worker_post_tasks_response.json").read_text())
    assert list(reply) == list(go_reply)
    assert reply["ID"] == body["Task"]["ID"] and reply["State"] == State.Scheduled
    running(client, body["Task"]["ID"])


def test_a_task_submitted_pending_still_starts(served, kind):
    """The book's worker silently never started a task posted in state 0."""
    _, client, _ = served
    task = client.submit(TaskEvent(task=Task("p", IMAGES[kind], state=State.Pending)))
    running(client, task.id)


def test_a_dead_task_is_failed_with_the_reason(served, kind):
    worker, client, _ = served
    task = running(client, client.submit(spec(kind)).id)
    worker.runtime.stop(task.container_id)  # out of band, as `docker rm -f` would
    failed = eventually(lambda: (t := client.task(task.id)).state is State.Failed and t)
    assert failed.reason and failed.finish_time is not None


def test_errors_are_json_with_honest_codes(served, kind):
    _, client, url = served

    def error(response: requests.Response, status: int, text: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["HTTPStatusCode"] == status and text in body["Message"]

    post = lambda data, **kw: requests.post(f"{url}/tasks", data=data, **kw)  # noqa: E731
    error(post('{"Name": "a",'), 400, "malformed JSON at line 1 column")
    error(post(json.dumps(spec(kind, Imagee="x"))), 400, "Task.Imagee: unknown field")
    error(post(json.dumps({"ID": "nope", "Task": spec(kind)})), 400, "TaskEvent.ID")
    error(post(json.dumps(spec(kind, Memory=-1))), 400, "Task.Memory: must not be negative")
    error(post(""), 400, "the body is empty")
    error(post("[" * 100 + "]" * 100), 400, "nested deeper")
    error(post("x" * (1 << 20 + 1)), 413, "limit")
    error(post("{}", headers={"Content-Type": "text/plain"}), 415, "Content-Type")
    error(requests.get(f"{url}/tasks/not-a-uuid"), 400, "is not a UUID")
    error(requests.delete(f"{url}/tasks/not-a-uuid"), 400, "is not a UUID")
    missing = "7f1b5e36-0000-4000-8000-000000000000"
    error(requests.get(f"{url}/tasks/{missing}"), 404, "no task")
    error(requests.delete(f"{url}/tasks/{missing}"), 404, "no task")
    error(requests.put(f"{url}/tasks"), 405, "PUT is not allowed")
    error(requests.get(f"{url}/nope"), 404, "no route GET /nope")
    with pytest.raises(NotFound):
        client.task(missing)
    assert client.tasks() == []  # nothing was created by any of that


def test_process_runtime_refuses_unknown_images(tmp_path):
    worker = build_worker(tmp_path, "process")
    with Server(make_app(worker)) as server:
        response = requests.post(f"{server.url}/tasks", json={"Name": "x", "Image": "nginx:1.27"})
    assert response.status_code == 400
    assert "cube/echo" in response.json()["Message"]
    assert worker.tasks() == []


def test_token_required_except_health(tmp_path):
    worker = build_worker(tmp_path, "process")
    with Server(make_app(worker, token="s3cret"), token_required=True) as server:
        response = requests.get(f"{server.url}/tasks")
        assert response.status_code == 401
        assert response.json()["Message"].startswith("missing or wrong token")
        assert requests.get(f"{server.url}/health").status_code == 200
        with pytest.raises(Unauthorized):
            WorkerClient(server.url, token="wrong").tasks()
        assert WorkerClient(server.url, token="s3cret").tasks() == []


def test_stats_have_the_go_shape(tmp_path):
    worker = build_worker(tmp_path, "process")
    go = json.loads((FIXTURES / "gocube/worker_stats.json").read_text())
    with Server(make_app(worker)) as server:
        stats = requests.get(f"{server.url}/stats").json()
    assert set(go) <= set(stats)
    for part in ("DiskStats", "CpuStats", "LoadStats"):
        assert set(stats[part]) == set(go[part]), part
    assert {"mem_total", "mem_free", "mem_available"} <= set(stats["MemStats"])
    assert stats["MemStats"]["mem_total"] > stats["MemStats"]["mem_available"] > 0
    assert 0 <= stats["CpuPercent"] <= 100 and stats["TaskCount"] == 0


def test_cancel_before_start_and_illegal_transitions(tmp_path):
    """Without its loop running, a worker holds queued work; a stop cancels it."""
    worker = build_worker(tmp_path, "process")
    task = worker.submit(TaskEvent(task=Task("never", "cube/echo")))
    assert worker.get_task(str(task.id)).state is State.Scheduled
    cancelled = worker.stop_task(str(task.id))
    assert cancelled.state is State.Completed and cancelled.reason == "cancelled before it started"
    assert worker.pending_events() == []
    worker.step()
    assert worker.runtime.list_managed() == []
    with pytest.raises(Exception, match="cannot go from Completed to Scheduled"):
        worker.submit(TaskEvent(task=task))


def test_queue_survives_a_restart(tmp_path):
    first = build_worker(tmp_path, "process", disk=True)
    task = first.submit(TaskEvent(task=Task("queued", "cube/echo")))
    first.close()  # never ran its loop: the event is only in the persisted queue

    second = build_worker(tmp_path, "process", disk=True).start()
    try:
        assert second.wait_for(str(task.id), State.Running, timeout=10).container_id
    finally:
        cleanup(second)


def test_restart_requests_are_idempotent_by_restart_count(tmp_path):
    worker = build_worker(tmp_path, "process").start()
    try:
        task = worker.submit(TaskEvent(task=Task("r", "cube/echo")))
        first = worker.wait_for(str(task.id), State.Running)
        worker.submit(TaskEvent(task=first))  # a repeated post: nothing happens
        worker.submit(TaskEvent(task=first.replace(state=State.Scheduled, restart_count=1)))
        second = eventually(
            lambda: (
                (t := worker.get_task(str(task.id))).restart_count == 1
                and t.state is State.Running
                and t
            )
        )
        assert second.container_id != first.container_id
        assert worker.runtime.inspect(first.container_id).running is False
        assert len(worker.runtime.list_managed()) == 1
    finally:
        cleanup(worker)


def test_the_task_list_follows_every_change(tmp_path):
    """GET /tasks answers from its last encoding while nothing changed, and never
    misses a change (a disk store, as `cube worker` keeps)."""
    worker = build_worker(tmp_path, "process", disk=True).start()
    try:
        with Server(make_app(worker)) as server:
            url = f"{server.url}/tasks"
            first = requests.get(url, timeout=5)
            assert first.json() == [] and requests.get(url, timeout=5).content == first.content
            posted = requests.post(url, json=spec("process"), timeout=5).json()

            def states() -> list[int]:
                return [t["State"] for t in requests.get(url, timeout=5).json()]

            assert states() in ([State.Scheduled], [State.Running])
            eventually(lambda: states() == [State.Running], what="Running in the list")
            requests.delete(f"{url}/{posted['ID']}", timeout=5)
            eventually(lambda: states() == [State.Completed], what="Completed in the list")
            index = requests.get(url, timeout=5).headers["X-Cube-Index"]
            assert requests.get(url, timeout=5).headers["X-Cube-Index"] == index
    finally:
        cleanup(worker)


def test_a_worker_keeps_its_stores_on_disk_from_the_first_start(tmp_path):
    """An empty store is falsy (it has a length): it must still be the one used."""
    worker = open_worker("fresh", tmp_path, "process")
    try:
        stores = (worker.store, worker.timers.store, worker.records.tombstones, worker.epoch.store)
        assert all(isinstance(store, DiskStore) for store in stores), stores
    finally:
        worker.close()
