"""Chapter 13: a replica controller, written by the learner, against the live cluster.

``reconcile(client, name, replicas, image)`` makes the number of copies of ``name`` that
are *wanted running* equal ``replicas``, by submitting and stopping tasks: the heart of
a Kubernetes ReplicaSet. The checker calls it as a controller loop would, on a client
that notes every order it gives, and looks at what the manager then does:

- from nothing to three copies; called again at once, it must give no order at all;
- the nemesis crashes a copy: the manager is already restarting it (it is Failed, but
  still wanted Running), so the controller must not start a fourth;
- someone stops a copy by hand: it is no longer wanted, so the controller replaces it;
  and a copy left by an older release, whose image no worker can run, is Failed with no
  restart coming (the manager gave up on it): it will never run, so it does not count;
- down to one copy: it stops the others, and one keeps running.

The picture shows every copy on its worker, the crash marked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from cube.client import ManagerClient
from cube.cluster import LocalCluster
from cube.lab.checks.core import Check, wait_until
from cube.lab.nemesis import Nemesis
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_client
from cube.task import State, Task

NAME = "web"
HINTS = (
    (
        "which copies are really on their way to running? A crashed one the manager will "
        "restart is; one it gave up on is not"
    ),
    (
        "count copies wanted Running that can still run: not Completed, and not Failed with "
        "no restart coming (restart_at is None); submit the missing, stop the extra"
    ),
    (
        "count the tasks named web-... whose desired state is Running and that can still "
        "run (not Completed, not Failed with no restart coming: restart_at is None); submit "
        "the missing ones, stop the extra ones"
    ),
)
Controller = Callable[[Any, str, int, str], None]


class Orders:
    """The manager's client, noting every submit and stop the controller makes."""

    def __init__(self, client: ManagerClient) -> None:
        self.client = client
        self.submitted: list[str] = []
        self.stopped: list[str] = []

    def tasks(self) -> list[Task]:
        return self.client.tasks()

    def task(self, task_id: Any) -> Task:
        return self.client.task(task_id)

    def submit(self, work: Any) -> Task:
        task = self.client.submit(work)
        self.submitted.append(str(task.id))
        return task

    def stop(self, task_id: Any) -> None:
        self.client.stop(task_id)
        self.stopped.append(str(task_id))

    def clear(self) -> None:
        self.submitted.clear()
        self.stopped.clear()


def check_controller(reconcile: Controller, cluster: LocalCluster) -> Verdict:
    """Drive ``reconcile`` through scale-up, a crash, a hand-made stop and scale-down."""
    check = Check("13 · a replica controller", HINTS, "the copies of web, and the crash")
    orders, view = Orders(cluster.client), ClusterView(cluster)
    ours = lambda t: t.name.startswith(f"{NAME}-") and str(t.id) in orders.submitted + seen  # noqa: E731
    seen: list[str] = []
    try:
        with check, Watch(of_client(cluster.client, view.name, ours), check.timeline):
            check.ready(cluster)
            call = _caller(check, reconcile, orders, cluster, seen)
            check.say("scaling web from nothing to 3 copies")
            _scale_up(check, call, orders, cluster)
            _crash(check, call, orders, cluster)
            _stopped_by_hand(check, call, orders, cluster, seen)
            _scale_down(check, call, orders, cluster)
    finally:
        if not check.environment:  # a stopped cluster has nothing to tidy
            _tidy(cluster)
    return check.verdict("your controller converges, and never starts a copy too many")


def _tidy(cluster: LocalCluster) -> None:
    """Stop every copy of web still wanted running."""
    for task in cluster.client.tasks():
        if task.name.startswith(f"{NAME}-") and task.desired is State.Running:
            with contextlib.suppress(Exception):
                cluster.client.stop(task.id)


def _caller(
    check: Check, reconcile: Controller, orders: Orders, cluster: LocalCluster, seen: list[str]
) -> Callable[[int], None]:
    def call(replicas: int) -> None:
        orders.clear()
        check.call(
            reconcile,
            "reconcile(client, name, replicas, image)",
            orders,
            NAME,
            replicas,
            cluster.image,
        )
        seen.extend(orders.submitted)

    return call


def _running(cluster: LocalCluster, orders: Orders) -> list[Task]:
    return [
        t
        for t in cluster.client.tasks()
        if t.name.startswith(f"{NAME}-") and t.state is State.Running and t.desired is State.Running
    ]


def _converge(cluster: LocalCluster, orders: Orders, count: int) -> bool:
    return wait_until(lambda: len(_running(cluster, orders)) == count, timeout=8) is not None


def _scale_up(
    check: Check, call: Callable[[int], None], orders: Orders, cluster: LocalCluster
) -> None:
    call(3)
    check.require(
        len(orders.submitted) == 3,
        f"from no copies to 3, the controller submitted {len(orders.submitted)} tasks",
    )
    if not _converge(cluster, orders, 3):
        check.stop("the three copies were not all running within 8 s")
    call(3)
    if orders.submitted or orders.stopped:
        check.fail(
            f"called again with 3 copies running, it submitted {len(orders.submitted)} "
            f"and stopped {len(orders.stopped)}: a controller must change nothing "
            "when all is as wanted"
        )


def _crash(
    check: Check, call: Callable[[int], None], orders: Orders, cluster: LocalCluster
) -> None:
    victim = _running(cluster, orders)[0]
    check.say(f"crashing {victim.name}")
    Nemesis(cluster, check.timeline).crash(
        ClusterView(cluster).name(victim.worker), victim.container_id, victim.name
    )
    failed = wait_until(
        lambda: cluster.client.task(victim.id).state is not State.Running, timeout=5
    )
    if failed is None:
        check.note("the crashed copy was restarted before the controller could look")
    call(3)
    if orders.submitted:
        now = cluster.client.task(victim.id)
        check.fail(
            f"while {victim.name} was {now.state.name} after a crash, with its restart on "
            f"the way, the controller submitted {len(orders.submitted)} more: the "
            "crashed copy is still wanted Running, so it counts"
        )
    _converge(cluster, orders, 3 + len(orders.submitted))


def _stopped_by_hand(
    check: Check,
    call: Callable[[int], None],
    orders: Orders,
    cluster: LocalCluster,
    seen: list[str],
) -> None:
    victim = _running(cluster, orders)[-1]
    check.say(f"stopping {victim.name} by hand; leaving a copy the manager gives up on")
    cluster.client.stop(victim.id)
    wait_until(lambda: cluster.client.task(victim.id).state is State.Completed, timeout=5)
    hopeless = _given_up_copy(cluster, seen)
    before = len(_running(cluster, orders))
    call(3)
    if len(orders.submitted) != 3 - before:
        check.fail(
            f"after someone stopped {victim.name}, {before} copies were wanted running; "
            f"the controller submitted {len(orders.submitted)}, not {3 - before}"
            + _counted(hopeless, len(orders.submitted), 3 - before)
        )
    if not _converge(cluster, orders, 3):
        check.fail("three copies were not running again within 8 s of the controller's call")


def _given_up_copy(cluster: LocalCluster, seen: list[str]) -> Task | None:
    """A copy from an older release, with an image no worker can run: the manager gives
    up on it at once (Failed, no restart coming). None if it did not (a Docker worker
    that may pull any image tries it first)."""
    task = cluster.client.submit({"Name": f"{NAME}-old", "Image": "cube/retired-release"})
    seen.append(str(task.id))

    def given_up() -> Task | None:
        now = cluster.client.task(task.id)
        return now if now.state is State.Failed and now.restart_at is None else None

    return wait_until(given_up, timeout=5)


def _counted(hopeless: Task | None, submitted: int, wanted: int) -> str:
    """Why the controller fell short, when it counted the copy the manager gave up on."""
    if hopeless is None or submitted != wanted - 1:
        return ""
    return (
        f": it counted {hopeless.name}, which is Failed with no restart coming (the "
        "manager gave up on it: restart_at is None), so it will never run again"
    )


def _scale_down(
    check: Check, call: Callable[[int], None], orders: Orders, cluster: LocalCluster
) -> None:
    check.say("scaling down to 1 copy")
    call(1)
    if len(orders.stopped) != 2:
        check.fail(f"from 3 copies down to 1, the controller stopped {len(orders.stopped)}, not 2")
    if not _converge(cluster, orders, 1):
        left = len(_running(cluster, orders))
        check.fail(f"after scaling down to 1, {left} copies are still running")
    time.sleep(0.3)
    call(1)
    if orders.submitted or orders.stopped:
        check.fail("called again with one copy running (and two stopping), it still gave orders")
