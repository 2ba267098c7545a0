"""The manager with three real workers over real HTTP: placement, stop, health, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from helpers import eventually
from test_worker import IMAGES, build_worker, cleanup

from cube.client import Conflict, ManagerClient, NotFound
from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app as manager_app
from cube.task import RestartPolicy, State, Task, TaskEvent
from cube.worker.api import make_app as worker_app

FIXTURES = Path(__file__).parent / "fixtures"


class Cluster:
    """Three in-process workers and a manager, each behind a real HTTP server."""

    def __init__(self, tmp_path: Path, kind: str, scheduler: str = "roundrobin", **options):
        self.workers = [build_worker(tmp_path, kind, name=f"w{i}").start() for i in range(3)]
        self.servers = [Server(worker_app(w)).start() for w in self.workers]
        self.addresses = [s.url.removeprefix("http://") for s in self.servers]
        options = {"update_interval": 0.2, "health_interval": 0.3, "node_ttl": 1.5, **options}
        self.manager = Manager(self.addresses, scheduler, **options).start()
        self.server = Server(manager_app(self.manager)).start()
        self.url = self.server.url
        self.client = ManagerClient(self.url)
        eventually(lambda: all(n.state == "up" for n in self.manager.list_nodes()), what="nodes up")

    def running(self, task_id, timeout: float = 10):
        return self.manager.wait_for(str(task_id), State.Running, timeout=timeout)

    def close(self) -> None:
        self.server.stop()
        self.manager.close()
        for server in self.servers:
            server.stop()
        for worker in self.workers:
            cleanup(worker)


def running_copies(worker) -> list:
    return [m for m in worker.runtime.list_managed() if m.status.running]


def no_copy_runs(worker, task_id) -> bool:
    """Its worker stopped it (and may have forgotten it already: the manager saw it)."""
    return str(task_id) not in {m.task_id for m in running_copies(worker)}


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def kind(request):
    return request.param


@pytest.fixture
def cluster(tmp_path, kind):
    c = Cluster(tmp_path, kind)
    yield c
    c.close()


def test_round_robin_places_in_turn_and_tasks_run(cluster, kind):
    tasks = [cluster.client.submit({"Name": f"t{i}", "Image": IMAGES[kind]}) for i in range(4)]
    assert all(t.state is State.Pending for t in tasks)
    placed = [cluster.running(t.id).worker for t in tasks]
    assert placed == [*cluster.addresses, cluster.addresses[0]]
    nodes = {n["Name"]: n for n in cluster.client.nodes()}
    assert [nodes[a]["TaskCount"] for a in cluster.addresses] == [2, 1, 1]
    assert all(n["State"] == "up" and n["Memory"] > 0 for n in nodes.values())


def test_stop_reaches_the_worker_that_runs_it(cluster, kind):
    """The book sent stops to whichever worker the scheduler chose next (its 10.6 bug)."""
    first = cluster.running(cluster.client.submit({"Name": "a", "Image": IMAGES[kind]}).id)
    second = cluster.running(cluster.client.submit({"Name": "b", "Image": IMAGES[kind]}).id)
    cluster.client.stop(second.id)
    done = cluster.manager.wait_for(str(second.id), State.Completed, timeout=10)
    assert done.worker == second.worker != first.worker
    where = cluster.workers[cluster.addresses.index(second.worker)]
    assert no_copy_runs(where, second.id)
    assert cluster.client.task(first.id).state is State.Running
    with pytest.raises(Conflict, match="cannot go from Completed"):
        cluster.client.stop(second.id)


def test_cancel_a_task_that_fits_nowhere(cluster, kind):
    huge = cluster.client.submit({"Name": "huge", "Image": IMAGES[kind], "Memory": 1 << 50})
    waiting = eventually(lambda: "can take it" in (t := cluster.client.task(huge.id)).reason and t)
    assert waiting.state is State.Pending
    assert "3 nodes: memory" in waiting.reason and "< 1.0 TiB asked" not in waiting.reason
    cluster.client.stop(huge.id)
    done = cluster.manager.wait_for(str(huge.id), State.Completed, timeout=5)
    assert done.reason == "cancelled before it was placed"


def test_book_task_files_and_curl_shapes_work(cluster, kind):
    raw = json.loads((FIXTURES / "book/task1.json").read_text())
    raw["Task"]["Image"] = IMAGES[kind]
    raw["Task"].pop("PortBindings")
    response = requests.post(
        f"{cluster.url}/tasks",
        data=json.dumps(raw),
        headers={"Content-Type": "application/x-www-form-urlencoded"},  # what `curl -d` sends
    )
    assert response.status_code == 201
    assert response.json()["ID"] == raw["Task"]["ID"]
    cluster.running(raw["Task"]["ID"])
    assert requests.get(f"{cluster.url}/tasks").json()[0]["State"] == State.Running
    assert requests.delete(f"{cluster.url}/tasks/{raw['Task']['ID']}").status_code == 204
    # posting the same event again is a retry, not a second task
    again = requests.post(f"{cluster.url}/tasks", data=json.dumps(raw))
    assert again.status_code == 201 and len(cluster.client.tasks()) == 1
    raw["ID"] = "0b6f7cd1-8ab6-4f5a-9b7e-5a4c2e1d0f00"
    clash = requests.post(f"{cluster.url}/tasks", data=json.dumps(raw))
    assert clash.status_code == 409 and "already exists" in clash.json()["Message"]
    raw["Task"]["ID"] = "0b6f7cd1-8ab6-4f5a-9b7e-5a4c2e1d0f01"  # a new task, the old event ID
    reused = requests.post(f"{cluster.url}/tasks", data=json.dumps(raw))
    assert reused.status_code == 201
    raw["Task"]["ID"] = "0b6f7cd1-8ab6-4f5a-9b7e-5a4c2e1d0f02"
    taken = requests.post(f"{cluster.url}/tasks", data=json.dumps(raw))
    assert taken.status_code == 409 and "event ID" in taken.json()["Message"]


def test_errors(cluster, kind):
    url = cluster.url
    assert requests.get(f"{url}/tasks/nope").status_code == 400
    assert requests.delete(f"{url}/tasks/nope").status_code == 400
    missing = "7f1b5e36-0000-4000-8000-000000000000"
    assert requests.delete(f"{url}/tasks/{missing}").status_code == 404
    with pytest.raises(NotFound):
        cluster.client.task(missing)
    bad = requests.post(f"{url}/tasks", json={"Name": "x", "Image": IMAGES[kind], "Cpu": "lots"})
    assert bad.status_code == 400 and bad.json()["Message"].startswith("Task.Cpu")
    assert requests.get(f"{url}/events?limit=x").status_code == 400
    assert cluster.client.tasks() == []


def test_events_are_newest_first(cluster, kind):
    task = cluster.client.submit({"Name": "ev", "Image": IMAGES[kind]})
    cluster.running(task.id)
    cluster.client.stop(task.id)
    events = cluster.client.events()
    assert [e.state for e in events] == [State.Completed, State.Running]
    assert all(e.task.id == task.id for e in events)


def test_health_check_failures_restart_with_backoff_until_the_limit(tmp_path, kind):
    """cube/echo answers 500 on /healthfail; cube/busybox has no /healthfail (404)."""
    c = Cluster(tmp_path, kind, restart=RestartPolicy(limit=2, base=0.2))
    try:
        task = c.client.submit(
            {"Name": "sick", "Image": IMAGES[kind], "HealthCheck": "/healthfail"}
        )
        first = c.running(task.id)
        failed = c.manager.wait_for(str(task.id), State.Failed, timeout=30)
        assert failed.restart_count == 2
        assert failed.reason.startswith("gave up after 2 restarts; last problem: health check")
        restarts = [e for e in c.client.events() if e.state is State.Running]
        assert [e.task.restart_count for e in restarts] == [2, 1, 0]
        where = c.workers[c.addresses.index(failed.worker)]
        eventually(lambda: no_copy_runs(where, task.id), what="its copy stopped")
        assert c.client.task(task.id).state is State.Failed  # and it stays so
        assert first.container_id not in {m.status.container_id for m in running_copies(where)}
    finally:
        c.close()


def test_a_crashed_task_is_restarted(tmp_path):
    c = Cluster(tmp_path, "process", restart=RestartPolicy(limit=1, base=0.2))
    try:
        task = c.client.submit({"Name": "crashy", "Image": "cube/echo:bad-exit"})
        c.running(task.id)
        eventually(lambda: c.client.task(task.id).restart_count == 1, timeout=15)
        final = c.manager.wait_for(str(task.id), State.Failed, timeout=15)
        assert final.restart_count == 1 and "exited with code 1" in final.reason
    finally:
        c.close()


def test_healthy_tasks_are_left_alone(tmp_path):
    c = Cluster(tmp_path, "process")
    try:
        task = c.client.submit({"Name": "fine", "Image": "cube/echo", "HealthCheck": "/health"})
        running = c.running(task.id)
        c.manager.check_health()
        c.manager.check_health()
        assert c.client.task(task.id).container_id == running.container_id
        assert c.client.task(task.id).restart_count == 0
    finally:
        c.close()


def test_a_full_disk_is_said_plainly_and_changes_nothing(tmp_path):
    """The API is called in this thread (as WSGI), since SQLite's page limit, which
    stands in for a full disk, holds for this thread's connection only."""
    import io
    from wsgiref.util import setup_testing_defaults

    from cube.manager.stores import Stores
    from cube.store import StoreFull
    from cube.task import Task, TaskEvent

    stores = Stores.open("persistent", tmp_path / "manager")
    manager = Manager([], "roundrobin", stores)
    kept = manager.submit(TaskEvent(task=Task("before", "cube/echo")))
    events = stores.events
    pages = events._cache._sql("PRAGMA page_count").fetchone()[0]
    events._cache._sql(f"PRAGMA max_page_count = {pages}")  # the disk holds no more pages
    for size in (1000, 100, 10, 1):  # and what room is left in them fills up
        with pytest.raises(StoreFull):
            for i in range(10_000):
                events._raw_put(f"filler-{size}-{i}", "x" * size)
    before = events.count()

    body = json.dumps({"Name": "after", "Image": "cube/echo"}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/tasks", "CONTENT_LENGTH": str(len(body))}
    environ |= {"CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body)}
    setup_testing_defaults(environ)
    answer: list[str] = []
    chunks = manager_app(manager)(environ, lambda status, headers, *_: answer.append(status))
    reply = json.loads(b"".join(chunks))
    assert answer == ["507 Insufficient Storage"], reply
    assert "the disk is full" in reply["Message"]
    assert [t.id for t in manager.list_tasks()] == [kept.id] and events.count() == before
    manager.close()


def test_what_is_found_of_a_task_outlives_the_manager_and_goes_with_the_task(tmp_path):
    """A worker's refusal and a failed health check are kept on disk: a manager started
    again neither sends the task to that worker once more nor waits a health round to
    see the problem. A new order starts with its health unknown, and a forgotten task
    leaves nothing behind (the table does not grow for ever)."""
    from cube.manager.stores import Stores

    def open_manager() -> Manager:
        return Manager(["127.0.0.1:9"], stores=Stores.open("persistent", tmp_path))

    manager = open_manager()
    task = manager.submit(TaskEvent(Task(name="refused", image="cube/echo")))
    task_id = str(task.id)
    manager.tasks.findings.refuse(task_id, "127.0.0.1:9", "no such image here")
    assert manager.tasks.findings.set_problem(task, "GET /health answered 500")
    manager.close()

    manager = open_manager()
    found = manager.tasks.findings
    assert found.refusals(task_id) == {"127.0.0.1:9": "no such image here"}
    assert found.problem(task) == "GET /health answered 500"
    assert found.problem(task.replace(generation=task.generation + 1)) == ""
    manager.forget(task_id)
    manager.close()

    manager = open_manager()
    assert manager.tasks.findings.refusals(task_id) == {}
    assert manager.tasks.findings.problem(task) == ""
    manager.close()


def test_a_watch_of_the_nodes_wakes_on_a_change_not_on_every_probe():
    """``GET /nodes?index=N`` is a blocking query: it answers when a node changes (up or
    down, its figures), not each time a probe finds it as it was (only its last-seen
    time moved), or a watcher of the list would be polling in disguise."""
    from cube.manager.nodes import Answer, Nodes
    from cube.store import MemoryStore

    worker = "127.0.0.1:9"
    nodes = Nodes([worker], MemoryStore(), token=None, timeout=1, probe_timeout=1, node_ttl=5)
    health = {"Name": "w", "Runtime": "process", "Images": ["cube/echo"]}
    nodes.take(worker, Answer(health))
    index = nodes.changes.index
    for _ in range(3):
        nodes.take(worker, Answer(health))  # alive, as it was
    assert nodes.changes.index == index
    nodes.take(worker, Answer(error="refused", malformed=True))  # down: a change
    assert nodes.changes.index > index


def test_the_history_index_lost_with_the_machine_is_made_again_without_doubles(tmp_path):
    """The history's index by time is written without a flush to the disk per write (it
    can be made again from the events): a manager started after the last index entries
    were lost lists every event once, newest first."""
    from cube.manager.history import History
    from cube.store import DiskStore, JsonCodec, WireCodec

    def history() -> History:
        return History(
            DiskStore(tmp_path / "events", WireCodec(TaskEvent)),
            DiskStore(tmp_path / "history", JsonCodec(), sync="never"),
        )

    first = history()
    events = [TaskEvent(Task(name=f"t{i}", image="cube/echo")) for i in range(5)]
    for event in events:
        first.record(event)
    for key in first.index.first_keys(2, newest=True):  # lost in a power cut
        first.index.delete(key)
    first.events.close()
    first.index.close()

    again = history()
    listed = [e.id for e in again.newest()]
    assert sorted(map(str, listed)) == sorted(str(e.id) for e in events)
    assert len(listed) == len(set(listed)) == again.index.count()
    again.events.close()
    again.index.close()
