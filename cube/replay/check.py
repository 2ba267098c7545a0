"""The invariants a run must keep, watched as it goes and checked once it is quiet.

All along:
- **nothing accepted is lost**: every task the manager accepted is in its records
  whenever it (re)starts;
- **a given-up task stays given up**: once the manager gave up on a task, no copy of
  it is started again.

With several managers, all along:
- **only a leader gives orders**: whenever a manager sends an order to a worker, etcd
  has it leading (its key first in line, on a lease etcd still has).

Once quiet (every fault over, and ``quiet`` seconds left alone):
- **no task runs in two places**, and nothing runs that nobody asked for;
- **every stop converges**: a task a client stopped is Completed, with no copy left;
- **every task wanted Running runs exactly once**, on the worker its record names;
- **every restarted component comes back**: the manager sees every worker up;
- **history stays bounded**: the manager keeps no more events than its retention says;
- with several managers, **one leads, and every one agrees**: a leader acts, and every
  other manager's records say what the leader's say.
"""

from __future__ import annotations

import random
from urllib.parse import urlsplit
from uuid import UUID

from cube.manager.reconcile import given_up
from cube.replay.cluster import SimCluster
from cube.replay.wires import Request
from cube.task import State

NO_LEADER = "once quiet: no manager leads"


def uuid_from(rng: random.Random) -> UUID:
    return UUID(int=rng.getrandbits(128), version=4)


class Watch:
    """What the client was told, and what went wrong along the way."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.accepted: dict[str, str] = {}  # task ID -> name
        self.stopped: set[str] = set()
        self.violations: list[str] = []
        cluster.order_checks.append(self.order_sent)

    def booted(self, name: str) -> None:
        """A component (re)started: a manager must still have every accepted task."""
        manager = self.cluster.managers.get(name)
        if manager is None:
            return
        for key, task_name in self.accepted.items():
            if key not in manager.tasks.records:
                self.fail(f"{task_name} was accepted, and lost when {name} restarted")

    def order_sent(self, source: str, request: Request) -> None:
        """An order from manager ``source``: with several, only a leader gives orders."""
        if self.cluster.shared and not self.cluster.leads_in_etcd(source):
            path = urlsplit(request.url).path
            self.fail(f"{source} sent {request.method} {path} while etcd had it not leading")

    def fail(self, what: str) -> None:
        line = f"t={self.cluster.world.elapsed:.2f}s {what}"
        if line not in self.violations:
            self.violations.append(line)
            self.cluster.world.say("VIOLATION", what)


def quiet(cluster: SimCluster, watch: Watch) -> list[str]:
    """The invariants of a quiet cluster; one line per violation."""
    found: list[str] = []
    manager = cluster.manager
    if manager is None:
        return [
            "once quiet: no manager leads" if cluster.shared else "the manager did not come back"
        ]
    copies = cluster.copies()
    policy = cluster.settings.restart
    for name in cluster.names:
        node = manager.nodes.by_name.get(cluster.address(name))
        if node is None or node.state != "up":
            found.append(f"worker {name} is not up for the manager once quiet")
    for key, where in copies.items():
        if key not in watch.accepted:
            found.append(f"a process of unknown task {key[:8]} runs on {', '.join(where)}")
    for key, name in watch.accepted.items():
        task = manager.tasks.records.get(key)
        where = copies.get(key, [])
        if task is None:
            found.append(f"{name} was accepted and is lost")
            continue
        if len(where) > 1:
            found.append(f"{name} runs in {len(where)} places: {', '.join(sorted(where))}")
        if key in watch.stopped:
            if task.state is not State.Completed or where:
                found.append(
                    f"{name} was stopped, yet is {task.state.name} with {len(where)} copies"
                )
        elif given_up(task, policy) or key in cluster.given_up:
            if where:
                found.append(f"{name} was given up, yet runs on {', '.join(where)}")
        elif task.state is State.Running:
            if [task.worker.split(":")[0]] != where:
                found.append(
                    f"{name} is Running on {task.worker} for the manager, "
                    f"and runs on [{', '.join(where)}]"
                )
        else:
            found.append(f"{name} is wanted Running, and is {task.state.name}: {task.reason}")
    events = len(manager.stores.events)
    if events > cluster.settings.max_events:
        found.append(f"the manager keeps {events} events, over its bound")
    found += _agreement(cluster, watch)
    return [f"once quiet: {line}" for line in found]


def _agreement(cluster: SimCluster, watch: Watch) -> list[str]:
    """Every manager's records say what the leader's say (several managers)."""
    leader = cluster.manager
    found = []
    for name in cluster.manager_names if cluster.shared else ():
        other = cluster.managers[name]
        if other is None or other is leader or leader is None:
            if other is None:
                found.append(f"manager {name} did not come back")
            continue
        for key, task_name in watch.accepted.items():
            mine, theirs = leader.tasks.records.get(key), other.tasks.records.get(key)
            said = [(t.state, t.worker, t.generation) if t else None for t in (mine, theirs)]
            if said[0] != said[1]:
                found.append(f"{name} has {task_name} as {said[1]}, the leader as {said[0]}")
    return found
