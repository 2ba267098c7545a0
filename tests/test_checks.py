"""Each checker catches a real mistake, not just a stub: a plausible wrong answer per
exercise (most of them mistakes the book's code made) fails, with a verdict that names
it. (The stubs are tested in test_exercises.py, the solutions under nbval.)"""

from __future__ import annotations

import time

import click
import numpy as np
import pytest

from cube.client import ManagerClient, WorkerClient
from cube.lab import LocalCluster, checks
from cube.lab.exercise import solution
from cube.runtime import Status
from cube.task import RestartPolicy, State, parse_uuid


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=3, runtime="process", update_interval=0.3, inspect_interval=0.3) as c:
        yield c


def _fails(verdict, *words):
    assert not verdict.passed, verdict
    text = " ".join(verdict.problems)
    for word in words:
        assert word in text, text
    assert verdict.png, "a failing verdict comes with its picture"


def test_the_books_transition_table(monkeypatch):
    def book():
        return {
            State.Pending: {State.Scheduled},
            State.Scheduled: {State.Scheduled, State.Running, State.Failed},
            State.Running: {State.Running, State.Completed, State.Failed},
            State.Completed: set(),
            State.Failed: set(),
        }

    _fails(checks.check_transitions(book), "cancel before it starts", "Failed is final")


def test_a_runtime_that_reports_signals_as_negative_codes():
    def naive(process, container_id):
        code = process.poll()
        return Status(container_id, code is None, "running" if code is None else "exited", code)

    _fails(checks.check_status_of(naive), "exit_code=-9, expected 137", "reason is empty")


def test_a_worker_step_that_restarts_failed_tasks_itself():
    def eager(task):
        if task.desired is State.Completed:
            return "none" if task.state is State.Completed else "stop"
        return "start" if task.state in (State.Scheduled, State.Failed) else "none"

    _fails(checks.check_next_step(eager), "restart a crashed task on its own")


def test_cpu_use_since_boot(cluster):
    def since_boot(before, after):
        idle = after["idle"]
        return (
            100
            * (sum(v for k, v in after.items() if k != "id") - idle)
            / sum(v for k, v in after.items() if k != "id")
        )

    with cluster.worker_client("worker-1") as worker:
        _fails(checks.check_cpu_busy(since_boot, worker), "150 busy and 50 idle")


def test_a_store_that_writes_in_place():
    class InPlace(solution("ch11_store").FolderStore):
        def put(self, key, text):
            (self.folder / f"{key}.json").write_text(text)

    verdict = checks.check_folder_store(InPlace)
    assert not verdict.passed and "writes the value's file in place" in verdict.problems[0]


def test_schedulers_that_do_not_pack():
    class First(solution("ch10_scheduler").Packer):
        def score(self, task, nodes, candidates):
            return np.arange(len(candidates), dtype=float)

    class NodeZero(solution("ch10_scheduler").Packer):
        def pick(self, scores, candidates):
            return 0

    _fails(checks.check_packer(First), "put a task where it fills the most")
    _fails(checks.check_packer(NodeZero), "not one of the candidates", "while standard-0 was down")


def test_finding_a_worker_by_its_address(cluster):
    def address(cluster, task_id):
        for name, component in cluster.workers.items():
            with cluster.worker_client(name) as worker:
                if any(str(t.id) == task_id and t.state is State.Running for t in worker.tasks()):
                    return component.address
        return None

    _fails(checks.check_find_worker(address, cluster), "answer the worker's name")


def test_round_robin_by_position(cluster):
    class Modulo(solution("ch07_roundrobin").TakeTurns):
        def pick(self, scores, candidates):
            self.last = int(candidates[(self.last + 1) % len(candidates)])
            return self.last

    _fails(checks.check_take_turns(Modulo, cluster), "with b down")


def test_a_logs_route_that_lets_errors_escape(cluster):
    def careless(manager, task_id):
        task = manager.get_task(str(parse_uuid(task_id)))
        with WorkerClient(task.worker, timeout=1) as worker:
            return 200, {"ID": str(task.id), "Logs": worker.logs(task.id)}

    _fails(checks.check_logs_handler(careless, cluster), "500, not 404", "500, not 400")


def test_a_backoff_without_a_cap(cluster):
    class NoCap(RestartPolicy):
        def backoff(self, restarts_so_far):
            return self.base * 2**restarts_so_far

    _fails(checks.check_backoff(NoCap, cluster), "should be 1, 2, 4, 8, 16, 30")


def test_a_wait_command_that_crashes(cluster):
    @click.command("wait")
    @click.argument("task_id")
    @click.option("--state", default="Running")
    @click.option("--timeout", default=10.0)
    @click.option("--manager", default="127.0.0.1:5555")
    def wait(task_id, state, timeout, manager):
        ManagerClient(manager).wait_for(task_id, State[state], timeout=timeout)

    began = time.monotonic()
    _fails(checks.check_wait_command(wait, cluster), "crashed with NotFound")
    assert time.monotonic() - began < 30


def test_a_controller_that_counts_only_live_states(cluster):
    def live_only(client, name, replicas, image):
        live = [
            t
            for t in client.tasks()
            if t.name.startswith(f"{name}-")
            and t.state in (State.Pending, State.Scheduled, State.Running)
        ]
        for i in range(len(live), replicas):
            client.submit({"Name": f"{name}-{i}", "Image": image})
        for extra in live[replicas:]:
            client.stop(extra.id)

    _fails(checks.check_controller(live_only, cluster), "still wanted Running, so it counts")


def test_the_books_stop_handler():
    from cube.lab.live import notebook_worker

    def book(worker, task_id):  # no checks: whatever goes wrong escapes as a 500
        worker.stop_task(task_id)
        return 204, None

    with notebook_worker("test-05") as worker:
        _fails(checks.check_stop_handler(book, worker), "500, not 404", "500, not 400")
