"""Helpers for the teaching notebooks on the manager and beyond (07-13).

Small, readable views of a live cluster, a deadline-bound wait, and the scheduler and
store peeks the chapters use. Everything returns plain text or :class:`~cube.lab.show.HTML`
(rich in Jupyter, readable text elsewhere), so notebook outputs stay easy to read and,
where they are deterministic, easy for nbval to check.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from cube.client import Client, ManagerClient
from cube.cluster import LocalCluster
from cube.lab.show import HTML, table, tasks_table
from cube.node import format_size
from cube.task import State, Task

T = TypeVar("T")

# ------------------------------------------------------------------------- tables


# ------------------------------------------------------------------------ waiting


def wait_until(
    check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Raises :class:`TimeoutError` naming ``what`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout:g} s for {what or 'the condition'}")
        time.sleep(interval)


def follow(
    client: Client, task_id: Any, until: Callable[[Task], bool], *, timeout: float = 15.0
) -> Task:
    """Watch one task, printing a line each time its state, restart count or reason
    changes, until ``until(task)`` holds. Returns the last task seen."""
    start = time.monotonic()
    last: tuple[Any, ...] | None = None
    while True:
        task = client.task(task_id)
        now = (task.state, task.restart_count, task.reason)
        if now != last:
            reason = f"  ({task.reason})" if task.reason else ""
            print(
                f"{time.monotonic() - start:5.1f} s  {task.state.name:<9}"
                f" restarts={task.restart_count}{reason}",
                flush=True,
            )
            last = now
        if until(task):
            return task
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"task {task.name} is {task.state.name} after {timeout:g} s")
        time.sleep(0.05)


# ------------------------------------------------------------------ cluster views


def worker_names(cluster: LocalCluster) -> dict[str, str]:
    """``{"127.0.0.1:40123": "worker-1", ...}``: tasks and nodes name workers by address."""
    return {c.address: name for name, c in cluster.workers.items()}


def named(cluster: LocalCluster, tasks: Iterable[Task]) -> list[Task]:
    """The tasks with each worker address replaced by the worker's name."""
    names = worker_names(cluster)
    return [t.replace(worker=names.get(t.worker, t.worker)) for t in tasks]


def task_table(cluster: LocalCluster) -> HTML:
    """Every task of the cluster: name, state, worker (by name), restarts, reason."""
    return tasks_table(named(cluster, cluster.client.tasks()))


def spread(cluster: LocalCluster, states: Sequence[State] = (State.Running,)) -> dict[str, int]:
    """How many tasks in ``states`` each worker has, by worker name (zeros included)."""
    counts = dict.fromkeys(cluster.workers, 0)
    for task in named(cluster, cluster.client.tasks()):
        if task.state in states and task.worker in counts:
            counts[task.worker] += 1
    return counts


def node_table(cluster: LocalCluster) -> HTML:
    """The manager's node table, one row per worker, with names instead of addresses."""
    names = worker_names(cluster)
    rows = [
        [
            names.get(n["Name"], n["Name"]),
            n["State"],
            n["TaskCount"],
            f"{n['Cores']:g}",
            f"{n['CpuAllocated']:g}",
            f"{format_size(n['MemoryUsed'] * 1024)} / {format_size(n['Memory'] * 1024)}",
            n["Reason"] or "-",
        ]
        for n in cluster.client.nodes()
    ]
    header = ["worker", "state", "tasks", "cores", "cores promised", "memory used", "reason"]
    return table(header, rows)


def event_table(cluster: LocalCluster, task_id: Any = None, limit: int = 20) -> HTML:
    """The manager's event history, oldest first: seconds since the first event shown,
    the task, what was asked (run or stop), the task's state then, and its restarts."""
    client: ManagerClient = cluster.client
    events = [e for e in client.events() if task_id is None or str(e.task.id) == str(task_id)]
    events = sorted(events, key=lambda e: e.timestamp or 0)[-limit:]
    start = events[0].timestamp if events and events[0].timestamp else None
    rows = [
        [
            f"{(e.timestamp - start).total_seconds():.1f} s" if start and e.timestamp else "-",
            e.task.name,
            "stop" if e.state is State.Completed else "run",
            e.task.state.name,
            e.task.restart_count,
        ]
        for e in events
    ]
    return table(["after", "task", "asked", "task was", "restarts"], rows)


def node_state(cluster: LocalCluster, worker: str) -> str:
    """What the manager thinks of one worker (by name): "up", "down" or "unknown"."""
    address = cluster.component(worker).address
    return next(n["State"] for n in cluster.client.nodes() if n["Name"] == address)


def copies(cluster: LocalCluster) -> dict[str, int]:
    """Ask every worker directly: how many *running* copies of each task are there,
    by task name? (One per task is what the manager promises.)"""
    counts: dict[str, int] = {}
    for name in cluster.workers:
        if cluster.component(name).state != "running":
            continue
        with cluster.worker_client(name) as worker:
            for task in worker.tasks():
                if task.state is State.Running:
                    counts[task.name] = counts.get(task.name, 0) + 1
    return dict(sorted(counts.items()))


# ------------------------------------------------------------------ files, stores


def data_tree(root: str | Path, depth: int = 2) -> str:
    """The directories under ``root`` (a cluster's data dir), as an indented list."""
    root = Path(root)
    lines = [f"{root.name}/"]

    def walk(folder: Path, level: int) -> None:
        for path in sorted(p for p in folder.iterdir() if p.is_dir()):
            lines.append(f"{'    ' * level}{path.name}/")
            if level < depth:
                walk(path, level + 1)

    walk(root, 1)
    return "\n".join(lines)


def peek(store_dir: str | Path, limit: int = 5) -> list[tuple[str, Any]]:
    """Read a :class:`~cube.store.DiskStore` with nothing but ``sqlite3``: its keys and
    the JSON text stored under them (read-only, so a live store is safe to peek at)."""
    path = Path(store_dir) / "cache.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, value FROM Cache ORDER BY rowid LIMIT ?", (limit,))
        return [(key, json.loads(value)) for key, value in rows]
    finally:
        db.close()


def snapshot(cluster: LocalCluster) -> dict[str, tuple[str, str, int, str]]:
    """Each task by name: (ID, container ID, restart count, state), to compare later."""
    return {
        t.name: (str(t.id), t.container_id, t.restart_count, t.state.name)
        for t in cluster.client.tasks()
    }


def compare(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> HTML:
    """Side by side: did each task keep its ID, container and restart count?"""
    rows = []
    for name, old in before.items():
        new = after.get(name)
        same = [("same" if new and new[i] == old[i] else "CHANGED") for i in range(3)]
        rows.append([name, *same, new[3] if new else "missing"])
    return table(["task", "ID", "container", "restarts", "state now"], rows)


# ---------------------------------------------------------------------- leftovers


def cube_processes(cluster: LocalCluster) -> list[psutil.Process]:
    """Processes still alive that belong to ``cluster``: its manager and workers, and
    any task process (their command lines name the cluster's data directory)."""
    marker = str(cluster.data_dir)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def check_clean(cluster: LocalCluster, timeout: float = 10.0) -> None:
    """Print a tick when nothing of ``cluster`` is left running; raise otherwise."""
    try:
        wait_until(lambda: not cube_processes(cluster), timeout=timeout, what="processes to end")
    except TimeoutError:
        left = ", ".join(f"{p.pid} {p.name()}" for p in cube_processes(cluster))
        raise AssertionError(f"processes still running: {left}") from None
    print("✓ every process of the cluster has ended")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def short_ids(text: str) -> str:
    """Shorten every UUID in ``text`` to its first 8 characters, as ``cube status`` does."""
    return _UUID.sub(lambda m: m.group(0)[:8], text)


# ---------------------------------------------------------------------------- HTTP


def response(answer: Any, keys: Sequence[str] | None = None) -> None:
    """Print an HTTP answer (a ``requests.Response``) as a person reads it: the request
    line without host and port, the status, then the JSON body. With ``keys``, only those
    fields of an object (or of each object in a list) are shown."""
    from urllib.parse import urlsplit

    url = urlsplit(answer.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    print(f"{answer.request.method} {target} -> {answer.status_code} {answer.reason}")
    if not answer.content:
        print("(no body)")
        return
    data = answer.json()
    if keys:

        def pick(item: Any) -> Any:
            return {k: item[k] for k in keys if k in item} if isinstance(item, dict) else item

        data = [pick(d) for d in data] if isinstance(data, list) else pick(data)
    print(json.dumps(data, indent=2, ensure_ascii=False))


def who_has(cluster: LocalCluster, task_id: Any) -> dict[str, str]:
    """Ask each worker directly whether it knows the task: its state there, by worker."""
    found = {}
    for name in cluster.workers:
        with cluster.worker_client(name) as worker:
            for task in worker.tasks():
                if str(task.id) == str(task_id):
                    found[name] = task.state.name
    return found


# ---------------------------------------------------------------------- schedulers


def describe_nodes(nodes: Any) -> HTML:
    """A :class:`~cube.node.NodeTable` for people: capacity, measured use, promises."""

    def gib(v: float) -> str:
        return f"{v / (1 << 30):g}"

    rows = [
        [
            name,
            "up" if nodes.up[i] else "down",
            f"{nodes.cores[i]:g}",
            f"{nodes.cpu_load[i]:.0%}",
            f"{nodes.cpu_allocated[i]:g}",
            gib(nodes.memory[i]),
            gib(nodes.memory_used[i]),
            gib(nodes.memory_allocated[i]),
            int(nodes.task_count[i]),
        ]
        for i, name in enumerate(nodes.names)
    ]
    header = ["node", "state", "cores", "cpu busy", "cores promised"]
    header += ["memory GiB", "used GiB", "promised GiB", "tasks"]
    return table(header, rows)


def scores(scheduler: Any, task: Any, nodes: Any, digits: int = 3) -> HTML:
    """Run one decision through a scheduler's three steps and show every node: up or
    not, a candidate or not, its score (lower wins) and which one was picked. Like a
    real decision it advances the scheduler's own state (round-robin's turn)."""
    import numpy as np

    candidates = scheduler.select_candidates(task, nodes)
    scored = scheduler.score(task, nodes, candidates) if len(candidates) else np.empty(0)
    picked = scheduler.pick(scored, candidates) if len(candidates) else None
    by_node = {int(i): float(s) for i, s in zip(candidates, scored, strict=True)}
    rows = []
    for i, name in enumerate(nodes.names):
        score = f"{by_node[i]:.{digits}f}" if i in by_node else "-"
        step1 = "candidate" if i in by_node else ("down" if not nodes.up[i] else "no room")
        rows.append([name, step1, score, "<- pick" if i == picked else ""])
    return table(["node", "step 1", "step 2: score", "step 3"], rows)


def book_epvm(task: Any, nodes: Any) -> Any:
    """The book's E-PVM score for every node, transcribed as printed, including the
    slip that makes the CPU terms cancel (so CPU load never matters). For comparison
    only; :class:`cube.scheduler.Epvm` is the corrected version."""
    from cube.scheduler import LIEB, MAX_JOBS

    cpu_load = nodes.cpu_load / 2**0.8
    used = nodes.memory_used + nodes.memory_allocated
    before, after = used / nodes.memory, (used + task.memory) / nodes.memory
    n = nodes.task_count
    jobs = LIEB ** ((n + 1) / MAX_JOBS) - LIEB ** (n / MAX_JOBS)
    memory_cost = LIEB**after - LIEB**before + jobs
    # The slip: the load term is added and then subtracted, so only the job count is left.
    cpu_cost = (
        LIEB**cpu_load + LIEB ** ((n + 1) / MAX_JOBS) - LIEB**cpu_load - LIEB ** (n / MAX_JOBS)
    )
    return memory_cost + cpu_cost


class OnPromises:
    """Wrap a scheduler so it sees only what was *promised* to tasks (their requests),
    not what the workers measure, which is how Kubernetes and Nomad place work.

    The workers of a LocalCluster share one machine, so their measurements are the same
    CPUs seen at different moments: noise that would decide close calls at random."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name

    @staticmethod
    def _promised(nodes: Any) -> Any:
        import dataclasses

        import numpy as np

        zero = np.zeros(len(nodes))
        return dataclasses.replace(nodes, cpu_load=zero, memory_used=zero, disk_used=zero)

    def select_candidates(self, task: Any, nodes: Any) -> Any:
        return self.inner.select_candidates(task, self._promised(nodes))

    def score(self, task: Any, nodes: Any, candidates: Any) -> Any:
        return self.inner.score(task, self._promised(nodes), candidates)

    def pick(self, scores: Any, candidates: Any) -> int:
        return self.inner.pick(scores, candidates)


def place_by_hand(
    cluster: LocalCluster,
    scheduler: str,
    tasks: int = 4,
    cpu: float = 1.0,
    image: str = "cube/echo",
) -> dict[str, int]:
    """Place ``tasks`` tasks asking ``cpu`` cores each on the cluster's workers with an
    in-notebook :class:`~cube.manager.manager.Manager` using ``scheduler`` (a name, on
    promised resources only: see :class:`OnPromises`), wait until they run, and return
    how many each worker got. The tasks keep running (the cluster stops them when it
    stops); the cluster's own manager ignores them."""
    from cube.manager.manager import Manager
    from cube.scheduler import make
    from cube.task import TaskEvent

    addresses = [w.address for w in cluster.workers.values()]
    manager = Manager(addresses, OnPromises(make(scheduler)))
    try:
        ids = [
            str(manager.submit(TaskEvent(Task(name=f"{scheduler}-{i}", image=image, cpu=cpu))).id)
            for i in range(tasks)
        ]

        def running() -> bool:
            manager.step()
            return all(manager.get_task(i).state is State.Running for i in ids)

        wait_until(running, timeout=15, what=f"the {scheduler} tasks to run")
        names = worker_names(cluster)
        counts = dict.fromkeys(cluster.workers, 0)
        for task_id in ids:
            counts[names[manager.get_task(task_id).worker]] += 1
        return counts
    finally:
        manager.close()


# ---------------------------------------------------------------------- simulation


def waits_by_size(comparison: Any, workload: Any, big_cpu: float = 6.0) -> HTML:
    """Queue waits per scheduler, split into big tasks (at least ``big_cpu`` cores) and
    the rest: the median and the 99th percentile, in seconds."""
    import numpy as np

    big = np.asarray(workload.cpu) >= big_cpu
    rows = []
    for result in comparison.results:
        wait = result.wait
        cells = []
        for group in (big, ~big):
            placed = wait[group & ~np.isnan(wait)]
            cells += [f"{np.percentile(placed, q):.1f}" if len(placed) else "-" for q in (50, 99)]
        waited = np.mean(wait[~np.isnan(wait)] > 0)
        rows.append([result.scheduler, *cells, f"{waited:.1%}"])
    header = ["scheduler", "big p50", "big p99", "others p50", "others p99", "tasks that waited"]
    return table(header, rows)


def sim_explorer(seed: int = 1) -> Any:
    """Sliders for a small simulation: node count, load and scheduler. Each change runs
    the simulator again (``20 x nodes`` tasks) and draws each node's load over time."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from cube import sim

    nodes = w.IntSlider(value=40, min=5, max=100, step=5, description="nodes")
    load = w.FloatSlider(value=0.9, min=0.3, max=1.5, step=0.1, description="load")
    scheduler = w.Dropdown(options=["roundrobin", "greedy", "epvm", "bestfit"], value="bestfit")
    for control in (nodes, load):
        control.continuous_update = False

    def run(nodes: int, load: float, scheduler: str) -> None:
        cluster = sim.nodes(nodes, {sim.STANDARD: 3, sim.HIGHMEM: 1}, seed=seed)
        work = sim.Workload.generate(
            20 * nodes, cluster, load=load, seed=seed, durations=sim.Lognormal(60, 0.5)
        )
        result = sim.simulate(scheduler, work, cluster, progress=False)
        m = result.metrics
        print(
            f"{scheduler}: cpu {m['cpu_utilisation']:.0%}, memory {m['memory_utilisation']:.0%},"
            f" waited p99 {m['wait_p99']:.1f} s, stranded memory {m['stranded_memory']:.0%}"
        )
        figure = result.plot_heatmap()
        figure.set_size_inches(7, 3)
        display(figure)
        plt.close(figure)

    out = w.interactive_output(run, {"nodes": nodes, "load": load, "scheduler": scheduler})
    return w.VBox([w.HBox([nodes, load, scheduler]), out])


def stop_all(cluster: LocalCluster, timeout: float = 15.0) -> int:
    """Ask the manager to stop every task that is not finished, and wait until all are
    Completed or Failed. Returns how many were stopped."""
    stopped = 0
    for task in cluster.client.tasks():
        if task.state in (State.Pending, State.Scheduled, State.Running):
            cluster.client.stop(task.id)
            stopped += 1

    def finished() -> bool:
        done = (State.Completed, State.Failed)
        return all(t.state in done for t in cluster.client.tasks())

    wait_until(finished, timeout=timeout, what="every task to stop")
    return stopped


def cli(*args: str, env: dict[str, str] | None = None) -> None:
    """Run ``cube ARGS`` in a new process, as in a terminal, and print what it printed,
    followed by the exit code when it is not 0 (returns nothing, so a notebook cell
    shows only the command's own output)."""
    from cube.lab import show

    code = show.cli(*args, env=env)
    if code:
        print(f"(exit code {code})")
