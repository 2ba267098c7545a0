"""Chapter 12: a command for the ``cube`` CLI, written by the learner: ``cube wait``.

``wait TASK_ID --state S --timeout T --manager ADDR`` must exit 0 once the task is in
state S; exit 1, saying so, the moment the task can no longer get there (it was
stopped); exit 1 when the time is up; and exit 1 with a clear message, not a
traceback, when there is no task by that ID or no manager to ask. The checker runs it
the way click's own tests run commands (``CliRunner``), against the live cluster, and
the nemesis kills the manager while the command waits.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from click.testing import CliRunner, Result

from cube.cluster import LocalCluster
from cube.lab.checks.core import Check, wait_until
from cube.lab.nemesis import Nemesis
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_client
from cube.task import State

HINTS = (
    (
        "the command must end in every case, and end cleanly: found, never going to happen, "
        "out of time, or no manager"
    ),
    (
        "the client's wait_for does the waiting and raises a typed error for each other "
        "outcome; click.ClickException exits 1 with a message"
    ),
    (
        "cube.client.ManagerClient(manager).wait_for(task_id, State[state], timeout=timeout) "
        "does the waiting; it raises WillNotHappen when the task settles elsewhere, "
        "TimeoutError when time runs out, and CubeError subclasses when the manager says no "
        "or cannot be reached: turn each into click.ClickException(message), which exits 1"
    ),
)
HUGE = 512  # cores: a task that never fits waits in Pending for good


def check_wait_command(command: Any, cluster: LocalCluster) -> Verdict:
    """Run the learner's click ``command`` against ``cluster`` in five situations."""
    check = Check("12 · cube wait", HINTS, "the check's tasks, and the manager's crash")
    ids: list[str] = []
    view = ClusterView(cluster)
    mine = lambda t: str(t.id) in ids  # noqa: E731
    try:
        with check, Watch(of_client(cluster.client, view.name, mine), check.timeline):
            check.ready(cluster)
            run = _runner(check, command, cluster)
            check.say("waiting for a task nobody has")
            _clean_exit(check, "a task nobody has", run(str(uuid.uuid4()), "Running", 3), 1)
            _running(check, run, cluster, ids)
            _stopped_while_waiting(check, run, cluster, ids)
            _timeout(check, run, cluster, ids)
            _manager_dies(check, run, cluster, ids)
    finally:
        for task_id in ids:
            _stop(cluster, task_id)
    return check.verdict("your command waits, and says at once when it cannot succeed")


def _runner(check: Check, command: Any, cluster: LocalCluster) -> Any:
    def run(task_id: str, state: str, timeout: float) -> tuple[Result, float]:
        args = [task_id, "--state", state, "--timeout", str(timeout)]
        began = time.monotonic()
        result = CliRunner().invoke(command, [*args, "--manager", cluster.manager.address])
        took = time.monotonic() - began
        if isinstance(result.exception, NotImplementedError):
            check.stub = True
            check.stop("the command is still the stub: it raised NotImplementedError")
        return result, took

    return run


def _clean_exit(check: Check, what: str, outcome: tuple[Result, float], code: int) -> bool:
    """Did the command exit with ``code``, without a traceback?"""
    result, _ = outcome
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        kind = type(result.exception).__name__
        check.fail(
            f"for {what} the command crashed with {kind}: {result.exception} "
            "(a person would see a traceback)"
        )
        return False
    if result.exit_code != code:
        said = result.output.strip().splitlines()[-1:] or ["nothing"]
        check.fail(
            f"for {what} the command exited {result.exit_code}, not {code}; it said: {said[0]}"
        )
        return False
    return True


def _running(check: Check, run: Any, cluster: LocalCluster, ids: list[str]) -> None:
    check.say("waiting for a task to start")
    task = cluster.client.submit({"Name": "wait-run", "Image": cluster.image})
    ids.append(str(task.id))
    outcome = run(str(task.id), "Running", 10)
    if _clean_exit(check, "a task that starts", outcome, 0) and "Running" not in outcome[0].output:
        check.fail("for a task that starts, the command exited 0 but did not say it is Running")


def _in_background(run: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(run(*args)), daemon=True)
    thread.start()
    return thread, box


def _stopped_while_waiting(check: Check, run: Any, cluster: LocalCluster, ids: list[str]) -> None:
    check.say("stopping a task while your command waits for it")
    task = cluster.client.submit({"Name": "wait-stopped", "Image": cluster.image, "Cpu": HUGE})
    ids.append(str(task.id))
    thread, box = _in_background(run, str(task.id), "Running", 8)
    time.sleep(0.5)
    cluster.client.stop(task.id)
    stopped = time.monotonic()
    thread.join(timeout=10)
    if not box:
        check.fail("the command did not return within 10 s of waiting for a stopped task")
        return
    what = "a task stopped while the command waited for it to run"
    if _clean_exit(check, what, box[0], 1):
        late = time.monotonic() - stopped
        if late > 2.0:
            check.fail(
                f"for {what} the command only gave up {late:.1f} s after the stop: "
                "a Completed task will never run, so say so at once"
            )
        elif "Completed" not in box[0][0].output:
            check.fail(f"for {what} the command did not say the task is Completed")


def _timeout(check: Check, run: Any, cluster: LocalCluster, ids: list[str]) -> None:
    check.say("waiting with --timeout 1 for a task that cannot start")
    task = cluster.client.submit({"Name": "wait-forever", "Image": cluster.image, "Cpu": HUGE})
    ids.append(str(task.id))
    outcome = run(str(task.id), "Running", 1)
    if (
        _clean_exit(check, "a task still Pending when the time is up", outcome, 1)
        and outcome[1] > 3
    ):
        check.fail(f"with --timeout 1 the command took {outcome[1]:.1f} s")


def _manager_dies(check: Check, run: Any, cluster: LocalCluster, ids: list[str]) -> None:
    check.say("killing the manager while your command waits")
    with Nemesis(cluster, check.timeline).killed("manager"):
        time.sleep(0.2)
        thread, box = _in_background(run, ids[-1], "Running", 6)
        thread.join(timeout=10)
    what = "a wait while the manager is down"
    if not box:
        check.fail(f"for {what} the command hung")
    elif _clean_exit(check, what, box[0], 1) and box[0][1] > 4:
        check.fail(f"for {what} the command took {box[0][1]:.1f} s to give up")
    wait_until(lambda: _answers(cluster), timeout=5)


def _answers(cluster: LocalCluster) -> bool:
    try:
        cluster.client.health()
    except Exception:
        return False
    return True


def _stop(cluster: LocalCluster, task_id: str) -> None:
    try:
        if cluster.client.task(task_id).state in (State.Pending, State.Scheduled, State.Running):
            cluster.client.stop(task_id)
    except Exception:
        pass
