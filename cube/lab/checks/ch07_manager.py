"""Chapter 7: round-robin, the manager's simplest way to choose, written by the learner.

The learner writes ``pick(scores, candidates)`` of a round-robin scheduler: the next
candidate after the node picked last, wrapping around. The checker first plays it on
paper (three nodes; then one down; then the one picked last goes down and comes back)
and compares the turns it takes with round-robin's. Then it puts the scheduler inside a
real manager, in this kernel, that drives the cluster's three worker processes: three
tasks go one to each worker; the nemesis pauses a worker until the manager declares it
down; its task must move, and two new tasks must go to the workers that are up, taking
turns. The picture shows each task on its worker, and the pause.
"""

from __future__ import annotations

from typing import Any

from cube.cluster import LocalCluster
from cube.lab.checks.core import Check, quiet_logs, wait_until
from cube.lab.live import notebook_manager
from cube.lab.nemesis import Nemesis
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_manager
from cube.node import NodeTable
from cube.scheduler import place
from cube.task import State, Task, TaskEvent

HINTS = (
    (
        "round-robin remembers the node it picked last, by its index, not by its position "
        "among today's candidates"
    ),
    "the turn goes to the first candidate after the last pick, wrapping around to the first",
    (
        "candidates are node indices in increasing order; the turn goes to the first one "
        "greater than self.last, or, when there is none, back to the first candidate; set "
        "self.last to your pick before returning it"
    ),
)
NAMES = ["a", "b", "c"]


def check_take_turns(scheduler_class: type, cluster: LocalCluster) -> Verdict:
    """Play ``scheduler_class()`` on paper, then inside a manager, under a pause."""
    check = Check("07 · take turns", HINTS, "the tasks of a manager using your scheduler")
    with check:
        _on_paper(check, scheduler_class)
        check.ready(cluster)
        check.say("starting a manager with your scheduler")
        with quiet_logs() as logs:
            _live(check, scheduler_class(), cluster)
        if check.problems:
            for record in logs[:2]:
                check.note(f"the manager logged: {record.getMessage()}")
    return check.verdict("your scheduler takes turns, and never hands work to a node that is down")


def _table(up: list[bool]) -> NodeTable:
    return NodeTable.build(NAMES, cores=4, memory=16 << 30, disk=100 << 30, up=up)


def _turns(check: Check, scheduler: Any, nodes: NodeTable, count: int) -> list[str]:
    task = Task(name="t", image="cube/echo")
    picks = []
    for _ in range(count):
        placement = check.call(place, "your scheduler", scheduler, task, nodes)
        picks.append(nodes.names[placement.index] if placement.index is not None else "-")
    return picks


def _on_paper(check: Check, scheduler_class: type) -> None:
    scheduler = check.call(scheduler_class, f"{scheduler_class.__name__}()")
    _expect(
        check,
        "three nodes, all up",
        _turns(check, scheduler, _table([True] * 3), 6),
        ["a", "b", "c", "a", "b", "c"],
    )
    scheduler = scheduler_class()
    _expect(
        check,
        "with b down",
        _turns(check, scheduler, _table([True, False, True]), 4),
        ["a", "c", "a", "c"],
    )
    scheduler = scheduler_class()
    first = _turns(check, scheduler, _table([True] * 3), 3)
    nodes = _table([True, True, False])
    after = _turns(check, scheduler, nodes, 2)
    nodes.up[2] = True
    back = _turns(check, scheduler, nodes, 2)
    _expect(
        check,
        "c (picked last) goes down after a, b, c, and comes back after two more",
        first + after + back,
        ["a", "b", "c", "a", "b", "c", "a"],
    )


def _expect(check: Check, what: str, got: list[str], want: list[str]) -> None:
    if got != want:
        check.fail(f"{what}: your turns were {', '.join(got)}; round-robin's are {', '.join(want)}")


def _live(check: Check, scheduler: Any, cluster: LocalCluster) -> None:
    view, ids = ClusterView(cluster), []
    mine = lambda t: str(t.id) in ids  # noqa: E731
    with notebook_manager(cluster, scheduler) as manager:
        watch = Watch(of_manager(manager, view.name, mine), check.timeline)
        with watch:

            def submit(name: str) -> str:
                task = manager.submit(TaskEvent(Task(name=name, image=cluster.image)))
                ids.append(str(task.id))
                return str(task.id)

            first = [submit(f"rr-{i}") for i in (1, 2, 3)]
            if not _all_running(manager, first):
                check.stop("the first three tasks did not all start within 6 s")
            spread = sorted(view.name(manager.get_task(i).worker) for i in first)
            if spread != sorted(cluster.workers):
                check.fail(
                    f"three tasks on three workers went to {', '.join(spread)}: "
                    "round-robin gives each worker one"
                )
            victim = view.name(manager.get_task(first[1]).worker)
            check.say(f"pausing {victim} until the manager calls it down")
            with Nemesis(cluster, check.timeline).paused(victim):
                down = wait_until(lambda: _node(manager, victim, view) == "down", timeout=6)
                check.require(down is not None, f"the manager never saw {victim} go down")
                check.say("placing two more tasks while it is down")
                later = [submit(f"rr-{i}") for i in (4, 5)]
                _all_running(manager, [*first, *later], exclude=victim, view=view)
                _judge_live(check, manager, view, victim, first[1], later)


def _node(manager: Any, name: str, view: ClusterView) -> str:
    return next((n.state for n in manager.list_nodes() if view.name(n.name) == name), "")


def _all_running(
    manager: Any, ids: list[str], exclude: str = "", view: ClusterView | None = None
) -> bool:
    def ready() -> bool:
        tasks = [manager.get_task(i) for i in ids]
        ok = all(t.state is State.Running for t in tasks)
        if exclude and view is not None:
            ok = ok and all(view.name(t.worker) != exclude for t in tasks)
        return ok

    return wait_until(ready, timeout=6) is not None


def _judge_live(
    check: Check, manager: Any, view: ClusterView, victim: str, moved: str, later: list[str]
) -> None:
    for task_id in [moved, *later]:
        task = manager.get_task(task_id)
        where = view.name(task.worker) if task.worker else "nowhere"
        if where == victim:
            check.fail(f"{task.name} was placed on {victim} while it was down")
        elif task.state is not State.Running:
            check.fail(f"{task.name} is {task.state.name} on {where}: {task.reason}")
    workers = [view.name(manager.get_task(i).worker) for i in later]
    if len(set(workers)) != len(workers):
        check.fail(
            f"rr-4 and rr-5 both went to {workers[0]}: with two workers up, "
            "round-robin gives one to each"
        )
