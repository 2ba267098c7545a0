"""Leader epochs: a worker refuses the orders of a deposed leader, over real HTTP.

A worker follows the highest ``X-Cube-Epoch`` any request brought; an order (POST,
DELETE) with an older one is refused with 409 and changes nothing, reads are answered,
an order without the header is taken as before, a bad header is a 400. The epoch
survives a restart of the worker process, and the client says its epoch on every
request.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bottle
import pytest
import requests
from helpers import Procs, eventually

from cube.client import Conflict, DeposedLeader, WorkerClient
from cube.http import Server
from cube.manager.manager import Manager
from cube.manager.reconcile import Post, Stop
from cube.runtime.process import ProcessRuntime
from cube.store import DiskStore, JsonCodec, MemoryStore, WireCodec
from cube.task import State, Task
from cube.worker import Worker
from cube.worker.api import make_app
from cube.worker.epoch import HEADER, MAX_EPOCH, BadEpoch, DeposedOrder, LeaderEpoch, check, parse

BAD = ["abc", "-1", "0", "99999999999999999999", str(MAX_EPOCH + 1), "7\x01", "1.5", ""]


@dataclass
class Served:
    """A worker on the process runtime behind a real server on loopback."""

    worker: Worker
    url: str

    def client(self, epoch: int | None = None) -> WorkerClient:
        return WorkerClient(self.url, epoch=None if epoch is None else lambda: epoch)

    def seen(self) -> tuple[Any, str]:
        """The task list and its index: any change to any record changes the index."""
        response = requests.get(f"{self.url}/tasks", timeout=5)
        return response.json(), response.headers["X-Cube-Index"]

    def processes(self) -> set[str]:
        return {m.status.container_id for m in self.worker.runtime.list_managed()}


def _worker(tmp_path, name: str = "w") -> Worker:
    return Worker(
        name,
        MemoryStore(WireCodec(Task)),
        ProcessRuntime(owner=f"epoch-{tmp_path.name}", state_dir=tmp_path / name),
        timers=MemoryStore(JsonCodec()),
        reconcile_interval=0.2,
    )


def _stop(worker: Worker) -> None:
    worker.close()
    for managed in worker.runtime.list_managed():
        worker.runtime.stop(managed.status.container_id)


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    worker = _worker(tmp_path).start()
    try:
        with Server(make_app(worker)) as server:
            yield Served(worker, server.url)
    finally:
        _stop(worker)


def running(client: WorkerClient, task_id: Any) -> Task:
    return eventually(
        lambda: (t := client.task(task_id)).state is State.Running and t, what="Running"
    )


def task(name: str) -> Task:
    return Task(name, "cube/echo")


# ------------------------------------------------------------------- the rules


def test_parse_takes_plain_positive_numbers_below_two_to_the_63():
    assert parse(None) is None
    assert parse("1") == 1 and parse("9") == 9 and parse(str(MAX_EPOCH)) == MAX_EPOCH
    for text in [*BAD, " 5", "+5", "٣", "5" * 5000]:
        with pytest.raises(BadEpoch, match=HEADER):
            parse(text)


def test_an_order_older_than_the_epoch_followed_is_refused():
    check(None, 9)  # no epoch: a single manager
    check(9, 9)
    check(10, 9)
    with pytest.raises(DeposedOrder, match=r"epoch 5; this worker follows epoch 9"):
        check(5, 9)


def test_the_epoch_only_grows_and_is_stored_first(tmp_path):
    leader = LeaderEpoch(DiskStore(tmp_path / "leader", JsonCodec()))
    assert leader.value == 0
    assert leader.heard(None) == 0 and leader.heard(7) == 7 and leader.heard(3) == 7
    with pytest.raises(DeposedOrder), leader.order(6):
        pytest.fail("a refused order must not be carried out")
    with leader.order(8):
        assert leader.value == 8
    leader.close()
    again = LeaderEpoch(DiskStore(tmp_path / "leader", JsonCodec()))
    assert again.value == 8
    again.close()


def test_raising_the_epoch_from_many_threads_keeps_the_highest():
    leader = LeaderEpoch(MemoryStore(JsonCodec()))
    threads = [threading.Thread(target=leader.heard, args=(n,)) for n in range(1, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert leader.value == 199 and leader.store.get("epoch") == 199


def test_an_unreadable_stored_epoch_is_none_followed():
    store = MemoryStore(JsonCodec())
    store.put("epoch", "nine")
    assert LeaderEpoch(store).value == 0


# --------------------------------------------------------------- over HTTP (a)


def test_a_deposed_leaders_orders_are_refused_and_change_nothing(served):
    leader, deposed = served.client(epoch=9), served.client(epoch=5)
    first = running(leader, leader.submit(task("first")).id)
    assert served.worker.epoch.value == 9
    before, processes = served.seen(), served.processes()
    assert processes == {first.container_id}

    with pytest.raises(DeposedLeader) as posted:
        deposed.submit(task("late"))
    assert posted.value.status == 409 and posted.value.epoch == 9
    assert "epoch 5" in posted.value.message and "epoch 9" in posted.value.message
    with pytest.raises(DeposedLeader, match=r"epoch 5; this worker follows epoch 9"):
        deposed.stop(first.id)
    raw = requests.delete(f"{served.url}/tasks/{first.id}", headers={HEADER: "5"}, timeout=5)
    assert raw.status_code == 409 and raw.headers[HEADER] == "9"

    assert served.seen() == before  # the same list, at the same index
    assert served.processes() == processes
    assert served.worker.get_task(str(first.id)).desired is State.Running
    assert served.worker.epoch.value == 9

    second = running(leader, leader.submit(task("second")).id)  # epoch 9 is followed
    served.client(epoch=10).stop(second.id)  # and a newer one
    assert served.worker.epoch.value == 10
    eventually(lambda: leader.task(second.id).state is State.Completed, what="stopped")
    with pytest.raises(DeposedLeader, match="epoch 9; this worker follows epoch 10"):
        leader.submit(task("third"))

    plain = served.client()  # no header at all: a single manager, taken as before
    third = running(plain, plain.submit(task("third")).id)
    plain.stop(third.id)
    plain.stop(first.id)
    eventually(lambda: all(t.state is State.Completed for t in plain.tasks()), what="all stopped")


def test_other_conflicts_are_not_deposed_leaders(served):
    client = served.client(epoch=9)
    done = client.submit(task("once"))
    client.stop(done.id)
    eventually(lambda: client.task(done.id).state is State.Completed, what="stopped")
    with pytest.raises(Conflict) as refused:
        client.stop(done.id)
    assert not isinstance(refused.value, DeposedLeader)


# --------------------------------------------------------------- over HTTP (b)


def test_any_read_raises_the_epoch_and_older_reads_are_answered(served):
    assert served.client(epoch=11).alive()  # the leader's probe
    assert served.worker.epoch.value == 11
    assert served.client(epoch=12).tasks() == []
    assert served.worker.epoch.value == 12
    assert served.client(epoch=5).tasks() == []  # reads are harmless: answered
    assert served.client(epoch=5).stats() is not None
    assert served.worker.epoch.value == 12

    before = served.seen()
    with pytest.raises(DeposedLeader, match="epoch 10; this worker follows epoch 12"):
        served.client(epoch=10).submit(task("late"))
    assert served.seen() == before and served.processes() == set()


def test_health_asked_without_the_token_teaches_nothing(tmp_path):
    worker = _worker(tmp_path)
    try:
        with Server(make_app(worker, token="s3cret"), token_required=True) as server:
            url = f"{server.url}/health"
            huge = {HEADER: str(MAX_EPOCH)}
            assert requests.get(url, headers=huge, timeout=5).status_code == 200
            assert requests.get(url, headers={HEADER: "abc"}, timeout=5).status_code == 200
            assert requests.get(f"{server.url}/tasks", headers=huge, timeout=5).status_code == 401
            assert worker.epoch.value == 0
            assert WorkerClient(server.url, token="s3cret", epoch=lambda: 4).alive()
            assert worker.epoch.value == 4
    finally:
        _stop(worker)


# --------------------------------------------------------------- over HTTP (d)


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_a_bad_header_answers_400_naming_it_and_changes_nothing(served, value):
    leader = served.client(epoch=9)
    held = running(leader, leader.submit(task("held")).id)
    before, processes = served.seen(), served.processes()
    asked = [
        ("POST", "/tasks", {"json": {"Name": "bad", "Image": "cube/echo"}}),
        ("DELETE", f"/tasks/{held.id}", {}),
        ("GET", "/tasks", {}),
        ("GET", f"/tasks/{held.id}", {}),
        ("GET", "/health", {}),
    ]
    for method, path, extra in asked:
        response = requests.request(
            method, served.url + path, headers={HEADER: value}, timeout=5, **extra
        )
        assert response.status_code == 400, (method, path, response.text)
        assert HEADER in response.json()["Message"]
    assert served.seen() == before and served.processes() == processes
    assert served.worker.epoch.value == 9
    leader.stop(held.id)


# --------------------------------------------------------------- a restart (c)


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    cluster = Procs(tmp_path)
    yield cluster
    cluster.close()


def test_the_epoch_survives_a_restart_of_the_worker_process(procs):
    procs.start_worker("w1")
    url = procs.worker_url("w1")
    assert WorkerClient(url, epoch=lambda: 9).alive()

    procs.signal("w1", signal.SIGKILL)  # no chance to write anything more
    procs.start_worker("w1")
    with pytest.raises(DeposedLeader, match="epoch 5; this worker follows epoch 9"):
        WorkerClient(url, epoch=lambda: 5).submit(task("late"))
    assert WorkerClient(url).tasks() == []

    assert WorkerClient(url, epoch=lambda: 12).tasks() == []
    procs.signal("w1", signal.SIGTERM)  # a clean stop
    procs.start_worker("w1")
    with pytest.raises(DeposedLeader, match="epoch 10; this worker follows epoch 12"):
        WorkerClient(url, epoch=lambda: 10).submit(task("late"))
    assert WorkerClient(url).tasks() == []


# --------------------------------------------------------------- the client (e)


class Counter:
    """An epoch that grows with every request, so each request's arrival shows."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        self.value += 1
        return self.value


def test_the_client_says_its_epoch_on_every_request(served):
    epoch = Counter()
    client = served.client()
    client.epoch = epoch
    worker = served.worker

    def heard(call: Any) -> Any:
        """Run one call; the worker must have heard the epoch it was sent with."""
        result = call()
        assert worker.epoch.value == epoch.value > 0, call
        return result

    assert heard(client.alive)
    heard(client.health)
    heard(client.stats)
    posted = heard(lambda: client.submit(task("e")))
    heard(client.tasks)
    heard(lambda: client.task(posted.id))
    heard(lambda: client.runtime_status(posted.id))
    heard(lambda: client.logs(posted.id))
    _, index = heard(lambda: client.watch("/tasks", 0))
    heard(lambda: client.watch("/tasks", index, wait=0.05))
    heard(lambda: client.stop(posted.id, generation=posted.generation))
    heard(lambda: client.with_timeout(2).tasks())
    assert epoch.value == 12


@pytest.mark.parametrize("epoch", [None, 0], ids=["no epoch", "epoch 0"])
def test_without_an_epoch_no_header_is_sent(served, epoch):
    """A header with no positive value would be a 400 and any value would raise the
    epoch: every kind of call answered with the epoch still 0 means none was sent."""
    client = served.client()
    client.epoch = None if epoch is None else lambda: epoch
    assert client.alive()
    client.health()
    client.stats()
    posted = client.submit(task("plain"))
    client.tasks()
    client.task(posted.id)
    client.logs(posted.id)
    client.watch("/tasks", 0)
    client.stop(posted.id)
    assert served.worker.epoch.value == 0


def test_a_client_sends_exactly_its_epoch(tmp_path):
    """What the wire carries, as the worker's app reads it."""
    worker = _worker(tmp_path)
    app = make_app(worker)
    sent: list[str | None] = []
    app.add_hook("before_request", lambda: sent.append(bottle.request.get_header(HEADER)))
    try:
        with Server(app) as server:
            WorkerClient(server.url, epoch=lambda: 7).tasks()
            WorkerClient(server.url).tasks()
            WorkerClient(server.url, epoch=lambda: 0).tasks()
    finally:
        _stop(worker)
    assert sent == ["7", None, None]


# ------------------------------------------------------------- the manager (3)


def test_the_manager_takes_a_refusal_as_not_sent_and_says_so_once(served, caplog):
    served.client(epoch=9).alive()
    address = served.url.split("://")[1]
    manager = Manager([address], update_interval=60)
    try:
        name = next(iter(manager.cluster.clients))
        client = manager.cluster.clients[name]
        client.epoch = lambda: 5
        order = task("late").replace(worker=name)
        with caplog.at_level(logging.WARNING, logger="cube.manager.control"):
            assert manager.control._send(Post(name, order)) is False
            assert manager.control._send(Stop(name, str(uuid.uuid4()), 1)) is False
            assert manager.control._send(Post(name, order)) is False
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warned == [
            f"worker {name} follows a newer leader (epoch 9): this manager no longer leads"
        ]
        assert served.worker.tasks() == [] and served.processes() == set()
        assert not manager.cluster.refusal(order, name)  # not taken for a refused task
    finally:
        manager.close()


# ------------------------------------------------------------ the document (4)


def test_the_worker_document_names_the_header_on_every_route():
    from cube.manager.api import manager_document
    from cube.worker.api import worker_document

    operations = [
        operation
        for item in worker_document()["paths"].values()
        for method, operation in item.items()
        if method != "parameters"
    ]
    assert len(operations) == 8
    for operation in operations:
        (header,) = [p for p in operation["parameters"] if p["in"] == "header"]
        assert header["name"] == HEADER and header["required"] is False
        assert header["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_EPOCH}
        assert "400" in operation["responses"]
    assert HEADER not in str(manager_document())  # the manager takes no epoch
