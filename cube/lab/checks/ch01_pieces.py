"""Chapter 1: find the worker that runs a task, by asking the workers themselves.

The manager keeps an assignment (the task's ``Worker`` field), but the workers are
where tasks actually run. The checker puts tasks on the cluster through the manager,
one directly on a worker behind the manager's back (so only the workers know it), then
crashes that one (its worker keeps it, Failed: it runs nowhere), and stops one placed
by the manager (a stopped task runs nowhere either), and compares the learner's answers
with the truth.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from cube.cluster import LocalCluster
from cube.lab.checks.core import Check
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_client
from cube.task import State

PREFIX = "find-"
HINTS = (
    (
        "the manager's record can be wrong or missing: which part of the cluster knows for "
        "sure what runs where?"
    ),
    (
        "ask every worker for its tasks; only a copy in state Running counts, and the answer "
        "is a worker's name"
    ),
    (
        "loop over cluster.workers (the names), ask each one for its tasks with "
        "cluster.worker_client(name).tasks(), and return the name of the one that has "
        "the task Running; None when nobody does"
    ),
)


def check_find_worker(
    find_worker: Callable[[LocalCluster, str], str | None], cluster: LocalCluster
) -> Verdict:
    """Run ``find_worker(cluster, task_id)`` on tasks whose whereabouts are known."""
    view = ClusterView(cluster)
    check = Check("01 · find the worker", HINTS, "tasks of the check, by worker")
    client = cluster.client
    direct: tuple[str, str] | None = None
    placed: list[str] = []
    mine = lambda t: str(t.id) in placed  # noqa: E731
    with check, Watch(of_client(client, view.name, mine), check.timeline):
        try:
            check.ready(cluster)
            check.say("asking about a task nobody has")
            _ask(check, find_worker, cluster, str(uuid.uuid4()), None, "a task nobody has")
            check.say("placing three tasks through the manager")
            for i in (1, 2, 3):
                placed.append(
                    str(client.submit({"Name": f"{PREFIX}{i}", "Image": cluster.image}).id)
                )
            tasks = [client.wait_for(task_id, State.Running) for task_id in placed]
            for task in tasks:
                expected = view.name(task.worker)
                _ask(
                    check,
                    find_worker,
                    cluster,
                    task.id,
                    expected,
                    f"{task.name} (placed by the manager)",
                )
            check.say("starting a task behind the manager's back")
            direct = _behind_the_managers_back(cluster)
            what = "a task started directly on a worker, which the manager never heard of"
            _ask(check, find_worker, cluster, direct[1], direct[0], what)
            check.say("crashing that task: its worker lists it Failed")
            _crash(cluster, direct)
            what = "that task after it crashed (its worker lists it as Failed)"
            _ask(check, find_worker, cluster, direct[1], None, what)
            check.say(f"stopping {PREFIX}1")
            client.stop(placed[0])
            client.wait_for(placed[0], State.Completed)
            what = f"{PREFIX}1 after it was stopped (its worker lists it as Completed)"
            _ask(check, find_worker, cluster, placed[0], None, what)
        finally:
            _tidy(cluster, placed, direct)
    return check.verdict("every answer matches where the tasks really run")


def _ask(
    check: Check,
    find_worker: Callable[[LocalCluster, str], str | None],
    cluster: LocalCluster,
    task_id: object,
    expected: str | None,
    what: str,
) -> None:
    got = check.call(find_worker, "find_worker(cluster, task_id)", cluster, str(task_id))
    if got == expected:
        return
    if isinstance(got, str) and any(c.address == got for c in cluster.workers.values()):
        check.fail(
            f"for {what} you answered the address {got!r}; answer the worker's name ({expected!r})",
            "cluster.workers maps each name to its component",
        )
    elif expected is None:
        check.fail(
            f"for {what} you answered {got!r}; nobody runs it, so the answer is None",
            "only a copy in state Running counts",
        )
    else:
        check.fail(f"for {what} you answered {got!r}, but {expected} runs it")


def _behind_the_managers_back(cluster: LocalCluster) -> tuple[str, str]:
    """Start a task straight on the last worker; returns (worker name, task ID)."""
    name = list(cluster.workers)[-1]
    with cluster.worker_client(name) as worker:
        task = worker.submit({"Name": f"{PREFIX}direct", "Image": cluster.image})
        worker.wait_for(task.id, State.Running)
    return name, str(task.id)


def _crash(cluster: LocalCluster, direct: tuple[str, str]) -> None:
    """Kill the direct task's process; its worker marks it Failed, and keeps it so (no
    manager will order a restart: none knows of it)."""
    name, task_id = direct
    with cluster.worker_client(name) as worker:
        cluster.crash_container(name, worker.task(task_id).container_id)
        worker.wait_for(task_id, State.Failed)


def _tidy(cluster: LocalCluster, placed: list[str], direct: tuple[str, str] | None) -> None:
    for task_id in placed:
        with contextlib.suppress(Exception):
            if cluster.client.task(task_id).state is not State.Completed:
                cluster.client.stop(task_id)
    if direct is not None:
        with cluster.worker_client(direct[0]) as worker, contextlib.suppress(Exception):
            worker.stop(direct[1])
