"""Leader epochs: a worker follows only a proven leader, over real HTTP.

A worker given the leader secret believes an ``X-Cube-Epoch`` only with a proof signed
with that secret, and only an order moves it: an order with an older stamp is refused
with 409 and changes nothing, reads are answered and move nothing, a forged or
malformed epoch is refused (403, 400) and never stored, whatever route it comes on and
whether a token is required or not. The stamp followed survives a restart of the worker
process, ``--forget-leader`` clears it, and the client sends its stamp on orders only.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bottle
import pytest
import requests
from helpers import Procs, eventually

from cube.client import Conflict, DeposedLeader, Forbidden, WorkerClient
from cube.http import Server
from cube.manager.manager import Manager
from cube.manager.reconcile import Post, Stop
from cube.proof import (
    HEADER,
    MAX_EPOCH,
    PROOF_HEADER,
    BadEpoch,
    LeaderSecret,
    Stamp,
    Unproven,
    read,
)
from cube.runtime.process import ProcessRuntime
from cube.store import DiskStore, JsonCodec, MemoryStore, WireCodec
from cube.task import State, Task
from cube.worker import Worker
from cube.worker.api import make_app
from cube.worker.epoch import DeposedOrder, LeaderEpoch

BAD = ["abc", "-1", "0", "99999999999999999999", str(MAX_EPOCH + 1), "7\x01", "1.5", ""]
SECRET = LeaderSecret(b"the managers' secret, 32 bytes!!")
SERIES = "0123456789abcdef"
BORN = 1_700_000_000_000


def signed(epoch: int, born: int = BORN, series: str = SERIES) -> Stamp:
    return SECRET.sign(born, series, epoch)


def forged(epoch: int) -> Stamp:
    """A stamp signed with another secret: what anyone without the managers' can make."""
    return LeaderSecret(b"not the managers' secret at all!").sign(BORN, SERIES, epoch)


@dataclass
class Served:
    """A worker on the process runtime behind a real server on loopback."""

    worker: Worker
    url: str
    token: str | None = None

    def client(self, stamp: Stamp | None = None) -> WorkerClient:
        return WorkerClient(self.url, token=self.token, epoch=lambda: stamp)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**auth, **(extra or {})}

    def seen(self) -> tuple[Any, str]:
        """The task list and its index: any change to any record changes the index."""
        response = requests.get(f"{self.url}/tasks", headers=self.headers(), timeout=5)
        return response.json(), response.headers["X-Cube-Index"]

    def processes(self) -> set[str]:
        return {m.status.container_id for m in self.worker.runtime.list_managed()}


def _worker(tmp_path, name: str = "w", secret: LeaderSecret | None = SECRET) -> Worker:
    return Worker(
        name,
        MemoryStore(WireCodec(Task)),
        ProcessRuntime(owner=f"epoch-{tmp_path.name}", state_dir=tmp_path / name),
        timers=MemoryStore(JsonCodec()),
        leader_secret=secret,
        inspect_interval=0.2,
    )


def _stop(worker: Worker) -> None:
    worker.close()
    for managed in worker.runtime.list_managed():
        worker.runtime.stop(managed.status.container_id)


@pytest.fixture(params=[None, "s3cret"], ids=["no token", "token"])
def served(tmp_path, request) -> Iterator[Served]:
    token = request.param
    worker = _worker(tmp_path).start()
    try:
        with Server(make_app(worker, token), token_required=bool(token)) as server:
            yield Served(worker, server.url, token)
    finally:
        _stop(worker)


def running(client: WorkerClient, task_id: Any) -> Task:
    return eventually(
        lambda: (t := client.task(task_id)).state is State.Running and t, what="Running"
    )


def task(name: str) -> Task:
    return Task(name, "cube/echo")


# ------------------------------------------------------------------- the rules


def test_read_takes_plain_numbers_with_a_well_formed_proof():
    proof = signed(9).headers()[PROOF_HEADER]
    assert read(None, None) is None
    assert read("9", proof) == signed(9)
    assert read(str(MAX_EPOCH), proof).epoch == MAX_EPOCH
    for text in [*BAD, " 5", "+5", "٣", "5" * 5000]:
        with pytest.raises(BadEpoch, match=HEADER):
            read(text, proof)
    with pytest.raises(Unproven, match=PROOF_HEADER):
        read(str(MAX_EPOCH), None)  # the forgery seen: a bare number
    for text in ["", "x", f"{SERIES}:{BORN}", f"{SERIES.upper()}:{BORN}:{'A' * 43}", "é" * 70]:
        with pytest.raises(BadEpoch, match=PROOF_HEADER):
            read("9", text)


def test_stamps_order_by_birth_of_their_series_then_epoch():
    assert signed(9) < signed(10)
    assert signed(186) < signed(3, born=BORN + 1, series="ffffffffffffffff")  # a newer etcd
    assert signed(3, series="0000000000000001") < signed(3, series="0000000000000002")
    assert signed(9) == Stamp(BORN, SERIES, 9, "another proof")  # the proof is not compared


def test_only_the_secret_that_signed_a_stamp_proves_it():
    good = signed(9)
    assert SECRET.proves(good)
    for bad in [
        forged(9),
        Stamp(good.born, good.series, 10, good.mac),
        Stamp(good.born + 1, good.series, 9, good.mac),
        Stamp(good.born, "ffffffffffffffff", 9, good.mac),
        Stamp(good.born, good.series, 9, "A" * 43),
    ]:
        assert not SECRET.proves(bad)
        with pytest.raises(Unproven, match="does not check"):
            SECRET.check(bad)


def test_a_series_born_in_the_future_is_absurd_even_signed():
    leader = LeaderEpoch(MemoryStore(JsonCodec()), SECRET)
    tomorrow = signed(9, born=(time.time_ns() // 1_000_000) + 2 * 86_400_000)
    with pytest.raises(BadEpoch, match=PROOF_HEADER):
        leader.believe(*tomorrow.headers().values())
    assert leader.stamp is None


def test_only_orders_move_the_stamp_which_is_stored_first(tmp_path):
    leader = LeaderEpoch(DiskStore(tmp_path / "leader", JsonCodec()), SECRET)
    assert leader.value == 0 and leader.stamp is None
    assert leader.believe(*signed(7).headers().values()) == signed(7)
    assert leader.value == 0  # believed, but no order came with it
    with leader.order(signed(8)):
        assert leader.value == 8
    with pytest.raises(DeposedOrder), leader.order(signed(6)):
        pytest.fail("a refused order must not be carried out")
    with pytest.raises(Unproven), leader.order(None):
        pytest.fail("an order without a stamp must not be carried out")
    leader.close()
    again = LeaderEpoch(DiskStore(tmp_path / "leader", JsonCodec()), SECRET)
    assert again.stamp == signed(8)
    again.close()
    other = LeaderEpoch(DiskStore(tmp_path / "leader", JsonCodec()), LeaderSecret(b"k" * 32))
    assert other.stamp is None  # another secret now: what was stored is not believed
    other.close()
    forgot = LeaderEpoch(DiskStore(tmp_path / "leader", JsonCodec()), SECRET, forget=True)
    assert forgot.stamp is None
    with forgot.order(signed(2)):  # an older epoch, followed once the leader is forgotten
        assert forgot.value == 2
    forgot.close()


def test_orders_from_many_threads_keep_the_newest():
    leader = LeaderEpoch(MemoryStore(JsonCodec()), SECRET)

    def order(n: int) -> None:
        try:
            with leader.order(signed(n)):
                pass
        except DeposedOrder:
            pass

    threads = [threading.Thread(target=order, args=(n,)) for n in range(1, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert leader.value == 199 and leader.store.get("leader")["Epoch"] == 199


def test_a_stored_stamp_that_is_not_one_is_not_followed():
    for value in ["nine", 9, {"Epoch": 9}, forged(9).to_json()]:
        store = MemoryStore(JsonCodec())
        store.put("leader", value)
        assert LeaderEpoch(store, SECRET).stamp is None


# --------------------------------------------------------------- over HTTP (a)


def test_a_deposed_leaders_orders_are_refused_and_change_nothing(served):
    leader, deposed = served.client(signed(9)), served.client(signed(5))
    first = running(leader, leader.submit(task("first")).id)
    assert served.worker.epoch.value == 9
    before, processes = served.seen(), served.processes()
    assert processes == {first.container_id}

    with pytest.raises(DeposedLeader) as posted:
        deposed.submit(task("late"))
    assert posted.value.status == 409 and posted.value.epoch == 9
    assert posted.value.stamp == signed(9) and SECRET.proves(posted.value.stamp)
    assert "epoch 5" in posted.value.message and "epoch 9" in posted.value.message
    with pytest.raises(DeposedLeader, match=r"epoch 5 of series \w+; this worker follows epoch 9"):
        deposed.stop(first.id)
    with pytest.raises(DeposedLeader):
        deposed.follow()

    assert served.seen() == before  # the same list, at the same index
    assert served.processes() == processes
    assert served.worker.get_task(str(first.id)).desired is State.Running
    assert served.worker.epoch.value == 9

    second = running(leader, leader.submit(task("second")).id)  # epoch 9 is followed
    served.client(signed(10)).follow()  # a newer leader announces itself
    assert served.worker.epoch.value == 10
    with pytest.raises(DeposedLeader, match="epoch 9 of series"):
        leader.stop(second.id)
    newer = served.client(signed(10))
    for each in (first, second):
        newer.stop(each.id)
    eventually(lambda: all(t.state is State.Completed for t in newer.tasks()), what="stopped")


def test_other_conflicts_are_not_deposed_leaders(served):
    client = served.client(signed(9))
    done = client.submit(task("once"))
    client.stop(done.id)
    eventually(lambda: client.task(done.id).state is State.Completed, what="stopped")
    with pytest.raises(Conflict) as refused:
        client.stop(done.id)
    assert not isinstance(refused.value, DeposedLeader)


# --------------------------------------------------------------- over HTTP (b)


def test_reads_are_answered_and_never_move_the_epoch(served):
    served.client(signed(9)).follow()
    for stamp in (signed(12), signed(5)):  # proven, newer and older: still only reads
        headers = served.headers(stamp.headers())
        for path in ("/tasks", "/stats", "/health", "/openapi.json"):
            response = requests.get(served.url + path, headers=headers, timeout=5)
            assert response.status_code == 200, (path, response.text)
        assert served.worker.epoch.value == 9


def test_a_forged_epoch_on_a_read_or_an_order_is_refused_and_changes_nothing(served):
    """What wedged a worker for good: a bare epoch of 2**63-1 on one read. Now it is a
    403 naming the header, on reads and orders alike, with or without the API token,
    and the real leader's orders go on being carried out."""
    leader = served.client(signed(2))
    held = running(leader, leader.submit(task("held")).id)
    before, processes = served.seen(), served.processes()
    forgeries = [
        {HEADER: str(MAX_EPOCH)},
        forged(MAX_EPOCH).headers(),
        {**signed(2).headers(), HEADER: str(MAX_EPOCH)},  # a real proof, another epoch
    ]
    asked = [
        ("GET", "/tasks", {}),
        ("GET", f"/tasks/{held.id}", {}),
        ("GET", "/health", {}),
        ("POST", "/tasks", {"json": {"Name": "forged", "Image": "cube/echo"}}),
        ("DELETE", f"/tasks/{held.id}", {}),
        ("PUT", "/leader", {}),
    ]
    for forgery in forgeries:
        for method, path, extra in asked:
            response = requests.request(
                method, served.url + path, headers=served.headers(forgery), timeout=5, **extra
            )
            assert response.status_code == 403, (method, path, forgery, response.text)
            assert HEADER in response.json()["Message"]
    assert served.seen() == before and served.processes() == processes
    assert served.worker.epoch.stamp == signed(2)
    assert served.worker.epoch.store.get("leader")["Epoch"] == 2
    later = running(leader, leader.submit(task("later")).id)  # the leader is still obeyed
    leader.stop(later.id)
    leader.stop(held.id)
    eventually(lambda: all(t.state is State.Completed for t in leader.tasks()), what="stopped")


def test_an_order_without_a_stamp_is_refused_by_a_worker_with_a_secret(served):
    plain = served.client()
    with pytest.raises(Forbidden, match="signed epoch"):
        plain.submit(task("unsigned"))
    assert served.seen()[0] == [] and served.processes() == set()


def test_a_worker_without_a_secret_believes_no_epoch_and_obeys_as_before(tmp_path):
    worker = _worker(tmp_path, secret=None).start()
    try:
        with Server(make_app(worker)) as server:
            with pytest.raises(Forbidden, match="no leader secret"):
                WorkerClient(server.url, epoch=lambda: signed(4)).submit(task("signed"))
            response = requests.get(f"{server.url}/tasks", headers=signed(4).headers(), timeout=5)
            assert response.status_code == 403 and HEADER in response.json()["Message"]
            assert worker.epoch.stamp is None and worker.tasks() == []
            plain = WorkerClient(server.url)  # one manager, or the book's Go manager
            done = plain.submit(task("plain"))
            plain.stop(done.id)
    finally:
        _stop(worker)


def test_health_asked_without_the_token_reads_no_header(tmp_path):
    worker = _worker(tmp_path)
    try:
        with Server(make_app(worker, token="s3cret"), token_required=True) as server:
            url = f"{server.url}/health"
            for headers in ({HEADER: str(MAX_EPOCH)}, {HEADER: "abc"}, signed(4).headers()):
                assert requests.get(url, headers=headers, timeout=5).status_code == 200
            assert requests.put(f"{server.url}/leader", timeout=5).status_code == 401
            assert worker.epoch.value == 0
            WorkerClient(server.url, token="s3cret", epoch=lambda: signed(4)).follow()
            assert worker.epoch.value == 4
            assert requests.get(url, timeout=5).json()["Epoch"] == 4
    finally:
        _stop(worker)


# --------------------------------------------------------------- over HTTP (d)


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_a_bad_header_answers_400_naming_it_and_changes_nothing(served, value):
    leader = served.client(signed(9))
    held = running(leader, leader.submit(task("held")).id)
    before, processes = served.seen(), served.processes()
    asked = [
        ("POST", "/tasks", {"json": {"Name": "bad", "Image": "cube/echo"}}),
        ("DELETE", f"/tasks/{held.id}", {}),
        ("GET", "/tasks", {}),
        ("GET", f"/tasks/{held.id}", {}),
        ("GET", "/health", {}),
    ]
    headers = served.headers({**signed(9).headers(), HEADER: value})
    for method, path, extra in asked:
        response = requests.request(method, served.url + path, headers=headers, timeout=5, **extra)
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


def test_the_stamp_survives_a_restart_and_forget_leader_clears_it(procs, tmp_path):
    secret = tmp_path / "leader.secret"
    secret.write_text("the managers' secret, 32 bytes!!\n")
    options = ("--leader-secret", str(secret))
    procs.start_worker("w1", options=options)
    url = procs.worker_url("w1")
    WorkerClient(url, epoch=lambda: signed(9)).follow()

    procs.signal("w1", signal.SIGKILL)  # no chance to write anything more
    procs.start_worker("w1", options=options)
    with pytest.raises(DeposedLeader, match="epoch 5 of series"):
        WorkerClient(url, epoch=lambda: signed(5)).submit(task("late"))
    assert WorkerClient(url).tasks() == []

    procs.signal("w1", signal.SIGTERM)  # a clean stop, then the documented reset
    procs.start_worker("w1", options=(*options, "--forget-leader"))
    assert requests.get(f"{url}/health", timeout=5).json()["Epoch"] == 0
    WorkerClient(url, epoch=lambda: signed(5)).follow()  # an older epoch: followed now
    with pytest.raises(DeposedLeader, match="epoch 4 of series"):
        WorkerClient(url, epoch=lambda: signed(4)).submit(task("older"))
    assert "follows no leader now (it followed epoch 9" in (tmp_path / "w1.log").read_text()


# --------------------------------------------------------------- the client (e)


def test_the_client_says_its_stamp_on_orders_only(tmp_path):
    """What the wire carries, as the worker's app reads it."""
    worker = _worker(tmp_path)
    app = make_app(worker)
    sent: list[tuple[str, str | None, str | None]] = []
    app.add_hook(
        "before_request",
        lambda: sent.append(
            (
                bottle.request.method,
                bottle.request.get_header(HEADER),
                bottle.request.get_header(PROOF_HEADER),
            )
        ),
    )
    stamp = signed(7)
    proof = stamp.headers()[PROOF_HEADER]
    try:
        with Server(app) as server:
            client = WorkerClient(server.url, epoch=lambda: stamp)
            assert client.alive()
            client.stats()
            posted = client.submit(task("e"))
            client.tasks()
            client.watch("/tasks", 0)
            client.stop(posted.id)
            client.follow()
            WorkerClient(server.url, epoch=lambda: None).tasks()
    finally:
        _stop(worker)
    assert sent == [
        ("GET", None, None),
        ("GET", None, None),
        ("POST", "7", proof),
        ("GET", None, None),
        ("GET", None, None),
        ("DELETE", "7", proof),
        ("PUT", "7", proof),
        ("GET", None, None),
    ]


# ------------------------------------------------------------- the manager (3)


def test_a_single_manager_takes_a_refusal_as_not_sent_and_says_so_once(tmp_path, caplog):
    worker = _worker(tmp_path).start()
    try:
        with Server(make_app(worker)) as server:
            WorkerClient(server.url, epoch=lambda: signed(9)).follow()
            address = server.url.split("://")[1]
            manager = Manager([address], update_interval=60)
            try:
                name = next(iter(manager.nodes.clients))
                manager.nodes.clients[name].epoch = lambda: signed(5)
                order = task("late").replace(worker=name)
                with caplog.at_level(logging.WARNING, logger="cube.manager.orders"):
                    assert manager.control.orders.send(Post(name, order)) is False
                    assert manager.control.orders.send(Stop(name, str(uuid.uuid4()), 1)) is False
                    assert manager.control.orders.send(Post(name, order)) is False
                warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert warned == [
                    f"worker {name} follows a newer leader (epoch 9), which it cannot prove"
                ]
                assert worker.tasks() == []
                assert not manager.tasks.findings.refusals(str(order.id))  # not a refusal
            finally:
                manager.close()
    finally:
        _stop(worker)


# ------------------------------------------------------------ the document (4)


def test_the_worker_document_names_the_headers_on_every_route():
    from cube.manager.api import manager_document
    from cube.worker.api import worker_document

    operations = [
        operation
        for item in worker_document()["paths"].values()
        for method, operation in item.items()
        if method != "parameters"
    ]
    assert len(operations) == 9
    for operation in operations:
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert set(headers) == {HEADER, PROOF_HEADER}
        assert headers[HEADER]["required"] is False
        assert headers[HEADER]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_EPOCH}
        assert "400" in operation["responses"]
    assert HEADER not in str(manager_document())  # the manager takes no epoch
