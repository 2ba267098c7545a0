"""Chapter 4: the worker's step, written by the learner: what to do about one task.

A worker keeps, for each task, what is *wanted* of it (``desired``: Running, or
Completed once a stop was ordered) and what *is* (``state``). Its loop takes each task
whose turn has come and asks one question, ``next_step(task)``: "start", "stop" or
"none". The learner writes that question's answer. The checker first asks it about
every pair of wanted and current state, then puts it inside a real worker in this
kernel (``cube.worker.orders.next_step`` is where the worker asks) and runs real tasks
through it: a start, a stop, an order that arrives twice, and a crash caused by the
nemesis, after which the task must stay Failed (restarting is the manager's call, with
its backoff, not the worker's), and can still be stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cube.lab.checks.core import Check, quiet_logs, wait_until
from cube.lab.live import notebook_worker
from cube.lab.verdict import Verdict
from cube.lab.watch import Watch, of_worker
from cube.task import State, Task, TaskEvent
from cube.worker import orders

NextStep = Callable[[Task], str]
LANE = "worker (in this kernel)"
HINTS = (
    "compare what is wanted of the task (task.desired) with what it is (task.state)",
    (
        "only two cases call for action: wanted Running but not started yet, and wanted "
        "Completed but not Completed yet; a crash is the manager's to handle"
    ),
    (
        "compare task.desired with task.state: wanted Running and only Scheduled: start it; "
        "wanted Completed and not Completed yet: stop it; anything else: nothing to do (a "
        "Failed task wanted Running waits for the manager's restart order)"
    ),
)
EXPECTED = {
    (State.Running, State.Scheduled): "start",
    (State.Running, State.Running): "none",
    (State.Running, State.Failed): "none",
    (State.Running, State.Completed): "none",
    (State.Completed, State.Scheduled): "stop",
    (State.Completed, State.Running): "stop",
    (State.Completed, State.Failed): "stop",
    (State.Completed, State.Completed): "none",
}
WHY = {
    (State.Running, State.Failed): "the worker would restart a crashed task on its own, "
    "behind the manager's back and without its backoff",
    (State.Running, State.Running): "a running task would be started a second time",
    (State.Completed, State.Completed): "a finished task would be stopped again and again",
    (State.Completed, State.Failed): "a failed task someone stopped would never be "
    "recorded Completed, so the manager would wait for that forever",
}


def check_next_step(next_step: NextStep) -> Verdict:
    """Every (desired, state) pair, then a worker that lives by the answers."""
    check = Check("04 · the worker's step", HINTS, "the worker's tasks, living by your next_step")
    answers: dict[tuple[State, State], Any] = {}
    with check:
        for (desired, state), want in EXPECTED.items():
            task = Task(name="t", image="cube/echo", state=state, desired=desired)
            got = answers[(desired, state)] = check.call(next_step, "next_step(task)", task)
            if got != want:
                why = WHY.get((desired, state), "")
                check.fail(
                    f"wanted {desired.name}, now {state.name}: you said {got!r}, "
                    f"not {want!r}" + (f": {why}" if why else "")
                )
        with _installed(next_step), quiet_logs():
            _live(check)
    wrong = any(answers.get(pair, want) != want for pair, want in EXPECTED.items())
    # a wrong answer may never be asked in the live run (a worker consults next_step
    # only when an order or a restart wakes a task), so its picture can look right:
    # then the picture is the table of answers, the wrong ones in red
    figure = _answers_figure(answers) if wrong and len(answers) == len(EXPECTED) else None
    return check.verdict(
        "a real worker did the right thing with every order, and the crash", figure=figure
    )


def _answers_figure(answers: dict[tuple[State, State], Any]) -> Any:
    """Your next_step for each wanted state (rows) and current state (columns)."""
    from matplotlib.figure import Figure

    states = [State.Scheduled, State.Running, State.Failed, State.Completed]
    wanted = [State.Running, State.Completed]
    figure = Figure(figsize=(8, 2.4), layout="constrained")
    ax = figure.add_subplot()
    for row, desired in enumerate(wanted):
        for col, state in enumerate(states):
            got, want = answers[(desired, state)], EXPECTED[(desired, state)]
            ok = got == want
            ax.add_patch(_cell(col, row, "#dcfce7" if ok else "#fecaca"))
            text = f"{got}" if ok else f"you: {got!r}\nright: {want!r}"
            weight = "normal" if ok else "bold"
            ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", fontweight=weight)
    ax.set(xlim=(0, 4), ylim=(2, 0))
    ax.set_xticks([c + 0.5 for c in range(4)], [f"now {s.name}" for s in states])
    ax.set_yticks([0.5, 1.5], [f"wanted {d.name}" for d in wanted])
    ax.tick_params(length=0)
    ax.set_title("your next_step(task): the wrong answers in red", fontsize=10, loc="left")
    return figure


def _cell(col: int, row: int, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((col, row), 1, 1, facecolor=colour, edgecolor="white", linewidth=2)


@contextmanager
def _installed(next_step: NextStep) -> Iterator[None]:
    """The worker asks ``next_step`` instead of Cube's own for the ``with`` block."""
    saved = orders.next_step
    orders.next_step = next_step
    try:
        yield
    finally:
        orders.next_step = saved


def _live(check: Check) -> None:
    with notebook_worker("nb04-check") as worker, Watch(of_worker(worker, LANE), check.timeline):
        web = _run(check, worker, "web")
        if web is not None:
            again = worker.submit(TaskEvent(web.replace(state=State.Scheduled)))
            time.sleep(0.3)
            copies = [m for m in worker.runtime.list_managed() if m.task_id == str(web.id)]
            if len(copies) != 1 or again.container_id != web.container_id:
                check.fail(f"the same order arriving twice left {len(copies)} processes of web")
            _stop(check, worker, web, "a running task")
        crashy = _run(check, worker, "crashy")
        if crashy is not None:
            _crash(check, worker, crashy)
            _stop(check, worker, crashy, "a failed task")


def _crash(check: Check, worker: Any, crashy: Task) -> None:
    """The nemesis kills crashy's process: it must stay Failed, with no new process.
    A restart by the worker takes milliseconds, too quick for the picture's samples,
    so it is marked on the picture, where the mistake can be seen."""
    check.say("crashing crashy, and watching that the worker leaves it Failed")
    check.timeline.fault("crash", lane=LANE, row="crashy", instant=True)
    worker.runtime.kill(crashy.container_id)

    def restarted() -> bool:
        return worker.get_task(str(crashy.id)).container_id not in ("", crashy.container_id)

    outcome = wait_until(lambda: restarted() or _state(worker, crashy) is State.Failed, timeout=3)
    check.require(outcome is not None, "the crashed task was never marked Failed")
    time.sleep(0.5)  # long enough for a wrong step to act, and for the picture to show it
    now = worker.get_task(str(crashy.id))
    if restarted() or now.state is not State.Failed:
        check.timeline.fault(
            "restarted by the worker itself", lane=LANE, row="crashy", instant=True
        )
        check.fail(
            f"after the crash the worker started crashy again by itself (it is "
            f"{now.state.name}, in a new process): restarts are the manager's call, "
            "with its backoff"
        )


def _state(worker: Any, task: Task) -> State:
    return worker.get_task(str(task.id)).state


def _run(check: Check, worker: Any, name: str) -> Task | None:
    task = worker.submit(TaskEvent(Task(name=name, image="cube/echo")))
    running = wait_until(lambda: _state(worker, task) is State.Running, timeout=3)
    if running is None:
        now = worker.get_task(str(task.id))
        check.fail(f"a new task, {name}, was never started (it is {now.state.name})")
        return None
    return worker.get_task(str(task.id))


def _stop(check: Check, worker: Any, task: Task, what: str) -> None:
    worker.stop_task(str(task.id))
    if wait_until(lambda: _state(worker, task) is State.Completed, timeout=3) is None:
        now = worker.get_task(str(task.id))
        check.fail(f"asked to stop {what} ({task.name}), the worker left it {now.state.name}")
