"""Chapter 9: the restart backoff, written by the learner, lived by a manager under crashes.

``Backoff`` is a :class:`~cube.manager.health.RestartPolicy` whose ``backoff(n)`` (the
seconds to wait before restart ``n + 1``) the learner writes. The checker compares it
with the rule (``base * 2**n``, never more than ``cap``) for a few policies, then gives
a small policy to a real manager in this kernel, driving the cluster's workers, and
has the nemesis crash a task (SIGKILL to its process) twice: each time, the manager
must wait what the policy says before it restarts the task. The picture shows the
task's life, the crashes marked.
"""

from __future__ import annotations

import itertools
from typing import Any

from cube.cluster import LocalCluster
from cube.lab.checks.core import Check, quiet_logs, wait_until
from cube.lab.live import notebook_manager
from cube.lab.nemesis import Nemesis
from cube.lab.timeline import Span
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_manager
from cube.task import RestartPolicy, State, Task, TaskEvent

HINTS = (
    "each restart should wait longer than the one before, but never longer than the policy's cap",
    (
        "the wait grows geometrically from self.base, doubling with each restart so far, and "
        "is capped by self.cap"
    ),
    (
        "the wait doubles with every restart: self.base * 2 ** restarts_so_far, and "
        "min(self.cap, ...) keeps it from growing without end"
    ),
)
POLICIES = [(1.0, 30.0), (0.5, 3.0), (2.0, 60.0)]
LIVE = {"limit": 3, "base": 0.4, "cap": 0.8}
EARLY, LATE = 0.1, 0.7  # how far a measured wait may be from the policy's, in seconds


def check_backoff(policy_class: type[RestartPolicy], cluster: LocalCluster) -> Verdict:
    """Hold ``policy_class`` to the doubling rule, then let a manager restart by it."""
    check = Check("09 · restart backoff", HINTS, "a task crashed twice, restarted by your policy")
    with check:
        for base, cap in POLICIES:
            policy = check.call(policy_class, "Backoff(...)", limit=8, base=base, cap=cap)
            rule = RestartPolicy(limit=8, base=base, cap=cap)
            mine = [check.call(policy.backoff, "backoff(n)", n) for n in range(8)]
            want = [rule.backoff(n) for n in range(8)]
            if [round(float(m), 6) for m in mine] != [round(w, 6) for w in want]:
                check.fail(
                    f"with base={base:g}, cap={cap:g} your waits are "
                    f"{_seconds(mine)}; they should be {_seconds(want)}"
                )
        check.ready(cluster)
        with quiet_logs():
            _live(check, policy_class(**LIVE), cluster)
    return check.verdict("the manager waited just what your policy says before each restart")


def _seconds(values: list[Any]) -> str:
    return ", ".join(f"{float(v):g}" for v in values)


def _live(check: Check, policy: RestartPolicy, cluster: LocalCluster) -> None:
    view, ids = ClusterView(cluster), []
    nemesis = Nemesis(cluster, check.timeline)
    mine = lambda t: str(t.id) in ids  # noqa: E731
    with (
        notebook_manager(cluster, "roundrobin", restart=policy) as manager,
        Watch(of_manager(manager, view.name, mine), check.timeline),
    ):
        check.say("starting crashy on a manager with your policy")
        task = manager.submit(TaskEvent(Task(name="crashy", image=cluster.image)))
        ids.append(str(task.id))
        for restarts in range(2):
            running = wait_until(lambda r=restarts: _running(manager, ids[0], r), timeout=8)
            if running is None:
                check.ready(cluster)  # a cluster stopped or paused meanwhile is not your code
                check.stop(
                    f"crashy was not running again after {restarts} restart(s): "
                    f"{manager.get_task(ids[0]).reason}"
                )
            check.say(f"crashing crashy (crash {restarts + 1} of 2), timing the restart")
            nemesis.crash(view.name(running.worker), running.container_id, "crashy")
            wait = min(float(policy.backoff(restarts)), 5.0)
            back = wait_until(lambda r=restarts: _restarted(manager, ids[0], r), timeout=wait + 3)
            check.require(
                back is not None,
                f"crashy was not restarted within {wait + 3:g} s of crash {restarts + 1}",
            )
    _judge(check, check.timeline.spans, policy)


def _running(manager: Any, task_id: str, restarts: int) -> Task | None:
    task = manager.get_task(task_id)
    return task if task.state is State.Running and task.restart_count == restarts else None


def _restarted(manager: Any, task_id: str, restarts: int) -> bool:
    return manager.get_task(task_id).restart_count > restarts


def _judge(check: Check, spans: list[Span], policy: RestartPolicy) -> None:
    """Each wait: from when the manager saw crashy Failed to when it sent it again."""
    life = sorted((s for s in spans if s.row == "crashy"), key=lambda s: s.start)
    waits = [
        (failed.start, later.start)
        for failed, later in itertools.pairwise(life)
        if failed.state == "Failed" and later.state in ("Scheduled", "Running")
    ]
    if len(waits) < 2:
        check.fail("the timeline does not show both restarts after a Failed state")
        return
    for n, (failed, again) in enumerate(waits[:2]):
        took, should = again - failed, float(policy.backoff(n))
        verdict = (
            f"after crash {n + 1} the manager waited {took:.1f} s; your policy says {should:g} s"
        )
        if not should - EARLY <= took <= should + LATE:
            check.fail(verdict)
        else:
            check.note(verdict)
