"""Small helpers the tests share: waiting on real things, free ports, cube processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def all_in_state(client, state) -> list:
    """The client's tasks when every one of them is in ``state`` (else an empty list)."""
    tasks = client.tasks()
    return tasks if tasks and all(t.state is state for t in tasks) else []
