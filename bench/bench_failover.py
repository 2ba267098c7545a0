"""Managers on etcd: how long a leader's SIGKILL holds up placement, and whether tasks
survive twenty of them.

A ``LocalCluster`` of three managers on an etcd of its own (one member) and two
process-runtime workers, every one a real process.

1. **Failover.** The leader is SIGKILLed ``--repeats`` times (and started again each
   time, so three managers run; each leader leads a random 0.5-1.5 s first, so the kill
   falls anywhere between two lease renewals), with ten tasks running throughout.
   Right after each kill a task is posted to a surviving manager; measured from the
   kill: (a) another manager says it leads (``GET /health``), (b) the task is placed
   (has a ``Worker``), (c) it is Running, both as that survivor reports it (blocking
   queries on its ``GET /tasks``). Median and max, as ratios to the lease TTL, at a TTL
   of 2 s and of 3 s; the goal is placement within twice the TTL.
2. **Twenty leader SIGKILLs with 100 tasks.** The tasks (``cube/echo``, which runs
   until stopped) are posted in rounds through random live managers, each round ending
   with the leader's SIGKILL (and its restart): right after the round's posts (while
   they are being placed), after they run, or before them (posted during the
   election). At the end, once every task is Running (or time is up): tasks lost
   (answered 201 by some manager, but missing from a manager's list, not Running, or
   running nowhere), tasks doubled (more than one live copy across the workers' own
   ``GET /tasks``, or more than one process in their runtimes), and tasks whose record
   differs between the managers, or from etcd. The goal is 0 lost and 0 doubled.
3. **Baseline, same run** (measured first). Submit -> placed and submit -> Running,
   one task at a time, on a single manager on its disk store and on three managers on
   etcd with no fault (posted to the leader, and to a follower), the three by turns;
   printed as ratios, etcd over disk.

Run: ``python -m bench bench_failover [--quick]`` (or ``python -m bench.bench_failover``),
with ``--repeats 10 --ttls 2,3 --kills 20 --tasks 100 --singles 10 --seed 1``,
``--parts baseline,failover,storm`` and ``--keep-logs DIR`` (a copy of every cluster's
logs, which go with the cluster otherwise). ``--quick`` (under a minute): TTL 2 s
only, 3 failovers, 5 kills with 25 tasks, 5 baseline tasks each. Needs etcd
(``scripts/etcd-up.sh`` installs it); skips with a message without it.
Everything it starts is stopped and removed when it ends, and it says so (or what was
left). Prints numbers and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import psutil
import requests

from bench.common import header, ms
from cube.cluster import LocalCluster
from cube.etcd import EtcdClient, EtcdStore, etcd_binary
from cube.store import WireCodec
from cube.task import State, Task
from cube.worker.worker import worker_runtime

IMAGE = "cube/echo"
RUNNING = State.Running.value
LIVE = (State.Scheduled.value, State.Running.value)
MARK = "CUBE_BENCH_FAILOVER"  # in the environment of everything this bench starts
BACKGROUND = 10  # tasks running throughout the failover runs


# ----------------------------------------------------------------------- observing


class Seen:
    """When each task was first reported placed (a ``Worker`` named) and Running by
    one manager, followed with blocking queries; a manager that does not answer is
    asked again 50 ms later."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.placed: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.tasks: dict[str, dict] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        with requests.Session() as session:
            while not self._stop.is_set():
                params = {"index": index, "wait": "1s"} if index else None
                try:
                    response = session.get(f"{self.url}/tasks", params=params, timeout=5)
                    response.raise_for_status()
                    tasks = response.json()
                except (requests.RequestException, ValueError):
                    self._stop.wait(0.05)
                    continue
                now = time.monotonic()
                index = int(response.headers.get("X-Cube-Index", "0"))
                with self.changed:
                    for task in tasks:
                        task_id = task["ID"]
                        self.tasks[task_id] = task
                        if task.get("Worker"):
                            self.placed.setdefault(task_id, now)
                        if task["State"] == RUNNING:
                            self.running.setdefault(task_id, now)
                    self.changed.notify_all()

    def wait(self, ids: Iterable[str], timeout: float) -> bool:
        """Until every one of ``ids`` was seen Running (False if time ran out)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        with self.changed:
            while not wanted <= self.running.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class LeaderWatch:
    """From its start: when one of ``names`` (the surviving managers) first says it
    leads, asking each one's ``GET /health`` every 20 ms on a thread of its own."""

    def __init__(self, cluster: LocalCluster, names: list[str]) -> None:
        self.urls = {n: cluster.component(n).url for n in names}
        self.at: float | None = None
        self.name = ""
        self.epoch = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                for name, url in self.urls.items():
                    try:
                        health = session.get(f"{url}/health", timeout=1).json()
                    except (requests.RequestException, ValueError):
                        continue
                    if health.get("Leading"):
                        self.at, self.name, self.epoch = time.monotonic(), name, health["Epoch"]
                        return
                self._stop.wait(0.02)

    def wait(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        self._stop.set()
        return self.at

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def settled_leader(cluster: LocalCluster, timeout: float = 30) -> str:
    """The leader, once every manager runs and all name the same one (a single
    manager: itself)."""
    if len(cluster.managers) == 1:
        return next(iter(cluster.managers))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = {}
        for name, component in cluster.managers.items():
            try:
                said[name] = requests.get(f"{component.url}/health", timeout=1).json()
            except (requests.RequestException, ValueError):
                break
        else:
            leading = [n for n, h in said.items() if h.get("Leading")]
            if len(leading) == 1:
                url = cluster.component(leading[0]).url
                if all(h.get("Leader") == url for h in said.values()):
                    return leading[0]
        time.sleep(0.05)
    raise TimeoutError(f"no leader all managers agree on within {timeout:g} s")


def post(url: str, name: str, timeout: float = 10) -> tuple[str, str]:
    """Post a bare task with an ID of our own: (its ID, "accepted" | "refused: ..." |
    "no answer: ..."). With no answer, the task may or may not have been stored."""
    task_id = str(uuid.uuid4())
    body = {"ID": task_id, "Name": name, "Image": IMAGE}
    try:
        response = requests.post(f"{url}/tasks", json=body, timeout=timeout)
    except requests.RequestException as exc:
        return task_id, f"no answer: {type(exc).__name__}"
    if response.status_code == 201:
        return task_id, "accepted"
    return task_id, f"refused: {response.status_code} {response.text[:100]}"


def stop_all(cluster: LocalCluster, ids: Iterable[str], timeout: float = 60) -> None:
    """Stop these tasks through the leader and wait until they are Completed."""
    ids = set(ids)
    client = cluster.manager_client(settled_leader(cluster))
    for task_id in ids:
        with contextlib.suppress(Exception):
            client.stop(task_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {str(t.id): t.state for t in client.tasks()}
        if all(states.get(i) in (State.Completed, None) for i in ids):
            break
        time.sleep(0.2)
    client.close()


def tails(cluster: LocalCluster, names: Iterable[str], lines: int = 8) -> None:
    for name in names:
        log = cluster.component(name).log
        try:
            text = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["(no log)"]
        print(f"    --- {name} ({log.name}), last {lines} lines:")
        for line in text:
            print(f"      {line[:200]}")


# ------------------------------------------------------------------ the clusters


class Clusters:
    """Every cluster this run starts, each stopped in ``finally``; then a look for
    anything left: a process whose command line names a cluster's folder or whose
    environment carries this run's mark, or a folder still there."""

    def __init__(self, keep_logs: Path | None) -> None:
        self.started: list[LocalCluster] = []
        self.keep_logs = keep_logs
        self.mark = uuid.uuid4().hex
        os.environ[MARK] = self.mark  # children inherit it (etcd, managers, workers, tasks)

    def start(self, **options: object) -> LocalCluster:
        cluster = LocalCluster(workers=2, runtime="process", update_interval=0.3, **options)
        self.started.append(cluster)
        return cluster.start()

    def stop(self, cluster: LocalCluster, label: str) -> None:
        """Stop the cluster; with ``keep_logs``, its logs are copied out, up to the end
        of the shutdown (read from files opened before their folder is removed)."""
        if self.keep_logs is None:
            cluster.stop()
            return
        logs = [*(cluster.data_dir / "logs").glob("*.log")]
        logs += (cluster.data_dir / "etcd").glob("*.log")
        with contextlib.ExitStack() as stack:
            opened = {p.name: stack.enter_context(p.open("rb")) for p in logs}
            cluster.stop()
            target = self.keep_logs / label
            target.mkdir(parents=True, exist_ok=True)
            for name, log in opened.items():
                (target / name).write_bytes(log.read())

    def leftovers(self) -> list[str]:
        folders = [str(c.data_dir) for c in self.started]
        found = [f"folder {f}" for f in folders if Path(f).exists()]
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == os.getpid():
                continue
            try:
                command = " ".join(proc.info["cmdline"] or ())
                ours = any(f in command for f in folders)
                ours = ours or proc.environ().get(MARK) == self.mark
            except (psutil.Error, OSError):
                continue
            if ours:
                found.append(f"process {proc.pid}: {command[:120]}")
        return found

    def close(self) -> None:
        os.environ.pop(MARK, None)


def etcd_cluster(clusters: Clusters, ttl: int) -> LocalCluster:
    return clusters.start(managers=3, store="etcd", etcd_members=1, lease_ttl=ttl)


# ----------------------------------------------------------------- 3: baseline


def submit_to_running(url: str, count: int) -> tuple[list[float], list[float], list[str]]:
    """``count`` tasks posted one after the other to ``url``, each once the one before
    runs: seconds from each post to its being reported placed, and Running."""
    seen = Seen(url)
    placed, running, ids = [], [], []
    try:
        for i in range(count):
            task_id, latencies = one_single(url, seen, f"single-{i}")
            placed.append(latencies[0])
            running.append(latencies[1])
            ids.append(task_id)
    finally:
        seen.close()
    return placed, running, ids


def one_single(url: str, seen: Seen, name: str) -> tuple[str, tuple[float, float]]:
    """Post one task to ``url``: its ID, and seconds from the post to its being
    reported placed, and Running (by ``seen``, which follows that manager)."""
    began = time.monotonic()
    task_id, outcome = post(url, name)
    if outcome != "accepted":
        raise RuntimeError(f"a baseline task was not accepted: {outcome}")
    if not seen.wait([task_id], 30):
        raise TimeoutError(f"task {task_id} not Running after 30 s")
    return task_id, (seen.placed[task_id] - began, seen.running[task_id] - began)


def baseline(clusters: Clusters, count: int, ttl: int) -> dict[str, tuple[float, float]]:
    """Submit -> placed and -> Running, one task at a time, on a single manager on its
    disk store and on three managers on etcd (to the leader, to a follower), taking
    turns in random order (so a busy moment of the machine does not land on one only):
    the medians, by where the task was posted."""
    header(
        f"baseline: submit -> placed / Running, one task at a time, {count} each, "
        "the three by turns"
    )
    disk = clusters.start()
    etcd = etcd_cluster(clusters, ttl)
    seen: list[Seen] = []
    try:
        leader = settled_leader(etcd)
        follower = next(n for n in etcd.managers if n != leader)
        targets = {
            "single manager, disk store": (disk, disk.manager.url),
            "3 managers on etcd, to the leader": (etcd, etcd.component(leader).url),
            "3 managers on etcd, to a follower": (etcd, etcd.component(follower).url),
        }
        seen = [Seen(url) for _, url in targets.values()]
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in targets}
        ids: dict[str, list[str]] = {label: [] for label in targets}
        order = list(zip(targets, seen, strict=True))
        rng = random.Random(count)
        for i in range(count):
            rng.shuffle(order)
            for label, watch in order:
                task_id, latencies = one_single(targets[label][1], watch, f"single-{i}")
                times[label].append(latencies)
                ids[label].append(task_id)
        stop_all(disk, ids["single manager, disk store"])
        stop_all(etcd, [i for label in targets if "etcd" in label for i in ids[label]])
    finally:
        for watch in seen:
            watch.close()
        clusters.stop(disk, "baseline-disk")
        clusters.stop(etcd, "baseline-etcd")
    medians = {
        label: (statistics.median(p for p, _ in ts), statistics.median(r for _, r in ts))
        for label, ts in times.items()
    }
    on_disk = medians["single manager, disk store"]
    for label, (placed, running) in medians.items():
        ratio = (
            ""
            if "disk" in label
            else (f"  (x{placed / on_disk[0]:.2f} / x{running / on_disk[1]:.2f} the disk store's)")
        )
        print(f"  {label:<34} median placed {ms(placed)}, Running {ms(running)}{ratio}")
    return medians


# ----------------------------------------------------------------- 1: failover


def one_failover(cluster: LocalCluster, rng: random.Random, ttl: int) -> dict:
    """SIGKILL the leader, post a task to a survivor at once; seconds from the kill to
    a new leader, to the task placed, to it Running (None: not within 10 TTLs)."""
    leader = settled_leader(cluster)
    time.sleep(rng.uniform(0.5, 1.5))  # anywhere between two renewals of its lease
    survivors = [n for n in cluster.managers if n != leader]
    target = rng.choice(survivors)
    seen = Seen(cluster.component(target).url)
    time.sleep(0.1)  # its first answer in
    cluster.kill(leader)
    killed = time.monotonic()
    watch = LeaderWatch(cluster, survivors)
    try:
        task_id, outcome = post(cluster.component(target).url, "after-the-kill")
        posted = time.monotonic() - killed
        led = watch.wait(10 * ttl)
        seen.wait([task_id], max(0.0, killed + 10 * ttl - time.monotonic()))
    finally:
        watch.close()
        seen.close()
    result = {
        "killed": leader,
        "target": target,
        "outcome": outcome,
        "posted": posted,
        "leader": None if led is None else led - killed,
        "new": watch.name,
        "placed": (seen.placed[task_id] - killed) if task_id in seen.placed else None,
        "running": (seen.running[task_id] - killed) if task_id in seen.running else None,
        "id": task_id,
    }
    if None in (result["leader"], result["placed"], result["running"]):
        print(f"  !! failover did not complete within {10 * ttl} s: {result}")
        tails(cluster, cluster.managers)
    cluster.restart(leader)
    return result


def failover(clusters: Clusters, ttl: int, repeats: int, rng: random.Random) -> list[dict]:
    header(
        f"failover: SIGKILL the leader of 3 managers, lease TTL {ttl} s, {repeats} times "
        f"({BACKGROUND} tasks running; a task posted to a survivor right after each kill)"
    )
    cluster = etcd_cluster(clusters, ttl)
    try:
        settled_leader(cluster)
        _, _, background = submit_to_running(cluster.manager.url, BACKGROUND)
        runs = []
        for i in range(repeats):
            run = one_failover(cluster, rng, ttl)
            runs.append(run)
            print(
                f"  {i + 1:>2}: killed {run['killed']:<9}  -> {run['new'] or '?':<9} leads "
                f"{_s(run['leader'])}, placed {_s(run['placed'])}, Running {_s(run['running'])}"
                f"  (posted to {run['target']} in {ms(run['posted'])}: {run['outcome']})"
            )
            stop_all(cluster, [run["id"]])
        stop_all(cluster, background)
    finally:
        clusters.stop(cluster, f"failover-ttl{ttl}")
    for what in ("leader", "placed", "running"):
        times = [r[what] for r in runs if r[what] is not None]
        missing = len(runs) - len(times)
        label = {"leader": "(a) new leader", "placed": "(b) placed", "running": "(c) Running"}
        if not times:
            print(f"  {label[what]:<15} never, in {len(runs)} runs")
            continue
        median, worst = statistics.median(times), max(times)
        print(
            f"  {label[what]:<15} median {_s(median)} ({median / ttl:.2f}x TTL), "
            f"max {_s(worst)} ({worst / ttl:.2f}x TTL)" + (f", {missing} never" if missing else "")
        )
    placements = [r["placed"] for r in runs]
    met = all(p is not None and p <= 2 * ttl for p in placements)
    worst = max((p for p in placements if p is not None), default=math.inf)
    print(
        f"  goal: placed within 2x TTL ({2 * ttl} s) after every kill: "
        + ("met" if met else f"NOT met (worst {_s(worst)})")
    )
    return runs


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


# ---------------------------------------------------------------- 2: the storm


class Storm:
    """Posts tasks through random live managers and SIGKILLs the leader, round after
    round; keeps every post's outcome."""

    def __init__(self, cluster: LocalCluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.outcomes: dict[str, str] = {}
        self.kills: list[dict] = []

    def live(self) -> list[str]:
        return [n for n, c in self.cluster.managers.items() if c.state == "running"]

    def submit(self, count: int, among: list[str] | None = None) -> list[str]:
        ids = []
        for _ in range(count):
            name = self.rng.choice(among or self.live())
            task_id, outcome = post(self.cluster.component(name).url, f"storm-{len(self.outcomes)}")
            self.outcomes[task_id] = outcome
            ids.append(task_id)
        return ids

    def running(self, ids: list[str], timeout: float = 30, on: str = "") -> bool:
        """Whether manager ``on`` (a random live one) reports all ``ids`` Running
        within ``timeout`` seconds."""
        client = self.cluster.manager_client(on or self.rng.choice(self.live()))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    states = {str(t.id): t.state for t in client.tasks()}
                    if all(states.get(i) is State.Running for i in ids):
                        return True
                time.sleep(0.2)
        finally:
            client.close()
        return False

    def round(self, when: str, count: int, ttl: int) -> None:
        leader = settled_leader(self.cluster)
        survivors = [n for n in self.cluster.managers if n != leader]
        if when == "placing":
            self.submit(count)
        elif when == "running":
            self.running(self.submit(count))
            time.sleep(self.rng.uniform(0, 1))
        self.cluster.kill(leader)
        killed = time.monotonic()
        watch = LeaderWatch(self.cluster, survivors)
        if when == "election":
            self.submit(count, among=survivors)
        led = watch.wait(10 * ttl)
        self.kills.append(
            {"when": when, "killed": leader, "new": watch.name, "took": led and led - killed}
        )
        if led is None:
            print(f"  !! no new leader within {10 * ttl} s of killing {leader}")
            tails(self.cluster, self.cluster.managers)
        self.cluster.restart(leader)


def storm(clusters: Clusters, kills: int, tasks: int, ttl: int, rng: random.Random) -> dict:
    header(
        f"{kills} leader SIGKILLs with {tasks} tasks: 3 managers, 2 workers, lease TTL {ttl} s, "
        "posts through random live managers"
    )
    cluster = etcd_cluster(clusters, ttl)
    started = time.monotonic()
    try:
        s = Storm(cluster, rng)
        settled_leader(cluster)
        whens = (["placing", "running", "election"] * kills)[:kills]
        rng.shuffle(whens)
        per_round = [tasks // kills + (i < tasks % kills) for i in range(kills)]
        for when, count in zip(whens, per_round, strict=True):
            s.round(when, count, ttl)
        settled_leader(cluster)
        accepted = {i for i, o in s.outcomes.items() if o == "accepted"}
        waited = time.monotonic()
        every = all(
            s.running(sorted(accepted), max(5.0, 180 - (time.monotonic() - waited)), on=name)
            for name in cluster.managers
        )
        settle = time.monotonic() - waited
        result = check(cluster, s, accepted)
        result.update(every=every, settle=settle)
        report_storm(s, result, ttl)
        time.sleep(2 * ttl)  # a late order (a deposed leader's) would show by now
        later = check(cluster, s, accepted)
        print(
            f"  {2 * ttl} s later: lost {later['lost']}, doubled {later['doubled']}, "
            f"records differing {later['differ']}"
        )
        for line in later["stories"][:20]:
            print(f"    {line}")
        for what in ("lost", "doubled", "differ"):
            result[what] = max(result[what], later[what])
        if result["lost"] or result["doubled"] or result["differ"]:
            tails(cluster, [*cluster.managers, *cluster.workers], lines=15)
        stop_all(cluster, accepted, timeout=120)
    finally:
        clusters.stop(cluster, "storm")
    result["elapsed"] = time.monotonic() - started
    return result


def check(cluster: LocalCluster, s: Storm, accepted: set[str]) -> dict:
    """Lost, doubled and differing tasks, asking every manager, every worker and
    every worker's runtime, and etcd itself."""
    lists: dict[str, dict[str, dict]] = {}
    for _ in range(10):  # the managers' copies follow etcd's watch: give them a moment
        lists = {}
        for name, component in cluster.managers.items():
            tasks = requests.get(f"{component.url}/tasks", timeout=10).json()
            lists[name] = {t["ID"]: t for t in tasks}
        if all(lists[n] == lists["manager"] for n in lists):
            break
        time.sleep(0.5)
    with EtcdClient(cluster.etcd.endpoints) as client:  # type: ignore[union-attr]
        store = EtcdStore(client, "/cube/tasks", WireCodec(Task))
        in_etcd = {key: task.to_wire() for key, task in store.items()}
    copies: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    for name in cluster.workers:
        worker = cluster.worker_client(name)
        for task in worker.tasks():
            if task.state.value in LIVE:
                copies[str(task.id)] += 1
        worker.close()
        runtime = worker_runtime(cluster.runtime, cluster.data_dir, name)
        for managed in runtime.list_managed():
            if managed.status.running:
                processes[managed.task_id] += 1
    lost, doubled, differ, stories = set(), set(), set(), []
    for task_id in sorted(accepted):
        records = {n: tasks.get(task_id) for n, tasks in lists.items()}
        missing = [n for n, r in records.items() if r is None]
        idle = [n for n, r in records.items() if r is not None and r["State"] != RUNNING]
        if missing or idle or task_id not in in_etcd or processes[task_id] == 0:
            lost.add(task_id)
            stories.append(
                f"{task_id}: lost (missing on {missing}, not Running on {idle}, "
                f"in etcd: {task_id in in_etcd}, processes: {processes[task_id]})"
            )
        if copies[task_id] > 1 or processes[task_id] > 1:
            doubled.add(task_id)
            stories.append(
                f"{task_id}: doubled ({copies[task_id]} live copies, "
                f"{processes[task_id]} processes)"
            )
        present = [r for r in records.values() if r is not None]
        if any(r != present[0] for r in present) or (
            present and task_id in in_etcd and _wire(present[0]) != _wire(in_etcd[task_id])
        ):
            differ.add(task_id)
            fields = sorted({k for r in present for k in r if r.get(k) != present[0].get(k)})
            stories.append(f"{task_id}: records differ between managers (fields {fields})")
    strays = sorted(set(processes) - set(in_etcd))
    return {
        "accepted": len(accepted),
        "lost": len(lost),
        "doubled": len(doubled),
        "differ": len(differ),
        "stories": stories,
        "strays": strays,
        "known": sum(1 for i in accepted if all(i in t for t in lists.values())),
    }


def _wire(record: dict) -> dict:
    """A record as the API shows it, and as etcd holds it, compared the same way."""
    return {k: v for k, v in record.items() if v not in (None, "", 0, {}, [])}


def report_storm(s: Storm, result: dict, ttl: int) -> None:
    outcomes = Counter(o.split(":")[0] for o in s.outcomes.values())
    print(
        f"  posted {len(s.outcomes)}: "
        + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        + "; not accepted: "
        + ("none" if outcomes["accepted"] == len(s.outcomes) else str(s.outcomes))[:300]
    )
    print(
        f"  every accepted task Running on every manager: {'yes' if result['every'] else 'NO'}"
        f" ({_s(result['settle'])} after the last kill's restart)"
    )
    print(
        f"  accepted {result['accepted']}: lost {result['lost']}, doubled {result['doubled']}, "
        f"records differing {result['differ']} (goal: 0 lost, 0 doubled)"
    )
    if result["strays"]:
        print(f"  processes of tasks nobody accepted: {result['strays']}")
    for line in result["stories"][:20]:
        print(f"    {line}")
    took = [k["took"] for k in s.kills if k["took"] is not None]
    by_when = Counter(k["when"] for k in s.kills)
    print(
        f"  kill -> new leader ({len(s.kills)} kills: "
        + ", ".join(f"{n} {w}" for w, n in sorted(by_when.items()))
        + f"): median {_s(statistics.median(took))} ({statistics.median(took) / ttl:.2f}x TTL), "
        f"max {_s(max(took))} ({max(took) / ttl:.2f}x TTL)"
        + (f", {len(s.kills) - len(took)} never" if len(took) < len(s.kills) else "")
    )
    print("    " + " ".join(_s(t).removesuffix(" s") for t in (k["took"] for k in s.kills)) + " s")


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_failover", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer of each")
    parser.add_argument("--repeats", type=int, default=10, help="failovers per TTL")
    parser.add_argument("--ttls", default="2,3", help="lease TTLs to measure failover at")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--singles", type=int, default=10, help="baseline tasks, one at a time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", type=Path, help="copy every cluster's logs here")
    parser.add_argument("--parts", default="baseline,failover,storm", help="which, in order")
    if argv is None:  # `python -m bench bench_failover --quick`: from the first flag on
        argv = list(itertools.dropwhile(lambda a: not a.startswith("-"), sys.argv[1:]))
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.ttls, args.kills, args.tasks, args.singles = 3, "2", 5, 25, 5
    if etcd_binary() is None:
        header("failover: skipped (no etcd installed: scripts/etcd-up.sh)")
        return
    rng = random.Random(args.seed)
    clusters = Clusters(args.keep_logs)
    began = time.monotonic()
    ttls = [int(t) for t in args.ttls.split(",") if t]
    parts = set(args.parts.split(","))
    try:
        medians = baseline(clusters, args.singles, ttls[0]) if "baseline" in parts else {}
        for ttl in ttls if "failover" in parts else ():
            runs = failover(clusters, ttl, args.repeats, rng)
            placed = [r["placed"] for r in runs if r["placed"] is not None]
            steady = medians.get("3 managers on etcd, to a follower")
            if placed and steady:
                print(
                    f"  placement after a kill / with no fault (posted to a follower, "
                    f"medians): {statistics.median(placed) / steady[0]:.0f}x"
                )
        if "storm" in parts:
            result = storm(clusters, args.kills, args.tasks, ttls[0], rng)
            print(f"  ({_s(result['elapsed'])} for this part)")
    finally:
        for cluster in clusters.started:
            if not cluster.closed:
                cluster.stop()
        left = clusters.leftovers()
        clusters.close()
        header("clean-up")
        print(f"  left behind: {'nothing' if not left else ''}")
        for line in left:
            print(f"    {line}")
        print(f"  the whole run took {_s(time.monotonic() - began)}")


if __name__ == "__main__":
    main()
