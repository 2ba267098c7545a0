"""Several managers on one etcd, as notebook 14 looks at them: is there an etcd to run,
what each manager says about who leads, the election's own keys, a failover timed, and
a manager's own words from its log.

Every look uses a short timeout and never asks a paused manager or etcd member (the
process table says which is paused), so neither a cell nor a widget built on these is
held up by one.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

from cube.client import CubeError, ManagerClient
from cube.cluster import LocalCluster
from cube.etcd import EtcdClient, EtcdError, LocalEtcd, etcd_binary, prefix_end
from cube.lab.show import HTML, table
from cube.lab.teach import copies
from cube.task import State

REQUIRE_ENV = "CUBE_REQUIRE_ETCD"  # "1" where etcd must be there (CI): its absence fails
HOW_TO_GET = (
    "install it (Debian and Ubuntu: `sudo apt-get install etcd-server`; or run "
    "`scripts/etcd-up.sh` from the repository), then run this cell again"
)
PREFIX = "/cube"  # where a LocalCluster's managers keep their state in etcd
LOOK_TIMEOUT = 0.5  # seconds to wait for one manager's or member's answer


def etcd_here() -> bool:
    """Is there an ``etcd`` program to start? When there is none, say how to get one
    (and where etcd is required, ``CUBE_REQUIRE_ETCD=1``, fail instead)."""
    if etcd_binary() is not None:
        return True
    why = (
        f"etcd is not installed here, so the live parts of this notebook are skipped: {HOW_TO_GET}"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        raise RuntimeError(f"{REQUIRE_ENV}=1, but {why}")
    print(why)
    return False


def confirm(holds: bool, what: str) -> None:
    """Print ``✓ what`` when ``holds``; raise AssertionError otherwise, so that a broken
    promise stops a notebook right there, for a reader as under the tests."""
    if not holds:
        raise AssertionError(f"✗ not so: {what}")
    print(f"✓ {what}")


# ------------------------------------------------------------------ what managers say


@dataclass(frozen=True)
class Look:
    """One manager as seen now: its process's state and what its ``/health`` says.
    ``leading``, ``epoch`` and ``leader`` are None when it was not asked (paused or
    stopped) or did not answer in time."""

    name: str
    url: str
    state: str
    leading: bool | None = None
    epoch: int | None = None
    leader: str | None = None  # the leading manager's name, as this one has it


def look(cluster: LocalCluster, name: str, timeout: float = LOOK_TIMEOUT) -> Look:
    """What manager ``name`` says about who leads (asked only when it is running)."""
    component = cluster.component(name)
    seen = Look(name, component.url, component.state)
    if seen.state != "running":
        return seen
    try:
        health = requests.get(f"{component.url}/health", timeout=timeout).json()
    except (requests.RequestException, ValueError):
        return seen
    return Look(
        name,
        component.url,
        seen.state,
        bool(health.get("Leading")),
        int(health.get("Epoch") or 0),
        manager_named(cluster, str(health.get("Leader") or "")),
    )


def looks(cluster: LocalCluster, timeout: float = LOOK_TIMEOUT) -> list[Look]:
    return [look(cluster, name, timeout) for name in cluster.managers]


def manager_named(cluster: LocalCluster, address: str) -> str:
    """The name of the manager at ``address`` (a URL or host:port), or the address."""
    bare = address.removeprefix("http://").rstrip("/")
    for name, component in cluster.managers.items():
        if component.address == bare:
            return name
    return address


def managers_table(cluster: LocalCluster) -> HTML:
    """Each manager: its URL, process state, whether it leads, the epoch it reports
    (the leader's) and whom it names as leader."""
    rows = []
    for seen in looks(cluster):
        said = seen.leading is not None
        rows.append(
            [
                seen.name,
                seen.url,
                seen.state,
                ("yes" if seen.leading else "no") if said else "-",
                seen.epoch if said and seen.epoch else "-",
                (seen.leader or "nobody yet") if said else "(not asked)",
            ]
        )
    return table(["manager", "URL", "process", "leads", "epoch", "says the leader is"], rows)


def wait_for_leader(
    cluster: LocalCluster, other_than: str | None = None, timeout: float = 20.0
) -> str:
    """The name of the manager that leads, once one does (and it is not
    ``other_than``); TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        leader = cluster.leader()
        if leader is not None and leader != other_than:
            return leader
        if time.monotonic() > deadline:
            raise TimeoutError(f"no manager led within {timeout:g} s")
        time.sleep(0.05)


def another(cluster: LocalCluster, than: str) -> str:
    """A running manager other than ``than``."""
    return next(n for n, c in cluster.managers.items() if n != than and c.state == "running")


# ------------------------------------------------------------------ the election's keys


@dataclass(frozen=True)
class Candidate:
    """One candidate for leading, as etcd holds it: the manager's name, the create
    revision of its key (the epoch it would lead with), and whether its lease is alive."""

    name: str
    revision: int
    alive: bool


def candidates(cluster: LocalCluster, prefix: str = PREFIX) -> list[Candidate]:
    """Every manager's candidacy, read from etcd: one key per manager under
    ``<prefix>/leader/``, in key order (the lease's ID), not in the order of election."""
    with _etcd(cluster) as client:
        return [_candidate(cluster, client, kv) for kv in _keys(client, prefix)]


def candidates_table(cluster: LocalCluster, prefix: str = PREFIX) -> HTML:
    """The election's keys: each one's manager, create revision and lease time left."""
    with _etcd(cluster) as client:
        rows = []
        for kv in _keys(client, prefix):
            left = client.time_to_live(kv.lease) if kv.lease else -1
            who = _candidate(cluster, client, kv, left).name
            rows.append([kv.key, who, kv.create_revision, f"{left} s" if left >= 0 else "gone"])
    rows.sort(key=lambda row: row[2])
    return table(["key", "manager", "create revision", "lease left"], rows)


def _etcd(cluster: LocalCluster) -> EtcdClient:
    etcd = cluster.etcd
    if isinstance(etcd, LocalEtcd):
        return EtcdClient(etcd.endpoints, timeout=2)
    if isinstance(etcd, str):
        return EtcdClient(etcd, timeout=2)
    raise ValueError("this cluster keeps its state on its manager's disk, not on etcd")


def _keys(client: EtcdClient, prefix: str) -> list[Any]:
    start = prefix.rstrip("/") + "/leader/"
    return client.range(start, prefix_end(start)).kvs


def _candidate(
    cluster: LocalCluster, client: EtcdClient, kv: Any, left: int | None = None
) -> Candidate:
    """A leader key as a candidate: its manager (by the API address it published)."""
    try:
        info = json.loads(kv.value)
    except ValueError:
        info = None
    address = kv.key
    if isinstance(info, dict):
        address = str(info.get("API") or info.get("Name") or kv.key)
    if left is None:
        try:
            left = client.time_to_live(kv.lease) if kv.lease else -1
        except EtcdError:
            left = -1
    return Candidate(manager_named(cluster, address), kv.create_revision, left > 0)


# ------------------------------------------------------------------ etcd's members


def members_table(cluster: LocalCluster) -> HTML:
    """Each etcd member: its client URL, process state, and its part in etcd's own
    raft group (leader or follower; a member not running has none)."""
    etcd = cluster.etcd
    if not isinstance(etcd, LocalEtcd):
        return table(["member"], [["(this cluster started no etcd of its own)"]])
    rows = []
    for member in etcd.members:
        leads = member.leads(LOOK_TIMEOUT)
        role = "-" if leads is None else "leader" if leads else "follower"
        rows.append([member.name, member.url, member.state, role])
    return table(["member", "URL", "process", "raft role"], rows)


def follower_member(cluster: LocalCluster) -> Any:
    """A running etcd member that is not etcd's own leader (losing it costs nothing)."""
    etcd = cluster.etcd
    if not isinstance(etcd, LocalEtcd):
        raise ValueError("this cluster started no etcd of its own")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leader = etcd.leader(LOOK_TIMEOUT)
        if leader is not None:
            return next(m for m in etcd.members if m is not leader and m.state == "running")
        time.sleep(0.1)
    raise TimeoutError("etcd's members elected no leader within 10 s")


# ------------------------------------------------------------------ a failover, timed


@dataclass(frozen=True)
class Failover:
    """What happened after the leader was killed: who took over, and when (seconds
    after the kill) a task submitted at once was accepted and then placed."""

    old: str
    new: str
    lease_ttl: float
    to_leader: float
    accepted: float
    placed: float
    task: str

    def __str__(self) -> str:
        return (
            f"{self.old} was killed; {self.new} led {self.to_leader:.1f} s later "
            f"(the lease lasts {self.lease_ttl:g} s)\n"
            f"{self.task!r}, submitted at once to a surviving manager, was accepted after "
            f"{self.accepted:.2f} s and placed on a worker {self.placed:.1f} s after the kill"
        )


def failover(
    cluster: LocalCluster, killed: str, since: float, image: str, timeout: float = 20.0
) -> Failover:
    """Time a failover: ``killed`` (the leader) was killed at ``since``
    (``time.monotonic()``). A task is submitted at once through another manager; the
    clock stops when another manager leads and the task is placed."""
    name = "after-the-kill"
    with ManagerClient(cluster.component(another(cluster, killed)).url, timeout=5) as client:
        task = client.submit({"Name": name, "Image": image})
        accepted = time.monotonic() - since
        new, to_leader, placed = None, 0.0, 0.0
        while not (new and placed):
            if time.monotonic() - since > timeout:
                raise TimeoutError(f"after {timeout:g} s: leader {new}, placed: {bool(placed)}")
            if not new:
                leader = cluster.leader()
                if leader is not None and leader != killed:
                    new, to_leader = leader, time.monotonic() - since
            if not placed and _placed(client, str(task.id)):
                placed = time.monotonic() - since
            time.sleep(0.02)
    ttl = lease_ttl(cluster)
    return Failover(killed, new, ttl, to_leader, accepted, placed, name)


def _placed(client: ManagerClient, task_id: str) -> bool:
    try:
        task = client.task(task_id)
    except CubeError:
        return False
    return bool(task.worker) and task.state in (State.Scheduled, State.Running)


def lease_ttl(cluster: LocalCluster) -> float:
    """The managers' lease TTL, in seconds (as they were started with)."""
    args = cluster.manager.args
    return float(args[args.index("--lease-ttl") + 1]) if "--lease-ttl" in args else 3.0


def most_copies(cluster: LocalCluster, seconds: float, interval: float = 0.1) -> dict[str, int]:
    """Ask every worker again and again for ``seconds``: the most running copies of
    each task (by name) seen at any one time. One is the promise."""
    most: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while True:
        for name, count in copies(cluster).items():
            most[name] = max(most.get(name, 0), count)
        if time.monotonic() >= deadline:
            return dict(sorted(most.items()))
        time.sleep(interval)


# ------------------------------------------------------------------ a manager's words

_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ")
_ADDRESS = re.compile(r"(?:http://)?127\.0\.0\.1:\d+")
_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
LEADERSHIP = ("leads ", "leading from", "no longer leads", "stopped acting", "not deciding")


def said(cluster: LocalCluster, name: str, about: tuple[str, ...] = LEADERSHIP) -> list[str]:
    """The lines of component ``name``'s log that mention ``about`` (its leadership,
    by default), without timestamps, every address replaced by the component's name
    and every task ID shortened."""
    names = {c.address: n for n, c in [*cluster.managers.items(), *cluster.workers.items()]}

    def named(match: re.Match[str]) -> str:
        return names.get(match.group(0).removeprefix("http://"), "127.0.0.1:PORT")

    try:
        text = cluster.component(name).log.read_text(errors="replace")
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        if any(words in line for words in about):
            line = _ADDRESS.sub(named, _STAMP.sub("", line))
            lines.append(_UUID.sub(r"\1", line))
    return lines
