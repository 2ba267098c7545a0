"""Leader election and fencing on a real etcd, with candidates as real processes that
are killed, paused and resumed, and a three-member etcd that loses a member.

Each candidate (``etcd_contender.py``) writes fenced entries while it leads, each with
the epoch it was written under. Whatever happens, read back in revision order those
entries must never go back to an older epoch (two leaders never write interleaved),
and every entry a candidate was told it wrote is there (no lost write).
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from etcd_helpers import Contender, unique_prefix, wipe
from helpers import eventually

from cube.etcd import (
    Election,
    EtcdClient,
    EtcdError,
    EtcdStore,
    EtcdUnavailable,
    NotLeader,
    Txn,
    current_leader,
    prefix_end,
    watch,
)
from cube.etcd.client import b64

TTL = 2  # seconds: etcd's minimum lease is about that

pytestmark = pytest.mark.etcd


@pytest.fixture
def client(etcd_ok):
    with EtcdClient(etcd_ok) as client:
        yield client


@pytest.fixture
def prefix(client):
    prefix = unique_prefix("election")
    yield prefix
    wipe(client, prefix)


@pytest.fixture
def contenders(tmp_path):
    started: list[Contender] = []

    def start(endpoints: list[str], prefix: str, names: list[str]) -> dict[str, Contender]:
        for name in names:
            started.append(Contender(endpoints, prefix, name, tmp_path / f"{name}.log", TTL))
        return {c.name: c for c in started if c.name in names}

    yield start
    for contender in started:
        contender.stop()


def log_entries(client: EtcdClient, prefix: str) -> list[tuple[int, dict]]:
    """Every fenced entry written, as (revision, entry), in revision order."""
    found = client.range(f"{prefix}/log/", prefix_end(f"{prefix}/log/")).kvs
    return sorted((kv.mod_revision, json.loads(kv.value)) for kv in found)


def check_fenced_history(client: EtcdClient, prefix: str, processes) -> list[tuple[int, dict]]:
    """Epochs never go back in revision order; every acknowledged write is there.

    What the candidates were told is read first, then etcd: they may still be writing,
    and a write acknowledged after etcd was read is not missing from it."""
    told = {c: (c.events("wrote"), c.events("refused")) for c in processes}
    entries = log_entries(client, prefix)
    epochs = [entry["Epoch"] for _, entry in entries]
    assert epochs == sorted(epochs), "an older leader wrote after a newer one"
    stored = {(e["Name"], e["I"]): revision for revision, e in entries}
    for contender, (wrote_all, refused_all) in told.items():
        for wrote in wrote_all:
            found = stored.get((contender.name, wrote["i"]))
            assert found == wrote["revision"], lost_write(client, prefix, contender, wrote, found)
        for refused in refused_all:
            assert (contender.name, refused["i"]) not in stored, "a refused write landed"
    return entries


def lost_write(client: EtcdClient, prefix: str, contender, wrote: dict, found) -> str:
    """What to look at when an acknowledged write is not found: the candidate's story
    around it, and the key as each etcd member has it (read serializably, one by one)."""
    near = [e for e in contender.lines() if abs(e.get("i", wrote["i"]) - wrote["i"]) <= 2]
    key = f"{prefix}/log/{contender.name}/{wrote['i']:06d}"
    members = []
    for endpoint in client.endpoints:
        try:
            with EtcdClient([endpoint], timeout=1) as one:
                answer = one.call("kv/range", {"key": b64(key), "serializable": True})
            members.append(f"{endpoint}: {answer.get('kvs')} at {answer.get('header')}")
        except EtcdError as exc:
            members.append(f"{endpoint}: {exc}")
    return (
        f"a lost write: {contender.name} was told {wrote} but the log has {found}; "
        f"near it: {near}; the key on each member: {members}; reads went to {client.current}"
    )


def leader_name(client: EtcdClient, prefix: str) -> str:
    leader = current_leader(client, f"{prefix}/leader")
    return leader.name if leader else ""


# ---------------------------------------------------------------------- in process


def test_one_leader_its_epoch_a_resignation_hands_over_at_once(client, prefix):
    elected: list[int] = []
    lost: list[str] = []
    first = Election(client, f"{prefix}/leader", "one", TTL, info={"API": "http://x:5555"})
    first.on_elected, first.on_lost = elected.append, lost.append
    with pytest.raises(NotLeader):
        first.fence()
    assert first.campaign(timeout=5) and first.is_leader
    assert elected == [first.epoch] and first.epoch > 0
    seen = first.leader()
    assert (seen.name, seen.epoch, seen.info) == ("one", first.epoch, {"API": "http://x:5555"})

    second = Election(client, f"{prefix}/leader", "two", TTL).start()
    assert not second.wait_leading(0.5)  # one leader at a time
    Txn(client).require(*first.fence()).put_raw(f"{prefix}/x", "by one").commit()

    fence = first.fence()
    started = time.monotonic()
    first.resign()
    assert not first.is_leader and first.epoch == 0 and lost == ["resigned"]
    assert second.wait_leading(5) and time.monotonic() - started < 1  # no TTL to wait out
    assert second.epoch > elected[0]
    with pytest.raises(NotLeader, match="no longer leads"):
        Txn(client).require(*fence).put_raw(f"{prefix}/x", "stale").commit()
    with pytest.raises(NotLeader):
        first.fence()
    assert client.get(f"{prefix}/x").value == b"by one"
    second.close()
    assert current_leader(client, f"{prefix}/leader") is None


def test_a_leader_whose_key_is_deleted_stops_leading(client, prefix):
    lost = threading.Event()
    election = Election(client, f"{prefix}/leader", "one", TTL, on_lost=lambda r: lost.set())
    assert election.campaign(timeout=5)
    client.delete(f"{prefix}/leader/", prefix_end(f"{prefix}/leader/"))  # an operator
    assert lost.wait(5) and not election.is_leader
    with pytest.raises(NotLeader):
        election.fence()
    election.close()


def test_a_fenced_store_refuses_writes_once_leadership_is_gone(client, prefix):
    election = Election(client, f"{prefix}/leader", "one", TTL)
    assert election.campaign(timeout=5)
    tasks = EtcdStore(client, f"{prefix}/tasks").with_guard(election.fence)
    tasks.put("a", 1)
    election.resign()
    with pytest.raises(NotLeader):
        tasks.put("a", 2)
    with pytest.raises(NotLeader):
        tasks.delete("a")
    assert EtcdStore(client, f"{prefix}/tasks").get("a") == 1


# ---------------------------------------------------------------------- processes


def test_one_leader_among_processes_and_failover_after_sigkill(client, prefix, contenders):
    group = contenders(list(client.endpoints), prefix, ["a", "b", "c"])
    first = eventually(lambda: leader_name(client, prefix), 10, "a leader")
    eventually(lambda: group[first].events("wrote"), 10, "the leader to write")
    time.sleep(0.5)
    assert [n for n, c in group.items() if c.events("elected")] == [first]  # one only
    old_epoch = group[first].events("elected")[0]["epoch"]

    writes: list[float] = []  # when each entry of a new leader was seen

    def seen(event) -> None:
        if not event.key.startswith(f"{prefix}/log/{first}/"):
            writes.append(time.monotonic())

    late = watch(client, f"{prefix}/log/", seen)
    assert late.ready.wait(5)
    group[first].send(signal.SIGKILL)
    killed = time.monotonic()
    second = eventually(
        lambda: (n := leader_name(client, prefix)) != first and n, 4 * TTL, "a new leader"
    )
    eventually(lambda: group[second].events("wrote"), 4 * TTL, "the new leader to write")
    eventually(lambda: writes, 5, "its write to be seen")
    late.close()
    failover = writes[0] - killed
    assert failover <= 2 * TTL, f"failover took {failover:.2f}s"
    assert group[second].events("elected")[-1]["epoch"] > old_epoch
    check_fenced_history(client, prefix, group.values())


def test_a_leader_paused_past_its_lease_is_fenced_when_resumed(client, prefix, contenders):
    group = contenders(list(client.endpoints), prefix, ["a", "b"])
    first = eventually(lambda: leader_name(client, prefix), 10, "a leader")
    eventually(lambda: len(group[first].events("wrote")) > 5, 10, "the leader to write")
    old = group[first]
    deleted: list[int] = []
    leader_key = current_leader(client, f"{prefix}/leader").key
    gone = watch(
        client,
        leader_key,
        lambda e: (
            deleted.append(e.revision) if e.key == leader_key and e.kind == "delete" else None
        ),
    )
    assert gone.ready.wait(5)

    old.send(signal.SIGSTOP)  # mid-write, perhaps
    second = eventually(
        lambda: (n := leader_name(client, prefix)) != first and n, 4 * TTL, "a new leader"
    )
    eventually(lambda: group[second].events("wrote"), 4 * TTL, "the new leader to write")
    paused_writes = len(old.events("wrote"))
    resumed = time.time()
    old.send(signal.SIGCONT)
    lost = eventually(lambda: old.events("lost"), 15, "the old leader to know it lost")
    time.sleep(1)  # let it try whatever it was about to do
    gone.close()

    assert lost[0]["t"] >= resumed - 0.5
    after = [w for w in old.events("wrote") if w["t"] > resumed]
    assert len(old.events("wrote")) - paused_writes <= 1  # at most one in flight at the pause
    assert deleted, "the old leader's key was never deleted"
    for wrote in old.events("wrote"):
        assert wrote["revision"] < deleted[0], "a write landed after the lease was gone"
    assert all(w["revision"] < deleted[0] for w in after)
    entries = check_fenced_history(client, prefix, group.values())
    assert {e["Name"] for _, e in entries} == {first, second}


# ---------------------------------------------------------------------- etcd's faults


def test_a_three_member_etcd_works_with_a_member_killed_and_after_losing_quorum(
    local_etcd, contenders
):
    cluster = local_etcd(3)
    # a request waits at most 2 s for one member, a call up to 15 s in all: a cluster
    # electing a new raft leader on a busy machine takes a few seconds
    client = EtcdClient(cluster.endpoints, timeout=2, patience=15)
    prefix = "/cube"
    store = EtcdStore(client, f"{prefix}/tasks")
    seen: list = []
    watcher = store.watch(seen.append, from_revision=store.snapshot().revision + 1, idle=3)
    assert watcher.ready.wait(5)
    group = contenders(cluster.endpoints, prefix, ["a", "b"])
    eventually(lambda: leader_name(client, prefix), 10, "a leader")
    for i in range(10):
        store.put(f"before-{i}", i)

    victim = cluster.members[cluster.endpoints.index(client.current)]  # the one in use
    victim.kill()
    for i in range(10):
        store.put(f"after-{i}", i)  # the client moves to another member
    assert client.current != victim.url
    assert store.keys() == sorted(
        [f"before-{i}" for i in range(10)] + [f"after-{i}" for i in range(10)]
    )
    eventually(lambda: len(seen) == 20, 10, "the watch to go on")
    assert [e.key for e in seen] == [f"before-{i}" for i in range(10)] + [
        f"after-{i}" for i in range(10)
    ]

    count = len(log_entries(client, prefix))
    eventually(lambda: len(log_entries(client, prefix)) > count + 5, 4 * TTL, "a leader writing")

    # two down: no quorum. The last member says "no leader" at once (no hanging), and
    # once the others are back everything goes on where it was.
    second = next(m for m in cluster.members if m is not victim and m.url == client.current)
    second.kill()
    alone = EtcdClient(cluster.endpoints, timeout=0.5)
    eventually(lambda: _no_leader_at_once(alone), 10, "'no leader' from the last member")
    victim.start()
    second.start()
    cluster.wait_healthy()
    store.put("back", 1)
    eventually(lambda: seen and seen[-1].key == "back", 10, "the watch after the outage")
    count = len(log_entries(client, prefix))
    eventually(lambda: len(log_entries(client, prefix)) > count + 5, 4 * TTL, "a leader again")
    watcher.close()
    check_fenced_history(client, prefix, group.values())


def _no_leader_at_once(client: EtcdClient) -> bool:
    """The member left says so as soon as it asked (not after a timeout)."""
    started = time.monotonic()
    try:
        client.get("/cube/tasks/before-0")
    except EtcdUnavailable as exc:
        return "no leader" in str(exc) and time.monotonic() - started < 1.5
    return False
