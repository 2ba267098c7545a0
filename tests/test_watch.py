"""Blocking queries, deltas and paging, on both APIs, over real HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from test_worker import build_worker, cleanup

from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app as manager_app
from cube.task import Task, TaskEvent
from cube.worker import retention
from cube.worker.api import make_app as worker_app


@pytest.fixture
def worker(tmp_path):
    node = build_worker(tmp_path, "process")  # no loop: its tasks stay Scheduled
    with Server(worker_app(node)) as server:
        yield node, server.url
    cleanup(node)


@pytest.fixture
def manager():
    boss = Manager([], "roundrobin")  # no workers: tasks stay Pending
    with Server(manager_app(boss)) as server:
        yield boss, server.url
    boss.close()


def index_of(url: str, path: str = "/tasks") -> int:
    return int(requests.get(url + path, timeout=5).headers["X-Cube-Index"])


def submit(which, name: str) -> Task:
    node, _ = which
    return node.submit(TaskEvent(task=Task(name, "cube/echo")))


@pytest.mark.parametrize("which", ["worker", "manager"])
def test_a_blocked_query_answers_as_soon_as_something_changes(which, request):
    side = request.getfixturevalue(which)
    url = side[1]
    index = index_of(url)
    answered = {}

    def watch() -> None:
        response = requests.get(f"{url}/tasks", params={"index": index, "wait": "20s"})
        answered["at"], answered["body"] = time.monotonic(), response
        answered["index"] = int(response.headers["X-Cube-Index"])

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.3)
    assert "at" not in answered  # nothing changed yet: it waits
    changed_at = time.monotonic()
    task = submit(side, "wake")
    thread.join(timeout=5)
    assert answered["at"] - changed_at < 1.0  # at once, not at the end of its 20 s wait
    assert answered["index"] > index
    assert [t["ID"] for t in answered["body"].json()] == [str(task.id)]


@pytest.mark.parametrize("which", ["worker", "manager"])
def test_without_a_change_it_answers_when_the_wait_is_over(which, request):
    url = request.getfixturevalue(which)[1]
    index = index_of(url)
    began = time.monotonic()
    response = requests.get(f"{url}/tasks", params={"index": index, "wait": "700ms"})
    took = time.monotonic() - began
    assert 0.7 <= took < 5
    assert int(response.headers["X-Cube-Index"]) == index and response.json() == []


@pytest.mark.parametrize("which", ["worker", "manager"])
def test_two_hundred_watchers_leave_room_for_everyone_else(which, request):
    side = request.getfixturevalue(which)
    url = side[1]
    index = index_of(url)

    def watch(_: int) -> int:
        response = requests.get(f"{url}/tasks", params={"index": index, "wait": "30s"})
        return int(response.headers["X-Cube-Index"])

    with ThreadPoolExecutor(200) as pool:
        watchers = [pool.submit(watch, i) for i in range(200)]
        time.sleep(1.0)
        assert not any(w.done() for w in watchers)
        for _ in range(20):  # ordinary requests meanwhile: served, and quickly
            assert requests.get(f"{url}/health", timeout=2).status_code == 200
            assert requests.get(f"{url}/tasks", timeout=2).json() == []
        submit(side, "everyone")
        indexes = [w.result(timeout=10) for w in watchers]
    assert all(i > index for i in indexes)


def test_no_index_is_the_books_answer(worker, manager):
    for side in (worker, manager):
        submit(side, "plain")
        response = requests.get(f"{side[1]}/tasks", timeout=5)
        assert response.status_code == 200
        assert [t["Name"] for t in response.json()] == ["plain"]
        assert "X-Cube-Index" in response.headers  # extra, and harmless to a Go client


def test_deltas_pages_and_states(worker):
    node, url = worker
    tasks = [submit(worker, f"t{i}") for i in range(5)]
    middle = index_of(url)
    later = [submit(worker, f"u{i}") for i in range(2)]
    changed = requests.get(f"{url}/tasks", params={"since": middle}).json()
    assert [t["Name"] for t in changed] == ["u0", "u1"]
    node.stop_task(str(tasks[0].id))  # cancelled: Completed
    changed = requests.get(f"{url}/tasks", params={"since": middle}).json()
    assert [t["Name"] for t in changed] == ["u0", "u1", "t0"]
    done = requests.get(f"{url}/tasks", params={"state": "Completed"}).json()
    assert [t["Name"] for t in done] == ["t0"]
    assert requests.get(f"{url}/tasks", params={"state": "nope"}).status_code == 400
    ids = sorted(str(t.id) for t in [*tasks, *later])
    first = requests.get(f"{url}/tasks", params={"limit": 3}).json()
    rest = requests.get(f"{url}/tasks", params={"limit": 10, "after": first[-1]["ID"]}).json()
    assert [t["ID"] for t in first + rest] == ids


def test_a_forgotten_task_is_a_change_too(worker):
    node, url = worker
    task = node.submit(TaskEvent(task=Task("brief", "cube/echo", generation=1)))  # a manager's
    node.stop_task(str(task.id))
    index = index_of(url)
    node.acknowledge(index)
    assert retention.prune(node) == 1
    response = requests.get(f"{url}/tasks", params={"since": index})
    assert response.json() == [] and response.headers["X-Cube-Forgotten"] == str(task.id)
    again = requests.post(f"{url}/tasks", json=TaskEvent(task=task).to_wire())
    assert again.status_code == 409  # an old order for a forgotten task is not a new task
    assert node.tasks() == []


def test_a_server_stops_promptly_while_a_watcher_keeps_asking(tmp_path):
    node = build_worker(tmp_path, "process")
    server = Server(worker_app(node)).start()
    stop = threading.Event()

    def watcher() -> None:  # as the manager does: ask again the moment an answer comes
        index = 0
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.get(
                        f"{server.url}/tasks", params={"index": index, "wait": "30s"}, timeout=40
                    )
                    index = int(response.headers["X-Cube-Index"])
                except requests.RequestException:
                    return

    thread = threading.Thread(target=watcher)
    thread.start()
    time.sleep(0.5)
    began = time.monotonic()
    server.stop()
    assert time.monotonic() - began < 5  # not held up by waits that keep coming
    stop.set()
    thread.join(timeout=10)
    cleanup(node)
