"""The teaching machinery itself: wait_for that says why at once, reapers that clean up
after a process killed with SIGKILL, the background lane of the widgets, timelines and
verdicts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from helpers import eventually

from cube.client import WillNotHappen
from cube.lab import LocalCluster
from cube.lab.background import Lane
from cube.lab.exercise import solution
from cube.lab.timeline import Timeline
from cube.lab.verdict import CheckFailed, Verdict
from cube.task import State

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=1, runtime="process", update_interval=0.3) as c:
        yield c


def test_wait_for_says_at_once_why_a_task_will_not_run(cluster):
    task = cluster.client.submit({"Name": "never", "Image": "cube/echo", "Cpu": 512})
    cluster.client.stop(task.id)
    began = time.monotonic()
    with pytest.raises(WillNotHappen) as caught:
        cluster.client.wait_for(task.id, State.Running, timeout=20)
    assert time.monotonic() - began < 3
    assert "is Completed and will not become Running" in str(caught.value)
    assert caught.value.task.reason  # the reason is said, not just the state


def test_wait_for_a_stopped_task_on_a_worker(cluster):
    with cluster.worker_client("worker-1") as worker:
        task = worker.submit({"Name": "briefly", "Image": "cube/echo"})
        worker.wait_for(task.id, State.Running)
        worker.stop(task.id)
        worker.wait_for(task.id, State.Completed)
        with pytest.raises(WillNotHappen):
            worker.wait_for(task.id, State.Running, timeout=20)


OWNER = """
import sys, subprocess, time
from cube.lab.scratch import scratch_dir
folder = scratch_dir("cube-test-reaper-")
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(folder / "x")],
                         start_new_session=True)
print(folder, child.pid, flush=True)
time.sleep(60)
"""


def test_a_scratch_folder_and_its_processes_go_when_their_kernel_is_killed():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER)], stdout=subprocess.PIPE, text=True, env=env
    )
    folder, pid = owner.stdout.readline().split()
    assert Path(folder).is_dir() and psutil.pid_exists(int(pid))
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    owner.stdout.close()

    def gone() -> bool:
        alive = psutil.pid_exists(int(pid)) and psutil.Process(int(pid)).status() != "zombie"
        return not alive and not Path(folder).exists()

    eventually(gone, timeout=10, what="the reaper to end the child and remove the folder")


def test_a_lane_runs_calls_in_order_off_the_callers_thread():
    import threading

    lane, seen = Lane("test"), []
    for i in range(5):
        lane.run(lambda i=i: seen.append((i, threading.current_thread().name)))
    assert lane.idle(5)
    assert [i for i, _ in seen] == list(range(5))
    assert all(name != threading.current_thread().name for _, name in seen)
    lane.close()


def test_a_timeline_keeps_spans_and_draws(tmp_path):
    timeline = Timeline("t")
    timeline.observe([("worker-1", "web", "Scheduled")], at=0.0)
    timeline.observe([("worker-1", "web", "Running")], at=0.5)
    timeline.observe([("worker-2", "web", "Running")], at=1.0)  # moved
    timeline.fault("worker-1 paused", lane="worker-1")
    assert timeline.states("web") == ["Scheduled", "Running"]
    verdict = Verdict("x", False, "broken", ["a problem"]).attach(timeline)
    assert verdict.png.startswith(b"\x89PNG")
    assert "data:image/png;base64" in verdict._repr_mimebundle_()["text/html"]


def test_a_failed_verdict_raises_only_with_the_solutions(monkeypatch):
    verdict = Verdict("x", False, "broken", ["a problem"])
    monkeypatch.delenv("CUBE_SOLUTIONS", raising=False)
    assert verdict.settle() is verdict
    monkeypatch.setenv("CUBE_SOLUTIONS", "1")
    with pytest.raises(CheckFailed, match="a problem"):
        verdict.settle()


def test_solutions_load_by_module_name():
    assert solution("ch07_roundrobin").TakeTurns().last == -1
