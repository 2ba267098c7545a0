"""Chapter 2: the state machine, written by the learner and lived by a real worker.

First the table is read against the life of a task: each move a real task makes must
be allowed (with the story of why), and the moves that would break Cube's promises
must not be (nothing leaves Completed, nothing returns to Pending). Then the learner's
table replaces Cube's own for the length of the check (``cube.task.TRANSITIONS`` is the
one table every state change reads), and a real worker, in this kernel, runs real
processes through five stories: run and stop, cancel before starting, a crash (the
nemesis kills the process), a restart after the crash, and two requests that must be
refused. The picture shows what the worker did with each task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cube import task as task_module
from cube.lab.checks.core import Check, quiet_logs
from cube.lab.live import notebook_worker
from cube.lab.verdict import Verdict
from cube.lab.watch import Watch, of_worker
from cube.task import State, Task, TaskEvent, TransitionError, ValidationError

LANE = "worker (in this kernel)"
HINTS = (
    (
        "for each state, ask: what can happen to a task in it? (placed, started, stopped, "
        "cancelled, crashed, restarted)"
    ),
    (
        "a task can be cancelled or fail from any state before the end, a crashed one can be "
        "restarted; nothing leaves Completed and nothing goes back to Pending"
    ),
    (
        "walk through a task's life: it is placed, started, stopped; it may be cancelled "
        "before it starts, crash, be restarted; and once Completed, it is over"
    ),
)
NEEDED: dict[tuple[State, State], str] = {
    (State.Pending, State.Scheduled): "the manager picks a worker for a new task",
    (State.Scheduled, State.Running): "the worker starts it",
    (State.Running, State.Completed): "someone stops a running task",
    (State.Running, State.Failed): "a running task crashes",
    (State.Scheduled, State.Failed): "a task cannot be started (an unknown image)",
    (State.Pending, State.Failed): "no worker could ever run it (its image exists nowhere)",
    (State.Failed, State.Scheduled): "a crashed task is restarted",
    (State.Running, State.Scheduled): "a sick but running task is restarted",
    (State.Pending, State.Completed): "a task is cancelled before it is placed",
    (State.Scheduled, State.Completed): "a task is cancelled before it starts",
    (State.Failed, State.Completed): "someone gives up on a failed task",
    (State.Scheduled, State.Scheduled): "the same request arrives twice",
    (State.Running, State.Running): "a fresh look finds a task still running",
}


def check_transitions(transitions: Callable[[], Mapping[State, Any]]) -> Verdict:
    """Read the table ``transitions()`` returns, then let a real worker live by it."""
    check = Check("02 · the state machine", HINTS, "the worker's tasks, living by your table")
    with check:
        table = _read(check, check.call(transitions, "transitions()"))
        for (src, dst), why in NEEDED.items():
            if dst not in table[src]:
                check.fail(f"{src.name} → {dst.name} is missing, yet it happens: {why}")
        if table[State.Completed]:
            moves = ", ".join(s.name for s in sorted(table[State.Completed]))
            check.fail(
                f"Completed may go to {moves}: a finished task could come back to life",
                "Completed is the end of the road: give it an empty set",
            )
        for src in State:
            if State.Pending in table[src]:
                check.fail(f"{src.name} → Pending is allowed, but nothing goes back to Pending")
        with _installed(table), quiet_logs() as logs:
            _live(check)
        if check.problems:
            for record in [r for r in logs if "Failed:" not in r.getMessage()][:3]:
                check.note(f"the worker logged: {record.getMessage()}")
    return check.verdict("a real worker lived by your table through every story")


def _read(check: Check, answer: Any) -> dict[State, frozenset[State]]:
    """The answer as {state: frozenset of states}, every state present."""
    check.require(
        isinstance(answer, Mapping),
        f"transitions() returned {type(answer).__name__}, not a dict",
        "return a dict such as {State.Pending: {State.Scheduled, ...}, ...}",
    )
    table: dict[State, frozenset[State]] = {}
    for state in State:
        if state not in answer:
            check.fail(
                f"the table has no entry for {state.name} (give it an empty set if "
                "nothing may follow)"
            )
        try:
            table[state] = frozenset(State(s) for s in answer.get(state, ()))
        except (TypeError, ValueError) as exc:
            check.stop(f"the entry for {state.name} is not a set of states: {exc}")
    return table


@contextmanager
def _installed(table: dict[State, frozenset[State]]) -> Iterator[None]:
    """Cube's one transition table replaced by ``table`` for the ``with`` block."""
    saved = dict(task_module.TRANSITIONS)
    task_module.TRANSITIONS.clear()
    task_module.TRANSITIONS.update(table)
    try:
        yield
    finally:
        task_module.TRANSITIONS.clear()
        task_module.TRANSITIONS.update(saved)


def _live(check: Check) -> None:
    """Five stories on a worker whose crank the check turns (``step()``)."""
    with notebook_worker("nb02-check", loop=False) as worker:
        mine = Watch(of_worker(worker, LANE), check.timeline)
        worker = _Cranked(worker, mine)
        with mine:
            web = _story(check, "run, then stop", lambda: _run_and_stop(worker))
            _story(check, "cancel before it starts", lambda: _cancel(worker))
            crashed = _story(check, "a crash", lambda: _crash(check, worker))
            if crashed is not None:
                _story(check, "restart after the crash", lambda: _restart(worker, crashed))
            if web is not None:
                _refusals(check, worker, web)


class _Cranked:
    """The worker, sampled for the picture after each turn of its crank (a turn takes
    milliseconds, faster than the watch samples), with a pause so each state shows."""

    def __init__(self, worker: Any, watch: Watch) -> None:
        self._worker, self._watch = worker, watch

    def step(self) -> None:
        self._watch.now()
        self._worker.step()
        self._watch.now()
        time.sleep(0.05)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._worker, name)


def _story(check: Check, name: str, run: Callable[[], Task]) -> Task | None:
    """Run one story; a refusal by your table becomes a problem naming the story."""
    try:
        return run()
    except TransitionError as exc:
        check.fail(f"story «{name}»: the worker refused a step: {exc}")
    except AssertionError as exc:
        check.fail(f"story «{name}»: {exc}")
    return None


def _expect(worker: Any, task: Task, state: State) -> Task:
    now = worker.get_task(str(task.id))
    if now.state is not state:
        reason = f" ({now.reason})" if now.reason else ""
        raise AssertionError(f"{task.name} ended {now.state.name}{reason}, not {state.name}")
    return now


def _run_and_stop(worker: Any) -> Task:
    web = worker.submit(TaskEvent(Task(name="web", image="cube/echo")))
    worker.step()
    _expect(worker, web, State.Running)
    worker.stop_task(str(web.id))
    worker.step()
    return _expect(worker, web, State.Completed)


def _cancel(worker: Any) -> Task:
    later = worker.submit(TaskEvent(Task(name="later", image="cube/echo")))
    worker.stop_task(str(later.id))  # before any step: it never started
    worker.step()
    return _expect(worker, later, State.Completed)


def _crash(check: Check, worker: Any) -> Task:
    crashy = worker.submit(TaskEvent(Task(name="crashy", image="cube/echo")))
    worker.step()
    running = _expect(worker, crashy, State.Running)
    check.timeline.fault("crash", lane=LANE, row="crashy", instant=True)
    worker.runtime.kill(running.container_id)
    worker.step()  # the worker inspects its tasks and finds it dead
    return _expect(worker, crashy, State.Failed)


def _restart(worker: Any, crashed: Task) -> Task:
    again = crashed.replace(restart_count=crashed.restart_count + 1)
    worker.submit(TaskEvent(again, State.Running))
    worker.step()
    return _expect(worker, crashed, State.Running)


def _refusals(check: Check, worker: Any, done: Task) -> None:
    """A Completed task must neither start again nor be stopped again."""
    for what, event in [
        ("run a Completed task again", TaskEvent(done.replace(state=State.Scheduled))),
        ("stop a Completed task again", TaskEvent(done, State.Completed)),
    ]:
        try:
            worker.submit(event)
            worker.step()
        except (TransitionError, ValidationError):  # refused, as it must be
            continue
        now = worker.get_task(str(done.id))
        check.fail(
            f"asked to {what}, the worker went along (it is now {now.state.name}): "
            "your table lets a finished task move"
        )
