"""A toy runtime for chapter 3's exercise: tasks as child processes of this kernel.

It implements the whole :class:`~cube.runtime.Runtime` protocol but one judgement: what
a process's state means (running? exited, with which code and why?). That is left to
a function given to it, ``status_of(process, container_id) -> Status``, which the
learner writes. A worker driving this runtime then lives by the learner's answers:
if they call a live process dead, the worker fails a healthy task; if they miss a
crash, a dead task stays Running.

It runs the same echo service as the process runtime (``cube/echo``) and keeps its
processes in memory only. Their command lines name ``folder``, so that a reaper on
that folder ends them if the kernel dies first.
"""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cube.runtime import Capabilities, Managed, Started, Status, UnknownImage, attempt_label
from cube.runtime.process import ECHO_SCRIPT
from cube.task import Task

StatusOf = Callable[[subprocess.Popen[bytes], str], Status]


class ToyRuntime:
    """Runs ``cube/echo`` tasks as this process's children; ``status_of`` judges them."""

    name = "toy"

    def __init__(self, status_of: StatusOf, folder: Path) -> None:
        self.status_of, self.folder = status_of, folder
        # container ID -> (task ID, the order it was started for, the process)
        self.processes: dict[str, tuple[str, str, subprocess.Popen[bytes]]] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities(self.name, ("cube/echo",))

    def check(self, task: Task) -> None:
        if task.image.partition(":")[0] != "cube/echo":
            raise UnknownImage(f"the toy runtime runs only cube/echo, not {task.image!r}")

    def start(self, task: Task) -> Started:
        self.check(task)
        read_fd, write_fd = os.pipe()
        container_id = f"toy-{secrets.token_hex(6)}"
        command = [sys.executable, "-I", ECHO_SCRIPT, "--port", "0", "--ready-fd", str(write_fd)]
        command += ["--exit-file", str(self.folder / f"{container_id}.exit")]
        process = subprocess.Popen(
            command,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as ready:
            port = ready.readline().decode().strip() if select.select([ready], [], [], 5)[0] else ""
        self.processes[container_id] = (str(task.id), attempt_label(task), process)
        ports = {"7777/tcp": [{"HostIp": "127.0.0.1", "HostPort": port}]} if port.isdigit() else {}
        return Started(container_id, ports)

    def inspect(self, container_id: str) -> Status:
        entry = self.processes.get(container_id)
        if entry is None:
            return Status(container_id, False, "missing", reason=f"no process {container_id}")
        return self.status_of(entry[2], container_id)

    def stop(self, container_id: str) -> None:
        entry = self.processes.pop(container_id, None)
        process = entry[2] if entry is not None else None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self, container_id: str) -> None:
        entry = self.processes.get(container_id)
        if entry is not None and entry[2].poll() is None:
            entry[2].kill()
            entry[2].wait()

    def logs(self, container_id: str, tail: int = 200) -> str:
        return ""

    def list_managed(self) -> list[Managed]:
        return [
            Managed(task_id, self.inspect(cid), attempt)
            for cid, (task_id, attempt, _) in self.processes.items()
        ]
