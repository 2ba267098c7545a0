"""The reconcile function on generated histories of faults.

A small world of three workers is simulated with the worker's own order rules
(:mod:`cube.worker.orders`): what the manager's plans ask is delivered to the workers
that are up, workers start, crash, stop, go down and come back, health checks fail,
time passes, a user asks for a stop. After every decision:

- every state change the plan makes passes the transition table;
- never two live copies: once the plan's orders are delivered, at most one worker that
  answers holds a copy that is live and wanted Running;
- a plan never sends a run order for an older generation than a worker holds.

Then the faults stop, every worker answers, and the task must settle: Running on exactly
one worker (or given up, or Completed when asked to stop), with nothing left to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cube.manager.reconcile import (
    Observed,
    Plan,
    Post,
    Spot,
    Stop,
    Timing,
    given_up,
    placed,
    reconcile,
)
from cube.task import LIVE, RestartPolicy, State, Task, TaskEvent, can_transition, new_attempt
from cube.worker import orders

WORKERS = ("a", "b", "c")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = Timing(restart=RestartPolicy(limit=3, base=1.0, cap=8.0), retry=1.0, capacity=5.0)


@dataclass
class World:
    """The workers as they really are, and the manager's record of one task."""

    task: Task
    up: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(WORKERS, True))
    held: dict[str, Task] = field(default_factory=dict)  # worker -> its record
    refuses: set[str] = field(default_factory=set)
    problem: str = ""
    now: datetime = T0
    lose_next: bool = False  # the next plan's orders are lost on the way

    # -- what the manager knows of the workers, and placement (asked after reconcile)
    def state(self, worker: str) -> str:
        return "up" if self.up.get(worker) else "down"

    def place(self, task: Task, avoid: str = "") -> Spot:
        for worker in WORKERS:
            if self.up[worker] and worker != avoid and worker not in self.refuses:
                return Spot(worker)
        return Spot(None, "no worker can take it: all down", possible=True)

    def refusal(self, task: Task, worker: str) -> str:
        return "cannot run it" if worker in self.refuses else ""

    # -- the manager's pass, delivered
    def seen(self) -> Observed:
        worker = self.task.worker
        return Observed(
            {w: self.held.get(w) for w in WORKERS if self.up[w]},
            self.problem,
            state=self.state(worker) if worker else "unknown",
            refusal=self.refusal(self.task, worker) if worker else "",
        )

    def decide(self) -> Plan:
        before = self.task
        plan = reconcile(before, self.seen(), self.now, TIMING)
        if plan.place is not None:  # placement after reconcile, as the manager does it
            plan = placed(plan, self.place(plan.task, plan.place.avoid), self.now, TIMING)
        after = plan.task
        if after.state is not before.state:
            assert can_transition(before.state, after.state), (before.state, after.state)
        self.task = after
        for action in () if self.lose_next else plan.actions:
            self.deliver(action)
        self.lose_next = False
        self.check_one_live_copy()
        return plan

    def deliver(self, action: Post | Stop) -> None:
        if not self.up[action.worker]:
            return
        stored = self.held.get(action.worker)
        if isinstance(action, Post):
            if action.worker in self.refuses:
                return
            if stored is not None:
                assert orders.attempt(action.task) >= orders.attempt(stored) or (
                    stored.generation > action.task.generation
                ), "a plan sent an order older than the worker holds"
            event = TaskEvent(task=action.task, state=State.Running)
        else:
            if stored is None:
                return
            event = TaskEvent(
                task=stored.replace(generation=action.generation), state=State.Completed
            )
        try:
            record = orders.accept(stored, event)
        except (ValueError, KeyError):
            return  # refused (stale, final): the worker's answer; nothing changes
        if record is not None:
            self.held[action.worker] = record

    def check_one_live_copy(self) -> None:
        wanted = [
            w
            for w, copy in self.held.items()
            if self.up[w] and copy.state in LIVE and copy.desired is State.Running
        ]
        assert len(wanted) <= 1, f"live copies on {wanted}: {self.held}"

    # -- the workers, by themselves
    def progress(self, worker: str, fail: bool = False) -> None:
        record = self.held.get(worker)
        if record is None or not self.up[worker]:
            return
        step = orders.next_step(record)
        if step == "start":
            self.held[worker] = (
                orders.failed(record, "it crashed at once")
                if fail
                else orders.started(record, f"{worker}-{record.generation}", {})
            )
        elif step == "stop":
            self.held[worker] = orders.stopped(record)

    def crash(self, worker: str) -> None:
        record = self.held.get(worker)
        if record is not None and record.state is State.Running and self.up[worker]:
            self.held[worker] = orders.failed(record, "process exited with code 1")


OPS = st.one_of(
    st.tuples(st.just("decide")),
    st.tuples(st.just("progress"), st.sampled_from(WORKERS), st.booleans()),
    st.tuples(st.just("crash"), st.sampled_from(WORKERS)),
    st.tuples(st.just("down"), st.sampled_from(WORKERS)),
    st.tuples(st.just("up"), st.sampled_from(WORKERS)),
    st.tuples(st.just("refuse"), st.sampled_from(WORKERS)),
    st.tuples(st.just("health"), st.booleans()),
    st.tuples(st.just("wait"), st.floats(0, 20)),
    st.tuples(st.just("stop")),
    st.tuples(st.just("lose")),
)


def run(world: World, history: list[tuple]) -> None:
    for op, *args in history:
        if op == "decide":
            world.decide()
        elif op == "progress":
            world.progress(*args)
        elif op == "crash":
            world.crash(*args)
        elif op in ("down", "up"):
            world.up[args[0]] = op == "up"
        elif op == "lose":
            world.lose_next = True
        elif op == "refuse":
            world.refuses.add(args[0])
        elif op == "health":
            running = world.task.state is State.Running
            world.problem = "GET /health answered 500" if args[0] and running else ""
        elif op == "wait":
            world.now += timedelta(seconds=args[0])
        elif op == "stop" and world.task.state is not State.Completed:
            world.task = world.task.replace(
                desired=State.Completed, generation=world.task.generation + 1
            )


def settle(world: World, rounds: int = 60) -> None:
    """No more faults: every worker answers, refusals are forgotten, time moves on."""
    world.up = dict.fromkeys(WORKERS, True)
    world.refuses.clear()
    world.problem = ""
    world.lose_next = False
    for _ in range(rounds):
        plan = world.decide()
        for worker in WORKERS:
            world.progress(worker)
        world.now = max(world.now + timedelta(seconds=1), plan.wake or world.now)


def assert_settled(world: World) -> None:
    task = world.task
    again = reconcile(task, world.seen(), world.now, TIMING)
    assert again.actions == () and again.task == task and again.place is None, "not at rest"
    live = {w for w, c in world.held.items() if c.state in LIVE and c.desired is State.Running}
    if task.desired is State.Completed:
        assert task.state is State.Completed
        assert not live
    elif given_up(task, TIMING.restart):
        assert not live
    else:
        assert task.state is State.Running, task
        assert live == {task.worker}
        assert world.held[task.worker].state is State.Running


def fresh_task() -> Task:
    return Task("t", "cube/echo", generation=1, created=T0)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_any_history_keeps_one_copy_and_settles(history):
    world = World(fresh_task())
    run(world, history)
    settle(world)
    assert_settled(world)


@settings(max_examples=100, deadline=None)
@given(st.lists(OPS, max_size=25), st.lists(OPS, max_size=25))
def test_a_manager_restarted_mid_history_decides_the_same(first, second):
    """A restarted manager has only what was stored (the record, with RestartAt) and what
    workers report: replaying from there keeps every invariant and settles too."""
    world = World(fresh_task())
    run(world, first)
    world.task = world.task.replace()  # all it keeps is the stored record
    run(world, second)
    settle(world)
    assert_settled(world)


# ----------------------------------------------------------------------- worked cases


def test_a_restart_waits_out_its_backoff_and_the_due_time_is_in_the_record():
    world = World(fresh_task())
    world.decide()
    world.progress("a")
    world.decide()
    world.crash("a")
    plan = world.decide()
    assert world.task.state is State.Failed
    assert world.task.restart_at == T0 + timedelta(seconds=1) == plan.wake
    assert "restart 1 in 1 s" in world.task.reason
    assert world.decide().actions == ()  # not yet
    world.now += timedelta(seconds=1)
    plan = world.decide()
    assert plan.ordered and world.task.restart_count == 1 and world.task.generation == 2
    assert plan.actions == (Post("a", plan.actions[0].task),)


def test_a_stop_of_a_given_up_task_finishes():
    given = fresh_task().replace(
        state=State.Failed, worker="a", restart_count=3, reason="gave up after 3 restarts"
    )
    world = World(given, held={"a": orders.failed(new_attempt(given), "crashed")})
    assert world.decide().actions == ()
    world.task = world.task.replace(desired=State.Completed, generation=2)
    plan = world.decide()
    assert world.task.state is State.Completed
    assert plan.actions == (Stop("a", str(given.id), 2),)  # clears its remains


def test_a_refused_task_goes_elsewhere_without_a_restart():
    world = World(fresh_task())
    world.refuses.add("a")
    world.task = world.task.replace(state=State.Scheduled, worker="a")
    plan = world.decide()
    assert world.task.worker == "b" and world.task.restart_count == 0
    assert [type(a) for a in plan.actions] == [Post]


def test_an_image_no_worker_can_run_fails_at_once():
    class Nowhere(World):
        def place(self, task: Task, avoid: str = "") -> Spot:
            return Spot(None, "no worker can take it: 3 nodes: no Docker", possible=False)

    world = Nowhere(fresh_task())
    plan = world.decide()
    assert world.task.state is State.Failed and world.task.restart_count == 0
    assert world.task.reason == "no worker can take it: 3 nodes: no Docker"
    assert plan.wake is not None  # it looks again now and then, in case an image arrives


def test_reasons_built_from_a_long_worker_reason_stay_within_the_limit():
    world = World(fresh_task().replace(restart_count=3))
    world.decide()
    world.progress("a")
    world.decide()
    world.held["a"] = orders.failed(world.held["a"], "x" * 4095)
    world.decide()
    assert world.task.reason.startswith("gave up after 3 restarts")
    Task.from_wire(world.task.to_wire())  # readable back: within the limit, marked as cut
    assert world.task.reason.endswith("[...cut]")


def test_a_stray_is_stopped_on_any_worker_whose_list_is_known_whatever_its_liveness():
    """A worker back from a crash with its old copy can be listed before the probe that
    marks it up, and a worker dropped from the configuration is listed while it drains:
    its list is the proof it answers, so the stray is stopped there and then (reconcile
    is told only the liveness of the task's own worker: a stray's cannot hold it back)."""
    moved = fresh_task().replace(state=State.Running, worker="a", generation=2)
    old = orders.started(new_attempt(moved.replace(generation=1)), "old", {})
    running = orders.started(new_attempt(moved), "new", {})
    for stray_on in ("b", "c"):
        seen = Observed({"a": running, stray_on: old}, state="up")
        plan = reconcile(moved, seen, T0, TIMING)
        # at the stray's own order (1), so that, arriving late, it cannot stop a newer one
        assert plan.actions == (Stop(stray_on, str(moved.id), 1),)
        stopping = moved.replace(desired=State.Completed, generation=3)
        plan = reconcile(stopping, seen, T0, TIMING)
        assert Stop(stray_on, str(moved.id), 1) in plan.actions


def test_a_plan_that_sends_orders_looks_again_in_case_one_is_lost():
    """Found by the simulator (seeds 2 and 25): the one stop of a stray copy was lost on
    the network, nothing else changed, and the copy ran for good."""
    moved = fresh_task().replace(state=State.Running, worker="a", generation=2)
    old = orders.started(new_attempt(moved.replace(generation=1)), "old", {})
    running = orders.started(new_attempt(moved), "new", {})
    plan = reconcile(moved, Observed({"a": running, "b": old}, state="up"), T0, TIMING)
    assert plan.actions and plan.wake is not None
    assert plan.wake <= T0 + timedelta(seconds=TIMING.retry)
