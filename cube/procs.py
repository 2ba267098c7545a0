"""What a child process is doing now: running, paused (SIGSTOP) or stopped.

The cluster's components and the etcd members it starts are shown in notebooks with
their state, read from the process table (psutil), so that a paused process is shown
as paused without being asked anything (it would not answer).
"""

from __future__ import annotations

import subprocess

import psutil


def process_state(proc: subprocess.Popen[bytes] | None) -> str:
    """``running``, ``paused`` (stopped by a signal) or ``stopped`` (exited, or never
    started)."""
    if proc is None or proc.poll() is not None:
        return "stopped"
    try:
        paused = psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return "stopped"
    return "paused" if paused else "running"
