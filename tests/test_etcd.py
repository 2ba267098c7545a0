"""The etcd layer on a real etcd: the store (answering as DiskStore does), revisions,
transactions, watches, and a restart of etcd under all of them."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time

import pytest
from etcd_helpers import unique_prefix, wipe
from helpers import eventually
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_contract import OPERATIONS, observe

from cube.etcd import (
    CasConflict,
    EtcdClient,
    EtcdError,
    EtcdStore,
    EtcdUnavailable,
    Txn,
    parse_endpoints,
    prefix_end,
    watch,
)
from cube.etcd import store as etcd_store
from cube.store import DiskStore, JsonCodec, StoreError, StoreFull, WireCodec
from cube.task import State, Task

TASKS = WireCodec(Task)


@pytest.fixture
def client(etcd_ok):
    with EtcdClient(etcd_ok) as client:
        yield client


@pytest.fixture
def prefix(client):
    prefix = unique_prefix()
    yield prefix
    wipe(client, prefix)


def test_endpoints_from_the_cli_form():
    assert parse_endpoints("etcd://h1:1,h2:2,h3") == [
        "http://h1:1",
        "http://h2:2",
        "http://h3:2379",
    ]
    assert parse_endpoints(["http://a:5", "https://b:6"]) == ["http://a:5", "https://b:6"]
    assert parse_endpoints("etcd://[::1]:7") == ["http://[::1]:7"]
    with pytest.raises(ValueError, match="not an etcd endpoint"):
        parse_endpoints("etcd://")
    with pytest.raises(ValueError, match="no etcd endpoint"):
        parse_endpoints(" , ")
    assert prefix_end("/cube/tasks/") == "/cube/tasks0"


# ---------------------------------------------------------------------- the store


@pytest.mark.etcd
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(OPERATIONS, max_size=15))
def test_the_store_answers_as_disk_store_does(client, prefix, operations):
    with tempfile.TemporaryDirectory() as directory:
        disk = DiskStore(directory, JsonCodec())
        etcd = EtcdStore(client, f"{prefix}/{time.monotonic_ns()}", JsonCodec())
        try:
            assert observe(etcd, operations) == observe(disk, operations)
        finally:
            disk.close()
            wipe(client, etcd.prefix)


@pytest.mark.etcd
def test_values_are_disk_stores_json_text_and_copies(client, prefix, tmp_path):
    disk, etcd = DiskStore(tmp_path / "s", TASKS), EtcdStore(client, prefix, TASKS)
    task = Task("web", "cube/echo", state=State.Running, memory=64 * 2**20)
    for store in (disk, etcd):
        store.put(str(task.id), task)
    assert etcd._raw_get(str(task.id)) == disk._raw_get(str(task.id))
    assert json.loads(client.get(f"{prefix}/{task.id}").value) == task.to_wire()
    got = etcd.get(str(task.id))
    got.name = "changed"
    assert etcd.get(str(task.id)) == task
    with pytest.raises(TypeError, match="holds Task, not dict"):
        etcd.put("k", {"Name": "a"})
    disk.close()


@pytest.mark.etcd
def test_unreadable_values_are_set_aside_never_dropped(client, prefix, caplog):
    store = EtcdStore(client, prefix, TASKS)
    good = Task("good", "cube/echo")
    store.put(str(good.id), good)
    client.put(f"{prefix}/broken", "{not json")
    client.put(f"{prefix}/wrong-shape", json.dumps({"Name": "x"}))
    client.put(f"{prefix}/binary", b"\xff\xfe\x00")
    for key, why in [("broken", "unreadable value"), ("wrong-shape", "Task.Image")]:
        with pytest.raises(StoreError, match=why):
            store.get(key)
    with pytest.raises(StoreError, match="not text"):
        store.get("binary")

    assert store.list() == [good]
    aside = store.unreadable()
    assert set(aside) == {"broken", "wrong-shape", "binary"}
    assert "Task.Image" in aside["wrong-shape"]
    for key in aside:
        assert key in caplog.text
    # text moved aside with its reason, in one transaction; bytes that are not text stay
    assert store.count() == 2 and store.keys() == sorted(["binary", str(good.id)])
    kept = json.loads(client.get(f"{prefix}.unreadable/broken").value)
    assert kept["Raw"] == "{not json" and "unreadable value" in kept["Error"]
    caplog.clear()
    assert EtcdStore(client, prefix, TASKS).list() == [good]  # once is enough
    assert "set aside" not in caplog.text
    wipe(client, f"{prefix}.unreadable/")


@pytest.mark.etcd
def test_listings_are_one_snapshot_read_a_page_at_a_time(client, prefix, monkeypatch):
    monkeypatch.setattr(etcd_store, "PAGE", 3)
    store = EtcdStore(client, prefix)
    for i in range(10):
        store.put(f"k{i:02d}", i)
    assert store.keys() == [f"k{i:02d}" for i in range(10)]
    assert [v for _, v in store.items()] == list(range(10))
    assert store.first_keys(2) == ["k00", "k01"]
    assert store.first_keys(2, newest=True) == ["k09", "k08"]
    snap = store.snapshot()
    assert len(snap.entries) == 10 and snap.revision >= snap.entries["k09"].mod_revision


@pytest.mark.etcd
def test_a_full_etcd_is_store_full(local_etcd):
    cluster = local_etcd(extra_args=("--quota-backend-bytes=300000",))
    store = EtcdStore(cluster.client(), "/full")
    with pytest.raises(StoreFull, match="database space exceeded"):
        for i in range(1000):
            store.put(f"k{i}", "x" * 2000)
    assert StoreFull.http_status == 507
    assert store.count() > 0  # reads still work


# ---------------------------------------------------------------------- revisions


@pytest.mark.etcd
def test_compare_and_swap(client, prefix):
    store = EtcdStore(client, prefix)
    first = store.put_if("a", {"v": 1}, 0)  # only if absent
    with pytest.raises(CasConflict):
        store.put_if("a", {"v": 99}, 0)
    read = store.get_versioned("a")
    assert read.value == {"v": 1} and read.mod_revision == first == read.create_revision
    second = store.put_if("a", {"v": 2}, read.mod_revision)
    with pytest.raises(CasConflict, match="changed since revision") as info:
        store.put_if("a", {"v": 3}, read.mod_revision)  # someone (we) wrote first
    assert info.value.http_status == 409
    assert store.get("a") == {"v": 2}
    with pytest.raises(CasConflict):
        store.delete_if("a", read.mod_revision)
    store.delete_if("a", second)
    assert "a" not in store
    with pytest.raises(KeyError):
        store.get_versioned("a")


@pytest.mark.etcd
def test_a_transaction_across_stores_is_all_or_nothing(client, prefix):
    tasks, timers = EtcdStore(client, f"{prefix}/tasks"), EtcdStore(client, f"{prefix}/timers")
    tasks.put("t1", {"State": 0})
    timers.put("t1", {"Due": 1.0})
    read = tasks.get_versioned("t1")
    tasks.put("t1", {"State": 1})  # another manager wrote first

    txn = Txn(client).require(tasks.unchanged("t1", read.mod_revision))
    txn.put(tasks, "t1", {"State": 2}).delete(timers, "t1").put(timers, "t2", {"Due": 2.0})
    with pytest.raises(CasConflict) as info:
        txn.commit()
    assert [c.key for c in info.value.failed] == [f"{prefix}/tasks/t1"]
    assert tasks.get("t1") == {"State": 1} and timers.keys() == ["t1"]  # nothing applied

    now = tasks.get_versioned("t1")
    txn = Txn(client).require(tasks.unchanged("t1", now.mod_revision))
    revision = (
        txn.put(tasks, "t1", {"State": 2}).delete(timers, "t1").put(timers, "t2", {}).commit()
    )
    assert (
        tasks.get_versioned("t1").mod_revision
        == revision
        == timers.get_versioned("t2").mod_revision
    )
    assert timers.keys() == ["t2"]

    with pytest.raises(EtcdError, match="duplicate key"):  # etcd refuses, applies nothing
        Txn(client).put(tasks, "t3", 1).put(tasks, "t3", 2).commit()
    assert "t3" not in tasks


@pytest.mark.etcd
def test_a_guarded_store_writes_only_while_its_guard_holds(client, prefix):
    gate = EtcdStore(client, f"{prefix}/gate")
    gate.put("open", True)
    opened = gate.get_versioned("open").mod_revision
    guarded = EtcdStore(client, f"{prefix}/data").with_guard(
        lambda: [gate.unchanged("open", opened)]
    )
    guarded.put("a", 1)
    guarded.delete("a")
    with pytest.raises(KeyError):
        guarded.delete("a")
    gate.put("open", False)
    with pytest.raises(CasConflict):
        guarded.put("a", 2)
    assert "a" not in guarded


# ---------------------------------------------------------------------- watches


@pytest.mark.etcd
def test_a_watch_delivers_every_change_in_order_and_resumes_after_compaction(local_etcd):
    """On a member of its own: compaction is global, and would pull history from under
    the other tests sharing an etcd."""
    client = local_etcd().client()
    store = EtcdStore(client, f"{unique_prefix()}/w")
    start = store.snapshot().revision
    for i in range(5):
        store.put(f"k{i}", i)
    store.delete("k0")
    seen: list = []
    with store.watch(seen.append, from_revision=start + 1):  # history, then live
        eventually(lambda: len(seen) == 6, 5, "the history")
        store.put("k9", 9)
        eventually(lambda: len(seen) == 7, 5, "a live change")
    assert [(e.kind, e.key, e.value) for e in seen] == [
        *[("put", f"k{i}", i) for i in range(5)],
        ("delete", "k0", None),
        ("put", "k9", 9),
    ]
    revisions = [e.revision for e in seen]
    assert revisions == sorted(revisions) and len(set(revisions)) == 7

    # history compacted away: the watch says so, the caller reloads and says where to go on
    store.put("k9", 10)
    client.compact(store.snapshot().revision)
    reloaded: list[int] = []

    def reload(oldest: int) -> int:
        snapshot = store.snapshot()
        reloaded.append(oldest)
        return snapshot.revision + 1

    late: list = []
    with store.watch(late.append, from_revision=start + 1, on_compacted=reload) as w:
        eventually(lambda: reloaded, 5, "on_compacted")
        eventually(lambda: w.ready.is_set(), 5, "the watch to resume")
        store.put("k10", 10)
        eventually(lambda: late, 5, "a change after the reload")
    assert [(e.key, e.value) for e in late] == [("k10", 10)]


@pytest.mark.etcd
def test_a_watch_stops_at_once(client, prefix):
    w = watch(client, prefix, lambda e: None, idle=60)
    assert w.ready.wait(5)
    started = time.monotonic()
    w.close()
    assert not w.running and time.monotonic() - started < 1


@pytest.mark.etcd
def test_the_client_skips_an_endpoint_that_is_down(etcd_ok, prefix):
    with EtcdClient(["http://127.0.0.1:1", *etcd_ok]) as client:
        EtcdStore(client, prefix).put("a", 1)
        assert client.current == etcd_ok[0]
    started = time.monotonic()
    with (
        EtcdClient("http://127.0.0.1:1", timeout=0.5) as client,
        pytest.raises(EtcdUnavailable, match=r"127\.0\.0\.1:1") as info,
    ):
        EtcdStore(client, prefix).get("a")
    assert info.value.http_status == 503 and time.monotonic() - started < 2


# ---------------------------------------------------------------------- etcd restarts


@pytest.mark.etcd
def test_the_store_and_its_watch_survive_an_etcd_restart(local_etcd):
    cluster = local_etcd()
    member = cluster.members[0]
    client = cluster.client(timeout=2)
    store = EtcdStore(client, "/cube/tasks")
    acked = []
    for i in range(20):
        store.put(f"k{i:02d}", i)
        acked.append(f"k{i:02d}")
    seen: list = []
    watcher = store.watch(seen.append, from_revision=store.snapshot().revision + 1, idle=2)
    assert watcher.ready.wait(5)

    member.kill()  # a crash, mid-service
    with pytest.raises(EtcdUnavailable):
        store.put("lost", 0)
    member.start()
    cluster.wait_healthy()

    assert store.keys() == acked and [store.get(k) for k in acked] == list(range(20))
    store.put("after", 1)
    eventually(lambda: [e.key for e in seen] == ["after"], 10, "the watch to resume")
    watcher.close()
    assert watcher.reconnects >= 1


@pytest.mark.etcd
def test_concurrent_writers_with_cas_lose_no_update(client, prefix):
    """Four threads add to one counter by compare-and-swap: every increment lands."""
    store = EtcdStore(client, prefix)
    store.put("n", 0)

    def add(times: int) -> None:
        for _ in range(times):
            while True:
                read = store.get_versioned("n")
                try:
                    store.put_if("n", read.value + 1, read.mod_revision)
                    break
                except CasConflict:
                    continue

    threads = [threading.Thread(target=add, args=(10,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("n") == 40


@pytest.mark.etcd
def test_a_members_state_and_which_one_leads_the_raft_group(local_etcd):
    cluster = local_etcd(3)
    leader = eventually(cluster.leader, 10, "a raft leader")
    assert [m.leads() for m in cluster.members].count(True) == 1
    assert all(m.state == "running" for m in cluster.members)
    follower = next(m for m in cluster.members if m is not leader)

    follower.send(signal.SIGSTOP)
    try:
        eventually(lambda: follower.state == "paused", 2, "the process table to say paused")
        began = time.monotonic()
        assert follower.leads() is None  # a paused member is not asked, so not waited on
        assert time.monotonic() - began < 0.1
    finally:
        follower.send(signal.SIGCONT)
    eventually(lambda: follower.state == "running", 2, "the process table to say running")

    leader.kill()
    assert leader.state == "stopped" and leader.leads() is None
    successor = eventually(cluster.leader, 15, "a new raft leader among the two left")
    assert successor is not leader
    leader.start()
    cluster.wait_healthy()
    assert cluster.leader() is not None
