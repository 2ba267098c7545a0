"""Small display helpers for the notebooks: tables and links a learner can read, plus
the few bits of logic the early chapters need (a CPU burner, a sweep that stops what a
notebook started), so that notebook cells stay short.

They return plain text or HTML objects, so a notebook's stored output is stable enough
for nbval to check.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from cube.lab.scratch import remove_scratch, scratch_dir  # noqa: F401 (for notebooks)
from cube.node import busy_percent, format_size
from cube.store import MemoryStore, WireCodec
from cube.task import (
    TRANSITIONS,
    State,
    Task,
    TaskEvent,
    TransitionError,
    ValidationError,
    can_transition,
    check_transition,
    parse_submission,
)
from cube.text import printable
from cube.worker.stats import USER_HZ, StatsCollector


class HTML:
    """Rich HTML in Jupyter, readable text everywhere else."""

    def __init__(self, markup: str, text: str) -> None:
        self.markup, self.text = markup, text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def transition_table() -> HTML:
    """The state machine as a from/to grid: which changes :func:`check_transition` allows."""
    states = list(State)
    head = "".join(f"<th>{s.name}</th>" for s in states)
    corner = "from \\ to"
    rows, lines = [], [f"{corner:<10} " + " ".join(f"{s.name:<9}" for s in states)]
    for src in states:
        cells = ["yes" if dst in TRANSITIONS[src] else "." for dst in states]
        tds = "".join(
            f'<td style="text-align:center;color:{"#16a34a" if c == "yes" else "#9ca3af"}">{c}</td>'
            for c in cells
        )
        rows.append(f"<tr><th>{src.name}</th>{tds}</tr>")
        lines.append(f"{src.name:<10} " + " ".join(f"{c:<9}" for c in cells))
    markup = f"<table><tr><th>{corner}</th>{head}</tr>{''.join(rows)}</table>"
    return HTML(markup, "\n".join(lines))


def wire(item: Task | TaskEvent | dict[str, Any] | list[Any]) -> None:
    """Print the JSON that goes over the wire, as the APIs send it."""
    data = item.to_wire() if isinstance(item, Task | TaskEvent) else item
    print(json.dumps(data, indent=2))


def tasks_table(tasks: list[Task]) -> HTML:
    """A compact table of tasks: name, state, where, restarts, reason."""
    return table(
        ["name", "state", "worker", "restarts", "reason"],
        ([t.name, t.state.name, t.worker or "-", t.restart_count, t.reason[:70]] for t in tasks),
    )


def api_link(url: str, path: str = "/tasks") -> HTML:
    """A link to a live API that opens from the browser: through jupyter-server-proxy
    (``/proxy/PORT/...``) when the notebook runs on a Jupyter server such as Binder's,
    and the direct address as well for a local browser."""
    port = url.rsplit(":", 1)[-1].strip("/")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    proxied = f"{prefix.rstrip('/')}/proxy/{port}{path}"
    direct = f"{url}{path}"
    markup = (
        f'<a href="{html.escape(proxied)}" target="_blank">{html.escape(proxied)}</a> '
        f'(through the notebook server) or <a href="{html.escape(direct)}" target="_blank">'
        f"{html.escape(direct)}</a> (directly)"
    )
    return HTML(markup, f"{proxied} (through the notebook server) or {direct} (directly)")


def cli(*args: str, env: dict[str, str] | None = None) -> int:
    """Run ``cube ARGS`` as a learner would in a terminal, and print what it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "cube", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    print((done.stdout + done.stderr).rstrip())
    return done.returncode


# --------------------------------------------------------------- tasks and states

# Why each allowed edge of the state machine exists, in a few words (notebook 02).
WHY: dict[tuple[State, State], str] = {
    (State.Pending, State.Scheduled): "the manager picked a worker for it",
    (State.Pending, State.Completed): "cancelled before it was ever placed",
    (State.Pending, State.Failed): "no worker could ever run it: its image exists nowhere",
    (State.Scheduled, State.Scheduled): "the same request arrived again: nothing changes",
    (State.Scheduled, State.Running): "the worker started its container or process",
    (State.Scheduled, State.Completed): "cancelled before it started",
    (State.Scheduled, State.Failed): "it could not be started, for example an unknown image",
    (State.Running, State.Running): "a fresh inspection found it still running",
    (State.Running, State.Completed): "stopped on request",
    (State.Running, State.Failed): "it crashed or exited on its own",
    (State.Running, State.Scheduled): "restart: it is sent to a worker again",
    (State.Failed, State.Scheduled): "restart after a failure",
    (State.Failed, State.Completed): "a person stopped it, so it is not restarted again",
}


def explain_transition(src: State, dst: State) -> str:
    """One line on ``src -> dst``: allowed and why, or refused with the very message
    :func:`check_transition` raises."""
    try:
        check_transition(src, dst)
    except TransitionError as exc:
        return f"{src.name} -> {dst.name}: refused. {exc}"
    return f"{src.name} -> {dst.name}: allowed ({WHY.get((src, dst), 'allowed')})"


def transition_explorer() -> Any:
    """Two dropdowns, "from" and "to", and a line saying whether Cube allows the move."""
    import ipywidgets as w

    names = [(s.name, s) for s in State]
    src = w.Dropdown(options=names, value=State.Running, description="from")
    dst = w.Dropdown(options=names, value=State.Pending, description="to")
    answer = w.HTML()

    def update(_: Any = None) -> None:
        text = explain_transition(src.value, dst.value)
        colour = "#166534" if ": allowed" in text else "#b91c1c"
        answer.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    src.observe(update, "value")
    dst.observe(update, "value")
    update()
    return w.VBox([w.HBox([src, dst]), answer])


def try_submission(data: Any) -> None:
    """Parse ``data`` as the APIs parse a ``POST /tasks`` body and print the verdict:
    what Cube would accept, or the 400 message it would answer with."""
    try:
        event = parse_submission(data)
    except ValidationError as exc:
        print(f"400 Bad Request: {exc}")
        return
    task = event.task
    print(f"accepted: asks for {task.name!r} ({task.image}) to be {event.state.name}")


def brief(task: Task) -> str:
    """One line about a task for reading (not for checking: it shows IDs and ports)."""
    parts = [task.name, task.state.name]
    if task.container_id:
        parts.append(task.container_id[:12])
    port = task.host_port()
    if port:
        parts.append(f"port {port}")
    if task.reason:
        parts.append(f"({task.reason})")
    return printable("  ".join(parts))


def worker_view(worker: Any) -> None:
    """Print a worker's two halves by task name: its queue (what was asked) and its
    store (what is). Without IDs, so the output is stable."""
    asked = [
        f"{'stop' if e.state is State.Completed else 'run'} {e.task.name}"
        for e in worker.pending_events()
    ]
    stored = [f"{t.name}: {t.state.name}" for t in sorted(worker.tasks(), key=lambda t: t.name)]
    print("queue (desired):", printable(", ".join(asked)) or "empty")
    print("store (current):", printable(", ".join(stored)) or "empty")


def put_then_get(stored: Task, wanted: Task) -> str:
    """Replay the book's worker on a scratch store: it wrote the wanted task first and
    read it back, so it compared the wanted state with itself. Returns what that check
    said next to what checking against the stored state says."""
    scratch: MemoryStore[Task] = MemoryStore(WireCodec(Task))
    scratch.put(str(stored.id), stored)
    scratch.put(str(wanted.id), wanted)  # the book: Put first...
    persisted = scratch.get(str(wanted.id))  # ...then Get: the task it just wrote
    book = "allowed" if can_transition(persisted.state, wanted.state) else "refused"
    ours = "allowed" if can_transition(stored.state, wanted.state) else "refused"
    return (
        f"book: compares {persisted.state.name} -> {wanted.state.name}: {book}\n"
        f"Cube: compares {stored.state.name} -> {wanted.state.name}: {ours}"
    )


# ------------------------------------------------------------------------- HTTP


def routes(app: Any) -> HTML:
    """The routes of a Bottle app (a Cube API) as a table: method, path, handler."""
    rows = [
        (r.method, re.sub(r"<(\w+)>", r"{\1}", r.rule), r.callback.__name__) for r in app.routes
    ]
    return table(("method", "path", "handler"), rows)


def show_response(
    response: Any, keys: Sequence[str] | None = None, *, hide_ids: bool = False
) -> None:
    """Print an HTTP exchange readably: ``METHOD /path -> status``, then the JSON body
    (only ``keys`` of each object when given). ``hide_ids`` writes every UUID as
    ``{id}``, for output that must read the same on every run."""
    request = response.request
    lines = [f"{request.method} {request.path_url} -> {response.status_code} {response.reason}"]
    if response.content:
        try:
            data = response.json()
        except ValueError:
            lines.append(response.text[:300])
        else:
            if keys:
                data = (
                    [_pick(d, keys) for d in data] if isinstance(data, list) else _pick(data, keys)
                )
            lines.append(json.dumps(data, indent=2))
    text = "\n".join(lines)
    print(_UUID.sub("{id}", text) if hide_ids else text)


def _pick(item: Any, keys: Sequence[str]) -> Any:
    return {k: item[k] for k in keys if k in item} if isinstance(item, dict) else item


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def service_url(item: Any) -> str:
    """``http://host:port`` of the first published port of a Task, or of what a
    runtime's ``start`` returned: where to send requests to the task's service."""
    for port in sorted(item.host_ports):
        for binding in item.host_ports[port]:
            if binding.get("HostPort"):
                host = binding.get("HostIp") or "127.0.0.1"
                host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
                return f"http://{host}:{binding['HostPort']}"
    raise ValueError(f"no published port yet (host ports: {item.host_ports})")


def crash(runtime: Any, container_id: str, timeout: float = 5.0) -> Any:
    """Kill a task's container or process with the runtime's ``kill`` (SIGKILL, as a
    crash would), wait until the runtime sees it gone, and return what ``inspect``
    says then."""
    runtime.kill(container_id)
    deadline = time.monotonic() + timeout
    while (status := runtime.inspect(container_id)).running and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


# -------------------------------------------------------------------- clusters


def where(cluster: Any, task: Task) -> str:
    """The cluster's name for the worker a task was placed on (``worker-2``)."""
    return _worker_name(cluster, task.worker) if task.worker else "nowhere yet"


def _worker_name(cluster: Any, address: str) -> str:
    return next((c.name for c in cluster.workers.values() if c.address == address), address)


def nodes_table(cluster: Any) -> HTML:
    """The manager's view of each worker: up or down, cores, memory, CPU, tasks."""
    rows = [
        (
            _worker_name(cluster, n["Name"]),
            n["State"],
            f"{n['Cores']:g}",
            f"{format_size(n['MemoryUsed'] * 1024)} of {format_size(n['Memory'] * 1024)}",
            f"{n['CpuPercent']:.0f}%",
            n["TaskCount"],
        )
        for n in cluster.client.nodes()
    ]
    return table(("node", "state", "cores", "memory used", "cpu", "tasks"), rows)


# ----------------------------------------------------------------------- metrics


def stats_summary(stats: dict[str, Any]) -> HTML:
    """The main numbers of a ``/stats`` document with their units, and for people."""
    mem, disk = stats["MemStats"], stats["DiskStats"]
    cpu, load = stats["CpuStats"], stats["LoadStats"]
    rows = [
        ("MemStats.mem_total", mem["mem_total"], "kB", format_size(mem["mem_total"] * 1024)),
        (
            "MemStats.mem_available",
            mem["mem_available"],
            "kB",
            format_size(mem["mem_available"] * 1024),
        ),
        ("DiskStats.all", disk["all"], "bytes", format_size(disk["all"])),
        ("DiskStats.free", disk["free"], "bytes", format_size(disk["free"])),
        ("CpuStats.user", cpu["user"], "jiffies", f"{cpu['user'] / USER_HZ:,.0f} s of CPU time"),
        ("CpuStats.idle", cpu["idle"], "jiffies", f"{cpu['idle'] / USER_HZ:,.0f} s of CPU time"),
        ("LoadStats.last1min", load["last1min"], "runnable", "processes wanting a CPU"),
        ("TaskCount", stats["TaskCount"], "tasks", "running on this worker"),
        ("CpuPercent", stats.get("CpuPercent", "-"), "%", "busy since the last sample"),
    ]
    return table(("field", "value", "unit", "for people"), rows)


def since_boot_percent() -> float:
    """The book's CPU figure: busy share from one snapshot of the counters, which is
    the average over the whole time since the machine booted."""
    return busy_percent({}, psutil.cpu_times()._asdict())


_BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def cpu_under_load(
    burn: float = 1.0, before: float = 0.6, after: float = 0.6, every: float = 0.2
) -> list[tuple[float, float, float]]:
    """Sample CPU use every ``every`` seconds while one busy process per core runs for
    ``burn`` seconds in the middle. Returns ``(seconds, over the interval %, since boot
    %)`` rows: the first figure jumps, the book's barely moves."""
    collector = StatsCollector()
    samples, start = [], time.monotonic()
    burners: list[subprocess.Popen[bytes]] = []
    try:
        while (now := time.monotonic() - start) < before + burn + after:
            if not burners and now >= before:
                code = _BURN.format(seconds=burn)
                burners = [
                    subprocess.Popen([sys.executable, "-I", "-S", "-c", code])
                    for _ in range(psutil.cpu_count() or 1)
                ]
            time.sleep(every)
            samples.append((round(now + every, 1), collector.cpu_percent(0), since_boot_percent()))
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
    return samples


def plot_cpu(samples: list[tuple[float, float, float]], burn: tuple[float, float]) -> None:
    """Draw :func:`cpu_under_load`'s samples, shading the seconds the burners ran."""
    import matplotlib.pyplot as plt

    t, interval, boot = zip(*samples, strict=True)
    _, ax = plt.subplots(figsize=(8, 2.6))
    ax.axvspan(*burn, color="#fde68a", label="burners running")
    ax.plot(t, interval, marker="o", label="over the last interval (Cube)")
    ax.plot(t, boot, marker="s", label="since boot (the book)")
    ax.set(xlabel="seconds", ylabel="CPU busy %", ylim=(0, 105))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    plt.show()


# ----------------------------------------------------------------------- cleanup


def shut_down(worker: Any) -> list[str]:
    """Close an in-process worker and stop everything its runtime still runs for it.

    A closed worker leaves its tasks running on purpose (a restarted worker adopts
    them), so a notebook that is done with one stops them itself. Closing first lets
    any start already under way finish, so nothing is started after the sweep.
    Returns the names of the tasks whose containers or processes were stopped."""
    worker.close()
    names = {str(t.id): t.name for t in worker.store.list()}
    stopped = []
    for managed in worker.runtime.list_managed():
        worker.runtime.stop(managed.status.container_id)
        if managed.status.running:
            stopped.append(names.get(managed.task_id, managed.task_id))
    return stopped


def leftover_processes(*paths: str | Path) -> list[psutil.Process]:
    """Live processes whose command line mentions one of ``paths`` (a runtime's state
    directory, a cluster's data directory): what a notebook started and did not stop."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == os.getpid():
            continue
        cmdline = " ".join(proc.info["cmdline"] or ())
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if alive and any(str(p) in cmdline for p in paths):
            found.append(proc)
    return found


def check_nothing_left(*paths: str | Path, timeout: float = 5.0) -> None:
    """Print a tick when nothing started under ``paths`` is still running (waiting up
    to ``timeout`` seconds for processes on their way out); raise otherwise."""
    deadline = time.monotonic() + timeout
    while (left := leftover_processes(*paths)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        pids = ", ".join(str(p.pid) for p in left)
        raise AssertionError(f"still running: pids {pids}")
    print("✓ nothing this notebook started is still running")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> HTML:
    """A small table: HTML in Jupyter, aligned columns as text (control characters
    shown as escapes)."""
    body = [[printable(c) for c in row] for row in rows]
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
