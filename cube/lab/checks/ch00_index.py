"""The welcome notebook's check: is *your* task running (not just any task)?

It looks for the task you named, waits a few seconds for it to run, and if it cannot
(it failed, was stopped, or waits for room) says so with the task's own reason.
"""

from __future__ import annotations

from cube.client import WillNotHappen
from cube.cluster import LocalCluster
from cube.lab.checks.core import Check
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_client
from cube.task import State

HINTS = (
    "the check looks for a task with the name it gave you, on the live cluster",
    "submit a task with that name, with the form above or cluster.client.submit(...)",
)


def check_own_task(cluster: LocalCluster, name: str) -> Verdict:
    """Is the latest task called ``name`` Running (within five seconds)?"""
    check = Check("00 · a task of your own", HINTS, f"your task, {name}")
    view = ClusterView(cluster)
    with (
        check,
        Watch(of_client(cluster.client, view.name, lambda t: t.name == name), check.timeline),
    ):
        mine = [t for t in cluster.client.tasks() if t.name == name]
        check.require(bool(mine), f"no task is called {name!r} yet")
        try:
            task = cluster.client.wait_for(mine[-1].id, State.Running, timeout=5)
        except WillNotHappen as exc:
            check.stop(str(exc), "try the image cube/echo (or cube/busybox with Docker)")
        except TimeoutError:
            now = cluster.client.task(mine[-1].id)
            check.stop(
                f"{name} is still {now.state.name} after 5 s: {now.reason or 'no reason given'}"
            )
        check.note(f"{task.name} runs on {view.name(task.worker)}")
    return check.verdict(f"{name} is running. On to notebook 01!")
