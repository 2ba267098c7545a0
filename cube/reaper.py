"""A reaper: a small process that cleans up after its owner if the owner dies first.

A notebook kernel that is shut down, restarted or killed never runs its clean-up cell,
and ``atexit`` does not run on SIGKILL. Whatever it started in their own sessions (a
cluster's manager and workers, their task processes, a runtime's processes) would run
on, and its temporary folders would stay. So whoever starts such things also starts a
reaper, which waits for the owner's death without polling (a Linux pidfd; elsewhere
the end of a pipe only the owner holds) and then:

- when the folder is to be removed (a temporary one: nothing in it can be wanted
  later), kills the cluster's components (``cube manager``/``cube worker`` processes
  whose command line names the folder), stops what each named worker's runtime still
  runs for it (Docker containers too), kills every process still naming the folder
  (SIGKILL, to its whole session), and removes the folder;
- otherwise asks the components to stop (SIGTERM, after SIGCONT in case one was
  paused), as ``stop()`` would have, so workers stop their tasks or, if told to keep
  them (``cube up --keep-tasks``), leave them running; those that do not stop in time
  are killed.

An owner that cleans up by itself says so with :meth:`Reaper.done` and the reaper
exits without touching anything. Run as ``python -m cube.reaper``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

TERM_GRACE = 4.0  # seconds a component gets to stop its tasks before it is killed
KILL_GRACE = 2.0
DONE = b"done\n"


class Reaper:
    """The owner's handle on its reaper process."""

    def __init__(
        self,
        path: str | Path,
        *,
        remove: bool,
        runtime: str = "",
        workers: Iterable[str] = (),
    ) -> None:
        args = [sys.executable, "-m", "cube.reaper", "--owner", str(os.getpid())]
        args += ["--path", str(path)]
        if remove:
            args.append("--remove")
        if runtime and workers:
            args += ["--runtime", runtime, "--workers", ",".join(workers)]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the owner's process group spares it
        )

    def done(self) -> None:
        """The owner has cleaned up: let the reaper go without doing anything."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(DONE)
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ the reaper side


def wait_for_owner(owner: int) -> bool:
    """Block until the owner dies (True) or says it is done (False)."""
    fds = [sys.stdin.fileno()]
    with contextlib.suppress(AttributeError, OSError):  # without a pidfd, the pipe's
        fds.append(os.pidfd_open(owner))  # end of file is the sign of death
    buffer = b""
    while True:
        ready, _, _ = select.select(fds, [], [])
        if len(fds) > 1 and fds[1] in ready:
            return True
        chunk = os.read(fds[0], 64)
        if not chunk:
            return not buffer.startswith(DONE)
        buffer += chunk
        if buffer.startswith(DONE):
            return False


def reap(path: Path, remove: bool, runtime: str = "", workers: list[str] | None = None) -> None:
    """Stop everything started under ``path`` (see the module's docstring)."""
    if not remove:
        _stop(_processes(path, components_only=True), signal.SIGTERM, TERM_GRACE)
        _stop(_processes(path, components_only=True), signal.SIGKILL, KILL_GRACE)
        return
    # Nothing under a temporary folder is wanted any more: no need to be gentle, but
    # the components go first, so that no worker starts a task while the rest is ended.
    _stop(_processes(path, components_only=True), signal.SIGKILL, KILL_GRACE)
    _stop(_processes(path), signal.SIGKILL, KILL_GRACE)  # task processes name the folder
    if runtime == "docker" and workers:  # containers do not: their runtime finds them
        _stop_runtime_tasks(path, runtime, workers)
    shutil.rmtree(path, ignore_errors=True)


def _processes(path: Path, components_only: bool = False) -> list[object]:
    """Live processes (psutil) whose command line names ``path`` or something in it;
    with ``components_only``, just Cube's own managers and workers."""
    import psutil

    marker, inside = str(path), str(path) + os.sep
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        args = proc.info["cmdline"] or []
        if not any(a == marker or inside in a for a in args):
            continue
        if components_only and not _is_component(args):
            continue
        found.append(proc)
    return found


def _is_component(args: list[str]) -> bool:
    """``python -m cube worker ...`` or ``python -m cube manager ...``, or an etcd
    member the cluster started for its managers (its data in the folder)."""
    if args and Path(args[0]).name == "etcd":
        return True
    return len(args) > 3 and args[1:3] == ["-m", "cube"] and args[3] in ("worker", "manager")


def _stop(procs: list[object], sig: signal.Signals, grace: float) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            if sig is signal.SIGKILL:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, sig)  # type: ignore[attr-defined]
            else:
                proc.send_signal(signal.SIGCONT)  # type: ignore[attr-defined]
            proc.send_signal(sig)  # type: ignore[attr-defined]
    _wait_gone(procs, grace)


def _wait_gone(procs: list[object], timeout: float) -> None:
    """Wait until every process has exited. A zombie counts as gone: their parent died,
    and where the init process does not reap orphans (some containers), psutil's own
    wait would sit out the whole timeout on each one."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:  # type: ignore[attr-defined]
                    alive.append(proc)
        if not alive:
            return
        procs = alive
        time.sleep(0.05)


def _stop_runtime_tasks(path: Path, runtime: str, workers: list[str]) -> None:
    """Stop what each worker's runtime still runs for it (containers included)."""
    try:
        from cube.worker.worker import worker_runtime

        for name in workers:
            owned = worker_runtime(runtime, path, name)
            for managed in owned.list_managed():
                with contextlib.suppress(Exception):
                    owned.stop(managed.status.container_id)
    except Exception:  # best effort: the kill below still ends every process
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cube.reaper", description=__doc__)
    parser.add_argument("--owner", type=int, required=True, help="pid to outlive")
    parser.add_argument("--path", type=Path, required=True, help="folder to clean up after")
    parser.add_argument("--remove", action="store_true", help="remove the folder too")
    parser.add_argument("--runtime", default="", help="the workers' runtime")
    parser.add_argument("--workers", default="", help="comma-separated worker names")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the owner
    if not wait_for_owner(args.owner):
        return
    time.sleep(0.05)  # let a dying owner's own atexit clean-up finish first, if any
    workers = [w for w in args.workers.split(",") if w]
    reap(args.path, args.remove, args.runtime, workers)


if __name__ == "__main__":
    main()
