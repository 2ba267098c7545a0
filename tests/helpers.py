"""Small helpers the tests share: waiting on real things, free ports, cube processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import requests

from cube.ports import free_port

T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (tests only: the product wakes
    on events, but a test watching it from outside can only look)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception as exc:  # the thing may not be up yet
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def cube_process(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m cube ARGS`` as a real child process, its output in ``log``."""
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cube", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        return requests.get(f"{url}/health", timeout=1).status_code == 200

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if up():
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not become healthy in {timeout}s")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    return proc.wait(timeout=15)


def live_processes(data_dir: Path) -> Counter[str]:
    """How many live task processes each task has, read from the process table: every
    process of the process runtime whose files are under ``data_dir`` (its command line
    names its exit file, beside the record that says which task it runs). A process
    whose record is gone counts under "?": it belongs to no task any more."""
    root = str(data_dir.resolve())
    counts: Counter[str] = Counter()
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if "--exit-file" not in cmdline or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            exit_file = Path(cmdline[cmdline.index("--exit-file") + 1])
            if str(exit_file).startswith(root):
                counts[_task_of(exit_file.with_suffix(".json"))] += 1
    return counts


def _task_of(record: Path) -> str:
    try:
        return str(json.loads(record.read_text())["task_id"])
    except (OSError, ValueError, KeyError):
        return "?"


def one_process_each(data_dir: Path, task_ids: set[str]) -> bool:
    """Every one of ``task_ids`` runs as exactly one live process, and nothing else
    runs under ``data_dir``."""
    counts = live_processes(data_dir)
    return set(counts) == task_ids and set(counts.values()) == {1}


def settled(data_dir: Path, ids: set[str], timeout: float, when: str) -> None:
    """Wait until every task runs as exactly one live process; say what runs if not."""
    try:
        eventually(lambda: one_process_each(data_dir, ids), timeout, f"{when}: one per task")
    except AssertionError as exc:
        counts = live_processes(data_dir)
        raise AssertionError(f"{exc}; live processes per task: {counts}") from None


def all_in_state(client, state) -> list:
    """The client's tasks when every one of them is in ``state`` (else an empty list)."""
    tasks = client.tasks()
    return tasks if tasks and all(t.state is state for t in tasks) else []


class Procs:
    """A cluster of real ``cube worker`` and ``cube manager`` processes on free ports,
    their state in ``tmp``: started, killed, paused and restarted one by one, and
    cleaned up completely by :meth:`close` (tasks included)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workers: dict[str, tuple[subprocess.Popen, int, str]] = {}  # name -> proc, port, kind
        self.manager: subprocess.Popen | None = None
        self.manager_port = free_port()
        self.manager_args: list[str] = []
        self.orders_signed = False  # workers take orders from a leader only: stop by runtime

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.manager_port}"

    def worker_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.workers[name][1]}"

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.workers[name][1]}"

    def start_worker(
        self,
        name: str,
        kind: str = "process",
        env: dict[str, str] | None = None,
        wait: bool = True,
        options: tuple[str, ...] = (),
    ) -> subprocess.Popen:
        port = self.workers[name][1] if name in self.workers else free_port()
        args = ["worker", "--port", str(port), "--name", name, "--runtime", kind]
        args += ["--data-dir", str(self.tmp), "--inspect-interval", "0.3", *options]
        proc = cube_process(*args, log=self.tmp / f"{name}.log", env=env)
        self.workers[name] = (proc, port, kind)
        if wait:
            wait_healthy(self.worker_url(name), proc, timeout=30)
        return proc

    def start_manager(
        self, *options: str, env: dict[str, str] | None = None, extra_workers: tuple = ()
    ) -> None:
        if options or not self.manager_args:
            workers = ",".join([*(self.address(n) for n in self.workers), *extra_workers])
            self.manager_args = [
                "manager", "--port", str(self.manager_port), "--workers", workers,
                "--data-dir", str(self.tmp), "--update-interval", "0.3", "--node-ttl", "2",
                "--health-interval", "0.5", *options,
            ]  # fmt: skip
        self.manager = cube_process(*self.manager_args, log=self.tmp / "manager.log", env=env)
        wait_healthy(self.url, self.manager, timeout=30)

    def signal(self, name: str, sig: int) -> None:
        proc = self.manager if name == "manager" else self.workers[name][0]
        assert proc is not None
        if sig in (signal.SIGKILL, signal.SIGTERM):
            kill(proc, sig)
        else:
            os.kill(proc.pid, sig)

    def close(self) -> None:
        from cube.client import WorkerClient
        from cube.task import State
        from cube.worker.worker import worker_runtime

        live = (State.Scheduled, State.Running)
        if self.manager is not None:
            kill(self.manager, signal.SIGTERM)
        for name, (proc, _, _) in self.workers.items():
            if proc.poll() is None and not self.orders_signed:
                os.kill(proc.pid, signal.SIGCONT)
                client = WorkerClient(self.worker_url(name), timeout=10)
                for task in client.tasks():
                    if task.state in live:
                        client.stop(task.id)
                eventually(
                    lambda c=client: not any(t.state in live for t in c.tasks()),
                    timeout=30,
                    what=f"{name}'s tasks stopped",
                )
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                kill(proc, signal.SIGTERM)
        for name, (_, _, kind) in self.workers.items():
            runtime = worker_runtime(kind, self.tmp, name)
            for managed in runtime.list_managed():
                runtime.stop(managed.status.container_id)


CAMPAIGN_TIMEOUT = 1800  # a hang, not a slow machine: a campaign is CPU-bound, and a
# CI run with a CPU hog and other tests beside it has taken over 300 s for 500 seeds


def replay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m cube.replay`` with ``args``, as a user runs it (it fixes the hash salt)."""
    return subprocess.run(
        [sys.executable, "-m", "cube.replay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
