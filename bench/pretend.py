"""A runtime that starts nothing: a stand-in for benchmarking the control plane only.

:class:`PretendRuntime` implements the worker's :class:`~cube.runtime.Runtime` protocol
as :class:`~cube.runtime.process.ProcessRuntime` does, but ``start`` runs no program: it
notes the task in a dictionary and says it runs, at once, until it is stopped or
killed. It exists so that ``bench_scale`` can put 10,000 Running tasks on 100 real
workers on a 2-core machine: 10,000 echo processes (about 10 MB each, and a start of
tens of milliseconds each) would measure the machine, not the manager. Everything
above the runtime is the real worker: its records, its orders, its loop and its HTTP
API, so the manager sees the same answers, at the same pace, as from a worker whose
tasks start in no time.

It says it is a *process* runtime with the process runtime's programs (``cube/echo``,
``cube/busybox``), so placement treats it as one; the wire knows only ``docker`` and
``process``. Nothing survives the worker's process, as nothing ran: a worker restarted
on it adopts nothing. Not for use outside ``bench/``: a task it "runs" serves nothing.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, replace

from cube.runtime import Capabilities, Managed, Started, Status, UnknownImage, attempt_label
from cube.runtime.process import PROGRAMS
from cube.task import Task

RUNTIME = "process"  # what it says it is (see the module's docstring)


@dataclass(frozen=True)
class Pretended:
    """One copy it pretends to run: which task and order, and whether it "runs"."""

    task_id: str
    attempt: str
    running: bool = True
    exit_code: int | None = None
    reason: str = ""


class PretendRuntime:
    """Says it started each task, and that it runs until stopped. Safe to call from
    several threads (the worker's pool and its inspection loop)."""

    name = "pretend"

    def __init__(self) -> None:
        self._copies: dict[str, Pretended] = {}
        self._lock = threading.Lock()

    def check(self, task: Task) -> None:
        if task.image.partition(":")[0] not in PROGRAMS:
            raise UnknownImage(f"the pretend runtime runs only {', '.join(PROGRAMS)}")

    def capabilities(self) -> Capabilities:
        return Capabilities(RUNTIME, tuple(sorted(PROGRAMS)), pulls=False)

    def start(self, task: Task) -> Started:
        self.check(task)
        container_id = f"pretend-{secrets.token_hex(6)}"
        with self._lock:
            self._copies[container_id] = Pretended(str(task.id), attempt_label(task))
        return Started(container_id)

    def stop(self, container_id: str) -> None:
        self._end(container_id, 0, "stopped")

    def forget(self, container_id: str) -> None:
        with self._lock:
            copy = self._copies.get(container_id)
            if copy is not None and not copy.running:
                del self._copies[container_id]

    def kill(self, container_id: str) -> None:
        self._end(container_id, 137, "killed (SIGKILL)")

    def inspect(self, container_id: str) -> Status:
        with self._lock:
            copy = self._copies.get(container_id)
        if copy is None:
            return Status(container_id, False, "missing", reason=f"no copy {container_id}")
        state = "running" if copy.running else "exited"
        return Status(container_id, copy.running, state, copy.exit_code, copy.reason)

    def logs(self, container_id: str, tail: int = 200) -> str:
        return "(the pretend runtime ran nothing, so nothing was printed)\n"

    def list_managed(self) -> list[Managed]:
        with self._lock:
            copies = list(self._copies.items())
        return [Managed(c.task_id, self.inspect(cid), c.attempt) for cid, c in copies]

    def _end(self, container_id: str, code: int, reason: str) -> None:
        """A copy that "runs" ends with ``code``; ending one already ended, or
        unknown, is not an error (as stopping a process already gone is not)."""
        with self._lock:
            copy = self._copies.get(container_id)
            if copy is not None and copy.running:
                ended = replace(copy, running=False, exit_code=code, reason=reason)
                self._copies[container_id] = ended
