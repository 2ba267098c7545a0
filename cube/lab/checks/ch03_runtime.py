"""Chapter 3: what a runtime says about a process, judged by the learner.

``status_of(process, container_id) -> Status`` turns a ``subprocess.Popen`` into the
runtime's report. The checker asks it about real processes in known conditions (alive,
exited with code 3, killed by SIGKILL, stopped by SIGTERM), then plugs it into a
:class:`~cube.lab.toyruntime.ToyRuntime` driven by a real worker: a healthy task must
stay Running, and when the nemesis kills its process, the worker must mark it Failed
with a reason a person can act on.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cube.lab.checks.core import Check, quiet_logs, wait_until
from cube.lab.live import notebook_worker
from cube.lab.scratch import remove_scratch, scratch_dir
from cube.lab.toyruntime import StatusOf, ToyRuntime
from cube.lab.verdict import Verdict
from cube.lab.watch import Watch, of_worker
from cube.runtime import Status
from cube.task import State, Task, TaskEvent

LANE = "worker on the toy runtime"
HINTS = (
    (
        "a process that is not running any more has an exit code, or a signal that killed it:"
        " which one does Docker report, and how?"
    ),
    (
        "poll() tells running from not; returncode is negative for a signal; a person reading"
        " the reason must learn what happened"
    ),
    (
        "process.poll() is None while the process runs; afterwards process.returncode is "
        "its exit code, or minus the signal that killed it (-9 for SIGKILL), which Docker "
        "reports as 128 + 9 = 137"
    ),
)
SLEEPER = "import time; time.sleep(30)"


def check_status_of(status_of: StatusOf) -> Verdict:
    """Ask ``status_of`` about real processes, then let a worker rely on it."""
    check = Check("03 · what became of a process", HINTS, "a worker on your runtime")
    with check:
        _direct(check, status_of)
        with quiet_logs():  # wrong answers too: the picture shows what they lead to
            _live(check, status_of)
    return check.verdict("your runtime tells a live process from a dead one, and says why")


def _direct(check: Check, status_of: StatusOf) -> None:
    cases: list[tuple[str, str, Callable[[subprocess.Popen[bytes]], None], bool, int | None]] = [
        ("a process that is still running", SLEEPER, lambda p: None, True, None),
        ("a process that exited with code 3", "raise SystemExit(3)", _wait, False, 3),
        ("a process killed by SIGKILL", SLEEPER, _signal(signal.SIGKILL), False, 137),
        ("a process stopped by SIGTERM", SLEEPER, _signal(signal.SIGTERM), False, 143),
    ]
    for what, code, do, running, exit_code in cases:
        process = subprocess.Popen([sys.executable, "-c", code])
        try:
            do(process)
            status = check.call(status_of, "status_of(process, container_id)", process, "toy-1")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        _judge(check, what, status, running, exit_code)


def _wait(process: subprocess.Popen[bytes]) -> None:
    process.wait(timeout=10)


def _signal(sig: signal.Signals) -> Callable[[subprocess.Popen[bytes]], None]:
    def send(process: subprocess.Popen[bytes]) -> None:
        time.sleep(0.05)
        process.send_signal(sig)
        process.wait(timeout=10)

    return send


def _judge(check: Check, what: str, status: Any, running: bool, exit_code: int | None) -> None:
    if not isinstance(status, Status):
        check.stop(
            f"for {what} status_of returned {type(status).__name__}, not a Status",
            "return Status(container_id, running, state, exit_code, reason)",
        )
    if status.running != running:
        check.fail(f"for {what} you said running={status.running}")
        return
    if running:
        return
    if status.exit_code != exit_code:
        check.fail(f"for {what} you said exit_code={status.exit_code}, expected {exit_code}")
    if not status.reason:
        check.fail(
            f"for {what} the reason is empty: a person reading the Failed task "
            "needs to know what happened"
        )


def _live(check: Check, status_of: StatusOf) -> None:
    folder = scratch_dir("cube-nb03-check-")
    try:
        _run_on(check, ToyRuntime(status_of, folder), folder)
    finally:
        remove_scratch(folder)


def _run_on(check: Check, runtime: ToyRuntime, folder: Path) -> None:
    worker_box = notebook_worker("nb03-check", runtime, state_dir=folder)
    with worker_box as worker, Watch(of_worker(worker, LANE), check.timeline):
        steady = worker.submit(TaskEvent(Task(name="steady", image="cube/echo")))
        running = worker.wait_for(str(steady.id), State.Running, State.Failed, timeout=10)
        time.sleep(0.4)  # several inspections by the worker
        now = worker.get_task(str(steady.id))
        if now.state is not State.Running:
            check.stop(
                f"a healthy task was marked {now.state.name} by the worker: "
                f"{now.reason or 'no reason'}"
            )
        check.timeline.fault("crash", lane=LANE, row="steady", instant=True)
        runtime.kill(running.container_id)
        failed = wait_until(lambda: _failed(worker, str(steady.id)), timeout=3)
        if failed is None:
            check.fail(
                "after its process was killed the task stayed Running: the worker "
                "never learnt it had died"
            )
        elif "137" not in failed.reason and "KILL" not in failed.reason.upper():
            check.fail(
                f"the crashed task failed with the reason {failed.reason!r}, which does "
                "not say it was killed (SIGKILL, code 137)"
            )
        else:
            check.note(f"the worker marked the crashed task Failed: {failed.reason}")


def _failed(worker: Any, task_id: str) -> Task | None:
    task = worker.get_task(task_id)
    return task if task.state is State.Failed else None
