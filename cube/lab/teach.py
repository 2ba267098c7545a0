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
from cube.lab.cluster import LocalCluster
from cube.lab.show import HTML, tasks_table
from cube.node import format_size
from cube.task import State, Task

T = TypeVar("T")

# ------------------------------------------------------------------------- tables


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> HTML:
    """A small table: HTML in Jupyter, aligned columns as text."""
    import html

    body = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [list(header), *body]) for i in range(len(header))]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [list(header), *body]
    )
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body
    )
    return HTML(f"<table><tr>{heads}</tr>{cells}</table>", text)


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
