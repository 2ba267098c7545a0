"""Several managers on one etcd, as real processes: one leads, all answer, and the
leader is killed, paused past its lease and resumed, while tasks are in flight.

Whatever happens: every accepted task is in etcd and runs exactly once (never two live
copies on the workers), a deposed leader's orders and writes are refused, and another
manager takes over within a few lease TTLs.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from etcd_helpers import unique_prefix, wipe
from helpers import Procs, cube_process, eventually, free_port, kill, settled, wait_healthy

from cube.client import CubeError, ManagerClient, WorkerClient
from cube.etcd import EtcdClient, EtcdStore
from cube.etcd.series import series
from cube.procs import process_state
from cube.proof import HEADER, MAX_EPOCH, LeaderSecret
from cube.store import WireCodec
from cube.task import State, Task, TaskEvent

pytestmark = pytest.mark.etcd

TTL = 2  # seconds: the managers' lease


class Managers(Procs):
    """Workers as :class:`Procs` has them, and several managers on one etcd prefix, all
    given the same leader secret."""

    def __init__(self, tmp: Path, endpoints: list[str], prefix: str) -> None:
        super().__init__(tmp)
        self.store = "etcd://" + ",".join(e.split("://", 1)[-1] for e in endpoints)
        self.prefix = prefix
        self.managers: dict[str, tuple[subprocess.Popen, int]] = {}
        self.paused: set[str] = set()
        self.secret_file = LeaderSecret.create(tmp / "leader.secret")
        self.secret = LeaderSecret.load(self.secret_file)
        self.orders_signed = True

    def start_worker(self, name: str, *args: Any, **kwargs: Any) -> subprocess.Popen:
        options = ("--leader-secret", str(self.secret_file), *kwargs.pop("options", ()))
        return super().start_worker(name, *args, options=options, **kwargs)

    def start_managers(self, *names: str) -> None:
        for name in names:
            self.start_one(name, wait=False)
        for name in names:
            wait_healthy(self.manager_url(name), self.managers[name][0], timeout=30)

    def start_one(self, name: str, wait: bool = True, env: dict[str, str] | None = None) -> None:
        port = self.managers[name][1] if name in self.managers else free_port()
        args = [
            "manager", "--port", str(port),
            "--workers", ",".join(self.address(n) for n in self.workers),
            "--store", self.store, "--etcd-prefix", self.prefix, "--lease-ttl", str(TTL),
            "--update-interval", "0.3", "--node-ttl", "2", "--health-interval", "0.5",
            "--restart-base", "0.5", "--leader-secret", str(self.secret_file),
        ]  # fmt: skip
        proc = cube_process(*args, log=self.tmp / f"{name}.log", env=env)
        self.managers[name] = (proc, port)
        if wait:
            wait_healthy(self.manager_url(name), proc, timeout=30)

    def manager_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.managers[name][1]}"

    def client(self, name: str) -> ManagerClient:
        return ManagerClient(self.manager_url(name), timeout=5)

    def health(self, name: str) -> dict:
        return requests.get(f"{self.manager_url(name)}/health", timeout=2).json()

    def leader(self) -> str:
        """The name of the manager that says it leads, once exactly one does and every
        live manager names it; else ""."""
        live = [
            n for n, (p, _) in self.managers.items() if p.poll() is None and n not in self.paused
        ]
        try:
            said = {n: self.health(n) for n in live}
        except requests.RequestException:
            return ""
        leading = [n for n, h in said.items() if h["Leading"]]
        if len(leading) != 1:
            return ""
        url = self.manager_url(leading[0])
        return leading[0] if all(h["Leader"] == url for h in said.values()) else ""

    def send(self, name: str, sig: int) -> None:
        proc = self.managers[name][0]
        if sig in (signal.SIGKILL, signal.SIGTERM):
            kill(proc, sig)
        else:
            proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.paused.add(name)
        elif sig == signal.SIGCONT:
            self.paused.discard(name)

    def frozen(self, name: str) -> bool:
        """Stopped by a signal (a fault point froze it)."""
        return process_state(self.managers[name][0]) == "paused"

    def copies(self, task_id: str) -> list[tuple[str, State]]:
        """Every worker's live copies of a task."""
        out = []
        for name in self.workers:
            for task in WorkerClient(self.worker_url(name), timeout=5).tasks():
                if str(task.id) == task_id and task.state in (State.Scheduled, State.Running):
                    out.append((name, task.state))
        return out

    def close(self) -> None:
        for proc, _ in self.managers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                kill(proc, signal.SIGTERM)
        super().close()


@pytest.fixture
def cluster(etcd_ok, tmp_path):
    prefix = unique_prefix("managers")
    managers = Managers(tmp_path, etcd_ok, prefix)
    yield managers
    managers.close()
    with EtcdClient(etcd_ok) as client:
        wipe(client, prefix)


def stored(cluster: Managers, task_id: str) -> Task:
    with EtcdClient(cluster.store) as client:
        return EtcdStore(client, f"{cluster.prefix}/tasks", WireCodec(Task)).get(task_id)


def echo(name: str) -> Task:
    return Task(name=name, image="cube/echo", memory=32 * 2**20)


def submit_until_taken(client: ManagerClient, task: Task, within: float = 30) -> Task:
    """Submit as a client should while etcd elects a leader: a 503 says "try again",
    and the same event again is recognised as the same submission, not a second one."""
    event = TaskEvent(task=task)

    def taken() -> Task | None:
        try:
            return client.submit(event)
        except CubeError as exc:
            if exc.status != 503:
                raise
            return None

    return eventually(taken, within, f"{task.name} taken")


def test_one_leader_every_manager_answers_and_places(cluster):
    cluster.start_worker("w1")
    cluster.start_managers("m1", "m2", "m3")
    leader = eventually(cluster.leader, 15, "one leader all agree on")
    follower = next(n for n in cluster.managers if n != leader)
    health = cluster.health(follower)
    assert (health["Leading"], health["Store"]) == (False, cluster.store)
    assert health["Epoch"] == cluster.health(leader)["Epoch"] > 0

    task = cluster.client(follower).submit(echo("via-a-follower"))  # written by a follower
    for name in cluster.managers:  # every manager sees it run, placed by the leader
        eventually(
            lambda n=name: cluster.client(n).task(task.id).state is State.Running,
            15,
            f"{name} to see the task running",
        )
    assert stored(cluster, str(task.id)).desired is State.Running
    cluster.client(follower).stop(task.id)
    eventually(lambda: cluster.client(leader).task(task.id).state is State.Completed, 15, "stop")
    assert cluster.copies(str(task.id)) == []
    nodes = cluster.client(follower).nodes()  # a follower probes the workers too
    assert [n["Name"] for n in nodes] and all(n["State"] == "up" for n in nodes)


def test_the_leader_killed_another_takes_over_nothing_lost_nothing_doubled(cluster):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_managers("m1", "m2", "m3")
    leader = eventually(cluster.leader, 15, "a leader")
    epoch = cluster.health(leader)["Epoch"]
    survivor = next(n for n in cluster.managers if n != leader)
    before = [cluster.client(survivor).submit(echo(f"before-{i}")) for i in range(6)]
    eventually(
        lambda: all(cluster.client(survivor).task(t.id).state is State.Running for t in before),
        20,
        "the first tasks running",
    )
    during = [cluster.client(survivor).submit(echo(f"during-{i}")) for i in range(3)]
    cluster.send(leader, signal.SIGKILL)  # with tasks just submitted, maybe not placed
    killed = time.monotonic()
    new = eventually(lambda: (n := cluster.leader()) != leader and n, 6 * TTL, "a new leader")
    assert cluster.health(new)["Epoch"] > epoch
    after = cluster.client(new).submit(echo("after"))
    everything = [*before, *during, after]
    eventually(
        lambda: all(cluster.client(new).task(t.id).state is State.Running for t in everything),
        20,
        "every task running under the new leader",
    )
    took = time.monotonic() - killed
    for task in everything:  # exactly one live copy of each, across the workers
        assert len(cluster.copies(str(task.id))) == 1, cluster.copies(str(task.id))
        assert stored(cluster, str(task.id)).state is State.Running
    assert took < 10 * TTL


def test_a_leader_paused_past_its_lease_is_refused_when_it_resumes(cluster):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_managers("m1", "m2")
    old = eventually(cluster.leader, 15, "a leader")
    other = next(n for n in cluster.managers if n != old)
    task = cluster.client(other).submit(echo("moved-while-paused"))
    eventually(lambda: cluster.client(old).task(task.id).state is State.Running, 15, "running")
    first_worker = cluster.client(old).task(task.id).worker

    cluster.send(old, signal.SIGSTOP)  # it still believes T runs where it was put
    eventually(lambda: cluster.leader() == other, 6 * TTL, "the other to lead")
    # the new leader stops T and starts a new task: what the paused one does not know
    cluster.client(other).stop(task.id)
    eventually(lambda: cluster.copies(str(task.id)) == [], 15, "T stopped")
    later = cluster.client(other).submit(echo("placed-by-the-new-leader"))
    eventually(lambda: cluster.client(other).task(later.id).state is State.Running, 15, "later")
    cluster.send(old, signal.SIGCONT)
    eventually(lambda: cluster.leader() == other, 10, "the resumed one to know it lost")
    time.sleep(3 * 0.3)  # a few of its rounds: whatever it was about to do, it tries now

    assert cluster.copies(str(task.id)) == []  # not started again by the deposed leader
    assert len(cluster.copies(str(later.id))) == 1  # not doubled
    assert stored(cluster, str(task.id)).state is State.Completed
    assert cluster.client(old).task(task.id).state is State.Completed  # its mirror caught up
    assert first_worker
    assert not cluster.health(old)["Leading"]
    said = (cluster.tmp / f"{old}.log").read_text()  # and it says so, in its own words
    assert "no longer leads" in said and "stopped acting: epoch" in said


def test_managers_ride_out_an_etcd_member_down_and_a_whole_etcd_restart(local_etcd, tmp_path):
    etcd = local_etcd(3)
    cluster = Managers(tmp_path, etcd.endpoints, "/cube")
    try:
        cluster.start_worker("w1")
        cluster.start_managers("m1", "m2")
        eventually(cluster.leader, 15, "a leader")
        first = cluster.client("m1").submit(echo("first"))
        eventually(lambda: cluster.client("m2").task(first.id).state is State.Running, 15, "1st")

        etcd.members[0].kill()  # one of three: no write is lost (it may wait for a leader)
        second = submit_until_taken(cluster.client("m2"), echo("second"))
        eventually(lambda: cluster.client("m1").task(second.id).state is State.Running, 20, "2nd")

        for member in etcd.members:  # all of etcd down: reads go on, writes say why
            member.kill()
        assert cluster.client("m1").task(first.id).state is State.Running  # from memory
        refused = requests.post(
            f"{cluster.manager_url('m2')}/tasks", json=echo("refused").to_wire(), timeout=10
        )
        assert refused.status_code == 503 and "etcd" in refused.json()["Message"]

        etcd.start()  # every member back, with its data
        eventually(cluster.leader, 30, "a leader again")
        third = submit_until_taken(cluster.client("m1"), echo("third"))
        for task in (first, second, third):
            eventually(
                lambda t=task: cluster.client("m2").task(t.id).state is State.Running,
                20,
                task.name,
            )
            assert len(cluster.copies(str(task.id))) == 1
        assert [t.name for t in cluster.client("m1").tasks()].count("refused") == 0
    finally:
        cluster.close()


def test_a_deposed_leaders_order_in_flight_is_refused_by_the_worker(cluster):
    """The leader freezes just after its last check that it leads, about to send an
    order; meanwhile another leads and moves the task to the other worker. Resumed, the
    old one sends its order to a worker that never had the task: only the worker's
    epoch fence keeps a second copy from starting."""
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_one("m1", env={"CUBE_FAULTS": "manager-sending:stop"})
    eventually(lambda: cluster.health("m1")["Leading"], 15, "m1 to lead")
    cluster.start_one("m2")
    task = cluster.client("m2").submit(echo("sent-late"))
    eventually(lambda: cluster.frozen("m1"), 15, "m1 to freeze about to send")
    cluster.paused.add("m1")
    first = stored(cluster, str(task.id)).worker
    stale = next(n for n in cluster.workers if cluster.address(n) == first)
    cluster.signal(stale, signal.SIGKILL)  # the new leader moves the task away: no order
    # of the new leader's ever reaches this worker before the old leader's does

    eventually(lambda: cluster.leader() == "m2", 6 * TTL, "m2 to lead")
    eventually(
        lambda: (
            (t := cluster.client("m2").task(task.id)).state is State.Running and t.worker != first
        ),
        20,
        "the task moved and running",
    )
    cluster.start_worker(stale)  # the same port and state: it never had the task
    eventually(
        lambda: all(n["State"] == "up" for n in cluster.client("m2").nodes()),
        10,
        "the new leader to reach the resumed worker (it learns the new epoch)",
    )
    cluster.send("m1", signal.SIGCONT)  # its order goes out now, with its old epoch
    # the refusal is the condition: a resumed process starved of CPU may take seconds
    # to send its order, and until it is answered nothing can be said of it
    m1_log = cluster.tmp / "m1.log"
    refused = f"worker {first} follows a newer leader"
    eventually(lambda: refused in m1_log.read_text(), 30, f"{stale} to refuse m1's order")
    copies = cluster.copies(str(task.id))
    assert len(copies) == 1 and copies[0][0] != stale, copies


def test_strays_left_across_a_failover_are_stopped_every_round(cluster):
    """A worker is SIGKILLed (its task processes live on) and its tasks move; then the
    leader is SIGKILLed, the worker comes back with its old copies just as the next
    leader takes office, and the old leader comes back too. Whoever leads then must stop
    the old copies: within 15 s of the worker's restart every task runs exactly once."""
    for name in ("w0", "w1", "w2"):
        cluster.start_worker(name)
    cluster.start_managers("m1", "m2", "m3")
    leader = eventually(cluster.leader, 15, "a leader")
    ids = {str(cluster.client(leader).submit(echo(f"t{i}")).id) for i in range(30)}
    settled(cluster.tmp, ids, 90, "at first")
    names = {cluster.address(n): n for n in cluster.workers}
    for round_ in range(5):
        leader = eventually(cluster.leader, 30, f"round {round_ + 1}: a leader")
        client = cluster.client(leader)
        placed = [t.worker for t in client.tasks()]
        gone = max(set(placed), key=placed.count)
        victim = names[gone]
        cluster.signal(victim, signal.SIGKILL)
        eventually(
            lambda c=client, g=gone: all(
                t.state is State.Running and t.worker != g for t in c.tasks()
            ),
            60,
            f"round {round_ + 1}: {victim}'s tasks moved and running",
        )
        cluster.send(leader, signal.SIGKILL)
        eventually(lambda old=leader: cluster.leader() not in ("", old), 6 * TTL, "a new leader")
        cluster.start_worker(victim)  # back with its old copies as the new leader starts
        restarted = time.monotonic()
        cluster.start_one(leader, wait=False)
        settled(cluster.tmp, ids, 15 - (time.monotonic() - restarted), f"round {round_ + 1}")
        wait_healthy(cluster.manager_url(leader), cluster.managers[leader][0], timeout=30)


# ------------------------------------------------------ epochs that can't be forged


def test_a_forged_epoch_changes_nothing_and_the_leader_is_still_obeyed(cluster):
    """On main, one read with a bare epoch of 2**63-1 made the worker refuse every order
    of the real leader from then on, and tasks stayed Scheduled."""
    cluster.start_worker("w1")
    cluster.start_managers("m1", "m2")
    leader = eventually(cluster.leader, 15, "a leader")
    url = cluster.worker_url("w1")
    forged = {HEADER: str(MAX_EPOCH)}
    read = requests.get(f"{url}/tasks", headers=forged, timeout=5)
    order = requests.post(f"{url}/tasks", headers=forged, json=echo("forged").to_wire(), timeout=5)
    for refused in (read, order):
        assert refused.status_code == 403 and HEADER in refused.json()["Message"]
    assert WorkerClient(url).tasks() == []
    assert requests.get(f"{url}/health", timeout=5).json()["Epoch"] < MAX_EPOCH

    task = cluster.client(leader).submit(echo("after-the-forgery"))
    eventually(lambda: cluster.client(leader).task(task.id).state is State.Running, 15, "running")
    assert cluster.health(leader)["Leading"]


def test_a_fresh_etcd_starts_a_new_series_that_the_workers_follow(local_etcd, tmp_path):
    """etcd replaced by an empty one while the worker kept its state: the new leader's
    epoch is far below the one the worker followed, and its orders are taken still."""
    etcd = local_etcd(1)
    with etcd.client() as client:  # an old etcd, many revisions in: epochs are high
        for n in range(150):
            client.put(f"/elsewhere/{n}", "x")
    cluster = Managers(tmp_path, etcd.endpoints, "/cube")
    try:
        cluster.start_worker("w1")
        cluster.start_managers("m1", "m2")
        leader = eventually(cluster.leader, 15, "a leader")
        first = cluster.client(leader).submit(echo("first"))
        eventually(lambda: cluster.client(leader).task(first.id).state is State.Running, 15, "1st")
        url = cluster.worker_url("w1")
        old = requests.get(f"{url}/health", timeout=5).json()["Epoch"]
        assert old > 150

        etcd.remove()  # gone with its data; a new one, empty, on the same addresses
        etcd.start()
        leader = eventually(cluster.leader, 30, "a leader on the new etcd")
        second = cluster.client(leader).submit(echo("second"))
        eventually(lambda: cluster.client(leader).task(second.id).state is State.Running, 20, "2nd")
        assert [n for n, _ in cluster.copies(str(second.id))] == ["w1"]
        new = requests.get(f"{url}/health", timeout=5).json()["Epoch"]
        assert 0 < new < old  # a new series, followed once proven
    finally:
        cluster.close()


def test_a_leader_refused_for_a_proven_newer_leader_steps_down(cluster):
    """A worker follows a newer stamp, signed with the managers' secret (the test holds
    it, and plays the newer leader): the leader's next order is refused, and it stops
    saying it leads."""
    cluster.start_worker("w1")
    cluster.start_managers("m1")
    eventually(lambda: cluster.health("m1")["Leading"], 15, "m1 to lead")
    url = cluster.worker_url("w1")
    epoch = eventually(lambda: requests.get(f"{url}/health", timeout=5).json()["Epoch"], 15)
    with EtcdClient(cluster.store) as client:
        found = series(client, f"{cluster.prefix}/series")
    newer = cluster.secret.sign(found.born, found.id, epoch + 1000)
    WorkerClient(url, epoch=lambda: newer).follow()

    cluster.client("m1").submit(echo("refused"))
    eventually(lambda: not cluster.health("m1")["Leading"], 15, "m1 to step down")
    said = (cluster.tmp / "m1.log").read_text()
    assert "stepping down: worker" in said and f"epoch {epoch + 1000}" in said
    assert WorkerClient(url).tasks() == []
