"""The process runtime: a task runs as a local OS process instead of a container.

This is what Cube uses where there is no Docker daemon (on Binder, for example). It runs
only the programs it knows, named like the Docker images they stand for: ``cube/echo``
and ``cube/busybox`` (see :mod:`cube.runtime.echo`); a tag such as ``:latest`` is
allowed, and ``:bad-exit`` makes the service crash two seconds after it starts.

Processes outlive the worker that started them: each runs in its own session with its
output in a log file, and the runtime keeps one small JSON record per process in
``state_dir``. A new runtime with the same owner and ``state_dir`` finds them there and
re-adopts them. A record names the process by its pid *and* its start time, so a later
process that happens to get the same pid is never mistaken for it (or killed).

The record is written *before* the process is spawned (without a pid yet), completed
with the pid the moment it exists, and with its port once it listens. A worker killed at
any instant in between leaves a record that :meth:`ProcessRuntime.list_managed` resolves:
the process is found by its ID on its command line (and its port by what it listens on)
and adopted, or, when it never came to be, reported gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

import psutil

from cube import faults
from cube.runtime import (
    Capabilities,
    Managed,
    PortMap,
    RuntimeFailure,
    Started,
    Status,
    UnknownImage,
    attempt_label,
)
from cube.task import Task

log = logging.getLogger(__name__)

ECHO_SCRIPT = str(Path(__file__).with_name("echo.py"))
DEFAULT_PORT = "7777/tcp"
READY_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0
# psutil derives create_time from the boot time, which can shift by a second when the
# clock is stepped; pids are not reused that fast.
SAME_START_TOLERANCE = 1.0

PROGRAMS: dict[str, tuple[str, ...]] = {
    "cube/echo": (),
    "cube/busybox": ("--no-healthfail",),
}
TAG_FLAGS: dict[str, tuple[str, ...]] = {"bad-exit": ("--crash-after", "2")}

_ID = re.compile(r"proc-[0-9a-f]{12}")

# Child processes belong to this OS process, not to one runtime object, and only the
# Popen that started a child may reap it (subprocess reaps dropped Popen objects by
# itself), so every runtime instance in this process shares these handles.
_children: dict[str, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


@dataclass(frozen=True)
class ProcessRecord:
    """What is kept on disk about one process: enough to find it again after the
    worker restarts, and to tell it apart from a later process with the same pid."""

    container_id: str
    owner: str
    task_id: str
    pid: int
    create_time: float
    image: str
    host_ports: PortMap
    log: str
    attempt: str = ""


class ProcessRuntime:
    """Runs ``cube/echo`` and ``cube/busybox`` tasks as local processes listening on
    ``host_ip``. Safe to call from several threads."""

    name = "process"

    def __init__(self, owner: str, state_dir: Path, host_ip: str = "127.0.0.1") -> None:
        self.owner = owner
        self.state_dir = Path(state_dir)
        self.host_ip = host_ip
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def check(self, task: Task) -> None:
        self._flags(task.image)

    def capabilities(self) -> Capabilities:
        return Capabilities(self.name, tuple(sorted(PROGRAMS)), pulls=False)

    def start(self, task: Task) -> Started:
        flags = self._flags(task.image)
        port_name = task.exposed_ports[0] if task.exposed_ports else DEFAULT_PORT
        wanted = int(task.port_bindings.get(port_name) or 0)
        container_id = f"proc-{secrets.token_hex(6)}"
        record = ProcessRecord(
            container_id=container_id,
            owner=self.owner,
            task_id=str(task.id),
            pid=0,
            create_time=0.0,
            image=task.image,
            host_ports={},
            log=str(self._path(container_id, "log")),
            attempt=attempt_label(task),
        )
        self._save(record)  # the intent, before anything exists
        try:
            port = self._launch(record, flags, wanted)
        except BaseException:
            self._path(container_id, "json").unlink(missing_ok=True)
            raise
        host_ports = {port_name: [{"HostIp": self.host_ip, "HostPort": str(port)}]}
        self._save(replace(self._load(container_id) or record, host_ports=host_ports))
        return Started(container_id, host_ports)

    def stop(self, container_id: str) -> None:
        if not _ID.fullmatch(container_id):
            return
        record = self._load(container_id)
        if record is not None and record.pid == 0:
            record = self._resolve(record)  # a start cut short: is there a process?
        with _children_lock:
            child = _children.pop(container_id, None)
        if child is not None:
            if child.poll() is None:
                _terminate(child.pid, child.wait, subprocess.TimeoutExpired)
        elif record is not None and (proc := _same_process(record)) is not None:
            _terminate(record.pid, partial(_wait_exit, proc), psutil.TimeoutExpired)
        for kind in ("json", "exit"):  # its output stays until the task is forgotten
            self._path(container_id, kind).unlink(missing_ok=True)

    def forget(self, container_id: str) -> None:
        """Drop what a stopped process printed."""
        if _ID.fullmatch(container_id):
            self._path(container_id, "log").unlink(missing_ok=True)

    def kill(self, container_id: str) -> None:
        """SIGKILL the process and keep its record, as a crash would leave it. Returns
        once it is dead (our own child is reaped here, so its exit status is kept)."""
        record = self._load(container_id) if _ID.fullmatch(container_id) else None
        if record is None or (proc := _same_process(record)) is None:
            return
        with _children_lock:
            child = _children.get(container_id)
        proc.kill()
        if child is not None:
            child.wait(timeout=STOP_TIMEOUT)
        else:
            _wait_exit(proc, timeout=STOP_TIMEOUT)

    def inspect(self, container_id: str) -> Status:
        record = self._load(container_id)
        if record is None:
            return Status(
                container_id,
                running=False,
                state="missing",
                reason=f"no process with id {container_id}",
            )
        return self._status(record)

    def logs(self, container_id: str, tail: int = 200) -> str:
        """Its last lines of output, also after it stopped (until :meth:`forget`)."""
        if not _ID.fullmatch(container_id):
            return ""
        try:
            with open(self._path(container_id, "log"), encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=max(tail, 0)))
        except FileNotFoundError:
            return ""

    def list_managed(self) -> list[Managed]:
        records = (self._load(path.stem) for path in sorted(self.state_dir.glob("proc-*.json")))
        return [
            Managed(record.task_id, self._status(self._resolve(record)), record.attempt)
            for record in records
            if record is not None and record.owner == self.owner
        ]

    def _resolve(self, record: ProcessRecord) -> ProcessRecord:
        """Complete a record that a worker killed mid-start left without a pid or a
        port: find the process by its ID on its command line, and its port by what it
        listens on. A record whose process never came to be stays without a pid (and
        reads as exited)."""
        if record.pid == 0:
            proc = _find_by_argument(str(self._path(record.container_id, "exit")))
            if proc is None:
                return record
            record = replace(record, pid=proc.pid, create_time=proc.create_time())
            self._save(record)
        if not record.host_ports and (proc := _same_process(record)) is not None:
            port = _listening_port(proc)
            if port:
                name = DEFAULT_PORT  # the only port the echo service has
                ports = {name: [{"HostIp": self.host_ip, "HostPort": str(port)}]}
                record = replace(record, host_ports=ports)
                self._save(record)
        return record

    # ------------------------------------------------------------------- starting

    def _flags(self, image: str) -> tuple[str, ...]:
        """The echo service's flags for ``image``; UnknownImage if it is not ours."""
        name, _, tag = image.partition(":")
        if name not in PROGRAMS:
            known = ", ".join(PROGRAMS)
            raise UnknownImage(
                f"the process runtime cannot run {image!r}; it runs {known} "
                "(use the docker runtime for other images)"
            )
        return PROGRAMS[name] + TAG_FLAGS.get(tag, ())

    def _launch(self, record: ProcessRecord, flags: tuple[str, ...], port: int) -> int:
        """Start the service, record its pid at once, and wait until it listens;
        returns its port."""
        container_id = record.container_id
        read_fd, write_fd = os.pipe()
        with open(read_fd, "rb", buffering=0) as ready:
            try:
                child = self._spawn(container_id, flags, port, write_fd)
            finally:
                os.close(write_fd)  # so that the pipe reads EOF once the child is gone
            with _children_lock:
                _children[container_id] = child
            faults.point("process-spawned")
            with contextlib.suppress(psutil.NoSuchProcess):
                created = psutil.Process(child.pid).create_time()
                self._save(replace(record, pid=child.pid, create_time=created))
            line = _read_line(ready, READY_TIMEOUT)
        if line is not None and line.isdigit():
            faults.point("process-ready")
            return int(line)
        with _children_lock:
            _children.pop(container_id, None)
        raise self._failed_start(container_id, record.image, child, line)

    def _failed_start(
        self, container_id: str, image: str, child: subprocess.Popen[bytes], line: str | None
    ) -> RuntimeFailure:
        """Clean up after a start that never reached listening, and say why."""
        reported = line.removeprefix("error: ") if line and line.startswith("error: ") else ""
        if not reported:
            child.kill()  # a child that reported an error exits by itself
        child.wait()
        output = self._tail(container_id)
        for kind in ("log", "exit"):
            self._path(container_id, kind).unlink(missing_ok=True)
        if reported:
            return RuntimeFailure(reported)
        if line is None:
            why = f"{image} did not start listening within {READY_TIMEOUT:g} s"
        else:
            why = f"{image} exited with code {child.returncode} before it was listening"
        return RuntimeFailure(f"{why}; its last output: {output}" if output else why)

    def _spawn(
        self, container_id: str, flags: tuple[str, ...], port: int, ready_fd: int
    ) -> subprocess.Popen[bytes]:
        """Run the echo script in isolated mode (``-I``): it needs only the standard
        library, so it neither waits for Cube's package imports nor depends on Cube
        being importable from wherever the worker runs."""
        command = [
            sys.executable,
            "-I",
            "-S",
            ECHO_SCRIPT,
            "--host",
            self.host_ip,
            "--port",
            str(port),
            "--ready-fd",
            str(ready_fd),
            "--exit-file",
            str(self._path(container_id, "exit")),
            *flags,
        ]
        with open(self._path(container_id, "log"), "ab") as output:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(ready_fd,),
                start_new_session=True,
            )

    def _tail(self, container_id: str, lines: int = 5) -> str:
        try:
            text = self._path(container_id, "log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    # ------------------------------------------------------------------- records

    def _path(self, container_id: str, kind: str) -> Path:
        return self.state_dir / f"{container_id}.{kind}"

    def _save(self, record: ProcessRecord) -> None:
        path = self._path(record.container_id, "json")
        tmp = path.with_name(f"{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)

    def _load(self, container_id: str) -> ProcessRecord | None:
        if not _ID.fullmatch(container_id):
            return None
        path = self._path(container_id, "json")
        try:
            return ProcessRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            log.warning("ignoring unreadable process record %s: %s", path, exc)
            return None

    # ------------------------------------------------------------------- status

    def _status(self, record: ProcessRecord) -> Status:
        with _children_lock:
            child = _children.get(record.container_id)
        running = child.poll() is None if child is not None else _same_process(record) is not None
        if running:
            if not record.host_ports:  # adopted before it listened: has it now?
                record = self._resolve(record)
            return Status(record.container_id, True, "running", host_ports=record.host_ports)
        code, reason = self._exit(record, child)
        return Status(record.container_id, False, "exited", exit_code=code, reason=reason)

    def _exit(
        self, record: ProcessRecord, child: subprocess.Popen[bytes] | None
    ) -> tuple[int | None, str]:
        """The exit code (None when unknowable) and a reason. The service writes its
        own code as it exits; failing that, a child of ours has a status from Popen
        (which says 0 when something else reaped it, and the service always writes its
        file when exiting with 0, so a bare 0 means we cannot know). A process that a
        previous runtime started and that was killed leaves nothing."""
        code = _read_int(self._path(record.container_id, "exit"))
        returncode = child.returncode if child is not None else None
        if code is None and returncode is not None:
            if returncode < 0:
                return 128 - returncode, f"process was killed by {signal.Signals(-returncode).name}"
            code = returncode or None
        if code is None:
            return None, "process exited"
        return code, f"process exited with code {code}"


def _same_process(record: ProcessRecord) -> psutil.Process | None:
    """The live process the record names, or None when it is gone, a zombie, or the pid
    now belongs to a different process."""
    if record.pid <= 0:
        return None
    try:
        proc = psutil.Process(record.pid)
        same = abs(proc.create_time() - record.create_time) < SAME_START_TOLERANCE
        if same and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except psutil.NoSuchProcess:
        pass
    return None


def _find_by_argument(argument: str) -> psutil.Process | None:
    """The live process whose command line holds ``argument`` (a path unique to one
    container ID), if any."""
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if argument in (proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
    return None


def _listening_port(proc: psutil.Process) -> int | None:
    with contextlib.suppress(psutil.Error):
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr:
                return int(conn.laddr.port)
    return None


def _terminate(pid: int, wait: Callable[..., object], timeout_error: type[Exception]) -> None:
    """SIGTERM the process's session, then SIGKILL it if it is not gone in time. A
    paused process (SIGSTOP) is continued after the SIGTERM, so that it can act on it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
            if sig is signal.SIGTERM:
                os.killpg(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        try:
            wait(timeout=STOP_TIMEOUT)
            return
        except timeout_error:
            log.info("process %d did not exit within %g s of %s", pid, STOP_TIMEOUT, sig.name)


def _wait_exit(proc: psutil.Process, timeout: float) -> None:
    """Return once ``proc`` has exited, reaped or not; psutil.TimeoutExpired if it has
    not within ``timeout``. A process a previous worker started is reaped by whoever
    adopted it, which may be never (a container's first process that reaps nothing, a
    paused parent): waiting for its pid to vanish, as psutil does, waited out every
    timeout, seconds per stop, in the recovery a restarted worker does before it
    listens. A pidfd is readable from the moment the process exits."""
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return  # gone already
    except (AttributeError, OSError):  # no pidfd here: wait for the pid to go
        proc.wait(timeout=timeout)
        return
    try:
        if proc.is_running() and not select.select([fd], [], [], timeout)[0]:
            raise psutil.TimeoutExpired(timeout, proc.pid)
    finally:
        os.close(fd)


def _read_line(pipe: BinaryIO, timeout: float) -> str | None:
    """One line from the pipe; "" if it closed first, None if ``timeout`` ran out."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
            return None
        chunk = pipe.read(512)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
