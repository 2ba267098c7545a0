"""The threads of the manager's control loop and of the worker's loop, as events of the world.

In production these are threads, not :mod:`cube.loops` steps (which
:mod:`cube.replay.loops` runs). Here the world's queue drives them instead:

- each periodic round (a manager's liveness, health and prune rounds and its watch of
  each worker; a worker's inspection pass) is an event that queues the next one, for as
  long as the life of the component that started it lasts, skipped while it is paused;
- a work queue is done as soon as something in it is due, as the real loop wakes on it:
  after every event, :meth:`Rounds.settle` runs each component that has work due, then
  queues an event for the next due time.

Each round runs as its component's code (:meth:`SimCluster.run_as`), so a crash point it
reaches kills that component.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cube.manager.observe import WATCH_WAIT
from cube.manager.reconcile import given_up

if TYPE_CHECKING:
    from cube.replay.cluster import SimCluster


class Rounds:
    """The periodic rounds and the work queues of ``cluster``'s components."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self._wake_at: float | None = None  # the "due" event queued last

    # ------------------------------------------------------------ periodic rounds

    def start(self, name: str, life: int) -> None:
        """Start the rounds of ``name``'s life ``life`` (they end with it)."""
        c, s = self.cluster, self.cluster.settings
        if name in c.managers:
            self._loop(name, life, "liveness", s.update_interval, lambda: self._liveness(name))
            self._loop(name, life, "health", s.health_interval, lambda: self._health(name))
            self._loop(name, life, "prune", s.prune_every, lambda: self._prune_manager(name))
            self._loop(name, life, "given up?", 1.0, lambda: self._watch_invariants(name))
            for worker in c.names:
                self._loop(name, life, f"watch {worker}", 0.0, self._watcher(name, worker))
        else:
            self._loop(name, life, "inspect", s.inspect_every, lambda: self._inspect(name))

    def _loop(
        self, name: str, life: int, what: str, period: float, body: Callable[[], None]
    ) -> None:
        """Run ``body`` about every ``period`` seconds while this life of ``name`` lasts
        (paused: skipped, as a frozen process does nothing)."""
        c = self.cluster

        def tick() -> None:
            if c.life(name) != life:
                return  # that life ended
            if name not in c.paused:
                c.run_as(name, body)
            if c.life(name) == life:
                c.world.after(self._gap(period), what, tick)

        c.world.after(c.world.rng.uniform(0.0, max(period, 0.3)), what, tick)

    def _gap(self, period: float) -> float:
        """The wait before a loop's next round: its period, jittered; a watch (period 0)
        looks again after a random short while."""
        world = self.cluster.world
        if period:
            return world.jitter(period)
        return world.rng.uniform(*self.cluster.settings.watch_every)

    def _control(self, name: str) -> Any:
        """The control loops of manager ``name``, if it runs them now."""
        manager = self.cluster.managers[name]
        return manager.control if manager is not None else None

    def _liveness(self, name: str) -> None:
        if (control := self._control(name)) is not None:
            control.liveness_round()

    def _health(self, name: str) -> None:
        if (control := self._control(name)) is not None:
            control.health_round()

    def _prune_manager(self, name: str) -> None:
        if (control := self._control(name)) is not None:
            control.liveness_round(prune=True)

    def _watcher(self, name: str, worker: str) -> Callable[[], None]:
        """Manager ``name``'s watch of ``worker``: a blocking query answers once the
        worker's index moved past the one asked (or after ``WATCH_WAIT``), so it is
        asked only then; a first list, or a failed one, is asked for at once."""
        asked_at = [0.0]

        def watch() -> None:
            control = self._control(name)
            if control is None:
                return
            watcher = control.watchers[self.cluster.address(worker)]
            held = self.cluster.workers.get(worker)
            moved = held is None or held.index != watcher.index
            now = self.cluster.world.now
            if watcher.index and not moved and now - asked_at[0] < WATCH_WAIT:
                return  # the query still waits
            asked_at[0] = now
            watcher.look(WATCH_WAIT)

        return watch

    def _inspect(self, name: str) -> None:
        worker = self.cluster.workers[name]
        if worker is not None:
            worker.inspect_round()

    def _watch_invariants(self, name: str) -> None:
        """Note every task manager ``name`` has given up on (the checks read them)."""
        manager = self.cluster.managers[name]
        if manager is None or manager.control is None:
            return
        policy = self.cluster.settings.restart
        for task in manager.tasks.records.all():
            if given_up(task, policy):
                self.cluster.given_up.add(str(task.id))

    # ---------------------------------------------------------------- work queues

    def settle(self) -> None:
        """Every acting component does what is due now (in an order the seed picks),
        then the world is told when the next due time is."""
        c = self.cluster
        dues = self._dues()
        order = [name for name, due in dues.items() if due <= c.world.now]
        if len(order) > 1:
            c.world.rng.shuffle(order)
        for name in order:
            if c.acting(name):
                c.run_as(name, lambda n=name: self._work(n))
        self._arm_wake(self._dues() if order else dues)

    def _dues(self) -> dict[str, float]:
        """The next due time of each acting component that has one (managers first),
        as its loop would wake for it."""
        c, dues = self.cluster, {}
        for name in (*c.manager_names, *c.names):
            if not c.acting(name):
                continue
            if name in c.managers:
                control = self._control(name)
                queue = control.tasks.timers if control is not None else None
            else:
                queue = c.workers[name].timers
            due = queue.next_due() if queue is not None else None
            if due is not None:
                dues[name] = due
        return dues

    def _work(self, name: str) -> None:
        if name in self.cluster.managers:
            if (control := self._control(name)) is not None:
                control.drain()
        else:
            worker = self.cluster.workers[name]
            if worker is not None:
                worker.work_due()

    def _arm_wake(self, dues: dict[str, float]) -> None:
        world = self.cluster.world
        due = min(dues.values(), default=None)
        if due is None:
            return
        due = max(due, world.now)
        if self._wake_at is None or due < self._wake_at or self._wake_at < world.now:
            self._wake_at = due
            world.at(due - world.now + world.elapsed, "due", lambda: None)
