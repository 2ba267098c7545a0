"""Plausible wrong attempts at each exercise, kept as wrong solutions: each must fail,
with a verdict that names the mistake. (The stubs are in test_exercises.py, the
solutions under nbval, and the book's own mistakes in test_checks.py.)

Also here: what every verdict owes the learner whatever the chapter: hints that unfold
from a nudge to the answer, a line of progress while a check runs, a stopped cluster
said as such, and a picture that shows the mistake."""

from __future__ import annotations

import io
import itertools
import os
import time

import numpy as np
import pytest
from jupyter_client.manager import KernelManager

from cube.lab import LocalCluster, checks
from cube.lab import progress as progress_module
from cube.lab.checks.core import wait_until
from cube.lab.exercise import solution
from cube.lab.timeline import Timeline
from cube.lab.verdict import Verdict
from cube.runtime import Status
from cube.scheduler import fits
from cube.task import State


def _fails(verdict: Verdict, *words: str) -> None:
    """Failed, for the learner's code (not the environment), naming the mistake."""
    assert not verdict.passed and not verdict.environment, verdict
    text = " ".join(verdict.problems)
    for word in words:
        assert word in text, text
    assert verdict.hints, "a failing verdict gives hints"


# ------------------------------------------------------------ 02 the state machine


def _table(**changes: set[State]) -> dict[State, set[State]]:
    table = {k: set(v) for k, v in solution("ch02_transitions").transitions().items()}
    for name, moves in changes.items():
        table[State[name]] = moves
    return table


def test_02_a_crashed_task_that_cannot_be_restarted():
    no_restart = _table(Failed={State.Completed})
    _fails(checks.check_transitions(lambda: no_restart), "Failed → Scheduled is missing")


def test_02_a_finished_task_that_comes_back():
    revives = _table(Completed={State.Scheduled})
    _fails(checks.check_transitions(lambda: revives), "a finished task could come back")


def test_02_no_cancelling_before_the_start():
    table = _table()
    table[State.Scheduled].discard(State.Completed)
    table[State.Pending].discard(State.Completed)
    _fails(checks.check_transitions(lambda: table), "cancelled before it starts")


# ------------------------------------------------------------ 03 a runtime's judgement


def test_03_a_status_without_a_reason():
    def no_reason(process, container_id):
        code = process.poll()
        if code is None:
            return Status(container_id, True, "running", None)
        return Status(container_id, False, "exited", 128 - code if code < 0 else code, "")

    _fails(checks.check_status_of(no_reason), "the reason is empty")


def test_03_a_runtime_that_thinks_everything_runs():
    def always(process, container_id):
        return Status(container_id, True, "running", None, "")

    _fails(checks.check_status_of(always), "you said running=True", "never learnt it had died")


def test_03_a_signal_taken_for_an_exit_code():
    def absolute(process, container_id):
        code = process.poll()
        if code is None:
            return Status(container_id, True, "running", None)
        return Status(container_id, False, "exited", abs(code), f"exited {abs(code)}")

    _fails(checks.check_status_of(absolute), "exit_code=9, expected 137")


# ------------------------------------------------------------ 04 the worker's step


def _eager(task):
    if task.desired is State.Completed:
        return "none" if task.state is State.Completed else "stop"
    return "start" if task.state in (State.Scheduled, State.Failed) else "none"


def test_04_a_failed_task_that_cannot_be_stopped():
    def never_stop_failed(task):
        if task.desired is State.Completed:
            return "stop" if task.state in (State.Scheduled, State.Running) else "none"
        return "start" if task.state is State.Scheduled else "none"

    _fails(checks.check_next_step(never_stop_failed), "would never be recorded Completed")


def test_04_a_running_task_started_again():
    def restart_running(task):
        if task.desired is State.Completed:
            return "none" if task.state is State.Completed else "stop"
        return "start" if task.state in (State.Scheduled, State.Running) else "none"

    _fails(checks.check_next_step(restart_running), "started a second time")


def test_04_the_picture_shows_the_wrong_answers():
    """A restart by the worker never happens in the live run (a worker asks next_step
    only when an order wakes a task), so the timeline looked like a right run; the
    picture is now the table of answers, the wrong one in red."""
    verdict = checks.check_next_step(_eager)
    _fails(verdict, "restart a crashed task on its own")
    assert verdict.png.startswith(b"\x89PNG")
    from PIL import Image  # matplotlib's own dependency

    pixels = np.asarray(Image.open(io.BytesIO(verdict.png)).convert("RGB"))
    red = int(np.all(pixels == (0xFE, 0xCA, 0xCA), axis=-1).sum())
    assert red > 500, "the wrong answer's cell is drawn in red"


# ------------------------------------------------------------ 05 the stop route


@pytest.fixture
def worker():
    from cube.lab.live import notebook_worker

    with notebook_worker("test-wrong-05") as w:
        yield w


def test_05_every_error_a_404(worker):
    from cube.task import error_body, parse_uuid

    def all_404(worker, task_id):
        try:
            worker.stop_task(str(parse_uuid(task_id)))
        except Exception as exc:
            return 404, error_body(404, str(exc))
        return 204, None

    _fails(checks.check_stop_handler(all_404, worker), "was 404, not 400", "was 404, not 409")


def test_05_a_200_with_a_body(worker):
    from cube.task import TransitionError, UnknownTask, ValidationError, error_body, parse_uuid

    def chatty(worker, task_id):
        try:
            worker.stop_task(str(parse_uuid(task_id)))
        except ValidationError as exc:
            return 400, error_body(400, str(exc))
        except UnknownTask as exc:
            return 404, error_body(404, str(exc))
        except TransitionError as exc:
            return 409, error_body(409, str(exc))
        return 200, {"stopped": task_id}

    _fails(checks.check_stop_handler(chatty, worker), "was 200, not 204")


def test_05_errors_as_plain_text(worker):
    from cube.task import TransitionError, UnknownTask, ValidationError, parse_uuid

    def plain(worker, task_id):
        try:
            worker.stop_task(str(parse_uuid(task_id)))
        except ValidationError:
            return 400, "bad id"
        except UnknownTask:
            return 404, "no such task"
        except TransitionError:
            return 409, "cannot stop"
        return 204, None

    _fails(checks.check_stop_handler(plain, worker), "Cube's errors are")


# ------------------------------------------------------------ 10 a packing scheduler


def _packer() -> type:
    return solution("ch10_scheduler").Packer


def test_10_a_scheduler_that_spreads():
    class Spread(_packer()):
        def score(self, task, nodes, candidates):
            return -super().score(task, nodes, candidates)

    _fails(checks.check_packer(Spread), "packing fills one node before starting the next")


def test_10_candidates_that_ignore_a_node_down():
    class AnyNode(_packer()):
        def select_candidates(self, task, nodes):
            return np.arange(len(nodes.names))

    _fails(checks.check_packer(AnyNode), "select_candidates offered n0 is down")


def test_10_packing_by_cores_only():
    class CoresOnly(_packer()):
        def select_candidates(self, task, nodes):
            return np.flatnonzero(fits(task, nodes))

        def score(self, task, nodes, candidates):
            return (nodes.cores[candidates] - nodes.cpu_allocated[candidates]) / 8.0

    _fails(checks.check_packer(CoresOnly), "memory: n0 had room to spare")


# ------------------------------------------------------------ 11 a store on disk


def _store() -> type:
    return solution("ch11_store").FolderStore


def _temp_then_replace(store, key: str, text: str, *, sync_file: bool, flush: bool = True):
    temporary = store.folder / f".{key}.tmp"
    with open(temporary, "w") as f:
        f.write(text)
        if flush:
            f.flush()
        if sync_file:
            os.fsync(f.fileno())
    os.replace(temporary, store.folder / f"{key}.json")


def _sync_folder(store) -> None:
    fd = os.open(store.folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_11_writing_in_place():
    class InPlace(_store()):
        def put(self, key, text):
            (self.folder / f"{key}.json").write_text(text)

    _fails(checks.check_folder_store(InPlace), "writes the value's file in place")


def test_11_writing_in_place_with_fsync():
    class InPlaceSynced(_store()):
        def put(self, key, text):
            with open(self.folder / f"{key}.json", "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            _sync_folder(self)

    verdict = checks.check_folder_store(InPlaceSynced)
    _fails(verdict, "crashed just after opening a.json", "empties it first")


def test_11_a_rename_without_fsync():
    """It passed before: the check never modelled the page cache."""

    class NoSync(_store()):
        def put(self, key, text):
            _temp_then_replace(self, key, text, sync_file=False)

    _fails(checks.check_folder_store(NoSync), "after put returned", "never calls os.fsync")


def test_11_a_rename_whose_folder_is_not_synced():
    class NoFolderSync(_store()):
        def put(self, key, text):
            _temp_then_replace(self, key, text, sync_file=True)

    _fails(checks.check_folder_store(NoFolderSync), "the folder was never fsynced")


def test_11_fsync_before_the_flush():
    class NoFlush(_store()):
        def put(self, key, text):
            _temp_then_replace(self, key, text, sync_file=True, flush=False)
            _sync_folder(self)

    _fails(checks.check_folder_store(NoFlush), "empty value", "call f.flush() first")


def test_11_keys_that_list_the_temporary_files():
    class Stray(_store()):
        def keys(self):
            return [p.name.lstrip(".").split(".")[0] for p in self.folder.iterdir()]

    _fails(checks.check_folder_store(Stray), "keys() then listed")


def test_11_os_write_is_seen_too():
    class Descriptors(_store()):
        def put(self, key, text):
            fd = os.open(self.folder / f"{key}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)

    _fails(checks.check_folder_store(Descriptors), "in place")


NOTEBOOK_STORE = """
import os
from pathlib import Path
from cube.lab.checks import check_folder_store

class NaiveStore:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
    def put(self, key, text):
        with open(self.folder / f"{key}.json", "w") as f:  # IPython's open, in a cell
            f.write(text)
    def get(self, key):
        try:
            with open(self.folder / f"{key}.json") as f:
                return f.read()
        except FileNotFoundError:
            raise KeyError(key) from None
    def keys(self):
        return [p.stem for p in self.folder.glob("*.json")]

print(open is __import__("builtins").open)
verdict = check_folder_store(NaiveStore)
print(verdict.passed, "|", " ".join(verdict.problems))
"""


def test_11_a_naive_store_in_a_notebook_cell(tmp_path):
    """In a cell, ``open`` is IPython's wrapper, not ``builtins.open``: the old check
    never saw those writes and passed a store that writes in place."""
    kernel = KernelManager(
        kernel_name="python3",
        transport="ipc",
        ip=str(tmp_path / "k"),
        connection_file=str(tmp_path / "k.json"),
    )
    kernel.start_kernel(env={**os.environ, "CUBE_SOLUTIONS": ""})
    client = kernel.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        out: list[str] = []

        def keep(message):
            if message["msg_type"] == "stream":
                out.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                out.append("\n".join(message["content"]["traceback"]))

        reply = client.execute_interactive(NOTEBOOK_STORE, timeout=120, output_hook=keep)
        text = "".join(out)
        assert reply["content"]["status"] == "ok", text
        assert text.startswith("False\n"), "IPython's open is its own"
        assert "False |" in text and "in place" in text, text
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)


# ------------------------------------------------------------ 14 who leads


def test_14_the_newest_key_leads():
    def newest(candidates):
        alive = [c for c in candidates if c.alive]
        return max(alive, key=lambda c: c.revision).name if alive else None

    _fails(checks.check_who_leads(newest), "your rule named 'manager-3', the leader is 'manager'")


def test_14_a_lease_gone_still_leads():
    def ignores_lease(candidates):
        return min(candidates, key=lambda c: c.revision).name if candidates else None

    _fails(checks.check_who_leads(ignores_lease), "the first in line has lost its lease")


def test_14_leader_by_name():
    def by_name(candidates):
        alive = [c for c in candidates if c.alive]
        return min(alive, key=lambda c: c.name).name if alive else None

    _fails(checks.check_who_leads(by_name), "a manager that restarted joins at the back")


def test_14_the_first_listed_leads():
    def first(candidates):
        alive = [c for c in candidates if c.alive]
        return alive[0].name if alive else None

    _fails(checks.check_who_leads(first), "not listed in the order they joined")


def test_14_a_whole_candidate():
    def whole(candidates):
        alive = [c for c in candidates if c.alive]
        return min(alive, key=lambda c: c.revision) if alive else None

    verdict = checks.check_who_leads(whole)
    _fails(verdict, "returned a whole Candidate")


# ------------------------------------------------------------ on a live cluster


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=3, runtime="process", update_interval=0.3, inspect_interval=0.3) as c:
        yield c


def test_13_counting_the_copies_the_manager_gave_up_on(cluster):
    """It passed before: the check never left a copy the manager had given up on."""

    def counts_given_up(client, name, replicas, image):
        mine = [t for t in client.tasks() if t.name.startswith(f"{name}-")]
        wanted = [t for t in mine if t.desired is State.Running and t.state is not State.Completed]
        number = len(mine) + 1
        for i in range(replicas - len(wanted)):
            client.submit({"Name": f"{name}-{number + i}", "Image": image})
        for extra in sorted(wanted, key=lambda t: t.created)[replicas:]:
            client.stop(extra.id)

    _fails(
        checks.check_controller(counts_given_up, cluster),
        "Failed with no restart coming",
    )


def test_09_a_stopped_cluster_is_said_as_such():
    """Run All runs the clean-up cell too: the check then blamed the learner's policy."""
    stopped = LocalCluster(workers=1, runtime="process").start()
    stopped.stop()
    began = time.monotonic()
    verdict = checks.check_backoff(solution("ch09_backoff").Backoff, stopped)
    assert time.monotonic() - began < 5
    assert not verdict.passed and verdict.environment, verdict
    assert "the cluster is stopped" in verdict.problems[0]
    assert "LocalCluster(" in verdict.problems[0], "it says which cell to run"
    assert "Not checked" in verdict._html() and not verdict.hints


@pytest.fixture(scope="module")
def stopped():
    """A cluster after the notebook's clean-up cell: started, then stopped."""
    cluster = LocalCluster(workers=1, runtime="process").start()
    client = cluster.worker_client("worker-1")
    cluster.stop()
    yield cluster, client
    client.close()


ON_A_CLUSTER = {
    "01": lambda c, w: checks.check_find_worker(solution("ch01_find_worker").find_worker, c),
    "06": lambda c, w: checks.check_cpu_busy(solution("ch06_cpu_busy").cpu_busy, w),
    "07": lambda c, w: checks.check_take_turns(solution("ch07_roundrobin").TakeTurns, c),
    "08": lambda c, w: checks.check_logs_handler(solution("ch08_logs_handler").logs_handler, c),
    "12": lambda c, w: checks.check_wait_command(solution("ch12_wait").wait, c),
    "13": lambda c, w: checks.check_controller(solution("ch13_controller").reconcile, c),
}


@pytest.mark.parametrize("chapter", sorted(ON_A_CLUSTER))
def test_every_check_says_a_stopped_cluster_as_such(stopped, chapter):
    verdict = ON_A_CLUSTER[chapter](*stopped)
    assert not verdict.passed and verdict.environment, verdict
    assert "LocalCluster(" in verdict.problems[0], "it says which cell to run"


def test_09_a_paused_worker_is_said_as_such(cluster):
    cluster.pause("worker-2")
    try:
        # SIGSTOP lands when the kernel next schedules the process: wait until it has
        assert wait_until(lambda: cluster.component("worker-2").state == "paused", 10)
        verdict = checks.check_backoff(solution("ch09_backoff").Backoff, cluster)
    finally:
        cluster.resume("worker-2")
    assert verdict.environment and "worker-2 is paused" in verdict.problems[0], verdict
    assert "cluster.resume('worker-2')" in verdict.problems[0]


# ------------------------------------------------------------ what every verdict owes


def test_hints_unfold_from_a_nudge_to_the_answer():
    verdict = checks.check_who_leads(lambda candidates: None)
    assert len(verdict.hints) >= 3
    text = str(verdict)
    assert f"Hint: {verdict.hints[0]}" in text
    assert verdict.hints[-1] not in text, "the answer is not in the text rendering"
    assert "more hints" in text
    page = verdict._html()
    assert page.count("Show another hint") == len(verdict.hints) - 2
    assert page.count("Show the answer") == 1
    assert page.index("Show the answer") > page.index("Show another hint")
    assert verdict.to_json()["hints"] == verdict.hints


def test_progress_is_shown_as_a_check_runs(monkeypatch):
    """No check is silent for more than 2 s: its line is refreshed as it goes."""
    seen: list[tuple[float, str]] = []
    undo = progress_module.add_sink(lambda: lambda text: seen.append((time.monotonic(), text)))
    try:
        began = time.monotonic()
        checks.check_next_step(solution("ch04_next_step").next_step)
        ended = time.monotonic()
    finally:
        undo()
    times = [began] + [t for t, _ in seen] + [ended]
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.0
    assert any("crashing crashy" in text for _, text in seen)
    assert "checked in" in seen[-1][1]


def _crash_soon_after_start(at: float) -> Timeline:
    """Chapter 04's picture: web runs and stops, then crashy crashes just after it starts."""
    lane = "worker (in this kernel)"
    timeline = Timeline("04")
    timeline.observe([(lane, "web", "Running")], at=0.0)
    timeline.observe([(lane, "web", "Completed"), (lane, "crashy", "Running")], at=at)
    timeline.fault("crash", lane=lane, row="crashy", instant=True).start = at + 0.02
    timeline.observe([(lane, "web", "Completed"), (lane, "crashy", "Failed")], at=at + 0.1)
    timeline.observe([], at=at + 1.0)
    return timeline


@pytest.mark.parametrize("at", [1.0, 0.0], ids=["room-before", "at-the-start"])
def test_a_crash_label_is_not_drawn_over_the_task_name(at):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _crash_soon_after_start(at).figure()
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    texts = {t.get_text().strip(): t for t in figure.axes[0].texts}
    name = texts["crashy"].get_window_extent(renderer).expanded(1.0, 1.0).padded(2)
    label = texts["crash"].get_window_extent(renderer).padded(2)
    assert not name.overlaps(label), (name, label)


# ------------------------------------------------------------ 01 find the worker


def test_01_trusting_the_managers_record(cluster):
    from cube.lab.view import ClusterView

    def managers_word(cluster, task_id):
        try:
            task = cluster.client.task(task_id)
        except Exception:
            return None
        return ClusterView(cluster).name(task.worker) if task.worker else None

    _fails(checks.check_find_worker(managers_word, cluster), "which the manager never heard of")


def test_01_any_state_counts(cluster):
    def any_state(cluster, task_id):
        for name in cluster.workers:
            with cluster.worker_client(name) as worker:
                if any(str(t.id) == task_id for t in worker.tasks()):
                    return name
        return None

    _fails(checks.check_find_worker(any_state, cluster), "nobody runs it, so the answer is None")


def test_01_always_the_first_worker(cluster):
    def first(cluster, task_id):
        return next(iter(cluster.workers))

    _fails(checks.check_find_worker(first, cluster), "a task nobody has")


# ------------------------------------------------------------ 06 CPU use


def _cpu(after_only=False, idle=("idle", "iowait"), busy=None, scale=100.0):
    busy = busy or ("user", "nice", "system", "irq", "softirq", "steal")

    def cpu_busy(before, after):
        def total(reading, names):
            return sum(float(reading.get(n, 0)) for n in names)

        was = {} if after_only else before
        i = total(after, idle) - total(was, idle)
        b = total(after, busy) - total(was, busy)
        return 0.0 if i + b <= 0 else scale * b / (i + b)

    return cpu_busy


def test_06_iowait_counted_as_busy(cluster):
    wrong = _cpu(
        idle=("idle",), busy=("user", "nice", "system", "irq", "softirq", "steal", "iowait")
    )
    with cluster.worker_client("worker-1") as worker:
        _fails(checks.check_cpu_busy(wrong, worker), "iowait is waiting, not working")


def test_06_guest_counted_twice(cluster):
    wrong = _cpu(busy=("user", "nice", "system", "irq", "softirq", "steal", "guest"))
    with cluster.worker_client("worker-1") as worker:
        _fails(checks.check_cpu_busy(wrong, worker), "guest time is already counted in user")


def test_06_a_fraction_not_a_percentage(cluster):
    with cluster.worker_client("worker-1") as worker:
        _fails(checks.check_cpu_busy(_cpu(scale=1.0), worker), "150 busy and 50 idle jiffies")


# ------------------------------------------------------------ 07 take turns


def _turns() -> type:
    return solution("ch07_roundrobin").TakeTurns


def test_07_always_the_first_candidate(cluster):
    class First(_turns()):
        def pick(self, scores, candidates):
            return int(candidates[0])

    _fails(checks.check_take_turns(First, cluster), "three nodes, all up: your turns were a, a")


def test_07_turns_that_forget_where_they_were(cluster):
    class Forgetful(_turns()):
        def pick(self, scores, candidates):
            later = candidates[candidates > self.last]
            return int(later[0] if len(later) else candidates[0])  # self.last never moves

    _fails(checks.check_take_turns(Forgetful, cluster), "your turns were a, a, a")


def test_07_down_nodes_among_the_candidates(cluster):
    class AllNodes(_turns()):
        def select_candidates(self, task, nodes):
            return np.arange(len(nodes.names))

    _fails(checks.check_take_turns(AllNodes, cluster), "with b down")


# ------------------------------------------------------------ 08 the logs route


def _logs(ask_first_worker=False, waiting_404=False):
    from cube.client import CubeError, NotFound, WorkerClient
    from cube.task import UnknownTask, ValidationError, error_body, parse_uuid

    def handler(manager, task_id):
        try:
            task = manager.get_task(str(parse_uuid(task_id)))
        except ValidationError as exc:
            return 400, error_body(400, str(exc))
        except UnknownTask as exc:
            return 404, error_body(404, str(exc))
        if not task.worker:
            if waiting_404:
                return 404, error_body(404, "no worker")
            return 200, {"ID": str(task.id), "Logs": ""}
        where = handler.first if ask_first_worker else task.worker
        try:
            with WorkerClient(where, timeout=1.0) as worker:
                text = worker.logs(task.id)
        except NotFound:
            text = ""
        except CubeError as exc:
            return 502, error_body(502, exc.message)
        return 200, {"ID": str(task.id), "Logs": text}

    return handler


def test_08_asking_always_the_same_worker(cluster):
    handler = _logs(ask_first_worker=True)
    handler.first = next(iter(cluster.workers.values())).address
    _fails(checks.check_logs_handler(handler, cluster), "lack the line its own service")


def test_08_a_task_waiting_for_room_is_not_a_404(cluster):
    verdict = checks.check_logs_handler(_logs(waiting_404=True), cluster)
    _fails(verdict, "a task still waiting for room (no worker yet) the answer was 404, not 200")


# ------------------------------------------------------------ 09 the restart backoff


def test_09_a_wait_that_grows_by_one_base(cluster):
    from cube.task import RestartPolicy

    class Linear(RestartPolicy):
        def backoff(self, restarts_so_far):
            return min(self.cap, self.base * (restarts_so_far + 1))

    _fails(checks.check_backoff(Linear, cluster), "with base=1, cap=30 your waits are 1, 2, 3")


def test_09_a_wait_one_doubling_ahead(cluster):
    from cube.task import RestartPolicy

    class Ahead(RestartPolicy):
        def backoff(self, restarts_so_far):
            return min(self.cap, self.base * 2 ** (restarts_so_far + 1))

    _fails(checks.check_backoff(Ahead, cluster), "your waits are 2, 4, 8")


# ------------------------------------------------------------ 12 cube wait


def _wait_command(on_timeout_exit=1, give_up_on_settled=True):
    import click

    from cube.client import CubeError, ManagerClient

    @click.command("wait")
    @click.argument("task_id")
    @click.option("--state", default="Running")
    @click.option("--timeout", default=10.0)
    @click.option("--manager", default="127.0.0.1:5555")
    def wait(task_id, state, timeout, manager):
        wanted, deadline = State[state], time.monotonic() + timeout
        with ManagerClient(manager, timeout=1) as client:
            while time.monotonic() < deadline:
                try:
                    task = client.task(task_id)
                except CubeError as exc:
                    raise click.ClickException(exc.message) from None
                if task.state is wanted:
                    click.echo(f"{task.name} is {task.state.name}")
                    return
                if give_up_on_settled and task.state in (State.Completed, State.Failed):
                    raise click.ClickException(f"{task.name} is {task.state.name}")
                time.sleep(0.1)
        if on_timeout_exit:
            raise click.ClickException("timed out")

    return wait


def test_12_waiting_on_after_the_task_was_stopped(cluster):
    verdict = checks.check_wait_command(_wait_command(give_up_on_settled=False), cluster)
    _fails(verdict, "a task stopped while the command waited")


def test_12_a_timeout_that_exits_0(cluster):
    verdict = checks.check_wait_command(_wait_command(on_timeout_exit=0), cluster)
    _fails(verdict, "a task still Pending when the time is up the command exited 0, not 1")


# ------------------------------------------------------------ 13 more controllers


def _controller(stop_extras=True, look=True):
    def reconcile(client, name, replicas, image):
        mine = [t for t in client.tasks() if t.name.startswith(f"{name}-")] if look else []
        wanted = [
            t
            for t in mine
            if t.desired is State.Running
            and t.state is not State.Completed
            and not (t.state is State.Failed and t.restart_at is None)
        ]
        number = len(client.tasks()) + 1
        for i in range(replicas - len(wanted)):
            client.submit({"Name": f"{name}-{number + i}", "Image": image})
        if stop_extras:
            for extra in sorted(wanted, key=lambda t: t.created)[replicas:]:
                client.stop(extra.id)

    return reconcile


def test_13_a_controller_that_never_scales_down(cluster):
    verdict = checks.check_controller(_controller(stop_extras=False), cluster)
    _fails(verdict, "from 3 copies down to 1, the controller stopped 0, not 2")


def test_13_a_controller_that_does_not_look_first(cluster):
    verdict = checks.check_controller(_controller(look=False), cluster)
    _fails(verdict, "called again with 3 copies running, it submitted 3")


# ------------------------------------------------------------ 14 on a live election


@pytest.fixture(scope="module")
def managers():
    from cube.etcd import etcd_binary

    if etcd_binary() is None:
        why = "no etcd installed (scripts/etcd-up.sh installs Debian's etcd-server)"
        if os.environ.get("CUBE_REQUIRE_ETCD") == "1":
            pytest.fail(f"CUBE_REQUIRE_ETCD=1 but {why}")
        pytest.skip(why)
    with LocalCluster(workers=1, runtime="process", managers=3, store="etcd", lease_ttl=2) as c:
        yield c


def test_14_the_newest_key_on_a_live_election(managers):
    """It waited 26.8 s in silence, then said the rule had named the dead leader."""
    seen: list[float] = []
    undo = progress_module.add_sink(lambda: lambda text: seen.append(time.monotonic()))

    def newest(candidates):
        alive = [c for c in candidates if c.alive]
        return max(alive, key=lambda c: c.revision).name if alive else None

    try:
        began = time.monotonic()
        verdict = checks.check_who_leads(newest, managers)
        ended = time.monotonic()
    finally:
        undo()
    _fails(verdict, "with every manager running: your rule named")
    assert not any("dead leader" in note for note in verdict.notes), verdict.notes
    assert ended - began < 10, "a rule that disagrees with a settled leader is told at once"
    times = [began, *seen, ended]
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.0


def test_11_a_right_store_written_another_way_passes():
    """The model judges what reaches the disk, not the way the code is written:
    pathlib, an fsync through a descriptor opened for reading, Path.replace, os.sync."""

    class Pathlib(_store()):
        def put(self, key, text):
            temporary = self.folder / f".{key}.tmp"
            temporary.write_text(text)
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            temporary.replace(self.folder / f"{key}.json")
            _sync_folder(self)

    class SyncAll(_store()):
        def put(self, key, text):
            _temp_then_replace(self, key, text, sync_file=False)
            os.sync()

    for store in (Pathlib, SyncAll):
        verdict = checks.check_folder_store(store)
        assert verdict.passed, verdict
