"""A watch resumed from an index the server cannot answer for is told so (410 Gone), and
the manager's watcher then lists the worker again: a task forgotten while nobody was
watching is seen gone. Real worker processes, killed and started again."""

from __future__ import annotations

import signal

import pytest
import requests
from helpers import Procs, eventually

from cube.client import Gone, NotFound, WorkerClient
from cube.http import ListQuery
from cube.manager.observe import Reports, Watcher
from cube.records import IndexGone, Records
from cube.store import MemoryStore, WireCodec
from cube.task import State, Task, TaskEvent


@pytest.fixture
def procs(tmp_path):
    cluster = Procs(tmp_path)
    yield cluster
    cluster.close()


def ordered(name: str) -> TaskEvent:
    """A run order as a manager sends it (generation 1), so that the worker forgets the
    task once the watcher acknowledges having seen it finish."""
    return TaskEvent(task=Task(name=name, image="cube/echo", generation=1), state=State.Running)


def test_a_watch_resumed_after_a_worker_restart_sees_what_was_forgotten(procs):
    procs.start_worker("w1")
    client = WorkerClient(procs.worker_url("w1"), timeout=5)
    reports = Reports()
    watcher = Watcher("w1", client, reports, lambda *_: None, interval=0.1)
    assert watcher.once(0.0)
    task = client.submit(ordered("resumed"))
    key = str(task.id)
    eventually(lambda: client.task(key).state is State.Running, what="the task running")
    client.stop(key, generation=2)

    def seen(state: State) -> bool:
        watcher.once(0.5)
        copy = reports.copies(key).get("w1")
        return copy is not None and copy.state is state

    eventually(lambda: seen(State.Completed), what="the watcher seeing it Completed")
    # acknowledge what the watcher saw, without waiting (a watch that waited could see the
    # forgetting itself): the worker may forget the task now, with nobody watching
    ack = {"index": watcher.index, "since": watcher.index, "wait": "0s", "ack": 1}
    requests.get(procs.worker_url("w1") + "/tasks", params=ack, timeout=5).raise_for_status()

    def forgotten() -> bool:
        try:
            client.task(key)
        except NotFound:
            return True
        return False

    eventually(forgotten, what="the worker forgetting the finished task")
    old = requests.get(procs.worker_url("w1") + "/tasks", timeout=5).headers["X-Cube-Index"]
    procs.signal("w1", signal.SIGKILL)
    procs.start_worker("w1")

    for query in (f"?since={old}", f"?index={old}&since={old}&wait=1s", "?since=1"):
        answer = requests.get(procs.worker_url("w1") + "/tasks" + query, timeout=5)
        assert answer.status_code == 410, (query, answer.status_code, answer.text)
        assert "list again" in answer.json()["Message"]
    assert requests.get(procs.worker_url("w1") + "/tasks?since=0", timeout=5).status_code == 200

    assert reports.copies(key).get("w1") is not None  # what it believed before the restart
    assert watcher.once(1.0)  # resumed: told the index is gone, it lists the worker again
    assert reports.copies(key).get("w1") is None
    # a whole-list watch starts over by itself; a delta is told to
    data, index = client.watch("/tasks", int(old), wait=1.0)
    assert data == [] and index > int(old)
    with pytest.raises(Gone):
        client.watch("/tasks", int(old), wait=1.0, since=int(old))


def test_a_delta_from_before_the_oldest_tombstone_kept_is_gone(monkeypatch):
    """Tombstones are kept up to a bound; asking for a delta from before the oldest one
    still kept would silently miss a forgotten task, so it is refused."""
    monkeypatch.setattr("cube.records.FORGOTTEN_KEPT", 2)
    records = Records(MemoryStore(WireCodec(Task), "tasks"))
    tasks = [Task(name=f"t{n}", image="cube/echo") for n in range(3)]
    for task in tasks:
        records.put(task)
    before = records.index
    for task in tasks[:2]:
        records.forget(str(task.id))
    assert records.forgotten_since(before) == [str(t.id) for t in tasks[:2]]
    records.forget(str(tasks[2].id))  # the first tombstone is dropped to keep two
    with pytest.raises(IndexGone):
        records.forgotten_since(before)
    with pytest.raises(IndexGone):
        records.select(ListQuery(since=before))
    later = records.index - 2  # after the first forgetting: both kept tombstones answer
    assert records.forgotten_since(later) == [str(t.id) for t in tasks[1:]]
