"""Soak: 200 tasks on a 3-worker cluster while a nemesis breaks things for 10 minutes.

Run: ``.venv/bin/python -m bench.bench_soak [--minutes 10] [--tasks 200] [--seed 1]``.
Not part of the test suite (it takes the time it says) nor of ``make bench``'s default
list; it is how the control loop is checked against faults in long sequences.

The nemesis, every one to four seconds, does one of: SIGKILL the manager (restarted a
moment later), SIGTERM it (restarted), SIGSTOP a worker for up to 6 s (past the 2 s
node TTL, so its tasks move, then SIGCONT: its copies are strays now), SIGKILL a worker
(restarted: it re-adopts), crash a task's process, stop a task through the API, or
submit new ones. Then everything is healed and the cluster is given time to settle, and
the checks, asked of the manager and of every worker's runtime directly:

- every accepted task is known to the manager;
- no task runs in two places (one running process at most, across all workers);
- every task asked to stop is Completed and has no process left;
- every task wanted Running is Running, or gave up after using all its restarts
  (no restart forgotten).

It prints the faults injected, the tasks checked and the violations (which must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.common import header
from cube.client import CubeError, ManagerClient
from cube.cluster import LocalCluster
from cube.task import State, Task
from cube.worker.worker import worker_runtime

RESTART_LIMIT = 1000  # crashes are the nemesis's, not the tasks': restarts are unlimited here


@dataclass
class Nemesis:
    cluster: LocalCluster
    rng: random.Random
    accepted: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def client(self) -> ManagerClient:
        return self.cluster.client

    def submit(self, count: int) -> None:
        for _ in range(count):
            task = Task(f"soak-{len(self.accepted)}", self.cluster.image)
            body = {"ID": str(task.id), "Name": task.name, "Image": task.image}
            for _ in range(30):  # the manager may be down: retry the same submission
                try:
                    self.client.submit(body)
                    self.accepted.add(str(task.id))
                    break
                except CubeError:
                    time.sleep(0.5)

    def strike(self) -> None:
        action = self.rng.choice(
            ["kill-manager", "term-manager", "pause-worker", "kill-worker", "crash-task"] * 2
            + ["stop-task", "submit-more"]
        )
        worker = self.rng.choice(list(self.cluster.workers))
        try:
            getattr(self, action.replace("-", "_"))(worker)
        except CubeError as exc:  # the manager was down at that moment: try something else
            action = f"{action} (missed: {exc.message[:40]})"
        self.faults[action.split(" ")[0]] += 1

    def kill_manager(self, _: str) -> None:
        self.cluster.kill("manager")
        time.sleep(self.rng.uniform(0.2, 2))
        self.cluster.restart("manager")

    def term_manager(self, _: str) -> None:
        self.cluster.restart("manager")

    def pause_worker(self, worker: str) -> None:
        self.cluster.pause(worker)
        time.sleep(self.rng.uniform(0.5, 6))
        self.cluster.resume(worker)

    def kill_worker(self, worker: str) -> None:
        self.cluster.kill(worker)
        time.sleep(self.rng.uniform(0, 1))
        self.cluster.restart(worker)

    def crash_task(self, _: str) -> None:
        running = [t for t in self.client.tasks() if t.state is State.Running]
        if running:
            self.cluster.crash_task(str(self.rng.choice(running).id))

    def stop_task(self, _: str) -> None:
        live = sorted(self.accepted - self.stopped)
        if live:
            task_id = self.rng.choice(live)
            self.client.stop(task_id)
            self.stopped.add(task_id)

    def submit_more(self, _: str) -> None:
        self.submit(self.rng.randint(1, 5))

    def heal(self) -> None:
        for name in [*self.cluster.workers, "manager"]:
            state = self.cluster.component(name).state
            if state == "paused":
                self.cluster.resume(name)
            elif state == "stopped":
                self.cluster.restart(name)


def violations(nemesis: Nemesis) -> list[str]:
    cluster, found = nemesis.cluster, []
    tasks = {str(t.id): t for t in nemesis.client.tasks()}
    copies: Counter[str] = Counter()
    for name in cluster.workers:
        for managed in worker_runtime(cluster.runtime, cluster.data_dir, name).list_managed():
            if managed.status.running:
                copies[managed.task_id] += 1
    for task_id in nemesis.accepted:
        task = tasks.get(task_id)
        if task is None:
            found.append(f"{task_id}: accepted, then lost")
            continue
        if copies[task_id] > 1:
            found.append(f"{task_id}: runs in {copies[task_id]} places")
        if task.desired is State.Completed:
            if task.state is not State.Completed or copies[task_id]:
                found.append(f"{task_id}: asked to stop, but {task.state.name}, {copies[task_id]}")
        elif task.state is not State.Running and task.restart_count < RESTART_LIMIT:
            found.append(f"{task_id}: {task.state.name} ({task.reason[:80]})")
        elif task.state is State.Running and copies[task_id] != 1:
            found.append(f"{task_id}: Running, but {copies[task_id]} processes")
    return found


def settle(nemesis: Nemesis, timeout: float = 180) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = violations(nemesis)
        except CubeError as exc:
            found = [f"manager unreachable: {exc.message}"]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(2)


def clean_up(cluster: LocalCluster) -> None:
    """Stop every task, then the cluster; then anything a runtime still has (before the
    cluster's folder, which holds the process records, is removed)."""
    live = (State.Pending, State.Scheduled, State.Running)
    with contextlib.suppress(CubeError):
        for task in cluster.client.tasks():
            if task.state in live:
                cluster.client.stop(task.id)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(t.state in live for t in cluster.client.tasks()):
            time.sleep(1)
    for name in [*cluster.workers, "manager"]:
        cluster.kill(name)
    for name in cluster.workers:
        runtime = worker_runtime(cluster.runtime, cluster.data_dir, name)
        for managed in runtime.list_managed():
            runtime.stop(managed.status.container_id)
    cluster.stop()


def soak(minutes: float, tasks: int, seed: int) -> None:
    header(f"soak: {tasks} tasks, 3 workers, {minutes:g} min of faults (seed {seed})")
    cluster = LocalCluster(
        workers=3,
        runtime="process",
        scheduler="roundrobin",
        update_interval=0.5,
        node_ttl=2.0,
        health_interval=2.0,
        restart_limit=RESTART_LIMIT,
        restart_base=0.5,
        inspect_interval=1.0,
        keep_tasks=True,
    ).start()
    nemesis = Nemesis(cluster, random.Random(seed))
    try:
        nemesis.submit(tasks)
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            nemesis.strike()
            time.sleep(nemesis.rng.uniform(1, 4))
        nemesis.heal()
        found = settle(nemesis)
        print(f"faults injected: {sum(nemesis.faults.values())} ({dict(nemesis.faults)})")
        print(f"tasks checked: {len(nemesis.accepted)} ({len(nemesis.stopped)} asked to stop)")
        print(f"violations: {len(found)}")
        for line in found[:20]:
            print(f"  {line}")
    finally:
        clean_up(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    soak(args.minutes, args.tasks, args.seed)


if __name__ == "__main__":
    main()
