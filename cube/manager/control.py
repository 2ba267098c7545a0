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
from cube.client import BadRequest, Conflict, CubeError, DeposedLeader, NotFound, Unreachable
from cube.clock import utcnow
from cube.etcd import CasConflict, NotLeader
from cube.manager import retention
from cube.manager.observe import Watcher
from cube.manager.reconcile import Action, Observed, Post, Stop, placed, reconcile
from cube.task import State, Task, TaskEvent

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
        self.m = manager
        workers = len(manager.cluster.clients)
        self.pool = manager.network.pool("manager-work", max(4, workers))
        self.io = manager.network.pool("manager-io", max(4, workers))
        self.watchers = {  # a dropped worker's once it is surely not a configured one
            name: self._watcher(name, client)
            for name, client in manager.cluster.clients.items()
            if name not in manager.cluster.draining
        }
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._deposed: set[tuple[str, int]] = set()  # (worker, epoch) already warned of
        self._deposed_lock = threading.Lock()
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
        self.m.timers.wake()
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
        while due := self.m.timers.take():
            for task_id in due:
                self._process(task_id)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"manager-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ deciding

    def _work_loop(self) -> None:
        timers = self.m.timers
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
            again = clock.now() + self.m.update_interval, "after an error"
        finally:
            self.m.timers.done(task_id, *(again or (None, "")))

    def reconcile_one(self, task_id: str) -> tuple[float, str] | None:
        """Decide for one task, store the decision, send its orders. Returns when to
        look at it again (epoch seconds) and why, or None."""
        m = self.m
        with m.lock:
            task = m.records.get(task_id)
            if task is None:
                return None
            now, nodes = utcnow(), m.cluster
            worker = task.worker
            seen = Observed(
                m.reports.copies(task_id),
                m.problems.get(task_id, ""),
                state=nodes.state(worker) if worker else "unknown",
                refusal=nodes.refusal(task, worker) if worker else "",
            )
            plan = reconcile(task, seen, now, m.timing)
            if plan.place is not None:  # placement comes after: feasibility, then score
                spot = nodes.place(m.scheduler, plan.task, plan.place.avoid)
                plan = placed(plan, spot, now, m.timing)
            if plan.task is not task:
                m.save(plan.task, note=plan.note)
            if plan.ordered:
                m.record(TaskEvent(task=plan.task, state=State.Running))
        if plan.actions:
            faults.point("manager-saved")
        changed = False
        for action in plan.actions:
            changed |= self._send(action)
        if changed:
            return clock.now(), "an order's answer"
        if plan.wake is None:
            return None
        return plan.wake.timestamp(), (plan.note or "no answer yet to its order")[:120]

    # -------------------------------------------------------------------- acting

    def _send(self, action: Action) -> bool:
        """Carry out one order; True when what it learned is worth another look now."""
        client = self.m.cluster.clients.get(action.worker)
        if client is None or not self.m.acting:  # a leader that lost its lease: not any more
            return False
        faults.point("manager-sending")  # past the check: only the worker's fence is left
        if isinstance(action, Post):
            return self._post(client, action)
        return self._stop(client, action)

    def _post(self, client: Any, action: Post) -> bool:
        task = action.task
        try:
            client.submit(TaskEvent(task=task, state=State.Running))
        except Unreachable as exc:
            log.info("cannot reach %s to send task %s (%s)", action.worker, task.id, exc.message)
            return False
        except DeposedLeader as exc:
            return self._deposed_by(action.worker, exc)
        except (BadRequest, Conflict) as exc:
            if "older than" in exc.message:
                return False  # it follows a newer order: its list will say which
            log.warning("worker %s refused task %s: %s", action.worker, task.id, exc.message)
            self.m.cluster.refused(action.worker, task, exc.message)
            return True
        except CubeError as exc:
            log.warning("worker %s failed to take task %s: %s", action.worker, task.id, exc)
            return False
        # What the worker answers is not taken in: its watch may have said more already
        # (the task started while the answer travelled), and only the watch keeps order.
        log.info("task %s (%s) sent to %s", task.id, task.name, action.worker)
        return False

    def _stop(self, client: Any, action: Stop) -> bool:
        try:
            client.stop(action.task_id, action.generation)
        except NotFound:
            self.m.reports.drop(action.worker, action.task_id)
            return True
        except DeposedLeader as exc:
            return self._deposed_by(action.worker, exc)
        except Conflict:
            return False  # already completed there, or a newer order holds
        except CubeError as exc:
            log.info("cannot stop task %s on %s: %s", action.task_id, action.worker, exc.message)
            return False
        log.info("asked %s to stop task %s", action.worker, action.task_id)
        return False

    def _deposed_by(self, worker: str, exc: DeposedLeader) -> bool:
        """A worker follows a newer leader: the order was not carried out. Said once per
        worker and epoch (every order after it meets the same refusal). When the worker
        proves it (the stamp it follows is signed with the managers' secret), this
        manager steps down; a claim it cannot check changes nothing."""
        leadership = self.m.leadership
        proven = leadership is not None and leadership.newer(exc.stamp)
        with self._deposed_lock:
            first = (worker, exc.epoch) not in self._deposed
            self._deposed.add((worker, exc.epoch))
        if first:
            log.warning(
                "worker %s follows a newer leader (epoch %s)%s",
                worker,
                exc.epoch,
                ": this manager no longer leads" if proven else ", which it cannot prove",
            )
        if proven and leadership is not None and exc.stamp is not None:
            leadership.step_down(
                f"worker {worker} follows {exc.stamp.describe()}, newer than this manager's; "
                "if no newer leader exists (etcd restored from a backup), restart that worker "
                "with --forget-leader"
            )
        return False

    def _announce(self, name: str, answer: Any) -> None:
        """Tell a worker this manager leads when it follows another epoch (it came back,
        it forgot, or this term just began), so that it refuses the orders of any older
        leader from now on, even before this one has an order for it."""
        leadership = self.m.leadership
        stamp = leadership.stamp if leadership is not None else None
        health = answer.health if isinstance(answer.health, dict) else None
        if stamp is None or health is None or health.get("Epoch") == stamp.epoch:
            return
        client = self.m.cluster.clients.get(name)
        if client is None or not self.m.acting:
            return
        try:
            client.follow()
        except DeposedLeader as exc:
            self._deposed_by(name, exc)
        except CubeError as exc:
            log.info("cannot tell %s this manager leads: %s", name, exc.message)

    # ---------------------------------------------------------------- observing

    def _reported(self, worker: str, changed: set[str], first: bool) -> None:
        """A watcher saw changes: look at those tasks (all of the worker's, the first
        time its list is known)."""
        keys = set(changed)
        if first:
            keys |= self.m.tasks_on(worker)
        self.m.timers.schedule_many(k for k in keys if k in self.m.records)
        if worker in self.m.cluster.draining:
            self._drain(worker)

    def _watcher(self, name: str, client: Any) -> Watcher:
        return Watcher(
            name,
            client,
            self.m.reports,
            self._reported,
            self.m.update_interval,
            ready=self.m.keeper.ready,
        )

    def _confirm_draining(self) -> None:
        """Watch a dropped worker, and so stop its copies, only once it is surely not a
        configured worker under another address (``localhost`` for ``127.0.0.1``):
        there, every task would look like a stray of itself. A worker that cannot be
        told apart is left alone, as it was before draining existed."""
        for name in sorted(self.m.cluster.draining - set(self.watchers)):
            asked = self._confirming.pop(name, None)
            if asked is None or not asked.done():  # asked off this thread: it may hang
                self._confirming[name] = asked or self.io.submit(self.m.cluster.distinct, name)
                continue
            distinct = asked.result()
            if distinct is None or self._stopping.is_set():
                continue  # not known yet: ask again next round
            if not distinct:
                self.m.cluster.drained(name, "it may be a configured worker under another name")
                continue
            watcher = self._watcher(name, self.m.cluster.clients[name])
            self.watchers[name] = watcher
            if self._threads:  # running as threads; step() asks it itself
                watcher.start()

    def _drain(self, worker: str) -> None:
        """A worker dropped from the configuration is watched only until its list holds
        no live copy of a task this manager knows (reconcile stops those copies)."""
        if any(k in self.m.records for k in self.m.reports.live(worker)):
            return
        self.watchers[worker].close()
        self.m.reports.forget(worker)
        self.m.cluster.drained(worker)

    def _liveness_loop(self) -> None:
        next_pruning = clock.monotonic() + PRUNE_EVERY
        pause = 0.0  # the first round at once: nothing is placed before it
        while not self._stopping.wait(pause):
            pause = self.m.update_interval
            self.liveness_round(prune=clock.monotonic() >= next_pruning)
            if clock.monotonic() >= next_pruning:
                next_pruning = clock.monotonic() + PRUNE_EVERY

    def liveness_round(self, prune: bool = False) -> None:
        """Probe every worker (and forget what is past retention, if ``prune``); a
        failure is logged, and the next round comes all the same."""
        try:
            self.probe_all()
            if prune:
                retention.prune(self.m)
        except Exception:
            log.exception("liveness round failed; carrying on")

    def probe_all(self) -> None:
        """Probe every worker at once; a worker going up or down gets its tasks (those
        placed on it, and those its list mentions), and the tasks waiting for room,
        looked at again."""
        cluster = self.m.cluster
        asked = {self.io.submit(self._ask, name): name for name in cluster.nodes}
        for future in _as_answered(list(asked)):
            name = asked[future]
            if cluster.take(name, future.result()):
                listed = self.m.reports.ids(name)  # its strays: their records name others
                # Up or down, what it holds is known again only from a list fetched now:
                # a list taken while it was still down may miss copies moved since, and
                # a first list has every task it mentions looked at again.
                self.m.reports.forget(name)
                if cluster.state(name) == "up":
                    self.io.submit(self.watchers[name].once)  # its watch may be stuck
                self.m.timers.schedule_many(self.m.tasks_on(name) | listed | self.m.waiting())
        if self.m.cluster.draining:
            self._confirm_draining()

    def _ask(self, name: str) -> Any:
        """One worker's liveness round, and this leader's announcement when it is due:
        before the worker is taken for up, so nothing of an older leader's can be
        ordered there once it is."""
        answer = self.m.cluster.ask(name)
        if not answer.error:
            self._announce(name, answer)
        return answer

    def _health_loop(self) -> None:
        while not self._stopping.wait(self.m.health_interval):
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
        m = self.m
        with m.lock:
            running = (m.records.get(k) for k in m.records.ids(State.Running))
            due = [
                t
                for t in running
                if t is not None
                and t.desired is State.Running
                and t.health_check
                and t.host_port() is not None
                and t.restart_at is None
            ]
        verdicts = {str(t.id): self.io.submit(self._probe, t) for t in due}
        for task_id, future in verdicts.items():
            problem = future.result()
            with m.lock:
                if m.problems.get(task_id, "") != problem:
                    m.problems[task_id] = problem
                    if problem:
                        log.warning("task %s is unhealthy: %s", task_id, problem)
                    m.timers.schedule(task_id, why="health")

    def _probe(self, task: Task) -> str:
        node = self.m.cluster.nodes.get(task.worker)
        if node is None:
            return ""
        host = node.api.split("://")[-1].rsplit(":", 1)[0]
        return self.m.network.probe_task(
            host, task.host_port() or 0, task.health_check, self.m.http_timeout
        )
