"""The threads that drive the manager: they observe, decide with ``reconcile``, and act.

- **work** (a small pool): takes the task IDs that are due from the durable work queue,
  runs :func:`~cube.manager.reconcile.reconcile` on each, stores the new record, sends
  the orders, and queues the task again for when its plan says;
- **watch** (one per worker, :mod:`cube.manager.observe`): keeps what each worker
  reports current, and queues the tasks whose copies changed;
- **liveness**: probes every worker each ``update_interval`` (short timeout), marks them
  up or down (:mod:`cube.manager.nodes`), and queues the tasks a change concerns;
- **health**: probes each running task's ``HealthCheck`` every ``health_interval``, and
  queues a task whose verdict changed.

Nothing here decides anything: the decisions are reconcile's, the timing is in the work
queue, and everything a decision needs is either stored or observed again after a
restart. Each thread wakes on work or on its period, never spins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, as_completed
from typing import TYPE_CHECKING, Any

from cube import clock, faults
from cube.clock import utcnow
from cube.etcd import CasConflict, NotLeader
from cube.manager import retention
from cube.manager.health import Health
from cube.manager.observe import Watcher
from cube.manager.orders import Orders
from cube.manager.reconcile import Observed, placed, reconcile
from cube.task import State, TaskEvent

if TYPE_CHECKING:
    from cube.manager.manager import Manager

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0  # seconds between forgetting what is past retention
IDLE_WAIT = 60.0  # the work loop sleeps at most this long with nothing due


def _as_answered(futures: list[Future[Any]]) -> Iterator[Future[Any]]:
    """Each future as its answer comes in; those already answered first, in the order
    they were asked (so a run in the simulator, where every call is answered at once,
    does not depend on how a set of futures happens to be ordered)."""
    ready = [f for f in futures if f.done()]
    yield from ready
    yield from as_completed([f for f in futures if f not in ready])


class Control:
    """The manager's moving parts. :meth:`step` does one round of all in the caller's
    thread; :meth:`start` runs them as threads."""

    def __init__(self, manager: Manager) -> None:
        # what it works with, taken once: it never reaches back into the manager
        self.tasks, self.nodes, self.reports = manager.tasks, manager.nodes, manager.reports
        self.scheduler, self.interval = manager.scheduler, manager.update_interval
        self.health_interval, self.keeper = manager.health_interval, manager.keeper
        self.prune = lambda: retention.prune(manager)
        self.orders = Orders(self.tasks, self.nodes, self.reports, manager.leadership)
        self.health = Health(self.tasks, self.nodes, manager.network, manager.http_timeout)
        workers = len(self.nodes.clients)
        self.pool = manager.network.pool("manager-work", max(4, workers))
        self.io = manager.network.pool("manager-io", max(4, workers))
        self.watchers = {  # a dropped worker's once it is surely not a configured one
            name: self._watcher(name, client)
            for name, client in self.nodes.clients.items()
            if name not in self.nodes.draining
        }
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._confirming: dict[str, Future[bool | None]] = {}  # dropped workers: distinct?

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for watcher in self.watchers.values():
            watcher.start()
        for name, target in (("work", self._work_loop), ("liveness", self._liveness_loop)):
            self._spawn(name, target)
        self._spawn("health", self._health_loop)

    def close(self) -> None:
        self._stopping.set()
        self.tasks.timers.wake()
        for watcher in list(self.watchers.values()):
            watcher.close()
        for thread in self._threads:
            thread.join(timeout=10)
        for watcher in list(self.watchers.values()):  # one started as this began, if any
            watcher.close()
        self.pool.shutdown(wait=True)
        self.io.shutdown(wait=True)

    def step(self) -> None:
        """One round of everything, in this thread (for notebooks showing each move)."""
        self.probe_all()
        for watcher in list(self.watchers.values()):
            watcher.once()
        self.check_health()
        self.drain()

    def drain(self) -> None:
        """Reconcile every task that is due now, until none is."""
        while due := self.tasks.timers.take():
            for task_id in due:
                self._process(task_id)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"manager-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ deciding

    def _work_loop(self) -> None:
        timers = self.tasks.timers
        while not self._stopping.is_set():
            with timers.changed:
                due = timers.take()
                if not due:
                    next_due = timers.next_due()  # scheduling wakes us: sleep until due
                    pause = IDLE_WAIT if next_due is None else next_due - clock.now()
                    timers.wait(max(0.005, min(pause, IDLE_WAIT)))
                    continue
            for task_id in due:
                self.pool.submit(self._process, task_id)

    def _process(self, task_id: str) -> None:
        again: tuple[float, str] | None = None
        try:
            again = self.reconcile_one(task_id)
        except CasConflict:  # another manager changed it: decide again on what it wrote
            again = clock.now(), "changed through another manager"
        except NotLeader as exc:  # the fence held: this manager no longer leads
            log.info("not deciding for task %s: %s", task_id, exc)
        except Exception:
            log.exception("reconciling task %s failed; trying again shortly", task_id)
            again = clock.now() + self.interval, "after an error"
        finally:
            self.tasks.timers.done(task_id, *(again or (None, "")))

    def reconcile_one(self, task_id: str) -> tuple[float, str] | None:
        """Decide for one task, store the decision, send its orders. Returns when to
        look at it again (epoch seconds) and why, or None."""
        tasks, nodes = self.tasks, self.nodes
        with tasks.lock:
            task = tasks.records.get(task_id)
            if task is None:
                return None
            now, worker, found = utcnow(), task.worker, tasks.findings
            refused = found.refusals(task_id)
            seen = Observed(
                self.reports.copies(task_id),
                found.problem(task),
                state=nodes.state(worker) if worker else "unknown",
                refusal=nodes.refusal(task, worker, refused.get(worker, "")) if worker else "",
            )
            plan = reconcile(task, seen, now, tasks.timing)
            if plan.place is not None:  # placement comes after: feasibility, then score
                spot = nodes.place(self.scheduler, plan.task, refused, plan.place.avoid)
                plan = placed(plan, spot, now, tasks.timing)
            if plan.task is not task:
                tasks.save(plan.task, note=plan.note)
            if plan.ordered:
                tasks.record(TaskEvent(task=plan.task, state=State.Running))
        if plan.actions:
            faults.point("manager-saved")
        changed = False
        for action in plan.actions:
            changed |= self.orders.send(action)
        if changed:
            return clock.now(), "an order's answer"
        if plan.wake is None:
            return None
        return plan.wake.timestamp(), (plan.note or "no answer yet to its order")[:120]

    # ---------------------------------------------------------------- observing

    def _reported(self, worker: str, changed: set[str], first: bool) -> None:
        """A watcher saw changes: look at those tasks (all of the worker's, the first
        time its list is known)."""
        keys = set(changed)
        if first:
            keys |= self.tasks.on(worker)
        self.tasks.timers.schedule_many(k for k in keys if k in self.tasks.records)
        if worker in self.nodes.draining:
            self._drain(worker)

    def _watcher(self, name: str, client: Any) -> Watcher:
        return Watcher(
            name,
            client,
            self.reports,
            self._reported,
            self.interval,
            ready=self.keeper.ready,
        )

    def _confirm_draining(self) -> None:
        """Watch a dropped worker, and so stop its copies, only once it is surely not a
        configured worker under another address (``localhost`` for ``127.0.0.1``):
        there, every task would look like a stray of itself. A worker that cannot be
        told apart is left alone, as it was before draining existed."""
        for name in sorted(self.nodes.draining - set(self.watchers)):
            asked = self._confirming.pop(name, None)
            if asked is None or not asked.done():  # asked off this thread: it may hang
                self._confirming[name] = asked or self.io.submit(self.nodes.distinct, name)
                continue
            distinct = asked.result()
            if distinct is None or self._stopping.is_set():
                continue  # not known yet: ask again next round
            if not distinct:
                self.nodes.drained(name, "it may be a configured worker under another name")
                continue
            watcher = self._watcher(name, self.nodes.clients[name])
            self.watchers[name] = watcher
            if self._threads:  # running as threads; step() asks it itself
                watcher.start()

    def _drain(self, worker: str) -> None:
        """A worker dropped from the configuration is watched only until its list holds
        no live copy of a task this manager knows (reconcile stops those copies)."""
        if any(k in self.tasks.records for k in self.reports.live(worker)):
            return
        self.watchers[worker].close()
        self.reports.forget(worker)
        self.nodes.drained(worker)

    def _liveness_loop(self) -> None:
        next_pruning = clock.monotonic() + PRUNE_EVERY
        pause = 0.0  # the first round at once: nothing is placed before it
        while not self._stopping.wait(pause):
            pause = self.interval
            self.liveness_round(prune=clock.monotonic() >= next_pruning)
            if clock.monotonic() >= next_pruning:
                next_pruning = clock.monotonic() + PRUNE_EVERY

    def liveness_round(self, prune: bool = False) -> None:
        """Probe every worker (and forget what is past retention, if ``prune``); a
        failure is logged, and the next round comes all the same."""
        try:
            self.probe_all()
            if prune:
                self.prune()
        except Exception:
            log.exception("liveness round failed; carrying on")

    def probe_all(self) -> None:
        """Probe every worker at once; a worker going up or down gets its tasks (those
        placed on it, and those its list mentions), and the tasks waiting for room,
        looked at again."""
        nodes = self.nodes
        asked = {self.io.submit(self._ask, name): name for name in nodes.by_name}
        for future in _as_answered(list(asked)):
            name = asked[future]
            if nodes.take(name, future.result()):
                listed = self.reports.ids(name)  # its strays: their records name others
                # Up or down, what it holds is known again only from a list fetched now:
                # a list taken while it was still down may miss copies moved since, and
                # a first list has every task it mentions looked at again.
                self.reports.forget(name)
                if nodes.state(name) == "up":
                    self.io.submit(self.watchers[name].once)  # its watch may be stuck
                self.tasks.timers.schedule_many(self.tasks.on(name) | listed | self.tasks.waiting())
        if self.nodes.draining:
            self._confirm_draining()

    def _ask(self, name: str) -> Any:
        """One worker's liveness round, and this leader's announcement when it is due:
        before the worker is taken for up, so nothing of an older leader's can be
        ordered there once it is."""
        answer = self.nodes.ask(name)
        if not answer.error:
            self.orders.announce(name, answer)
        return answer

    def _health_loop(self) -> None:
        while not self._stopping.wait(self.health_interval):
            self.health_round()

    def health_round(self) -> None:
        """Probe every running task's health check; a failure is logged, and the next
        round comes all the same."""
        try:
            self.check_health()
        except Exception:
            log.exception("health round failed; carrying on")

    def check_health(self) -> None:
        """Probe every running task with a health check; queue those whose verdict
        changed."""
        self.health.round(self.io)
