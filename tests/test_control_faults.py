"""The control loop under faults, with real processes: each test is a reproduction of a
defect seen in the manager before it reconciled (kept here so it never comes back).

1. a restart waiting out its backoff survives the manager's restart (SIGTERM, SIGKILL);
2. placement honours the runtime: Docker-only images to Docker workers, cube/echo to
   processes, and an image either runs anywhere it can (no placement order assumed);
3. a task moved away and back is not stuck Scheduled on the worker it left;
4. stopping a task that was given up finishes;
5. a reason built from a worker's long reason is stored readable, and survives a restart;
6. an event ID reused for another task is refused, the first task's history intact;
7. a worker whose /stats is not the expected object is down, and gets no task;
8. a worker killed between "the process is ready" and "recorded" leaves one copy.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading

import pytest
import requests
from helpers import Procs, eventually, free_port

from cube.client import CubeError, ManagerClient, NoAnswer, NotFound, WorkerClient
from cube.http import Server, json_app
from cube.store import DiskStore, WireCodec
from cube.task import REASON_LIMIT, State, Task, TaskEvent
from cube.worker.worker import worker_runtime


@pytest.fixture
def procs(tmp_path):
    cluster = Procs(tmp_path)
    yield cluster
    cluster.close()


def manager(procs: Procs) -> ManagerClient:
    return ManagerClient(procs.url, timeout=10)


def wait_state(client: ManagerClient, task_id, state: State, timeout: float = 20) -> Task:
    return eventually(
        lambda: (t := client.task(task_id)).state is state and t,
        timeout=timeout,
        what=f"task {state.name}",
    )


# ------------------------------------------------------------------------------ 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_restart_in_backoff_survives_a_manager_restart(procs, sig):
    procs.start_worker("w1")
    procs.start_manager("--restart-limit", "3", "--restart-base", "3")
    client = manager(procs)
    task = client.submit({"Name": "crashy", "Image": "cube/echo:bad-exit"})
    waiting = eventually(
        lambda: "restart 1 in 3 s" in (t := client.task(task.id)).reason and t,
        timeout=20,
        what="a restart waiting out its backoff",
    )
    assert waiting.state is State.Failed and waiting.restart_at is not None
    procs.signal("manager", sig)
    procs.start_manager()
    restarted = eventually(
        lambda: (t := client.task(task.id)).restart_count >= 1 and t, timeout=15, what="restart"
    )
    assert restarted.restart_count >= 1


# ------------------------------------------------------------------------------ 2


@pytest.mark.docker
def test_placement_honours_each_worker_runtime(procs):
    procs.start_worker("docker-1", kind="docker")
    procs.start_worker("process-1", kind="process")
    procs.start_manager("--scheduler", "roundrobin")
    client = manager(procs)
    eventually(lambda: all(n["State"] == "up" for n in client.nodes()), what="workers up")
    # the same busybox image, named so that only Docker can run it (the process runtime
    # knows "cube/busybox" by that name only); cube/echo is the process runtime's alone;
    # plain cube/busybox runs on either, so where it lands is not asserted
    only = {"docker-1": "docker.io/cube/busybox:latest", "process-1": "cube/echo"}
    ids = [
        (where, client.submit({"Name": f"{where}-{i}", "Image": image}).id)
        for i in range(2)
        for where, image in only.items()
    ]
    ids += [
        ("", client.submit({"Name": f"either-{i}", "Image": "cube/busybox"}).id) for i in range(2)
    ]
    for where, task_id in ids:
        running = wait_state(client, task_id, State.Running)
        expected = {procs.address(where)} if where else set(map(procs.address, only))
        assert running.worker in expected and running.restart_count == 0
    nowhere = client.submit({"Name": "nowhere", "Image": "nginx:1.27"})
    failed = wait_state(client, nowhere.id, State.Failed, timeout=10)
    assert failed.restart_count == 0 and failed.reason.startswith("no worker can take it")
    assert "no Docker" in failed.reason and "no image nginx:1.27" in failed.reason


# ------------------------------------------------------------------------------ 3


def stopped_there(worker: WorkerClient, task_id) -> bool:
    """Completed on that worker, or already forgotten there (the manager saw it end)."""
    try:
        return worker.task(task_id).state is State.Completed
    except NotFound:
        return True


def test_a_task_moved_away_and_back_runs_again(procs):
    procs.start_worker("w1")
    procs.start_worker("w2")
    procs.start_manager("--scheduler", "roundrobin")
    client = manager(procs)
    task = client.submit({"Name": "mover", "Image": "cube/echo"})
    first = wait_state(client, task.id, State.Running).worker
    name = {procs.address(n): n for n in procs.workers}
    there, other = name[first], next(n for n in procs.workers if n != name[first])

    procs.signal(there, signal.SIGSTOP)
    eventually(lambda: client.task(task.id).worker == procs.address(other), what="moved")
    wait_state(client, task.id, State.Running)
    procs.signal(there, signal.SIGCONT)
    stray = WorkerClient(procs.worker_url(there), timeout=10)
    eventually(lambda: stopped_there(stray, task.id), timeout=15, what="the stray stopped")
    procs.signal(other, signal.SIGSTOP)
    try:
        back = eventually(
            lambda: (t := client.task(task.id)).worker == first and t.state is State.Running and t,
            timeout=20,
            what="back on the first worker, Running",
        )
        assert back.reason == ""
        assert stray.task(task.id).state is State.Running
    finally:
        procs.signal(other, signal.SIGCONT)


# ------------------------------------------------------------------------------ 4


def test_stopping_a_given_up_task_finishes(procs):
    procs.start_worker("w1")
    procs.start_manager("--restart-limit", "0")
    client = manager(procs)
    task = client.submit({"Name": "doomed", "Image": "cube/echo:bad-exit"})
    given_up = wait_state(client, task.id, State.Failed)
    assert given_up.reason.startswith("gave up after 0 restarts")
    client.stop(task.id)
    done = wait_state(client, task.id, State.Completed, timeout=10)
    assert done.desired is State.Completed
    worker = WorkerClient(procs.worker_url("w1"))
    eventually(lambda: stopped_there(worker, task.id), what="its remains cleared")


# ------------------------------------------------------------------------------ 5


def test_a_long_worker_reason_gives_a_readable_record(procs, tmp_path):
    """A worker may report any reason up to the limit; here one is written into a real
    worker's store while it is stopped, as a reason it could have given."""
    procs.start_worker("w1")
    procs.start_manager("--restart-limit", "0")
    client = manager(procs)
    task = client.submit({"Name": "wordy", "Image": "cube/echo"})
    wait_state(client, task.id, State.Running)
    procs.signal("manager", signal.SIGTERM)
    procs.signal("w1", signal.SIGTERM)
    store = DiskStore(tmp_path / "w1" / "tasks", WireCodec(Task))
    record = store.get(str(task.id))
    store.put(str(task.id), record.replace(state=State.Failed, reason="x" * (REASON_LIMIT - 1)))
    store.close()
    procs.start_worker("w1")
    procs.start_manager()
    failed = wait_state(client, task.id, State.Failed)
    assert failed.reason.startswith("gave up after 0 restarts; last problem: xxx")
    assert failed.reason.endswith("[...cut]") and len(failed.reason) == REASON_LIMIT

    procs.signal("manager", signal.SIGKILL)
    procs.start_manager()
    assert client.task(task.id).reason == failed.reason  # readable back, not lost
    clash = requests.post(
        f"{procs.url}/tasks", json={"ID": str(task.id), "Name": "again", "Image": "cube/echo"}
    )
    assert clash.status_code == 409


# ------------------------------------------------------------------------------ 6


def test_an_event_id_reused_for_another_task_is_refused(procs):
    procs.start_worker("w1")
    procs.start_manager()
    url = f"{procs.url}/tasks"
    first = TaskEvent(task=Task("a", "cube/echo")).to_wire()
    assert requests.post(url, json=first).status_code == 201
    other = Task("b", "cube/echo")
    assert requests.post(url, json={"Name": "b", "Image": "cube/echo", "ID": str(other.id)}).ok
    reuse = {"ID": first["ID"], "State": 3, "Task": other.to_wire()}
    refused = requests.post(url, json=reuse)
    assert refused.status_code == 409 and "event ID" in refused.json()["Message"]
    history = manager(procs).events()
    mine = [e for e in history if str(e.id) == first["ID"]]
    assert len(mine) == 1 and mine[0].task.name == "a" and mine[0].state is State.Running
    again = requests.post(url, json=first)  # the original submission, retried
    assert again.status_code == 201 and again.json()["ID"] == first["Task"]["ID"]
    assert manager(procs).task(other.id).desired is State.Running  # b was not stopped


# ------------------------------------------------------------------------------ 7


class BrokenWorker:
    """A stand-in for a worker whose ``/stats`` is not the expected object. A double:
    no real Cube worker answers that way, and the manager must survive one that does."""

    def __init__(self) -> None:
        app = json_app("broken worker")
        app.get("/health")(lambda: {"Status": "ok", "Name": "broken", "Runtime": "process",
                                    "Images": ["cube/echo"], "Pulls": False})  # fmt: skip
        app.get("/stats")(lambda: json.dumps(["not", "stats"]))
        app.get("/tasks")(lambda: "[]")
        self.posts = 0

        def post() -> str:
            self.posts += 1
            return "{}"

        app.post("/tasks")(post)
        self.server = Server(app, port=free_port()).start()


def test_a_worker_with_broken_stats_is_down_and_gets_nothing(procs):
    broken = BrokenWorker()
    try:
        procs.start_worker("w1")
        where = f"127.0.0.1:{broken.server.port}"
        procs.start_manager("--scheduler", "roundrobin", extra_workers=[where])
        client = manager(procs)

        def node() -> dict:
            return {n["Name"]: n for n in client.nodes()}[where]

        down = eventually(lambda: (n := node())["State"] == "down" and n, what="it is down")
        assert down["Reason"].startswith("malformed answer: /stats answered a JSON list")
        ids = [client.submit({"Name": f"t{i}", "Image": "cube/echo"}).id for i in range(3)]
        for task_id in ids:
            assert wait_state(client, task_id, State.Running).worker == procs.address("w1")
        assert broken.posts == 0
    finally:
        broken.server.stop()


# ------------------------------------------------------------------------------ 8


@pytest.mark.parametrize("point", ["process-spawned", "process-ready", "worker-started"])
def test_a_worker_killed_mid_start_leaves_exactly_one_copy(procs, point):
    procs.start_worker("w1", env={"CUBE_FAULTS": point})
    worker = WorkerClient(procs.worker_url("w1"), timeout=10)
    task = Task("fragile", "cube/echo")
    # The order is stored before it is answered, and started by the worker's loop, which
    # may reach the fault point (and die) before the answer is out: both are allowed.
    with contextlib.suppress(NoAnswer):
        worker.submit(task)
    proc = procs.workers["w1"][0]
    assert proc.wait(timeout=15) == -signal.SIGKILL  # it died at the fault point
    procs.start_worker("w1")  # no faults this time
    running = eventually(
        lambda: (t := worker.task(task.id)).state is State.Running and t.host_port() and t,
        what="Running, on a port",
    )
    copies = worker_runtime("process", procs.tmp, "w1").list_managed()
    assert [(c.task_id, c.status.running) for c in copies] == [(str(task.id), True)]
    assert copies[0].status.container_id == running.container_id
    port = running.host_port()
    assert port and requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok


def test_concurrent_stop_and_restart_orders_never_leave_two_copies(tmp_path):
    """Orders for one task racing in from two clients (a manager retrying, a person
    stopping): the worker's records never hold two live copies of one task."""
    procs = Procs(tmp_path)
    try:
        procs.start_worker("w1")
        worker = WorkerClient(procs.worker_url("w1"), timeout=10)
        task = worker.submit(Task("raced", "cube/echo", generation=1))
        eventually(lambda: worker.task(task.id).state is State.Running, what="Running")

        def restart(n: int) -> None:
            order = task.replace(generation=1 + n, restart_count=n)
            with contextlib.suppress(CubeError):  # an older order than one already taken
                worker.submit(TaskEvent(task=order, state=State.Running))

        threads = [threading.Thread(target=restart, args=(n,)) for n in range(1, 6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = eventually(
            lambda: (
                (t := worker.task(task.id)).state is State.Running and t.restart_count == 5 and t
            ),
            timeout=20,
            what="the newest order running",
        )
        from cube.worker.worker import worker_runtime

        copies = [
            c for c in worker_runtime("process", tmp_path, "w1").list_managed() if c.status.running
        ]
        assert [c.status.container_id for c in copies] == [final.container_id]
    finally:
        procs.close()
