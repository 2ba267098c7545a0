"""The workers as the manager knows them: alive or not, how full, what they can run.

Liveness is a cheap ``GET /health`` with its own short timeout, once per round: not the
success of fetching a whole task list (which a busy worker may be slow to send). A
worker that has no ``/health`` (the book's Go worker) is probed with ``GET /stats``
instead. A worker that has not answered for ``node_ttl`` seconds is down; one whose
answers cannot be read (``/stats`` not the expected object) is down at once, saying why.

The capacity a scheduler sees is what each worker last measured (``/stats``, asked every
``STATS_EVERY`` seconds: capacity moves slowly, and asking costs both sides) and what
the manager has promised to the live tasks it placed there (:meth:`Nodes.account`), and
its runtime and images come from ``/health``, for the feasibility checks. A worker that
refused a task (``400``: it cannot run that image) is kept as unable to run it
(:mod:`cube.manager.findings`), so the task goes elsewhere instead of back to the same
node.

A worker dropped from ``--workers`` while it still ran tasks is *draining*: its stored
record gives its address, and the manager keeps a client for it, used only to watch its
list and stop the copies there (they are strays: their tasks move to configured
workers), until it holds no live copy; then its record is forgotten. It is never probed,
shown or placed on. The alternative, refusing to finish a stop while a copy may remain,
would leave a task stopping for ever on a worker that is gone for good, and would still
leave the copies of moved tasks running.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cube import clock
from cube.client import CubeError, NotFound, WorkerClient
from cube.clock import utcnow
from cube.etcd.errors import EtcdError
from cube.feasibility import can_run
from cube.manager.network import Network
from cube.manager.probe import Prober
from cube.manager.reconcile import Spot
from cube.messages import NodeInfo
from cube.node import Node, NodeTable, stats_problem
from cube.proof import Stamp
from cube.records import Changes
from cube.scheduler import Scheduler, place
from cube.store import Store, StoreError
from cube.task import LIVE, Task, clip_reason

log = logging.getLogger(__name__)

STATS_EVERY = 5.0  # seconds between /stats of a worker that is up
STATS_KEPT_EVERY = 10.0  # seconds between two stored copies of a worker's statistics


@dataclass
class Answer:
    """One liveness round's result for a node."""

    health: dict[str, Any] | None = None
    stats: Any = None
    error: str = ""
    malformed: bool = False


class Nodes:
    """Every configured worker, its client, its liveness and what is promised on it."""

    def __init__(
        self,
        addresses: list[str],
        store: Store[Any],
        *,
        token: str | None,
        timeout: float,
        probe_timeout: float,
        node_ttl: float,
        network: Network | None = None,
    ) -> None:
        network = network or Network()
        self.store = store
        self.node_ttl = node_ttl
        self.probe_timeout = probe_timeout
        self.started = utcnow()
        self._kept_at: dict[str, float] = {}  # when each worker's statistics were stored
        self.by_name: dict[str, Node] = {}
        self.clients: dict[str, WorkerClient] = {}
        self._probes: dict[str, Prober] = {}
        self._no_health: set[str] = set()
        self._stats_due: dict[str, float] = {}
        self._lock = threading.RLock()
        self.changes = Changes()  # bumped by every answer taken in: for watchers of /nodes
        for address in addresses:
            node = self._load(address)
            self.by_name[node.name] = node
            self.clients[node.name] = network.client(node.api, token, timeout)
            self._probes[node.name] = network.prober(node.api, token, probe_timeout)
        self._said: dict[str, str] = {}  # node -> the name its /health gives
        self.draining: set[str] = set()  # dropped from the configuration, maybe not empty
        for name, api in self._dropped().items():
            self.clients[name] = network.client(api, token, timeout)
            self.draining.add(name)

    # ------------------------------------------------------------------ liveness

    def ask(self, name: str) -> Answer:
        """One liveness round for ``name``, over HTTP (no lock held): ``/health``, and
        ``/stats`` when due (or when ``/health`` is missing, as on a Go worker)."""
        probe = self._probes[name]
        health = None
        try:
            if name not in self._no_health:
                try:
                    health = probe.get("/health")
                except NotFound:
                    self._no_health.add(name)  # a Go worker: /stats alone tells it lives
            if not isinstance(health, dict | None):
                return Answer(error="/health did not answer an object", malformed=True)
            due = name in self._no_health or self.by_name[name].state != "up"
            if not due and clock.monotonic() < self._stats_due.get(name, 0.0):
                return Answer(health, None, "")  # alive; its stats are recent enough
            stats = probe.get("/stats")
            self._stats_due[name] = clock.monotonic() + STATS_EVERY
        except (CubeError, ValueError) as exc:
            if health is not None:
                return Answer(health, None, "")  # alive; its stats can wait
            return Answer(error=str(exc))
        problem = stats_problem(stats)
        return Answer(health, stats, problem, malformed=bool(problem))

    def take(self, name: str, answer: Answer) -> bool:
        """Take in a round's answer; True when the node went up or down (or changed
        what it can run), which is worth a new look at the tasks that wait."""
        with self._lock:
            node = self.by_name[name]
            was = (node.state, node.runtime, node.images, node.pulls)
            shown = _shown(node)
            if answer.malformed:
                self._down(node, f"malformed answer: {answer.error}")
            elif answer.error:
                since = max(node.last_seen or self.started, self.started)
                if (utcnow() - since).total_seconds() >= self.node_ttl and node.state != "down":
                    self._down(node, f"no answer for {self.node_ttl:g} s: {answer.error}")
            else:
                if answer.health:
                    node.capable(answer.health)
                    self._said[name] = str(answer.health.get("Name") or "")
                if isinstance(answer.stats, dict):
                    node.observe(answer.stats, utcnow())
                node.state, node.last_seen, node.reason = "up", utcnow(), ""
                if was[0] != "up":
                    log.info("worker %s is up", name)
            changed = was != (node.state, node.runtime, node.images, node.pulls)
            if changed or (answer.stats is not None and self._keep_stats_now(name)):
                self._keep(node)  # for the first decisions after a start
            moved = _shown(node) != shown
        if moved:  # outside the lock: a watcher may hold its own and ask us
            self.changes.bump()
        return changed

    def _keep_stats_now(self, name: str) -> bool:
        """Fresh statistics are stored every ``STATS_KEPT_EVERY`` seconds, not on every
        probe: they only serve the first decisions after a start (and on etcd, every
        write of every manager is one more revision for everyone)."""
        now = clock.monotonic()
        if now - self._kept_at.get(name, -STATS_KEPT_EVERY) < STATS_KEPT_EVERY:
            return False
        self._kept_at[name] = now
        return True

    def _keep(self, node: Node) -> None:
        try:
            self.store.put(node.name, node.to_wire())
        except (OSError, StoreError, EtcdError) as exc:  # what it is now matters more
            log.info("could not store what worker %s is (%s)", node.name, exc)

    def _down(self, node: Node, reason: str) -> None:
        if node.state != "down":
            log.warning("worker %s is down (%s)", node.name, reason)
        node.state, node.reason = "down", clip_reason(reason)

    # ------------------------------------------------------------------ questions

    def state(self, name: str) -> str:
        node = self.by_name.get(name)
        return "gone" if node is None else node.state

    def refusal(self, task: Task, name: str, said: str = "") -> str:
        """Why ``name`` cannot run ``task``: what it ``said`` when it refused it, or
        what it reports it can run; "" when nothing says it cannot."""
        if said:
            return f"refused it: {said}"
        with self._lock:
            node = self.by_name.get(name)
            if node is None:
                return "is not configured"
            check = can_run(task.image, node.runtime, node.images, node.pulls)
        if check == "runtime":
            return f"has no Docker (it runs only {', '.join(node.images)})"
        if check == "image":
            return f"has no image {task.image} and cannot pull it"
        return ""

    def place(
        self, scheduler: Scheduler, task: Task, refused: dict[str, str], avoid: str = ""
    ) -> Spot:
        """Feasibility, then the scheduler, over the nodes as they are now; ``refused``
        says what each worker that refused the task said."""
        with self._lock:
            names = list(self.by_name)
            table = NodeTable.from_nodes(self.list())
            table.refusals = [
                refused.get(name, "it cannot run it" if name == avoid else "") for name in names
            ]
            spot = place(scheduler, task, table)
        if spot.index is None:
            return Spot(None, spot.reason, spot.possible)
        return Spot(names[spot.index])

    def list(self) -> list[Node]:
        with self._lock:
            return list(self.by_name.values())

    # ------------------------------------------------------------- what is promised

    def account(self, old: Task | None, new: Task | None) -> None:
        """Keep each node's promised cores, memory, disk and task count in step with
        the live tasks placed on it, as a record changes from ``old`` to ``new``."""
        with self._lock:
            for task, sign in ((old, -1), (new, 1)):
                node = self.by_name.get(task.worker) if task is not None else None
                if node is None or task is None or task.state not in LIVE:
                    continue
                node.cpu_allocated = max(0.0, node.cpu_allocated + sign * task.cpu)
                node.memory_allocated = max(0, node.memory_allocated + sign * task.memory)
                node.disk_allocated = max(0, node.disk_allocated + sign * task.disk)
                node.task_count = max(0, node.task_count + sign)

    def speak_for(self, stamp: Callable[[], Stamp | None]) -> None:
        """Every order to a worker from now on carries ``stamp()``: the signed epoch of
        the leader this manager is, while it is (several managers on etcd). Probes and
        reads carry nothing: a worker's epoch moves only with orders."""
        for client in self.clients.values():
            client.epoch = stamp

    def close(self) -> None:
        for client in (*self.clients.values(), *self._probes.values()):
            client.close()

    # ------------------------------------------------------------------ draining

    def _dropped(self) -> dict[str, str]:
        """The workers stored from an earlier configuration and absent from this one:
        name -> API address. They may still run copies of tasks this manager knows."""
        dropped = {}
        with contextlib.suppress(OSError, StoreError, EtcdError):
            for name, data in self.store.items():
                with contextlib.suppress(KeyError, ValueError, TypeError):
                    if name not in self.by_name:
                        dropped[name] = Node.from_wire(data).api
        if dropped:
            log.info("draining workers no longer configured: %s", ", ".join(sorted(dropped)))
        return dropped

    def distinct(self, name: str) -> bool | None:
        """Whether dropped worker ``name`` is surely none of the configured workers: its
        ``/health`` names it, and no configured worker that answers gives that name.
        None while that cannot be told (a configured worker not heard from yet, or the
        dropped one not answering)."""
        with self._lock:
            if any(node.state == "unknown" for node in self.by_name.values()):
                return None
            said = {self._said.get(n, "") for n, node in self.by_name.items() if node.state == "up"}
        try:
            health = self.clients[name].get_raw("/health", timeout=self.probe_timeout).json()
        except NotFound:
            return False  # no /health (the book's Go worker): it cannot be told apart
        except (CubeError, ValueError):
            return None
        own = str(health.get("Name") or "") if isinstance(health, dict) else ""
        return bool(own) and own not in said

    def drained(self, name: str, why: str = "it holds no live copy any more") -> None:
        """Stop draining a dropped worker: forget it here and in the store, so that the
        next start does not drain it again."""
        with self._lock:
            if name not in self.draining:
                return
            self.draining.discard(name)
            client = self.clients.pop(name)
        with contextlib.suppress(KeyError, OSError, StoreError, EtcdError):
            self.store.delete(name)
        client.close()
        log.info("no longer draining worker %s: %s", name, why)

    def _load(self, address: str) -> Node:
        node = Node.for_worker(address)
        with contextlib.suppress(KeyError, ValueError, TypeError):
            saved = Node.from_wire(self.store.get(node.name))
            saved.state, saved.api = "unknown", node.api
            saved.cpu_allocated, saved.memory_allocated, saved.disk_allocated = 0.0, 0, 0
            saved.task_count = 0
            return saved
        return node


def _shown(node: Node) -> NodeInfo:
    """What ``GET /nodes`` shows of a node, but when it was last heard from: a watch of
    the list wakes when a node changes, not on every probe that finds it as it was."""
    return node.info().replace(last_seen=None)
