"""The control plane at scale: one manager, 100 workers, 10,000 Running tasks.

A real ``cube manager`` (its state on disk, on loopback) and ``--workers`` real worker
processes (:mod:`bench.fleet`), each the real worker and HTTP API on a runtime that
only pretends to start tasks (:mod:`bench.pretend`: 10,000 real task processes would
measure the machine, not the manager). Measured, in this order, on one fleet:

1. **Placement.** ``--tasks`` tasks POSTed to the manager from CLIENTS processes x
   THREADS threads; the clock runs from the first POST until the manager reports the
   last one Running (followed with blocking queries on the changes of its task list,
   ``GET /tasks?index=N&since=N``). Printed: placements/s (tasks Running per second;
   Nomad's C1M placed 3,750/s on 5,000 nodes), submissions/s (the POSTs alone), and
   each task's submit -> Running, p50 and p99 (Kubernetes' pod-start SLO: p99 <= 5 s).
2. **Footprint.** The manager's RSS before the first POST and with every task Running;
   its CPU over ``--idle-seconds`` (30) once its task list has not changed for
   SETTLE seconds, as a share of one core (the workers' total beside it), its
   threads and its open files (a default ``ulimit -n`` of 1024 may be too few).
3. **Listing.** ``GET /tasks`` on the manager, one client, one request at a time:
   the whole list WHOLE_LISTS times, then PAGE_REQUESTS pages of PAGE
   (``?limit=500&after=<last ID>``, walking the list again from the start when it
   ends); p50 and p99 (goal p99 <= 1 s, as the issue sets it: Kubernetes' own SLO is
   1 s for reading one object, 30 s for a list).
4. **A dead worker.** The worker holding the most tasks is SIGKILLed: the time until
   the manager's ``GET /nodes`` says it is down (polled every 100 ms: that list's
   index moves with every probe answer, so a blocking query answers at once), and until
   every task it held is reported Running on another worker. The manager marks a
   worker down after ``--node-ttl`` 5 s of silence, probing every second; Kubernetes
   by default marks a node NotReady after 40-50 s and evicts its pods 300 s later.

The baseline, in the same run and first: the very same on a fleet a tenth the size
(10 workers and 1,000 tasks for the default 100 and 10,000; at least 2 workers, so one
can die), so the ratios say how each cost grows with size. The submitting clients, the
watch and the hundred workers share the machine with the manager, as they would not
on a real cluster: on 2 cores the absolute figures are a floor for the manager.

Run: ``python -m bench bench_scale [--workers 100] [--tasks 10000] [--idle-seconds 30]
[--keep-logs DIR]``; ``--quick`` is 10 workers and 500 tasks (idle 10 s), to try it.
Not in ``make bench``: a full run starts 110 processes and takes several minutes.
Everything it starts is stopped and removed when it ends, Ctrl-C included, and it says
so (or what was left). Prints numbers and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import resource
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.common import header, ms, percentile
from bench.fleet import NODE_TTL, Fleet
from cube.client import CubeError, Gone, ManagerClient

IMAGE = "cube/echo"
RUNNING, FAILED = 2, 4
CLIENTS, THREADS = 3, 4  # submitting processes x threads each
WATCH_WAIT = 30.0
SETTLE = 2.0  # seconds without a change to the manager's tasks: it has settled
WHOLE_LISTS = 50
PAGE, PAGE_REQUESTS = 500, 100
POLL = 0.1
FLOOR_RATE = 10.0  # tasks per second: the deadlines give at least this pace
START_TIMEOUT = 60.0  # plus a second per worker
NOMAD_C1M = 3750.0  # placements/s
POD_START_P99 = 5.0  # seconds: Kubernetes' pod-start SLO, p99
LIST_P99 = 1.0  # seconds: the goal for a list call, p99


@dataclass(frozen=True)
class Size:
    workers: int
    tasks: int

    def __str__(self) -> str:
        workers, tasks = self.workers, self.tasks
        return f"{workers:,} worker{'s' * (workers != 1)}, {tasks:,} task{'s' * (tasks != 1)}"

    def tenth(self) -> Size:
        """The baseline's size: a tenth, with two workers at least (one dies)."""
        return Size(max(2, self.workers // 10), max(1, self.tasks // 10))


# -------------------------------------------------------------------- watching


class TaskWatch:
    """The manager's tasks as its API reports them: the whole list once, then only what
    changed, each answer the moment something did (``?index=N&since=N``). Notes when
    each task was first seen Running, and where each is now."""

    def __init__(self, url: str) -> None:
        self.client = ManagerClient(url, timeout=60)
        self.tasks: dict[str, dict[str, Any]] = {}
        self.running_at: dict[str, float] = {}
        self.failed: dict[str, str] = {}  # task ID -> why, for those seen Failed
        self.changed_at = time.monotonic()  # when the last change was seen
        self.changes = 0  # task changes seen in all
        self.cond = threading.Condition()
        self._index = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._index:
                    params = {"since": self._index}
                    tasks, index = self.client.watch("/tasks", self._index, WATCH_WAIT, **params)
                else:
                    tasks, index = self.client.watch("/tasks", 0)
            except Gone:  # the manager cannot say what changed since: list it all again
                self._index = 0
                continue
            except (CubeError, ValueError):  # no answer, or a cut one: ask again shortly
                self._stop.wait(POLL)
                continue
            self._take(tasks or [], index)

    def _take(self, tasks: list[dict[str, Any]], index: int) -> None:
        now = time.monotonic()
        with self.cond:
            for task in tasks:
                self.tasks[task["ID"]] = task
                if task["State"] == RUNNING:
                    self.running_at.setdefault(task["ID"], now)
                elif task["State"] == FAILED:
                    self.failed[task["ID"]] = task.get("Reason", "")
            if tasks:
                self.changed_at, self.changes = now, self.changes + len(tasks)
            self._index = index
            self.cond.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> float:
        """Block until ``done()`` (asked under the lock at every change); returns when
        the change that made it true was seen. A task Failed on the way is an error."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done():
                if self.failed:  # none should: nothing really runs
                    raise RuntimeError(f"a task failed: {next(iter(self.failed.values()))}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what}: not after {timeout:.0f} s")
                self.cond.wait(min(left, 1.0))
            return self.changed_at

    def settle(self, quiet: float, timeout: float) -> None:
        """Until no task has changed for ``quiet`` seconds."""
        self.wait(lambda: time.monotonic() - self.changed_at >= quiet, timeout, "settling")

    def on(self, worker: str) -> set[str]:
        with self.cond:
            return {k for k, t in self.tasks.items() if t.get("Worker") == worker}

    def busiest(self) -> str:
        """The worker (as the manager names it) that holds the most tasks."""
        with self.cond:
            return Counter(t.get("Worker") for t in self.tasks.values()).most_common(1)[0][0]

    def close(self) -> None:
        self._stop.set()
        self.client.close()  # its held request ends with the fleet; no join needed


# ------------------------------------------------------------------ submitting


@dataclass(frozen=True)
class Posted:
    task_id: str
    sent: float  # time.monotonic(): one clock for every process on the machine
    answered: float


def _post_each(url: str, names: list[str]) -> list[Posted]:
    """One client thread: POST each task in turn."""
    out = []
    with ManagerClient(url, timeout=60) as client:
        for name in names:
            sent = time.monotonic()
            task = client.submit({"Name": name, "Image": IMAGE})
            out.append(Posted(str(task.id), sent, time.monotonic()))
    return out


def _post_share(url: str, names: list[str], threads: int) -> list[Posted]:
    """One submitting process: its share of the tasks, over ``threads`` threads."""
    parts = [names[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [p for part in pool.map(lambda n: _post_each(url, n), parts) for p in part]


def submit_all(url: str, count: int, timeout: float) -> list[Posted]:
    """POST ``count`` tasks from CLIENTS processes (one Python process tops out near
    500 requests/s on its own: it would measure the client). Leaving the pool ends its
    processes, also on an error or Ctrl-C."""
    names = [f"scale-{i}" for i in range(count)]
    shares = [(url, names[i::CLIENTS], THREADS) for i in range(CLIENTS)]
    context = multiprocessing.get_context("spawn")  # this process has threads: no fork
    with context.Pool(CLIENTS) as pool:
        parts = pool.starmap_async(_post_share, shares).get(timeout)
    return [p for part in parts for p in part]


# ------------------------------------------------------------------ measuring


@dataclass
class Placement:
    posted: list[Posted]
    running_at: dict[str, float]
    cpu: float  # the manager's CPU seconds from the first POST until all were Running

    @property
    def began(self) -> float:
        return min(p.sent for p in self.posted)

    def placements_per_s(self) -> float:
        return len(self.posted) / (max(self.running_at.values()) - self.began)

    def submissions_per_s(self) -> float:
        return len(self.posted) / (max(p.answered for p in self.posted) - self.began)

    def latencies(self) -> list[float]:
        return [self.running_at[p.task_id] - p.sent for p in self.posted]

    def cpu_per_task(self) -> float:
        """The manager's CPU seconds per task accepted and placed: what a busy machine
        changes least (waiting for a core is not counted)."""
        return self.cpu / len(self.posted)


def place(fleet: Fleet, watch: TaskWatch, tasks: int) -> Placement:
    timeout = 60 + tasks / FLOOR_RATE
    manager = psutil.Process(fleet.pids()[0])
    cpu = _cpu(manager)
    posted = submit_all(fleet.manager.url, tasks, timeout)
    ids = {p.task_id for p in posted}
    watch.wait(lambda: ids <= watch.running_at.keys(), timeout, f"{tasks} tasks Running")
    cpu = _cpu(manager) - cpu
    with watch.cond:
        return Placement(posted, {k: watch.running_at[k] for k in ids}, cpu)


@dataclass
class Footprint:
    rss_empty: int
    rss_full: int = 0
    cpu: float = 0.0  # the manager's, as a share of one core
    workers_cpu: float = 0.0  # every worker's together
    threads: int = 0
    files: int = 0  # open file descriptors: connections to workers, stores
    changes: int = 0  # task changes seen while it was measured
    workers_rss: int = 0  # every worker's together


def idle(fleet: Fleet, watch: TaskWatch, footprint: Footprint, seconds: float) -> None:
    """The manager's CPU over ``seconds`` once settled, its RSS and threads."""
    watch.settle(SETTLE, timeout=120)
    manager_pid, worker_pids = fleet.pids()
    manager = psutil.Process(manager_pid)
    workers = [psutil.Process(pid) for pid in worker_pids]
    changes = watch.changes
    before = _cpu(manager), sum(_cpu(w) for w in workers)
    time.sleep(seconds)  # the measurement's window, not a wait for anything
    footprint.cpu = (_cpu(manager) - before[0]) / seconds
    footprint.workers_cpu = (sum(_cpu(w) for w in workers) - before[1]) / seconds
    footprint.rss_full, footprint.threads = manager.memory_info().rss, manager.num_threads()
    footprint.files = manager.num_fds()
    footprint.workers_rss = sum(w.memory_info().rss for w in workers)
    footprint.changes = watch.changes - changes


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


@dataclass
class Listing:
    whole: list[float] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)
    walks: list[float] = field(default_factory=list)  # the whole list, page by page


def listing(url: str, tasks: int) -> Listing:
    """``GET /tasks`` one request at a time, each timed until its last byte is read."""
    out = Listing()
    with requests.Session() as session:

        def get(params: dict[str, Any] | None = None) -> tuple[float, requests.Response]:
            began = time.perf_counter()
            response = session.get(f"{url}/tasks", params=params, timeout=120)
            response.raise_for_status()
            return time.perf_counter() - began, response

        for _ in range(WHOLE_LISTS):
            took, response = get()
            out.whole.append(took)
        if len(response.json()) != tasks:
            raise RuntimeError(f"the manager lists {len(response.json())} tasks, not {tasks}")
        after, walk = "", 0.0
        for _ in range(PAGE_REQUESTS):
            took, response = get({"limit": PAGE, "after": after} if after else {"limit": PAGE})
            out.pages.append(took)
            walk += took
            page = response.json()
            after = page[-1]["ID"] if len(page) == PAGE else ""
            if not after:  # the end of the list: a whole walk done, start again
                out.walks.append(walk)
                walk = 0.0
    return out


@dataclass
class Death:
    tasks: int  # what the worker held
    noticed: float  # seconds from the kill until GET /nodes said it was down
    moved: float  # ... until every task it held was Running elsewhere


def dead_worker(fleet: Fleet, watch: TaskWatch) -> Death:
    victim = watch.busiest()
    held = watch.on(victim)
    timeout = 60 + NODE_TTL + len(held) / FLOOR_RATE
    killed = time.monotonic()
    fleet.kill(fleet.worker_at(victim).name)
    noticed = _noticed_down(fleet.client, victim, killed + timeout) - killed

    def elsewhere() -> bool:
        tasks = [watch.tasks[k] for k in held]
        return all(t["State"] == RUNNING and t.get("Worker") != victim for t in tasks)

    moved = watch.wait(elsewhere, timeout, f"the {len(held)} tasks of {victim} moved") - killed
    return Death(len(held), noticed, moved)


def _noticed_down(client: ManagerClient, node: str, deadline: float) -> float:
    """When ``GET /nodes`` first says ``node`` is down (polled every POLL seconds)."""
    while time.monotonic() < deadline:
        if any(n["Name"] == node and n["State"] == "down" for n in client.nodes()):
            return time.monotonic()
        time.sleep(POLL)
    raise TimeoutError(f"the manager did not mark {node} down")


# ---------------------------------------------------------------------- a run


@dataclass
class Run:
    size: Size
    started: float  # seconds to start the fleet until every worker was up
    placement: Placement
    footprint: Footprint
    listing: Listing
    death: Death


def run(size: Size, idle_seconds: float, keep_logs: Path | None) -> Run:
    """Every measurement on one fleet of ``size``, stopped and removed after."""
    began = time.monotonic()
    fleet = Fleet(size.workers)
    watch: TaskWatch | None = None
    try:
        fleet.start(timeout=START_TIMEOUT + size.workers)
        started = time.monotonic() - began
        print(f"  started: a manager and {size.workers} workers up in {_s(started)}")
        manager = psutil.Process(fleet.pids()[0])
        footprint = Footprint(rss_empty=manager.memory_info().rss)
        watch = TaskWatch(fleet.manager.url)
        placement = place(fleet, watch, size.tasks)
        _show_placement(placement)
        idle(fleet, watch, footprint, idle_seconds)
        _show_footprint(footprint, size, idle_seconds)
        listed = listing(fleet.manager.url, size.tasks)
        _show_listing(listed)
        death = dead_worker(fleet, watch)
        _show_death(death)
        return Run(size, started, placement, footprint, listed, death)
    except Exception:
        print("  failed; the manager's last lines:")
        print(fleet.tail("manager"))
        raise
    finally:
        with _uninterrupted():
            if watch is not None:
                watch.close()
            fleet.stop(keep_logs / f"{size.workers}-workers" if keep_logs else None)
            left = fleet.leftovers()
        print(f"  stopped; left behind: {'nothing' if not left else ''}")
        for line in left:
            print(f"    {line}")


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C is held off while the fleet stops: a second one would cut the stop short
    (the reaper would then end what is left, but nobody would say what that was)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -------------------------------------------------------------------- printing


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.0f} MB"


def _p(values: list[float], q: float) -> float:
    return statistics.median(values) if q == 50 else percentile(values, q)


def _show_placement(p: Placement) -> None:
    lat = p.latencies()
    print(
        f"  placement: {p.placements_per_s():.0f} placements/s to Running "
        f"(Nomad C1M: {NOMAD_C1M:,.0f}/s), {p.submissions_per_s():.0f} submissions/s; "
        f"submit -> Running p50 {_s(_p(lat, 50))}, p99 {_s(_p(lat, 99))} "
        f"(Kubernetes: p99 <= {POD_START_P99:g} s); manager CPU "
        f"{ms(p.cpu_per_task())} a task"
    )


def _show_footprint(f: Footprint, size: Size, seconds: float) -> None:
    per_task = (f.rss_full - f.rss_empty) / size.tasks / 1024
    print(
        f"  footprint: manager RSS {_mb(f.rss_empty)} with no task, {_mb(f.rss_full)} with "
        f"{size.tasks:,} Running ({per_task:.1f} KB a task); idle CPU over {seconds:g} s: "
        f"{f.cpu * 100:.1f} % of a core (workers together: {f.workers_cpu * 100:.1f} %); "
        f"{f.threads} threads, {f.files} open files; {f.changes} task changes meanwhile; "
        f"the workers' RSS together {_mb(f.workers_rss)}"
    )


def _show_listing(listed: Listing) -> None:
    walk = statistics.median(listed.walks) if listed.walks else float("nan")
    print(
        f"  GET /tasks: whole p50 {ms(_p(listed.whole, 50))}, p99 {ms(_p(listed.whole, 99))}; "
        f"?limit={PAGE} p50 {ms(_p(listed.pages, 50))}, p99 {ms(_p(listed.pages, 99))}, "
        f"the whole list page by page {ms(walk)} (goal: p99 <= {LIST_P99:g} s)"
    )


def _show_death(d: Death) -> None:
    print(
        f"  dead worker: marked down {_s(d.noticed)} after its SIGKILL (node TTL "
        f"{NODE_TTL:g} s); its {d.tasks} tasks Running elsewhere after {_s(d.moved)}"
    )


def figures(r: Run) -> dict[str, float]:
    """One run's figures, by the name they are printed under."""
    lat = r.placement.latencies()
    return {
        "placements/s (to Running)": r.placement.placements_per_s(),
        "submissions/s": r.placement.submissions_per_s(),
        "submit -> Running p50 (s)": _p(lat, 50),
        "submit -> Running p99 (s)": _p(lat, 99),
        "manager CPU a task (ms)": r.placement.cpu_per_task() * 1000,
        "manager RSS, all Running (MB)": r.footprint.rss_full / (1 << 20),
        "manager idle CPU (% of a core)": r.footprint.cpu * 100,
        "manager threads": float(r.footprint.threads),
        "manager open files": float(r.footprint.files),
        "GET /tasks whole p50 (ms)": _p(r.listing.whole, 50) * 1000,
        "GET /tasks whole p99 (ms)": _p(r.listing.whole, 99) * 1000,
        f"GET /tasks?limit={PAGE} p50 (ms)": _p(r.listing.pages, 50) * 1000,
        f"GET /tasks?limit={PAGE} p99 (ms)": _p(r.listing.pages, 99) * 1000,
        "dead worker marked down (s)": r.death.noticed,
        "its tasks Running elsewhere (s)": r.death.moved,
    }


GOALS = {
    "placements/s (to Running)": f">= {NOMAD_C1M:,.0f} (Nomad C1M)",
    "submit -> Running p99 (s)": f"<= {POD_START_P99:g} (Kubernetes pod start)",
    "GET /tasks whole p99 (ms)": f"<= {LIST_P99 * 1000:,.0f}",
    f"GET /tasks?limit={PAGE} p99 (ms)": f"<= {LIST_P99 * 1000:,.0f}",
    "dead worker marked down (s)": f"node TTL {NODE_TTL:g} s; Kubernetes 40-50 s",
}


def compare(base: Run, full: Run) -> None:
    """Both runs side by side: full / baseline says how each cost grows with size."""
    header(f"{full.size} against {base.size} (x{full.size.tasks / base.size.tasks:g} tasks)")
    before, after = figures(base), figures(full)
    print(f"  {'':<34} {'baseline':>10} {'full':>10} {'ratio':>7}  goal")
    for name, value in after.items():
        ratio = f"x{value / before[name]:.2f}" if before[name] else "-"
        shown = f"{_figure(before[name]):>10} {_figure(value):>10}"
        print(f"  {name:<34} {shown} {ratio:>7}  {GOALS.get(name, '')}")


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=None, help="[default: 30]")
    parser.add_argument("--quick", action="store_true", help="10 workers, 500 tasks, idle 10 s")
    parser.add_argument("--keep-logs", type=Path, help="copy every process's log here")
    if argv is None:  # `python -m bench bench_scale --quick`: from the first flag on
        argv = list(itertools.dropwhile(lambda a: not a.startswith("-"), sys.argv[1:]))
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.tasks = 10, 500
    seconds = args.idle_seconds or (10.0 if args.quick else 30.0)
    full = Size(args.workers, args.tasks)
    began = time.monotonic()
    header(f"control plane at scale: {full.tenth()} (baseline), then {full}")
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    hint = " (a manager with 100 workers may need more: ulimit -n 4096)" if files < 4096 else ""
    print(f"  open files allowed per process: {files}{hint}")
    try:
        print(f"  baseline: {full.tenth()}")
        base = run(full.tenth(), seconds, args.keep_logs)
        print(f"  full: {full}")
        measured = run(full, seconds, args.keep_logs)
    except KeyboardInterrupt:
        print("  interrupted")
        raise SystemExit(130) from None
    compare(base, measured)
    print(f"  the whole run took {_s(time.monotonic() - began)}")


if __name__ == "__main__":
    main()
